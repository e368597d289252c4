//! The gateway: the network face of Archway.
//!
//! It owns everything that speaks HTTP: the JSON API over the catalogue ([`api`]), health and
//! Prometheus metrics ([`metrics`]), TLS and connection handling ([`server`]), and a client of
//! the API ([`client`]) that the CLI uses for both remote gateways and local data directories.
//! Protocol mapping happens here, once: catalogue and dataplane errors become HTTP statuses in
//! [`error`]. Only this crate knows hyper, axum and rustls.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod s3;
pub mod server;

pub use api::{AppState, router};
pub use client::{ApiClient, ClientError};
pub use config::{ServerConfig, TlsConfig};
pub use metrics::Metrics;

//! The gateway: the network face of Archway.
//!
//! It owns everything that speaks HTTP: the JSON API ([`api`]), the S3 front ([`s3`]),
//! authentication of API callers ([`auth`]), OpenID Connect tokens ([`oidc`]) and the STS
//! endpoint that trades them for temporary S3 credentials ([`sts`]), request bodies ([`body`]), health and Prometheus
//! metrics ([`metrics`]), TLS and connection handling ([`server`]), reductions forwarded to peer
//! gateways ([`peer`]), and a client of the API ([`client`]) that the CLI uses for both remote
//! gateways and local data directories. Fronts only translate: every access decision is the
//! dataplane's. Protocol mapping happens here, once per protocol: dataplane, catalogue and
//! compute errors become HTTP statuses in [`error`] and S3 codes in `s3/error.rs`. Only this
//! crate knows hyper, axum, rustls and s3s (the binary also runs a small axum server for the
//! mount's metrics).

pub mod api;
pub mod audit;
pub mod auth;
pub mod auth_limit;
pub mod body;
pub mod client;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod links;
pub mod metrics;
pub mod oidc;
pub mod peer;
pub mod s3;
pub mod science;
pub mod server;
pub mod sia;
pub mod stac;
pub mod state;
pub mod sts;
pub mod ui;

pub use api::router;
pub use client::{ApiClient, ClientError};
pub use config::{ServerConfig, TlsConfig};
pub use metrics::Metrics;
pub use oidc::{AuthConfig, Identity};
pub use state::AppState;

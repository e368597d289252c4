//! gateway
pub mod config;
pub use config::{ServerConfig, TlsConfig};

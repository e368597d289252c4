//! What every HTTP handler shares.

use std::sync::Arc;

use archway_dataplane::Dataplane;
use archway_dataplane::audit::AuditLog;

use crate::ServerConfig;
use crate::metrics::Metrics;

/// The dataplane (every data and catalogue operation), the metrics, the `[server]` section and
/// the audit trail,
/// and the identity providers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<ServerConfig>,
    pub audit: AuditLog,
    /// The OpenID Connect issuers (`[auth]`) and the STS limits.
    pub identity: Arc<crate::oidc::Identity>,
}

//! What every HTTP handler shares.

use std::sync::Arc;

use archway_dataplane::Dataplane;
use archway_dataplane::audit::AuditLog;

use crate::ServerConfig;
use crate::metrics::Metrics;

/// The dataplane (every data and catalogue operation), the metrics, the `[server]` section,
/// the audit trail and the identity providers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<ServerConfig>,
    pub audit: AuditLog,
    /// The OpenID Connect issuers (`[auth]`) and the STS limits.
    pub identity: Arc<crate::oidc::Identity>,
    /// The catalogue's site id, read once (forwarded reductions carry it).
    pub site_id: Arc<tokio::sync::OnceCell<String>>,
    /// Failed authentications per source (`server.auth_failure_burst`).
    pub auth_limit: Arc<crate::auth_limit::AuthLimiter>,
    /// The web pages' quick-look cache.
    pub ui: crate::ui::Ui,
}

impl AppState {
    /// This site's id (shared by the replicas on one catalogue).
    pub async fn site_id(&self) -> Result<&str, crate::error::ApiError> {
        let id = self
            .site_id
            .get_or_try_init(|| self.dataplane.catalog().site_id())
            .await?;
        Ok(id.as_str())
    }
}

//! What every HTTP handler shares.

use std::sync::Arc;

use archway_dataplane::Dataplane;

use crate::ServerConfig;
use crate::metrics::Metrics;

/// The dataplane (every data and catalogue operation), the metrics and the `[server]` section.
#[derive(Clone, Debug)]
pub struct AppState {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<ServerConfig>,
}

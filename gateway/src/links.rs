//! Links to peer gateways: reading a peer's catalogue (the volumes the link's credentials may
//! read) so the dataplane can keep the linked volumes in line with it, on demand and
//! periodically.

use std::time::Duration;

use archway_catalog::{Principal, Volume};
use archway_dataplane::{DataplaneError, PeerSync};
use axum::http::StatusCode;

use crate::api::VolumeList;
use crate::client::{ApiClient, Limits};
use crate::error::ApiError;
use crate::state::AppState;

/// Volumes asked of a peer per page.
const PAGE: usize = 1000;
/// The most volumes read from one peer.
const MAX_VOLUMES: usize = 100_000;
/// The largest page of a peer's catalogue read.
const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;

/// The volumes the link's token may read at the peer `url`, every page of them.
async fn offered(url: &str, token: &str, timeout: Duration) -> Result<Vec<Volume>, String> {
    let limits = Limits {
        timeout: Some(timeout),
        max_answer_bytes: Some(MAX_PAGE_BYTES),
    };
    let client = ApiClient::remote_with(url, Some(token.to_string().into()), limits)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        let path = format!("/api/v1/volumes?limit={PAGE}&offset={}", out.len());
        let page: VolumeList = client
            .json(http::Method::GET, &path, None::<&()>)
            .await
            .map_err(|e| e.to_string())?;
        let n = page.volumes.len();
        out.extend(page.volumes.into_iter().map(|v| v.volume));
        if n < PAGE {
            return Ok(out);
        }
        if out.len() >= MAX_VOLUMES {
            return Err(format!("the peer offers more than {MAX_VOLUMES} volumes"));
        }
    }
}

/// Reads the peer `name`'s catalogue and brings the volumes linked from it in line.
pub async fn refresh(
    state: &AppState,
    who: Option<&Principal>,
    name: &str,
) -> Result<PeerSync, ApiError> {
    let link = state.dataplane.peer_credentials(who, name).await?;
    let offered = match &link.token {
        Some(token) => offered(&link.url, token, state.server.peer_timeout).await,
        None => Err("the link has no API token to read the peer's catalogue with".into()),
    };
    match state.dataplane.sync_peer(who, name, offered).await {
        Ok(sync) => {
            tracing::info!(peer = name, url = %link.url, added = sync.added.len(), updated = sync.updated.len(), removed = sync.removed.len(), skipped = sync.skipped.len(), "peer link refreshed");
            Ok(sync)
        }
        Err(DataplaneError::Backend { message, .. }) => {
            tracing::warn!(peer = name, url = %link.url, %message, "peer link not refreshed");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "PeerUnreachable",
                format!("peer link `{name}`: {message}"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Refreshes every link, as the gateway itself (the periodic refresh), while holding the
/// catalogue's peer refresh lock. Failures are recorded on the link and logged; the linked
/// volumes stay until the peer says they are gone.
pub async fn refresh_all(state: &AppState) {
    // One replica at a time: the others find the lock taken and skip this round.
    let lock = match state.dataplane.catalog().try_peer_refresh_lock().await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::debug!("another replica is refreshing the peer links");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "peer links not refreshed");
            return;
        }
    };
    let system = Principal::gateway();
    let peers = match state.dataplane.peers(Some(&system)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "peer links not read");
            return;
        }
    };
    for peer in peers {
        let _ = refresh(state, Some(&system), &peer.name).await;
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "the peer refresh lock was not released cleanly");
    }
}

//! Links to peer gateways: a federated catalogue (admins).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_catalog::{NewPeer, Peer};
use archway_dataplane::PeerSync;

use super::AppState;
use crate::auth::Caller;
use crate::body::StrictJson;
use crate::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_peers, add_peer))
        .routes(routes!(get_peer, remove_peer))
        .routes(routes!(refresh_peer))
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerList {
    pub peers: Vec<Peer>,
}

/// What a refresh did: the volumes linked, brought in line, removed and skipped.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerRefresh {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub skipped: Vec<String>,
}

impl From<PeerSync> for PeerRefresh {
    fn from(s: PeerSync) -> Self {
        PeerRefresh {
            added: s.added,
            updated: s.updated,
            removed: s.removed,
            skipped: s.skipped,
        }
    }
}

/// The peer links (admin).
#[utoipa::path(
    get,
    path = "/peers",
    tag = "federation",
    responses(
        (status = 200, body = PeerList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
async fn list_peers(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<PeerList>, ApiError> {
    let peers = state.dataplane.peers(caller.who()).await?;
    Ok(Json(PeerList { peers }))
}

/// Link a peer gateway (admin): its volumes that the link's credentials may read appear here
/// as `NAME.VOLUME`, read at once (the answer's `last_error` says if that failed) and
/// refreshed periodically.
#[utoipa::path(
    post,
    path = "/peers",
    tag = "federation",
    request_body = NewPeer,
    responses(
        (status = 201, body = Peer),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn add_peer(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewPeer>,
) -> Result<Response, ApiError> {
    let peer = state.dataplane.add_peer(caller.who(), &new).await?;
    tracing::info!(peer = %peer.name, url = %peer.url, by = %caller.0.user, "peer linked");
    let _ = crate::links::refresh(&state, caller.who(), &peer.name).await;
    let peer = state.dataplane.peer(caller.who(), &peer.name).await?;
    Ok((StatusCode::CREATED, Json(peer)).into_response())
}

/// One peer link (admin).
#[utoipa::path(
    get,
    path = "/peers/{name}",
    tag = "federation",
    params(("name" = String, Path, description = "The link's name")),
    responses(
        (status = 200, body = Peer),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn get_peer(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Peer>, ApiError> {
    Ok(Json(state.dataplane.peer(caller.who(), &name).await?))
}

/// Remove a peer link and the volumes linked through it, with their grants (admin).
#[utoipa::path(
    delete,
    path = "/peers/{name}",
    tag = "federation",
    params(("name" = String, Path, description = "The link's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn remove_peer(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dataplane.remove_peer(caller.who(), &name).await?;
    tracing::info!(peer = %name, by = %caller.0.user, "peer link removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Read the peer's catalogue now and bring the linked volumes in line (admin).
#[utoipa::path(
    post,
    path = "/peers/{name}/refresh",
    tag = "federation",
    params(("name" = String, Path, description = "The link's name")),
    responses(
        (status = 200, body = PeerRefresh),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody),
    )
)]
async fn refresh_peer(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PeerRefresh>, ApiError> {
    let sync = crate::links::refresh(&state, caller.who(), &name).await?;
    Ok(Json(sync.into()))
}

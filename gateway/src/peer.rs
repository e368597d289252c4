//! Reductions forwarded to the peer gateway that holds the data, so that only the answer
//! travels. Every call is bounded: `server.peer_timeout` for the whole call, JSON answers at
//! [`MAX_PEER_JSON_BYTES`], streamed array answers at `server.max_peer_answer_bytes`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use archway_compute::{ReduceRequest, Reduction};
use archway_dataplane::PeerLocation;

use crate::ServerConfig;
use crate::client::{ApiClient, ClientError, Limits};
use crate::error::ApiError;

/// The largest JSON answer (a reduction's numbers) read from a peer: far above any real one,
/// small enough that a misbehaving peer cannot fill this gateway's memory.
pub const MAX_PEER_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// A forwarded reduction's failure, in this gateway's words: client errors keep their status
/// (the file is bad, the HDU is missing); a peer that cannot serve is a bad gateway here.
fn peer_error(req: &ReduceRequest, peer: &PeerLocation, e: ClientError) -> ApiError {
    let message = format!(
        "`{}` in volume `{}`: the peer gateway {} ",
        req.key, req.volume, peer.url
    );
    match e {
        ClientError::Api {
            status, message: m, ..
        } => {
            let status = if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            ApiError::new(status, "PeerError", format!("{message}answered: {m}"))
        }
        other @ (ClientError::Transport { .. }
        | ClientError::Decode(_)
        | ClientError::TooLarge { .. }) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "PeerUnreachable",
            format!("{message}could not compute: {other}"),
        ),
    }
}

/// The request as the peer names it, and a bounded client with the token configured for the
/// peer (without one the peer cannot be asked — and the data is not pulled here instead).
fn peer_request(
    server: &ServerConfig,
    req: &ReduceRequest,
    peer: &PeerLocation,
    max_answer_bytes: u64,
) -> Result<(ApiClient, ReduceRequest), ApiError> {
    let Some(token) = &peer.token else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "PeerCannotCompute",
            format!(
                "volume `{}` lives on the peer gateway {}, and backend `{}` has no `token` to \
                 ask it to reduce there (the data is not pulled here instead)",
                req.volume, peer.url, peer.backend
            ),
        ));
    };
    let forwarded = ReduceRequest {
        volume: peer.volume.clone(),
        key: peer.key.clone(),
        ..req.clone()
    };
    let limits = Limits {
        timeout: Some(server.peer_timeout),
        max_answer_bytes: Some(max_answer_bytes),
    };
    let client =
        ApiClient::remote_with(&peer.url, Some(token.clone().into()), limits).map_err(|e| {
            ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BackendMisconfigured",
                format!(
                    "the peer gateway of volume `{}` cannot be reached",
                    req.volume
                ),
                &e,
            )
        })?;
    Ok((client, forwarded))
}

/// Sends a reduction to the peer gateway that holds the data.
pub async fn reduce(
    server: &ServerConfig,
    req: &ReduceRequest,
    peer: &PeerLocation,
) -> Result<Reduction, ApiError> {
    let (client, forwarded) = peer_request(server, req, peer, MAX_PEER_JSON_BYTES)?;
    let mut r: Reduction = client
        .json(http::Method::POST, "/api/v1/reduce", Some(&forwarded))
        .await
        .map_err(|e| peer_error(req, peer, e))?;
    r.site = Some(peer.url.clone());
    r.bytes_returned = 0;
    Ok(r)
}

/// An array answer (cutout, bin) computed by the peer, streamed through as it arrives, with
/// its X-Archway-* headers and the peer named in X-Archway-Site.
pub async fn reduce_to_array(
    server: &ServerConfig,
    req: &ReduceRequest,
    peer: &PeerLocation,
) -> Result<Response, ApiError> {
    let (client, forwarded) = peer_request(server, req, peer, server.max_peer_answer_bytes)?;
    let (_, headers, stream) = client
        .send_full(http::Method::POST, "/api/v1/reduce", Some(&forwarded))
        .await
        .map_err(|e| peer_error(req, peer, e))?;
    let mut out = axum::http::HeaderMap::new();
    for (name, value) in &headers {
        let n = name.as_str();
        if n == "content-type" || n == "content-length" || n.starts_with("x-archway-") {
            out.insert(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&peer.url) {
        out.insert("x-archway-site", v);
    }
    let body = stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    Ok((out, Body::from_stream(body)).into_response())
}

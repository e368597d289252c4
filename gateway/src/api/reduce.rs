//! Reductions where the data lies: one object, or every object under a prefix.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_compute::{BatchEvent, BatchFormat, BatchRequest, Hop, ReduceRequest, Reduction};
use archway_dataplane::{ListRequest, Op, VolumeStore};

use super::{AppState, channel_stream};
use crate::auth::MaybeCaller;
use crate::body::StrictJson;
use crate::error::{ApiError, ErrorBody};
use crate::peer::{Chain, Forward};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reduce))
        .routes(routes!(reduce_batch))
}

/// The chain a reduction arrived with (none when a client asked), refused when it came back
/// to this site or passed too many gateways.
async fn arrived(state: &AppState, headers: &HeaderMap) -> Result<Chain, ApiError> {
    let chain = Chain::from_headers(headers)?;
    if !chain.via.is_empty() {
        chain.check(state.site_id().await?, state.server.peer_max_hops)?;
    }
    Ok(chain)
}

/// Objects reduced at once by a batch (each also uses every core for its own chunks).
const BATCH_OBJECTS_IN_FLIGHT: usize = 4;

/// One object's reduction, here or (for a volume on a peer gateway) at the peer — or, when
/// the peer cannot compute and the request allows it, here over data pulled from the peer.
pub(crate) async fn reduce_one(
    state: &AppState,
    chain: &Chain,
    volume: &VolumeStore,
    req: &ReduceRequest,
) -> Result<Reduction, ApiError> {
    archway_dataplane::key::parse_key(&req.key)?;
    let Some(peer) = volume.peer_location(&req.key) else {
        return compute_here(chain, volume, req, &state.server).await;
    };
    // The data is at another site: the peer reduces it (or sends it on towards the data),
    // and only its answer travels.
    let site = state.site_id().await?;
    let forward = Forward { site, chain };
    let peer_url = peer.url.clone();
    let pull = |why: String| async move {
        let mut r = compute_here(chain, volume, req, &state.server).await?;
        tracing::info!(volume = %req.volume, key = %req.key, peer = %peer_url, %why, "data pulled from the peer (allow_pull)");
        r.sites.push(Hop {
            url: peer_url.clone(),
            bytes_in: 0,
            bytes_out: r.bytes_read,
            pulled: true,
        });
        r.engine_note = Some(match r.engine_note.take() {
            Some(n) => format!("{n}; pulled from {peer_url}: {why}"),
            None => format!("pulled from {peer_url}: {why}"),
        });
        Ok::<_, ApiError>(r)
    };
    if peer.token.is_none() && req.allow_pull {
        return pull(format!("backend `{}` has no token to ask it", peer.backend)).await;
    }
    match crate::peer::reduce(&state.server, forward, req, &peer).await {
        Err(e) if req.allow_pull && e.status == StatusCode::NOT_IMPLEMENTED => {
            pull(e.message).await
        }
        other => other,
    }
}

/// A reduction of data this gateway reads itself, within the chain's time.
async fn compute_here(
    chain: &Chain,
    volume: &VolumeStore,
    req: &ReduceRequest,
    server: &crate::ServerConfig,
) -> Result<Reduction, ApiError> {
    let run = archway_compute::run(volume.object_store(), req);
    let r = match chain.deadline {
        None => run.await,
        Some(_) => {
            let left = chain.time_left(server.peer_timeout, req)?;
            tokio::time::timeout(left, run)
                .await
                .map_err(|_| crate::peer::deadline_passed(req))?
        }
    };
    r.map_err(|e| ApiError::compute(&req.volume, &req.key, e))
}

/// Decode and reduce one FITS object where it lies (read access; without a token, public
/// volumes only). The answer says which engine ran and how many bytes were read and returned;
/// cutouts and binning answer the array itself (FITS or NPY) with `X-Archway-*` headers.
#[utoipa::path(
    post,
    path = "/reduce",
    tag = "compute",
    security((), ("bearer" = [])),
    request_body = ReduceRequest,
    responses(
        (status = 200, description = "The reduction (JSON), or the array (cutout, bin)", body = Reduction),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 501, body = ErrorBody),
        (status = 502, body = ErrorBody),
    )
)]
async fn reduce(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    StrictJson(req): StrictJson<ReduceRequest>,
) -> Result<Response, ApiError> {
    crate::audit::note_target(&req.volume, Some(&req.key));
    let chain = arrived(&state, &headers).await?;
    let volume = state
        .dataplane
        .open(caller.who(), &req.volume, Op::Get)
        .await?;
    if req.op.answers_array()
        && let Some(peer) = volume.peer_location(&req.key)
        && !(req.allow_pull && peer.token.is_none())
    {
        archway_dataplane::key::parse_key(&req.key)?;
        let site = state.site_id().await?;
        let forward = Forward {
            site,
            chain: &chain,
        };
        return crate::peer::reduce_to_array(&state.server, forward, &req, &peer).await;
    }
    let mut r = reduce_one(&state, &chain, &volume, &req).await?;
    tracing::info!(
        volume = %req.volume, key = %req.key, op = r.op.as_str(), hdu = r.hdu,
        bytes_read = r.bytes_read, elapsed_ms = r.elapsed_ms, "reduced"
    );
    if let Some(array) = r.array.take() {
        let cards = [
            ("ORIGIN".to_string(), "'Archway'".to_string()),
            ("ARCHOP".to_string(), format!("'{}'", r.op.as_str())),
        ];
        let body = array.encode(req.output, &cards);
        let content_type = match req.output {
            archway_compute::array::ArrayFormat::Fits => "application/fits",
            archway_compute::array::ArrayFormat::Npy => "application/x-npy",
        };
        let shape = array
            .shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut headers = axum::http::HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("content-type", content_type.to_string());
        set("x-archway-op", r.op.as_str().to_string());
        set("x-archway-shape", shape);
        set("x-archway-hdu", r.hdu.to_string());
        set("x-archway-count", r.count.to_string());
        set("x-archway-missing", r.missing.to_string());
        set("x-archway-engine", "cpu".to_string());
        set("x-archway-bytes-read", r.bytes_read.to_string());
        set("x-archway-bytes-returned", body.len().to_string());
        set("x-archway-elapsed-ms", format!("{:.3}", r.elapsed_ms));
        return Ok((headers, body).into_response());
    }
    // The answer states its own size: settle the number's digits.
    let mut body = Vec::new();
    for _ in 0..3 {
        body = serde_json::to_vec(&r).map_err(|e| {
            ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the answer could not be written",
                &e,
            )
        })?;
        if r.bytes_returned == body.len() as u64 {
            break;
        }
        r.bytes_returned = body.len() as u64;
    }
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Reduce every object under a prefix that matches a glob, in parallel (list access; without
/// a token, public volumes only); the answer streams one NDJSON event (or CSV row) per object
/// as it finishes, then a summary. One object's failure is its own line; the batch goes on.
#[utoipa::path(
    post,
    path = "/reduce/batch",
    tag = "compute",
    security((), ("bearer" = [])),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "NDJSON events (or CSV rows)", content_type = "application/x-ndjson", body = BatchEvent),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn reduce_batch(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    StrictJson(req): StrictJson<BatchRequest>,
) -> Result<Response, ApiError> {
    crate::audit::note_target(&req.volume, None);
    let chain = arrived(&state, &headers).await?;
    if let Some((field, message)) = req.problem() {
        return Err(ApiError::bad_request(Some(field.into()), message));
    }
    let selection = req
        .selection()
        .map_err(|e| ApiError::bad_request(Some("glob".into()), e.to_string()))?;
    archway_dataplane::key::check_prefix(&req.prefix)?;
    let volume = state
        .dataplane
        .open(caller.who(), &req.volume, Op::List)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<BatchEvent>(64);
    let format = req.format;
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (keys_tx, keys_rx) = tokio::sync::mpsc::channel::<String>(1024);
        // Listing runs ahead of the reductions, a page at a time.
        let lister = {
            let (volume, req, selection) = (volume.clone(), req.clone(), selection.clone());
            tokio::spawn(async move {
                let mut page = ListRequest {
                    prefix: req.prefix.clone(),
                    ..Default::default()
                };
                loop {
                    let got = volume.list(&page).await?;
                    for o in got.objects {
                        if selection.selects(&o.key) && keys_tx.send(o.key).await.is_err() {
                            return Ok(());
                        }
                    }
                    match got.next_start_after {
                        Some(after) => page.start_after = Some(after),
                        None => return Ok::<_, archway_dataplane::DataplaneError>(()),
                    }
                }
            })
        };
        let (mut objects, mut failed, mut bytes_read) = (0u64, 0u64, 0u64);
        let mut results = channel_stream(keys_rx)
            .map(|key| {
                let (state, volume, one) = (state.clone(), volume.clone(), req.for_key(&key));
                let chain = chain.clone();
                async move { (key, reduce_one(&state, &chain, &volume, &one).await) }
            })
            .buffer_unordered(BATCH_OBJECTS_IN_FLIGHT);
        while let Some((key, r)) = results.next().await {
            objects += 1;
            let event = match r {
                Ok(reduction) => {
                    bytes_read += reduction.bytes_read;
                    BatchEvent::Result { key, reduction }
                }
                Err(e) => {
                    failed += 1;
                    BatchEvent::Error {
                        key,
                        code: e.code.to_string(),
                        message: e.message,
                    }
                }
            };
            if tx.send(event).await.is_err() {
                return; // the client went away
            }
        }
        let last = match lister.await {
            Ok(Ok(())) => BatchEvent::Done {
                objects,
                failed,
                bytes_read,
                elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            },
            Ok(Err(e)) => {
                let api = ApiError::from(e);
                BatchEvent::Fatal {
                    code: api.code.to_string(),
                    message: api.message,
                }
            }
            Err(e) => {
                let api = ApiError::internal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "listing the objects failed",
                    &e,
                );
                BatchEvent::Fatal {
                    code: api.code.to_string(),
                    message: api.message,
                }
            }
        };
        tracing::info!(volume = %req.volume, prefix = %req.prefix, objects, failed, "batch reduce done");
        let _ = tx.send(last).await;
    });
    let header = match format {
        BatchFormat::Csv => Some(Bytes::from(archway_compute::batch::csv_header())),
        BatchFormat::Ndjson => None,
    };
    let lines = channel_stream(rx).filter_map(move |event| async move {
        let line = match format {
            BatchFormat::Ndjson => {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                line
            }
            BatchFormat::Csv => archway_compute::batch::csv_row(&event)?,
        };
        Some(Ok::<_, std::convert::Infallible>(Bytes::from(line)))
    });
    let body = futures::stream::iter(header.map(Ok)).chain(lines);
    let content_type = match format {
        BatchFormat::Csv => "text/csv",
        BatchFormat::Ndjson => "application/x-ndjson",
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response())
}

//! The HTTP API: catalogue, principals, grants, health and metrics, as JSON over HTTP.
//!
//! Every `/api/v1` route but the OpenAPI description needs a bearer token; changes need the
//! admin role (users may manage their own keys and tokens). `/healthz` and `/metrics` are open,
//! for load balancers and Prometheus; they reveal no volume, key or user.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use archway_catalog::{
    Access, NewVolume, Principal, Subject, User, Volume, VolumePatch, VolumeQuery,
};
use archway_dataplane::Dataplane;

use crate::ServerConfig;
use crate::error::ApiError;
use crate::metrics::{Metrics, status_class};

/// The OpenAPI description served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<ServerConfig>,
}

/// An identity placed on a request by an in-process caller (the CLI working on a local data
/// directory, which owns the catalogue files anyway). Requests from the network cannot carry
/// request extensions, so this never comes from outside the process.
#[derive(Clone, Debug)]
pub struct LocalIdentity(pub Principal);

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl Caller {
    fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.0.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} needs the admin role; `{}` does not have it",
                self.0.user
            )))
        }
    }

    fn require_self_or_admin(&self, user: &str) -> Result<(), ApiError> {
        if self.0.admin || self.0.user == user {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "`{}` may manage only their own keys and tokens",
                self.0.user
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(LocalIdentity(p)) = parts.extensions.get::<LocalIdentity>() {
            return Ok(Caller(p.clone()));
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "this request needs an API token: send Authorization: Bearer <token>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        match state.dataplane.catalog().authenticate_token(token).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::unauthorized(
                "the API token is unknown, revoked or expired",
            )),
        }
    }
}

/// A JSON body parsed strictly: unknown fields and type errors are 400s naming the field.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> StrictJson<T> {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(None, "a JSON body is required"));
        }
        let mut unknown = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut on_unknown = |p: serde_ignored::Path| unknown.push(p.to_string());
        let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_unknown);
        let value: Result<T, _> = serde_path_to_error::deserialize(ignored);
        match value {
            Err(e) => {
                let field = e.path().to_string();
                let field = (field != ".").then_some(field);
                let inner = e.into_inner();
                let message = match &field {
                    Some(f) => format!("invalid body at `{f}`: {inner}"),
                    None => format!("invalid body: {inner}"),
                };
                Err(ApiError::bad_request(field, message))
            }
            Ok(v) => {
                if let Some(f) = unknown.into_iter().next() {
                    return Err(ApiError::bad_request(
                        Some(f.clone()),
                        format!("unknown field `{f}`"),
                    ));
                }
                if de.end().is_err() {
                    return Err(ApiError::bad_request(
                        None,
                        "trailing characters after the JSON body",
                    ));
                }
                Ok(StrictJson(v))
            }
        }
    }
}

impl<T: DeserializeOwned> axum::extract::FromRequest<AppState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.server.max_api_body_bytes).await?;
        Self::parse(&bytes)
    }
}

/// Reads a request body of at most `limit` bytes. A larger body is answered 413 — after
/// reading and discarding up to 16 times the limit, so the client hears the answer on a
/// connection that stays usable instead of a reset mid-upload.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(None, format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(16) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyTooLarge",
            format!("the body is larger than server.max_api_body_bytes ({limit})"),
        ));
    }
    Ok(Bytes::from(buf))
}

/// A volume as the API shows it: the record plus what the caller may do with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeView {
    #[serde(flatten)]
    pub volume: Volume,
    pub access: Access,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeList {
    pub volumes: Vec<VolumeView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserPatch {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub admin: Option<bool>,
    /// May create workspace volumes through S3 CreateBucket.
    #[serde(default)]
    pub create_workspaces: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewKey {
    #[serde(default)]
    pub description: String,
    /// Import an existing key pair instead of generating one (admins only).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewToken {
    #[serde(default)]
    pub name: String,
    /// Lifetime such as `30d` or `12h`; none means until revoked.
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantBody {
    pub level: Access,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct GrantQuery {
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// One line of a scan's NDJSON progress stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "event")]
pub enum ScanEvent {
    Progress { objects: u64, bytes: u64 },
    Done { scan: archway_catalog::ScanSummary },
    Error { code: String, message: String },
}

/// The full router: API, health and metrics, with auth, limits, timeouts and metrics applied.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/volumes", get(list_volumes).post(create_volume))
        .route(
            "/volumes/{id}",
            get(get_volume)
                .put(put_volume)
                .patch(patch_volume)
                .delete(delete_volume),
        )
        .route("/volumes/{id}/scan", post(scan_volume))
        .route("/volumes/{id}/grants", get(volume_grants))
        .route(
            "/volumes/{id}/grants/{subject}",
            put(put_grant).delete(delete_grant),
        )
        .route("/grants", get(list_grants))
        .route("/reduce", post(reduce))
        .route("/reduce/batch", post(reduce_batch))
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{name}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/users/{name}/keys", get(list_keys).post(create_key))
        .route("/users/{name}/keys/{id}", axum::routing::delete(delete_key))
        .route("/users/{name}/tokens", get(list_tokens).post(create_token))
        .route(
            "/users/{name}/tokens/{id}",
            axum::routing::delete(delete_token),
        )
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{name}", get(get_group).delete(delete_group))
        .route(
            "/groups/{name}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .fallback(api_not_found);
    let timeout = state.server.request_timeout;
    let concurrency = state.server.max_concurrent_requests;
    let front = crate::s3::S3Front {
        dataplane: state.dataplane.clone(),
        metrics: state.metrics.clone(),
    };
    let xml_limit = state.server.max_s3_xml_body_bytes;
    let s3 = match crate::s3::service(front.clone(), state.server.domain.as_deref(), xml_limit) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "virtual-hosted-style S3 disabled");
            crate::s3::service(front, None, xml_limit)
                .unwrap_or_else(|_| unreachable!("no domain, no error"))
        }
    };
    // Everything that is not an API route is S3 (volume ids never take a route's name).
    let s3_fallback = tower::service_fn(move |req: Request| {
        let mut s3 = s3.clone();
        async move {
            let response = match tower::Service::call(&mut s3, req).await {
                Ok(r) => r.map(Body::new),
                Err(e) => {
                    tracing::error!(error = ?e, "S3 service failed");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback_service(s3_fallback)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency))
        .with_state(state)
}

/// Counts and times every request by route template and status class.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let op = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => "s3".to_string(),
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .with_label_values(&[op.as_str(), status_class(status)])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[op.as_str()])
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(op = %op, status, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn with_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestTimeout",
            format!(
                "the request took longer than server.request_timeout ({})",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/v1/openapi.json")
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.dataplane.catalog().ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(cache) = state.dataplane.cache() {
        let held = cache.memory_bytes().await;
        state
            .metrics
            .observe_cache(cache.stats(), held, cache.disk_bytes());
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn whoami(caller: Caller, State(state): State<AppState>) -> Result<Json<User>, ApiError> {
    Ok(Json(
        state.dataplane.catalog().get_user(&caller.0.user).await?,
    ))
}

// ----- volumes -----

async fn list_volumes(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<VolumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VolumeList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let found = state
        .dataplane
        .catalog()
        .list_volumes(Some(&caller.0), &query)
        .await?;
    Ok(Json(VolumeList {
        volumes: found
            .into_iter()
            .map(|(volume, access)| VolumeView { volume, access })
            .collect(),
    }))
}

/// The caller's view of one volume; a volume the caller may not see is reported missing.
async fn visible_volume(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<VolumeView, ApiError> {
    let catalog = state.dataplane.catalog();
    let volume = catalog.get_volume(id).await?;
    match catalog.access(Some(&caller.0), &volume).await? {
        Some(access) => Ok(VolumeView { volume, access }),
        None => Err(ApiError::not_found(format!("volume `{id}` does not exist"))),
    }
}

async fn get_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VolumeView>, ApiError> {
    Ok(Json(visible_volume(&state, &caller, &id).await?))
}

fn check_backend(state: &AppState, backend: &str) -> Result<(), ApiError> {
    if state.dataplane.has_backend(backend) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            Some("backend".into()),
            format!("no backend named `{backend}` is configured on this gateway"),
        ))
    }
}

async fn create_volume(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewVolume>,
) -> Result<Response, ApiError> {
    caller.require_admin("creating a volume")?;
    check_backend(&state, &new.backend)?;
    let v = state.dataplane.catalog().create_volume(new).await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, "volume created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/volumes/{}", v.id))],
        Json(VolumeView {
            volume: v,
            access: Access::Admin,
        }),
    )
        .into_response())
}

/// Creates the volume named in the path, or replaces its description whole.
async fn put_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require_admin("creating or replacing a volume")?;
    let body = read_body(req, state.server.max_api_body_bytes).await?;
    let mut value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(None, format!("invalid JSON body: {e}")))?;
    match value.as_object_mut() {
        Some(obj) => match obj.get("id") {
            Some(serde_json::Value::String(body_id)) if *body_id != id => {
                return Err(ApiError::bad_request(
                    Some("id".into()),
                    format!("the body's id `{body_id}` differs from the path's `{id}`"),
                ));
            }
            _ => {
                obj.insert("id".into(), serde_json::Value::String(id.clone()));
            }
        },
        None => {
            return Err(ApiError::bad_request(
                None,
                "the body must be a JSON object",
            ));
        }
    }
    let bytes =
        serde_json::to_vec(&value).map_err(|e| ApiError::bad_request(None, e.to_string()))?;
    let StrictJson(new) = StrictJson::<NewVolume>::parse(&bytes)?;
    check_backend(&state, &new.backend)?;
    let (v, created) = state.dataplane.catalog().upsert_volume(new).await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, created, "volume put");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(VolumeView {
            volume: v,
            access: Access::Admin,
        }),
    )
        .into_response())
}

async fn patch_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    StrictJson(patch): StrictJson<VolumePatch>,
) -> Result<Json<VolumeView>, ApiError> {
    caller.require_admin("changing a volume")?;
    if let Some(b) = &patch.backend {
        check_backend(&state, b)?;
    }
    let v = state.dataplane.catalog().update_volume(&id, patch).await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, "volume updated");
    Ok(Json(VolumeView {
        volume: v,
        access: Access::Admin,
    }))
}

/// Removes the catalogue record (and its grants); the data in the backend is left untouched.
async fn delete_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("removing a volume")?;
    state.dataplane.catalog().delete_volume(&id).await?;
    tracing::info!(volume = %id, by = %caller.0.user, "volume removed from the catalogue");
    Ok(StatusCode::NO_CONTENT)
}

/// Walks the volume and records its size; answers a stream of NDJSON [`ScanEvent`]s.
/// A forwarded reduction's failure, in this gateway's words: client errors keep their status
/// (the file is bad, the HDU is missing); a peer that cannot serve is a bad gateway here.
fn peer_error(
    req: &archway_compute::ReduceRequest,
    peer: &archway_dataplane::PeerLocation,
    e: crate::ClientError,
) -> ApiError {
    let message = format!(
        "`{}` in volume `{}`: the peer gateway {} ",
        req.key, req.volume, peer.url
    );
    match e {
        crate::ClientError::Api {
            status, message: m, ..
        } => {
            let status = if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            ApiError::new(status, "PeerError", format!("{message}answered: {m}"))
        }
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "PeerUnreachable",
            format!("{message}could not compute: {other}"),
        ),
    }
}

/// The request as the peer names it, and a client with the token configured for the peer
/// (without one the peer cannot be asked — and the data is not pulled here instead).
fn peer_request(
    req: &archway_compute::ReduceRequest,
    peer: &archway_dataplane::PeerLocation,
) -> Result<(crate::client::ApiClient, archway_compute::ReduceRequest), ApiError> {
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
    let forwarded = archway_compute::ReduceRequest {
        volume: peer.volume.clone(),
        key: peer.key.clone(),
        ..req.clone()
    };
    let client = crate::client::ApiClient::remote(&peer.url, Some(token.clone())).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "BackendMisconfigured",
            e.to_string(),
        )
    })?;
    Ok((client, forwarded))
}

/// Sends a reduction to the peer gateway that holds the data; the peer's refusal or failure
/// is reported as such.
async fn forward_reduce(
    req: &archway_compute::ReduceRequest,
    peer: &archway_dataplane::PeerLocation,
) -> Result<archway_compute::Reduction, ApiError> {
    let (client, forwarded) = peer_request(req, peer)?;
    let mut r: archway_compute::Reduction = client
        .json(http::Method::POST, "/api/v1/reduce", Some(&forwarded))
        .await
        .map_err(|e| peer_error(req, peer, e))?;
    r.site = Some(peer.url.clone());
    r.bytes_returned = 0;
    Ok(r)
}

/// An array answer (cutout, bin) computed by the peer, streamed through as it arrives, with
/// its X-Archway-* headers and the peer named in X-Archway-Site.
async fn forward_array(
    req: &archway_compute::ReduceRequest,
    peer: &archway_dataplane::PeerLocation,
) -> Result<Response, ApiError> {
    let (client, forwarded) = peer_request(req, peer)?;
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

/// One object's reduction, here or (for a volume on a peer gateway) at the peer.
async fn reduce_one(
    state: &AppState,
    handle: &archway_dataplane::VolumeHandle,
    req: &archway_compute::ReduceRequest,
) -> Result<archway_compute::Reduction, ApiError> {
    archway_dataplane::key::parse_key(&req.key)?;
    match state.dataplane.peer_location(&handle.volume, &req.key) {
        // The data is at another site: the peer reduces it, only its answer travels.
        Some(peer) => forward_reduce(req, &peer).await,
        None => archway_compute::run(handle.store().clone(), req)
            .await
            .map_err(|e| ApiError::compute(&req.volume, &req.key, e)),
    }
}

/// Objects reduced at once by a batch (each also uses every core for its own chunks).
const BATCH_OBJECTS_IN_FLIGHT: usize = 4;

/// `POST /api/v1/reduce/batch`: every object under a prefix matching a glob, reduced in
/// parallel; the answer streams one NDJSON event (or CSV row) per object as it finishes, then
/// a summary. One object's failure is its own line; the batch goes on.
async fn reduce_batch(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(req): StrictJson<archway_compute::BatchRequest>,
) -> Result<Response, ApiError> {
    use archway_compute::BatchEvent;
    if req.glob.as_ref().is_some_and(|g| g.len() > 1024) {
        return Err(ApiError::bad_request(
            Some("glob".into()),
            "the glob is longer than 1024 characters",
        ));
    }
    if matches!(
        req.op,
        archway_compute::Op::Cutout | archway_compute::Op::Bin
    ) {
        return Err(ApiError::bad_request(
            Some("op".into()),
            "cutouts and binning answer arrays: ask for them one object at a time",
        ));
    }
    archway_dataplane::key::check_prefix(&req.prefix)?;
    let handle = state
        .dataplane
        .open(Some(&caller.0), &req.volume, archway_dataplane::Op::List)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<BatchEvent>(64);
    let principal = caller.0.clone();
    let format = req.format;
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (keys_tx, keys_rx) = tokio::sync::mpsc::channel::<String>(1024);
        // Listing runs ahead of the reductions, a page at a time.
        let lister = {
            let (state, req, principal) = (state.clone(), req.clone(), principal.clone());
            tokio::spawn(async move {
                let mut page = archway_dataplane::ListRequest {
                    prefix: req.prefix.clone(),
                    ..Default::default()
                };
                loop {
                    let got = state
                        .dataplane
                        .list(Some(&principal), &req.volume, &page)
                        .await?;
                    for o in got.objects {
                        if req.selects(&o.key) && keys_tx.send(o.key).await.is_err() {
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
        let mut results = tokio_stream_from(keys_rx)
            .map(|key| {
                let (state, handle, one) = (state.clone(), handle.clone(), req.for_key(&key));
                async move { (key, reduce_one(&state, &handle, &one).await) }
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
            Err(e) => BatchEvent::Fatal {
                code: "InternalError".into(),
                message: e.to_string(),
            },
        };
        tracing::info!(volume = %req.volume, prefix = %req.prefix, objects, failed, "batch reduce done");
        let _ = tx.send(last).await;
    });
    let header = match format {
        archway_compute::BatchFormat::Csv => {
            Some(Bytes::from_static(archway_compute::csv_header().as_bytes()))
        }
        archway_compute::BatchFormat::Ndjson => None,
    };
    let lines = tokio_stream_from(rx).filter_map(move |event| async move {
        let line = match format {
            archway_compute::BatchFormat::Ndjson => {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                line
            }
            archway_compute::BatchFormat::Csv => archway_compute::csv_row(&event)?.into_bytes(),
        };
        Some(Ok::<_, std::convert::Infallible>(Bytes::from(line)))
    });
    let body = futures::stream::iter(header.map(Ok)).chain(lines);
    let content_type = match format {
        archway_compute::BatchFormat::Csv => "text/csv",
        archway_compute::BatchFormat::Ndjson => "application/x-ndjson",
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /api/v1/reduce`: decode and reduce one object where it lies; the answer says which
/// engine ran and how many bytes were read and returned.
async fn reduce(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(req): StrictJson<archway_compute::ReduceRequest>,
) -> Result<Response, ApiError> {
    let handle = state
        .dataplane
        .open(Some(&caller.0), &req.volume, archway_dataplane::Op::Get)
        .await?;
    if matches!(
        req.op,
        archway_compute::Op::Cutout | archway_compute::Op::Bin
    ) && let Some(peer) = state.dataplane.peer_location(&handle.volume, &req.key)
    {
        archway_dataplane::key::parse_key(&req.key)?;
        return forward_array(&req, &peer).await;
    }
    let mut r = reduce_one(&state, &handle, &req).await?;
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
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
        if r.bytes_returned == body.len() as u64 {
            break;
        }
        r.bytes_returned = body.len() as u64;
    }
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn scan_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Fail before the stream starts for the common refusals, so they get proper statuses.
    visible_volume(&state, &caller, &id).await?;
    caller.require_admin("scanning a volume")?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ScanEvent>(16);
    let dataplane = state.dataplane.clone();
    let principal = caller.0.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = dataplane
            .scan(Some(&principal), &id, move |objects, bytes| {
                // Progress is advisory: drop it rather than wait when the client is slow.
                let _ = progress_tx.try_send(ScanEvent::Progress { objects, bytes });
            })
            .await;
        let last = match result {
            Ok(scan) => {
                tracing::info!(volume = %id, objects = scan.objects, bytes = scan.bytes, "scan done");
                ScanEvent::Done { scan }
            }
            Err(e) => {
                let api = ApiError::from(e);
                ScanEvent::Error {
                    code: api.code.to_string(),
                    message: api.message,
                }
            }
        };
        let _ = tx.send(last).await;
    });
    let lines = tokio_stream_from(rx).map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(lines),
    )
        .into_response())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ----- grants -----

fn parse_subject(s: &str) -> Result<Subject, ApiError> {
    Subject::parse(s).map_err(|e| ApiError::bad_request(Some("subject".into()), e.to_string()))
}

async fn volume_grants(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin("listing grants")?;
    state.dataplane.catalog().get_volume(&id).await?;
    let grants = state
        .dataplane
        .catalog()
        .list_grants(Some(&id), None)
        .await?;
    Ok(Json(serde_json::json!({ "grants": grants })))
}

async fn list_grants(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin("listing grants")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let subject = q.subject.as_deref().map(parse_subject).transpose()?;
    let grants = state
        .dataplane
        .catalog()
        .list_grants(q.volume.as_deref(), subject.as_ref())
        .await?;
    Ok(Json(serde_json::json!({ "grants": grants })))
}

async fn put_grant(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
    StrictJson(body): StrictJson<GrantBody>,
) -> Result<Response, ApiError> {
    caller.require_admin("granting access")?;
    let subject = parse_subject(&subject)?;
    let grant = state
        .dataplane
        .catalog()
        .grant(&subject, &id, body.level)
        .await?;
    tracing::info!(volume = %id, subject = %subject, level = %body.level, by = %caller.0.user, "granted");
    Ok(Json(grant).into_response())
}

async fn delete_grant(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("revoking access")?;
    let subject = parse_subject(&subject)?;
    state.dataplane.catalog().revoke(&subject, &id).await?;
    tracing::info!(volume = %id, subject = %subject, by = %caller.0.user, "revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ----- users, keys, tokens -----

async fn list_users(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin("listing users")?;
    let users = state.dataplane.catalog().list_users().await?;
    Ok(Json(serde_json::json!({ "users": users })))
}

async fn create_user(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewUser>,
) -> Result<Response, ApiError> {
    caller.require_admin("creating a user")?;
    let user = state
        .dataplane
        .catalog()
        .create_user(&new.name, &new.display_name, new.admin)
        .await?;
    tracing::info!(user = %user.name, admin = user.admin, by = %caller.0.user, "user created");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn get_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    caller.require_self_or_admin(&name)?;
    Ok(Json(state.dataplane.catalog().get_user(&name).await?))
}

async fn patch_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(patch): StrictJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    caller.require_admin("changing a user")?;
    let user = state
        .dataplane
        .catalog()
        .update_user(
            &name,
            patch.display_name.as_deref(),
            patch.admin,
            patch.create_workspaces,
        )
        .await?;
    Ok(Json(user))
}

async fn delete_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("removing a user")?;
    if name == caller.0.user {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            "an admin may not remove themselves",
        ));
    }
    state.dataplane.catalog().delete_user(&name).await?;
    tracing::info!(user = %name, by = %caller.0.user, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_self_or_admin(&name)?;
    state.dataplane.catalog().get_user(&name).await?;
    let keys = state
        .dataplane
        .catalog()
        .list_access_keys(Some(&name))
        .await?;
    Ok(Json(serde_json::json!({ "keys": keys })))
}

async fn create_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(new): StrictJson<NewKey>,
) -> Result<Response, ApiError> {
    caller.require_self_or_admin(&name)?;
    let catalog = state.dataplane.catalog();
    let key = match (new.access_key_id, new.secret_access_key) {
        (None, None) => catalog.create_access_key(&name, &new.description).await?,
        (Some(id), Some(secret)) => {
            caller.require_admin("importing a key pair")?;
            catalog
                .import_access_key(&name, &id, &secret, &new.description)
                .await?
        }
        _ => {
            return Err(ApiError::bad_request(
                Some("secret_access_key".into()),
                "access_key_id and secret_access_key go together",
            ));
        }
    };
    tracing::info!(user = %name, access_key_id = %key.key.access_key_id, by = %caller.0.user, "access key created");
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

async fn delete_key(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_self_or_admin(&name)?;
    let catalog = state.dataplane.catalog();
    let key = catalog.get_access_key(&id).await?;
    if key.user != name {
        return Err(ApiError::not_found(format!(
            "access key `{id}` does not exist"
        )));
    }
    catalog.delete_access_key(&id).await?;
    tracing::info!(user = %name, access_key_id = %id, by = %caller.0.user, "access key revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_self_or_admin(&name)?;
    state.dataplane.catalog().get_user(&name).await?;
    let tokens = state.dataplane.catalog().list_tokens(Some(&name)).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

async fn create_token(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(new): StrictJson<NewToken>,
) -> Result<Response, ApiError> {
    caller.require_self_or_admin(&name)?;
    let ttl = new
        .ttl
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(Some("ttl".into()), format!("invalid ttl: {e}")))?;
    let token = state
        .dataplane
        .catalog()
        .create_token(&name, &new.name, ttl)
        .await?;
    tracing::info!(user = %name, token = %token.token.id, by = %caller.0.user, "token created");
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

async fn delete_token(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_self_or_admin(&name)?;
    let catalog = state.dataplane.catalog();
    let owned = catalog
        .list_tokens(Some(&name))
        .await?
        .iter()
        .any(|t| t.id == id);
    if !owned {
        return Err(ApiError::not_found(format!("token `{id}` does not exist")));
    }
    catalog.delete_token(&id).await?;
    tracing::info!(user = %name, token = %id, by = %caller.0.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ----- groups -----

async fn list_groups(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin("listing groups")?;
    let groups = state.dataplane.catalog().list_groups().await?;
    Ok(Json(serde_json::json!({ "groups": groups })))
}

async fn create_group(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewGroup>,
) -> Result<Response, ApiError> {
    caller.require_admin("creating a group")?;
    let group = state
        .dataplane
        .catalog()
        .create_group(&new.name, &new.description)
        .await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

async fn get_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_admin("reading a group")?;
    Ok(Json(state.dataplane.catalog().get_group(&name).await?).into_response())
}

async fn delete_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("removing a group")?;
    state.dataplane.catalog().delete_group(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require_admin("changing a group")?;
    Ok(Json(state.dataplane.catalog().add_member(&name, &user).await?).into_response())
}

async fn remove_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require_admin("changing a group")?;
    Ok(Json(
        state
            .dataplane
            .catalog()
            .remove_member(&name, &user)
            .await?,
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_names_fields() {
        let err = StrictJson::<NewVolume>::parse(br#"{"id": "x", "backend": "b", "tags": [1]}"#)
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.field.as_deref(), Some("tags[0]"));
        let err = StrictJson::<NewVolume>::parse(br#"{"id": "x", "backend": "b", "titel": "t"}"#)
            .err()
            .unwrap();
        assert_eq!(err.field.as_deref(), Some("titel"));
        assert!(err.message.contains("unknown field"));
        let err = StrictJson::<NewVolume>::parse(br#"{"title": "t"}"#)
            .err()
            .unwrap();
        assert!(
            err.message.contains("missing field `id`"),
            "{}",
            err.message
        );
        assert!(StrictJson::<NewVolume>::parse(b"").is_err());
        assert!(StrictJson::<NewVolume>::parse(br#"{"id":"x","backend":"b"} x"#).is_err());
        assert!(
            StrictJson::<NewVolume>::parse(br#"{"id":"x","backend":"b","licence":"MIT"}"#).is_ok()
        );
    }

    #[test]
    fn the_openapi_description_is_json_and_covers_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            "/healthz",
            "/metrics",
            "/api/v1/openapi.json",
            "/api/v1/whoami",
            "/api/v1/volumes",
            "/api/v1/volumes/{id}",
            "/api/v1/volumes/{id}/scan",
            "/api/v1/volumes/{id}/grants",
            "/api/v1/volumes/{id}/grants/{subject}",
            "/api/v1/grants",
            "/api/v1/reduce",
            "/api/v1/reduce/batch",
            "/api/v1/users",
            "/api/v1/users/{name}",
            "/api/v1/users/{name}/keys",
            "/api/v1/users/{name}/keys/{id}",
            "/api/v1/users/{name}/tokens",
            "/api/v1/users/{name}/tokens/{id}",
            "/api/v1/groups",
            "/api/v1/groups/{name}",
            "/api/v1/groups/{name}/members/{user}",
        ] {
            assert!(paths.contains_key(route), "openapi.json lacks {route}");
        }
        assert_eq!(paths.len(), 21, "openapi.json has routes the router lacks");
    }
}

//! The HTTP API: catalogue, principals, grants, reductions, health and metrics, as JSON.
//!
//! Handlers only translate: they authenticate the caller ([`crate::auth`]), parse the request
//! ([`crate::body`]), call the dataplane — which decides what the caller may do — and map its
//! answer ([`crate::error`]). Every `/api/v1` route but the OpenAPI description needs a bearer
//! token. `/healthz` and `/metrics` are open, for load balancers and Prometheus; they reveal
//! no volume, key or user. The OpenAPI description is generated from the handlers themselves
//! (utoipa): a route cannot exist without its description.

mod peers;
mod principals;
pub(crate) mod reduce;
mod science;
mod volumes;

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_catalog::{Access, User, Volume};

use crate::auth::Caller;
use crate::client_addr::{ClientAddr, PeerAddr};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::status_class;

pub use crate::state::AppState;
pub use archway_catalog::UserPatch;
pub use principals::{GrantBody, NewGroup, NewKey, NewToken, NewUser};
pub use volumes::{GrantQuery, ScanEvent};

/// A volume as the API shows it: the record plus what the caller may do with it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeView {
    #[serde(flatten)]
    pub volume: Volume,
    /// What the caller may do with the volume.
    pub access: Access,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeList {
    pub volumes: Vec<VolumeView>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Archway HTTP API",
        version = "1",
        description = "Volume catalogue, principals, grants and reductions of an Archway \
                       gateway. Every /api/v1 route except this description needs \
                       `Authorization: Bearer <token>`; what a caller may do is decided by the \
                       gateway's access rules (changes to the catalogue need the admin role). \
                       Errors are {\"error\": {\"code\", \"message\", \"field\"?, \"request_id\"?}}."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The documented routes: `/api/v1/…`, `/healthz` and `/metrics`.
fn documented() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(openapi))
        .routes(routes!(whoami))
        .merge(volumes::routes())
        .merge(principals::routes())
        .merge(peers::routes())
        .merge(reduce::routes())
        .merge(science::routes())
        .fallback(api_not_found);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .nest("/api/v1", api)
}

/// The OpenAPI description, as served at `/api/v1/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// The full router: API, health and metrics, with auth, limits, timeouts and metrics applied;
/// every other path goes to the S3 front.
pub fn router(state: AppState) -> axum::Router {
    let timeout = state.server.request_timeout;
    let concurrency = state.server.max_concurrent_requests;
    let s3 = crate::s3::fallback(state.clone());
    let (router, doc) = documented().split_for_parts();
    let doc = std::sync::Arc::new(doc.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI description does not serialize");
        "{}".to_string()
    }));
    router
        .merge(crate::stac::routes())
        .merge(crate::sia::routes())
        .merge(crate::ui::routes())
        .fallback_service(s3)
        .layer(middleware::from_fn(crate::ui::browser_root))
        .layer(axum::Extension(OpenApiJson(doc)))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::layer,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), client_addr))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency))
        .layer(middleware::from_fn(close_unread_continue))
        .with_state(state)
}

/// The most of a refused request's unread body that is read (and dropped) so that the client,
/// still sending it, gets the answer rather than a broken connection.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;
/// How long such a body may take to arrive.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Settles a request body the handler did not read before its final answer (HTTP/1.1).
///
/// - `Expect: 100-continue`: the client got no `100 Continue`, so it sends no body (botocore,
///   curl) and may send its next request on the same connection. hyper would still drain the
///   announced body length from the connection, eating the start of that next request (a
///   `HEAD` after a 3-byte PUT answered 412 arrived as method `D`). `Connection: close` makes
///   both sides start afresh, as S3 and nginx do.
/// - Otherwise the client is sending the body while the answer (a refusal: a read-only
///   volume, a wrong signature) is written; hyper would close the connection's read side and
///   the client, still writing, would see a broken pipe instead of the answer (rclone did). A
///   body of at most 8 MiB is read to its end first (within 10 s); a larger one, or a slower
///   one, gets `Connection: close`.
///
/// HTTP/2 has no such state and no `Connection` header.
async fn close_unread_continue(req: Request, next: Next) -> Response {
    // Most requests (GET, HEAD, listings) have no body: nothing to settle, nothing to wrap.
    if req.version() != axum::http::Version::HTTP_11 || http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shared = std::sync::Arc::new(std::sync::Mutex::new(None::<Body>));
    let req = req.map(|body| {
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
        Body::new(Watched {
            inner: shared.clone(),
            asked: asked.clone(),
        })
    });
    let mut response = next.run(req).await;
    let left = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut left) = left.filter(|b| !http_body::Body::is_end_stream(b)) else {
        return response;
    };
    let close = if expects_continue {
        !asked.load(std::sync::atomic::Ordering::Acquire)
    } else {
        let small = http_body::Body::size_hint(&left)
            .upper()
            .is_some_and(|n| n <= DRAIN_LIMIT);
        !(small && drained(&mut left).await)
    };
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end (at most [`DRAIN_LIMIT`] bytes, within [`DRAIN_TIME`]); whether it
/// ended.
async fn drained(body: &mut Body) -> bool {
    use http_body_util::BodyExt;
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_LIMIT {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

/// A request body the handler reads through, leaving what it did not read to
/// [`close_unread_continue`]; notes whether anyone asked it for data (which makes hyper send
/// `100 Continue`).
struct Watched {
    inner: std::sync::Arc<std::sync::Mutex<Option<Body>>>,
    asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl axum::body::HttpBody for Watched {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.asked.store(true, std::sync::atomic::Ordering::Release);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// The serialized OpenAPI description, made once.
#[derive(Clone, Debug)]
struct OpenApiJson(std::sync::Arc<String>);

/// Resolves who the client is ([`crate::client_addr`]) for everything after it: the
/// connection's peer, or the address a trusted proxy names.
async fn client_addr(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() {
        let client =
            crate::client_addr::resolve(peer.ip(), req.headers(), &state.server.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

/// Counts and times every request by route template and status class; with
/// `server.access_log`, logs it with its client.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let op = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => "s3".to_string(),
    };
    let access = state.server.access_log.then(|| {
        (
            req.extensions().get::<ClientAddr>().copied(),
            req.method().clone(),
            // The path only: a presigned URL's query holds its signature.
            req.uri().path().to_string(),
        )
    });
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if let Some((client, method, path)) = access {
        let client = client.map_or_else(|| "-".to_string(), |c| c.to_string());
        tracing::info!(
            target: "archway::access",
            client = %client,
            method = %method,
            path = %path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
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

/// Whether the gateway can serve: its catalogue answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The gateway serves", body = serde_json::Value,
         example = json!({"status": "ok"})),
        (status = 503, description = "The catalogue is unreachable", body = serde_json::Value),
    )
)]
async fn healthz(State(state): State<AppState>) -> Response {
    match state.dataplane.catalog().ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            let id = crate::error::request_id();
            tracing::error!(request_id = %id, error = %e, "health check: the catalogue is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "unavailable",
                    "reason": "the catalogue is unreachable",
                    "request_id": id,
                })),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics (text exposition format); `doc/metrics.md` lists them.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.observe_audit(state.audit.dropped());
    let usage = match state.dataplane.catalog().total_workspace_usage().await {
        Ok((_, bytes, objects)) => Some((bytes, objects)),
        Err(e) => {
            tracing::warn!(error = %e, "workspace usage not read for the metrics");
            None
        }
    };
    state
        .metrics
        .observe_quotas(&state.dataplane.quota_refusals(), usage);
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

/// This description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description", body = serde_json::Value))
)]
async fn openapi(axum::Extension(doc): axum::Extension<OpenApiJson>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(doc.0.as_str().to_string()),
    )
        .into_response()
}

/// The caller's own user record.
#[utoipa::path(
    get,
    path = "/whoami",
    tag = "principals",
    responses(
        (status = 200, body = User),
        (status = 401, body = ErrorBody),
    )
)]
async fn whoami(caller: Caller, State(state): State<AppState>) -> Result<Json<User>, ApiError> {
    Ok(Json(
        state.dataplane.user(caller.who(), &caller.0.user).await?,
    ))
}

/// Turns a channel into a stream of its messages.
fn channel_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router serves is described, and nothing else: the description is made
    /// from the same handlers, so this lists what a client can rely on.
    #[test]
    fn the_openapi_description_covers_every_route() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut routes: Vec<&str> = paths.keys().map(String::as_str).collect();
        routes.sort_unstable();
        let mut expected = vec![
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
            "/api/v1/science",
            "/api/v1/users",
            "/api/v1/users/{name}",
            "/api/v1/users/{name}/keys",
            "/api/v1/users/{name}/keys/{id}",
            "/api/v1/users/{name}/tokens",
            "/api/v1/users/{name}/tokens/{id}",
            "/api/v1/groups",
            "/api/v1/groups/{name}",
            "/api/v1/groups/{name}/members/{user}",
            "/api/v1/peers",
            "/api/v1/peers/{name}",
            "/api/v1/peers/{name}/refresh",
        ];
        expected.sort_unstable();
        assert_eq!(routes, expected);
        // Every operation says what it answers, errors included.
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} documents no answer");
                if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
                    assert!(
                        responses.contains_key("401"),
                        "{method} {path} does not document 401"
                    );
                }
            }
        }
        for schema in [
            "Volume",
            "NewVolume",
            "VolumePatch",
            "User",
            "ReduceRequest",
            "Reduction",
            "Error",
        ] {
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "no schema {schema}"
            );
        }
    }
}

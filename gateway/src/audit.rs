//! The S3 and API fronts' side of the audit trail (`archway_dataplane::audit`).
//!
//! [`layer`] wraps every request but `/healthz` and `/metrics`: it notes where the request
//! came from and how it authenticated, runs it with a pending record in a task-local slot that
//! the code serving it fills ([`note_principal`] from authentication, [`note_op`] and
//! [`note_target`] from the S3 operation or API handler), counts the request's and the
//! answer's bytes, and hands the record to the trail when the answer's last byte has gone (or
//! the client went away). A refused request (401, 403) also counts in
//! `archway_requests_denied_total{front, reason}`, the reason being the error code the client
//! got — whether the trail is on or not.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use archway_catalog::Principal;
use archway_dataplane::audit::AuditRecord;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::client_addr::ClientAddr;
use crate::state::AppState;

/// What the code serving a request tells the trail.
#[derive(Debug, Default)]
struct Pending {
    op: Option<String>,
    principal: Option<String>,
    auth: &'static str,
    volume: Option<String>,
    key: Option<String>,
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<Pending>>;
}

fn with(f: impl FnOnce(&mut Pending)) {
    let _ = CURRENT.try_with(|slot| {
        if let Ok(mut p) = slot.lock() {
            f(&mut p)
        }
    });
}

/// The request authenticated as `p`, by `auth` (`bearer`, `local`; S3 requests keep the kind
/// their signature shows).
pub fn note_principal(p: &Principal, auth: Option<&'static str>) {
    with(|s| {
        s.principal = Some(p.user.clone());
        if let Some(auth) = auth {
            s.auth = auth;
        }
    });
}

/// The operation's name (S3: `GetObject`; the API's is its route unless noted).
pub fn note_op(op: &str) {
    with(|s| s.op = Some(op.to_string()));
}

/// How the request tries to authenticate, before it is known whether it does.
pub fn note_auth(auth: &'static str) {
    with(|s| s.auth = auth);
}

/// The volume and object the request is about.
pub fn note_target(volume: &str, key: Option<&str>) {
    with(|s| {
        if !volume.is_empty() {
            s.volume = Some(volume.to_string());
        }
        s.key = key.filter(|k| !k.is_empty()).map(str::to_string);
    });
}

/// How a request says it authenticates, from its headers and query alone (never their values).
fn auth_kind(headers: &HeaderMap, query: Option<&str>, api: bool) -> &'static str {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let session = headers.contains_key("x-amz-security-token")
        || query.is_some_and(|q| q.contains("X-Amz-Security-Token="));
    if authorization.starts_with(b"AWS4-HMAC-SHA256") {
        if session { "sigv4-session" } else { "sigv4" }
    } else if query.is_some_and(|q| q.contains("X-Amz-Signature=")) {
        if session {
            "sigv4-presigned-session"
        } else {
            "sigv4-presigned"
        }
    } else if authorization.starts_with(b"AWS ") {
        "sigv2"
    } else if api && !authorization.is_empty() {
        "bearer"
    } else {
        "anonymous"
    }
}

/// The volume a route of the API, the web pages or STAC is about: `/api/v1/volumes/{id}/…`,
/// `/ui/volumes/{id}/…`, `/stac/collections/{id}/…` (a collection is a volume).
fn api_volume(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/api/v1/volumes/")
        .or_else(|| path.strip_prefix("/ui/volumes/"))
        .or_else(|| path.strip_prefix("/stac/collections/"))?;
    rest.split('/').next().filter(|v| !v.is_empty())
}

/// The middleware; see the module's description.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/metrics" {
        return next.run(req).await;
    }
    // The HTTP API, and the discovery APIs (STAC, SIA) that take its bearer tokens and answer
    // its errors; each is its own front in the trail and the metrics.
    let stac = path == "/stac" || path.starts_with("/stac/");
    let sia = path == "/sia" || path.starts_with("/sia/");
    let api = path.starts_with("/api/") || stac || sia;
    let front = if stac {
        "stac"
    } else if sia {
        "sia"
    } else if api {
        "api"
    } else if path == "/ui" || path.starts_with("/ui/") {
        "ui"
    } else {
        "s3"
    };
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    // A source that failed to authenticate too often waits before trying credentials again
    // (`auth_limit.rs`); STS's exchange (`POST /`) carries its credential in the body.
    let auth = auth_kind(req.headers(), req.uri().query(), api);
    let tries_credentials =
        auth != "anonymous" || (req.method() == axum::http::Method::POST && path == "/");
    let wait = client
        .filter(|_| tries_credentials)
        .and_then(|ip| state.auth_limit.wait(ip));
    if !state.audit.enabled() {
        // Without a trail nothing is noted (the serving code's notes find no slot and cost
        // nothing); refusals are still counted.
        let response = match wait {
            Some(wait) => throttled(&state, front, api, wait),
            None => next.run(req).await,
        };
        return count_refusal(&state, front, client, response).await;
    }
    let path = path.to_string();
    let started = Instant::now();
    let pending = Pending {
        auth,
        op: req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| format!("{} {}", req.method(), m.as_str())),
        volume: (front != "s3")
            .then(|| api_volume(&path))
            .flatten()
            .map(str::to_string),
        ..Default::default()
    };
    let source = req.extensions().get::<ClientAddr>().map(|c| c.to_string());
    let slot = Arc::new(Mutex::new(pending));
    let bytes_in = Arc::new(AtomicU64::new(0));
    let counter = bytes_in.clone();
    let req = req.map(|body| {
        Body::new(Counted {
            inner: body,
            seen: 0,
            on_end: Some(Box::new(move |n| {
                counter.store(n, Ordering::Relaxed);
            })),
        })
    });
    // One id for the request: an API error body's `request_id` is this one (S3 requests get
    // theirs from the S3 front, as `x-amz-request-id`).
    let id = crate::error::fresh_request_id();
    let response = match wait {
        Some(wait) => throttled(&state, front, api, wait),
        None => {
            let served = CURRENT.scope(slot.clone(), next.run(req));
            crate::error::serving(id.clone(), served).await
        }
    };
    let status = response.status();
    let mut response = count_refusal(&state, front, client, response).await;
    let request_id = match response.headers().get("x-amz-request-id") {
        Some(s3_id) => s3_id.to_str().unwrap_or_default().to_string(),
        None => {
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-request-id", v);
            }
            id
        }
    };
    let mut p = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
    if front == "s3" && p.volume.is_none() {
        // Refused before an operation began (a bad signature): the path still names them.
        match s3s::path::parse_path_style(&path) {
            Ok(s3s::path::S3Path::Bucket { bucket }) => p.volume = Some(bucket.into()),
            Ok(s3s::path::S3Path::Object { bucket, key }) => {
                p.volume = Some(bucket.into());
                p.key = Some(key.into());
            }
            _ => {}
        }
    }
    let mut record = AuditRecord {
        time: String::new(),
        request_id,
        front: front.to_string(),
        op: p.op.unwrap_or_else(|| "-".to_string()),
        principal: p.principal,
        auth: p.auth.to_string(),
        source,
        volume: p.volume,
        key: p.key,
        bytes_in: 0,
        bytes_out: 0,
        status: status.as_u16(),
        duration_ms: 0.0,
    };
    let log = state.audit.clone();
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            seen: 0,
            on_end: Some(Box::new(move |n| {
                record.bytes_out = n;
                record.bytes_in = bytes_in.load(Ordering::Relaxed);
                record.duration_ms = AuditRecord::millis_since(started);
                record.time = AuditRecord::now();
                log.record(record);
            })),
        })
    })
}

/// Refusals of a credential that S3 and STS answer with 400 rather than 401/403.
const CREDENTIAL_REFUSALS_400: &[&str] = &[
    "ExpiredToken",
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "IDPRejectedClaim",
];

/// Counts a refusal (401, 403, and the 400s that refuse a credential) in
/// `archway_requests_denied_total` by its error code, and a failed authentication against
/// `client`'s allowance.
async fn count_refusal(
    state: &AppState,
    front: &str,
    client: Option<std::net::IpAddr>,
    response: Response,
) -> Response {
    let status = response.status();
    let bad_request = status == StatusCode::BAD_REQUEST;
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN && !bad_request {
        return response;
    }
    let (reason, response) = error_code(response).await;
    if bad_request && !CREDENTIAL_REFUSALS_400.contains(&reason.as_str()) {
        return response;
    }
    state
        .metrics
        .requests_denied
        .with_label_values(&[front, reason.as_str()])
        .inc();
    if let Some(ip) = client
        && crate::auth_limit::is_failure(&reason)
    {
        state.auth_limit.failed(ip);
    }
    response
}

/// The answer to a request held off by the failed-authentication limit: S3 503 `SlowDown`,
/// API 429, both with `Retry-After`.
fn throttled(state: &AppState, front: &str, api: bool, wait: Duration) -> Response {
    state
        .metrics
        .auth_throttled
        .with_label_values(&[front])
        .inc();
    let secs = wait.as_secs().max(1);
    let message =
        format!("too many failed authentications from this address: try again in {secs} s");
    let mut response = if api {
        use axum::response::IntoResponse;
        crate::error::ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyFailedAuthentications",
            message,
        )
        .into_response()
    } else {
        let id = crate::error::fresh_request_id();
        let mut r =
            crate::s3::xml_response(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", &message, &id);
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert("x-amz-request-id", v);
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// The error code of a refusal's body (S3's `<Code>`, the API's `"code"`), with the response
/// rebuilt around the same bytes. Bodies of refusals are small; a large or streaming one is
/// left alone and named by its status.
async fn error_code(response: Response) -> (String, Response) {
    let fallback = match response.status() {
        StatusCode::UNAUTHORIZED => "Unauthorized",
        _ => "Forbidden",
    }
    .to_string();
    let small = http_body::Body::size_hint(response.body())
        .upper()
        .is_some_and(|n| n <= 16 * 1024);
    if !small {
        return (fallback, response);
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return (fallback, Response::from_parts(parts, Body::empty()));
    };
    let bytes = collected.to_bytes();
    let code = code_in(&bytes).unwrap_or(fallback);
    (code, Response::from_parts(parts, Body::from(bytes)))
}

fn code_in(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let code = if let Some(start) = text.find("<Code>") {
        let rest = &text[start + "<Code>".len()..];
        &rest[..rest.find("</Code>")?]
    } else {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        return value["error"]["code"].as_str().map(str::to_string);
    };
    let ok =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| code.to_string())
}

/// A body that counts its bytes and calls `on_end` once with the count: at its end, or when
/// dropped before it (the client went away).
struct Counted {
    inner: Body,
    seen: u64,
    on_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl Counted {
    fn end(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(self.seen);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.end();
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            Poll::Ready(None) => self.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_of_authentication_is_read_from_the_request_not_its_secrets() {
        let mut h = HeaderMap::new();
        assert_eq!(auth_kind(&h, None, false), "anonymous");
        assert_eq!(
            auth_kind(
                &h,
                Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"),
                false
            ),
            "sigv4-presigned"
        );
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/…".parse().unwrap(),
        );
        assert_eq!(auth_kind(&h, None, false), "sigv4");
        h.insert("authorization", "Bearer awt_x".parse().unwrap());
        assert_eq!(auth_kind(&h, None, true), "bearer");
        assert_eq!(auth_kind(&h, None, false), "anonymous");
    }

    #[test]
    fn refusal_codes_come_from_s3_and_api_bodies() {
        let s3 = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error>";
        assert_eq!(code_in(s3).as_deref(), Some("SignatureDoesNotMatch"));
        let api = br#"{"error":{"code":"Unauthorized","message":"m"}}"#;
        assert_eq!(code_in(api).as_deref(), Some("Unauthorized"));
        assert_eq!(code_in(b"<Code>not a code</Code>"), None);
        assert_eq!(code_in(b"garbage"), None);
    }

    #[test]
    fn api_routes_name_their_volume() {
        assert_eq!(api_volume("/api/v1/volumes/demo/grants"), Some("demo"));
        assert_eq!(api_volume("/api/v1/volumes/demo"), Some("demo"));
        assert_eq!(api_volume("/api/v1/volumes/"), None);
        assert_eq!(api_volume("/api/v1/users"), None);
        assert_eq!(api_volume("/ui/volumes/demo/object"), Some("demo"));
        assert_eq!(api_volume("/ui/search"), None);
        assert_eq!(api_volume("/stac/collections/demo/items"), Some("demo"));
        assert_eq!(api_volume("/stac/collections"), None);
    }
}

//! The S3 front: every volume a bucket, for unmodified S3 clients.
//!
//! `s3s` parses requests, verifies SigV4 signatures (header and presigned) against the secrets
//! that [`CatalogAuth`] looks up, and renders XML. `ops.rs` maps each supported S3 operation to
//! a dataplane call, `error.rs` maps dataplane errors to S3 error codes (the one place),
//! `convert.rs` translates values between the two, `integrity.rs` checks declared digests as
//! bodies stream, `host.rs` reads virtual-hosted-style bucket names. The front decides nothing
//! about access: the dataplane checks every call, so the `s3s` access hook lets every request
//! through, anonymous ones included (public volumes).

mod acl;
mod convert;
mod cors;
mod error;
mod host;
mod integrity;
mod ops;
mod route;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::dto::StreamingBlob;
use s3s::{S3Result, s3_error};

use archway_catalog::{Catalog, Principal, SessionProblem};
use archway_dataplane::Dataplane;

pub use error::{dataplane_error, xml_escape, xml_response};
pub use host::BucketDomain;

use crate::metrics::Metrics;
use crate::state::AppState;
use error::{catalog_unavailable, with_request_id};

/// Looks up SigV4 secrets in the catalogue.
#[derive(Debug, Clone)]
pub struct CatalogAuth {
    pub catalog: Catalog,
}

#[async_trait::async_trait]
impl S3Auth for CatalogAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.catalog.access_key_secret(access_key).await {
            Ok(Some((_, secret))) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
            Err(e) => Err(catalog_unavailable(e)),
        }
    }
}

/// Lets every request through to the operation, where the dataplane checks access; tells the
/// audit trail which operation on which bucket and key it is.
#[derive(Debug, Clone, Copy)]
pub struct DataplaneDecides;

#[async_trait::async_trait]
impl S3Access for DataplaneDecides {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        crate::audit::note_op(cx.s3_op().name());
        match cx.s3_path() {
            s3s::path::S3Path::Root => {}
            s3s::path::S3Path::Bucket { bucket } => crate::audit::note_target(bucket, None),
            s3s::path::S3Path::Object { bucket, key } => {
                crate::audit::note_target(bucket, Some(key))
            }
        }
        Ok(())
    }
}

/// The S3 operations over the dataplane.
#[derive(Debug, Clone)]
pub struct S3Front {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
}

impl S3Front {
    /// The caller, from the access key that signed the request (None: anonymous).
    async fn who(&self, credentials: &Option<Credentials>) -> S3Result<Option<Principal>> {
        let Some(c) = credentials else {
            return Ok(None);
        };
        match self
            .dataplane
            .catalog()
            .access_key_secret(&c.access_key)
            .await
        {
            Ok(Some((p, _))) => {
                crate::audit::note_principal(&p, None);
                Ok(Some(p))
            }
            Ok(None) => Err(with_request_id(s3_error!(InvalidAccessKeyId))),
            Err(e) => Err(catalog_unavailable(e)),
        }
    }

    /// The caller of an operation that needs a signed request (bucket listing and creation).
    async fn signed(&self, credentials: &Option<Credentials>, what: &str) -> S3Result<Principal> {
        self.who(credentials)
            .await?
            .ok_or_else(|| s3_error!(AccessDenied, "{what} needs a signed request"))
    }

    /// Records one S3 operation's outcome.
    fn record<T>(&self, op: &'static str, result: S3Result<T>) -> S3Result<T> {
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => match e.status_code().map(|s| s.as_u16()) {
                Some(304) => "not_modified",
                Some(400..=499) => "client_error",
                _ => "server_error",
            },
        };
        self.metrics
            .s3_requests
            .with_label_values(&[op, label])
            .inc();
        result.map_err(with_request_id)
    }

    /// A dataplane body as the S3 answer's body, counting the bytes out.
    fn count_out(
        &self,
        body: futures::stream::BoxStream<'static, archway_dataplane::Result<Bytes>>,
    ) -> StreamingBlob {
        let metrics = self.metrics.clone();
        let counted = body.map(move |r| {
            if let Ok(b) = &r {
                metrics
                    .s3_bytes
                    .with_label_values(&["out"])
                    .inc_by(b.len() as u64);
            }
            r
        });
        StreamingBlob::wrap(SyncStream(std::sync::Mutex::new(Box::pin(counted))))
    }
}

/// `StreamingBlob` needs `Sync`; a dataplane body is `Send` only. A mutex makes it `Sync`
/// without sharing: the stream is only ever polled by the one task that owns it.
struct SyncStream<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S: Stream + Send> Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.lock() {
            Ok(mut s) => s.as_mut().poll_next(cx),
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}

/// What is wrong with a signed request's session (a temporary key without its session token,
/// a long-term key with one, an expired key), as the S3 error to answer; None when nothing is
/// or the request is unsigned. The signature itself is s3s's to check.
async fn session_problem(
    dataplane: &Dataplane,
    signed: Option<(String, Option<String>)>,
) -> Option<(StatusCode, &'static str, String)> {
    let (key, token) = signed?;
    let view = match dataplane.catalog().view().await {
        Ok(v) => v,
        // The signature check reports the catalogue's state.
        Err(_) => return None,
    };
    let problem = view.session_problem(&key, token.as_deref())?;
    Some(match problem {
        SessionProblem::Expired {
            temporary: true,
            at,
        } => (
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            format!("The provided token has expired (the session of {key} ended at {at})."),
        ),
        SessionProblem::Expired {
            temporary: false,
            at,
        } => (
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            format!("The AWS access key Id you provided expired at {at}."),
        ),
        SessionProblem::Missing => (
            StatusCode::FORBIDDEN,
            "InvalidToken",
            format!(
                "{key} is a temporary key: its requests must carry its session token (X-Amz-Security-Token)."
            ),
        ),
        SessionProblem::Wrong => (
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.".to_string(),
        ),
        SessionProblem::Unexpected => (
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            format!("{key} is a long-term key: a request signed with it carries no session token."),
        ),
    })
}

/// Builds the S3 service over `front`; `domain` enables virtual-hosted-style requests.
pub fn service(
    front: S3Front,
    domain: Option<BucketDomain>,
    max_xml_body_bytes: usize,
) -> s3s::service::S3Service {
    let catalog = front.dataplane.catalog().clone();
    let mut builder = s3s::service::S3ServiceBuilder::new(front);
    let mut config = s3s::config::S3Config::default();
    config.xml_max_body_size = max_xml_body_bytes;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    builder.set_auth(CatalogAuth { catalog });
    builder.set_access(DataplaneDecides);
    if let Some(d) = domain {
        builder.set_host(d);
    }
    builder.build()
}

/// Why a request whose body `s3s` reads whole (a document: DeleteObjects,
/// CompleteMultipartUpload, a configuration) is refused before it is read, if it is: longer
/// than `server.max_s3_xml_body_bytes` (400 `MaxMessageLengthExceeded`; s3s 0.14 would answer
/// 500), or of unknown length (411 `MissingContentLength`, as S3 answers).
fn whole_body_problem(req: &Request, limit: usize) -> Option<(StatusCode, &'static str, String)> {
    if !route::reads_whole_body(req.method(), req.uri().path(), req.uri().query()) {
        return None;
    }
    let length = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) if n > limit as u64 => Some((
            StatusCode::BAD_REQUEST,
            "MaxMessageLengthExceeded",
            format!(
                "the request's document is {n} bytes; this gateway reads at most {limit} \
                 (server.max_s3_xml_body_bytes)"
            ),
        )),
        Some(_) => None,
        None if req
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING) =>
        {
            Some((
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "a request with a document body must give its Content-Length".to_string(),
            ))
        }
        None => None,
    }
}

/// Why a SigV4 request whose credential scope names a service other than `s3` is refused
/// (STS's are answered before): `s3express` (directory buckets) is 501 as documented, any
/// other 400, where s3s would answer 501 for all.
fn scope_problem(req: &Request) -> Option<(StatusCode, &'static str, String)> {
    let service = route::scope_service(req.headers(), req.uri().query())?;
    match service.as_str() {
        "s3" => None,
        "s3express" => Some((
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "S3 Express One Zone (directory buckets, service `s3express`) is not supported by \
             Archway (doc/s3.md lists what is)"
                .to_string(),
        )),
        _ => {
            let signed_header = req
                .headers()
                .contains_key(axum::http::header::AUTHORIZATION);
            Some((
                StatusCode::BAD_REQUEST,
                if signed_header {
                    "AuthorizationHeaderMalformed"
                } else {
                    "AuthorizationQueryParametersError"
                },
                format!(
                    "the credential scope names the service `{service}`; this endpoint is `s3` \
                     (and `sts` for AssumeRoleWithWebIdentity)"
                ),
            ))
        }
    }
}

/// Reads and drops a body, up to `limit` bytes.
async fn drain(body: Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    while seen <= limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len());
                }
            }
            _ => return,
        }
    }
}

/// The S3 service as the router's fallback: every path that is not an API route.
pub fn fallback(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let front = S3Front {
        dataplane: state.dataplane.clone(),
        metrics: state.metrics.clone(),
    };
    // The configuration refuses a bad domain; a gateway built without that check still
    // serves path style.
    let domain = match state.server.domain.as_deref().map(BucketDomain::new) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            tracing::error!(error = %e, "virtual-hosted-style S3 disabled");
            None
        }
        None => None,
    };
    let cors_domain = state
        .server
        .domain
        .as_deref()
        .and_then(|d| BucketDomain::new(d).ok())
        .map(Arc::new);
    let xml_limit = state.server.max_s3_xml_body_bytes;
    let s3 = service(front, domain, xml_limit);
    let dataplane = state.dataplane.clone();
    let identity = state.identity.clone();
    tower::service_fn(move |req: Request| {
        let mut s3 = s3.clone();
        let dataplane = dataplane.clone();
        let identity = identity.clone();
        let domain = cors_domain.clone();
        // One id per request: in error bodies (RequestId) and on every answer, as S3 does.
        let id = crate::error::fresh_request_id();
        async move {
            let mut req = req;
            let domain = domain.as_deref();
            let browser = cors::FromBrowser::of(&req, domain);
            // SigV4 over `Date` (no `X-Amz-Date`): give s3s the time it reads.
            let headers = req.headers();
            if !headers.contains_key("x-amz-date")
                && headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"))
                && let Some(date) = headers
                    .get(axum::http::header::DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(route::amz_date_from)
                && let Ok(v) = axum::http::HeaderValue::from_str(&date)
            {
                req.headers_mut().insert("x-amz-date", v);
            }
            let mut response = if crate::sts::is_sts(&req) {
                crate::sts::handle(&identity, &dataplane, req, &id).await
            } else if req.method() == axum::http::Method::OPTIONS {
                let (headers, bucket) = (req.headers().clone(), cors::bucket_of(&req, domain));
                drop(req);
                cors::preflight(&dataplane, &headers, bucket, &id).await
            } else if let Some(message) = route::bad_expiry(req.uri().query()) {
                error::xml_response(
                    StatusCode::FORBIDDEN,
                    "AuthorizationQueryParametersError",
                    &message,
                    &id,
                )
            } else if req
                .headers()
                .get("content-md5")
                .is_some_and(|v| v.as_bytes().trim_ascii().is_empty())
            {
                // s3s reads an empty Content-MD5 as none; S3 refuses it.
                error::xml_response(
                    StatusCode::BAD_REQUEST,
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid: it is empty",
                    &id,
                )
            } else if let Some((status, code, message)) = session_problem(
                &dataplane,
                route::signing_key(req.headers(), req.uri().query()),
            )
            .await
            {
                error::xml_response(status, code, &message, &id)
            } else if let Some((status, code, message)) = scope_problem(&req) {
                error::xml_response(status, code, &message, &id)
            } else if let Some(problem) = whole_body_problem(&req, xml_limit) {
                let (status, code, message) = problem;
                // Read what the client sends (to a bound) so that it hears the answer instead
                // of a connection reset mid-upload.
                drain(req.into_body(), xml_limit.saturating_mul(16)).await;
                error::xml_response(status, code, &message, &id)
            } else if let Some(sub) = route::unsupported(req.uri().query()) {
                error::xml_response(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    &route::not_implemented_message(&sub),
                    &id,
                )
            } else {
                let called = crate::error::serving(id.clone(), tower::Service::call(&mut s3, req));
                match called.await {
                    Ok(r) => r.map(Body::new),
                    Err(e) => {
                        tracing::error!(request_id = %id, error = ?e, "S3 service failed");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            };
            // A preflight's method (OPTIONS) is no rule's: it keeps what `preflight` set.
            if let Some(b) = browser {
                b.decorate(&dataplane, &mut response).await;
            }
            if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
                let headers = response.headers_mut();
                headers.insert("x-amz-request-id", v.clone());
                headers.insert("x-amz-id-2", v);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

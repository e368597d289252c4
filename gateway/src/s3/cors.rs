//! CORS for browsers (JS9, Aladin Lite, any page using `fetch`): preflight `OPTIONS` requests
//! answered from the volume's rules (S3 PutBucketCors), and `Access-Control-*` headers on the
//! answers to requests that carry an `Origin`. CORS grants nothing: the request itself is
//! authenticated and checked as any other.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use archway_catalog::CorsRule;
use archway_dataplane::Dataplane;

use super::error::xml_response;
use super::host::BucketDomain;

const NOT_ALLOWED: &str = "CORSResponse: This CORS request is not allowed. This is usually \
     because the evaluation of Origin, request method / Access-Control-Request-Method or \
     Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.";

/// The bucket a request is for: from the host (virtual-hosted style), else the path's first
/// segment.
pub(super) fn bucket_of(req: &Request, domain: Option<&BucketDomain>) -> Option<String> {
    if let (Some(d), Some(host)) = (domain, req.headers().get(header::HOST))
        && let Some(bucket) = host.to_str().ok().and_then(|h| d.bucket_of(h))
    {
        return Some(bucket);
    }
    let first = req.uri().path().trim_start_matches('/').split('/').next()?;
    let bucket = percent_encoding::percent_decode_str(first)
        .decode_utf8()
        .ok()?;
    (!bucket.is_empty()).then(|| bucket.into_owned())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The headers every answer that a rule allows carries.
fn allow(headers: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let allowed = rule.allow_origin(origin);
    set(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if allowed != "*" {
        set(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    if !rule.expose_headers.is_empty() {
        set(
            headers,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(headers, header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
}

/// Answers a preflight `OPTIONS` request.
pub(super) async fn preflight(
    dataplane: &Dataplane,
    headers: &HeaderMap,
    bucket: Option<String>,
    id: &str,
) -> Response {
    let bad = |message: &str| xml_response(StatusCode::BAD_REQUEST, "BadRequest", message, id);
    let Some(origin) = header_text(headers, &header::ORIGIN) else {
        return bad("Insufficient information. Origin request header needed.");
    };
    let Some(method) = header_text(headers, &header::ACCESS_CONTROL_REQUEST_METHOD) else {
        return bad("Invalid Access-Control-Request-Method: none given");
    };
    let Some(bucket) = bucket else {
        return bad("a CORS preflight names a bucket");
    };
    let requested: Vec<&str> = header_text(headers, &header::ACCESS_CONTROL_REQUEST_HEADERS)
        .map(|h| {
            h.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let rules = match dataplane.cors_for_browsers(&bucket).await {
        Ok(rules) => rules.unwrap_or_default(),
        Err(e) => {
            tracing::error!(request_id = %id, error = %e, "reading CORS rules failed");
            return xml_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("the catalogue is unavailable (request id {id})"),
                id,
            );
        }
    };
    let Some(rule) = CorsRule::find(&rules, origin, method, &requested) else {
        return xml_response(StatusCode::FORBIDDEN, "AccessForbidden", NOT_ALLOWED, id);
    };
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    allow(out, rule, origin);
    set(
        out,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &rule.allowed_methods.join(", "),
    );
    if !requested.is_empty() {
        set(
            out,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &requested.join(", "),
        );
    }
    set(
        out,
        header::VARY,
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
    response
}

/// What the answer to a request from a browser needs: its origin, method and bucket.
pub(super) struct FromBrowser {
    origin: String,
    method: Method,
    bucket: String,
}

impl FromBrowser {
    pub(super) fn of(req: &Request, domain: Option<&BucketDomain>) -> Option<Self> {
        let origin = header_text(req.headers(), &header::ORIGIN)?.to_string();
        Some(Self {
            origin,
            method: req.method().clone(),
            bucket: bucket_of(req, domain)?,
        })
    }

    /// Adds the `Access-Control-*` headers the volume's rules give this request, if any.
    pub(super) async fn decorate(self, dataplane: &Dataplane, response: &mut Response) {
        let Ok(Some(rules)) = dataplane.cors_for_browsers(&self.bucket).await else {
            return;
        };
        if let Some(rule) = CorsRule::find(&rules, &self.origin, self.method.as_str(), &[]) {
            allow(response.headers_mut(), rule, &self.origin);
            set(response.headers_mut(), header::VARY, "Origin");
        }
    }
}

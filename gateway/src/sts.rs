//! The STS endpoint: `AssumeRoleWithWebIdentity` at `POST /` on the gateway's port, as MinIO
//! serves it, so boto3's `sts` client (with `endpoint_url` set to the gateway) and the aws
//! cli trade an OpenID Connect token for temporary S3 credentials.
//!
//! The request is the STS query protocol: form fields in the body (or the query) `Action`,
//! `Version`, `WebIdentityToken`, `RoleArn`, `RoleSessionName`, `DurationSeconds`. It is not
//! signed: the identity token is the credential. The answer holds an access key (`ASIA…`), a
//! secret and a session token that S3 requests must carry (`X-Amz-Security-Token`), all ending
//! after `DurationSeconds` (default an hour), cut to `[auth] sts_max_duration`. The key acts
//! with the user's rights, decided on every request as for any key; `RoleArn` names no
//! policy here (it is accepted, and shows in the answer's assumed-role ARN), and session
//! policies (`Policy`, `PolicyArns`) are refused rather than ignored.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use archway_catalog::CatalogError;
use archway_dataplane::{Dataplane, DataplaneError};

use crate::oidc::Identity;
use crate::s3::xml_escape;

/// The largest STS request body read (an identity token with many groups is a few KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The lifetime asked for when `DurationSeconds` is absent.
const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Whether `req` is an STS call: `POST /` with a form body, or any request to `/` whose query
/// names an `Action`.
pub fn is_sts(req: &Request) -> bool {
    if req.uri().path() != "/" {
        return false;
    }
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let action = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")));
    (req.method() == Method::POST && form) || action
}

/// An STS error answer (the query protocol's `ErrorResponse`).
fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\">\
         <Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    );
    xml(status, body)
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

/// Serves one STS call.
pub async fn handle(
    identity: &Identity,
    dataplane: &Dataplane,
    req: Request,
    request_id: &str,
) -> Response {
    let bad = |code: &str, message: &str| error(StatusCode::BAD_REQUEST, code, message, request_id);
    crate::audit::note_op("AssumeRoleWithWebIdentity");
    crate::audit::note_auth("oidc");
    let mut params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return bad(
                "ValidationError",
                &format!("the request body is larger than {MAX_BODY_BYTES} bytes or broke off"),
            );
        }
    };
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match param("Action") {
        Some("AssumeRoleWithWebIdentity") => {}
        Some(other) => {
            return bad(
                "InvalidAction",
                &format!(
                    "the STS action `{}` is not supported: Archway serves AssumeRoleWithWebIdentity",
                    other.chars().take(64).collect::<String>()
                ),
            );
        }
        None => return bad("MissingAction", "the STS request names no Action"),
    }
    if params
        .iter()
        .any(|(k, _)| k == "Policy" || k.starts_with("PolicyArns"))
    {
        return bad(
            "ValidationError",
            "session policies (Policy, PolicyArns) are not supported: the temporary \
             credentials carry the user's rights; limit them with a scoped key instead",
        );
    }
    let Some(token) = param("WebIdentityToken").filter(|t| !t.is_empty()) else {
        return bad(
            "MissingParameter",
            "the request needs a WebIdentityToken (an OpenID Connect ID or access token)",
        );
    };
    let session_name = param("RoleSessionName").unwrap_or("archway");
    let name_ok = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !name_ok {
        return bad(
            "ValidationError",
            "RoleSessionName must be 2 to 64 letters, digits or +=,.@_-",
        );
    }
    let requested = match param("DurationSeconds") {
        None => DEFAULT_DURATION,
        Some(d) => match d.parse::<u64>() {
            Ok(n) if n > 0 => Duration::from_secs(n),
            _ => {
                return bad(
                    "ValidationError",
                    "DurationSeconds must be a positive number of seconds",
                );
            }
        },
    };
    let lifetime = requested.min(identity.sts_max_duration);
    let claims = match identity.verify(token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(request_id, error = %e, "identity token refused");
            let status = match e {
                crate::oidc::TokenError::Fetch(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, e.sts_code(), &e.to_string(), request_id);
        }
    };
    let principal = match identity.principal(dataplane, &claims).await {
        Ok(p) => p,
        Err(e @ DataplaneError::NotPermitted { .. }) => {
            return error(
                StatusCode::FORBIDDEN,
                "IDPRejectedClaim",
                &e.to_string(),
                request_id,
            );
        }
        Err(e @ DataplaneError::Catalog(CatalogError::Invalid { .. })) => {
            return bad("IDPRejectedClaim", &e.to_string());
        }
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &e.to_string(),
                request_id,
            );
        }
    };
    crate::audit::note_principal(&principal, Some("oidc"));
    let description = format!(
        "temporary: session {session_name} signed in through {}",
        claims.issuer
    );
    let (key, session_token) = match dataplane
        .create_session_key(&principal, &description, lifetime)
        .await
    {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "temporary credentials not created");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("the temporary credentials could not be stored: {e}"),
                request_id,
            );
        }
    };
    tracing::info!(user = %principal.user, access_key_id = %key.key.access_key_id, issuer = %claims.issuer, lifetime = ?lifetime, "temporary credentials issued");
    let role = param("RoleArn")
        .and_then(|arn| arn.rsplit('/').next())
        .filter(|r| !r.is_empty())
        .unwrap_or("archway");
    let expiration = key
        .key
        .expires_at
        .map(|t| t.to_string())
        .unwrap_or_default();
    // Whole seconds, as STS writes them.
    let expiration = match expiration.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => expiration,
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <AssumeRoleWithWebIdentityResponse xmlns=\"{NAMESPACE}\">\
         <AssumeRoleWithWebIdentityResult>\
         <SubjectFromWebIdentityToken>{subject}</SubjectFromWebIdentityToken>\
         <Audience>{audience}</Audience>\
         <AssumedRoleUser><Arn>arn:aws:sts::archway:assumed-role/{role}/{session}</Arn>\
         <AssumedRoleId>{key_id}:{session}</AssumedRoleId></AssumedRoleUser>\
         <Credentials><AccessKeyId>{key_id}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <Provider>{provider}</Provider>\
         </AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>",
        subject = xml_escape(claims.subject.as_deref().unwrap_or(&claims.user)),
        audience = xml_escape(&claims.audience),
        role = xml_escape(role),
        session = xml_escape(session_name),
        key_id = xml_escape(&key.key.access_key_id),
        secret = xml_escape(&key.secret_access_key),
        token = xml_escape(&session_token),
        expiration = xml_escape(&expiration),
        provider = xml_escape(&claims.issuer),
        request_id = xml_escape(request_id),
    );
    let mut response = xml(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

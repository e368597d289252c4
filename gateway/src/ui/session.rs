//! Sessions of the web pages: sealed cookies, CSRF values, the redirect to sign-in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use archway_catalog::Principal;

use crate::state::AppState;

pub(super) const SESSION_COOKIE: &str = "archway_session";
pub(super) const LOGIN_COOKIE: &str = "archway_login";
const SESSION_CONTEXT: &str = "archway-ui-session-1";
const LOGIN_CONTEXT: &str = "archway-ui-login-1";
/// How long a sign-in form may stay open.
pub(super) const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);

/// A signed-in visitor of the web pages.
#[derive(Clone, Debug)]
pub struct Session {
    pub who: Principal,
    /// The value every changing form must carry.
    pub csrf: String,
}

/// What the session cookie holds, sealed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The bearer token signed in with.
    t: String,
    /// The CSRF value.
    c: String,
    /// Seconds since the epoch when the session ends.
    e: u64,
}

/// What the sign-in form's cookie holds, sealed.
#[derive(Serialize, Deserialize)]
struct LoginSealed {
    c: String,
    e: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 128 random bits, hex. Empty if the system's random source fails: an empty value never
/// matches ([`same`]), so every form is refused rather than any guessed.
pub(super) fn fresh_csrf() -> String {
    let mut b = [0u8; 16];
    match getrandom::fill(&mut b) {
        Ok(()) => hex::encode(b),
        Err(e) => {
            tracing::error!(error = %e, "no random bytes for a CSRF value");
            String::new()
        }
    }
}

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the visitor reached the gateway over HTTPS: served with TLS here, or through a
/// proxy that ends it (the browser's `Origin`, or `X-Forwarded-Proto`, says `https`). Only
/// makes cookies stricter (`Secure`).
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    let says_https = |name: &str, prefix: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with(prefix))
    };
    state.server.tls.is_some()
        || says_https("origin", "https://")
        || says_https("x-forwarded-proto", "https")
}

/// A `Set-Cookie` value for the web pages' path (`Secure` over HTTPS).
pub(super) fn set_cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Duration,
) -> String {
    let secure = if over_https(state, headers) {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// The session cookie for `token`, with a fresh CSRF value.
pub(super) fn session_cookie(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<String, super::UiError> {
    let lifetime = state.server.ui_session_lifetime;
    let sealed = Sealed {
        t: token.to_string(),
        c: fresh_csrf(),
        e: now() + lifetime.as_secs(),
    };
    let value = seal(state, SESSION_CONTEXT, &sealed)?;
    Ok(set_cookie(state, headers, SESSION_COOKIE, &value, lifetime))
}

/// The sign-in form's cookie and its CSRF value.
pub(super) fn login_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, String), super::UiError> {
    let csrf = fresh_csrf();
    let sealed = LoginSealed {
        c: csrf.clone(),
        e: now() + LOGIN_FORM_LIFETIME.as_secs(),
    };
    let value = seal(state, LOGIN_CONTEXT, &sealed)?;
    Ok((
        set_cookie(state, headers, LOGIN_COOKIE, &value, LOGIN_FORM_LIFETIME),
        csrf,
    ))
}

/// Whether `csrf` is the value the sign-in form's cookie holds (and the form is not stale).
pub(super) fn login_csrf_ok(state: &AppState, headers: &HeaderMap, csrf: &str) -> bool {
    unseal::<LoginSealed>(state, headers, LOGIN_COOKIE, LOGIN_CONTEXT)
        .is_some_and(|sealed| sealed.e > now() && same(&sealed.c, csrf))
}

/// `content` sealed with the catalogue key under `context` (every replica opens it; nobody
/// else reads or forges it), as a cookie value.
fn seal<T: Serialize>(
    state: &AppState,
    context: &str,
    content: &T,
) -> Result<String, super::UiError> {
    let plain = serde_json::to_vec(content).unwrap_or_default();
    Ok(state.dataplane.catalog().seal(context, &plain)?)
}

/// What cookie `name` holds, if it is ours, sealed under `context`.
fn unseal<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    context: &str,
) -> Option<T> {
    let value = cookie(headers, name)?;
    let plain = state.dataplane.catalog().open_sealed(context, value).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Whether a CSRF value matches, in constant time; an empty value (no random source) never
/// does.
pub(super) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && archway_catalog::secret::constant_time_eq(a, b)
}

/// The clearing `Set-Cookie` of the session.
pub(super) fn clear_session(state: &AppState, headers: &HeaderMap) -> String {
    set_cookie(state, headers, SESSION_COOKIE, "", Duration::ZERO)
}

/// Where to go back after signing in: a path of the web pages only (never another site).
pub(super) fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("/ui//")
                && !n.contains('\\')
                && !n.bytes().any(|b| b.is_ascii_control()) =>
        {
            n.to_string()
        }
        _ => "/ui/volumes".to_string(),
    }
}

/// The session of a request: None without a cookie, or with one that is not ours, stale, or
/// whose token no longer works.
async fn session_of(parts: &Parts, state: &AppState) -> Option<Session> {
    let sealed: Sealed = unseal(state, &parts.headers, SESSION_COOKIE, SESSION_CONTEXT)?;
    if sealed.e <= now() {
        return None;
    }
    match crate::auth::bearer(state, &sealed.t).await {
        Ok((who, _)) => {
            crate::audit::note_principal(&who, Some("session"));
            Some(Session {
                who,
                csrf: sealed.c,
            })
        }
        Err(e) => {
            tracing::debug!(error = %e.message, "a web session's token no longer works");
            None
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// Without a session, the visitor is sent to sign in and brought back afterwards.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(s) = session_of(parts, state).await {
            return Ok(s);
        }
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/volumes");
        let next = if parts.method == axum::http::Method::GET {
            format!(
                "?next={}",
                percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC)
            )
        } else {
            String::new()
        };
        Err(super::redirect(&format!("/ui/login{next}")))
    }
}

impl OptionalFromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session_of(parts, state).await)
    }
}

impl Session {
    /// Refuses a changing form whose CSRF value is not this session's, or that comes from
    /// another site (`Origin`).
    pub(super) fn check_form(&self, headers: &HeaderMap, csrf: &str) -> Result<(), super::UiError> {
        if !same_origin(headers) {
            return Err(super::UiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "this form was sent from another site; open the page here and send it again",
            ));
        }
        if !same(&self.csrf, csrf) {
            return Err(super::UiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "this form is stale or did not come from this site's pages (its `csrf` value \
                 does not match your session); reload the page and send it again",
            ));
        }
        Ok(())
    }
}

/// Whether the request's `Origin` (when it has one) names the host the client reached (its
/// `Host`). The scheme is not compared: behind a proxy that ends TLS the gateway sees plain
/// HTTP while the browser's origin is `https://`.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_web_pages() {
        assert_eq!(local_next(Some("/ui/volumes/demo")), "/ui/volumes/demo");
        assert_eq!(local_next(Some("https://evil.example/")), "/ui/volumes");
        assert_eq!(local_next(Some("//evil.example/ui/")), "/ui/volumes");
        assert_eq!(local_next(Some("/ui//evil.example")), "/ui/volumes");
        assert_eq!(local_next(Some("/ui/\\evil")), "/ui/volumes");
        assert_eq!(local_next(Some("/api/v1/volumes")), "/ui/volumes");
        assert_eq!(local_next(None), "/ui/volumes");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; archway_session=xyz; b=2"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(cookie(&h, "archway_session"), Some("xyz"));
        assert_eq!(cookie(&h, "archway"), None);
    }

    #[test]
    fn origins_are_compared_by_host() {
        let h = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HOST,
                "data.example:9000"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap_or_else(|_| unreachable!()));
            }
            h
        };
        assert!(same_origin(&h(None)));
        assert!(same_origin(&h(Some("http://data.example:9000"))));
        assert!(same_origin(&h(Some("https://data.example:9000"))));
        assert!(!same_origin(&h(Some("https://evil.example"))));
        assert!(!same_origin(&h(Some(
            "https://data.example:9000.evil.example"
        ))));
        assert!(!same_origin(&h(Some("null"))));
    }

    #[test]
    fn csrf_values_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", ""));
    }
}

//! Who is calling: the HTTP API's bearer tokens (Archway API tokens, or OpenID Connect tokens
//! from the configured issuers), and the identity an in-process caller (the
//! CLI on a local data directory) places on a request. Authentication only: what a caller may
//! do is decided by the dataplane.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use archway_catalog::Principal;

use crate::error::ApiError;
use crate::oidc::{Identity, TokenError};
use crate::state::AppState;

/// An identity placed on a request by an in-process caller (the CLI working on a local data
/// directory, which owns the catalogue files anyway). Requests from the network cannot carry
/// request extensions, so this never comes from outside the process.
#[derive(Clone, Debug)]
pub struct LocalIdentity(pub Principal);

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl Caller {
    /// The caller as the dataplane takes it.
    pub fn who(&self) -> Option<&Principal> {
        Some(&self.0)
    }
}

/// The caller of a request that anonymous callers may make too (reductions, which the
/// dataplane allows anonymously on public volumes only): a request without an Authorization
/// header is anonymous; a token that is unknown or malformed is still refused.
#[derive(Clone, Debug)]
pub struct MaybeCaller(pub Option<Principal>);

impl MaybeCaller {
    /// The caller as the dataplane takes it (None: anonymous).
    pub fn who(&self) -> Option<&Principal> {
        self.0.as_ref()
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let signed = parts.extensions.get::<LocalIdentity>().is_some()
            || parts.headers.contains_key(header::AUTHORIZATION);
        if !signed {
            return Ok(MaybeCaller(None));
        }
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        Ok(MaybeCaller(Some(p)))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(LocalIdentity(p)) = parts.extensions.get::<LocalIdentity>() {
            crate::audit::note_principal(p, Some("local"));
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
        let (p, how) = bearer(state, token).await?;
        crate::audit::note_principal(&p, Some(how));
        Ok(Caller(p))
    }
}

/// The principal a bearer token stands for — an OpenID Connect token from a configured
/// issuer, or an Archway API token — and which kind it was (`oidc`, `bearer`). Unknown,
/// revoked or expired tokens are refused 401.
pub(crate) async fn bearer(
    state: &AppState,
    token: &str,
) -> Result<(Principal, &'static str), ApiError> {
    if state.identity.enabled() && Identity::looks_like_jwt(token) {
        crate::audit::note_auth("oidc");
        let claims = state.identity.verify(token).await.map_err(|e| match e {
            TokenError::Fetch(_) => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "IdentityProviderUnavailable",
                e.to_string(),
            ),
            _ => ApiError::unauthorized(format!("the OpenID Connect token is refused: {e}")),
        })?;
        let p = state.identity.principal(&state.dataplane, &claims).await?;
        return Ok((p, "oidc"));
    }
    match state.dataplane.catalog().authenticate_token(token).await? {
        Some(p) => Ok((p, "bearer")),
        None => Err(ApiError::unauthorized(
            "the API token is unknown, revoked or expired",
        )),
    }
}

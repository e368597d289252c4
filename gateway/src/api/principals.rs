//! Users, their access keys and API tokens, and groups.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_catalog::{
    Access, AccessKey, ApiToken, Group, NewAccessKey, NewApiToken, Scope, Terms, User, UserPatch,
};

use super::AppState;
use crate::auth::Caller;
use crate::body::StrictJson;
use crate::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, delete_group))
        .routes(routes!(add_member, remove_member))
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub admin: bool,
}

/// A request for an access key: generated, or an existing pair imported (admins only). Its
/// secret never shows in `Debug` output.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    #[serde(default)]
    pub description: String,
    /// Import an existing key pair instead of generating one (admins only).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(
        default,
        serialize_with = "expose",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub secret_access_key: Option<SecretString>,
    /// Limit the key to reading.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Limit the key to these volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// Lifetime such as `30d` or `12h`; none means until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Writes a secret in clear: only for the request that carries it to the gateway.
fn expose<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_some(v.expose_secret()),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    #[serde(default)]
    pub name: String,
    /// Lifetime such as `30d` or `12h`; none means until revoked.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Limit the token to reading.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Limit the token to these volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
}

/// The terms of a new key or token, from its request's fields.
fn terms(
    read_only: bool,
    volumes: &Option<Vec<String>>,
    ttl: Option<&str>,
) -> Result<Terms, ApiError> {
    let ttl = ttl
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(Some("ttl".into()), format!("invalid ttl: {e}")))?;
    Ok(Terms {
        scope: Scope {
            read_only,
            volumes: volumes.clone(),
        },
        ttl,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantBody {
    pub level: Access,
}

#[derive(Serialize, utoipa::ToSchema)]
struct UserList {
    users: Vec<User>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct KeyList {
    keys: Vec<AccessKey>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TokenList {
    tokens: Vec<ApiToken>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupList {
    groups: Vec<Group>,
}

/// All users (admin).
#[utoipa::path(
    get,
    path = "/users",
    tag = "principals",
    responses(
        (status = 200, body = UserList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
async fn list_users(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<UserList>, ApiError> {
    let users = state.dataplane.users(caller.who()).await?;
    Ok(Json(UserList { users }))
}

/// Create a user (admin).
#[utoipa::path(
    post,
    path = "/users",
    tag = "principals",
    request_body = NewUser,
    responses(
        (status = 201, body = User),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn create_user(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewUser>,
) -> Result<Response, ApiError> {
    let user = state
        .dataplane
        .create_user(caller.who(), &new.name, &new.display_name, new.admin)
        .await?;
    tracing::info!(user = %user.name, admin = user.admin, by = %caller.0.user, "user created");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// A user (the user themselves, or an admin).
#[utoipa::path(
    get,
    path = "/users/{name}",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 200, body = User),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn get_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.dataplane.user(caller.who(), &name).await?))
}

/// Change a user (admin).
#[utoipa::path(
    patch,
    path = "/users/{name}",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    request_body = UserPatch,
    responses(
        (status = 200, body = User),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn patch_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(patch): StrictJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    let user = state
        .dataplane
        .update_user(caller.who(), &name, &patch)
        .await?;
    Ok(Json(user))
}

/// Remove a user with their keys, tokens and grants (admin; not oneself).
#[utoipa::path(
    delete,
    path = "/users/{name}",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn delete_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dataplane.remove_user(caller.who(), &name).await?;
    tracing::info!(user = %name, by = %caller.0.user, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

/// A user's S3 access keys, without secrets (the user, or an admin).
#[utoipa::path(
    get,
    path = "/users/{name}/keys",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 200, body = KeyList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn list_keys(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state.dataplane.access_keys(caller.who(), &name).await?;
    Ok(Json(KeyList { keys }))
}

/// A new S3 key pair; the secret is shown only in this answer (the user, or an admin).
#[utoipa::path(
    post,
    path = "/users/{name}/keys",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    request_body = NewKey,
    responses(
        (status = 201, body = NewAccessKey),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn create_key(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(new): StrictJson<NewKey>,
) -> Result<Response, ApiError> {
    let import = match (&new.access_key_id, &new.secret_access_key) {
        (None, None) => None,
        (Some(id), Some(secret)) => Some((id.as_str(), secret.expose_secret())),
        _ => {
            return Err(ApiError::bad_request(
                Some("secret_access_key".into()),
                "access_key_id and secret_access_key go together",
            ));
        }
    };
    let terms = terms(new.read_only, &new.volumes, new.ttl.as_deref())?;
    let key = state
        .dataplane
        .create_access_key(caller.who(), &name, &new.description, &terms, import)
        .await?;
    tracing::info!(user = %name, access_key_id = %key.key.access_key_id, by = %caller.0.user, "access key created");
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// Revoke an access key (the user, or an admin).
#[utoipa::path(
    delete,
    path = "/users/{name}/keys/{id}",
    tag = "principals",
    params(
        ("name" = String, Path, description = "The user name"),
        ("id" = String, Path, description = "The access key id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn delete_key(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .dataplane
        .revoke_access_key(caller.who(), &name, &id)
        .await?;
    tracing::info!(user = %name, access_key_id = %id, by = %caller.0.user, "access key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// A user's API tokens, without secrets (the user, or an admin).
#[utoipa::path(
    get,
    path = "/users/{name}/tokens",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn list_tokens(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.dataplane.tokens(caller.who(), &name).await?;
    Ok(Json(TokenList { tokens }))
}

/// A new API token; the secret is shown only in this answer (the user, or an admin).
#[utoipa::path(
    post,
    path = "/users/{name}/tokens",
    tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    request_body = NewToken,
    responses(
        (status = 201, body = NewApiToken),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn create_token(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    StrictJson(new): StrictJson<NewToken>,
) -> Result<Response, ApiError> {
    let terms = terms(new.read_only, &new.volumes, new.ttl.as_deref())?;
    let token = state
        .dataplane
        .create_token(caller.who(), &name, &new.name, &terms)
        .await?;
    tracing::info!(user = %name, token = %token.token.id, by = %caller.0.user, "token created");
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

/// Revoke an API token (the user, or an admin).
#[utoipa::path(
    delete,
    path = "/users/{name}/tokens/{id}",
    tag = "principals",
    params(
        ("name" = String, Path, description = "The user name"),
        ("id" = String, Path, description = "The token id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn delete_token(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .dataplane
        .revoke_token(caller.who(), &name, &id)
        .await?;
    tracing::info!(user = %name, token = %id, by = %caller.0.user, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// All groups (admin).
#[utoipa::path(
    get,
    path = "/groups",
    tag = "principals",
    responses(
        (status = 200, body = GroupList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
async fn list_groups(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<GroupList>, ApiError> {
    let groups = state.dataplane.groups(caller.who()).await?;
    Ok(Json(GroupList { groups }))
}

/// Create a group (admin).
#[utoipa::path(
    post,
    path = "/groups",
    tag = "principals",
    request_body = NewGroup,
    responses(
        (status = 201, body = Group),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn create_group(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewGroup>,
) -> Result<Response, ApiError> {
    let group = state
        .dataplane
        .create_group(caller.who(), &new.name, &new.description)
        .await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

/// A group and its members (admin).
#[utoipa::path(
    get,
    path = "/groups/{name}",
    tag = "principals",
    params(("name" = String, Path, description = "The group name")),
    responses(
        (status = 200, body = Group),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn get_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(state.dataplane.group(caller.who(), &name).await?))
}

/// Remove a group and its grants (admin).
#[utoipa::path(
    delete,
    path = "/groups/{name}",
    tag = "principals",
    params(("name" = String, Path, description = "The group name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn delete_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dataplane.remove_group(caller.who(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a user to a group (admin).
#[utoipa::path(
    put,
    path = "/groups/{name}/members/{user}",
    tag = "principals",
    params(
        ("name" = String, Path, description = "The group name"),
        ("user" = String, Path, description = "The user name"),
    ),
    responses(
        (status = 200, body = Group),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn add_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(
        state
            .dataplane
            .add_member(caller.who(), &name, &user)
            .await?,
    ))
}

/// Take a user out of a group (admin).
#[utoipa::path(
    delete,
    path = "/groups/{name}/members/{user}",
    tag = "principals",
    params(
        ("name" = String, Path, description = "The group name"),
        ("user" = String, Path, description = "The user name"),
    ),
    responses(
        (status = 200, body = Group),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn remove_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((name, user)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(
        state
            .dataplane
            .remove_member(caller.who(), &name, &user)
            .await?,
    ))
}

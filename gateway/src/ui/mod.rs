//! The catalogue's web pages at `/ui`: a front like the S3 and HTTP ones, and as thin. Pages
//! are HTML written on the server (no scripts needed, no Node toolchain; the one stylesheet is
//! embedded in the binary), every answer comes from the dataplane, which keeps each caller to
//! what they may see, and quick-looks come from the compute path.
//!
//! - Sign-in (`/ui/login`, a form whose input is named `token`) takes an API token (or an
//!   OpenID Connect token where `[auth]` configures issuers). The session is a cookie
//!   (`archway_session`: HttpOnly, SameSite=Lax, Secure over HTTPS, path `/ui`) holding the token
//!   and a CSRF value sealed with the catalogue key (AES-256-GCM), so any replica on the
//!   catalogue opens it and nobody else can read or forge it. The token is checked again on
//!   every page: revoking it ends the session. Failed sign-ins count towards the source's
//!   failed-authentication limit.
//! - Every form that changes something (sign-out, volume edits, grants, reductions) carries the
//!   session's CSRF value and is refused without it; a cross-site `Origin` is refused too.
//!   The sign-in form has a CSRF value of its own (a short-lived cookie), against login CSRF.
//! - A browser asking for `/` without S3 credentials is sent to `/ui/` (see [`browser_root`]).
//! - Errors are pages with the message (and the request id for failures inside), never blank.
//! - Quick-looks (PNG) and histograms (SVG) are computed where the data lies, bounded in size
//!   (at most 2048 pixels a side, 512 by default) and time (`server.quicklook_timeout`), and
//!   kept in memory (`server.quicklook_cache_bytes`) under the object's ETag.

mod actions;
mod html;
mod images;
mod pages;
mod session;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use crate::error::ApiError;
use crate::state::AppState;

pub use session::Session;

/// What the web pages keep between requests: rendered quick-looks.
#[derive(Clone, Debug)]
pub struct Ui {
    quicklooks: moka::future::Cache<String, Bytes>,
}

impl Ui {
    /// A cache of `bytes` for quick-looks; entries live an hour at most (they are keyed by the
    /// object's ETag, so a changed object is never shown stale).
    pub fn new(bytes: u64) -> Self {
        Self {
            quicklooks: moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &String, v: &Bytes| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(std::time::Duration::from_secs(3600))
                .build(),
        }
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

/// The web pages' routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ui", get(to_volumes))
        .route("/ui/", get(to_volumes))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(actions::login_form).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/volumes", get(pages::volumes))
        .route("/ui/volumes/{id}", get(pages::volume))
        .route("/ui/volumes/{id}/edit", post(actions::edit_volume))
        .route("/ui/volumes/{id}/grants", post(actions::grant))
        .route("/ui/volumes/{id}/revoke", post(actions::revoke))
        .route("/ui/volumes/{id}/objects", get(pages::objects))
        .route("/ui/volumes/{id}/object", get(pages::object))
        .route("/ui/volumes/{id}/quicklook.png", get(images::quicklook))
        .route("/ui/volumes/{id}/histogram.svg", get(images::histogram))
        .route("/ui/reduce", post(actions::reduce))
        .route("/ui/search", get(pages::cone))
        .route("/ui/{*rest}", get(not_found).post(not_found))
}

async fn to_volumes() -> Response {
    redirect("/ui/volumes")
}

async fn not_found(session: Option<Session>) -> Response {
    UiError::new(
        StatusCode::NOT_FOUND,
        "There is no such page. Start from the volume list.",
    )
    .page(session.as_ref())
}

const STYLE: &str = include_str!("style.css");

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// A `303 See Other` to a path of this gateway.
pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Sends a browser that asks for `/` without S3 credentials to the web pages: a `GET /` that
/// accepts HTML and carries no `Authorization` header and no presigned or STS query. S3
/// clients (which sign, or ask anonymously without `text/html`) reach the S3 front as before.
pub async fn browser_root(req: Request, next: Next) -> Response {
    let browser = req.method() == Method::GET
        && req.uri().path() == "/"
        && !req.headers().contains_key(header::AUTHORIZATION)
        && req.uri().query().is_none_or(str::is_empty)
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if browser {
        return redirect("/ui/");
    }
    next.run(req).await
}

/// An error shown as a page: the status, and a message that says what went wrong.
#[derive(Debug)]
pub(crate) struct UiError {
    pub status: StatusCode,
    pub message: String,
    pub request_id: Option<String>,
}

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            request_id: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The page saying so, in the layout (signed in or not).
    pub fn page(&self, session: Option<&Session>) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Not signed in",
            s if s.is_server_error() => "Something failed",
            _ => "That did not work",
        };
        let id = self
            .request_id
            .as_deref()
            .map(|id| {
                format!(
                    " <span class=\"muted\">(request id {})</span>",
                    html::esc(id)
                )
            })
            .unwrap_or_default();
        let body = format!(
            "<h1>{title}</h1>\n<div class=\"error\" role=\"alert\" id=\"error\">{}{id}</div>\n\
             <p><a href=\"/ui/volumes\">Back to the volumes</a></p>",
            html::esc(&self.message)
        );
        let mut r = html::page(title, session, &body);
        *r.status_mut() = self.status;
        r
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            message: e.message,
            request_id: e.request_id,
        }
    }
}

impl From<archway_dataplane::DataplaneError> for UiError {
    fn from(e: archway_dataplane::DataplaneError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<archway_catalog::CatalogError> for UiError {
    fn from(e: archway_catalog::CatalogError) -> Self {
        ApiError::from(e).into()
    }
}

/// A page handler's result: the page, or the error as a page (rendered with the session by
/// [`Page`]).
pub(crate) type UiResult<T = Response> = Result<T, UiError>;

/// Renders a handler's error with the session it had.
pub(crate) fn or_error(session: &Session, r: UiResult) -> Response {
    r.unwrap_or_else(|e| e.page(Some(session)))
}

/// The error answer of an image (quick-look, histogram): plain text with the status, which a
/// page's `<img>` shows as its alternative text.
pub(crate) fn image_error(e: UiError) -> Response {
    (
        e.status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        e.message,
    )
        .into_response()
}

/// A form body, whose rejection (a field missing or malformed) is a page saying which.
#[derive(Debug)]
pub(crate) struct UiForm<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for UiForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(UiForm(v)),
            Err(e) => Err(UiError::bad_request(format!(
                "the form is incomplete or malformed: {}",
                e.body_text()
            ))
            .page(None)),
        }
    }
}

/// A page's query, whose rejection is a page saying what is wrong with it.
#[derive(Debug)]
pub(crate) struct UiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for UiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(UiQuery(v)),
            Err(e) => Err(UiError::bad_request(format!(
                "the address's query is incomplete or malformed: {}",
                e.body_text()
            ))
            .page(None)),
        }
    }
}

//! The forms that act: sign-in and sign-out, an admin's volume edits and grants, reductions.

use std::fmt::Write;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use archway_catalog::{Access, Subject, VolumePatch};
use archway_compute::{Engine, ReduceRequest};
use archway_dataplane::Op;

use super::html::{csrf_field, esc, page, q, seg};
use super::session::{
    self, LOGIN_COOKIE, clear_session, local_next, login_cookie, login_csrf_ok, same_origin,
    session_cookie,
};
use super::{Session, UiError, UiForm, UiQuery, UiResult, or_error, redirect};
use crate::client_addr::ClientAddr;
use crate::peer::Chain;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The sign-in page (with a message, after a failed try).
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let (cookie, csrf) = match login_cookie(state, headers) {
        Ok(c) => c,
        Err(e) => return e.page(None),
    };
    let error = message
        .map(|m| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/ui/login\" class=\"login\" id=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">An API token from <code>archway user token create NAME</code> (the embedded \
         default writes the admin's as <code>archway_api_token</code> in <code>archway-data/credentials</code>), or a token of your \
         organisation's sign-in where the gateway trusts one. The pages show what the token may read.</p>",
        esc(&csrf),
        esc(next),
    );
    let mut r = page("Sign in", None, &body);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /ui/login`: the sign-in form (a visitor already signed in goes on at once).
pub(super) async fn login_form(
    existing: Option<Session>,
    State(state): State<AppState>,
    headers: HeaderMap,
    UiQuery(next): UiQuery<NextQuery>,
) -> Response {
    let next = local_next(next.next.as_deref());
    if existing.is_some() {
        return redirect(&next);
    }
    login_page(&state, &headers, &next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("token", &"<redacted>")
            .field("next", &self.next)
            .finish()
    }
}

/// `POST /ui/login`: checks the token and starts the session. A wrong token answers 401 with
/// the form again (and counts as a failed authentication of the source).
pub(super) async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    UiForm(form): UiForm<LoginForm>,
) -> Response {
    let next = local_next(form.next.as_deref());
    if let Some(Extension(ClientAddr(ip))) = client
        && let Some(wait) = state.auth_limit.wait(ip)
    {
        let mut r = login_page(
            &state,
            &headers,
            &next,
            Some(&format!(
                "Too many failed sign-ins from your address: try again in {} s.",
                wait.as_secs().max(1)
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if !same_origin(&headers) || !login_csrf_ok(&state, &headers, &form.csrf) {
        return login_page(
            &state,
            &headers,
            &next,
            Some("The sign-in form expired or did not come from this site; sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim();
    if token.is_empty() {
        return login_page(
            &state,
            &headers,
            &next,
            Some("Enter an API token."),
            StatusCode::BAD_REQUEST,
        );
    }
    match crate::auth::bearer(&state, token).await {
        Ok((who, how)) => {
            crate::audit::note_principal(&who, Some(how));
            let cookie = match session_cookie(&state, &headers, token) {
                Ok(c) => c,
                Err(e) => return e.page(None),
            };
            tracing::info!(user = %who.user, "signed in to the web pages");
            let mut r = redirect(&next);
            for c in [
                cookie,
                session::set_cookie(
                    &state,
                    &headers,
                    LOGIN_COOKIE,
                    "",
                    std::time::Duration::ZERO,
                ),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => login_page(&state, &headers, &next, Some(&e.message), e.status),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: ends the session (the cookie; the token itself stays valid).
pub(super) async fn logout(
    session: Option<Session>,
    State(state): State<AppState>,
    headers: HeaderMap,
    UiForm(form): UiForm<CsrfForm>,
) -> Response {
    if let Some(s) = &session
        && let Err(e) = s.check_form(&headers, &form.csrf)
    {
        return e.page(Some(s));
    }
    let mut r = redirect("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&clear_session(&state, &headers)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    csrf: String,
    title: String,
    description: String,
    #[serde(default)]
    mission: String,
    #[serde(default)]
    instrument: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    license: String,
    #[serde(default)]
    public_read: Option<String>,
}

fn optional(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `POST /ui/volumes/{id}/edit` (admins): the description fields and public reading.
pub(super) async fn edit_volume(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UiForm(form): UiForm<EditForm>,
) -> Response {
    let r = async {
        session.check_form(&headers, &form.csrf)?;
        let patch = VolumePatch {
            title: Some(form.title.trim().to_string()),
            description: Some(form.description.replace("\r\n", "\n").trim().to_string()),
            mission: Some(optional(&form.mission)),
            instrument: Some(optional(&form.instrument)),
            tags: Some(
                form.tags
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            license: Some(optional(&form.license)),
            public_read: Some(form.public_read.is_some()),
            ..Default::default()
        };
        state
            .dataplane
            .update_volume(session.who(), &id, patch)
            .await?;
        tracing::info!(volume = %id, by = %session.who.user, "volume changed on the web pages");
        Ok(redirect(&format!("/ui/volumes/{}?done=saved", seg(&id))))
    }
    .await;
    or_error(&session, r)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct GrantForm {
    #[serde(default)]
    csrf: String,
    subject: String,
    #[serde(default)]
    level: Option<String>,
}

/// `POST /ui/volumes/{id}/grants` (admins): grants `subject` (`user:NAME`, `group:NAME`) a level.
pub(super) async fn grant(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UiForm(form): UiForm<GrantForm>,
) -> Response {
    let r = async {
        session.check_form(&headers, &form.csrf)?;
        let subject = Subject::parse(form.subject.trim())?;
        let level = Access::parse(form.level.as_deref().unwrap_or("read"))?;
        state
            .dataplane
            .grant(session.who(), &subject, &id, level)
            .await?;
        tracing::info!(volume = %id, %subject, level = level.as_str(), by = %session.who.user, "granted on the web pages");
        Ok(redirect(&format!("/ui/volumes/{}?done=granted", seg(&id))))
    }
    .await;
    or_error(&session, r)
}

/// `POST /ui/volumes/{id}/revoke` (admins): removes `subject`'s grant.
pub(super) async fn revoke(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UiForm(form): UiForm<GrantForm>,
) -> Response {
    let r = async {
        session.check_form(&headers, &form.csrf)?;
        let subject = Subject::parse(form.subject.trim())?;
        state.dataplane.revoke(session.who(), &subject, &id).await?;
        tracing::info!(volume = %id, %subject, by = %session.who.user, "revoked on the web pages");
        Ok(redirect(&format!("/ui/volumes/{}?done=revoked", seg(&id))))
    }
    .await;
    or_error(&session, r)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReduceForm {
    #[serde(default)]
    csrf: String,
    volume: String,
    key: String,
    op: String,
    #[serde(default)]
    hdu: Option<String>,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    engine: Option<String>,
}

/// `POST /ui/reduce`: runs a reduction where the data lies (as `POST /api/v1/reduce`) and
/// shows its JSON answer.
pub(super) async fn reduce(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    UiForm(form): UiForm<ReduceForm>,
) -> Response {
    let r: UiResult = async {
        session.check_form(&headers, &form.csrf)?;
        let op = archway_compute::Op::parse(form.op.trim()).ok_or_else(|| {
            UiError::bad_request(format!("`{}` is not a reduction (op)", form.op))
        })?;
        if op.answers_array() {
            return Err(UiError::bad_request(format!(
                "`{}` answers an array: ask it through the HTTP API (POST /api/v1/reduce)",
                op.as_str()
            )));
        }
        let engine = match form.engine.as_deref().unwrap_or("auto") {
            "auto" | "" => Engine::Auto,
            "cpu" => Engine::Cpu,
            "cuda" => Engine::Cuda,
            other => {
                return Err(UiError::bad_request(format!(
                    "`{other}` is not an engine (auto, cpu or cuda)"
                )));
            }
        };
        let mut req = ReduceRequest::new(form.volume.as_str(), form.key.as_str(), op);
        req.hdu = form.hdu.as_deref().and_then(optional);
        req.column = form.column.as_deref().and_then(optional);
        req.engine = engine;
        crate::audit::note_target(&req.volume, Some(&req.key));
        let volume = super::pages::open_volume(&state, &session, &req.volume, Op::Get).await?;
        let result =
            crate::api::reduce::reduce_one(&state, &Chain::default(), &volume, &req).await?;
        let json = serde_json::to_string_pretty(&result).unwrap_or_default();
        let mut body = format!(
            "<h1>Reduction</h1><p class=\"meta\"><code>{}</code> of <a href=\"/ui/volumes/{}/object?key={}\">{}</a> in \
             <a href=\"/ui/volumes/{}\">{}</a></p>",
            result.op.as_str(),
            seg(&req.volume),
            q(&req.key),
            esc(&req.key),
            seg(&req.volume),
            esc(&req.volume),
        );
        let _ = write!(
            body,
            "<p id=\"reduce-where\">Computed {} on the {} engine: {} read where the data is, \
             {:.1} ms.</p><pre id=\"reduce-result\" class=\"json\">{}</pre>",
            result
                .site
                .as_deref()
                .map(|s| format!("at the peer gateway {}", esc(s)))
                .unwrap_or_else(|| "here".into()),
            match result.engine {
                Engine::Auto => "auto",
                Engine::Cpu => "cpu",
                Engine::Cuda => "cuda",
            },
            super::html::bytes(result.bytes_read),
            result.elapsed_ms,
            esc(&json)
        );
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/reduce\" class=\"inline\">{}\
             <input type=\"hidden\" name=\"volume\" value=\"{}\"><input type=\"hidden\" name=\"key\" value=\"{}\">\
             <input type=\"hidden\" name=\"op\" value=\"{}\"><input type=\"hidden\" name=\"hdu\" value=\"{}\">\
             <button type=\"submit\">Run again</button></form>",
            csrf_field(&session),
            esc(&req.volume),
            esc(&req.key),
            result.op.as_str(),
            result.hdu,
        );
        Ok(page("Reduction", Some(&session), &body))
    }
    .await;
    or_error(&session, r)
}

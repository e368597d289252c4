//! Volumes and grants.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_catalog::{Access, Grant, NewVolume, ScanSummary, Subject, VolumePatch, VolumeQuery};

use super::{AppState, VolumeList, VolumeView, channel_stream};
use crate::auth::Caller;
use crate::body::{StrictJson, read_body};
use crate::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_volumes, create_volume))
        .routes(routes!(get_volume, put_volume, patch_volume, delete_volume))
        .routes(routes!(scan_volume))
        .routes(routes!(volume_grants))
        .routes(routes!(put_grant, delete_grant))
        .routes(routes!(list_grants))
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantQuery {
    /// Only grants on this volume.
    #[serde(default)]
    pub volume: Option<String>,
    /// Only grants to this subject (`user:NAME` or `group:NAME`).
    #[serde(default)]
    pub subject: Option<String>,
}

/// One line of a scan's NDJSON progress stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", tag = "event")]
pub enum ScanEvent {
    Progress {
        objects: u64,
        bytes: u64,
    },
    /// The walk is done; the science index (the FITS headers) is being built.
    Indexing {
        objects: u64,
        bytes: u64,
    },
    /// `science`: what the science index pass did (absent when it failed: see `error`).
    Done {
        scan: ScanSummary,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        science: Option<crate::science::ScienceSummary>,
    },
    Error {
        code: String,
        message: String,
    },
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
struct GrantList {
    grants: Vec<Grant>,
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(None, e.body_text()))
}

/// Search the volumes the caller may see.
#[utoipa::path(
    get,
    path = "/volumes",
    tag = "volumes",
    params(VolumeQuery),
    responses(
        (status = 200, body = VolumeList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
async fn list_volumes(
    caller: Caller,
    State(state): State<AppState>,
    q: Result<Query<VolumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VolumeList>, ApiError> {
    let q = query(q)?;
    let found = state.dataplane.volumes(caller.who(), &q).await?;
    Ok(Json(VolumeList {
        volumes: found
            .into_iter()
            .map(|(volume, access)| VolumeView { volume, access })
            .collect(),
    }))
}

/// One volume; a volume the caller may not see is reported missing.
#[utoipa::path(
    get,
    path = "/volumes/{id}",
    tag = "volumes",
    params(("id" = String, Path, description = "The volume id (its bucket name)")),
    responses(
        (status = 200, body = VolumeView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn get_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VolumeView>, ApiError> {
    let (volume, access) = state.dataplane.volume(caller.who(), &id).await?;
    Ok(Json(VolumeView { volume, access }))
}

/// Create a volume (admin).
#[utoipa::path(
    post,
    path = "/volumes",
    tag = "volumes",
    request_body = NewVolume,
    responses(
        (status = 201, body = VolumeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
async fn create_volume(
    caller: Caller,
    State(state): State<AppState>,
    StrictJson(new): StrictJson<NewVolume>,
) -> Result<Response, ApiError> {
    let v = state.dataplane.create_volume(caller.who(), new).await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, "volume created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/volumes/{}", v.id))],
        Json(VolumeView {
            volume: v,
            access: Access::Admin,
        }),
    )
        .into_response())
}

/// Create the volume named in the path, or replace its description whole (admin).
#[utoipa::path(
    put,
    path = "/volumes/{id}",
    tag = "volumes",
    params(("id" = String, Path, description = "The volume id")),
    request_body(content = NewVolume, description = "The volume; `id` may be left out"),
    responses(
        (status = 200, description = "Replaced", body = VolumeView),
        (status = 201, description = "Created", body = VolumeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
async fn put_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(req, state.server.max_api_body_bytes).await?;
    let mut value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(None, format!("invalid JSON body: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::bad_request(
            None,
            "the body must be a JSON object",
        ));
    };
    match obj.get("id") {
        Some(serde_json::Value::String(body_id)) if *body_id != id => {
            return Err(ApiError::bad_request(
                Some("id".into()),
                format!("the body's id `{body_id}` differs from the path's `{id}`"),
            ));
        }
        _ => {
            obj.insert("id".into(), serde_json::Value::String(id.clone()));
        }
    }
    let bytes =
        serde_json::to_vec(&value).map_err(|e| ApiError::bad_request(None, e.to_string()))?;
    let StrictJson(new) = StrictJson::<NewVolume>::parse(&bytes)?;
    let (v, created) = state.dataplane.put_volume(caller.who(), new).await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, created, "volume put");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(VolumeView {
            volume: v,
            access: Access::Admin,
        }),
    )
        .into_response())
}

/// Change some fields of a volume (admin); `null` clears an optional field.
#[utoipa::path(
    patch,
    path = "/volumes/{id}",
    tag = "volumes",
    params(("id" = String, Path, description = "The volume id")),
    request_body = VolumePatch,
    responses(
        (status = 200, body = VolumeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn patch_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    StrictJson(patch): StrictJson<VolumePatch>,
) -> Result<Json<VolumeView>, ApiError> {
    let v = state
        .dataplane
        .update_volume(caller.who(), &id, patch)
        .await?;
    tracing::info!(volume = %v.id, by = %caller.0.user, "volume updated");
    Ok(Json(VolumeView {
        volume: v,
        access: Access::Admin,
    }))
}

/// Remove the catalogue record and its grants (admin); the data in the backend is untouched.
#[utoipa::path(
    delete,
    path = "/volumes/{id}",
    tag = "volumes",
    params(("id" = String, Path, description = "The volume id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn delete_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dataplane.remove_volume(caller.who(), &id).await?;
    tracing::info!(volume = %id, by = %caller.0.user, "volume removed from the catalogue");
    Ok(StatusCode::NO_CONTENT)
}

/// Walk the volume and record its object count and size, then build its science index (the
/// ObsCore fields of every FITS object, read from its headers) (admin access to the volume);
/// the answer is a stream of NDJSON events: progress lines, `indexing`, then `done` or
/// `error`.
#[utoipa::path(
    post,
    path = "/volumes/{id}/scan",
    tag = "volumes",
    params(("id" = String, Path, description = "The volume id")),
    responses(
        (status = 200, description = "NDJSON events", content_type = "application/x-ndjson", body = ScanEvent),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn scan_volume(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Refusals (a volume the caller may not see, no right to scan) come before the stream
    // starts, so they get their statuses; the walk itself reports through the stream.
    state.dataplane.volume(caller.who(), &id).await?;
    state
        .dataplane
        .open(caller.who(), &id, archway_dataplane::Op::Scan)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ScanEvent>(16);
    let dataplane = state.dataplane.clone();
    let principal = caller.0.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = dataplane
            .scan(Some(&principal), &id, move |objects, bytes| {
                // Progress is advisory: drop it rather than wait when the client is slow.
                let _ = progress_tx.try_send(ScanEvent::Progress { objects, bytes });
            })
            .await;
        let last = match result {
            Ok(scan) => {
                tracing::info!(volume = %id, objects = scan.objects, bytes = scan.bytes, "scan done");
                let _ = tx
                    .send(ScanEvent::Indexing {
                        objects: scan.objects,
                        bytes: scan.bytes,
                    })
                    .await;
                match crate::science::index_volume(&dataplane, &principal, &id).await {
                    Ok(science) => ScanEvent::Done {
                        scan,
                        science: Some(science),
                    },
                    Err(e) => {
                        let api = ApiError::from(e);
                        ScanEvent::Error {
                            code: api.code.to_string(),
                            message: format!("the science index: {}", api.message),
                        }
                    }
                }
            }
            Err(e) => {
                let api = ApiError::from(e);
                ScanEvent::Error {
                    code: api.code.to_string(),
                    message: api.message,
                }
            }
        };
        let _ = tx.send(last).await;
    });
    let lines = channel_stream(rx).map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(lines),
    )
        .into_response())
}

fn parse_subject(s: &str) -> Result<Subject, ApiError> {
    Subject::parse(s).map_err(|e| ApiError::bad_request(Some("subject".into()), e.to_string()))
}

/// The grants on one volume (admin).
#[utoipa::path(
    get,
    path = "/volumes/{id}/grants",
    tag = "grants",
    params(("id" = String, Path, description = "The volume id")),
    responses(
        (status = 200, body = GrantList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn volume_grants(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GrantList>, ApiError> {
    let grants = state
        .dataplane
        .grants(caller.who(), Some(&id), None)
        .await?;
    Ok(Json(GrantList { grants }))
}

/// Grants, filtered by volume and subject (admin).
#[utoipa::path(
    get,
    path = "/grants",
    tag = "grants",
    params(GrantQuery),
    responses(
        (status = 200, body = GrantList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
async fn list_grants(
    caller: Caller,
    State(state): State<AppState>,
    q: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GrantList>, ApiError> {
    let q = query(q)?;
    let subject = q.subject.as_deref().map(parse_subject).transpose()?;
    let grants = state
        .dataplane
        .grants(caller.who(), q.volume.as_deref(), subject.as_ref())
        .await?;
    Ok(Json(GrantList { grants }))
}

/// Grant a user or group a level of access to a volume (admin).
#[utoipa::path(
    put,
    path = "/volumes/{id}/grants/{subject}",
    tag = "grants",
    params(
        ("id" = String, Path, description = "The volume id"),
        ("subject" = String, Path, description = "`user:NAME` or `group:NAME`"),
    ),
    request_body = super::GrantBody,
    responses(
        (status = 200, body = Grant),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn put_grant(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
    StrictJson(body): StrictJson<super::GrantBody>,
) -> Result<Json<Grant>, ApiError> {
    let subject = parse_subject(&subject)?;
    let grant = state
        .dataplane
        .grant(caller.who(), &subject, &id, body.level)
        .await?;
    tracing::info!(volume = %id, subject = %subject, level = %body.level, by = %caller.0.user, "granted");
    Ok(Json(grant))
}

/// Revoke a grant (admin).
#[utoipa::path(
    delete,
    path = "/volumes/{id}/grants/{subject}",
    tag = "grants",
    params(
        ("id" = String, Path, description = "The volume id"),
        ("subject" = String, Path, description = "`user:NAME` or `group:NAME`"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn delete_grant(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let subject = parse_subject(&subject)?;
    state.dataplane.revoke(caller.who(), &subject, &id).await?;
    tracing::info!(volume = %id, subject = %subject, by = %caller.0.user, "revoked");
    Ok(StatusCode::NO_CONTENT)
}

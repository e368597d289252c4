//! HTTP API errors: one JSON shape, and the one place catalogue, dataplane and compute errors
//! become HTTP statuses.
//!
//! Errors whose words may describe this server's inside (a backend's own message, a spool
//! path, the database) are logged here with a request id, and the client gets the status, a
//! generic message and the same id — never the backend's text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use archway_catalog::CatalogError;
use archway_compute::ComputeError;
use archway_dataplane::{BodyError, DataplaneError};

/// The body of every error answer: `{"error": {"code", "message", "field"?, "request_id"?}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`NotFound`, `Forbidden`, `InvalidRequest`, …).
    pub code: String,
    pub message: String,
    /// The request field at fault, for 400 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For failures inside the gateway: the id under which its log has the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An error answer on its way out.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub request_id: Option<String>,
}

tokio::task_local! {
    /// The id of the S3 request being served (see [`serving`]).
    static REQUEST_ID: String;
}

/// Runs `f` as the request `id`: every [`request_id`] inside it is that id, so an error body's
/// RequestId and the response's `x-amz-request-id` agree.
pub async fn serving<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The id of the request being served, or a fresh one outside of [`serving`].
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(String::clone)
        .unwrap_or_else(|_| fresh_request_id())
}

/// A fresh request id: 16 hex digits.
pub fn fresh_request_id() -> String {
    archway_dataplane::audit::fresh_id()
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            request_id: None,
        }
    }

    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            field,
            ..Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// A failure inside the gateway: `detail` goes to the log under a request id, the client
    /// gets `public` and the id.
    pub fn internal(
        status: StatusCode,
        code: &'static str,
        public: impl Into<String>,
        detail: &dyn std::fmt::Display,
    ) -> Self {
        let id = request_id();
        tracing::error!(request_id = %id, status = %status, code, error = %detail, "request failed");
        let public = public.into();
        Self {
            message: format!("{public} (request id {id}; the gateway's log has the details)"),
            request_id: Some(id),
            ..Self::new(status, code, "")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
                request_id: self.request_id.clone(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"archway\""),
            );
        }
        if let Some(id) = self.request_id
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let message = e.to_string();
        match e {
            CatalogError::NotFound { .. } => ApiError::not_found(message),
            CatalogError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", message)
            }
            CatalogError::Invalid { field, .. } => {
                ApiError::bad_request(Some(field.to_string()), message)
            }
            CatalogError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            }
            CatalogError::QuotaExceeded { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "QuotaExceeded", message)
            }
            CatalogError::Database { .. } | CatalogError::Migration { .. } => ApiError::internal(
                StatusCode::SERVICE_UNAVAILABLE,
                "CatalogUnavailable",
                "the catalogue is unavailable",
                &e,
            ),
            CatalogError::SecretKey { .. }
            | CatalogError::Crypto
            | CatalogError::Io { .. }
            | CatalogError::Corrupt { .. } => ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the catalogue failed",
                &e,
            ),
        }
    }
}

impl From<DataplaneError> for ApiError {
    fn from(e: DataplaneError) -> Self {
        if let Some(volume) = e.unreachable_backend() {
            tracing::warn!(volume, error = %e, "a volume's storage did not answer");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BackendUnavailable",
                format!(
                    "volume `{volume}`: its storage did not answer in time or refused the \
                     connection; retry later"
                ),
            );
        }
        let message = e.to_string();
        match e {
            DataplaneError::Catalog(c) => c.into(),
            DataplaneError::NoSuchVolume { .. }
            | DataplaneError::NoSuchKey { .. }
            | DataplaneError::NoSuchUpload { .. } => ApiError::not_found(message),
            // Without a token only public volumes can be read: say what would help.
            DataplaneError::AccessDenied {
                anonymous: true,
                ref volume,
                ..
            } => ApiError::unauthorized(format!(
                "volume `{volume}` is not public: this request needs an API token (send \
                 Authorization: Bearer <token>)"
            )),
            DataplaneError::AccessDenied {
                anonymous: false, ..
            }
            | DataplaneError::NotPermitted { .. } => ApiError::forbidden(message),
            DataplaneError::ReadOnly { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "ReadOnly", message)
            }
            DataplaneError::VolumeExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", message)
            }
            DataplaneError::VolumeNotEmpty { .. } => {
                ApiError::new(StatusCode::CONFLICT, "NotEmpty", message)
            }
            DataplaneError::KeyConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "KeyConflict", message)
            }
            DataplaneError::NotAWorkspace { .. } => {
                ApiError::new(StatusCode::CONFLICT, "NotAWorkspace", message)
            }
            DataplaneError::InvalidKey { .. } => ApiError::bad_request(Some("key".into()), message),
            DataplaneError::InvalidRequest { .. }
            | DataplaneError::InvalidPart { .. }
            | DataplaneError::InvalidPartOrder { .. }
            | DataplaneError::EntityTooSmall { .. } => ApiError::bad_request(None, message),
            DataplaneError::PreconditionFailed { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                message,
            ),
            DataplaneError::NotModified { .. } => {
                ApiError::new(StatusCode::NOT_MODIFIED, "NotModified", message)
            }
            DataplaneError::InvalidRange { .. } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", message)
            }
            DataplaneError::EntityTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "EntityTooLarge", message)
            }
            DataplaneError::QuotaExceeded { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "QuotaExceeded", message)
            }
            DataplaneError::Body { ref source, .. } => match source {
                BodyError::DigestMismatch { .. } => {
                    ApiError::new(StatusCode::BAD_REQUEST, "BadDigest", message)
                }
                BodyError::ChunkSignature => {
                    ApiError::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message)
                }
                BodyError::Incomplete { .. } => ApiError::bad_request(None, message),
                BodyError::Source(_) | BodyError::Local { .. } => ApiError::internal(
                    StatusCode::BAD_GATEWAY,
                    "BackendError",
                    "reading the data failed",
                    &e,
                ),
            },
            DataplaneError::UnknownBackend { .. }
            | DataplaneError::Backend { .. }
            | DataplaneError::NoWorkspaceBackend => ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BackendMisconfigured",
                "the volume's backend is not configured here",
                &e,
            ),
            DataplaneError::Store { .. } => ApiError::internal(
                StatusCode::BAD_GATEWAY,
                "BackendError",
                "the storage backend failed",
                &e,
            ),
            DataplaneError::Spool { .. } => ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the gateway's upload spool failed",
                &e,
            ),
        }
    }
}

impl ApiError {
    /// A reduction's failure on `key` in `volume`: the message names the object (and the HDU
    /// and card where the file is at fault).
    pub fn compute(volume: &str, key: &str, e: ComputeError) -> Self {
        let message = format!("`{key}` in volume `{volume}`: {e}");
        match e {
            ComputeError::Store(ref source) => {
                // A refusal by the volume's checked handle is the dataplane's own error.
                if let Some(refused) = archway_dataplane::error::refusal(source) {
                    return match refused {
                        DataplaneError::AccessDenied { .. } | DataplaneError::ReadOnly { .. } => {
                            ApiError::forbidden(message)
                        }
                        _ => ApiError::bad_request(None, message),
                    };
                }
                match **source {
                    // The store's own message may name server paths: say it in the volume's terms.
                    archway_dataplane::object_store::Error::NotFound { .. } => {
                        ApiError::not_found(format!("no object `{key}` in volume `{volume}`"))
                    }
                    archway_dataplane::object_store::Error::PermissionDenied { .. } => {
                        ApiError::forbidden(format!("`{key}` in volume `{volume}`: access denied"))
                    }
                    _ => ApiError::internal(
                        StatusCode::BAD_GATEWAY,
                        "BackendError",
                        format!("`{key}` in volume `{volume}`: the storage backend failed"),
                        &e,
                    ),
                }
            }
            ComputeError::Format { .. } | ComputeError::Truncated { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidFits", message)
            }
            ComputeError::NoSuchHdu { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "NoSuchHdu", message)
            }
            ComputeError::NoSuchColumn { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "NoSuchColumn", message)
            }
            ComputeError::InvalidRequest { .. } => ApiError::bad_request(None, message),
            ComputeError::Unsupported { .. } => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "NotImplemented", message)
            }
            ComputeError::EngineUnavailable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "EngineUnavailable", message)
            }
            ComputeError::Task(_) => ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("`{key}` in volume `{volume}`: a compute task failed"),
                &e,
            ),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_errors_map_to_statuses_that_name_the_object() {
        let format = || ComputeError::Format {
            hdu: 1,
            card: Some(9),
            message: "TFORM2 = 'Z' is not a valid column format".into(),
        };
        let cases = [
            (format(), StatusCode::UNPROCESSABLE_ENTITY, "InvalidFits"),
            (
                ComputeError::Truncated {
                    size: 5760,
                    start: 5760,
                    end: 8640,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidFits",
            ),
            (
                ComputeError::NoSuchHdu {
                    wanted: "EXTNAME SCI".into(),
                    available: "0, 1".into(),
                },
                StatusCode::NOT_FOUND,
                "NoSuchHdu",
            ),
            (
                ComputeError::InvalidRequest {
                    message: "bins must be 1 to 100000".into(),
                },
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
            ),
            (
                ComputeError::Unsupported {
                    what: "tile compression `FOO_1` (HDU 1)".into(),
                },
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
            ),
            (
                ComputeError::EngineUnavailable {
                    engine: "cuda",
                    reason: "no CUDA driver".into(),
                },
                StatusCode::CONFLICT,
                "EngineUnavailable",
            ),
        ];
        for (e, status, code) in cases {
            let what = e.to_string();
            let api = ApiError::compute("demo", "obs/a.fits", e);
            assert_eq!(api.status, status, "{what}");
            assert_eq!(api.code, code, "{what}");
            assert!(
                api.message.starts_with("`obs/a.fits` in volume `demo`: "),
                "{}",
                api.message
            );
        }
    }
}

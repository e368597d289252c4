//! HTTP API errors: one JSON shape, and the one place catalogue and dataplane errors become
//! HTTP statuses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use archway_catalog::CatalogError;
use archway_compute::ComputeError;
use archway_dataplane::DataplaneError;

/// The body of every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer on its way out.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"archway\""),
            );
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
            CatalogError::Database { .. } | CatalogError::Migration { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "CatalogUnavailable",
                message,
            ),
            CatalogError::SecretKey { .. }
            | CatalogError::Crypto
            | CatalogError::Io { .. }
            | CatalogError::Corrupt { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
        }
    }
}

impl From<DataplaneError> for ApiError {
    fn from(e: DataplaneError) -> Self {
        let message = e.to_string();
        match e {
            DataplaneError::Catalog(c) => c.into(),
            DataplaneError::NoSuchVolume { .. } | DataplaneError::NoSuchKey { .. } => {
                ApiError::not_found(message)
            }
            DataplaneError::AccessDenied { .. } => ApiError::forbidden(message),
            DataplaneError::ReadOnly { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "ReadOnly", message)
            }
            DataplaneError::InvalidKey { .. } => ApiError::bad_request(Some("key".into()), message),
            DataplaneError::InvalidRequest { .. } => ApiError::bad_request(None, message),
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
            DataplaneError::UnknownBackend { .. } | DataplaneError::Backend { .. } => {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "BackendMisconfigured",
                    message,
                )
            }
            DataplaneError::Store { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "BackendError", message)
            }
            DataplaneError::Body { .. } => ApiError::bad_request(None, message),
            DataplaneError::NoSuchUpload { .. } => ApiError::not_found(message),
            DataplaneError::EntityTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "EntityTooLarge", message)
            }
            DataplaneError::InvalidPart { .. } | DataplaneError::EntityTooSmall { .. } => {
                ApiError::bad_request(None, message)
            }
            DataplaneError::Spool { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
        }
    }
}

impl ApiError {
    /// A reduction's failure on `key` in `volume`: the message names the object (and the HDU
    /// and card where the file is at fault).
    pub fn compute(volume: &str, key: &str, e: ComputeError) -> Self {
        let message = format!("`{key}` in volume `{volume}`: {e}");
        match e {
            ComputeError::Store(source) => match *source {
                // The store's own message may name server paths: say it in the volume's terms.
                archway_dataplane::object_store::Error::NotFound { .. } => {
                    ApiError::not_found(format!("no object `{key}` in volume `{volume}`"))
                }
                archway_dataplane::object_store::Error::PermissionDenied { .. } => {
                    ApiError::forbidden(message)
                }
                _ => ApiError::new(StatusCode::BAD_GATEWAY, "BackendError", message),
            },
            ComputeError::Format { .. } | ComputeError::Truncated { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidFits", message)
            }
            ComputeError::NoSuchHdu { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "NoSuchHdu", message)
            }
            ComputeError::InvalidRequest { .. } => ApiError::bad_request(None, message),
            ComputeError::Unsupported { .. } => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "NotImplemented", message)
            }
            ComputeError::EngineUnavailable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "EngineUnavailable", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
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

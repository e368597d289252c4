//! The one mapping of dataplane errors to S3 errors.
//!
//! Exhaustive: a new dataplane error does not compile until it has an S3 code here. Errors
//! whose words may describe this server's inside (a backend's message, a spool path, the
//! database) are logged with the request id the client also gets, and answered in generic
//! words.

use s3s::{S3Error, S3ErrorCode};

use archway_catalog::CatalogError;
use archway_dataplane::{BodyError, DataplaneError};

use crate::error::request_id;

/// The S3 code for a dataplane error.
fn code(e: &DataplaneError) -> S3ErrorCode {
    match e {
        DataplaneError::NoSuchVolume { .. } => S3ErrorCode::NoSuchBucket,
        DataplaneError::AccessDenied { .. }
        | DataplaneError::ReadOnly { .. }
        | DataplaneError::NotPermitted { .. } => S3ErrorCode::AccessDenied,
        DataplaneError::VolumeExists { yours: true, .. } => S3ErrorCode::BucketAlreadyOwnedByYou,
        DataplaneError::VolumeExists { yours: false, .. } => S3ErrorCode::BucketAlreadyExists,
        DataplaneError::VolumeNotEmpty { .. } => S3ErrorCode::BucketNotEmpty,
        DataplaneError::NotAWorkspace { .. } => S3ErrorCode::AccessDenied,
        DataplaneError::InvalidKey { key, .. }
            if key.len() > archway_dataplane::key::MAX_KEY_BYTES =>
        {
            S3ErrorCode::KeyTooLongError
        }
        DataplaneError::InvalidKey { .. } | DataplaneError::InvalidRequest { .. } => {
            S3ErrorCode::InvalidArgument
        }
        DataplaneError::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
        // No S3 code says it (MinIO answers XMinioParentIsObject); HTTP 409, see `dataplane_error`.
        DataplaneError::KeyConflict { .. } => {
            S3ErrorCode::from_bytes(b"KeyConflict").unwrap_or(S3ErrorCode::InvalidRequest)
        }
        DataplaneError::PreconditionFailed { .. } => S3ErrorCode::PreconditionFailed,
        DataplaneError::NotModified { .. } => S3ErrorCode::NotModified,
        DataplaneError::InvalidRange { .. } => S3ErrorCode::InvalidRange,
        DataplaneError::NoSuchUpload { .. } => S3ErrorCode::NoSuchUpload,
        DataplaneError::InvalidPartOrder { .. } => S3ErrorCode::InvalidPartOrder,
        DataplaneError::InvalidPart { .. } => S3ErrorCode::InvalidPart,
        DataplaneError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        DataplaneError::EntityTooLarge { .. } => S3ErrorCode::EntityTooLarge,
        // No AWS code says it; Ceph RGW's `QuotaExceeded`, HTTP 403 (see `dataplane_error`).
        DataplaneError::QuotaExceeded { .. }
        | DataplaneError::Catalog(CatalogError::QuotaExceeded { .. }) => quota_exceeded(),
        DataplaneError::Body { source, .. } => match source {
            BodyError::DigestMismatch { .. } => S3ErrorCode::BadDigest,
            BodyError::ChunkSignature => S3ErrorCode::SignatureDoesNotMatch,
            BodyError::Incomplete { .. } => S3ErrorCode::IncompleteBody,
            BodyError::Source(inner) => code(inner),
            BodyError::Local { .. } => S3ErrorCode::InternalError,
        },
        DataplaneError::Catalog(c) => match c {
            CatalogError::NotFound { .. } => S3ErrorCode::NoSuchBucket,
            CatalogError::AlreadyExists { .. } => S3ErrorCode::BucketAlreadyExists,
            CatalogError::Invalid { field: "id", .. } => S3ErrorCode::InvalidBucketName,
            CatalogError::Invalid { .. } | CatalogError::Conflict { .. } => {
                S3ErrorCode::InvalidArgument
            }
            CatalogError::QuotaExceeded { .. } => quota_exceeded(),
            CatalogError::Database { .. } | CatalogError::Migration { .. } => {
                S3ErrorCode::ServiceUnavailable
            }
            CatalogError::SecretKey { .. }
            | CatalogError::Crypto
            | CatalogError::Io { .. }
            | CatalogError::Corrupt { .. } => S3ErrorCode::InternalError,
        },
        DataplaneError::UnknownBackend { .. }
        | DataplaneError::Backend { .. }
        | DataplaneError::NoWorkspaceBackend
        | DataplaneError::Store { .. }
        | DataplaneError::Spool { .. } => S3ErrorCode::InternalError,
    }
}

/// The code of a write refused by a workspace quota (as Ceph RGW words it).
fn quota_exceeded() -> S3ErrorCode {
    S3ErrorCode::from_bytes(b"QuotaExceeded").unwrap_or(S3ErrorCode::AccessDenied)
}

/// The S3 error for a dataplane error, with a request id.
pub fn dataplane_error(e: DataplaneError) -> S3Error {
    let code = code(&e);
    let conflict = matches!(e, DataplaneError::KeyConflict { .. });
    let quota = code == quota_exceeded();
    let id = request_id();
    if let Some(volume) = e.unreachable_backend() {
        tracing::warn!(request_id = %id, volume, error = %e, "a volume's storage did not answer");
        let mut err = S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            format!(
                "volume `{volume}`: its storage did not answer in time or refused the \
                 connection; retry later (request id {id})"
            ),
        );
        err.set_request_id(id);
        return err;
    }
    let message = if e.is_internal() {
        tracing::error!(request_id = %id, error = %e, "S3 request failed");
        format!(
            "the gateway could not complete the request (request id {id}; its log has the details)"
        )
    } else {
        e.to_string()
    };
    let mut err = S3Error::with_message(code, message);
    err.set_request_id(id);
    if conflict {
        err.set_status_code(http::StatusCode::CONFLICT);
    }
    if quota {
        err.set_status_code(http::StatusCode::FORBIDDEN);
    }
    err
}

/// The catalogue could not be asked (authentication): logged, answered without its words.
pub fn catalog_unavailable(e: CatalogError) -> S3Error {
    let id = request_id();
    tracing::error!(request_id = %id, error = %e, "catalogue error in the S3 front");
    let mut err = S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        format!("the catalogue is unavailable (request id {id})"),
    );
    err.set_request_id(id);
    err
}

/// Text as XML character data or an attribute value.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An S3 XML error answered by the gateway itself (outside `s3s`: refused routes, CORS).
pub fn xml_response(
    status: http::StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let escape = xml_escape;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <RequestId>{}</RequestId></Error>",
        escape(code),
        escape(message),
        escape(request_id)
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

/// Gives an S3 error made here (not from the dataplane) a request id.
pub fn with_request_id(mut e: S3Error) -> S3Error {
    if e.request_id().is_none() {
        e.set_request_id(request_id());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_are_s3_xml() {
        let r = xml_response(http::StatusCode::FORBIDDEN, "AccessForbidden", "a<b", "ID");
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/xml");
    }

    #[test]
    fn backend_words_never_reach_the_client() {
        let e = DataplaneError::Store {
            volume: "demo".into(),
            key: "a.fits".into(),
            op: archway_dataplane::Op::Get,
            source: Box::new(archway_dataplane::object_store::Error::Generic {
                store: "LocalFileSystem",
                source: "reading /srv/secret/archive/a.fits: I/O error".into(),
            }),
        };
        let s3 = dataplane_error(e);
        assert_eq!(*s3.code(), S3ErrorCode::InternalError);
        let message = s3.message().unwrap();
        assert!(!message.contains("/srv"), "{message}");
        assert!(message.contains(s3.request_id().unwrap()), "{message}");
    }

    #[test]
    fn refusals_and_body_faults_keep_their_codes() {
        let cases = [
            (
                DataplaneError::ReadOnly {
                    volume: "demo".into(),
                },
                S3ErrorCode::AccessDenied,
            ),
            (
                DataplaneError::Body {
                    volume: "w".into(),
                    key: "k".into(),
                    source: BodyError::DigestMismatch {
                        header: "Content-MD5",
                    },
                },
                S3ErrorCode::BadDigest,
            ),
            (
                DataplaneError::Body {
                    volume: "w".into(),
                    key: "k".into(),
                    source: BodyError::ChunkSignature,
                },
                S3ErrorCode::SignatureDoesNotMatch,
            ),
            (
                DataplaneError::InvalidPartOrder {
                    upload_id: "u".into(),
                    part: 1,
                    previous: 2,
                },
                S3ErrorCode::InvalidPartOrder,
            ),
            (
                DataplaneError::VolumeExists {
                    volume: "w".into(),
                    yours: true,
                },
                S3ErrorCode::BucketAlreadyOwnedByYou,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let s3 = dataplane_error(e);
            assert_eq!(*s3.code(), want, "{text}");
            assert_eq!(s3.message(), Some(text.as_str()));
        }
    }
}

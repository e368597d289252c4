//! Request bodies of the HTTP API: bounded in size, JSON parsed strictly.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body parsed strictly: unknown fields and type errors are 400s naming the field.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> StrictJson<T> {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
            return Err(ApiError::bad_request(None, "a JSON body is required"));
        };
        // Every body of the API is an object (serde would also take a struct as an array of
        // its fields in order).
        if *first != b'{' {
            return Err(ApiError::bad_request(
                None,
                "the body must be a JSON object (`{…}`)",
            ));
        }
        let mut unknown = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut on_unknown = |p: serde_ignored::Path| unknown.push(p.to_string());
        let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_unknown);
        let value: Result<T, _> = serde_path_to_error::deserialize(ignored);
        match value {
            Err(e) => {
                let field = e.path().to_string();
                let field = (field != ".").then_some(field);
                let inner = e.into_inner();
                let message = match &field {
                    Some(f) => format!("invalid body at `{f}`: {inner}"),
                    None => format!("invalid body: {inner}"),
                };
                Err(ApiError::bad_request(field, message))
            }
            Ok(v) => {
                if let Some(f) = unknown.into_iter().next() {
                    return Err(ApiError::bad_request(
                        Some(f.clone()),
                        format!("unknown field `{f}`"),
                    ));
                }
                if de.end().is_err() {
                    return Err(ApiError::bad_request(
                        None,
                        "trailing characters after the JSON body",
                    ));
                }
                Ok(StrictJson(v))
            }
        }
    }
}

impl<T: DeserializeOwned> axum::extract::FromRequest<AppState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.server.max_api_body_bytes).await?;
        Self::parse(&bytes)
    }
}

/// Reads a request body of at most `limit` bytes. A larger body is answered 413 — after
/// reading and discarding up to 16 times the limit, so the client hears the answer on a
/// connection that stays usable instead of a reset mid-upload.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(None, format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(16) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyTooLarge",
            format!("the body is larger than server.max_api_body_bytes ({limit})"),
        ));
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use archway_catalog::NewVolume;

    #[test]
    fn strict_json_names_fields() {
        let err = StrictJson::<NewVolume>::parse(br#"{"id": "x", "backend": "b", "tags": [1]}"#)
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.field.as_deref(), Some("tags[0]"));
        let err = StrictJson::<NewVolume>::parse(br#"{"id": "x", "backend": "b", "titel": "t"}"#)
            .err()
            .unwrap();
        assert_eq!(err.field.as_deref(), Some("titel"));
        assert!(err.message.contains("unknown field"));
        let err = StrictJson::<NewVolume>::parse(br#"{"title": "t"}"#)
            .err()
            .unwrap();
        assert!(
            err.message.contains("missing field `id`"),
            "{}",
            err.message
        );
        assert!(StrictJson::<NewVolume>::parse(b"").is_err());
        assert!(StrictJson::<NewVolume>::parse(br#"{"id":"x","backend":"b"} x"#).is_err());
        assert!(
            StrictJson::<NewVolume>::parse(br#"{"id":"x","backend":"b","licence":"MIT"}"#).is_ok()
        );
    }
}

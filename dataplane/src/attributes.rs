//! What S3 clients keep with an object besides its bytes: the content headers and user
//! metadata (`x-amz-meta-*`, where rclone keeps modification times and s3fs modes and owners).
//!
//! Stores that keep attributes natively (S3, GCS, Azure, memory, a peer gateway) get them as
//! object_store `Attributes`; the file store keeps them in an extended attribute of the file
//! (`posix/`). object_store has no `Expires` attribute, so `Expires` travels as the user
//! metadata entry [`EXPIRES_KEY`] (an S3 backend shows it to other clients as
//! `x-amz-meta-archway-expires`; a client of Archway sees the `Expires` header).

use std::collections::BTreeMap;

use object_store::{Attribute, AttributeValue, Attributes};
use serde::{Deserialize, Serialize};

/// The user metadata name that carries `Expires` in stores without such an attribute.
pub const EXPIRES_KEY: &str = "archway-expires";

/// The attributes of an object, as S3 clients set and read them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// The `Expires` header, as the client sent it (an HTTP date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata, names in lowercase (`x-amz-meta-<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ObjectAttributes {
    /// Only a content type.
    pub fn content_type(content_type: Option<String>) -> Self {
        Self {
            content_type,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// As object_store attributes.
    pub fn to_store(&self) -> Attributes {
        let mut out = Attributes::new();
        let mut set = |attr: Attribute, value: &Option<String>| {
            if let Some(v) = value {
                out.insert(attr, AttributeValue::from(v.clone()));
            }
        };
        set(Attribute::ContentType, &self.content_type);
        set(Attribute::ContentEncoding, &self.content_encoding);
        set(Attribute::ContentDisposition, &self.content_disposition);
        set(Attribute::ContentLanguage, &self.content_language);
        set(Attribute::CacheControl, &self.cache_control);
        set(
            Attribute::Metadata(EXPIRES_KEY.into()),
            &self.expires.clone(),
        );
        for (k, v) in &self.metadata {
            out.insert(
                Attribute::Metadata(k.to_ascii_lowercase().into()),
                AttributeValue::from(v.clone()),
            );
        }
        out
    }

    /// From object_store attributes.
    pub fn from_store(attributes: &Attributes) -> Self {
        let mut out = Self::default();
        for (attr, value) in attributes {
            let v = value.as_ref().to_string();
            match attr {
                Attribute::ContentType => out.content_type = Some(v),
                Attribute::ContentEncoding => out.content_encoding = Some(v),
                Attribute::ContentDisposition => out.content_disposition = Some(v),
                Attribute::ContentLanguage => out.content_language = Some(v),
                Attribute::CacheControl => out.cache_control = Some(v),
                Attribute::Metadata(k) if k.eq_ignore_ascii_case(EXPIRES_KEY) => {
                    out.expires = Some(v)
                }
                Attribute::Metadata(k) => {
                    out.metadata.insert(k.to_ascii_lowercase(), v);
                }
                // Storage classes and what later object_store versions add: not kept.
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_through_object_store_attributes() {
        let a = ObjectAttributes {
            content_type: Some("text/bla".into()),
            content_encoding: Some("gzip".into()),
            content_disposition: Some("attachment; filename=\"x.fits\"".into()),
            content_language: Some("en".into()),
            cache_control: Some("max-age=60".into()),
            expires: Some("Thu, 01 Dec 2033 16:00:00 GMT".into()),
            metadata: [("mtime".to_string(), "1700000000.5".to_string())].into(),
        };
        assert_eq!(ObjectAttributes::from_store(&a.to_store()), a);
        assert!(ObjectAttributes::default().to_store().is_empty());
    }
}

//! What S3 clients keep with an object besides its bytes: the content headers and user
//! metadata (`x-amz-meta-*`, where rclone keeps modification times and s3fs modes and owners).
//!
//! Stores that keep attributes natively (S3, GCS, Azure, memory, a peer gateway) get them as
//! object_store `Attributes`; the file store keeps them in an extended attribute of the file
//! (`posix/`). object_store has no `Expires` attribute, so `Expires` travels as the user
//! metadata entry [`EXPIRES_KEY`] (an S3 backend shows it to other clients as
//! `x-amz-meta-archway-expires`; a client of Archway sees the `Expires` header). The same way
//! an object keeps its additional checksum ([`CHECKSUM_KEY`]) and, when it was completed from
//! a multipart upload, its part sizes ([`PARTS_KEY`]).

use std::collections::BTreeMap;

use object_store::{Attribute, AttributeValue, Attributes};
use serde::{Deserialize, Serialize};

use crate::checksum::Checksum;

/// The user metadata name that carries `Expires` in stores without such an attribute.
pub const EXPIRES_KEY: &str = "archway-expires";
/// The user metadata name of an object's additional checksum (`CRC32:value:FULL_OBJECT`).
pub const CHECKSUM_KEY: &str = "archway-checksum";
/// The user metadata name of a multipart object's part sizes.
pub const PARTS_KEY: &str = "archway-parts";

/// Longest part list kept in full (an extended attribute of ext4 holds about 4 KiB in all);
/// longer lists of unequal parts keep only their number.
const MAX_PARTS_TEXT: usize = 2048;

/// The parts of an object completed from a multipart upload, for `partNumber` reads and
/// `PartsCount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSizes {
    pub count: u32,
    /// Each part's size, in order; None when too many unequal parts to keep.
    pub sizes: Option<Vec<u64>>,
}

impl PartSizes {
    pub fn new(sizes: Vec<u64>) -> Self {
        Self {
            count: sizes.len() as u32,
            sizes: Some(sizes),
        }
    }

    /// `N:size:last` for equal parts (the last may be smaller), else `N:s1,s2,…`, else `N`.
    pub fn to_text(&self) -> String {
        let n = self.count;
        let Some(sizes) = &self.sizes else {
            return n.to_string();
        };
        if let Some((last, rest)) = sizes.split_last()
            && let Some(first) = rest.first().or(Some(last))
            && rest.iter().all(|s| s == first)
        {
            return format!("{n}:{first}:{last}");
        }
        let list = sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        if list.len() > MAX_PARTS_TEXT {
            n.to_string()
        } else {
            format!("{n}:{list}")
        }
    }

    pub fn from_text(text: &str) -> Option<Self> {
        let mut it = text.split(':');
        let count: u32 = it.next()?.parse().ok()?;
        let sizes = match (it.next(), it.next()) {
            (None, _) => None,
            (Some(size), Some(last)) => {
                let (size, last): (u64, u64) = (size.parse().ok()?, last.parse().ok()?);
                let mut v = vec![size; count.saturating_sub(1) as usize];
                v.push(last);
                Some(v)
            }
            (Some(list), None) => Some(
                list.split(',')
                    .map(|s| s.parse().ok())
                    .collect::<Option<Vec<u64>>>()?,
            ),
        };
        if sizes.as_ref().is_some_and(|s| s.len() != count as usize) {
            return None;
        }
        Some(Self { count, sizes })
    }

    /// The byte range of part `number` (1-based), when the sizes are known.
    pub fn range(&self, number: u32) -> Option<std::ops::Range<u64>> {
        let sizes = self.sizes.as_ref()?;
        let i = (number as usize).checked_sub(1)?;
        let start: u64 = sizes.get(..i)?.iter().sum();
        Some(start..start + sizes.get(i)?)
    }
}

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
    /// The additional checksum the object was written with (S3's `x-amz-checksum-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// The parts of an object completed from a multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartSizes>,
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
        set(
            Attribute::Metadata(CHECKSUM_KEY.into()),
            &self.checksum.as_ref().map(Checksum::to_text),
        );
        set(
            Attribute::Metadata(PARTS_KEY.into()),
            &self.parts.as_ref().map(PartSizes::to_text),
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
                Attribute::Metadata(k) if k.eq_ignore_ascii_case(CHECKSUM_KEY) => {
                    out.checksum = Checksum::from_text(&v)
                }
                Attribute::Metadata(k) if k.eq_ignore_ascii_case(PARTS_KEY) => {
                    out.parts = PartSizes::from_text(&v)
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
            checksum: Some(Checksum {
                algorithm: crate::checksum::ChecksumAlgorithm::Crc32,
                value: "NhCmhg==".into(),
                kind: crate::checksum::ChecksumType::FullObject,
            }),
            parts: Some(PartSizes::new(vec![5, 5, 3])),
        };
        assert_eq!(ObjectAttributes::from_store(&a.to_store()), a);
        assert!(ObjectAttributes::default().to_store().is_empty());
    }

    #[test]
    fn part_sizes_are_kept_short() {
        for sizes in [vec![8], vec![8, 8, 3], vec![8, 8, 8], vec![3, 8, 1]] {
            let p = PartSizes::new(sizes.clone());
            assert_eq!(
                PartSizes::from_text(&p.to_text()),
                Some(p.clone()),
                "{sizes:?}"
            );
        }
        assert_eq!(PartSizes::new(vec![8, 8, 3]).to_text(), "3:8:3");
        let p = PartSizes::new(vec![5, 7, 2]);
        assert_eq!(p.range(1), Some(0..5));
        assert_eq!(p.range(3), Some(12..14));
        assert_eq!(p.range(4), None);
        assert_eq!(p.range(0), None);
        // Many unequal parts keep their number only.
        let many = PartSizes::new((1..2000).collect());
        let kept = PartSizes::from_text(&many.to_text()).unwrap();
        assert_eq!((kept.count, kept.sizes), (1999, None));
        assert_eq!(PartSizes::from_text("3:1,2"), None);
    }
}

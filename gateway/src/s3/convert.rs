//! Values between S3's forms and the dataplane's: ETags, conditions, ranges, times, listing
//! entries, content types.

use std::time::SystemTime;

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use archway_dataplane::{ListPage, ObjectAttributes, ObjectInfo, ReadRange};

/// ETags travel unquoted inside Archway; S3 shows them quoted.
pub(super) fn etag(value: Option<&str>) -> Option<ETag> {
    value.map(|v| ETag::Strong(v.trim_matches('"').to_string()))
}

pub(super) fn condition(c: Option<ETagCondition>) -> Option<String> {
    c.map(|c| match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(e) => e.value().to_string(),
    })
}

pub(super) fn range(r: Option<Range>) -> Option<ReadRange> {
    r.map(|r| match r {
        Range::Int {
            first,
            last: Some(last),
        } => ReadRange::Bounded {
            start: first,
            end: last.saturating_add(1),
        },
        Range::Int { first, last: None } => ReadRange::From(first),
        Range::Suffix { length } => ReadRange::Suffix(length),
    })
}

/// A read range resolved against the object's size: (start, end exclusive).
pub(super) fn resolve_range(r: ReadRange, size: u64) -> S3Result<(u64, u64)> {
    let (start, end) = match r {
        ReadRange::Bounded { start, end } => (start, end.min(size)),
        ReadRange::From(start) => (start, size),
        ReadRange::Suffix(n) => (size.saturating_sub(n), size),
    };
    if start >= size || start >= end {
        return Err(s3_error!(InvalidRange));
    }
    Ok((start, end))
}

pub(super) fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

pub(super) fn system_time(t: Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.into();
    odt.into()
}

/// The characters S3's URL encoding of listings (`encoding-type=url`) keeps: unreserved
/// characters and '/'.
const LISTING: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub(super) fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, LISTING).to_string()
}

/// Whether a listing's keys are to be URL-encoded (`encoding-type=url`).
pub(super) fn wants_url(e: &Option<EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str().eq_ignore_ascii_case("url") => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {}",
            e.as_str()
        )),
    }
}

fn object(info: &ObjectInfo, encode: bool, owner: Option<&Owner>) -> Object {
    Object {
        key: Some(if encode {
            url_encode(&info.key)
        } else {
            info.key.clone()
        }),
        size: Some(info.size as i64),
        last_modified: Some(timestamp(info.last_modified)),
        e_tag: etag(info.etag.as_deref()),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: owner.cloned(),
        ..Default::default()
    }
}

/// A listing page as S3 entries, keys URL-encoded when the caller asked for it.
pub(super) fn listing_entries(
    page: &ListPage,
    encode: bool,
    owner: Option<&Owner>,
) -> (Vec<Object>, Vec<CommonPrefix>) {
    let contents = page
        .objects
        .iter()
        .map(|o| object(o, encode, owner))
        .collect();
    let prefixes = page
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(if encode { url_encode(p) } else { p.clone() }),
        })
        .collect();
    (contents, prefixes)
}

/// The attributes a write sends (PutObject, CopyObject with REPLACE, CreateMultipartUpload).
pub(super) fn attributes_in(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
) -> ObjectAttributes {
    ObjectAttributes {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(|t| {
            let mut out = Vec::new();
            t.format(TimestampFormat::HttpDate, &mut out).ok()?;
            String::from_utf8(out).ok()
        }),
        metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    }
}

/// A stored `Expires` as S3 renders it (None when it is not an HTTP date).
pub(super) fn expires_out(a: &ObjectAttributes) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, a.expires.as_deref()?).ok()
}

/// Stored user metadata as S3 renders it (None when there is none).
pub(super) fn metadata_out(a: &ObjectAttributes) -> Option<Metadata> {
    (!a.metadata.is_empty()).then(|| a.metadata.clone().into_iter().collect())
}

/// The stored Content-Type, or one guessed from the key's extension: FITS (which generic
/// tables call `image/fits`) as the archives name it, the rest as mime_guess knows them.
pub(super) fn content_type(info: &ObjectInfo) -> String {
    if let Some(ct) = &info.attributes.content_type {
        return ct.clone();
    }
    let lower = info.key.to_ascii_lowercase();
    match lower.rsplit('.').next().unwrap_or("") {
        "fits" | "fit" | "fts" | "fz" => "application/fits".to_string(),
        "parquet" => "application/vnd.apache.parquet".to_string(),
        "h5" | "hdf5" => "application/x-hdf5".to_string(),
        "vot" => "application/x-votable+xml".to_string(),
        _ => mime_guess::from_path(&lower)
            .first_or_octet_stream()
            .essence_str()
            .to_string(),
    }
}

/// A CORS rule as S3 sends it, as the catalogue keeps it.
pub fn cors_rule_in(r: s3s::dto::CORSRule) -> archway_catalog::CorsRule {
    archway_catalog::CorsRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    }
}

/// A CORS rule of the catalogue, as S3 shows it.
pub fn cors_rule_out(r: archway_catalog::CorsRule) -> s3s::dto::CORSRule {
    s3s::dto::CORSRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
        expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(url_encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(
            resolve_range(ReadRange::Bounded { start: 0, end: 10 }, 5).unwrap(),
            (0, 5)
        );
        assert_eq!(resolve_range(ReadRange::Suffix(3), 5).unwrap(), (2, 5));
        assert_eq!(resolve_range(ReadRange::Suffix(30), 5).unwrap(), (0, 5));
        assert!(resolve_range(ReadRange::From(5), 5).is_err());
    }

    #[test]
    fn content_types_come_from_extensions() {
        let info = |key: &str| ObjectInfo {
            key: key.into(),
            size: 0,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: None,
            attributes: Default::default(),
        };
        assert_eq!(content_type(&info("a/b.FITS")), "application/fits");
        assert_eq!(content_type(&info("x.fits.fz")), "application/fits");
        assert_eq!(content_type(&info("notes.txt")), "text/plain");
        assert_eq!(content_type(&info("t.csv")), "text/csv");
        assert_eq!(content_type(&info("data.bin")), "application/octet-stream");
        assert_eq!(content_type(&info("noext")), "application/octet-stream");
    }
}

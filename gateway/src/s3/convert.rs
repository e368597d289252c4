//! Values between S3's forms and the dataplane's: ETags, conditions, ranges, times, listing
//! entries, content types.

use std::time::SystemTime;

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use archway_dataplane::checksum::Checksum;
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
        checksum: None,
        parts: None,
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

/// The bucket and key of a copy's source (versions, access points and outposts are none of
/// Archway's).
pub fn copy_source(source: &s3s::dto::CopySource) -> S3Result<(String, String)> {
    match source {
        s3s::dto::CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => Ok((bucket.to_string(), key.to_string())),
        s3s::dto::CopySource::Bucket { .. } => Err(s3_error!(
            NotImplemented,
            "object versions are not supported"
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access points and outposts are not supported"
        )),
    }
}

/// `x-amz-copy-source-range`: `bytes=first-last`, both given, as S3 takes it.
pub fn copy_source_range(text: &str) -> S3Result<ReadRange> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last (got `{text}`)"
        )
    };
    let (first, last) = text
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ReadRange::Bounded {
        start: first,
        end: last + 1,
    })
}

/// The additional checksum a write declared (the first of the `x-amz-checksum-*` headers,
/// verified by `Integrity` as the body streams), as the object keeps it.
pub fn declared_checksum(
    crc32: Option<&str>,
    crc32c: Option<&str>,
    crc64nvme: Option<&str>,
    sha1: Option<&str>,
    sha256: Option<&str>,
) -> Option<Checksum> {
    use archway_dataplane::checksum::ChecksumAlgorithm as A;
    [
        (A::Crc32, crc32),
        (A::Crc32c, crc32c),
        (A::Crc64Nvme, crc64nvme),
        (A::Sha1, sha1),
        (A::Sha256, sha256),
    ]
    .into_iter()
    .find_map(|(algorithm, v)| {
        Some(Checksum {
            algorithm,
            value: v?.trim().to_string(),
            kind: archway_dataplane::checksum::ChecksumType::FullObject,
        })
    })
}

/// An object's checksum as S3's five header fields and its type, for an answer's fields.
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<s3s::dto::ChecksumType>,
}

pub fn checksum_fields(checksum: Option<&Checksum>) -> ChecksumFields {
    use archway_dataplane::checksum::ChecksumAlgorithm as A;
    let mut out = ChecksumFields {
        crc32: None,
        crc32c: None,
        crc64nvme: None,
        sha1: None,
        sha256: None,
        kind: None,
    };
    if let Some(c) = checksum {
        let value = Some(c.value.clone());
        match c.algorithm {
            A::Crc32 => out.crc32 = value,
            A::Crc32c => out.crc32c = value,
            A::Crc64Nvme => out.crc64nvme = value,
            A::Sha1 => out.sha1 = value,
            A::Sha256 => out.sha256 = value,
        }
        out.kind = Some(s3s::dto::ChecksumType::from(c.kind.as_str().to_string()));
    }
    out
}

/// S3's 416 for a part number past the object's parts (s3s has no such code).
fn invalid_part_number(count: u32) -> s3s::S3Error {
    let code = s3s::S3ErrorCode::from_bytes(b"InvalidPartNumber")
        .unwrap_or(s3s::S3ErrorCode::InvalidRange);
    let mut e = s3s::S3Error::with_message(
        code,
        format!("The requested partnumber is not satisfiable: the object has {count} part(s)"),
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

/// The parts of an object completed from a multipart upload, while its ETag still says it
/// has that many (a copy made elsewhere of it has one).
pub fn parts_of(info: &ObjectInfo) -> Option<&archway_dataplane::attributes::PartSizes> {
    info.attributes.parts.as_ref().filter(|p| {
        info.etag
            .as_deref()
            .is_some_and(|e| e.ends_with(&format!("-{}", p.count)))
    })
}

/// Where part `number` of an object lies (None: the whole object, which has one part) and
/// how many parts the object has (None for an object not completed from parts). A
/// multipart object's parts count only while its ETag still says it has that many.
pub fn part_of(info: &ObjectInfo, number: i32) -> S3Result<(Option<ReadRange>, Option<i32>)> {
    if !(1..=10_000).contains(&number) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let Some(parts) = parts_of(info) else {
        return if number == 1 {
            Ok((None, None))
        } else {
            Err(invalid_part_number(1))
        };
    };
    if number as u32 > parts.count {
        return Err(invalid_part_number(parts.count));
    }
    let r = parts.range(number as u32).ok_or_else(|| {
        s3_error!(
            NotImplemented,
            "the sizes of this object's {} unequal parts were not kept: read it by ranges",
            parts.count
        )
    })?;
    Ok((
        Some(ReadRange::Bounded {
            start: r.start,
            end: r.end,
        }),
        Some(parts.count as i32),
    ))
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

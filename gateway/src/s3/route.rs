//! Requests for S3 operations that `s3s` (0.14) does not know, refused before it sees them.
//!
//! `s3s` routes by method, path and the query's sub-resource keys it knows, and ignores the
//! rest: a newer S3 operation would run as an older one — `PUT /b/k?renameObject` as a
//! PutObject writing an empty object, `DELETE /b/k?annotation` as a DeleteObject,
//! `DELETE /b?metadataConfiguration` as a DeleteBucket. This guard answers them 501
//! `NotImplemented` instead: the sub-resources known to be misrouted, and any sub-resource
//! key (a query key without a value) that is neither a known sub-resource nor a parameter.

/// Sub-resources of S3 operations that `s3s` does not route (they are none of Archway's).
const MISROUTED: &[&str] = &[
    "abac",
    "annotation",
    "encryption",
    "metadataAnnotationTable",
    "metadataConfiguration",
    "metadataInventoryTable",
    "metadataJournalTable",
    "metadataTable",
    "renameObject",
];

/// Sub-resources that `s3s` routes to the right operation (supported or answered 501).
const ROUTED: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "list-type",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "select-type",
    "session",
    "tagging",
    "torrent",
    "uploads",
    "versioning",
    "versions",
    "website",
];

/// Query parameters of S3 operations (they may be empty: `?prefix=`).
const PARAMETERS: &[&str] = &[
    "bucket-region",
    "continuation-token",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "id",
    "key-marker",
    "marker",
    "max-buckets",
    "max-directory-buckets",
    "max-keys",
    "max-parts",
    "max-uploads",
    "part-number-marker",
    "partNumber",
    "prefix",
    "start-after",
    "upload-id-marker",
    "uploadId",
    "version-id-marker",
    "versionId",
    "x-id",
];

fn is_parameter(key: &str) -> bool {
    PARAMETERS.contains(&key)
        || key.starts_with("response-")
        || key.to_ascii_lowercase().starts_with("x-amz-")
        || matches!(key, "AWSAccessKeyId" | "Signature" | "Expires")
}

/// The sub-resource of a query that names an S3 operation Archway cannot serve, if any.
pub(super) fn unsupported(query: Option<&str>) -> Option<String> {
    for pair in query?.split('&').filter(|p| !p.is_empty()) {
        let (raw, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let key = key.as_ref();
        if MISROUTED.contains(&key)
            || (value.is_empty() && !ROUTED.contains(&key) && !is_parameter(key))
        {
            return Some(key.to_string());
        }
    }
    None
}

/// What an operation refused here is told.
pub(super) fn not_implemented_message(sub_resource: &str) -> String {
    format!(
        "the S3 operation with the sub-resource `?{sub_resource}` is not supported by Archway \
         (doc/s3.md lists what is)"
    )
}

/// The longest a presigned URL may be valid (SigV4: a week).
const MAX_PRESIGNED_SECONDS: i64 = 604_800;

/// What is wrong with a presigned URL's `X-Amz-Expires`, if anything: it must be 1 second to a
/// week (S3 answers 403 `AuthorizationQueryParametersError` otherwise; s3s takes any).
pub(super) fn bad_expiry(query: Option<&str>) -> Option<String> {
    let value = query?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("X-Amz-Expires").then_some(v)
    })?;
    match value.parse::<i64>() {
        Ok(n) if (1..=MAX_PRESIGNED_SECONDS).contains(&n) => None,
        Ok(n) if n > MAX_PRESIGNED_SECONDS => Some(format!(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given \
             X-Amz-Expires must be less than {MAX_PRESIGNED_SECONDS} seconds"
        )),
        _ => Some("X-Amz-Expires must be a positive number of seconds".to_string()),
    }
}

/// `X-Amz-Date` from an HTTP `Date` header (`Tue, 01 Dec 2026 11:30:00 GMT` →
/// `20261201T113000Z`): SigV4 takes the request's time from `Date` when `X-Amz-Date` is
/// absent, s3s only from `X-Amz-Date`. Adding it leaves the signature's canonical request as
/// it was: only the signed headers are in it.
pub(super) fn amz_date_from(date: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? + 1;
    let (day, year): (u32, u32) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u32> = time
        .split(':')
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    ((1..=31).contains(&day) && *h < 24 && *m < 60 && *s < 61)
        .then(|| format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_operations_are_refused_before_s3s_misroutes_them() {
        for q in [
            "renameObject",
            "annotation&annotationName=a",
            "metadataConfiguration",
            "encryption",
            "abac=",
            "x-id=RenameObject&renameObject",
            "someFutureThing",
        ] {
            assert!(unsupported(Some(q)).is_some(), "{q}");
        }
        for q in [
            "",
            "list-type=2&prefix=&delimiter=%2F",
            "uploads",
            "uploadId=abc&partNumber=3",
            "acl",
            "tagging",
            "versioning",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Signature=b",
            "response-content-type=text%2Fplain",
            "cachebuster=123",
            "x-id=GetObject",
        ] {
            assert_eq!(unsupported(Some(q)), None, "{q}");
        }
        assert_eq!(unsupported(None), None);
        assert!(not_implemented_message("renameObject").contains("`?renameObject`"));
    }

    #[test]
    fn presigned_expiry_and_date_headers() {
        assert_eq!(bad_expiry(Some("X-Amz-Expires=3600&x=1")), None);
        assert_eq!(bad_expiry(Some("a=b")), None);
        for q in [
            "X-Amz-Expires=604801",
            "X-Amz-Expires=0",
            "X-Amz-Expires=-5",
            "X-Amz-Expires=x",
        ] {
            assert!(bad_expiry(Some(q)).is_some(), "{q}");
        }
        assert_eq!(
            amz_date_from("Tue, 01 Dec 2026 11:30:05 GMT").as_deref(),
            Some("20261201T113005Z")
        );
        assert_eq!(amz_date_from("Tuesday, 01-Dec-26 11:30:05 GMT"), None);
        assert_eq!(amz_date_from("Tue, 01 Foo 2026 11:30:05 GMT"), None);
    }
}

/// The access key a request is signed with and the session token it carries, if any: from
/// the `Authorization` header (SigV4 `Credential=KEY/…`, or SigV2 `AWS KEY:…`) and the
/// `X-Amz-Security-Token` header, or from a presigned URL's `X-Amz-Credential` (or
/// `AWSAccessKeyId`) and `X-Amz-Security-Token` parameters. None for an unsigned request.
pub(super) fn signing_key(
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<(String, Option<String>)> {
    let header_token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let key = if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") {
            rest.split(',').find_map(|part| {
                let value = part.trim().strip_prefix("Credential=")?;
                value.split('/').next().map(str::to_string)
            })
        } else {
            auth.strip_prefix("AWS ")
                .and_then(|rest| rest.split(':').next())
                .map(|k| k.trim().to_string())
        };
        return key.map(|k| (k, header_token));
    }
    let mut key = None;
    let mut token = header_token;
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        if k.eq_ignore_ascii_case("X-Amz-Credential") {
            key = decoded().and_then(|c| c.split('/').next().map(str::to_string));
        } else if k.eq_ignore_ascii_case("AWSAccessKeyId") {
            key = decoded();
        } else if k.eq_ignore_ascii_case("X-Amz-Security-Token") {
            token = decoded();
        }
    }
    key.map(|k| (k, token))
}

/// The service a SigV4 request's credential scope names (`KEY/DATE/REGION/SERVICE/aws4_request`),
/// from the `Authorization` header or a presigned URL's `X-Amz-Credential`.
pub(super) fn scope_service(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let credential = match headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(auth) => auth
            .strip_prefix("AWS4-HMAC-SHA256")?
            .split(',')
            .find_map(|part| part.trim().strip_prefix("Credential="))?
            .to_string(),
        None => query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.eq_ignore_ascii_case("X-Amz-Credential").then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })?,
    };
    let parts: Vec<&str> = credential.split('/').collect();
    (parts.len() == 5).then(|| parts[3].to_string())
}

/// Sub-resources whose PUT carries an XML (or JSON) document rather than object bytes.
const DOCUMENT_PUTS: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "retention",
    "tagging",
    "versioning",
    "website",
];

/// Whether the request's body is a document `s3s` reads whole (DeleteObjects,
/// CompleteMultipartUpload, a bucket's or object's configuration), bounded by
/// `server.max_s3_xml_body_bytes`, rather than object bytes it streams.
pub(super) fn reads_whole_body(method: &http::Method, path: &str, query: Option<&str>) -> bool {
    let keys: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let raw = p.split_once('=').map_or(p, |(k, _)| k);
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let has = |k: &str| keys.iter().any(|x| x == k);
    if *method == http::Method::POST {
        // Every S3 POST but CreateMultipartUpload (no body) reads a document.
        return !has("uploads");
    }
    if *method == http::Method::PUT {
        if DOCUMENT_PUTS.iter().any(|k| has(k)) {
            return true;
        }
        // CreateBucket's optional configuration: a PUT on a bucket (path style).
        let trimmed = path.trim_start_matches('/');
        return !trimmed.is_empty() && !trimmed.trim_end_matches('/').contains('/');
    }
    false
}

#[cfg(test)]
mod whole_body_tests {
    use super::*;

    #[test]
    fn documents_are_told_from_object_bytes() {
        let post = http::Method::POST;
        let put = http::Method::PUT;
        assert!(reads_whole_body(&post, "/b", Some("delete")));
        assert!(reads_whole_body(&post, "/b/k", Some("uploadId=abc")));
        assert!(!reads_whole_body(&post, "/b/k", Some("uploads")));
        assert!(reads_whole_body(&put, "/b/k", Some("tagging")));
        assert!(reads_whole_body(&put, "/b", None));
        assert!(!reads_whole_body(&put, "/b/k", None));
        assert!(!reads_whole_body(
            &put,
            "/b/k",
            Some("partNumber=1&uploadId=x")
        ));
        assert!(!reads_whole_body(&http::Method::GET, "/b", Some("delete")));
    }

    #[test]
    fn the_scope_names_its_service() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AK/20261207/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert_eq!(scope_service(&h, None).as_deref(), Some("iam"));
        let q = "X-Amz-Credential=AK%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=1";
        assert_eq!(
            scope_service(&http::HeaderMap::new(), Some(q)).as_deref(),
            Some("s3")
        );
        assert_eq!(scope_service(&http::HeaderMap::new(), None), None);
    }
}

#[cfg(test)]
mod signing_key_tests {
    use super::signing_key;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signing_key_reads_sigv4_headers_presigned_queries_and_sigv2() {
        let h = headers(&[
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=ASIAKEY/20261202/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=ab",
            ),
            ("x-amz-security-token", "tok"),
        ]);
        assert_eq!(
            signing_key(&h, None),
            Some(("ASIAKEY".into(), Some("tok".into())))
        );
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261202%2Fus-east-1\
                 %2Fs3%2Faws4_request&X-Amz-Security-Token=a%2Bb&X-Amz-Signature=00";
        assert_eq!(
            signing_key(&http::HeaderMap::new(), Some(q)),
            Some(("AKID".into(), Some("a+b".into())))
        );
        let h = headers(&[("authorization", "AWS AKV2:c2ln")]);
        assert_eq!(signing_key(&h, None), Some(("AKV2".into(), None)));
        assert_eq!(
            signing_key(&http::HeaderMap::new(), Some("list-type=2")),
            None
        );
        assert_eq!(signing_key(&http::HeaderMap::new(), None), None);
    }
}

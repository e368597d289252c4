//! The S3 front: every volume a bucket, for unmodified S3 clients.
//!
//! `s3s` parses requests, verifies SigV4 signatures (header and presigned) against the secrets
//! that [`CatalogAuth`] looks up, and renders XML. This module maps each supported S3 operation
//! to a dataplane call and dataplane errors to S3 error codes ([`s3_error`], the one place).
//! Access is decided by the dataplane on every call, so the `s3s` access hook lets every
//! request through, anonymous ones included (public volumes).

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use archway_catalog::{Access, Catalog, CatalogError, NewVolume, Principal, VolumeKind};
use archway_dataplane::{
    Dataplane, DataplaneError, ListRequest, ObjectInfo, PutRequest, ReadRange, ReadRequest,
};

use crate::metrics::Metrics;

/// Looks up SigV4 secrets in the catalogue.
#[derive(Debug, Clone)]
pub struct CatalogAuth {
    pub catalog: Catalog,
}

#[async_trait::async_trait]
impl S3Auth for CatalogAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.catalog.access_key_secret(access_key).await {
            Ok(Some((_, secret))) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
            Err(e) => Err(catalog_unavailable(e)),
        }
    }
}

/// Lets every request through to the operation, where the dataplane checks access.
#[derive(Debug, Clone, Copy)]
pub struct DataplaneDecides;

#[async_trait::async_trait]
impl S3Access for DataplaneDecides {
    async fn check(&self, _cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// The S3 operations over the dataplane.
#[derive(Debug, Clone)]
pub struct S3Front {
    pub dataplane: Arc<Dataplane>,
    pub metrics: Arc<Metrics>,
}

fn request_id() -> String {
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02X}")).collect()
}

fn catalog_unavailable(e: CatalogError) -> S3Error {
    tracing::error!(error = %e, "catalogue error in the S3 front");
    let mut err = S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        "the catalogue is unavailable",
    );
    err.set_request_id(request_id());
    err
}

/// The one mapping of dataplane errors to S3 errors.
pub fn s3_error(e: DataplaneError) -> S3Error {
    let message = e.to_string();
    let code = match &e {
        DataplaneError::NoSuchVolume { .. } => S3ErrorCode::NoSuchBucket,
        DataplaneError::AccessDenied { .. } | DataplaneError::ReadOnly { .. } => {
            S3ErrorCode::AccessDenied
        }
        DataplaneError::InvalidKey { key, .. }
            if key.len() > archway_dataplane::key::MAX_KEY_BYTES =>
        {
            S3ErrorCode::KeyTooLongError
        }
        DataplaneError::InvalidKey { .. } | DataplaneError::InvalidRequest { .. } => {
            S3ErrorCode::InvalidArgument
        }
        DataplaneError::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
        DataplaneError::PreconditionFailed { .. } => S3ErrorCode::PreconditionFailed,
        DataplaneError::NotModified { .. } => S3ErrorCode::NotModified,
        DataplaneError::InvalidRange { .. } => S3ErrorCode::InvalidRange,
        DataplaneError::NoSuchUpload { .. } => S3ErrorCode::NoSuchUpload,
        DataplaneError::InvalidPart { message, .. } if message.contains("ascending") => {
            S3ErrorCode::InvalidPartOrder
        }
        DataplaneError::InvalidPart { .. } => S3ErrorCode::InvalidPart,
        DataplaneError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        DataplaneError::EntityTooLarge { .. } => S3ErrorCode::EntityTooLarge,
        DataplaneError::Body { message, .. } if message.starts_with(DIGEST_MISMATCH) => {
            S3ErrorCode::BadDigest
        }
        DataplaneError::Body { message, .. } if message.starts_with(CHUNK_SIGNATURE_MISMATCH) => {
            S3ErrorCode::SignatureDoesNotMatch
        }
        DataplaneError::Body { .. } => S3ErrorCode::IncompleteBody,
        DataplaneError::Catalog(c) if c.is_permanent() => S3ErrorCode::InternalError,
        DataplaneError::Catalog(_) => S3ErrorCode::ServiceUnavailable,
        DataplaneError::UnknownBackend { .. }
        | DataplaneError::Backend { .. }
        | DataplaneError::Store { .. }
        | DataplaneError::Spool { .. } => S3ErrorCode::InternalError,
        _ => S3ErrorCode::InternalError,
    };
    if matches!(
        code,
        S3ErrorCode::InternalError | S3ErrorCode::ServiceUnavailable
    ) {
        tracing::error!(error = %e, "S3 request failed");
    }
    let mut err = S3Error::with_message(code, message);
    err.set_request_id(request_id());
    err
}

fn with_request_id(mut e: S3Error) -> S3Error {
    if e.request_id().is_none() {
        e.set_request_id(request_id());
    }
    e
}

/// ETags travel unquoted inside Archway; S3 shows them quoted.
fn etag(value: Option<&str>) -> Option<ETag> {
    value.map(|v| ETag::Strong(v.trim_matches('"').to_string()))
}

fn condition(c: Option<ETagCondition>) -> Option<String> {
    c.map(|c| match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(e) => e.value().to_string(),
    })
}

fn range(r: Option<Range>) -> Option<ReadRange> {
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

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn system_time(t: Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.into();
    odt.into()
}

/// The S3 URL encoding of listing output (`encoding-type=url`): everything but unreserved
/// characters and '/' percent-encoded.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const DIGEST_MISMATCH: &str = "digest mismatch: ";
const CHUNK_SIGNATURE_MISMATCH: &str = "chunk signature mismatch: ";

/// Checks a body against the digests its request declared (Content-MD5, x-amz-checksum-*),
/// ending the stream with an error instead of its end when one differs — so the dataplane,
/// which commits only on a clean end, never stores a corrupted object.
struct Integrity {
    md5: Option<(s3s::crypto::Md5, Vec<u8>)>,
    sha256: Option<(s3s::crypto::Sha256, String)>,
    sha1: Option<(s3s::crypto::Sha1, String)>,
    crc32: Option<(s3s::crypto::Crc32, String)>,
    crc32c: Option<(s3s::crypto::Crc32c, String)>,
    crc64nvme: Option<(s3s::crypto::Crc64Nvme, String)>,
}

impl Integrity {
    fn new(
        content_md5: Option<&str>,
        sha256: Option<&str>,
        sha1: Option<&str>,
        crc32: Option<&str>,
        crc32c: Option<&str>,
        crc64nvme: Option<&str>,
    ) -> S3Result<Self> {
        let md5 = match content_md5 {
            Some(b64) => {
                let raw = STANDARD
                    .decode(b64.trim())
                    .ok()
                    .filter(|r| r.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))?;
                Some((s3s::crypto::Md5::new(), raw))
            }
            None => None,
        };
        Ok(Self {
            md5,
            sha256: sha256.map(|v| (s3s::crypto::Sha256::new(), v.trim().to_string())),
            sha1: sha1.map(|v| (s3s::crypto::Sha1::new(), v.trim().to_string())),
            crc32: crc32.map(|v| (s3s::crypto::Crc32::new(), v.trim().to_string())),
            crc32c: crc32c.map(|v| (s3s::crypto::Crc32c::new(), v.trim().to_string())),
            crc64nvme: crc64nvme.map(|v| (s3s::crypto::Crc64Nvme::new(), v.trim().to_string())),
        })
    }

    fn update(&mut self, data: &[u8]) {
        if let Some((h, _)) = &mut self.md5 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.sha256 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.sha1 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc32 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc32c {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc64nvme {
            h.update(data);
        }
    }

    /// The first declared digest that the body did not match.
    fn mismatch(self) -> Option<&'static str> {
        if let Some((h, want)) = self.md5
            && h.finalize().as_ref() != want.as_slice()
        {
            return Some("Content-MD5");
        }
        fn differs<H: s3s::crypto::Checksum>(h: Option<(H, String)>) -> bool
        where
            H::Output: AsRef<[u8]>,
        {
            h.is_some_and(|(h, want)| STANDARD.encode(h.finalize().as_ref()) != want)
        }
        if differs(self.sha256) {
            return Some("x-amz-checksum-sha256");
        }
        if differs(self.sha1) {
            return Some("x-amz-checksum-sha1");
        }
        if differs(self.crc32) {
            return Some("x-amz-checksum-crc32");
        }
        if differs(self.crc32c) {
            return Some("x-amz-checksum-crc32c");
        }
        if differs(self.crc64nvme) {
            return Some("x-amz-checksum-crc64nvme");
        }
        None
    }

    /// Wraps `body`: hashes as it goes, counts bytes in, and fails at the end on a mismatch.
    fn guard(
        self,
        body: StreamingBlob,
        metrics: Arc<Metrics>,
    ) -> impl Stream<Item = Result<Bytes, String>> + Send {
        let state = Some(self);
        futures::stream::unfold((body, state), move |(mut body, mut state)| {
            let metrics = metrics.clone();
            async move {
                let check = state.as_mut()?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        check.update(&chunk);
                        metrics
                            .s3_bytes
                            .with_label_values(&["in"])
                            .inc_by(chunk.len() as u64);
                        Some((Ok(chunk), (body, state)))
                    }
                    Some(Err(e)) => {
                        // s3s checks each aws-chunked chunk signature as the body streams; its
                        // error type is private, so it is known by its text.
                        let text = e.to_string();
                        let text = if text.contains("SignatureMismatch") {
                            format!("{CHUNK_SIGNATURE_MISMATCH}{text}")
                        } else {
                            text
                        };
                        Some((Err(text), (body, None)))
                    }
                    None => {
                        let check = state.take()?;
                        check.mismatch().map(|what| {
                            (
                                Err(format!("{DIGEST_MISMATCH}{what} does not match the body")),
                                (body, None),
                            )
                        })
                    }
                }
            }
        })
    }
}

impl S3Front {
    /// The caller, from the access key that signed the request (None: anonymous).
    async fn who(&self, credentials: &Option<Credentials>) -> S3Result<Option<Principal>> {
        let Some(c) = credentials else {
            return Ok(None);
        };
        match self
            .dataplane
            .catalog()
            .access_key_secret(&c.access_key)
            .await
        {
            Ok(Some((p, _))) => Ok(Some(p)),
            Ok(None) => Err(with_request_id(s3_error!(InvalidAccessKeyId))),
            Err(e) => Err(catalog_unavailable(e)),
        }
    }

    /// Succeeds when the bucket exists and the caller may list it.
    async fn readable_bucket(
        &self,
        credentials: &Option<Credentials>,
        bucket: &str,
    ) -> S3Result<()> {
        let who = self.who(credentials).await?;
        self.dataplane
            .open(who.as_ref(), bucket, archway_dataplane::Op::List)
            .await
            .map(|_| ())
            .map_err(s3_error)
    }

    /// Records one S3 operation's outcome.
    fn record<T>(&self, op: &'static str, result: S3Result<T>) -> S3Result<T> {
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => match e.status_code().map(|s| s.as_u16()) {
                Some(304) => "not_modified",
                Some(400..=499) => "client_error",
                _ => "server_error",
            },
        };
        self.metrics
            .s3_requests
            .with_label_values(&[op, label])
            .inc();
        result.map_err(with_request_id)
    }

    fn count_out(
        &self,
        body: futures::stream::BoxStream<'static, archway_dataplane::Result<Bytes>>,
    ) -> StreamingBlob {
        let metrics = self.metrics.clone();
        let counted = body.map(move |r| {
            if let Ok(b) = &r {
                metrics
                    .s3_bytes
                    .with_label_values(&["out"])
                    .inc_by(b.len() as u64);
            }
            r
        });
        StreamingBlob::wrap(SyncStream(std::sync::Mutex::new(Box::pin(counted))))
    }

    async fn list_page(
        &self,
        who: Option<&Principal>,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<String>,
        start_after: Option<String>,
        max_keys: Option<i32>,
    ) -> S3Result<archway_dataplane::ListPage> {
        let max_keys = match max_keys {
            Some(n) if n < 0 => {
                return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
            }
            Some(n) => Some(n as usize),
            None => None,
        };
        if max_keys == Some(0) {
            // Still check the bucket and access.
            self.dataplane
                .open(who, bucket, archway_dataplane::Op::List)
                .await
                .map_err(s3_error)?;
            return Ok(Default::default());
        }
        let req = ListRequest {
            prefix: prefix.unwrap_or_default(),
            // S3 treats an empty delimiter as none (s3fs sends one for recursive listings).
            delimiter: delimiter.filter(|d| !d.is_empty()),
            start_after,
            max_keys,
        };
        self.dataplane
            .list(who, bucket, &req)
            .await
            .map_err(s3_error)
    }

    async fn owner_of(&self, bucket: &str) -> Option<Owner> {
        let v = self.dataplane.catalog().get_volume(bucket).await.ok()?;
        let id = v.owner.unwrap_or_else(|| "archway".into());
        Some(Owner {
            display_name: Some(id.clone()),
            id: Some(id),
        })
    }
}

/// `StreamingBlob` needs `Sync`; a dataplane body is `Send` only. A mutex makes it `Sync`
/// without sharing: the stream is only ever polled by the one task that owns it.
struct SyncStream<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S: Stream + Send> Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.lock() {
            Ok(mut s) => s.as_mut().poll_next(cx),
            Err(_) => std::task::Poll::Ready(None),
        }
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
fn listing_entries(
    page: &archway_dataplane::ListPage,
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

fn wants_url(e: &Option<EncodingType>) -> S3Result<bool> {
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

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let result = async {
            let who = self
                .who(&req.credentials)
                .await?
                .ok_or_else(|| s3_error!(AccessDenied, "listing buckets needs a signed request"))?;
            let query = archway_catalog::VolumeQuery {
                q: None,
                ..Default::default()
            };
            let volumes = self
                .dataplane
                .catalog()
                .list_volumes(Some(&who), &query)
                .await
                .map_err(catalog_unavailable)?;
            let prefix = req.input.prefix.clone().unwrap_or_default();
            let buckets = volumes
                .into_iter()
                .filter(|(v, _)| v.id.starts_with(&prefix))
                .map(|(v, _)| Bucket {
                    name: Some(v.id),
                    creation_date: Some(timestamp(v.created_at.to_system_time())),
                    bucket_region: None,
                })
                .collect();
            Ok(S3Response::new(ListBucketsOutput {
                buckets: Some(buckets),
                owner: Some(Owner {
                    display_name: Some(who.user.clone()),
                    id: Some(who.user),
                }),
                prefix: req.input.prefix,
                continuation_token: None,
            }))
        }
        .await;
        self.record("ListBuckets", result)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let result = self
            .readable_bucket(&req.credentials, &req.input.bucket)
            .await
            .map(|()| S3Response::new(HeadBucketOutput::default()));
        self.record("HeadBucket", result)
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let result = self
            .readable_bucket(&req.credentials, &req.input.bucket)
            .await
            .map(|()| S3Response::new(GetBucketLocationOutput::default()));
        self.record("GetBucketLocation", result)
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?.ok_or_else(|| {
                s3_error!(AccessDenied, "creating a bucket needs a signed request")
            })?;
            let bucket = req.input.bucket;
            let catalog = self.dataplane.catalog();
            match catalog.get_volume(&bucket).await {
                Ok(v) => {
                    let mine = who.admin || v.owner.as_deref() == Some(who.user.as_str());
                    return Err(if mine {
                        s3_error!(BucketAlreadyOwnedByYou, "volume `{bucket}` already exists")
                    } else {
                        s3_error!(BucketAlreadyExists, "volume `{bucket}` already exists")
                    });
                }
                Err(CatalogError::NotFound { .. }) => {}
                Err(e) => return Err(catalog_unavailable(e)),
            }
            let allowed = who.admin
                || catalog
                    .get_user(&who.user)
                    .await
                    .map(|u| u.create_workspaces)
                    .map_err(catalog_unavailable)?;
            if !allowed {
                return Err(s3_error!(
                    AccessDenied,
                    "creating buckets (workspace volumes) needs the admin role or the \
                     create_workspaces right"
                ));
            }
            archway_catalog::validate_volume_id(&bucket)
                .map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
            let Some((backend, prefix)) = self.dataplane.workspace_location(&bucket) else {
                return Err(s3_error!(
                    InternalError,
                    "no workspace backend is configured ([workspaces] backend)"
                ));
            };
            let new = NewVolume {
                id: bucket.clone(),
                title: bucket.clone(),
                description: format!("Workspace created through S3 by {}", who.user),
                backend,
                prefix,
                kind: VolumeKind::Workspace,
                owner: Some(who.user.clone()),
                ..Default::default()
            };
            match catalog.create_volume(new).await {
                Ok(_) => {}
                Err(CatalogError::AlreadyExists { .. }) => {
                    return Err(s3_error!(BucketAlreadyOwnedByYou));
                }
                Err(CatalogError::Invalid { message, .. }) => {
                    return Err(s3_error!(InvalidBucketName, "{message}"));
                }
                Err(e) => return Err(catalog_unavailable(e)),
            }
            tracing::info!(volume = %bucket, by = %who.user, "workspace created through S3");
            Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{bucket}")),
            }))
        }
        .await;
        self.record("CreateBucket", result)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let bucket = req.input.bucket;
            let h = self
                .dataplane
                .open(who.as_ref(), &bucket, archway_dataplane::Op::List)
                .await
                .map_err(s3_error)?;
            if h.volume.kind != VolumeKind::Workspace {
                return Err(s3_error!(
                    AccessDenied,
                    "archive volumes are never deleted through S3"
                ));
            }
            if h.access < Access::Admin {
                return Err(s3_error!(
                    AccessDenied,
                    "deleting `{bucket}` needs admin access to it"
                ));
            }
            let probe = ListRequest {
                max_keys: Some(1),
                ..Default::default()
            };
            let page = self
                .dataplane
                .list(who.as_ref(), &bucket, &probe)
                .await
                .map_err(s3_error)?;
            if !page.objects.is_empty() {
                return Err(s3_error!(BucketNotEmpty));
            }
            self.dataplane
                .catalog()
                .delete_volume(&bucket)
                .await
                .map_err(catalog_unavailable)?;
            tracing::info!(volume = %bucket, "workspace deleted through S3");
            Ok(S3Response::new(DeleteBucketOutput {}))
        }
        .await;
        self.record("DeleteBucket", result)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let encode = wants_url(&input.encoding_type)?;
            let token_key = match &input.continuation_token {
                Some(t) => Some(
                    URL_SAFE_NO_PAD
                        .decode(t)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            s3_error!(
                                InvalidArgument,
                                "The continuation token provided is incorrect"
                            )
                        })?,
                ),
                None => None,
            };
            let after = token_key.or_else(|| input.start_after.clone());
            let page = self
                .list_page(
                    who.as_ref(),
                    &input.bucket,
                    input.prefix.clone(),
                    input.delimiter.clone(),
                    after,
                    input.max_keys,
                )
                .await?;
            let owner = if input.fetch_owner == Some(true) {
                self.owner_of(&input.bucket).await
            } else {
                None
            };
            let (contents, prefixes) = listing_entries(&page, encode, owner.as_ref());
            let key_count = (contents.len() + prefixes.len()) as i32;
            let enc = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
            Ok(S3Response::new(ListObjectsV2Output {
                name: Some(input.bucket),
                prefix: Some(enc(input.prefix).unwrap_or_default()),
                delimiter: enc(input.delimiter),
                start_after: enc(input.start_after),
                max_keys: Some(input.max_keys.unwrap_or(1000)),
                key_count: Some(key_count),
                continuation_token: input.continuation_token,
                is_truncated: Some(page.next_start_after.is_some()),
                next_continuation_token: page.next_start_after.map(|k| URL_SAFE_NO_PAD.encode(k)),
                contents: Some(contents),
                common_prefixes: Some(prefixes),
                encoding_type: input.encoding_type,
                ..Default::default()
            }))
        }
        .await;
        self.record("ListObjectsV2", result)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let encode = wants_url(&input.encoding_type)?;
            let page = self
                .list_page(
                    who.as_ref(),
                    &input.bucket,
                    input.prefix.clone(),
                    input.delimiter.clone(),
                    input.marker.clone().filter(|m| !m.is_empty()),
                    input.max_keys,
                )
                .await?;
            let owner = self.owner_of(&input.bucket).await;
            let (contents, prefixes) = listing_entries(&page, encode, owner.as_ref());
            let enc = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
            Ok(S3Response::new(ListObjectsOutput {
                name: Some(input.bucket),
                prefix: Some(enc(input.prefix).unwrap_or_default()),
                marker: Some(enc(input.marker).unwrap_or_default()),
                delimiter: enc(input.delimiter),
                max_keys: Some(input.max_keys.unwrap_or(1000)),
                is_truncated: Some(page.next_start_after.is_some()),
                next_marker: enc(page.next_start_after),
                contents: Some(contents),
                common_prefixes: Some(prefixes),
                encoding_type: input.encoding_type,
                ..Default::default()
            }))
        }
        .await;
        self.record("ListObjects", result)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let conditions = ReadRequest {
                range: None,
                if_match: condition(input.if_match),
                if_none_match: condition(input.if_none_match),
                if_modified_since: input.if_modified_since.map(system_time),
                if_unmodified_since: input.if_unmodified_since.map(system_time),
            };
            let info = self
                .dataplane
                .head_if(who.as_ref(), &input.bucket, &input.key, &conditions)
                .await
                .map_err(s3_error)?;
            let (content_length, content_range) = match range(input.range) {
                None => (info.size, None),
                Some(r) => {
                    let (start, end) = resolve_range(r, info.size)?;
                    (
                        end - start,
                        Some(format!("bytes {}-{}/{}", start, end - 1, info.size)),
                    )
                }
            };
            Ok(S3Response::new(HeadObjectOutput {
                accept_ranges: Some("bytes".into()),
                content_length: Some(content_length as i64),
                content_range,
                content_type: Some(
                    input
                        .response_content_type
                        .unwrap_or_else(|| content_type(&info)),
                ),
                e_tag: etag(info.etag.as_deref()),
                last_modified: Some(timestamp(info.last_modified)),
                cache_control: input.response_cache_control,
                content_disposition: input.response_content_disposition,
                content_encoding: input.response_content_encoding,
                content_language: input.response_content_language,
                expires: input.response_expires,
                ..Default::default()
            }))
        }
        .await;
        self.record("HeadObject", result)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            if let Some(n) = input.part_number
                && n != 1
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "objects here have one part; partNumber must be 1"
                ));
            }
            let read = ReadRequest {
                range: range(input.range),
                if_match: condition(input.if_match),
                if_none_match: condition(input.if_none_match),
                if_modified_since: input.if_modified_since.map(system_time),
                if_unmodified_since: input.if_unmodified_since.map(system_time),
            };
            let ranged = read.range.is_some();
            let r = self
                .dataplane
                .get(who.as_ref(), &input.bucket, &input.key, read)
                .await
                .map_err(s3_error)?;
            let length = r.range.end - r.range.start;
            let content_range = ranged.then(|| {
                if length == 0 {
                    format!("bytes */{}", r.info.size)
                } else {
                    format!(
                        "bytes {}-{}/{}",
                        r.range.start,
                        r.range.end - 1,
                        r.info.size
                    )
                }
            });
            let content_type = input
                .response_content_type
                .unwrap_or_else(|| content_type(&r.info));
            Ok(S3Response::new(GetObjectOutput {
                accept_ranges: Some("bytes".into()),
                content_length: Some(length as i64),
                content_range,
                content_type: Some(content_type),
                e_tag: etag(r.info.etag.as_deref()),
                last_modified: Some(timestamp(r.info.last_modified)),
                cache_control: input.response_cache_control,
                content_disposition: input.response_content_disposition,
                content_encoding: input.response_content_encoding,
                content_language: input.response_content_language,
                expires: input.response_expires,
                body: Some(self.count_out(r.body)),
                ..Default::default()
            }))
        }
        .await;
        self.record("GetObject", result)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let check = Integrity::new(
                input.content_md5.as_deref(),
                input.checksum_sha256.as_deref(),
                input.checksum_sha1.as_deref(),
                input.checksum_crc32.as_deref(),
                input.checksum_crc32c.as_deref(),
                input.checksum_crc64nvme.as_deref(),
            )?;
            let body = input.body.unwrap_or_else(|| {
                StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
            });
            let guarded = check.guard(body, self.metrics.clone());
            let put = PutRequest {
                content_type: input.content_type,
            };
            let out = self
                .dataplane
                .put(who.as_ref(), &input.bucket, &input.key, guarded, put)
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(PutObjectOutput {
                e_tag: etag(out.etag.as_deref()),
                size: Some(out.size as i64),
                checksum_sha256: input.checksum_sha256,
                checksum_sha1: input.checksum_sha1,
                checksum_crc32: input.checksum_crc32,
                checksum_crc32c: input.checksum_crc32c,
                checksum_crc64nvme: input.checksum_crc64nvme,
                ..Default::default()
            }))
        }
        .await;
        self.record("PutObject", result)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let (src_bucket, src_key) = match &input.copy_source {
                CopySource::Bucket {
                    bucket,
                    key,
                    version_id: None,
                } => (bucket.to_string(), key.to_string()),
                CopySource::Bucket { .. } => {
                    return Err(s3_error!(
                        NotImplemented,
                        "object versions are not supported"
                    ));
                }
                _ => {
                    return Err(s3_error!(
                        NotImplemented,
                        "access points and outposts are not supported"
                    ));
                }
            };
            let conditions = ReadRequest {
                range: None,
                if_match: condition(input.copy_source_if_match),
                if_none_match: condition(input.copy_source_if_none_match),
                if_modified_since: input.copy_source_if_modified_since.map(system_time),
                if_unmodified_since: input.copy_source_if_unmodified_since.map(system_time),
            };
            if conditions != ReadRequest::default() {
                // For copies every failed condition is 412 (S3 has no 304 here).
                self.dataplane
                    .head_if(who.as_ref(), &src_bucket, &src_key, &conditions)
                    .await
                    .map_err(|e| match e {
                        DataplaneError::NotModified { volume, key } => {
                            s3_error(DataplaneError::PreconditionFailed { volume, key })
                        }
                        e => s3_error(e),
                    })?;
            }
            let out = self
                .dataplane
                .copy(
                    who.as_ref(),
                    (&src_bucket, &src_key),
                    (&input.bucket, &input.key),
                )
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(CopyObjectOutput {
                copy_object_result: Some(CopyObjectResult {
                    e_tag: etag(out.etag.as_deref()),
                    last_modified: Some(timestamp(SystemTime::now())),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        .await;
        self.record("CopyObject", result)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            self.dataplane
                .delete(who.as_ref(), &req.input.bucket, &req.input.key)
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(DeleteObjectOutput::default()))
        }
        .await;
        self.record("DeleteObject", result)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            if input.delete.objects.len() > 1000 {
                return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
            }
            // Refuse the whole request up front when the caller may not write at all.
            self.dataplane
                .open(who.as_ref(), &input.bucket, archway_dataplane::Op::Delete)
                .await
                .map_err(s3_error)?;
            let quiet = input.delete.quiet == Some(true);
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            for obj in input.delete.objects {
                match self
                    .dataplane
                    .delete(who.as_ref(), &input.bucket, &obj.key)
                    .await
                {
                    Ok(()) => {
                        if !quiet {
                            deleted.push(DeletedObject {
                                key: Some(obj.key),
                                ..Default::default()
                            });
                        }
                    }
                    Err(e) => {
                        let err = s3_error(e);
                        errors.push(Error {
                            code: Some(err.code().as_str().to_string()),
                            key: Some(obj.key),
                            message: err.message().map(str::to_string),
                            version_id: None,
                        });
                    }
                }
            }
            Ok(S3Response::new(DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: (!errors.is_empty()).then_some(errors),
                ..Default::default()
            }))
        }
        .await;
        self.record("DeleteObjects", result)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let put = PutRequest {
                content_type: input.content_type,
            };
            let upload_id = self
                .dataplane
                .create_upload(who.as_ref(), &input.bucket, &input.key, put)
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(CreateMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(upload_id),
                ..Default::default()
            }))
        }
        .await;
        self.record("CreateMultipartUpload", result)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let number = u32::try_from(input.part_number)
                .map_err(|_| s3_error!(InvalidArgument, "part numbers are 1 to 10000"))?;
            let check = Integrity::new(
                input.content_md5.as_deref(),
                input.checksum_sha256.as_deref(),
                input.checksum_sha1.as_deref(),
                input.checksum_crc32.as_deref(),
                input.checksum_crc32c.as_deref(),
                input.checksum_crc64nvme.as_deref(),
            )?;
            let body = input.body.unwrap_or_else(|| {
                StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
            });
            let guarded = check.guard(body, self.metrics.clone());
            let part = self
                .dataplane
                .upload_part(
                    who.as_ref(),
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    number,
                    guarded,
                )
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(UploadPartOutput {
                e_tag: etag(Some(&part.etag)),
                checksum_sha256: input.checksum_sha256,
                checksum_sha1: input.checksum_sha1,
                checksum_crc32: input.checksum_crc32,
                checksum_crc32c: input.checksum_crc32c,
                checksum_crc64nvme: input.checksum_crc64nvme,
                ..Default::default()
            }))
        }
        .await;
        self.record("UploadPart", result)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let listed = input
                .multipart_upload
                .and_then(|m| m.parts)
                .unwrap_or_default();
            let mut parts = Vec::with_capacity(listed.len());
            for p in listed {
                let number = p
                    .part_number
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| s3_error!(InvalidPart, "a part without a part number"))?;
                let tag = p
                    .e_tag
                    .map(|e| e.value().to_string())
                    .ok_or_else(|| s3_error!(InvalidPart, "part {number} has no ETag"))?;
                parts.push((number, tag));
            }
            let out = self
                .dataplane
                .complete_upload(
                    who.as_ref(),
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    &parts,
                )
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(CompleteMultipartUploadOutput {
                location: Some(format!("/{}/{}", input.bucket, input.key)),
                bucket: Some(input.bucket),
                key: Some(input.key),
                e_tag: etag(out.etag.as_deref()),
                ..Default::default()
            }))
        }
        .await;
        self.record("CompleteMultipartUpload", result)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            self.dataplane
                .abort_upload(who.as_ref(), &input.bucket, &input.key, &input.upload_id)
                .await
                .map_err(s3_error)?;
            Ok(S3Response::new(AbortMultipartUploadOutput::default()))
        }
        .await;
        self.record("AbortMultipartUpload", result)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let all = self
                .dataplane
                .list_parts(who.as_ref(), &input.bucket, &input.key, &input.upload_id)
                .await
                .map_err(s3_error)?;
            let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
            let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
            let rest: Vec<_> = all.into_iter().filter(|p| p.number > marker).collect();
            let truncated = rest.len() > max;
            let page: Vec<Part> = rest
                .into_iter()
                .take(max)
                .map(|p| Part {
                    part_number: Some(p.number as i32),
                    e_tag: etag(Some(&p.etag)),
                    size: Some(p.size as i64),
                    last_modified: Some(timestamp(p.last_modified)),
                    ..Default::default()
                })
                .collect();
            let next = page.last().and_then(|p| p.part_number);
            Ok(S3Response::new(ListPartsOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(input.upload_id),
                max_parts: Some(max as i32),
                part_number_marker: input.part_number_marker,
                next_part_number_marker: if truncated { next } else { None },
                is_truncated: Some(truncated),
                parts: Some(page),
                ..Default::default()
            }))
        }
        .await;
        self.record("ListParts", result)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let prefix = input.prefix.clone().unwrap_or_default();
            let all = self
                .dataplane
                .list_uploads(who.as_ref(), &input.bucket, &prefix)
                .await
                .map_err(s3_error)?;
            let key_marker = input.key_marker.clone().unwrap_or_default();
            let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
            let rest: Vec<_> = all.into_iter().filter(|u| u.key > key_marker).collect();
            let truncated = rest.len() > max;
            let uploads: Vec<MultipartUpload> = rest
                .into_iter()
                .take(max)
                .map(|u| MultipartUpload {
                    key: Some(u.key),
                    upload_id: Some(u.upload_id),
                    initiated: Some(timestamp(u.initiated)),
                    initiator: u.user.clone().map(|n| Initiator {
                        display_name: Some(n.clone()),
                        id: Some(n),
                    }),
                    ..Default::default()
                })
                .collect();
            let next_key = if truncated {
                uploads.last().and_then(|u| u.key.clone())
            } else {
                None
            };
            Ok(S3Response::new(ListMultipartUploadsOutput {
                bucket: Some(input.bucket),
                prefix: input.prefix,
                key_marker: input.key_marker,
                max_uploads: Some(max as i32),
                is_truncated: Some(truncated),
                next_key_marker: next_key,
                uploads: Some(uploads),
                ..Default::default()
            }))
        }
        .await;
        self.record("ListMultipartUploads", result)
    }
}

/// A read range resolved against the object's size: (start, end exclusive).
fn resolve_range(r: ReadRange, size: u64) -> S3Result<(u64, u64)> {
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

/// The stored Content-Type, or one guessed from the key's extension.
fn content_type(info: &ObjectInfo) -> String {
    if let Some(ct) = &info.content_type {
        return ct.clone();
    }
    let lower = info.key.to_ascii_lowercase();
    let ext = lower.rsplit('.').next().unwrap_or("");
    match ext {
        "fits" | "fit" | "fts" | "fz" => "application/fits",
        "json" => "application/json",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "xml" | "vot" => "application/xml",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gz" => "application/gzip",
        "zip" => "application/zip",
        "parquet" => "application/vnd.apache.parquet",
        "h5" | "hdf5" => "application/x-hdf5",
        _ => "application/octet-stream",
    }
    .to_string()
}

/// Builds the S3 service over `front`; `domain` enables virtual-hosted-style requests.
pub fn service(
    front: S3Front,
    domain: Option<&str>,
    max_xml_body_bytes: usize,
) -> Result<s3s::service::S3Service, String> {
    let catalog = front.dataplane.catalog().clone();
    let mut builder = s3s::service::S3ServiceBuilder::new(front);
    let mut config = s3s::config::S3Config::default();
    config.xml_max_body_size = max_xml_body_bytes;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    builder.set_auth(CatalogAuth { catalog });
    builder.set_access(DataplaneDecides);
    if let Some(d) = domain {
        builder.set_host(BucketDomain::new(d)?);
    }
    Ok(builder.build())
}

/// Virtual-hosted-style addressing under one base domain: `bucket.DOMAIN[:port]` names the
/// bucket; any other host (an IP address, the bare domain, a load balancer's name) is path
/// style. Unlike a CNAME-style resolver it never takes an unknown host for a bucket, so path
/// style keeps working on every address.
#[derive(Debug)]
pub struct BucketDomain {
    domain: String,
}

impl BucketDomain {
    pub fn new(domain: &str) -> Result<Self, String> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Self { domain })
        } else {
            Err(format!("server.domain `{domain}` is not a domain name"))
        }
    }
}

impl s3s::host::S3Host for BucketDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let vh = s3s::host::VirtualHost::new(self.domain.as_str());
        if host.starts_with('[') {
            return Ok(vh); // an IPv6 address
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let lower = name.to_ascii_lowercase();
        match lower
            .strip_suffix(self.domain.as_str())
            .and_then(|b| b.strip_suffix('.'))
        {
            Some(bucket) if !bucket.is_empty() => Ok(vh.with_bucket(bucket.to_string())),
            _ => Ok(vh),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_domains() {
        use s3s::host::S3Host;
        let d = BucketDomain::new("s3.example.org").unwrap();
        let vh = |h: &'static str| format!("{:?}", d.parse_host_header(h).unwrap());
        assert!(vh("demo.s3.example.org:9000").contains("Some(\"demo\")"));
        assert!(vh("gaia.dr3.s3.example.org").contains("Some(\"gaia.dr3\")"));
        assert!(vh("127.0.0.1:9000").contains("bucket: None"));
        assert!(vh("s3.example.org").contains("bucket: None"));
        assert!(vh("[::1]:9000").contains("bucket: None"));
        assert!(BucketDomain::new("bad domain").is_err());
    }

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
    fn digests_are_checked() {
        let good = STANDARD.encode(s3s::crypto::Md5::checksum(b"hello").as_ref());
        let mut i = Integrity::new(Some(&good), None, None, None, None, None).unwrap();
        i.update(b"hello");
        assert_eq!(i.mismatch(), None);
        let mut i = Integrity::new(Some(&good), None, None, None, None, None).unwrap();
        i.update(b"hellO");
        assert_eq!(i.mismatch(), Some("Content-MD5"));
        assert!(Integrity::new(Some("not base64!"), None, None, None, None, None).is_err());
    }
}

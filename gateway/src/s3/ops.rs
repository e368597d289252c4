//! The supported S3 operations, each a dataplane call. `doc/s3.md` lists them with their
//! semantics.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use archway_catalog::Principal;
use archway_dataplane::checksum::{
    ChecksumAlgorithm as ChecksumAlgo, ChecksumType as KindOfChecksum,
};
use archway_dataplane::uploads::CompletedPart;
use archway_dataplane::{
    CopyRequest, DataplaneError, ListPage, ListRequest, Op, PutRequest, ReadRequest,
};

use super::acl::{canned_public, object_acl, policy};
use super::convert::{
    attributes_in, checksum_fields, condition, content_type, copy_source, copy_source_range,
    cors_rule_in, cors_rule_out, declared_checksum, etag, expires_out, listing_entries,
    metadata_out, part_of, parts_of, range, resolve_range, system_time, timestamp, url_encode,
    wants_url,
};
use super::integrity::Integrity;
use super::{S3Front, dataplane_error};

impl S3Front {
    /// Succeeds when the bucket exists and the caller may list it.
    async fn readable_bucket(
        &self,
        credentials: &Option<s3s::auth::Credentials>,
        bucket: &str,
    ) -> S3Result<()> {
        let who = self.who(credentials).await?;
        self.dataplane
            .open(who.as_ref(), bucket, Op::List)
            .await
            .map(|_| ())
            .map_err(dataplane_error)
    }

    async fn list_page(
        &self,
        who: Option<&Principal>,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<String>,
        start_after: Option<String>,
        max_keys: Option<i32>,
    ) -> S3Result<ListPage> {
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
                .open(who, bucket, Op::List)
                .await
                .map_err(dataplane_error)?;
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
            .map_err(dataplane_error)
    }

    /// The bucket's owner as S3 shows it (the volume's owner, else the gateway).
    async fn owner_of(&self, who: Option<&Principal>, bucket: &str) -> Option<Owner> {
        let (v, _) = self.dataplane.volume(who, bucket).await.ok()?;
        let id = v.owner.unwrap_or_else(|| "archway".into());
        Some(Owner {
            display_name: Some(id.clone()),
            id: Some(id),
        })
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let result = async {
            let who = self.signed(&req.credentials, "listing buckets").await?;
            let query = archway_catalog::VolumeQuery::default();
            let volumes = self
                .dataplane
                .volumes(Some(&who), &query)
                .await
                .map_err(dataplane_error)?;
            let input = req.input;
            let max = match input.max_buckets {
                None => 10_000,
                Some(n) if (1..=10_000).contains(&n) => n as usize,
                Some(_) => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "max-buckets must be between 1 and 10000"
                    ));
                }
            };
            let after = match input.continuation_token.as_deref() {
                None | Some("") => None,
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
            };
            let prefix = input.prefix.clone().unwrap_or_default();
            let mut names: Vec<_> = volumes
                .into_iter()
                .map(|(v, _)| v)
                .filter(|v| v.id.starts_with(&prefix))
                .filter(|v| after.as_ref().is_none_or(|a| v.id.as_str() > a.as_str()))
                .collect();
            names.sort_by(|a, b| a.id.cmp(&b.id));
            let more = names.len() > max;
            names.truncate(max);
            let next = more
                .then(|| names.last().map(|v| URL_SAFE_NO_PAD.encode(&v.id)))
                .flatten();
            let buckets = names
                .into_iter()
                .map(|v| Bucket {
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
                prefix: input.prefix,
                continuation_token: next,
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

    /// Volumes have no versions: versioning was never enabled (an empty configuration, as S3
    /// answers for such a bucket).
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let result = self
            .readable_bucket(&req.credentials, &req.input.bucket)
            .await
            .map(|()| S3Response::new(GetBucketVersioningOutput::default()));
        self.record("GetBucketVersioning", result)
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let rules = self
                .dataplane
                .cors(who.as_ref(), &req.input.bucket)
                .await
                .map_err(dataplane_error)?
                .ok_or_else(|| {
                    s3_error!(
                        NoSuchCORSConfiguration,
                        "volume `{}` has no CORS configuration",
                        req.input.bucket
                    )
                })?;
            Ok(S3Response::new(GetBucketCorsOutput {
                cors_rules: Some(rules.into_iter().map(cors_rule_out).collect()),
            }))
        }
        .await;
        self.record("GetBucketCors", result)
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let rules: Vec<_> = input
                .cors_configuration
                .cors_rules
                .into_iter()
                .map(cors_rule_in)
                .collect();
            self.dataplane
                .put_cors(who.as_ref(), &input.bucket, &rules)
                .await
                .map_err(dataplane_error)?;
            Ok(S3Response::new(PutBucketCorsOutput {}))
        }
        .await;
        self.record("PutBucketCors", result)
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            self.dataplane
                .delete_cors(who.as_ref(), &req.input.bucket)
                .await
                .map_err(dataplane_error)?;
            Ok(S3Response::new(DeleteBucketCorsOutput {}))
        }
        .await;
        self.record("DeleteBucketCors", result)
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let acl = self
                .dataplane
                .volume_acl(who.as_ref(), &req.input.bucket)
                .await
                .map_err(dataplane_error)?;
            let (owner, grants) = policy(&acl, who.as_ref());
            Ok(S3Response::new(GetBucketAclOutput {
                grants: Some(grants),
                owner: Some(owner),
            }))
        }
        .await;
        self.record("GetBucketAcl", result)
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let grants = [
                &input.grant_full_control,
                &input.grant_read,
                &input.grant_read_acp,
                &input.grant_write,
                &input.grant_write_acp,
            ]
            .iter()
            .any(|g| g.is_some());
            let public = canned_public(
                input.acl.as_ref(),
                input.access_control_policy.is_some(),
                grants,
            )?;
            self.dataplane
                .set_public_read(who.as_ref(), &input.bucket, public)
                .await
                .map_err(dataplane_error)?;
            Ok(S3Response::new(PutBucketAclOutput {}))
        }
        .await;
        self.record("PutBucketAcl", result)
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            self.dataplane
                .head(who.as_ref(), &input.bucket, &input.key)
                .await
                .map_err(dataplane_error)?;
            let acl = self
                .dataplane
                .volume_acl(who.as_ref(), &input.bucket)
                .await
                .map_err(dataplane_error)?;
            let (owner, grants) = policy(&acl, who.as_ref());
            Ok(S3Response::new(GetObjectAclOutput {
                grants: Some(grants),
                owner: Some(owner),
                request_charged: None,
            }))
        }
        .await;
        self.record("GetObjectAcl", result)
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            // The caller may write the volume, and the object exists.
            self.dataplane
                .open(who.as_ref(), &input.bucket, Op::Put)
                .await
                .map_err(dataplane_error)?;
            self.dataplane
                .head(who.as_ref(), &input.bucket, &input.key)
                .await
                .map_err(dataplane_error)?;
            if input.access_control_policy.is_some()
                || input.grant_full_control.is_some()
                || input.grant_read.is_some()
                || input.grant_read_acp.is_some()
                || input.grant_write.is_some()
                || input.grant_write_acp.is_some()
            {
                return Err(s3_error!(
                    AccessControlListNotSupported,
                    "objects have their volume's access, not ACLs of their own"
                ));
            }
            object_acl(input.acl.as_ref())?;
            Ok(S3Response::new(PutObjectAclOutput::default()))
        }
        .await;
        self.record("PutObjectAcl", result)
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let result = async {
            let who = self.signed(&req.credentials, "creating a bucket").await?;
            let bucket = req.input.bucket;
            self.dataplane
                .create_workspace(&who, &bucket)
                .await
                .map_err(dataplane_error)?;
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
            self.dataplane
                .remove_workspace(who.as_ref(), &req.input.bucket)
                .await
                .map_err(dataplane_error)?;
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
                self.owner_of(who.as_ref(), &input.bucket).await
            } else {
                None
            };
            let (contents, prefixes) = listing_entries(&page, encode, owner.as_ref());
            let key_count = (contents.len() + prefixes.len()) as i32;
            let enc = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
            Ok(S3Response::new(ListObjectsV2Output {
                name: Some(input.bucket),
                prefix: Some(enc(input.prefix).unwrap_or_default()),
                delimiter: enc(input.delimiter.filter(|d| !d.is_empty())),
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
            let owner = self.owner_of(who.as_ref(), &input.bucket).await;
            let (contents, prefixes) = listing_entries(&page, encode, owner.as_ref());
            let enc = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
            Ok(S3Response::new(ListObjectsOutput {
                name: Some(input.bucket),
                prefix: Some(enc(input.prefix).unwrap_or_default()),
                marker: Some(enc(input.marker).unwrap_or_default()),
                delimiter: enc(input.delimiter.filter(|d| !d.is_empty())),
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
                .map_err(dataplane_error)?;
            let (part, parts_count) = match input.part_number {
                Some(_) if input.range.is_some() => return Err(range_and_part()),
                Some(n) => part_of(&info, n)?,
                None => (None, None),
            };
            let whole = part.is_none() && input.range.is_none();
            let sums = checksum_fields(
                info.attributes
                    .checksum
                    .as_ref()
                    .filter(|_| whole && checksum_mode(input.checksum_mode.as_ref())),
            );
            let (content_length, content_range) = match part.or_else(|| range(input.range)) {
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
                cache_control: input
                    .response_cache_control
                    .or_else(|| info.attributes.cache_control.clone()),
                content_disposition: input
                    .response_content_disposition
                    .or_else(|| info.attributes.content_disposition.clone()),
                content_encoding: input
                    .response_content_encoding
                    .or_else(|| info.attributes.content_encoding.clone()),
                content_language: input
                    .response_content_language
                    .or_else(|| info.attributes.content_language.clone()),
                expires: input
                    .response_expires
                    .or_else(|| expires_out(&info.attributes)),
                metadata: metadata_out(&info.attributes),
                parts_count,
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                checksum_type: sums.kind,
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
            let mut read = ReadRequest {
                range: range(input.range),
                if_match: condition(input.if_match),
                if_none_match: condition(input.if_none_match),
                if_modified_since: input.if_modified_since.map(system_time),
                if_unmodified_since: input.if_unmodified_since.map(system_time),
            };
            let mut parts_count = None;
            if let Some(n) = input.part_number {
                if read.range.is_some() {
                    return Err(range_and_part());
                }
                let info = self
                    .dataplane
                    .head_if(who.as_ref(), &input.bucket, &input.key, &read)
                    .await
                    .map_err(dataplane_error)?;
                let (part, count) = part_of(&info, n)?;
                read.range = part;
                parts_count = count;
                // The part of this version, not of one written meanwhile.
                if read.if_match.is_none() {
                    read.if_match = info.etag.clone();
                }
            }
            let ranged = read.range.is_some();
            let r = self
                .dataplane
                .get(who.as_ref(), &input.bucket, &input.key, read)
                .await
                .map_err(dataplane_error)?;
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
            let sums = checksum_fields(
                r.info
                    .attributes
                    .checksum
                    .as_ref()
                    .filter(|_| !ranged && checksum_mode(input.checksum_mode.as_ref())),
            );
            Ok(S3Response::new(GetObjectOutput {
                accept_ranges: Some("bytes".into()),
                content_length: Some(length as i64),
                content_range,
                content_type: Some(content_type),
                e_tag: etag(r.info.etag.as_deref()),
                last_modified: Some(timestamp(r.info.last_modified)),
                cache_control: input
                    .response_cache_control
                    .or_else(|| r.info.attributes.cache_control.clone()),
                content_disposition: input
                    .response_content_disposition
                    .or_else(|| r.info.attributes.content_disposition.clone()),
                content_encoding: input
                    .response_content_encoding
                    .or_else(|| r.info.attributes.content_encoding.clone()),
                content_language: input
                    .response_content_language
                    .or_else(|| r.info.attributes.content_language.clone()),
                expires: input
                    .response_expires
                    .or_else(|| expires_out(&r.info.attributes)),
                metadata: metadata_out(&r.info.attributes),
                parts_count,
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                checksum_type: sums.kind,
                body: Some(self.count_out(r.body)),
                ..Default::default()
            }))
        }
        .await;
        self.record("GetObject", result)
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let info = self
                .dataplane
                .head(who.as_ref(), &input.bucket, &input.key)
                .await
                .map_err(dataplane_error)?;
            // One header, its names separated by commas (however s3s splits it).
            let wants = |name: &str| {
                input
                    .object_attributes
                    .iter()
                    .flat_map(|a| a.as_str().split(','))
                    .any(|a| a.trim().eq_ignore_ascii_case(name))
            };
            let checksum = info
                .attributes
                .checksum
                .as_ref()
                .filter(|_| wants(ObjectAttributes::CHECKSUM))
                .map(|c| {
                    let sums = checksum_fields(Some(c));
                    Checksum {
                        checksum_crc32: sums.crc32,
                        checksum_crc32c: sums.crc32c,
                        checksum_crc64nvme: sums.crc64nvme,
                        checksum_sha1: sums.sha1,
                        checksum_sha256: sums.sha256,
                        checksum_type: sums.kind,
                    }
                });
            let object_parts = parts_of(&info)
                .filter(|_| wants(ObjectAttributes::OBJECT_PARTS))
                .map(|parts| {
                    let after = input.part_number_marker.unwrap_or(0).max(0) as u32;
                    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as u32;
                    let listed: Vec<ObjectPart> = parts
                        .sizes
                        .iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, size)| (i as u32 + 1, *size))
                        .filter(|(n, _)| *n > after)
                        .take(max as usize)
                        .map(|(n, size)| ObjectPart {
                            part_number: Some(n as i32),
                            size: Some(size as i64),
                            ..Default::default()
                        })
                        .collect();
                    let last = listed.last().and_then(|p| p.part_number);
                    let truncated =
                        last.is_some_and(|l| (l as u32) < parts.count) && parts.sizes.is_some();
                    GetObjectAttributesParts {
                        total_parts_count: Some(parts.count as i32),
                        part_number_marker: input.part_number_marker,
                        next_part_number_marker: truncated.then_some(last).flatten(),
                        max_parts: Some(max as i32),
                        is_truncated: Some(truncated),
                        parts: parts.sizes.is_some().then_some(listed),
                    }
                });
            Ok(S3Response::new(GetObjectAttributesOutput {
                e_tag: etag(info.etag.as_deref()).filter(|_| wants(ObjectAttributes::ETAG)),
                last_modified: Some(timestamp(info.last_modified)),
                object_size: wants(ObjectAttributes::OBJECT_SIZE).then_some(info.size as i64),
                storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                    .then(|| StorageClass::from_static(StorageClass::STANDARD)),
                checksum,
                object_parts,
                ..Default::default()
            }))
        }
        .await;
        self.record("GetObjectAttributes", result)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            object_acl(input.acl.as_ref())?;
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
            let mut attributes = attributes_in(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires,
                input.metadata,
            );
            attributes.checksum = declared_checksum(
                input.checksum_crc32.as_deref(),
                input.checksum_crc32c.as_deref(),
                input.checksum_crc64nvme.as_deref(),
                input.checksum_sha1.as_deref(),
                input.checksum_sha256.as_deref(),
            );
            let put = PutRequest {
                attributes,
                if_match: condition(input.if_match),
                if_none_match: condition(input.if_none_match),
                etag: None,
            };
            let out = self
                .dataplane
                .put(who.as_ref(), &input.bucket, &input.key, guarded, put)
                .await
                .map_err(dataplane_error)?;
            let sums = checksum_fields(out.checksum.as_ref());
            Ok(S3Response::new(PutObjectOutput {
                e_tag: etag(out.etag.as_deref()),
                size: Some(out.size as i64),
                checksum_sha256: sums.sha256,
                checksum_sha1: sums.sha1,
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_type: sums.kind,
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
            // Conditions on the target (S3's conditional copy): s3s's input has no fields
            // for them, so they are read from the headers.
            let target_condition = |name: &str| -> S3Result<Option<String>> {
                req.headers
                    .get(name)
                    .map(|v| {
                        ETagCondition::parse_http_header(v.as_bytes())
                            .map_err(|_| s3_error!(InvalidArgument, "{name} is not an ETag or '*'"))
                    })
                    .transpose()
                    .map(condition)
            };
            let (if_match, if_none_match) = (
                target_condition("if-match")?,
                target_condition("if-none-match")?,
            );
            let input = req.input;
            object_acl(input.acl.as_ref())?;
            let (src_bucket, src_key) = copy_source(&input.copy_source)?;
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
                            dataplane_error(DataplaneError::PreconditionFailed { volume, key })
                        }
                        e => dataplane_error(e),
                    })?;
            }
            let replace = input
                .metadata_directive
                .as_ref()
                .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
            let copy = CopyRequest {
                attributes: replace.then(|| {
                    attributes_in(
                        input.content_type,
                        input.content_encoding,
                        input.content_disposition,
                        input.content_language,
                        input.cache_control,
                        input.expires,
                        input.metadata,
                    )
                }),
                if_match,
                if_none_match,
            };
            let out = self
                .dataplane
                .copy(
                    who.as_ref(),
                    (&src_bucket, &src_key),
                    (&input.bucket, &input.key),
                    copy,
                )
                .await
                .map_err(dataplane_error)?;
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
            let if_match = condition(req.input.if_match);
            self.dataplane
                .delete_if(
                    who.as_ref(),
                    &req.input.bucket,
                    &req.input.key,
                    if_match.as_deref(),
                )
                .await
                .map_err(dataplane_error)?;
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
                .open(who.as_ref(), &input.bucket, Op::Delete)
                .await
                .map_err(dataplane_error)?;
            let quiet = input.delete.quiet == Some(true);
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            for obj in input.delete.objects {
                let if_match = obj.e_tag.as_ref().map(|e| e.value().to_string());
                match self
                    .dataplane
                    .delete_if(who.as_ref(), &input.bucket, &obj.key, if_match.as_deref())
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
                        let err = dataplane_error(e);
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
            object_acl(input.acl.as_ref())?;
            let put = PutRequest {
                attributes: attributes_in(
                    input.content_type,
                    input.content_encoding,
                    input.content_disposition,
                    input.content_language,
                    input.cache_control,
                    input.expires,
                    input.metadata,
                ),
                ..Default::default()
            };
            let checksum = match &input.checksum_algorithm {
                None => None,
                Some(a) => Some((
                    ChecksumAlgo::parse(a.as_str()).ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "unknown checksum algorithm `{}`",
                            a.as_str()
                        )
                    })?,
                    match &input.checksum_type {
                        None => None,
                        Some(t) => Some(KindOfChecksum::parse(t.as_str()).ok_or_else(|| {
                            s3_error!(InvalidArgument, "unknown checksum type `{}`", t.as_str())
                        })?),
                    },
                )),
            };
            let kind = checksum.map(|(a, k)| k.unwrap_or_else(|| a.default_multipart_type()));
            let upload_id = self
                .dataplane
                .create_upload_with(who.as_ref(), &input.bucket, &input.key, put, checksum)
                .await
                .map_err(dataplane_error)?;
            Ok(S3Response::new(CreateMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(upload_id),
                checksum_algorithm: input.checksum_algorithm,
                checksum_type: kind.map(|k| ChecksumType::from(k.as_str().to_string())),
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
                .map_err(dataplane_error)?;
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

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let result = async {
            let who = self.who(&req.credentials).await?;
            let input = req.input;
            let number = u32::try_from(input.part_number)
                .map_err(|_| s3_error!(InvalidArgument, "part numbers are 1 to 10000"))?;
            let (src_bucket, src_key) = copy_source(&input.copy_source)?;
            let source = ReadRequest {
                range: input
                    .copy_source_range
                    .as_deref()
                    .map(copy_source_range)
                    .transpose()?,
                if_match: condition(input.copy_source_if_match),
                if_none_match: condition(input.copy_source_if_none_match),
                if_modified_since: input.copy_source_if_modified_since.map(system_time),
                if_unmodified_since: input.copy_source_if_unmodified_since.map(system_time),
            };
            let (part, source) = self
                .dataplane
                .upload_part_copy(
                    who.as_ref(),
                    (&src_bucket, &src_key, source),
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    number,
                )
                .await
                .map_err(dataplane_error)?;
            Ok(S3Response::new(UploadPartCopyOutput {
                copy_part_result: Some(CopyPartResult {
                    e_tag: etag(Some(&part.etag)),
                    last_modified: Some(timestamp(source.last_modified)),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        .await;
        self.record("UploadPartCopy", result)
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
                let checksum = [
                    p.checksum_crc32,
                    p.checksum_crc32c,
                    p.checksum_crc64nvme,
                    p.checksum_sha1,
                    p.checksum_sha256,
                ]
                .into_iter()
                .flatten()
                .next();
                parts.push(CompletedPart {
                    number,
                    etag: tag,
                    checksum,
                });
            }
            let out = self
                .dataplane
                .complete_upload_with(
                    who.as_ref(),
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    &parts,
                    PutRequest {
                        if_match: condition(input.if_match),
                        if_none_match: condition(input.if_none_match),
                        ..Default::default()
                    },
                )
                .await
                .map_err(dataplane_error)?;
            let sums = checksum_fields(out.checksum.as_ref());
            Ok(S3Response::new(CompleteMultipartUploadOutput {
                location: Some(format!("/{}/{}", input.bucket, input.key)),
                bucket: Some(input.bucket),
                key: Some(input.key),
                e_tag: etag(out.etag.as_deref()),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                checksum_type: sums.kind,
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
                .map_err(dataplane_error)?;
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
            let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
            let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
            let listed = self
                .dataplane
                .list_parts(
                    who.as_ref(),
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    marker,
                    max,
                )
                .await
                .map_err(dataplane_error)?;
            let truncated = listed.truncated;
            let page: Vec<Part> = listed
                .items
                .into_iter()
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
            let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
            let marker = input
                .key_marker
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| {
                    (
                        k,
                        input.upload_id_marker.as_deref().filter(|u| !u.is_empty()),
                    )
                });
            let listed = self
                .dataplane
                .list_uploads(who.as_ref(), &input.bucket, &prefix, marker, max)
                .await
                .map_err(dataplane_error)?;
            let truncated = listed.truncated;
            let uploads: Vec<MultipartUpload> = listed
                .items
                .into_iter()
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
            let (next_key, next_upload_id) = match uploads.last() {
                Some(u) if truncated => (u.key.clone(), u.upload_id.clone()),
                _ => (None, None),
            };
            Ok(S3Response::new(ListMultipartUploadsOutput {
                bucket: Some(input.bucket),
                prefix: input.prefix,
                key_marker: input.key_marker,
                upload_id_marker: input.upload_id_marker,
                max_uploads: Some(max as i32),
                is_truncated: Some(truncated),
                next_key_marker: next_key,
                next_upload_id_marker: next_upload_id,
                uploads: Some(uploads),
                ..Default::default()
            }))
        }
        .await;
        self.record("ListMultipartUploads", result)
    }
}

/// Whether a read asked for the object's checksum (`x-amz-checksum-mode: ENABLED`).
fn checksum_mode(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

fn range_and_part() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Cannot specify both Range header and partNumber query parameter"
    )
}

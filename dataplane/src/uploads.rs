//! Multipart uploads: parts spooled to local disk, assembled into one atomic write.
//!
//! S3 clients upload parts in any order, in parallel, across many requests, and may retry or
//! abandon them; `object_store`'s multipart writer is one in-process, in-order stream. So parts
//! land in the gateway's spool directory (`<data_dir>/uploads/<id>/`), each written to a
//! temporary file and renamed into place with its MD5 beside it; completion streams the chosen
//! parts, in order, through the ordinary put path (itself a streamed multipart upload to the
//! backend for large objects). Readers see nothing until the backend write commits, and an
//! upload that fails or is aborted leaves nothing in the volume. Memory stays bounded by the
//! put path's part buffer; the spool needs disk for the parts in flight.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::attributes::{ObjectAttributes, PartSizes};
use crate::catalog::{Access, Principal};
use crate::checksum::{Checksum, ChecksumAlgorithm, ChecksumType};
use crate::key::parse_key;
use crate::{BodyError, Dataplane, DataplaneError, Op, PutOutcome, PutRequest, Result};

/// S3's limits on parts.
pub const MAX_PART_NUMBER: u32 = 10_000;
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A part as stored in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    /// Hex MD5 of the part (S3's part ETag, without quotes).
    pub etag: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// The part's checksum of the upload's algorithm (base64), when the upload has one.
    pub checksum: Option<String>,
}

/// A part as a completion lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: u32,
    pub etag: String,
    /// The part's checksum as the client gives it (checked against the stored one).
    pub checksum: Option<String>,
}

/// An upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadInfo {
    pub upload_id: String,
    pub key: String,
    pub user: Option<String>,
    pub initiated: SystemTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct UploadMeta {
    volume: String,
    key: String,
    user: Option<String>,
    /// Records written before attributes were kept have only this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: ObjectAttributes,
    initiated_ms: u64,
    /// The additional checksum the upload was created with, and its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
}

impl UploadMeta {
    fn attributes(&self) -> ObjectAttributes {
        let mut a = self.attributes.clone();
        if a.content_type.is_none() {
            a.content_type = self.content_type.clone();
        }
        a
    }
}

/// What a completed upload answered, kept so that a client retrying CompleteMultipartUpload
/// (after a time-out) hears the same answer instead of NoSuchUpload.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Completed {
    parts: Vec<(u32, String)>,
    etag: Option<String>,
    size: u64,
    #[serde(default)]
    checksum: Option<Checksum>,
}

/// The record of a completed upload, beside its `meta.json`.
const COMPLETED: &str = "completed.json";

/// How long a completed upload's record is kept, so that a retried CompleteMultipartUpload is
/// answered as the first was.
pub const COMPLETED_RETENTION: Duration = Duration::from_secs(3600);

/// What follows a part's name in the name of the file with its checksum.
const CHECKSUM_SUFFIX: &str = ".checksum";

/// Removes a stored part and its checksum.
async fn remove_part(dir: &Path, part: &PartInfo) {
    let name = format!("part-{:05}-{}", part.number, part.etag);
    let _ = tokio::fs::remove_file(dir.join(&name)).await;
    let _ = tokio::fs::remove_file(dir.join(format!("{name}{CHECKSUM_SUFFIX}"))).await;
}

/// S3's ETag of a multipart object: the MD5 of the parts' MD5s, then `-` and their number.
pub fn multipart_etag(part_etags: &[String]) -> Option<String> {
    let mut md5 = Md5::new();
    for etag in part_etags {
        md5.update(hex::decode(etag.trim_matches('"')).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5.finalize()),
        part_etags.len()
    ))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> DataplaneError {
    DataplaneError::Spool {
        message: format!("{what} {}: {e}", path.display()),
    }
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Dataplane {
    fn spool(&self) -> &Path {
        &self.config().spool_dir
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf> {
        if !valid_upload_id(upload_id) {
            return Err(DataplaneError::NoSuchUpload {
                upload_id: upload_id.to_string(),
            });
        }
        Ok(self.spool().join(upload_id))
    }

    /// The upload's record, checked against the volume, key and caller.
    async fn upload_meta(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(PathBuf, UploadMeta)> {
        let dir = self.upload_dir(upload_id)?;
        let missing = || DataplaneError::NoSuchUpload {
            upload_id: upload_id.to_string(),
        };
        let text = match tokio::fs::read(dir.join("meta.json")).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io_error("reading", &dir, e)),
        };
        let meta: UploadMeta =
            serde_json::from_slice(&text).map_err(|e| DataplaneError::Spool {
                message: format!("corrupt upload record {}: {e}", dir.display()),
            })?;
        if meta.volume != volume || meta.key != key {
            return Err(missing());
        }
        let caller = who.map(|p| p.user.as_str());
        let admin = who.is_some_and(|p| p.acts_as_admin());
        if !admin && meta.user.as_deref() != caller {
            return Err(DataplaneError::AccessDenied {
                volume: volume.to_string(),
                op: Op::Put,
                anonymous: who.is_none(),
            });
        }
        Ok((dir, meta))
    }

    /// Starts a multipart upload of `key`; returns its id.
    pub async fn create_upload(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: PutRequest,
    ) -> Result<String> {
        self.create_upload_with(who, volume, key, req, None).await
    }

    /// [`Dataplane::create_upload`] of an upload whose parts, and the object, carry an
    /// additional checksum of `algorithm` (its kind: S3's default for the algorithm unless
    /// given).
    pub async fn create_upload_with(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: PutRequest,
        checksum: Option<(ChecksumAlgorithm, Option<ChecksumType>)>,
    ) -> Result<String> {
        parse_key(key)?;
        let checksum = match checksum {
            None => None,
            Some((alg, kind)) => {
                let kind = kind.unwrap_or_else(|| alg.default_multipart_type());
                let fits = match kind {
                    ChecksumType::FullObject => {
                        !matches!(alg, ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256)
                    }
                    ChecksumType::Composite => alg != ChecksumAlgorithm::Crc64Nvme,
                };
                if !fits {
                    return Err(DataplaneError::InvalidRequest {
                        message: format!(
                            "the checksum type {} does not go with {} (FULL_OBJECT: CRC32, \
                             CRC32C, CRC64NVME; COMPOSITE: CRC32, CRC32C, SHA1, SHA256)",
                            kind.as_str(),
                            alg.as_str()
                        ),
                    });
                }
                Some((alg, kind))
            }
        };
        self.open(who, volume, Op::Put).await?;
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| DataplaneError::Spool {
            message: format!("no randomness for an upload id: {e}"),
        })?;
        let upload_id = hex::encode(raw);
        let dir = self.spool().join(&upload_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating", &dir, e))?;
        let meta = UploadMeta {
            volume: volume.to_string(),
            key: key.to_string(),
            user: who.map(|p| p.user.clone()),
            content_type: None,
            attributes: req.attributes,
            initiated_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            checksum,
        };
        let text = serde_json::to_vec(&meta).map_err(|e| DataplaneError::Spool {
            message: e.to_string(),
        })?;
        let path = dir.join("meta.json");
        tokio::fs::write(&path, text)
            .await
            .map_err(|e| io_error("writing", &path, e))?;
        tracing::debug!(volume, key, upload_id, "multipart upload created");
        Ok(upload_id)
    }

    /// Part `number` of an upload copied from (a range of) another object (the source's
    /// volume, key, and range and conditions), S3's UploadPartCopy:
    /// the caller reads the source and writes the upload's volume. The source's conditions
    /// are checked as it is opened (a failed one is `PreconditionFailed`, S3 has no 304
    /// here). Returns the part and the source's metadata.
    pub async fn upload_part_copy(
        &self,
        who: Option<&Principal>,
        (src_volume, src_key, source): (&str, &str, crate::ReadRequest),
        volume: &str,
        key: &str,
        upload_id: &str,
        number: u32,
    ) -> Result<(PartInfo, crate::ObjectInfo)> {
        // The upload first: a copy into nothing reads nothing.
        self.open(who, volume, Op::Put).await?;
        self.open_upload(who, volume, key, upload_id).await?;
        let read = match self.get(who, src_volume, src_key, source).await {
            Err(DataplaneError::NotModified { volume, key }) => {
                return Err(DataplaneError::PreconditionFailed { volume, key });
            }
            r => r?,
        };
        let info = read.info.clone();
        let body = read
            .body
            .map(|r| r.map_err(|e| BodyError::Source(Box::new(e))));
        let part = self
            .upload_part(who, volume, key, upload_id, number, body)
            .await?;
        Ok((part, info))
    }

    /// Stores part `number` of an upload (replacing an earlier part of that number).
    pub async fn upload_part<S>(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: S,
    ) -> Result<PartInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, BodyError>> + Send,
    {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(DataplaneError::InvalidRequest {
                message: format!("part number {number} is outside 1..={MAX_PART_NUMBER}"),
            });
        }
        self.open(who, volume, Op::Put).await?;
        let (dir, meta) = self.open_upload(who, volume, key, upload_id).await?;
        let mut checksum = meta
            .checksum
            .map(|(alg, _)| crate::checksum::Hasher::new(alg));
        // A name of its own: the same part may be sent twice at once (a client's retry).
        let mut raw = [0u8; 8];
        let _ = getrandom::fill(&mut raw);
        let tmp = dir.join(format!("part-{number:05}.{}.tmp", hex::encode(raw)));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_error("creating", &tmp, e))?;
        let mut hasher = Md5::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        let max = MAX_PART_SIZE.min(self.config().limits.max_object_bytes);
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|source| DataplaneError::Body {
                    volume: volume.to_string(),
                    key: key.to_string(),
                    source,
                })?;
                hasher.update(&chunk);
                if let Some(c) = &mut checksum {
                    c.update(&chunk);
                }
                size += chunk.len() as u64;
                if size > max {
                    return Err(DataplaneError::EntityTooLarge {
                        volume: volume.to_string(),
                        key: key.to_string(),
                        limit: max,
                        what: "a part",
                    });
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("writing", &tmp, e))?;
            }
            file.flush()
                .await
                .map_err(|e| io_error("writing", &tmp, e))?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let etag = hex::encode(hasher.finalize());
        let name = format!("part-{number:05}-{etag}");
        let part = dir.join(&name);
        // A retried part replaces the earlier one of the same number.
        if let Ok(existing) = self.stored_parts(&dir).await {
            for p in existing.iter().filter(|p| p.number == number) {
                remove_part(&dir, p).await;
            }
        }
        let checksum = checksum.map(crate::checksum::Hasher::finish_base64);
        if let Some(value) = &checksum {
            // Beside the part, before it is in place: a stored part has its checksum.
            let sum = dir.join(format!("{name}{CHECKSUM_SUFFIX}"));
            if let Err(e) = tokio::fs::write(&sum, value).await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io_error("writing", &sum, e));
            }
        }
        tokio::fs::rename(&tmp, &part)
            .await
            .map_err(|e| io_error("storing", &part, e))?;
        Ok(PartInfo {
            number,
            etag,
            size,
            last_modified: SystemTime::now(),
            checksum,
        })
    }

    /// The record of a completion, if the upload was completed.
    async fn completed(&self, dir: &Path) -> Result<Option<Completed>> {
        match tokio::fs::read(dir.join(COMPLETED)).await {
            Ok(text) => {
                serde_json::from_slice(&text)
                    .map(Some)
                    .map_err(|e| DataplaneError::Spool {
                        message: format!("corrupt completion record in {}: {e}", dir.display()),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", dir, e)),
        }
    }

    /// Keeps what a completion answered (for [`COMPLETED_RETENTION`]) and drops its parts.
    async fn record_completion(&self, dir: &Path, parts: Vec<(u32, String)>, out: &PutOutcome) {
        let done = Completed {
            parts,
            etag: out.etag.clone(),
            size: out.size,
            checksum: out.checksum.clone(),
        };
        let written = match serde_json::to_vec(&done) {
            Ok(text) => tokio::fs::write(dir.join(COMPLETED), text).await,
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), error = %e, "could not record a completed upload");
        }
        if let Ok(parts) = self.stored_parts(dir).await {
            for p in parts {
                remove_part(dir, &p).await;
            }
        }
    }

    /// An upload still open to parts: a completed one takes no more.
    async fn open_upload(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(PathBuf, UploadMeta)> {
        let (dir, meta) = self.upload_meta(who, volume, key, upload_id).await?;
        if self.completed(&dir).await?.is_some() {
            return Err(DataplaneError::NoSuchUpload {
                upload_id: upload_id.to_string(),
            });
        }
        Ok((dir, meta))
    }

    async fn stored_parts(&self, dir: &Path) -> Result<Vec<PartInfo>> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(dir)
            .await
            .map_err(|e| io_error("listing", dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", dir, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("part-") else {
                continue;
            };
            let Some((number, etag)) = rest.split_once('-') else {
                continue;
            };
            let (Ok(number), true) = (number.parse::<u32>(), etag.len() == 32) else {
                continue;
            };
            let meta = entry
                .metadata()
                .await
                .map_err(|e| io_error("reading", &entry.path(), e))?;
            let checksum =
                match tokio::fs::read_to_string(dir.join(format!("{name}{CHECKSUM_SUFFIX}"))).await
                {
                    Ok(v) => Some(v),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_error("reading", &entry.path(), e)),
                };
            out.push(PartInfo {
                number,
                etag: etag.to_string(),
                size: meta.len(),
                last_modified: meta.modified().unwrap_or(UNIX_EPOCH),
                checksum,
            });
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    /// One page of the parts stored so far, by number, after part `after`. An upload holds at
    /// most 10 000 parts (S3's limit, enforced by `upload_part`), so reading their names is
    /// bounded; the page keeps only `max` of them.
    pub async fn list_parts(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Page<PartInfo>> {
        self.open(who, volume, Op::Put).await?;
        let (dir, _) = self.open_upload(who, volume, key, upload_id).await?;
        let mut kept = Smallest::new(max + 1);
        for part in self.stored_parts(&dir).await? {
            if part.number > after {
                kept.offer(part.number, part);
            }
        }
        let mut items: Vec<PartInfo> = kept.into_sorted().into_iter().map(|(_, p)| p).collect();
        let truncated = items.len() > max;
        items.truncate(max);
        Ok(Page { items, truncated })
    }

    /// Assembles the listed parts (number, ETag), in ascending order, into the object (held to
    /// `conditions`' If-Match/If-None-Match) and removes the parts. Nothing is visible in the
    /// volume before this succeeds. A retry of a completion that succeeded, with the same
    /// parts, answers as the first did.
    pub async fn complete_upload(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        conditions: PutRequest,
    ) -> Result<PutOutcome> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|(number, etag)| CompletedPart {
                number: *number,
                etag: etag.clone(),
                checksum: None,
            })
            .collect();
        self.complete_upload_with(who, volume, key, upload_id, &parts, conditions)
            .await
    }

    /// [`Dataplane::complete_upload`] with the parts' checksums as the client lists them:
    /// each must be the one its part was stored with. An upload created with a checksum
    /// algorithm gives the object its checksum (of the whole object or of the parts' checksums,
    /// as the upload asked), and every completed object keeps its part sizes.
    pub async fn complete_upload_with(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        conditions: PutRequest,
    ) -> Result<PutOutcome> {
        self.open(who, volume, Op::Put).await?;
        let (dir, meta) = self.upload_meta(who, volume, key, upload_id).await?;
        let normalized: Vec<(u32, String)> = parts
            .iter()
            .map(|p| (p.number, p.etag.trim_matches('"').to_ascii_lowercase()))
            .collect();
        if let Some(done) = self.completed(&dir).await? {
            return if done.parts == normalized {
                Ok(PutOutcome {
                    etag: done.etag,
                    size: done.size,
                    checksum: done.checksum,
                })
            } else {
                Err(DataplaneError::InvalidPart {
                    upload_id: upload_id.to_string(),
                    message: "this upload was completed with other parts".into(),
                })
            };
        }
        let invalid = |message: String| DataplaneError::InvalidPart {
            upload_id: upload_id.to_string(),
            message,
        };
        if parts.is_empty() {
            return Err(invalid("a completed upload needs at least one part".into()));
        }
        let stored = self.stored_parts(&dir).await?;
        let mut files = Vec::with_capacity(parts.len());
        let mut sums = Vec::with_capacity(parts.len());
        let mut previous = 0;
        for (i, given) in parts.iter().enumerate() {
            let (number, etag) = (&given.number, &given.etag);
            if *number <= previous {
                return Err(DataplaneError::InvalidPartOrder {
                    upload_id: upload_id.to_string(),
                    part: *number,
                    previous,
                });
            }
            previous = *number;
            let wanted = etag.trim_matches('"').to_ascii_lowercase();
            let Some(part) = stored
                .iter()
                .find(|p| p.number == *number && p.etag == wanted)
            else {
                return Err(invalid(format!(
                    "part {number} with ETag {etag} was not uploaded"
                )));
            };
            if i + 1 < parts.len() && part.size < MIN_PART_SIZE {
                return Err(DataplaneError::EntityTooSmall {
                    message: format!(
                        "part {number} is {} bytes; every part but the last must be at least 5 MiB",
                        part.size
                    ),
                });
            }
            match (&given.checksum, &part.checksum) {
                (Some(g), Some(kept)) if g.trim() != kept => {
                    return Err(invalid(format!(
                        "part {number}'s checksum {g} is not the one it was uploaded with"
                    )));
                }
                (Some(_), None) => {
                    return Err(invalid(format!(
                        "part {number} is listed with a checksum, but the upload was created \
                         without a checksum algorithm"
                    )));
                }
                _ => {}
            }
            sums.push((part.checksum.clone().unwrap_or_default(), part.size));
            files.push(dir.join(format!("part-{:05}-{}", part.number, part.etag)));
        }
        let checksum = match meta.checksum {
            None => None,
            Some((algorithm, kind)) => Some(Checksum {
                algorithm,
                value: crate::checksum::combine(algorithm, kind, &sums).ok_or_else(|| {
                    invalid(format!(
                        "the parts' {} checksums cannot be combined",
                        algorithm.as_str()
                    ))
                })?,
                kind,
            }),
        };
        let body = futures::stream::iter(files)
            .then(|path| async move {
                let what = format!("the upload's part {}", path.display());
                match tokio::fs::File::open(&path).await {
                    Ok(f) => Ok(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
                        .map_err(move |source| BodyError::Local {
                            what: what.clone(),
                            source,
                        })),
                    Err(source) => Err(BodyError::Local { what, source }),
                }
            })
            .try_flatten();
        let part_etags: Vec<String> = normalized.iter().map(|(_, e)| e.clone()).collect();
        let mut attributes = meta.attributes();
        attributes.checksum = checksum;
        attributes.parts = Some(PartSizes::new(sums.iter().map(|(_, size)| *size).collect()));
        let req = PutRequest {
            attributes,
            etag: multipart_etag(&part_etags),
            ..conditions
        };
        let outcome = self.put(who, volume, key, body, req).await?;
        self.record_completion(&dir, normalized, &outcome).await;
        tracing::debug!(
            volume,
            key,
            upload_id,
            parts = parts.len(),
            "multipart upload completed"
        );
        Ok(outcome)
    }

    /// Discards an upload and its parts.
    pub async fn abort_upload(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        self.open(who, volume, Op::Put).await?;
        let (dir, _) = self.upload_meta(who, volume, key, upload_id).await?;
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| io_error("removing", &dir, e))
    }

    /// Removes uploads begun longer than `max_age` ago (abandoned by their clients), with their
    /// parts; returns how many went. Meant for start-up and a periodic sweep.
    pub async fn expire_uploads(&self, max_age: Duration) -> Result<usize> {
        let spool = self.spool().to_path_buf();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let cutoff = now_ms.saturating_sub(max_age.as_millis() as u64);
        let mut entries = match tokio::fs::read_dir(&spool).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("listing", &spool, e)),
        };
        let mut removed = 0;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", &spool, e))?
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !valid_upload_id(&id) {
                continue;
            }
            let initiated = match tokio::fs::read(entry.path().join("meta.json")).await {
                Ok(text) => serde_json::from_slice::<UploadMeta>(&text)
                    .map(|m| m.initiated_ms)
                    .unwrap_or(0),
                // A folder without its record is a crash between mkdir and write: debris.
                Err(_) => 0,
            };
            // A completed upload keeps only its completion record, for a retried completion:
            // an hour is long enough for any client's retries.
            let completed_long_ago = match tokio::fs::metadata(entry.path().join(COMPLETED)).await {
                Ok(m) => m
                    .modified()
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > COMPLETED_RETENTION),
                Err(_) => false,
            };
            if initiated < cutoff || completed_long_ago {
                match tokio::fs::remove_dir_all(entry.path()).await {
                    Ok(()) => {
                        removed += 1;
                        if completed_long_ago {
                            tracing::debug!(upload_id = %id, "removed a completion record");
                        } else {
                            tracing::info!(upload_id = %id, "expired an abandoned multipart upload");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(upload_id = %id, error = %e, "could not expire an upload")
                    }
                }
            }
        }
        Ok(removed)
    }

    /// One page of the uploads in progress in a volume under `prefix`, ordered by key, then
    /// initiation time, then id; after `marker` (a key alone: every upload of a later key;
    /// with an upload id: the uploads after that one). Writers see all uploads; others none.
    /// Memory is bounded by the page, however many uploads the spool holds.
    pub async fn list_uploads(
        &self,
        who: Option<&Principal>,
        volume: &str,
        prefix: &str,
        marker: Option<(&str, Option<&str>)>,
        max: usize,
    ) -> Result<Page<UploadInfo>> {
        let h = self.open(who, volume, Op::List).await?;
        if h.access() < Access::Write {
            return Ok(Page::default());
        }
        let mut entries = match tokio::fs::read_dir(self.spool()).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Page::default()),
            Err(e) => return Err(io_error("listing", self.spool(), e)),
        };
        // The position after which the page starts, in the listing's order.
        let after: Option<(String, u64, String)> = match marker {
            None => None,
            Some((key, None)) => Some((key.to_string(), u64::MAX, String::new())),
            Some((key, Some(id))) => {
                let initiated = match self.read_meta(id).await {
                    Some(m) if m.key == key => m.initiated_ms,
                    _ => u64::MAX,
                };
                Some((key.to_string(), initiated, id.to_string()))
            }
        };
        let mut kept = Smallest::new(max + 1);
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", self.spool(), e))?
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            let Some(meta) = self.read_meta(&id).await else {
                continue;
            };
            if meta.volume != volume || !meta.key.starts_with(prefix) {
                continue;
            }
            if tokio::fs::try_exists(self.spool().join(&id).join(COMPLETED))
                .await
                .unwrap_or(false)
            {
                continue;
            }
            let order = (meta.key, meta.initiated_ms, id);
            if after.as_ref().is_some_and(|a| order <= *a) {
                continue;
            }
            kept.offer(order, meta.user);
        }
        let mut items: Vec<UploadInfo> = kept
            .into_sorted()
            .into_iter()
            .map(|((key, initiated_ms, upload_id), user)| UploadInfo {
                upload_id,
                key,
                user,
                initiated: UNIX_EPOCH + Duration::from_millis(initiated_ms),
            })
            .collect();
        let truncated = items.len() > max;
        items.truncate(max);
        Ok(Page { items, truncated })
    }

    /// An upload's record, if `id` names one that is readable.
    async fn read_meta(&self, id: &str) -> Option<UploadMeta> {
        if !valid_upload_id(id) {
            return None;
        }
        let text = tokio::fs::read(self.spool().join(id).join("meta.json"))
            .await
            .ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// One page of a listing: its items, and whether more follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub truncated: bool,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            truncated: false,
        }
    }
}

/// The `n` smallest of what is offered (by `K`), in memory proportional to `n`.
struct Smallest<K: Ord, V> {
    n: usize,
    heap: std::collections::BinaryHeap<Entry<K, V>>,
}

struct Entry<K, V>(K, V);

impl<K: Ord, V> PartialEq for Entry<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, V> Eq for Entry<K, V> {}
impl<K: Ord, V> PartialOrd for Entry<K, V> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, V> Ord for Entry<K, V> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Ord, V> Smallest<K, V> {
    fn new(n: usize) -> Self {
        Self {
            n,
            heap: std::collections::BinaryHeap::with_capacity(n + 1),
        }
    }

    fn offer(&mut self, key: K, value: V) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Entry(key, value));
        } else if self.heap.peek().is_some_and(|top| key < top.0) {
            self.heap.pop();
            self.heap.push(Entry(key, value));
        }
    }

    fn into_sorted(self) -> Vec<(K, V)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Entry(k, v)| (k, v))
            .collect()
    }
}

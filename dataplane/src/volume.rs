//! [`VolumeStore`]: a volume opened for one caller — the only way a front reaches its bytes.
//!
//! A handle holds the volume's record, the caller's access to it (resolved when it was opened)
//! and the volume's store (rooted at its prefix, through the block cache where the volume uses
//! it). Every operation — the methods below and every method of its `ObjectStore`
//! implementation (`checked.rs`), which is what the mount and the compute path get — checks
//! the caller's level for that operation, refuses writes to a read-only volume, validates the
//! key, and holds writes to `limits.max_object_bytes`. The methods below go through that same
//! implementation, so there is one place where the checks are made.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};

use crate::backend::Backend;
use crate::catalog::{Access, Principal, Volume};
use crate::key::parse_key;
use crate::read::{ObjectInfo, ObjectRead, ReadRange, ReadRequest, file_stream};
use crate::write::{PutOutcome, PutRequest, WriteShape, write_stream};
use crate::{BodyError, DataplaneError, LimitsConfig, Op, Result};

/// A key of a volume on a peer gateway, as the peer names it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerLocation {
    /// The backend (in this gateway's configuration) that is the peer.
    pub backend: String,
    pub url: String,
    /// The API token configured for the peer (`token` of the backend).
    pub token: Option<String>,
    pub volume: String,
    pub key: String,
}

impl std::fmt::Debug for PeerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLocation")
            .field("url", &self.url)
            .field("volume", &self.volume)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A volume opened for one caller; see the module documentation.
#[derive(Clone)]
pub struct VolumeStore {
    pub(crate) volume: Arc<Volume>,
    pub(crate) access: Access,
    pub(crate) who: Option<Principal>,
    /// The volume's store, unchecked: only this module and `checked.rs` touch it.
    pub(crate) inner: Arc<dyn ObjectStore>,
    pub(crate) backend: Arc<Backend>,
    pub(crate) limits: Arc<LimitsConfig>,
    /// A workspace's usage counter (None for other volumes): see `quota.rs`.
    pub(crate) meter: Option<crate::quota::Meter>,
}

impl std::fmt::Debug for VolumeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStore")
            .field("volume", &self.volume.id)
            .field("access", &self.access)
            .field("user", &self.who.as_ref().map(|p| p.user.as_str()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for VolumeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "volume `{}` ({})", self.volume.id, self.inner)
    }
}

impl VolumeStore {
    /// The volume's catalogue record.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// The caller's access to the volume, as resolved when it was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The caller this handle acts for (None: anonymous).
    pub fn caller(&self) -> Option<&Principal> {
        self.who.as_ref()
    }

    /// This handle as the storage seam, for layers that take any store (the mount, compute).
    /// It stays checked: every call is held to the caller's access and the volume's limits.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.clone())
    }

    /// Whether the caller may perform `op` on this volume: the one access decision for data.
    pub fn allow(&self, op: Op) -> Result<()> {
        let needed = op.needs();
        if op.writes() && self.volume.read_only {
            return Err(DataplaneError::ReadOnly {
                volume: self.volume.id.clone(),
            });
        }
        if self.access < needed {
            return Err(DataplaneError::AccessDenied {
                volume: self.volume.id.clone(),
                op,
                anonymous: self.who.is_none(),
            });
        }
        Ok(())
    }

    /// How writes to this volume are cut and bounded.
    pub fn write_shape(&self) -> WriteShape {
        WriteShape {
            part_size: self.limits.upload_part_size,
            concurrency: self.limits.upload_concurrency,
            max_bytes: self.limits.max_object_bytes,
            max_bytes_from: "limits.max_object_bytes",
        }
    }

    /// Where a key of this volume lives when the volume is on a peer gateway: the peer's API
    /// URL and token, its volume there, and the key there. None when the volume is local.
    pub fn peer_location(&self, key: &str) -> Option<PeerLocation> {
        let url = self.backend.peer_url()?;
        let prefix = self.volume.prefix.trim_matches('/');
        let (remote, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
        let key = if rest.is_empty() {
            key.to_string()
        } else {
            format!("{rest}/{key}")
        };
        Some(PeerLocation {
            backend: self.volume.backend.clone(),
            url,
            token: self.backend.peer_token(),
            volume: remote.to_string(),
            key,
        })
    }

    fn id(&self) -> &str {
        &self.volume.id
    }

    /// HEAD with HTTP conditions (the request's range is ignored): `PreconditionFailed` or
    /// `NotModified` when they say so, as for [`VolumeStore::get`].
    pub async fn head(&self, key: &str, req: &ReadRequest) -> Result<ObjectInfo> {
        let path = parse_key(key)?;
        self.allow(Op::Head)?;
        let opts = req.options(true, |e| self.backend.store_etag(e));
        let r = ObjectStore::get_opts(self, &path, opts)
            .await
            .map_err(|e| DataplaneError::from_store_error(self.id(), key, Op::Head, e))?;
        Ok(ObjectInfo::new(&r.meta, &r.attributes))
    }

    /// Reads an object (or a range of it), streamed.
    pub async fn get(&self, key: &str, req: ReadRequest) -> Result<ObjectRead> {
        let path = parse_key(key)?;
        self.allow(Op::Get)?;
        if let Some(ReadRange::Bounded { start, end }) = req.range
            && start >= end
        {
            return Err(DataplaneError::InvalidRequest {
                message: format!("empty or inverted range {start}..{end}"),
            });
        }
        let opts = req.options(false, |e| self.backend.store_etag(e));
        let volume = self.id().to_string();
        let result = match ObjectStore::get_opts(self, &path, opts).await {
            Ok(r) => r,
            Err(e) => {
                let mapped = DataplaneError::from_store_error(&volume, key, Op::Get, e);
                // Stores word an unsatisfiable range differently; decide it from the size.
                if let (Some(range), DataplaneError::Store { .. }) = (req.range, &mapped)
                    && let Ok(meta) = self.inner.head(&path).await
                    && !range.satisfiable(meta.size)
                {
                    return Err(DataplaneError::InvalidRange {
                        volume,
                        key: key.to_string(),
                        size: meta.size,
                    });
                }
                return Err(mapped);
            }
        };
        let info = ObjectInfo::new(&result.meta, &result.attributes);
        let range = result.range.clone();
        let k = key.to_string();
        let store_error = move |source: object_store::Error| {
            // The answer's head is gone: the client only sees the body end early, so the
            // reason is told here.
            tracing::warn!(volume = %volume, key = %k, error = %source, "a read failed mid-body");
            DataplaneError::from_store_error(&volume, &k, Op::Get, source)
        };
        let body = match result.payload {
            object_store::GetResultPayload::File(file, path) => {
                file_stream(file, path, range.clone())
                    .map_err(store_error)
                    .boxed()
            }
            object_store::GetResultPayload::Stream(s) => s.map_err(store_error).boxed(),
        };
        Ok(ObjectRead { info, range, body })
    }

    /// Writes `body` to `key` through the one streamed write path ([`write_stream`]).
    pub async fn put<S>(&self, key: &str, body: S, req: PutRequest) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, BodyError>> + Send,
    {
        let path = parse_key(key)?;
        self.allow(Op::Put)?;
        write_stream(self, self.id(), key, &path, body, &req, self.write_shape())
            .await
            .map(|w| PutOutcome {
                checksum: req.attributes.checksum.clone(),
                ..w.outcome()
            })
    }

    /// Copies `from` to `to` inside this volume, in the backend where it can.
    pub async fn copy_within(&self, from: &str, to: &str) -> Result<PutOutcome> {
        let src = parse_key(from)?;
        let dst = parse_key(to)?;
        self.allow(Op::Copy)?;
        ObjectStore::copy_opts(self, &src, &dst, Default::default())
            .await
            .map_err(|e| DataplaneError::from_store_error(self.id(), from, Op::Copy, e))?;
        let meta = ObjectStoreExt::head(self, &dst)
            .await
            .map_err(|e| DataplaneError::from_store_error(self.id(), to, Op::Copy, e))?;
        Ok(PutOutcome {
            etag: meta.e_tag.as_deref().map(crate::read::unquote),
            size: meta.size,
            checksum: None,
        })
    }

    /// Deletes an object; deleting one that does not exist succeeds (S3 semantics).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = parse_key(key)?;
        self.allow(Op::Delete)?;
        match ObjectStoreExt::delete(self, &path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(DataplaneError::from_store_error(
                self.id(),
                key,
                Op::Delete,
                e,
            )),
        }
    }

    /// Walks the whole volume, counting objects and bytes. `progress` sees running totals
    /// every 1000 objects and at the end.
    pub async fn count(&self, mut progress: impl FnMut(u64, u64) + Send) -> Result<(u64, u64)> {
        self.allow(Op::Scan)?;
        let mut stream = ObjectStore::list(self, None);
        let (mut objects, mut bytes) = (0u64, 0u64);
        while let Some(meta) = stream.next().await {
            let meta =
                meta.map_err(|e| DataplaneError::from_store_error(self.id(), "", Op::Scan, e))?;
            objects += 1;
            bytes += meta.size;
            if objects.is_multiple_of(1000) {
                progress(objects, bytes);
            }
        }
        progress(objects, bytes);
        Ok((objects, bytes))
    }
}

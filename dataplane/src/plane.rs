//! Dataplane operations over volumes: resolve, check access, act.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use crate::backend::Backend;
use crate::catalog::{Access, Catalog, Principal, ScanSummary, Volume, VolumeKind};
use crate::key::{check_prefix, parse_key};
use crate::{DataplaneConfig, DataplaneError, Op, Result};
use archway_cache::{BlockCache, CachedStore};

/// An object's metadata as the fronts need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// The backend's version tag, unquoted (S3 ETag, or inode-mtime-size for local files).
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

/// One page of a listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys beginning with this string (need not end at a '/').
    pub prefix: String,
    /// Group keys that contain this after the prefix into common prefixes.
    pub delimiter: Option<String>,
    /// Return only entries after this key (exclusive): the resume point of the previous page.
    pub start_after: Option<String>,
    /// At most this many entries (objects plus common prefixes); capped by the configuration.
    pub max_keys: Option<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (exclusive), when more entries remain.
    pub next_start_after: Option<String>,
}

/// A byte range of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRange {
    /// Bytes `start..end` (end exclusive).
    Bounded { start: u64, end: u64 },
    /// From `start` to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

/// A read with optional range and conditions (HTTP semantics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    pub range: Option<ReadRange>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<SystemTime>,
    pub if_unmodified_since: Option<SystemTime>,
}

/// A read in progress: metadata, the byte range being returned, and the streamed body.
pub struct ObjectRead {
    pub info: ObjectInfo,
    pub range: Range<u64>,
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub etag: Option<String>,
    pub size: u64,
}

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

/// A volume resolved for one call: its record, the caller's access, and its store.
#[derive(Clone)]
pub struct VolumeHandle {
    pub volume: Volume,
    pub access: Access,
    store: Arc<dyn ObjectStore>,
    backend: Arc<Backend>,
}

impl std::fmt::Debug for VolumeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeHandle")
            .field("volume", &self.volume.id)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl VolumeHandle {
    /// The store rooted at the volume's prefix: for wrapping layers (cache, compute) that
    /// have already passed the access check through [`Dataplane::open`].
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// The shared read/write path.
pub struct Dataplane {
    catalog: Catalog,
    backends: HashMap<String, Arc<Backend>>,
    config: DataplaneConfig,
    cache: Option<Arc<BlockCache>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Builds every configured backend; a backend that cannot be built is an error naming it.
    pub async fn new(catalog: Catalog, config: DataplaneConfig) -> Result<Self> {
        let mut backends = HashMap::new();
        for (name, backend) in &config.backends {
            let b = Backend::new(name, backend, config.limits.backend_concurrency)?;
            backends.insert(name.clone(), Arc::new(b));
        }
        let cache = if config.cache.enabled {
            Some(BlockCache::new(config.cache.clone()).await)
        } else {
            None
        };
        Ok(Self {
            catalog,
            backends,
            config,
            cache,
        })
    }

    /// The block cache, when enabled.
    pub fn cache(&self) -> Option<&Arc<BlockCache>> {
        self.cache.as_ref()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &DataplaneConfig {
        &self.config
    }

    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }

    /// The backend new workspaces go to, and the prefix for a workspace named `id`.
    pub fn workspace_location(&self, id: &str) -> Option<(String, String)> {
        let ws = &self.config.workspaces;
        let backend = ws.backend.clone().unwrap_or_else(|| "workspaces".into());
        if !self.has_backend(&backend) {
            return None;
        }
        let prefix = ws.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            id.to_string()
        } else {
            format!("{prefix}/{id}")
        };
        Some((backend, prefix))
    }

    /// The peer gateway URL behind a volume, when its backend is a peer Archway.
    pub fn peer_url(&self, volume: &Volume) -> Option<String> {
        self.backends.get(&volume.backend)?.peer_url()
    }

    /// Where a key of a volume on a peer gateway lives at that peer: its API URL and token, its
    /// volume there, and the key there. None when the volume is not on a peer.
    pub fn peer_location(&self, volume: &Volume, key: &str) -> Option<PeerLocation> {
        let backend = self.backends.get(&volume.backend)?;
        let url = backend.peer_url()?;
        let prefix = volume.prefix.trim_matches('/');
        let (remote, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
        let key = if rest.is_empty() {
            key.to_string()
        } else {
            format!("{rest}/{key}")
        };
        Some(PeerLocation {
            backend: volume.backend.clone(),
            url,
            token: backend.peer_token(),
            volume: remote.to_string(),
            key,
        })
    }

    /// Resolves `volume` for `op` by `who` (None: anonymous), checking access.
    pub async fn open(
        &self,
        who: Option<&Principal>,
        volume: &str,
        op: Op,
    ) -> Result<VolumeHandle> {
        let record = match self.catalog.get_volume(volume).await {
            Ok(v) => v,
            Err(crate::catalog::CatalogError::NotFound { .. }) => {
                return Err(DataplaneError::NoSuchVolume {
                    volume: volume.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let denied = || DataplaneError::AccessDenied {
            volume: volume.to_string(),
            op,
        };
        let access = self
            .catalog
            .access(who, &record)
            .await?
            .ok_or_else(denied)?;
        let needed = match op {
            Op::List | Op::Head | Op::Get => Access::Read,
            Op::Put | Op::Copy | Op::Delete => Access::Write,
            Op::Scan => Access::Admin,
        };
        if needed == Access::Write && record.read_only {
            return Err(DataplaneError::ReadOnly {
                volume: volume.to_string(),
            });
        }
        if access < needed {
            return Err(denied());
        }
        let backend = self
            .backends
            .get(&record.backend)
            .ok_or_else(|| DataplaneError::UnknownBackend {
                volume: volume.to_string(),
                backend: record.backend.clone(),
            })?
            .clone();
        let mut store = backend.volume_store(&record.prefix)?;
        if let Some(cache) = &self.cache
            && !(cache.config().bypass_workspaces && record.kind == VolumeKind::Workspace)
            && !cache.config().bypass_volumes.contains(&record.id)
        {
            // Volumes over the same backend and prefix share their blocks.
            let scope = format!("{}:{}", record.backend, record.prefix);
            store = Arc::new(CachedStore::new(store, cache.clone(), scope));
        }
        Ok(VolumeHandle {
            volume: record,
            access,
            store,
            backend,
        })
    }

    pub async fn head(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
    ) -> Result<ObjectInfo> {
        self.head_if(who, volume, key, &ReadRequest::default())
            .await
    }

    /// HEAD with HTTP conditions (the request's range is ignored): `PreconditionFailed` or
    /// `NotModified` when they say so, as for [`Dataplane::get`].
    pub async fn head_if(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: &ReadRequest,
    ) -> Result<ObjectInfo> {
        let path = parse_key(key)?;
        let h = self.open(who, volume, Op::Head).await?;
        let opts = GetOptions {
            head: true,
            if_match: req.if_match.as_deref().map(|e| h.backend.store_etag(e)),
            if_none_match: req
                .if_none_match
                .as_deref()
                .map(|e| h.backend.store_etag(e)),
            if_modified_since: req.if_modified_since.map(Into::into),
            if_unmodified_since: req.if_unmodified_since.map(Into::into),
            ..Default::default()
        };
        let r = h
            .store
            .get_opts(&path, opts)
            .await
            .map_err(store_error(volume, key, Op::Head))?;
        Ok(info(&r.meta, &r.attributes))
    }

    pub async fn get(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: ReadRequest,
    ) -> Result<ObjectRead> {
        let path = parse_key(key)?;
        let h = self.open(who, volume, Op::Get).await?;
        let opts = GetOptions {
            if_match: req.if_match.as_deref().map(|e| h.backend.store_etag(e)),
            if_none_match: req
                .if_none_match
                .as_deref()
                .map(|e| h.backend.store_etag(e)),
            if_modified_since: req.if_modified_since.map(Into::into),
            if_unmodified_since: req.if_unmodified_since.map(Into::into),
            range: req.range.map(|r| match r {
                ReadRange::Bounded { start, end } => GetRange::Bounded(start..end),
                ReadRange::From(start) => GetRange::Offset(start),
                ReadRange::Suffix(n) => GetRange::Suffix(n),
            }),
            ..Default::default()
        };
        if let Some(ReadRange::Bounded { start, end }) = req.range
            && start >= end
        {
            return Err(DataplaneError::InvalidRequest {
                message: format!("empty or inverted range {start}..{end}"),
            });
        }
        let result = match h.store.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) => {
                let mapped = store_error(volume, key, Op::Get)(e);
                // Stores word an unsatisfiable range differently; decide it from the size.
                if let (Some(range), DataplaneError::Store { .. }) = (req.range, &mapped)
                    && let Ok(meta) = h.store.head(&path).await
                    && !satisfiable(range, meta.size)
                {
                    return Err(DataplaneError::InvalidRange {
                        volume: volume.to_string(),
                        key: key.to_string(),
                        size: meta.size,
                    });
                }
                return Err(mapped);
            }
        };
        let info = info(&result.meta, &result.attributes);
        let range = result.range.clone();
        let (v, k) = (volume.to_string(), key.to_string());
        let store_error = move |source| DataplaneError::Store {
            volume: v.clone(),
            key: k.clone(),
            op: Op::Get,
            source: Box::new(source),
        };
        let body = match result.payload {
            // Local files: read in large chunks on tokio's file threads. (object_store's own
            // stream reads 8 KiB per blocking task, which caps a local read far below the disk.)
            object_store::GetResultPayload::File(file, path) => {
                file_stream(file, path, range.clone())
                    .map_err(store_error)
                    .boxed()
            }
            object_store::GetResultPayload::Stream(s) => s.map_err(store_error).boxed(),
        };
        Ok(ObjectRead { info, range, body })
    }

    /// Writes `body` to `key`, streaming: bodies up to one part go in one request, larger ones
    /// as a multipart upload with at most `upload_concurrency` parts in memory. Readers see the
    /// old object or the complete new one, never a part.
    pub async fn put<S, E>(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        body: S,
        req: PutRequest,
    ) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = parse_key(key)?;
        let h = self.open(who, volume, Op::Put).await?;
        self.write_stream(&h, &path, key, body, req).await
    }

    async fn write_stream<S, E>(
        &self,
        h: &VolumeHandle,
        path: &Path,
        key: &str,
        body: S,
        req: PutRequest,
    ) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let volume = h.volume.id.as_str();
        let part_size = self.config.limits.upload_part_size;
        let body_error = |e: E| DataplaneError::Body {
            volume: volume.to_string(),
            key: key.to_string(),
            message: e.to_string(),
        };
        let max = self.config.limits.max_object_bytes;
        let too_large = || DataplaneError::EntityTooLarge {
            volume: volume.to_string(),
            key: key.to_string(),
            limit: max,
            what: "limits.max_object_bytes",
        };
        let mut attributes = Attributes::new();
        if let Some(ct) = req.content_type
            && h.backend.keeps_attributes()
        {
            attributes.insert(Attribute::ContentType, ct.into());
        }
        let mut body = std::pin::pin!(body);
        let mut head: Vec<Bytes> = Vec::new();
        let mut size: u64 = 0;
        let mut buffered = 0usize;
        while buffered < part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(body_error)?;
                    buffered += chunk.len();
                    size += chunk.len() as u64;
                    if size > max {
                        return Err(too_large());
                    }
                    head.push(chunk);
                }
                None => {
                    let opts = PutOptions {
                        attributes,
                        ..Default::default()
                    };
                    let r = h
                        .store
                        .put_opts(path, PutPayload::from_iter(head), opts)
                        .await
                        .map_err(store_error(volume, key, Op::Put))?;
                    return Ok(PutOutcome {
                        etag: r.e_tag.as_deref().map(unquote),
                        size,
                    });
                }
            }
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = h
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(store_error(volume, key, Op::Put))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        for chunk in head {
            writer.put(chunk);
        }
        let concurrency = self.config.limits.upload_concurrency;
        loop {
            if let Err(e) = writer.wait_for_capacity(concurrency).await {
                return Err(store_error(volume, key, Op::Put)(e));
            }
            match body.next().await {
                Some(Ok(chunk)) if size + chunk.len() as u64 > max => {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(volume, key, error = %abort, "aborting an upload failed");
                    }
                    return Err(too_large());
                }
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    writer.put(chunk);
                }
                Some(Err(e)) => {
                    let err = body_error(e);
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(volume, key, error = %abort, "aborting an upload failed");
                    }
                    return Err(err);
                }
                None => break,
            }
        }
        let r = writer
            .finish()
            .await
            .map_err(store_error(volume, key, Op::Put))?;
        Ok(PutOutcome {
            etag: r.e_tag.as_deref().map(unquote),
            size,
        })
    }

    /// Copies an object, within a volume or across volumes (streamed through the gateway).
    pub async fn copy(
        &self,
        who: Option<&Principal>,
        from: (&str, &str),
        to: (&str, &str),
    ) -> Result<PutOutcome> {
        let (src_volume, src_key) = from;
        let (dst_volume, dst_key) = to;
        let src_path = parse_key(src_key)?;
        let dst_path = parse_key(dst_key)?;
        let dst = self.open(who, dst_volume, Op::Copy).await?;
        if src_volume == dst_volume {
            dst.store
                .copy(&src_path, &dst_path)
                .await
                .map_err(store_error(src_volume, src_key, Op::Copy))?;
            let meta = dst.store.head(&dst_path).await.map_err(store_error(
                dst_volume,
                dst_key,
                Op::Copy,
            ))?;
            return Ok(PutOutcome {
                etag: meta.e_tag.as_deref().map(unquote),
                size: meta.size,
            });
        }
        let read = self
            .get(who, src_volume, src_key, ReadRequest::default())
            .await?;
        let req = PutRequest {
            content_type: read.info.content_type.clone(),
        };
        self.write_stream(&dst, &dst_path, dst_key, read.body, req)
            .await
    }

    /// Deletes an object; deleting one that does not exist succeeds (S3 semantics).
    pub async fn delete(&self, who: Option<&Principal>, volume: &str, key: &str) -> Result<()> {
        let path = parse_key(key)?;
        let h = self.open(who, volume, Op::Delete).await?;
        match h.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(volume, key, Op::Delete)(e)),
        }
    }

    /// One page of keys under a prefix, optionally grouped by a delimiter.
    pub async fn list(
        &self,
        who: Option<&Principal>,
        volume: &str,
        req: &ListRequest,
    ) -> Result<ListPage> {
        check_prefix(&req.prefix)?;
        if req.delimiter.as_deref() == Some("") {
            return Err(DataplaneError::InvalidRequest {
                message: "the delimiter may not be empty".into(),
            });
        }
        let h = self.open(who, volume, Op::List).await?;
        let max = req
            .max_keys
            .unwrap_or(self.config.limits.list_max_keys)
            .min(self.config.limits.list_max_keys);
        if max == 0 {
            return Ok(ListPage::default());
        }
        // object_store lists whole segments: list the folder holding the prefix, then filter.
        let folder = match req.prefix.rfind('/') {
            Some(i) => {
                Some(
                    Path::parse(&req.prefix[..i]).map_err(|e| DataplaneError::InvalidKey {
                        key: req.prefix.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let after = req.start_after.as_deref().unwrap_or("");
        let list_err = |e| store_error(volume, &req.prefix, Op::List)(e);

        if req.delimiter.as_deref() == Some("/") {
            let result = match h.store.list_with_delimiter(folder.as_ref()).await {
                Ok(r) => r,
                // A folder that does not exist holds nothing.
                Err(object_store::Error::NotFound { .. }) => return Ok(ListPage::default()),
                Err(e) => return Err(list_err(e)),
            };
            let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
            for meta in &result.objects {
                let key = meta.location.as_ref();
                if key.starts_with(&req.prefix) && key > after {
                    entries.push((key.to_string(), Some(info(meta, &Attributes::new()))));
                }
            }
            for p in &result.common_prefixes {
                let key = format!("{}/", p.as_ref());
                if key.starts_with(&req.prefix) && key.as_str() > after {
                    entries.push((key, None));
                }
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(page(entries, max));
        }

        // Flat listing (no delimiter, or one other than '/', grouped here).
        let offset = if after.is_empty() {
            None
        } else {
            Path::parse(after).ok()
        };
        let mut stream = match &offset {
            Some(o) => h.store.list_with_offset(folder.as_ref(), o),
            None => h.store.list(folder.as_ref()),
        };
        let sorted = h.backend.lists_sorted();
        let delimiter = req.delimiter.as_deref();
        let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        let mut prefixes_seen = BTreeSet::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(list_err)?;
            let key = meta.location.as_ref();
            if !key.starts_with(&req.prefix) || key <= after {
                continue;
            }
            let grouped = delimiter.and_then(|d| {
                key[req.prefix.len()..]
                    .find(d)
                    .map(|i| key[..req.prefix.len() + i + d.len()].to_string())
            });
            match grouped {
                Some(cp) => {
                    if cp.as_str() > after && prefixes_seen.insert(cp.clone()) {
                        entries.push((cp, None));
                    }
                }
                None => entries.push((key.to_string(), Some(info(&meta, &Attributes::new())))),
            }
            // A sorted backend lets us stop once the page (and the proof of a next one) is in.
            if sorted && delimiter.is_none() && entries.len() > max {
                break;
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page(entries, max))
    }

    /// Walks the whole volume, counting objects and bytes, and records the result in the
    /// catalogue. `progress` sees running totals every 1000 objects and at the end.
    pub async fn scan(
        &self,
        who: Option<&Principal>,
        volume: &str,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<ScanSummary> {
        let h = self.open(who, volume, Op::Scan).await?;
        let mut stream = h.store.list(None);
        let (mut objects, mut bytes) = (0u64, 0u64);
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(store_error(volume, "", Op::Scan))?;
            objects += 1;
            bytes += meta.size;
            if objects.is_multiple_of(1000) {
                progress(objects, bytes);
            }
        }
        progress(objects, bytes);
        Ok(self.catalog.record_scan(volume, objects, bytes).await?)
    }
}

/// Chunk size for local file reads: large enough that the per-chunk hand-off to a blocking
/// thread is noise next to copying the bytes.
const FILE_CHUNK: usize = 512 * 1024;

fn file_stream(
    file: std::fs::File,
    path: std::path::PathBuf,
    range: Range<u64>,
) -> impl futures::Stream<Item = std::result::Result<Bytes, object_store::Error>> + Send {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io_error = move |source: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("reading {}: {source}", path.display()).into(),
    };
    let file = tokio::fs::File::from_std(file);
    futures::stream::try_unfold(
        (file, range.start, range.end, false),
        move |(mut file, pos, end, seeked)| {
            let io_error = io_error.clone();
            async move {
                if pos >= end {
                    return Ok(None);
                }
                if !seeked {
                    file.seek(std::io::SeekFrom::Start(pos))
                        .await
                        .map_err(&io_error)?;
                }
                let want = ((end - pos) as usize).min(FILE_CHUNK);
                let mut buf = vec![0u8; want];
                let mut filled = 0;
                while filled < want {
                    let n = file.read(&mut buf[filled..]).await.map_err(&io_error)?;
                    if n == 0 {
                        return Err(io_error(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the file ended early (truncated while being read?)",
                        )));
                    }
                    filled += n;
                }
                Ok(Some((
                    Bytes::from(buf),
                    (file, pos + want as u64, end, true),
                )))
            }
        },
    )
}

fn page(mut entries: Vec<(String, Option<ObjectInfo>)>, max: usize) -> ListPage {
    let truncated = entries.len() > max;
    entries.truncate(max);
    let next_start_after = if truncated {
        entries.last().map(|e| e.0.clone())
    } else {
        None
    };
    let mut out = ListPage {
        next_start_after,
        ..Default::default()
    };
    for (key, info) in entries {
        match info {
            Some(i) => out.objects.push(i),
            None => out.common_prefixes.push(key),
        }
    }
    out
}

fn satisfiable(range: ReadRange, size: u64) -> bool {
    match range {
        ReadRange::Bounded { start, .. } | ReadRange::From(start) => start < size,
        ReadRange::Suffix(n) => n > 0,
    }
}

fn info(meta: &ObjectMeta, attributes: &Attributes) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.as_ref().to_string(),
        size: meta.size,
        last_modified: meta.last_modified.into(),
        etag: meta.e_tag.as_deref().map(unquote),
        content_type: attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref().to_string()),
    }
}

/// ETags travel without quotes inside Archway, whatever form the store uses.
fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn store_error<'a>(
    volume: &'a str,
    key: &'a str,
    op: Op,
) -> impl FnOnce(object_store::Error) -> DataplaneError + 'a {
    move |source| match source {
        object_store::Error::NotFound { .. } => DataplaneError::NoSuchKey {
            volume: volume.to_string(),
            key: key.to_string(),
        },
        object_store::Error::Precondition { source, .. } => {
            tracing::debug!(volume, key, reason = %source, "precondition failed");
            DataplaneError::PreconditionFailed {
                volume: volume.to_string(),
                key: key.to_string(),
            }
        }
        object_store::Error::NotModified { .. } => DataplaneError::NotModified {
            volume: volume.to_string(),
            key: key.to_string(),
        },
        source => DataplaneError::Store {
            volume: volume.to_string(),
            key: key.to_string(),
            op,
            source: Box::new(source),
        },
    }
}

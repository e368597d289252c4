//! [`CachedStore`]: an `ObjectStore` wrapper that reads through the block cache.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result, UploadPart,
};

use crate::{BlockCache, BlockKey};

/// An object's metadata as the cache keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    meta: ObjectMeta,
    attributes: Attributes,
}

/// A one-level listing as the cache keeps it.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) prefixes: Vec<Path>,
    pub(crate) objects: Vec<ObjectMeta>,
}

/// Reads through the block cache; everything else passes through, dropping the metadata of
/// the paths a write changes.
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<BlockCache>,
    scope: Arc<str>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("scope", &self.scope)
            .field("inner", &self.inner)
            .finish()
    }
}

impl std::fmt::Display for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedStore({})", self.inner)
    }
}

/// The version a block belongs to: the ETag, or size and modification time without one.
fn version_of(meta: &ObjectMeta) -> Arc<str> {
    match &meta.e_tag {
        Some(e) => Arc::from(e.as_str()),
        None => Arc::from(format!(
            "{}-{}",
            meta.size,
            meta.last_modified.timestamp_micros()
        )),
    }
}

fn invalid_range(
    path: &Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> object_store::Error {
    object_store::Error::Generic {
        store: "CachedStore",
        source: format!("{path}: {e}").into(),
    }
}

impl CachedStore {
    /// Wraps `inner`; `scope` names what paths are relative to (for example the backend and
    /// volume root), so equal paths in different stores never share blocks.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        scope: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            inner,
            cache,
            scope: scope.into(),
        }
    }

    fn meta_key(&self, location: &Path) -> (Arc<str>, String) {
        (self.scope.clone(), location.as_ref().to_string())
    }

    async fn forget(&self, location: &Path) {
        forget(&self.cache, &self.scope, location).await;
    }

    /// What names block `index` of `location` at the version `meta` tells.
    fn block_key(&self, location: &Path, meta: &ObjectMeta, index: u64) -> BlockKey {
        BlockKey {
            scope: self.scope.clone(),
            path: Arc::from(location.as_ref()),
            version: version_of(meta),
            index,
        }
    }

    async fn forget_meta(&self, location: &Path) {
        self.cache
            .metadata
            .invalidate(&self.meta_key(location))
            .await;
    }

    /// The object's current metadata, from the cache while fresh. Otherwise fetched once
    /// however many ask at the same time: for a read (`read` given), with the block holding
    /// its first byte where that can be done (see [`Self::meta_by_block`]), else by a HEAD.
    async fn meta(&self, location: &Path, read: Option<&GetOptions>) -> Result<Meta> {
        let key = self.meta_key(location);
        if let Some(m) = self.cache.metadata.get(&key).await {
            self.cache
                .stats
                .metadata_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(m);
        }
        self.cache
            .stats
            .metadata_misses
            .fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .cache
            .metadata
            .try_get_with(key, async {
                if let Some(read) = read
                    && let Some(m) = self.meta_by_block(location, read).await?
                {
                    return Ok(m);
                }
                let head = GetOptions {
                    head: true,
                    ..Default::default()
                };
                let r = self.inner.get_opts(location, head).await?;
                Ok::<_, object_store::Error>(Meta {
                    meta: r.meta,
                    attributes: r.attributes,
                })
            })
            .await;
        fetched.map_err(|shared| match Arc::try_unwrap(shared) {
            Ok(e) => e,
            Err(shared) => shared_error(location, shared),
        })
    }

    /// For a read whose object's metadata is not cached: the block holding the read's first
    /// byte, fetched with a plain ranged GET whose response also tells the object's version,
    /// size and attributes, so a cold read costs one request instead of a HEAD and a GET (a
    /// small file read through the mount, a FITS header). The block is cached under that
    /// version; the caller caches the metadata. None where that cannot be done (a read from the
    /// end, a range past the object, a server that ignores ranges) or should not be (blocks of
    /// the object already on disk): the caller asks for the metadata first, as usual.
    async fn meta_by_block(&self, location: &Path, options: &GetOptions) -> Result<Option<Meta>> {
        let start = match &options.range {
            None => 0,
            Some(GetRange::Bounded(r)) => r.start,
            Some(GetRange::Offset(o)) => *o,
            Some(GetRange::Suffix(_)) => return Ok(None),
        };
        if options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
        {
            return Ok(None);
        }
        // Blocks of this object on disk (a restart, or metadata that expired): a HEAD tells
        // whether they are still current, and they are read from disk.
        if let Some(disk) = &self.cache.disk
            && disk.holds_object(&self.scope, location.as_ref())
        {
            return Ok(None);
        }
        let size = self.cache.config.block_size;
        let index = start / size;
        let wanted = index * size..(index + 1) * size;
        let opts = GetOptions {
            range: Some(GetRange::Bounded(wanted.clone())),
            // A reader pinned to a version gets it or a precondition failure, as below.
            if_match: options.if_match.clone(),
            ..Default::default()
        };
        let r = match self.inner.get_opts(location, opts).await {
            Ok(r) => r,
            Err(object_store::Error::Precondition { .. }) if options.if_match.is_some() => {
                // Changed since the reader pinned it, or the cached view is what is stale:
                // the usual path decides, with fresh metadata.
                return Ok(None);
            }
            Err(object_store::Error::NotFound { path, source }) => {
                return Err(object_store::Error::NotFound { path, source });
            }
            Err(_) => return Ok(None),
        };
        let expected = wanted.start..wanted.end.min(r.meta.size);
        if r.range != expected || expected.is_empty() {
            return Ok(None);
        }
        let meta = Meta {
            meta: r.meta.clone(),
            attributes: r.attributes.clone(),
        };
        let bytes = r.bytes().await?;
        if bytes.len() as u64 != expected.end - expected.start {
            return Ok(None);
        }
        let stats = &self.cache.stats;
        stats.misses.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let key = self.block_key(location, &meta.meta, index);
        if let Some(disk) = &self.cache.disk {
            disk.put_behind(key.clone(), bytes.clone());
        }
        self.cache.blocks.insert(key, bytes).await;
        Ok(Some(meta))
    }

    /// One block, from memory or (once, however many ask) from the backend.
    async fn block(&self, location: &Path, meta: &ObjectMeta, index: u64) -> Result<Bytes> {
        let size = self.cache.config.block_size;
        let key = self.block_key(location, meta, index);
        if let Some(b) = self.cache.blocks.get(&key).await {
            self.cache.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.cache.stats.misses.fetch_add(1, Ordering::Relaxed);
        let start = index * size;
        let end = (start + size).min(meta.size);
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let disk = self.cache.disk.clone();
        let stats = &self.cache.stats;
        let result = self
            .cache
            .blocks
            .try_get_with(key.clone(), async {
                fetched.store(true, Ordering::Relaxed);
                if let Some(disk) = &disk {
                    if let Some(bytes) = disk.get(&key).await {
                        return Ok(bytes);
                    }
                    stats.disk_misses.fetch_add(1, Ordering::Relaxed);
                }
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    // The block must belong to the version the read started with.
                    if_match: meta.e_tag.clone(),
                    ..Default::default()
                };
                let bytes = self.inner.get_opts(location, opts).await?.bytes().await?;
                stats
                    .bytes_fetched
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if let Some(disk) = &disk {
                    // Written behind the reader's back; a failure only costs a later refetch.
                    disk.put_behind(key.clone(), bytes.clone());
                }
                Ok::<_, object_store::Error>(bytes)
            })
            .await;
        if !fetched.load(Ordering::Relaxed) {
            self.cache.stats.merged.fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(|shared| match Arc::try_unwrap(shared) {
            Ok(e) => e,
            Err(shared) => shared_error(location, shared),
        })
    }

    /// `range`, within block `range.start / block_size`: from the memory tier, from the disk
    /// tier's pieces, or from the whole block fetched as usual (see [`Self::block`]).
    async fn small_read(
        self: &Arc<Self>,
        location: &Path,
        meta: &ObjectMeta,
        range: Range<u64>,
        continues: bool,
    ) -> Result<Bytes> {
        let size = self.cache.config.block_size;
        let index = range.start / size;
        let key = self.block_key(location, meta, index);
        let within = (range.start - index * size)..(range.end - index * size);
        // A reader going on from here into the next block is then seen as sequential.
        self.cache
            .remember_small_read(&self.scope, location.as_ref(), index);
        let slice = |b: Bytes| {
            let end = (within.end as usize).min(b.len());
            b.slice((within.start as usize).min(end)..end)
        };
        if let Some(b) = self.cache.blocks.get(&key).await {
            self.cache.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(slice(b));
        }
        if let Some(disk) = &self.cache.disk
            && let Some(piece) = disk.get_range(&key, within.clone()).await
        {
            self.cache.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(piece);
        }
        // On neither tier: a read going on from an earlier one (small sequential requests)
        // takes the whole block, a random one see [`Self::cold_small_read`].
        if continues {
            return Ok(slice(self.block(location, meta, index).await?));
        }
        self.cold_small_read(location, meta, index, range).await
    }

    /// A small random read (going on from none of the object's recent requests) whose block
    /// is on neither tier. The first such read of a block fetches only the 64 KiB pieces it
    /// covers: a random reader (a FITS cutout) needs no more, and waits for 64 KiB instead of
    /// a block. A second one suggests a reader that keeps coming back to this block (a dense
    /// random reader): it is answered from its pieces too, and the whole block is fetched
    /// behind it, within the read-ahead permits. Later reads take the block (joining that
    /// fetch while it runs) — as does a second read when no permit is free.
    async fn cold_small_read(
        self: &Arc<Self>,
        location: &Path,
        meta: &ObjectMeta,
        index: u64,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let size = self.cache.config.block_size;
        let key = self.block_key(location, meta, index);
        let block_start = index * size;
        let slice = |b: Bytes| {
            let from = ((range.start - block_start) as usize).min(b.len());
            let to = ((range.end - block_start) as usize).min(b.len());
            b.slice(from..to)
        };
        if crate::PIECE_BYTES >= size {
            return Ok(slice(self.block(location, meta, index).await?));
        }
        let misses = self
            .cache
            .touched
            .entry(key.clone())
            .and_upsert_with(|e| async move { e.map_or(1, |e| e.into_value().saturating_add(1)) })
            .await
            .into_value();
        match misses {
            1 => {}
            2 => match self.cache.readahead.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (store, location, meta) = (self.clone(), location.clone(), meta.clone());
                    tokio::spawn(async move {
                        let _ = store.block(&location, &meta, index).await;
                        drop(permit);
                    });
                }
                Err(_) => return Ok(slice(self.block(location, meta, index).await?)),
            },
            _ => return Ok(slice(self.block(location, meta, index).await?)),
        }
        let block_end = (block_start + size).min(meta.size);
        let from = range.start / crate::PIECE_BYTES * crate::PIECE_BYTES;
        let to = (range.end.div_ceil(crate::PIECE_BYTES) * crate::PIECE_BYTES).min(block_end);
        let opts = GetOptions {
            range: Some(GetRange::Bounded(from..to)),
            // The pieces must belong to the version the read started with.
            if_match: meta.e_tag.clone(),
            ..Default::default()
        };
        let stats = &self.cache.stats;
        stats.misses.fetch_add(1, Ordering::Relaxed);
        stats.piece_fetches.fetch_add(1, Ordering::Relaxed);
        let bytes = self.inner.get_opts(location, opts).await?.bytes().await?;
        stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != to - from {
            return Err(object_store::Error::Generic {
                store: "CachedStore",
                source: format!(
                    "{location}: asked for bytes {from}..{to}, got {} bytes",
                    bytes.len()
                )
                .into(),
            });
        }
        let start = (range.start - from) as usize;
        let end = (range.end - from) as usize;
        Ok(bytes.slice(start..end))
    }

    /// The bytes of `range`, assembled from blocks in order, with read-ahead: while the reader
    /// consumes one block the next ones are already being fetched, in a window that starts at
    /// one block and doubles with every block consumed, up to `readahead_blocks`. Blocks
    /// fetched ahead of the reader hold permits from one pool of `readahead_bytes` for the
    /// whole gateway until the reader takes them; when the pool is empty the window stops
    /// growing (back pressure, never growth), and the block the reader needs next is always
    /// fetched, so every reader progresses.
    fn stream_range(
        self: Arc<Self>,
        location: Path,
        meta: ObjectMeta,
        range: Range<u64>,
    ) -> BoxStream<'static, Result<Bytes>> {
        let size = self.cache.config.block_size;
        if range.is_empty() {
            return stream::empty().boxed();
        }
        let first = range.start / size;
        let continues = self
            .cache
            .note_request(&self.scope, location.as_ref(), &range);
        // A read that starts where this object's last read stopped goes on with its window;
        // any other read (a seek) starts again from one block.
        let carried = self
            .cache
            .sequential_window(&self.scope, location.as_ref(), first);
        // A small read inside one block that is not going on from the last read (a random
        // read, or small sequential reads inside one block): from memory if the block is
        // there, else just its pieces from the disk tier, without loading the whole block
        // (nor promoting it: random reads would only churn memory), else from the backend
        // (see `cold_small_read`). It records where it stopped, so a reader going on into the
        // next block gets read-ahead. Anything else goes the usual way below.
        if carried.is_none()
            && (range.end - 1) / size == first
            && range.end - range.start <= size / 4
        {
            return stream::once(async move {
                let piece = self.small_read(&location, &meta, range, continues).await?;
                self.cache
                    .stats
                    .bytes_served
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
                Ok(piece)
            })
            .boxed();
        }
        let state = ReadAhead {
            sequential: carried.is_some(),
            store: self,
            location,
            meta,
            next_spawn: first,
            last: (range.end - 1) / size,
            window: carried.unwrap_or(1),
            consumed: first,
            queue: std::collections::VecDeque::new(),
        };
        stream::try_unfold((state, range), move |(mut state, range)| async move {
            let Some(index) = state.fill() else {
                return Ok(None);
            };
            let (block, ahead) = state.take().await?;
            state.consumed = index + 1;
            if ahead {
                state
                    .store
                    .cache
                    .stats
                    .readahead_used
                    .fetch_add(1, Ordering::Relaxed);
            }
            // The window grows only while the reader goes forward: from the second block of a
            // request, or from the first when the request goes on from the previous one.
            if state.sequential {
                state.window =
                    (state.window * 2).min(state.store.cache.config.readahead_blocks.max(1));
            }
            state.sequential = true;
            let block_start = index * size;
            let from = range.start.saturating_sub(block_start) as usize;
            let to = ((range.end - block_start) as usize).min(block.len());
            let piece = block.slice(from.min(to)..to);
            state
                .store
                .cache
                .stats
                .bytes_served
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok(Some((piece, (state, range))))
        })
        .boxed()
    }
}

type Fetch = tokio::task::JoinHandle<(Result<Bytes>, Option<tokio::sync::OwnedSemaphorePermit>)>;

/// The blocks of one read in flight: the one the reader needs next, and those fetched ahead.
struct ReadAhead {
    store: Arc<CachedStore>,
    location: Path,
    meta: ObjectMeta,
    next_spawn: u64,
    last: u64,
    window: u64,
    /// The block after the last one the reader took.
    consumed: u64,
    /// Whether the reader is going forward (the window may grow).
    sequential: bool,
    /// (block index, fetch, fetched ahead of need).
    queue: std::collections::VecDeque<(u64, Fetch, bool)>,
}

impl ReadAhead {
    fn spawn(&mut self, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        let index = self.next_spawn;
        self.next_spawn += 1;
        let (store, location, meta) =
            (self.store.clone(), self.location.clone(), self.meta.clone());
        let ahead = permit.is_some();
        let fetch = tokio::spawn(async move {
            let block = store.block(&location, &meta, index).await;
            (block, permit)
        });
        self.queue.push_back((index, fetch, ahead));
    }

    /// Makes sure the next block is on its way and the window is filled as far as permits
    /// allow; returns the index of the block the reader gets next, None at the end.
    fn fill(&mut self) -> Option<u64> {
        if self.queue.is_empty() {
            if self.next_spawn > self.last {
                return None;
            }
            self.spawn(None);
        }
        while (self.queue.len() as u64) < self.window && self.next_spawn <= self.last {
            match self.store.cache.readahead.clone().try_acquire_owned() {
                Ok(permit) => self.spawn(Some(permit)),
                Err(_) => break,
            }
        }
        self.queue.front().map(|(index, _, _)| *index)
    }

    async fn take(&mut self) -> Result<(Bytes, bool)> {
        let Some((_, fetch, ahead)) = self.queue.pop_front() else {
            return Err(object_store::Error::Generic {
                store: "CachedStore",
                source: "read-ahead queue empty".into(),
            });
        };
        match fetch.await {
            // The permit is released here, once the reader has the block.
            Ok((block, _permit)) => block.map(|b| (b, ahead)),
            Err(e) => Err(object_store::Error::JoinError { source: e }),
        }
    }
}

impl Drop for ReadAhead {
    /// Blocks fetched ahead that the reader never took (it stopped early) were wasted; their
    /// fetches finish into the cache and release their permits.
    fn drop(&mut self) {
        let wasted = self.queue.iter().filter(|(_, _, ahead)| *ahead).count() as u64;
        self.store
            .cache
            .stats
            .readahead_wasted
            .fetch_add(wasted, Ordering::Relaxed);
        self.store.cache.remember_position(
            &self.store.scope,
            self.location.as_ref(),
            self.consumed,
            self.window,
        );
        // A reader going forward in sequential requests gets the blocks after this request
        // fetched ahead too, within the same permits, so its next request finds them cached.
        let size = self.store.cache.config.block_size;
        let object_last = self.meta.size.saturating_sub(1) / size;
        let finished = self.queue.is_empty() && self.next_spawn > self.last;
        if self.window > 1 && finished && self.meta.size > 0 {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let end = (self.consumed + self.window - 1).min(object_last + 1);
            for index in self.consumed..end {
                let Ok(permit) = self.store.cache.readahead.clone().try_acquire_owned() else {
                    break;
                };
                let (store, location, meta) =
                    (self.store.clone(), self.location.clone(), self.meta.clone());
                runtime.spawn(async move {
                    let _ = store.block(&location, &meta, index).await;
                    drop(permit);
                });
            }
        }
    }
}

/// An error shared by several waiters of one fetch: each gets the same kind, so a missing
/// object or a changed version reads as such for every one of them, and the same chain of
/// causes (a back-end time-out stays one for the fronts).
fn shared_error(location: &Path, e: Arc<object_store::Error>) -> object_store::Error {
    let path = location.to_string();
    let kind = Arc::clone(&e);
    let source = Box::new(SharedError(e));
    match *kind {
        object_store::Error::NotFound { .. } => object_store::Error::NotFound { path, source },
        object_store::Error::Precondition { .. } => {
            object_store::Error::Precondition { path, source }
        }
        _ => object_store::Error::Generic {
            store: "CachedStore",
            source,
        },
    }
}

/// A shared error as the source of each waiter's own: it reads as the original, and its
/// causes are the original's.
#[derive(Debug)]
struct SharedError(Arc<object_store::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(self.0.as_ref())
    }
}

/// Drops what a write to `location` makes stale: its metadata, and the listings of every
/// folder above it (which may gain or lose the object or a common prefix).
async fn forget(cache: &BlockCache, scope: &Arc<str>, location: &Path) {
    cache
        .metadata
        .invalidate(&(scope.clone(), location.as_ref().to_string()))
        .await;
    let mut folder = String::new();
    cache
        .listings
        .invalidate(&(scope.clone(), folder.clone()))
        .await;
    let parts: Vec<_> = location.parts().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        if !folder.is_empty() {
            folder.push('/');
        }
        folder.push_str(part.as_ref());
        cache
            .listings
            .invalidate(&(scope.clone(), folder.clone()))
            .await;
    }
}

/// A multipart upload that drops the object's metadata once it completes.
struct InvalidatingUpload {
    inner: Box<dyn MultipartUpload>,
    cache: Arc<BlockCache>,
    scope: Arc<str>,
    location: Path,
}

impl std::fmt::Debug for InvalidatingUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidatingUpload")
            .field("location", &self.location)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for InvalidatingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let r = self.inner.complete().await;
        forget(&self.cache, &self.scope, &self.location).await;
        r
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await;
        self.forget(location).await;
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(InvalidatingUpload {
            inner,
            cache: self.cache.clone(),
            scope: self.scope.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.version.is_some() {
            return self.inner.get_opts(location, options).await;
        }
        let read = (!options.head).then_some(&options);
        let mut cached = self.meta(location, read).await?;
        // A reader that names a version the cached metadata does not hold (it saw a newer
        // one elsewhere, say through a listing) asks the backend once more before the
        // precondition decides: stale metadata must not fail a read of the current version.
        if let Some(wanted) = &options.if_match
            && wanted != "*"
            && cached.meta.e_tag.as_deref() != Some(wanted.as_str())
        {
            self.forget_meta(location).await;
            cached = self.meta(location, None).await?;
        }
        let Meta { meta, attributes } = cached;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| invalid_range(location, e))?,
            None => 0..meta.size,
        };
        let payload = if options.head {
            stream::empty().boxed()
        } else {
            let this = Arc::new(Self {
                inner: self.inner.clone(),
                cache: self.cache.clone(),
                scope: self.scope.clone(),
            });
            this.stream_range(location.clone(), meta.clone(), range.clone())
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(r.clone())),
                ..Default::default()
            };
            let mut stream = self.get_opts(location, opts).await?.into_stream();
            let mut buf = BytesMut::with_capacity((r.end - r.start) as usize);
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            out.push(buf.freeze());
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let cache = self.cache.clone();
        let scope = self.scope.clone();
        self.inner
            .delete_stream(locations)
            .then(move |r| {
                let cache = cache.clone();
                let scope = scope.clone();
                async move {
                    if let Ok(p) = &r {
                        forget(&cache, &scope, p).await;
                    }
                    r
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = (
            self.scope.clone(),
            prefix.map(|p| p.as_ref().to_string()).unwrap_or_default(),
        );
        let listing = match self.cache.listings.get(&key).await {
            Some(hit) => {
                self.cache
                    .stats
                    .listing_hits
                    .fetch_add(1, Ordering::Relaxed);
                hit
            }
            None => {
                self.cache
                    .stats
                    .listing_misses
                    .fetch_add(1, Ordering::Relaxed);
                let listed = self.inner.list_with_delimiter(prefix).await?;
                let listing = Arc::new(Listing {
                    prefixes: listed.common_prefixes,
                    objects: listed.objects,
                });
                self.cache.listings.insert(key, listing.clone()).await;
                listing
            }
        };
        Ok(ListResult {
            common_prefixes: listing.prefixes.clone(),
            objects: listing.objects.clone(),
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.forget(to).await;
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let r = self.inner.rename_opts(from, to, options).await;
        self.forget(from).await;
        self.forget(to).await;
        r
    }
}

//! The disk tier: blocks as files under the cache directory, within a byte budget.
//!
//! Each block is one file, `<dir>/<2 hex>/<30 hex>.blk`, named by a hash of its key and laid
//! out as a header (magic, the key itself, the data length, a CRC-64 of each 4 KiB piece of
//! the data) followed by the data. The key in the header makes the file self-describing: at
//! start the index of what is on disk is rebuilt by reading headers, and a hash collision can
//! never serve another block. A small read takes only the pieces it covers and checks their
//! CRCs (a 4 KiB read costs 4 KiB, not a whole block), and the block's file stays open for
//! the next one (at most a quarter of the open-file limit, 1024 files and 8 MiB of CRC
//! tables, oldest closed first); a whole-block read checks all. A block that fails is
//! deleted, logged and counted, and the reader is served from the backend instead. Files are
//! written to a temporary name and renamed, so a crash leaves whole blocks or none. Eviction
//! is least-recently-used by bytes.
//!
//! All file work runs on blocking threads. Failures of the disk tier (full disk, unreadable
//! file) never fail a read: they are logged and the block comes from the backend.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crc_fast::CrcAlgorithm;
use sha2::{Digest, Sha256};

use crate::{BlockKey, CacheStats};

/// Version 03: 4 KiB pieces (02 had 64 KiB). Files of another version are removed at start.
const MAGIC: &[u8; 8] = b"AWBLK03\n";
/// The data is checked in pieces of this size, each with its own CRC: a page, so a 4 KiB
/// random read reads and checks 4 KiB (with 64 KiB pieces it read and checked sixteen times
/// what it returned, which was most of a cached random read's cost).
const PIECE: u64 = 4 * 1024;
/// What one read of a block file's start takes in: the whole header of a block up to 3 MiB
/// (magic, key, length, a CRC per piece) with room for a long key; larger ones take a second.
const HEADER_READ: usize = 8 * 1024;

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    bytes: u64,
    used: u64,
    /// The file, kept open with its header read, once a small read has used it: the next
    /// small read is one positional read and its check. Closed when the entry goes.
    open: Option<Arc<OpenBlock>>,
}

/// A block file held open, its header already read and its key checked.
#[derive(Debug)]
struct OpenBlock {
    file: std::fs::File,
    len: u64,
    crcs: Vec<u64>,
    data_at: u64,
}

impl OpenBlock {
    /// Reads `range` of the block's data: only the pieces it covers, each checked.
    fn read_range(&self, range: Range<u64>) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        if range.start >= range.end || range.end > self.len {
            return Err(bad("range outside the block"));
        }
        let first = range.start / PIECE;
        let end = (range.end.div_ceil(PIECE) * PIECE).min(self.len);
        let mut data = vec![0u8; (end - first * PIECE) as usize];
        self.file
            .read_exact_at(&mut data, self.data_at + first * PIECE)?;
        check(&data, &self.crcs, first as usize)?;
        let from = (range.start - first * PIECE) as usize;
        let to = (range.end - first * PIECE) as usize;
        Ok(Bytes::from(data).slice(from..to))
    }
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<BlockKey, Entry>,
    /// Blocks held per object (scope and path), whatever their version.
    objects: HashMap<(Arc<str>, Arc<str>), u32>,
    total: u64,
    tick: u64,
    /// The keys whose entries were given an open file, oldest first: at most
    /// [`DiskTier::max_open`] (an entry gone or replaced since leaves its key here, which only
    /// makes fewer files open).
    opened: std::collections::VecDeque<BlockKey>,
}

impl Index {
    /// Adds or replaces `key`'s entry, keeping the totals.
    fn put(&mut self, key: BlockKey, entry: Entry) {
        let object = (key.scope.clone(), key.path.clone());
        self.total += entry.bytes;
        match self.entries.insert(key, entry) {
            Some(old) => self.total -= old.bytes,
            None => *self.objects.entry(object).or_default() += 1,
        }
    }

    /// Adds (or replaces) `key`'s entry for the file at `path`, as just used.
    fn add(&mut self, key: BlockKey, path: PathBuf, bytes: u64) {
        self.tick += 1;
        let used = self.tick;
        self.put(
            key,
            Entry {
                path,
                bytes,
                used,
                open: None,
            },
        );
    }

    /// Takes `key`'s entry out, keeping the totals.
    fn take(&mut self, key: &BlockKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.total -= entry.bytes;
        let object = (key.scope.clone(), key.path.clone());
        if let Some(n) = self.objects.get_mut(&object) {
            *n -= 1;
            if *n == 0 {
                self.objects.remove(&object);
            }
        }
        Some(entry)
    }
}

/// Blocks on local disk.
#[derive(Debug)]
pub(crate) struct DiskTier {
    dir: PathBuf,
    budget: u64,
    index: Mutex<Index>,
    stats: Arc<CacheStats>,
    /// Bounds the blocks waiting to be written: when the disk falls behind, new blocks are
    /// not written (they stay in memory, and a later miss fetches them again) rather than
    /// queueing without limit.
    writers: Arc<tokio::sync::Semaphore>,
    /// Set when the tier's file system was full: no block is written before this instant
    /// (reads go on from memory and the backend), and the warning is given once per pause.
    full_until: Mutex<Option<std::time::Instant>>,
    /// The most block files kept open for small reads.
    max_open: usize,
}

/// The most block files kept open for small reads: a quarter of the process's open-file limit,
/// at most 1024, and no more than their CRC tables fit in [`OPEN_CRC_BYTES`] (64 files of
/// 64 MiB blocks, 1024 of 1 MiB ones).
fn max_open_files(block_size: u64) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let table = block_size.div_ceil(PIECE).max(1) * 8;
    (soft / 4).min(OPEN_CRC_BYTES / table).clamp(16, 1024) as usize
}

/// Memory for the CRC tables of the block files kept open.
const OPEN_CRC_BYTES: u64 = 8 * 1024 * 1024;

/// Block writes in flight at once.
const MAX_PENDING_WRITES: usize = 8;

/// How long the tier writes nothing after its file system said it was full.
const FULL_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

fn encode_key(key: &BlockKey) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [&*key.scope, &*key.path, &*key.version] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&key.index.to_le_bytes());
    out
}

fn decode_key(mut raw: &[u8]) -> Option<BlockKey> {
    let mut parts = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = u32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(raw.get(4..4 + len)?).ok()?;
        parts.push(Arc::<str>::from(text));
        raw = &raw[4 + len..];
    }
    let index = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let version = parts.pop()?;
    let path = parts.pop()?;
    let scope = parts.pop()?;
    Some(BlockKey {
        scope,
        path,
        version,
        index,
    })
}

fn file_name(dir: &Path, key: &BlockKey) -> PathBuf {
    let digest = hex::encode(&Sha256::digest(encode_key(key))[..16]);
    dir.join(&digest[..2]).join(format!("{}.blk", &digest[2..]))
}

/// A block file's header: its key, data length, the CRCs of its pieces and where the data
/// starts.
struct Header {
    key: BlockKey,
    len: u64,
    crcs: Vec<u64>,
    data_at: u64,
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the header from `f` (buffered: one read for the usual header).
fn read_header(f: &mut impl Read) -> std::io::Result<Header> {
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(bad("not an Archway block file of this version"));
    }
    let key_len = u32::from_le_bytes(head[8..12].try_into().map_err(|_| bad("header"))?) as usize;
    if key_len > 64 * 1024 {
        return Err(bad("key too long"));
    }
    let mut key_raw = vec![0u8; key_len];
    f.read_exact(&mut key_raw)?;
    let key = decode_key(&key_raw).ok_or_else(|| bad("unreadable key"))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 1 << 32 {
        return Err(bad("block too large"));
    }
    let mut raw = vec![0u8; (len.div_ceil(PIECE) * 8) as usize];
    f.read_exact(&mut raw)?;
    let crcs = raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let data_at = 12 + key_len as u64 + 8 + raw.len() as u64;
    Ok(Header {
        key,
        len,
        crcs,
        data_at,
    })
}

/// Checks `data`, the pieces from number `first` on, against their CRCs.
fn check(data: &[u8], crcs: &[u64], first: usize) -> std::io::Result<()> {
    for (i, piece) in data.chunks(PIECE as usize).enumerate() {
        if crcs.get(first + i) != Some(&crc_fast::checksum(CrcAlgorithm::Crc64Nvme, piece)) {
            return Err(bad("checksum mismatch"));
        }
    }
    Ok(())
}

/// Reads a block file: its key, length and (with `with_data`) data, checked piece by piece.
#[allow(clippy::disallowed_methods)] // runs on blocking threads, or a caller's own (see `read`)
fn read_block(path: &Path, with_data: bool) -> std::io::Result<(BlockKey, u64, Option<Bytes>)> {
    let mut f = std::io::BufReader::with_capacity(HEADER_READ, std::fs::File::open(path)?);
    let h = read_header(&mut f)?;
    if !with_data {
        return Ok((h.key, h.len, None));
    }
    let mut data = Vec::with_capacity(h.len as usize);
    f.read_to_end(&mut data)?;
    if data.len() as u64 != h.len {
        return Err(bad("truncated"));
    }
    check(&data, &h.crcs, 0)?;
    Ok((h.key, h.len, Some(Bytes::from(data))))
}

/// Opens a block file and reads its header: its key, and the file ready for range reads.
#[allow(clippy::disallowed_methods)] // runs on blocking threads, or a caller's own (see `read`)
fn open_block(path: &Path) -> std::io::Result<(BlockKey, OpenBlock)> {
    let file = std::fs::File::open(path)?;
    let h = read_header(&mut std::io::BufReader::with_capacity(HEADER_READ, &file))?;
    Ok((
        h.key,
        OpenBlock {
            file,
            len: h.len,
            crcs: h.crcs,
            data_at: h.data_at,
        },
    ))
}

/// Reads `range` of a block file's data: only the pieces it covers, each checked.
#[cfg(test)]
fn read_block_range(path: &Path, range: Range<u64>) -> std::io::Result<(BlockKey, Bytes)> {
    let (key, block) = open_block(path)?;
    Ok((key, block.read_range(range)?))
}

#[allow(clippy::disallowed_methods)] // runs only on blocking threads (spawn_blocking)
fn write_block(path: &Path, key: &BlockKey, data: &[u8]) -> std::io::Result<u64> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let key_raw = encode_key(key);
    let mut header =
        Vec::with_capacity(12 + key_raw.len() + 8 + 8 * data.len() / PIECE as usize + 8);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(key_raw.len() as u32).to_le_bytes());
    header.extend_from_slice(&key_raw);
    header.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for piece in data.chunks(PIECE as usize) {
        header.extend_from_slice(&crc_fast::checksum(CrcAlgorithm::Crc64Nvme, piece).to_le_bytes());
    }
    // The shard folders are made when the tier opens; one removed since is made again.
    let created = match std::fs::File::create(&tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            std::fs::File::create(&tmp)
        }
        other => other,
    };
    let written = created
        .and_then(|mut f| {
            f.write_all(&header)?;
            f.write_all(data)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // A block cut short (a full file system) must not stay to take the space.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((header.len() + data.len()) as u64)
}

impl DiskTier {
    /// Opens the tier in `dir`, rebuilding the index from the block files there.
    pub(crate) async fn open(
        dir: PathBuf,
        budget: u64,
        block_size: u64,
        stats: Arc<CacheStats>,
    ) -> std::io::Result<Arc<Self>> {
        let scan_dir = dir.clone();
        let found = tokio::task::spawn_blocking(move || scan(&scan_dir))
            .await
            .map_err(std::io::Error::other)??;
        let mut index = Index::default();
        for (key, path, bytes) in found {
            index.add(key, path, bytes);
        }
        tracing::info!(
            dir = %dir.display(),
            blocks = index.entries.len(),
            bytes = index.total,
            "disk cache index rebuilt"
        );
        let tier = Arc::new(Self {
            dir,
            budget,
            index: Mutex::new(index),
            stats,
            writers: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
            full_until: Mutex::new(None),
            max_open: max_open_files(block_size),
        });
        tier.evict().await;
        Ok(tier)
    }

    /// Whether any block of the object at `path` in `scope` is on disk, of any version.
    pub(crate) fn holds_object(&self, scope: &Arc<str>, path: &str) -> bool {
        self.index.lock().is_ok_and(|index| {
            index
                .objects
                .contains_key(&(scope.clone(), Arc::from(path)))
        })
    }

    /// The block, if on disk and intact. A damaged block is removed (and counted).
    pub(crate) async fn get(&self, key: &BlockKey) -> Option<Bytes> {
        self.read(key, |path, _| {
            read_block(&path, true)
                .and_then(|(found, _, data)| Ok((found, data.ok_or_else(|| bad("no data read"))?)))
        })
        .await
    }

    /// Bytes `range` of the block, if on disk and the pieces covering them are intact: only
    /// those pieces are read, from the block's file kept open since an earlier small read
    /// (else opened, and then kept). A damaged block is removed (and counted).
    pub(crate) async fn get_range(&self, key: &BlockKey, range: Range<u64>) -> Option<Bytes> {
        let wanted = key.clone();
        let (data, opened) = self
            .read(key, move |path, open| match open {
                // Its key was checked when it was opened.
                Some(open) => Ok((wanted, (open.read_range(range)?, None))),
                None => {
                    let (found, block) = open_block(&path)?;
                    let data = block.read_range(range)?;
                    Ok((found, (data, Some((path, Arc::new(block))))))
                }
            })
            .await?;
        if let Some((path, block)) = opened {
            self.keep_open(key, &path, block);
        }
        Some(data)
    }

    /// Keeps `block` open in `key`'s entry (if the entry is still that file), closing the
    /// oldest kept file beyond [`Self::max_open`].
    fn keep_open(&self, key: &BlockKey, path: &Path, block: Arc<OpenBlock>) {
        let Ok(mut index) = self.index.lock() else {
            return;
        };
        match index.entries.get_mut(key) {
            Some(entry) if entry.path == path && entry.open.is_none() => entry.open = Some(block),
            _ => return,
        }
        index.opened.push_back(key.clone());
        while index.opened.len() > self.max_open {
            if let Some(oldest) = index.opened.pop_front()
                && let Some(entry) = index.entries.get_mut(&oldest)
            {
                entry.open = None;
            }
        }
    }

    /// Runs `read` on the block's file (and its open file, if kept) on a blocking thread:
    /// its result if the file holds this block and reads intact; otherwise the block is
    /// dropped as damaged.
    async fn read<T: Send + 'static>(
        &self,
        key: &BlockKey,
        read: impl FnOnce(PathBuf, Option<Arc<OpenBlock>>) -> std::io::Result<(BlockKey, T)>
        + Send
        + 'static,
    ) -> Option<T> {
        let (path, open) = self.touch(key)?;
        let read_path = path.clone();
        let result = if tokio::task::try_id().is_none() {
            // Not inside a runtime task: polled in place on a thread of the caller's own (the
            // mount's FUSE session thread, for a read that may finish at once). Blocking
            // there stalls no runtime worker, and a piece read from the page cache costs less
            // than the two thread hand-overs of `spawn_blocking`.
            Ok(read(read_path, open))
        } else {
            tokio::task::spawn_blocking(move || read(read_path, open)).await
        };
        let reason = match result {
            Ok(Ok((found, data))) if &found == key => {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                return Some(data);
            }
            Ok(Ok(_)) => "holds another block".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(file = %path.display(), path = %key.path, reason, "dropping a damaged disk cache block");
        self.stats.disk_corrupt.fetch_add(1, Ordering::Relaxed);
        self.remove(key).await;
        None
    }

    /// The block's file (and the file kept open, if any), marked as just used; None if the
    /// block is not on disk.
    fn touch(&self, key: &BlockKey) -> Option<(PathBuf, Option<Arc<OpenBlock>>)> {
        let mut index = self.index.lock().ok()?;
        index.tick += 1;
        let tick = index.tick;
        let entry = index.entries.get_mut(key)?;
        entry.used = tick;
        Some((entry.path.clone(), entry.open.clone()))
    }

    /// Stores a block in the background, if a write slot is free; failures are logged and
    /// forgotten.
    pub(crate) fn put_behind(self: &Arc<Self>, key: BlockKey, data: Bytes) {
        if self.is_full() {
            self.stats.disk_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(permit) = self.writers.clone().try_acquire_owned() else {
            self.stats.disk_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let tier = self.clone();
        tokio::spawn(async move {
            tier.put(key, data).await;
            drop(permit);
        });
    }

    async fn put(self: &Arc<Self>, key: BlockKey, data: Bytes) {
        let path = file_name(&self.dir, &key);
        let write_path = path.clone();
        let write_key = key.clone();
        let written =
            tokio::task::spawn_blocking(move || write_block(&write_path, &write_key, &data)).await;
        match written {
            Ok(Ok(bytes)) => {
                if let Ok(mut index) = self.index.lock() {
                    index.add(key, path, bytes);
                }
                self.evict().await;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                self.stats.disk_errors.fetch_add(1, Ordering::Relaxed);
                self.pause_when_full(&e);
            }
            Ok(Err(e)) => {
                self.stats.disk_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "could not write a disk cache block");
            }
            Err(e) => tracing::warn!(error = %e, "disk cache write task failed"),
        }
    }

    /// Whether writes are paused because the file system was full.
    fn is_full(&self) -> bool {
        let Ok(mut until) = self.full_until.lock() else {
            return false;
        };
        match *until {
            Some(t) if std::time::Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// The file system is full (below `disk_bytes`: it is shared, or smaller than the
    /// budget): write nothing for a while, and say so once.
    fn pause_when_full(&self, e: &std::io::Error) {
        let Ok(mut until) = self.full_until.lock() else {
            return;
        };
        if until.is_none() {
            tracing::warn!(
                dir = %self.dir.display(),
                held_bytes = self.bytes(),
                budget_bytes = self.budget,
                error = %e,
                pause_s = FULL_PAUSE.as_secs(),
                "the disk cache's file system is full: no blocks are written to disk for a \
                 while (reads go on from memory and the backend); set cache.disk_bytes below \
                 the free space"
            );
        }
        *until = Some(std::time::Instant::now() + FULL_PAUSE);
    }

    async fn remove(&self, key: &BlockKey) {
        let removed = self.index.lock().ok().and_then(|mut index| index.take(key));
        if let Some(entry) = removed {
            #[allow(clippy::disallowed_methods)] // on a blocking thread
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(entry.path)).await;
        }
    }

    /// Removes least-recently-used blocks until the tier is within its budget. Choosing them
    /// sorts the whole index, and removing them touches the disk: both on a blocking thread.
    async fn evict(self: &Arc<Self>) {
        if self.bytes() <= self.budget {
            return;
        }
        let tier = self.clone();
        let _ = tokio::task::spawn_blocking(move || tier.evict_now()).await;
    }

    #[allow(clippy::disallowed_methods)] // runs only on a blocking thread (see `evict`)
    fn evict_now(&self) {
        // The index is shared with the readers on the runtime: copy it, sort outside the lock,
        // then take out the chosen blocks that nobody used in between.
        let (mut by_use, total): (Vec<(u64, BlockKey, u64)>, u64) = match self.index.lock() {
            Ok(index) => (
                index
                    .entries
                    .iter()
                    .map(|(k, e)| (e.used, k.clone(), e.bytes))
                    .collect(),
                index.total,
            ),
            Err(_) => return,
        };
        if total <= self.budget {
            return;
        }
        by_use.sort_unstable_by_key(|(used, _, _)| *used);
        let mut excess = total - self.budget;
        let chosen: Vec<(u64, BlockKey)> = by_use
            .into_iter()
            .take_while(|(_, _, bytes)| {
                let more = excess > 0;
                excess = excess.saturating_sub(*bytes);
                more
            })
            .map(|(used, key, _)| (used, key))
            .collect();
        let victims: Vec<PathBuf> = match self.index.lock() {
            Ok(mut index) => {
                let mut victims = Vec::new();
                for (used, key) in chosen {
                    if index.entries.get(&key).is_some_and(|e| e.used == used)
                        && let Some(e) = index.take(&key)
                    {
                        victims.push(e.path);
                    }
                }
                victims
            }
            Err(_) => return,
        };
        self.stats
            .disk_evictions
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        for p in victims {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Bytes of blocks on disk, as indexed.
    pub(crate) fn bytes(&self) -> u64 {
        self.index.lock().map(|i| i.total).unwrap_or(0)
    }
}

/// Every intact block header under `dir`; leftovers (temporary files, damaged headers) go.
/// The 256 shard folders are made here, once, so that writing a block makes no folder (each
/// made on the read path cost a new directory inode while a cold read filled the tier).
#[allow(clippy::disallowed_methods)] // runs only on blocking threads (spawn_blocking)
fn scan(dir: &Path) -> std::io::Result<Vec<(BlockKey, PathBuf, u64)>> {
    std::fs::create_dir_all(dir)?;
    for shard in 0..=255u8 {
        match std::fs::create_dir(dir.join(hex::encode([shard]))) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir)? {
        let shard = shard?;
        // Only the shard folders (two hex digits): the mount keeps its whole-file copies in
        // `whole/` beside them.
        if !shard.file_type()?.is_dir() || shard.file_name().len() != 2 {
            continue;
        }
        for file in std::fs::read_dir(shard.path())? {
            let path = file?.path();
            let is_block = path.extension().is_some_and(|e| e == "blk");
            match is_block.then(|| read_block(&path, false)) {
                Some(Ok((key, _, _))) if file_name(dir, &key) == path => {
                    let bytes = std::fs::metadata(&path)?.len();
                    out.push((key, path, bytes));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = BlockKey {
            scope: Arc::from("demo:"),
            path: Arc::from("a/b é.fits"),
            version: Arc::from("\"etag\""),
            index: 42,
        };
        assert_eq!(decode_key(&encode_key(&key)), Some(key));
        assert_eq!(decode_key(b"\x05\x00"), None);
    }

    fn numbered(index: u64) -> BlockKey {
        BlockKey {
            scope: Arc::from("demo:"),
            path: Arc::from("big.fits"),
            version: Arc::from("\"v1\""),
            index,
        }
    }

    #[tokio::test]
    async fn small_reads_keep_block_files_open_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut tier = DiskTier::open(dir.path().to_path_buf(), 1 << 30, 1 << 20, Arc::default())
            .await
            .unwrap();
        Arc::get_mut(&mut tier).unwrap().max_open = 4;
        let data: Bytes = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let keys: Vec<BlockKey> = (0..6).map(numbered).collect();
        for k in &keys {
            tier.put(k.clone(), data.clone()).await;
        }
        let open = |tier: &DiskTier| {
            let index = tier.index.lock().unwrap();
            keys.iter()
                .map(|k| index.entries[k].open.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            open(&tier),
            [false; 6],
            "nothing is open before a small read"
        );

        // The first small read opens the file and keeps it: with its name gone, the next read
        // of the block still comes from the file it opened.
        assert_eq!(
            tier.get_range(&keys[0], 10..20).await.unwrap(),
            data.slice(10..20)
        );
        std::fs::remove_file(file_name(dir.path(), &keys[0])).unwrap();
        let r = 70_000..140_000;
        assert_eq!(
            tier.get_range(&keys[0], r.clone()).await.unwrap(),
            data.slice(r.start as usize..r.end as usize)
        );

        // Five more blocks read: no more than four files stay open, the oldest closed first.
        for k in &keys[1..] {
            assert_eq!(
                tier.get_range(k, 0..4096).await.unwrap(),
                data.slice(0..4096)
            );
        }
        assert_eq!(open(&tier), [false, false, true, true, true, true]);
        // Closed, its file unlinked: the block is gone, and counted as damaged.
        assert!(tier.get_range(&keys[0], 10..20).await.is_none());
        assert_eq!(tier.stats.disk_corrupt.load(Ordering::Relaxed), 1);
        assert_eq!(tier.stats.disk_hits.load(Ordering::Relaxed), 7);

        // A block written again (a new file in its place) is read from the new file.
        tier.put(keys[5].clone(), data.clone()).await;
        assert!(tier.index.lock().unwrap().entries[&keys[5]].open.is_none());
        assert_eq!(
            tier.get_range(&keys[5], 5..9).await.unwrap(),
            data.slice(5..9)
        );
    }

    #[test]
    fn the_files_kept_open_hold_at_most_8_mib_of_crc_tables() {
        for block in [4096, 1 << 20, 16 << 20, 64 << 20] {
            let n = max_open_files(block) as u64;
            assert!((16..=1024).contains(&n), "{block}: {n}");
            assert!(
                n * block.div_ceil(PIECE) * 8 <= OPEN_CRC_BYTES,
                "{block}: {n} files"
            );
        }
        assert_eq!(max_open_files(64 << 20), 64);
    }

    #[tokio::test]
    async fn the_shard_folders_are_made_at_open_and_again_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path().to_path_buf(), 1 << 30, 1 << 20, Arc::default())
            .await
            .unwrap();
        let shards = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(shards, 256);
        let key = numbered(7);
        let file = file_name(dir.path(), &key);
        std::fs::remove_dir(file.parent().unwrap()).unwrap();
        tier.put(key.clone(), Bytes::from_static(b"block")).await;
        assert!(file.is_file(), "the block was not written");
        assert_eq!(tier.get(&key).await.unwrap(), Bytes::from_static(b"block"));
    }

    #[test]
    fn ranges_read_only_their_pieces_and_check_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = BlockKey {
            scope: Arc::from("demo:"),
            path: Arc::from("a.fits"),
            version: Arc::from("\"v1\""),
            index: 3,
        };
        // Three and a half pieces.
        let data: Vec<u8> = (0..(3 * PIECE + PIECE / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        let path = file_name(dir.path(), &key);
        let written = write_block(&path, &key, &data).unwrap();
        assert_eq!(written, std::fs::metadata(&path).unwrap().len());
        for r in [
            0..1,
            0..4096,
            PIECE - 10..PIECE + 10,
            3 * PIECE..data.len() as u64,
        ] {
            let (found, got) = read_block_range(&path, r.clone()).unwrap();
            assert_eq!(found, key);
            assert_eq!(&got[..], &data[r.start as usize..r.end as usize], "{r:?}");
        }
        assert!(read_block_range(&path, 0..data.len() as u64 + 1).is_err());
        let (_, len, whole) = read_block(&path, true).unwrap();
        assert_eq!(
            (len, whole.unwrap()),
            (data.len() as u64, Bytes::from(data.clone()))
        );

        // One flipped byte in the second piece: reads covering it fail, others do not.
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw.len() - data.len() + (PIECE + 7) as usize;
        raw[at] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(read_block_range(&path, PIECE..PIECE + 16).is_err());
        assert!(read_block_range(&path, PIECE - 1..PIECE + 1).is_err());
        assert!(read_block_range(&path, 0..PIECE).is_ok());
        assert!(read_block_range(&path, 2 * PIECE..2 * PIECE + 100).is_ok());
        assert!(read_block(&path, true).is_err());
    }
}

//! The block cache: object reads served from aligned, version-keyed blocks in memory.
//!
//! [`CachedStore`] wraps any `ObjectStore` (behaviour by wrapping, not a flag in a backend).
//! A read resolves the object's current version (its ETag, or size and modification time where
//! a store has none) through a short-lived metadata cache, then assembles the requested range
//! from blocks of `block_size` bytes. Each block is keyed by scope (backend and volume root),
//! path, version and index, so a new version never meets old blocks and nothing needs
//! invalidating; blocks are fetched with `If-Match` on that version, so a change in the
//! backend between the metadata and a block read fails the read instead of mixing versions.
//! Concurrent misses for one block share one backend request (moka's `try_get_with`): the
//! waiters get its bytes, or its error.
//!
//! One-level listings are cached for `metadata_ttl` too. Writes through the wrapper (put,
//! multipart completion, copy, rename, delete) drop the metadata of the paths they change and
//! the listings of the folders above them, so the gateway's own writes are seen at once; changes
//! made behind the gateway's back are seen once `metadata_ttl` has passed.
//!
//! Memory is bounded by `memory_bytes` (moka weighs entries by their byte length), whatever the
//! object sizes. Below memory, an optional disk tier ([`disk`]) keeps blocks as checksummed
//! files within `disk_bytes`. A small random read that misses both tiers fetches only the
//! 64 KiB pieces it covers the first time its block misses; the second time the whole block
//! is fetched behind the reader (a small read going on from one of the object's recent
//! requests takes the whole block at once). Reads fetch blocks ahead of the reader in a
//! growing window, bounded for the whole gateway by `readahead_bytes`.

mod disk;
mod store;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use store::CachedStore;

/// The `[cache]` configuration section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Serve reads through the cache at all.
    pub enabled: bool,
    /// Bytes of object blocks kept in memory.
    pub memory_bytes: u64,
    /// Bytes of blocks kept on local disk; 0 turns the disk tier off.
    pub disk_bytes: u64,
    /// Where the disk tier keeps its files. Default: `<data_dir>/cache`.
    pub dir: Option<std::path::PathBuf>,
    /// The unit of caching and of backend reads. Measured with `benches/cache_get.rs` (16 MiB
    /// objects behind an S3 server on loopback, 4 readers): cold reads ran at 215, 482 and
    /// 647 MB/s with 1, 4 and 8 MiB blocks, as per-request cost dominates small blocks; but
    /// with 4 MiB blocks a gateway on the defaults peaked at 264 MiB resident during a 2 GiB
    /// GET against 173 MiB with 1 MiB (allocator retention of large buffers), and a random
    /// read (a FITS header is 2880 bytes) fetches four times more. So 1 MiB by default, and
    /// 4 MiB for volumes on remote archives where throughput matters more than memory.
    pub block_size: u64,
    /// How long an object's metadata (its version) is trusted before the backend is asked
    /// again; bounds how long a change made behind the gateway goes unseen.
    #[serde(with = "humantime_serde")]
    pub metadata_ttl: Duration,
    /// Most objects whose metadata is kept.
    pub metadata_entries: u64,
    /// Workspaces change under their users' hands: read them straight from the backend.
    pub bypass_workspaces: bool,
    /// Volumes (by id) always read straight from the backend.
    pub bypass_volumes: Vec<String>,
    /// The most blocks one reader has fetched ahead of what it consumed.
    pub readahead_blocks: u64,
    /// Bytes of blocks fetched ahead of their readers, for the whole gateway.
    pub readahead_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // Sized so a gateway with the default stays well inside 200 MiB resident.
            memory_bytes: 64 * 1024 * 1024,
            disk_bytes: 1024 * 1024 * 1024,
            dir: None,
            block_size: 1024 * 1024,
            metadata_ttl: Duration::from_secs(10),
            metadata_entries: 100_000,
            bypass_workspaces: true,
            bypass_volumes: Vec::new(),
            // 8 × 1 MiB in flight per reader keeps a remote archive's pipe full at ~50 ms per
            // request for a reader consuming ~150 MB/s.
            readahead_blocks: 8,
            readahead_bytes: 64 * 1024 * 1024,
        }
    }
}

impl CacheConfig {
    /// Problems with this section, as (key within the section, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(4096..=64 * 1024 * 1024).contains(&self.block_size) {
            out.push(("block_size".into(), "must be 4 KiB to 64 MiB".into()));
        }
        if self.enabled && self.memory_bytes < self.block_size * 4 {
            out.push((
                "memory_bytes".into(),
                "must hold at least four blocks (4 × block_size)".into(),
            ));
        }
        if self.disk_bytes > 0 && self.disk_bytes < self.block_size * 4 {
            out.push((
                "disk_bytes".into(),
                "must hold at least four blocks (4 × block_size), or be 0 to turn the disk tier off".into(),
            ));
        }
        if self.metadata_entries == 0 {
            out.push(("metadata_entries".into(), "must be at least 1".into()));
        }
        out
    }
}

/// What identifies one block: where the object lives, which version, which block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// The store the path is relative to (backend and volume root).
    pub scope: Arc<str>,
    pub path: Arc<str>,
    /// The object's ETag, or `size-mtime` where the store gives none.
    pub version: Arc<str>,
    pub index: u64,
}

/// Running totals, for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Misses that joined a fetch already in flight instead of starting one.
    pub merged: AtomicU64,
    pub bytes_served: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub metadata_hits: AtomicU64,
    pub metadata_misses: AtomicU64,
    pub listing_hits: AtomicU64,
    pub listing_misses: AtomicU64,
    /// Blocks fetched ahead that their reader then took.
    pub readahead_used: AtomicU64,
    /// Blocks fetched ahead that their reader never took (it stopped or seeked away).
    pub readahead_wasted: AtomicU64,
    /// Blocks dropped to stay within the memory budget.
    pub evictions: AtomicU64,
    pub disk_hits: AtomicU64,
    pub disk_misses: AtomicU64,
    /// Blocks on disk that failed their checksum (or could not be read) and were dropped.
    pub disk_corrupt: AtomicU64,
    /// Blocks that could not be written to disk (the read went on from the backend).
    pub disk_errors: AtomicU64,
    /// Blocks not written to disk because too many writes were pending.
    pub disk_skipped: AtomicU64,
    pub disk_evictions: AtomicU64,
    /// Small reads that missed both tiers and fetched only the pieces they cover.
    pub piece_fetches: AtomicU64,
}

impl CacheStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Where a read of an object stopped.
#[derive(Debug, Clone, Copy)]
struct Position {
    next: u64,
    window: u64,
    at: std::time::Instant,
}

/// The ends of the last requests to read an object, in the order they arrived.
#[derive(Debug, Clone, Copy)]
struct RecentEnds {
    ends: [u64; RECENT_ENDS],
    next: usize,
    at: std::time::Instant,
}

/// Request ends remembered per object: the requests a sequential reader has in flight at once
/// (the kernel's read-ahead sends several), so one that arrives before its predecessor
/// finishes is still seen going on from it.
const RECENT_ENDS: usize = 8;

/// How long a reader may pause between sequential requests and keep its window.
const POSITION_TTL: Duration = Duration::from_secs(30);
/// Objects whose read position is remembered.
const MAX_POSITIONS: usize = 4096;
/// Blocks remembered as touched by small reads that missed (about 100 bytes each), and for
/// how long.
const TOUCHED_BLOCKS: u64 = 65_536;
const TOUCHED_TTL: Duration = Duration::from_secs(600);
/// What a small read that misses both tiers fetches, at least: the aligned pieces of this
/// size that it covers (a 4 KiB read of a FITS cutout costs 64 KiB, not a whole block).
pub const PIECE_BYTES: u64 = 64 * 1024;

/// The shared memory tier: blocks and object metadata.
pub struct BlockCache {
    config: CacheConfig,
    blocks: moka::future::Cache<BlockKey, Bytes>,
    metadata: moka::future::Cache<(Arc<str>, String), store::Meta>,
    /// One-level listings (`list_with_delimiter`) by scope and prefix, for `metadata_ttl`.
    listings: moka::future::Cache<(Arc<str>, String), Arc<store::Listing>>,
    disk: Option<Arc<disk::DiskTier>>,
    /// Permits for blocks fetched ahead of their readers, one per block.
    readahead: Arc<tokio::sync::Semaphore>,
    /// Where each object's last read stopped, and its read-ahead window then, so a reader that
    /// goes on with the next request (ranged GETs, FUSE reads) keeps its window.
    positions: std::sync::Mutex<HashMap<(Arc<str>, String), Position>>,
    /// Where each object's last requests end, noted as they arrive (see [`Self::note_request`]).
    requests: std::sync::Mutex<HashMap<(Arc<str>, String), RecentEnds>>,
    /// Blocks that small reads missed, with how many times: the first miss fetches only the
    /// read's pieces, the second also the whole block behind the reader, later ones wait for
    /// that block.
    touched: moka::future::Cache<BlockKey, u32>,
    stats: Arc<CacheStats>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("config", &self.config)
            .field("weighted_size", &self.blocks.weighted_size())
            .finish_non_exhaustive()
    }
}

impl BlockCache {
    /// Builds the cache; with a directory and a disk budget, opens the disk tier there and
    /// rebuilds its index from the files it finds. A disk tier that cannot be opened is
    /// logged and left out: the cache then works from memory alone.
    pub async fn new(config: CacheConfig) -> Arc<Self> {
        let stats = Arc::new(CacheStats::default());
        let counted = stats.clone();
        let blocks = moka::future::Cache::builder()
            .max_capacity(config.memory_bytes)
            .weigher(|_k: &BlockKey, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let metadata = moka::future::Cache::builder()
            .max_capacity(config.metadata_entries)
            .time_to_live(config.metadata_ttl)
            .build();
        let listings = moka::future::Cache::builder()
            .max_capacity(config.metadata_entries / 10 + 1)
            .weigher(|_k: &(Arc<str>, String), v: &Arc<store::Listing>| {
                u32::try_from(v.objects.len() + v.prefixes.len())
                    .unwrap_or(u32::MAX)
                    .max(1)
            })
            .time_to_live(config.metadata_ttl)
            .build();
        let disk = match &config.dir {
            Some(dir) if config.disk_bytes > 0 => {
                match disk::DiskTier::open(
                    dir.clone(),
                    config.disk_bytes,
                    config.block_size,
                    stats.clone(),
                )
                .await
                {
                    Ok(d) => Some(d),
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), error = %e, "disk cache unavailable; caching in memory only");
                        None
                    }
                }
            }
            _ => None,
        };
        let permits = (config.readahead_bytes / config.block_size.max(1)) as usize;
        Arc::new(Self {
            readahead: Arc::new(tokio::sync::Semaphore::new(permits)),
            positions: std::sync::Mutex::new(HashMap::new()),
            requests: std::sync::Mutex::new(HashMap::new()),
            touched: moka::future::Cache::builder()
                .max_capacity(TOUCHED_BLOCKS)
                .time_to_live(TOUCHED_TTL)
                .build(),
            config,
            blocks,
            metadata,
            listings,
            disk,
            stats,
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Bytes of blocks held now (after pending evictions have run).
    pub async fn memory_bytes(&self) -> u64 {
        self.blocks.run_pending_tasks().await;
        self.blocks.weighted_size()
    }

    /// The read-ahead window of the read that stopped where a read of `path` starting at
    /// block `first` begins, if there was one (the reader is going on sequentially).
    pub(crate) fn sequential_window(
        &self,
        scope: &Arc<str>,
        path: &str,
        first: u64,
    ) -> Option<u64> {
        let positions = self.positions.lock().ok()?;
        match positions.get(&(scope.clone(), path.to_string())) {
            Some(p) if p.next == first && p.at.elapsed() < POSITION_TTL => Some(p.window),
            _ => None,
        }
    }

    /// Notes a request for bytes `range` of `path` as it arrives, and tells whether one of the
    /// object's recent requests ended where it starts: a reader going on sequentially, in
    /// requests of any size and whatever order they finish in.
    pub(crate) fn note_request(&self, scope: &Arc<str>, path: &str, range: &Range<u64>) -> bool {
        let Ok(mut requests) = self.requests.lock() else {
            return false;
        };
        let key = (scope.clone(), path.to_string());
        let now = std::time::Instant::now();
        let continues = requests.get(&key).is_some_and(|r| {
            now.duration_since(r.at) < POSITION_TTL && r.ends.contains(&range.start)
        });
        if !requests.contains_key(&key) && requests.len() >= MAX_POSITIONS {
            requests.retain(|_, r| now.duration_since(r.at) < POSITION_TTL);
            if requests.len() >= MAX_POSITIONS {
                requests.clear();
            }
        }
        let r = requests.entry(key).or_insert(RecentEnds {
            ends: [u64::MAX; RECENT_ENDS],
            next: 0,
            at: now,
        });
        r.ends[r.next] = range.end;
        r.next = (r.next + 1) % RECENT_ENDS;
        r.at = now;
        continues
    }

    /// Records where a read stopped.
    pub(crate) fn remember_position(&self, scope: &Arc<str>, path: &str, next: u64, window: u64) {
        self.record_position(scope, path, next, |_| window);
    }

    /// Records a small read inside block `index`: the reader's next block is `index + 1`. A
    /// window already recorded for that block (small reads inside a block a sequential read
    /// reached) is kept, so a reader going on into the next block keeps its read-ahead.
    pub(crate) fn remember_small_read(&self, scope: &Arc<str>, path: &str, index: u64) {
        self.record_position(scope, path, index + 1, |old| {
            old.filter(|p| p.next == index + 1 && p.at.elapsed() < POSITION_TTL)
                .map_or(1, |p| p.window)
        });
    }

    /// Records that a read of `path` stopped before block `next`, with the window `window`
    /// gives from what was recorded before; under one lock.
    fn record_position(
        &self,
        scope: &Arc<str>,
        path: &str,
        next: u64,
        window: impl FnOnce(Option<&Position>) -> u64,
    ) {
        let Ok(mut positions) = self.positions.lock() else {
            return;
        };
        let key = (scope.clone(), path.to_string());
        let window = window(positions.get(&key));
        if positions.len() >= MAX_POSITIONS {
            positions.retain(|_, p| p.at.elapsed() < POSITION_TTL);
            if positions.len() >= MAX_POSITIONS {
                positions.clear();
            }
        }
        positions.insert(
            key,
            Position {
                next,
                window,
                at: std::time::Instant::now(),
            },
        );
    }

    /// Bytes of blocks on disk (0 without a disk tier).
    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map(|d| d.bytes()).unwrap_or(0)
    }
}

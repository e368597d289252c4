//! The block cache against a counting wrapper around an in-memory store: single-flight fills,
//! warm reads without backend requests, versions never mixed, every byte equal to the source,
//! and the memory budget held.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use archway_cache::{BlockCache, CacheConfig, CachedStore};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};

const MIB: u64 = 1024 * 1024;

/// Counts the reads that reach the backend.
#[derive(Debug)]
struct Counting {
    inner: InMemory,
    gets: AtomicU64,
    heads: AtomicU64,
    lists: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting")
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            self.heads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // Make concurrent misses overlap, as a remote archive would.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let r = self.inner.get_opts(location, options).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return r;
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
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
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn pattern(len: u64, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed)
            .collect::<Vec<_>>(),
    )
}

async fn setup(config: CacheConfig) -> (Arc<Counting>, Arc<BlockCache>, Arc<CachedStore>) {
    let backend = Arc::new(Counting {
        inner: InMemory::new(),
        gets: AtomicU64::new(0),
        heads: AtomicU64::new(0),
        lists: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
    });
    let cache = BlockCache::new(config).await;
    let store = Arc::new(CachedStore::new(
        backend.clone(),
        cache.clone(),
        "test/volume",
    ));
    (backend, cache, store)
}

/// [`setup`] with 1 MiB blocks in 16 MiB of memory and one object already in the backend,
/// its metadata read through the cache (as the mount's open and a client's HEAD do).
async fn setup_with(
    name: &str,
    data: &Bytes,
) -> (Arc<Counting>, Arc<BlockCache>, Arc<CachedStore>, Path) {
    let (backend, cache, store) = setup(CacheConfig {
        block_size: MIB,
        memory_bytes: 16 * MIB,
        ..Default::default()
    })
    .await;
    let path = Path::from(name);
    backend
        .inner
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    store.head(&path).await.unwrap();
    (backend, cache, store, path)
}

async fn read(store: &CachedStore, path: &Path, range: Option<Range<u64>>) -> Result<Bytes> {
    let opts = GetOptions {
        range: range.map(GetRange::Bounded),
        ..Default::default()
    };
    let mut s = store.get_opts(path, opts).await?.into_stream();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_reads_fetch_each_block_once_and_warm_reads_fetch_nothing() {
    let (backend, cache, store) = setup(CacheConfig {
        memory_bytes: 128 * MIB,
        ..Default::default()
    })
    .await;
    let path = Path::from("big.fits");
    let data = pattern(64 * MIB, 1);
    backend
        .inner
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();

    let readers: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let path = path.clone();
            tokio::spawn(async move { read(&store, &path, None).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert!(r.await.unwrap() == data, "a reader got other bytes");
    }
    let blocks = 64 * MIB / cache.config().block_size;
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        blocks,
        "each block fetched exactly once"
    );
    assert!(
        archway_cache::CacheStats::get(&cache.stats().merged) > 0,
        "no fill was shared"
    );

    // Warm: no backend request at all (metadata is fresh too).
    let (gets, heads) = (
        backend.gets.load(Ordering::SeqCst),
        backend.heads.load(Ordering::SeqCst),
    );
    assert!(read(&store, &path, None).await.unwrap() == data);
    assert_eq!(
        read(&store, &path, Some(5 * MIB + 3..9 * MIB + 7))
            .await
            .unwrap(),
        data.slice(5 * MIB as usize + 3..9 * MIB as usize + 7)
    );
    assert_eq!(backend.gets.load(Ordering::SeqCst), gets);
    assert_eq!(backend.heads.load(Ordering::SeqCst), heads);
}

#[tokio::test]
async fn a_changed_object_is_seen_after_the_ttl_and_never_mixed() {
    let (backend, _cache, store) = setup(CacheConfig {
        metadata_ttl: Duration::from_millis(200),
        memory_bytes: 32 * MIB,
        ..Default::default()
    })
    .await;
    let path = Path::from("obj");
    let v1 = pattern(3 * MIB, 1);
    let v2 = pattern(3 * MIB, 2);
    backend
        .inner
        .put(&path, PutPayload::from(v1.clone()))
        .await
        .unwrap();
    // Warm only the first block of v1.
    assert_eq!(
        read(&store, &path, Some(0..100)).await.unwrap(),
        v1.slice(0..100)
    );
    // Behind the cache's back, the object changes.
    backend
        .inner
        .put(&path, PutPayload::from(v2.clone()))
        .await
        .unwrap();
    // Within the TTL a whole read either is v1 or fails; it never mixes v1 and v2 blocks.
    match read(&store, &path, None).await {
        Ok(bytes) => assert!(bytes == v1, "a read mixed versions"),
        Err(e) => assert!(matches!(e, object_store::Error::Precondition { .. }), "{e}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        read(&store, &path, None).await.unwrap() == v2,
        "the new version after the TTL"
    );

    // A write through the cache is seen at once.
    let v3 = pattern(MIB + 5, 3);
    store
        .put(&path, PutPayload::from(v3.clone()))
        .await
        .unwrap();
    assert!(read(&store, &path, None).await.unwrap() == v3);
    store.delete(&path).await.unwrap();
    assert!(matches!(
        read(&store, &path, None).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_cold_read_asks_the_backend_once_with_no_separate_head() {
    let (backend, cache, store) = setup(CacheConfig {
        memory_bytes: 32 * MIB,
        ..Default::default()
    })
    .await;
    // A small file, read whole: one ranged GET, which also tells size and version.
    let small = Path::from("small.fits");
    let data = pattern(64 * 1024, 4);
    backend
        .inner
        .put(&small, data.clone().into())
        .await
        .unwrap();
    assert!(read(&store, &small, None).await.unwrap() == data);
    assert_eq!(backend.gets.load(Ordering::SeqCst), 1);
    assert_eq!(backend.heads.load(Ordering::SeqCst), 0, "no HEAD first");
    assert!(read(&store, &small, Some(100..200)).await.unwrap() == data.slice(100..200));
    assert_eq!(backend.gets.load(Ordering::SeqCst), 1, "then from memory");

    // A read in the middle of a large object: its first block comes with the metadata, the
    // rest by version as usual; never a HEAD.
    let big = Path::from("big.fits");
    let data = pattern(5 * MIB + 3, 6);
    backend.inner.put(&big, data.clone().into()).await.unwrap();
    let r = 2 * MIB + 10..4 * MIB + 20;
    let got = read(&store, &big, Some(r.clone())).await.unwrap();
    assert!(got == data.slice(r.start as usize..r.end as usize));
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        1 + 3,
        "blocks 2, 3 and 4"
    );
    assert_eq!(backend.heads.load(Ordering::SeqCst), 0);
    // A HEAD through the cache is a HEAD, and now answered from the cached metadata.
    assert_eq!(store.head(&big).await.unwrap().size, 5 * MIB + 3);
    assert_eq!(backend.heads.load(Ordering::SeqCst), 0);

    // Past the end, and missing objects: the errors a store gives.
    let past = read(&store, &small, Some(70_000..70_010)).await;
    assert!(past.is_err(), "a range past the end");
    let missing = read(&store, &Path::from("missing.fits"), None).await;
    assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
    assert!(archway_cache::CacheStats::get(&cache.stats().misses) >= 4);
}

#[tokio::test]
async fn a_read_pinned_to_a_newer_version_than_the_cached_metadata_gets_it() {
    let (backend, _cache, store) = setup(CacheConfig {
        metadata_ttl: Duration::from_secs(3600),
        memory_bytes: 32 * MIB,
        ..Default::default()
    })
    .await;
    let path = Path::from("obj");
    let (v1, v2) = (pattern(2 * MIB, 1), pattern(2 * MIB + 9, 2));
    backend.inner.put(&path, v1.clone().into()).await.unwrap();
    assert!(read(&store, &path, None).await.unwrap() == v1);
    // Behind the cache's back the object changes; a reader learns the new ETag elsewhere
    // (a mount from a listing) and pins its read to it.
    let put = backend.inner.put(&path, v2.clone().into()).await.unwrap();
    let heads = backend.heads.load(Ordering::SeqCst);
    let opts = GetOptions {
        if_match: put.e_tag.clone(),
        ..Default::default()
    };
    let got = store
        .get_opts(&path, opts)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == v2, "the pinned version, not a precondition failure");
    assert_eq!(
        backend.heads.load(Ordering::SeqCst),
        heads + 1,
        "asked once more"
    );
    // The refreshed metadata serves unpinned reads too, and an old pin still fails.
    assert!(read(&store, &path, None).await.unwrap() == v2);
    let old = GetOptions {
        if_match: Some("\"not-the-etag\"".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.get_opts(&path, old).await,
        Err(object_store::Error::Precondition { .. })
    ));
}

#[tokio::test]
async fn random_reads_equal_the_source() {
    let (backend, _cache, store) = setup(CacheConfig {
        block_size: 64 * 1024,
        memory_bytes: 512 * 1024,
        ..Default::default()
    })
    .await;
    let mut objects = Vec::new();
    for (i, len) in [0u64, 1, 65_535, 65_536, 65_537, 1_000_003]
        .into_iter()
        .enumerate()
    {
        let path = Path::from(format!("o{i}"));
        let data = pattern(len, i as u8);
        backend
            .inner
            .put(&path, PutPayload::from(data.clone()))
            .await
            .unwrap();
        objects.push((path, data));
    }
    let mut state: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if n == 0 { 0 } else { state % n }
    };
    for _ in 0..2000 {
        let (path, data) = &objects[next(objects.len() as u64) as usize];
        let len = data.len() as u64;
        if len == 0 {
            assert!(read(&store, path, None).await.unwrap().is_empty());
            continue;
        }
        let start = next(len);
        let end = start + 1 + next(len - start);
        let got = read(&store, path, Some(start..end)).await.unwrap();
        assert_eq!(
            got,
            data.slice(start as usize..end as usize),
            "{path} {start}..{end}"
        );
    }
    // A range past the end is an error, as from the backend.
    let (path, data) = &objects[5];
    assert!(
        read(
            &store,
            path,
            Some(data.len() as u64 + 1..data.len() as u64 + 10)
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn memory_stays_within_its_budget() {
    let budget = 4 * MIB;
    let (backend, cache, store) = setup(CacheConfig {
        block_size: 256 * 1024,
        memory_bytes: budget,
        ..Default::default()
    })
    .await;
    // A workload ten times the cache.
    for i in 0..10 {
        let path = Path::from(format!("f{i}"));
        backend
            .inner
            .put(&path, PutPayload::from(pattern(4 * MIB, i)))
            .await
            .unwrap();
        assert_eq!(
            read(&store, &path, None).await.unwrap().len() as u64,
            4 * MIB
        );
        let held = cache.memory_bytes().await;
        assert!(
            held <= budget,
            "the memory tier holds {held} bytes, over its {budget}"
        );
    }
    assert!(cache.memory_bytes().await > 0);
}

/// Waits until the disk tier holds at least `bytes` (its writes run behind the readers).
async fn settle(cache: &BlockCache, bytes: u64) {
    for _ in 0..500 {
        if cache.disk_bytes() >= bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the disk tier holds {} bytes, expected {bytes}",
        cache.disk_bytes()
    );
}

fn disk_usage(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap();
        if shard.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap() {
                total += f.unwrap().metadata().unwrap().len();
            }
        }
    }
    total
}

fn disk_config(dir: &std::path::Path, disk_bytes: u64) -> CacheConfig {
    CacheConfig {
        block_size: 256 * 1024,
        memory_bytes: 2 * MIB,
        disk_bytes,
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

/// `data` at `path` behind a disk-tiered cache in `dir`, read once (so every block is on
/// disk), then the cache restarted over the same directory: an empty memory tier.
async fn on_disk_then_restarted(
    dir: &std::path::Path,
    path: &Path,
    data: &Bytes,
) -> (Arc<Counting>, Arc<BlockCache>, CachedStore) {
    let (backend, cache, store) = setup(disk_config(dir, 64 * MIB)).await;
    backend
        .inner
        .put(path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    assert!(read(&store, path, None).await.unwrap() == *data);
    settle(&cache, data.len() as u64).await;
    drop((store, cache));
    restarted(dir, &backend).await
}

/// A new cache over the disk tier in `dir`: it rebuilds its index from the files.
async fn restarted(
    dir: &std::path::Path,
    backend: &Arc<Counting>,
) -> (Arc<Counting>, Arc<BlockCache>, CachedStore) {
    let cache = BlockCache::new(disk_config(dir, 64 * MIB)).await;
    let store = CachedStore::new(backend.clone(), cache.clone(), "test/volume");
    (backend.clone(), cache, store)
}

/// The block files of the disk tier in `dir`.
fn block_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect()
}

/// Flips the last byte of a block file (in its last piece of data).
fn damage(file: &std::path::Path) {
    let mut raw = std::fs::read(file).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0xFF;
    std::fs::write(file, raw).unwrap();
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart_and_drops_corrupt_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::from("obj.fits");
    let data = pattern(2 * MIB, 9);
    // Restart: a new cache over the same directory rebuilds its index from the files.
    let (backend, cache, store) = on_disk_then_restarted(dir.path(), &path, &data).await;
    assert!(cache.disk_bytes() >= 2 * MIB);
    let gets = backend.gets.load(Ordering::SeqCst);
    assert!(read(&store, &path, None).await.unwrap() == data);
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        gets,
        "a warm disk read went to the backend"
    );
    assert_eq!(archway_cache::CacheStats::get(&cache.stats().disk_hits), 8);

    // Damage one block file on disk; a fresh memory tier must notice and refetch it.
    damage(&block_files(dir.path())[3]);
    drop((store, cache));
    let (backend, cache, store) = restarted(dir.path(), &backend).await;
    let gets = backend.gets.load(Ordering::SeqCst);
    assert!(
        read(&store, &path, None).await.unwrap() == data,
        "a corrupt block was served"
    );
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().disk_corrupt),
        1
    );
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        gets + 1,
        "only the damaged block is refetched"
    );
}

/// The block index a block file holds (the last 8 bytes of the key in its header).
fn block_index_of(file: &std::path::Path) -> u64 {
    let raw = std::fs::read(file).unwrap();
    let key_len = u32::from_le_bytes(raw[8..12].try_into().unwrap()) as usize;
    u64::from_le_bytes(raw[12 + key_len - 8..12 + key_len].try_into().unwrap())
}

#[tokio::test]
async fn small_random_reads_take_only_their_pieces_from_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::from("obj.fits");
    let data = pattern(2 * MIB, 5);
    // After a restart (empty memory tier): 4 KiB reads here and there, across piece edges.
    let (backend, cache, store) = on_disk_then_restarted(dir.path(), &path, &data).await;
    let gets = backend.gets.load(Ordering::SeqCst);
    // No read lands in the block after the one before it (that would be a sequential read).
    let offsets = [
        5u64,
        777_777,
        65_530,
        1_600_000,
        300_000,
        1_040_000,
        2 * MIB - 4096,
    ];
    for &at in &offsets {
        let r = at..at + 4096;
        assert!(
            read(&store, &path, Some(r.clone())).await.unwrap()
                == data.slice(r.start as usize..r.end as usize),
            "{r:?}"
        );
    }
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        gets,
        "all from the disk tier"
    );
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().disk_hits),
        offsets.len() as u64
    );
    assert_eq!(
        cache.memory_bytes().await,
        0,
        "small reads do not load whole blocks into memory"
    );

    // A damaged piece: the read that covers it is served right (from the backend), counted,
    // and the block dropped.
    let block = 256 * 1024u64;
    let victim = block_files(dir.path())
        .into_iter()
        .find(|f| block_index_of(f) == 2)
        .unwrap();
    damage(&victim);
    let r = 3 * block - 100..3 * block - 10;
    assert!(
        read(&store, &path, Some(r.clone())).await.unwrap()
            == data.slice(r.start as usize..r.end as usize),
        "a damaged piece was served"
    );
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().disk_corrupt),
        1
    );
    assert_eq!(backend.gets.load(Ordering::SeqCst), gets + 1);
    assert!(!victim.exists(), "the damaged block file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_sequential_reads_with_a_disk_tier_still_get_read_ahead() {
    // 32 KiB requests (as FUSE sends without a large read-ahead) are small reads inside a
    // block; going on into the next block must still be seen as sequential.
    let dir = tempfile::tempdir().unwrap();
    let block = 256 * 1024u64;
    let (backend, cache, store) = setup(CacheConfig {
        readahead_blocks: 4,
        ..disk_config(dir.path(), 64 * MIB)
    })
    .await;
    let path = Path::from("stream.bin");
    let data = pattern(32 * block, 7);
    backend
        .inner
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let step = 32 * 1024u64;
    for at in (0..32 * block).step_by(step as usize) {
        if at % block == 0 {
            // Time for the blocks fetched ahead to arrive, as a reader that processes its
            // data gives.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = read(&store, &path, Some(at..at + step)).await.unwrap();
        assert!(got == data.slice(at as usize..(at + step) as usize), "{at}");
    }
    // Only the first blocks, before the window has grown, are waited for: the rest were
    // fetched ahead, and every read found its block in memory.
    let hits = archway_cache::CacheStats::get(&cache.stats().hits);
    assert!(
        hits >= 8 * 32 - 3,
        "reads served from memory: {hits} of 256"
    );
    assert!(
        backend.gets.load(Ordering::SeqCst) <= 32 + 4,
        "each block fetched about once: {}",
        backend.gets.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn the_disk_tier_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 4 * MIB;
    let (backend, cache, store) = setup(disk_config(dir.path(), budget)).await;
    // Ten times the disk budget, read twice.
    for round in 0..2 {
        for i in 0..10 {
            let path = Path::from(format!("f{i}"));
            if round == 0 {
                backend
                    .inner
                    .put(&path, PutPayload::from(pattern(4 * MIB, i)))
                    .await
                    .unwrap();
            }
            assert_eq!(
                read(&store, &path, None).await.unwrap(),
                pattern(4 * MIB, i)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let used = disk_usage(dir.path());
            assert!(
                used <= budget,
                "the disk tier uses {used} bytes, over its {budget}"
            );
            assert!(cache.disk_bytes() <= budget);
        }
    }
    assert!(archway_cache::CacheStats::get(&cache.stats().disk_evictions) > 0);
}

#[tokio::test]
async fn listings_are_cached_and_dropped_by_writes_below_them() {
    let (backend, _cache, store) = setup(CacheConfig::default()).await;
    backend
        .inner
        .put(&Path::from("a/b/one.fits"), PutPayload::from_static(b"1"))
        .await
        .unwrap();
    let names = |l: &ListResult| {
        let mut v: Vec<String> = l.objects.iter().map(|o| o.location.to_string()).collect();
        v.extend(l.common_prefixes.iter().map(|p| format!("{p}/")));
        v
    };
    let first = store
        .list_with_delimiter(Some(&Path::from("a/b")))
        .await
        .unwrap();
    let again = store
        .list_with_delimiter(Some(&Path::from("a/b")))
        .await
        .unwrap();
    assert_eq!(names(&first), names(&again));
    assert_eq!(
        backend.lists.load(Ordering::SeqCst),
        1,
        "the second listing came from the cache"
    );
    store
        .list_with_delimiter(Some(&Path::from("a")))
        .await
        .unwrap();
    assert_eq!(backend.lists.load(Ordering::SeqCst), 2);
    // A write through the cache drops the listings of every folder above it.
    store
        .put(&Path::from("a/b/two.fits"), PutPayload::from_static(b"2"))
        .await
        .unwrap();
    let after = store
        .list_with_delimiter(Some(&Path::from("a/b")))
        .await
        .unwrap();
    assert_eq!(names(&after), vec!["a/b/one.fits", "a/b/two.fits"]);
    store
        .list_with_delimiter(Some(&Path::from("a")))
        .await
        .unwrap();
    assert_eq!(backend.lists.load(Ordering::SeqCst), 4);
    store.delete(&Path::from("a/b/one.fits")).await.unwrap();
    let gone = store
        .list_with_delimiter(Some(&Path::from("a/b")))
        .await
        .unwrap();
    assert_eq!(names(&gone), vec!["a/b/two.fits"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_random_reads_equal_the_source() {
    let (backend, _cache, store) = setup(CacheConfig {
        block_size: 16 * 1024,
        memory_bytes: 256 * 1024,
        ..Default::default()
    })
    .await;
    let data = pattern(3 * MIB + 12_345, 7);
    let path = Path::from("shared.bin");
    backend
        .inner
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let mut readers = Vec::new();
    for seed in 0..8u64 {
        let (store, path, data) = (store.clone(), path.clone(), data.clone());
        readers.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15 ^ (seed + 1);
            let mut next = |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n
            };
            let len = data.len() as u64;
            for _ in 0..150 {
                let start = next(len);
                let end = start + 1 + next((len - start).min(300_000));
                let got = read(&store, &path, Some(start..end)).await.unwrap();
                assert_eq!(
                    got,
                    data.slice(start as usize..end as usize),
                    "{start}..{end}"
                );
            }
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_ahead_is_used_bounded_and_counted_when_wasted() {
    let (backend, cache, store) = setup(CacheConfig {
        block_size: 64 * 1024,
        memory_bytes: 64 * MIB,
        readahead_blocks: 8,
        // Two blocks ahead for the whole cache.
        readahead_bytes: 128 * 1024,
        ..Default::default()
    })
    .await;
    let mut objects = Vec::new();
    for i in 0..6u8 {
        let path = Path::from(format!("seq{i}"));
        let data = pattern(2 * MIB, i);
        backend
            .inner
            .put(&path, PutPayload::from(data.clone()))
            .await
            .unwrap();
        objects.push((path, data));
    }
    // Six sequential readers at once: each has its next block in flight, and at most two
    // blocks are ahead in the whole cache.
    let readers: Vec<_> = objects
        .iter()
        .cloned()
        .map(|(path, data)| {
            let store = store.clone();
            tokio::spawn(async move { assert!(read(&store, &path, None).await.unwrap() == data) })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let peak = backend.max_in_flight.load(Ordering::SeqCst);
    assert!(
        peak <= 6 + 2,
        "{peak} backend reads in flight; the bound is 6 readers + 2 ahead"
    );
    assert!(
        archway_cache::CacheStats::get(&cache.stats().readahead_used) > 0,
        "no block was read ahead"
    );

    // A reader that stops early wastes what was fetched for it.
    let (cache2_backend, cache2, store2) = setup(CacheConfig {
        block_size: 64 * 1024,
        readahead_blocks: 8,
        ..Default::default()
    })
    .await;
    let path = Path::from("long");
    cache2_backend
        .inner
        .put(&path, PutPayload::from(pattern(4 * MIB, 3)))
        .await
        .unwrap();
    let mut s = store2
        .get_opts(&path, GetOptions::default())
        .await
        .unwrap()
        .into_stream();
    for _ in 0..4 {
        s.next().await.unwrap().unwrap();
    }
    drop(s);
    assert!(archway_cache::CacheStats::get(&cache2.stats().readahead_wasted) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_keep_their_read_ahead_and_a_seek_resets_it() {
    let block = 64 * 1024;
    let (backend, _cache, store) = setup(CacheConfig {
        block_size: block,
        readahead_blocks: 4,
        ..Default::default()
    })
    .await;
    let path = Path::from("stream.bin");
    let data = pattern(64 * block, 5);
    backend
        .inner
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    // A reader asking for one block at a time, front to back, as FUSE or a ranged-GET client
    // does: after a few requests, its next blocks are already cached when it asks.
    let mut waited_for_backend = 0;
    for i in 0..32u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let gets = backend.gets.load(Ordering::SeqCst);
        let got = read(&store, &path, Some(i * block..(i + 1) * block))
            .await
            .unwrap();
        assert_eq!(
            got,
            data.slice((i * block) as usize..((i + 1) * block) as usize)
        );
        if i >= 4 && backend.gets.load(Ordering::SeqCst) > gets + 3 {
            waited_for_backend += 1;
        }
    }
    assert_eq!(waited_for_backend, 0);
    let fetched_sequentially = backend.gets.load(Ordering::SeqCst);
    assert!(fetched_sequentially >= 32, "{fetched_sequentially}");
    // After a seek far away, the window starts again from one block: nothing is read ahead
    // of a single-block request there.
    let before = backend.gets.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let settled = backend.gets.load(Ordering::SeqCst);
    read(&store, &path, Some(60 * block..61 * block))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        backend.gets.load(Ordering::SeqCst) - settled <= 1,
        "a seek kept the old window ({before})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_random_read_fetches_its_pieces_and_a_block_missed_twice_is_fetched_behind_it() {
    let data = pattern(8 * MIB, 3);
    let (backend, cache, store, path) = setup_with("cube.fits", &data).await;
    let fetched = || archway_cache::CacheStats::get(&cache.stats().bytes_fetched);
    // 4 KiB reads in different blocks, none going on from the one before: each costs the
    // 64 KiB piece it lies in (two, where it straddles a piece edge), not a 1 MiB block.
    let reads = [
        5 * MIB + 12_288,
        MIB + 65_536 - 2048,
        7 * MIB + 900_000,
        3 * MIB,
    ];
    for (i, &at) in reads.iter().enumerate() {
        let before = fetched();
        let got = read(&store, &path, Some(at..at + 4096)).await.unwrap();
        assert!(got == data.slice(at as usize..at as usize + 4096), "{at}");
        let cost = fetched() - before;
        let pieces = if i == 1 { 2 } else { 1 };
        assert_eq!(cost, pieces * archway_cache::PIECE_BYTES, "read at {at}");
    }
    assert_eq!(
        cache.memory_bytes().await,
        0,
        "pieces are not kept as blocks"
    );
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().piece_fetches),
        4
    );

    // The same block missed again: answered from its piece, and the whole block fetched
    // behind the reader, into memory.
    let at = 5 * MIB + 500_000;
    let got = read(&store, &path, Some(at..at + 4096)).await.unwrap();
    assert!(got == data.slice(at as usize..at as usize + 4096));
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().piece_fetches),
        5
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cache.memory_bytes().await < MIB {
        assert!(
            std::time::Instant::now() < deadline,
            "the block missed twice was not fetched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(fetched(), 6 * archway_cache::PIECE_BYTES + MIB);
    // Then from memory: no request at all.
    let gets = backend.gets.load(Ordering::SeqCst);
    for at in [5 * MIB + 100, 6 * MIB - 4096] {
        let got = read(&store, &path, Some(at..at + 4096)).await.unwrap();
        assert!(got == data.slice(at as usize..at as usize + 4096));
    }
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        gets,
        "then from memory"
    );
    // A block missed a third time while its fetch is not done joins it: no piece is fetched.
    let at = 2 * MIB + 7;
    for _ in 0..2 {
        read(&store, &path, Some(at..at + 4096)).await.unwrap();
    }
    let pieces = archway_cache::CacheStats::get(&cache.stats().piece_fetches);
    let got = read(&store, &path, Some(at..at + 4096)).await.unwrap();
    assert!(got == data.slice(at as usize..at as usize + 4096));
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().piece_fetches),
        pieces,
        "a third miss fetched a piece"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_sequential_requests_take_whole_blocks_and_a_second_pass_is_cached() {
    // As a FUSE mount without a large read-ahead reads a file: 128 KiB requests, each going
    // on from the last. Only the first one (it could be a header read) fetches pieces.
    let data = pattern(3 * MIB + 5, 11);
    let (backend, cache, store, path) = setup_with("table.bin", &data).await;
    let step = 128 * 1024u64;
    let pass = || async {
        let mut at = 0u64;
        while at < data.len() as u64 {
            let end = (at + step).min(data.len() as u64);
            let got = read(&store, &path, Some(at..end)).await.unwrap();
            assert!(got == data.slice(at as usize..end as usize), "{at}");
            at = end;
        }
    };
    pass().await;
    assert_eq!(
        archway_cache::CacheStats::get(&cache.stats().piece_fetches),
        1,
        "only the first request fetched pieces"
    );
    let gets = backend.gets.load(Ordering::SeqCst);
    pass().await;
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        gets,
        "the second pass went to the backend"
    );
}

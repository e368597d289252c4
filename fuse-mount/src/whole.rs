//! Whole-file copies for FUSE passthrough: a file up to `whole_file_max` opened for reading
//! is fetched whole into a local file at open, and the kernel reads that file directly (no
//! request reaches the mount per read: the page cache and the local disk answer, as for a
//! local file). The s3fs way of reading, held to a size: a file read in full or at random
//! gains; a large file of which only a header is read would be fetched whole, hence the limit.
//!
//! Copies are of one version (the one pinned at open, fetched with `If-Match`), kept in
//! `<cache-dir>/whole/` within a byte budget, least recently opened removed first (a copy
//! still open stays readable: the kernel holds its file). They are not kept across restarts:
//! the folder is emptied when the mount starts. The kernel reads a copy without the block
//! tier's checksums; a copy is written only from a complete, version-checked fetch.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::spool::blocking;

/// Requests of one fetch, and of all fetches at once. Each writes its response to the copy
/// as it comes, [`WRITE_BATCH`] at a time, so the memory fetches hold is about
/// `PARTS_IN_FLIGHT × WRITE_BATCH` (plus the sockets' buffers), whatever the part size.
const PARTS_IN_FLIGHT: usize = 4;
/// The smallest and largest ranged request of a fetch: a file is cut into
/// [`PARTS_IN_FLIGHT`] parts within these bounds. Measured on a 512 MiB file (2-core VM,
/// gateway on loopback, page cache dropped): 32 MiB parts fetched it in 240–300 ms against
/// 310–365 with 8 MiB parts, the gateway spending a quarter to a third less CPU.
const PART_MIN: u64 = 8 * 1024 * 1024;
const PART_MAX: u64 = 32 * 1024 * 1024;
/// Bytes of a response written to the copy per hand-over to a blocking thread.
const WRITE_BATCH: usize = 1024 * 1024;
/// The most copies indexed, whatever their sizes (tiny files would otherwise fill the index
/// long before the byte budget).
const MAX_COPIES: usize = 65_536;

/// What identifies a copy: the volume's index in the mount, the key and the version.
type Key = (usize, String, String);

/// A complete local copy of one version of a file, open for reading.
#[derive(Debug, Clone)]
pub struct WholeCopy {
    pub file: Arc<File>,
    pub version: String,
}

#[derive(Debug)]
struct Copy {
    path: PathBuf,
    bytes: u64,
    used: u64,
}

type Fetch = Arc<tokio::sync::OnceCell<Option<Arc<File>>>>;

#[derive(Debug, Default)]
struct State {
    copies: HashMap<Key, Copy>,
    fetching: HashMap<Key, Fetch>,
    total: u64,
    tick: u64,
    named: u64,
}

/// The whole-file copies of a mount.
#[derive(Debug)]
pub struct WholeCopies {
    dir: PathBuf,
    max_object: u64,
    budget: u64,
    state: Mutex<State>,
    parts: tokio::sync::Semaphore,
    metrics: Option<crate::MountMetrics>,
}

impl WholeCopies {
    /// Copies of files up to `max_object` bytes in `dir` (emptied first), at most `budget`
    /// bytes of them. Called once, before the mount serves anything.
    #[allow(clippy::disallowed_methods)]
    pub fn open(dir: PathBuf, max_object: u64, budget: u64) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            max_object,
            budget,
            state: Mutex::default(),
            parts: tokio::sync::Semaphore::new(PARTS_IN_FLIGHT),
            metrics: None,
        })
    }

    /// Counts the fetches' requests in `metrics` (`archway_fuse_backend_requests_total`).
    pub fn with_metrics(mut self, metrics: crate::MountMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count_get(&self) {
        if let Some(m) = &self.metrics {
            m.backend("get");
        }
    }

    /// Whether a file of `size` bytes is copied whole.
    pub fn takes(&self, size: u64) -> bool {
        size > 0 && size <= self.max_object && size <= self.budget
    }

    /// Bytes of copies held.
    pub fn bytes(&self) -> u64 {
        self.state.lock().map(|s| s.total).unwrap_or(0)
    }

    /// The copy of `version` of `key` (`size` bytes), fetched from `store` unless held; one
    /// fetch for concurrent opens of the same version. None when the fetch failed (logged:
    /// the open goes on without a copy).
    #[allow(clippy::disallowed_methods)] // the file is opened on a blocking thread
    pub async fn get(
        &self,
        volume: usize,
        key: &str,
        version: &str,
        size: u64,
        store: &Arc<dyn ObjectStore>,
    ) -> Option<WholeCopy> {
        let k: Key = (volume, key.to_string(), version.to_string());
        let held = {
            let mut s = self.state.lock().ok()?;
            s.tick += 1;
            let tick = s.tick;
            s.copies.get_mut(&k).map(|c| {
                c.used = tick;
                c.path.clone()
            })
        };
        // A held copy is opened for this open only: the index keeps no file open, so the open
        // files are those in use, however many copies are held.
        if let Some(path) = held {
            let opened = path.clone();
            match blocking(move || File::open(opened)).await {
                Ok(file) => {
                    return Some(WholeCopy {
                        file: Arc::new(file),
                        version: version.to_string(),
                    });
                }
                // Removed meanwhile (evicted, or its folder emptied): fetched again.
                Err(e) => {
                    tracing::debug!(key, error = %e, "a held whole-file copy could not be opened");
                    if let Ok(mut s) = self.state.lock()
                        && s.copies.get(&k).is_some_and(|c| c.path == path)
                        && let Some(c) = s.copies.remove(&k)
                    {
                        s.total -= c.bytes;
                    }
                }
            }
        }
        let fetch = self
            .state
            .lock()
            .ok()?
            .fetching
            .entry(k.clone())
            .or_default()
            .clone();
        let file = fetch
            .get_or_init(|| async {
                let file = self.fetch(&k, size, store).await;
                if let Ok(mut s) = self.state.lock() {
                    s.fetching.remove(&k);
                }
                file
            })
            .await
            .clone()?;
        Some(WholeCopy {
            file,
            version: version.to_string(),
        })
    }

    /// Fetches a copy into the folder and indexes it, making room within the budget.
    async fn fetch(&self, k: &Key, size: u64, store: &Arc<dyn ObjectStore>) -> Option<Arc<File>> {
        let (_, key, version) = k;
        let path = {
            let mut s = self.state.lock().ok()?;
            s.named += 1;
            self.dir.join(format!("{}.copy", s.named))
        };
        match self.download(&path, key, version, size, store).await {
            Ok(file) => {
                let file = Arc::new(file);
                let evicted = {
                    let mut s = self.state.lock().ok()?;
                    s.tick += 1;
                    let used = s.tick;
                    s.total += size;
                    let copy = Copy {
                        path,
                        bytes: size,
                        used,
                    };
                    if let Some(old) = s.copies.insert(k.clone(), copy) {
                        s.total -= old.bytes;
                    }
                    Self::over_budget(&mut s, self.budget)
                };
                remove_files(evicted).await;
                Some(file)
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "could not fetch a whole-file copy; reading through the mount");
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
        }
    }

    /// Takes the least recently opened copies out of the index until the rest fit `budget`
    /// (and [`MAX_COPIES`]); their files, to remove.
    fn over_budget(s: &mut State, budget: u64) -> Vec<PathBuf> {
        let mut out = Vec::new();
        while s.total > budget || s.copies.len() > MAX_COPIES {
            let Some(oldest) = s
                .copies
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(c) = s.copies.remove(&oldest) {
                s.total -= c.bytes;
                out.push(c.path);
            }
        }
        out
    }

    /// A ranged GET of `version` (If-Match) within the fetches' permits, counted; the permit
    /// is held while the body is read.
    async fn request(
        &self,
        store: &Arc<dyn ObjectStore>,
        location: &object_store::path::Path,
        version: &str,
        range: Range<u64>,
    ) -> std::io::Result<(tokio::sync::SemaphorePermit<'_>, object_store::GetResult)> {
        let permit = self.parts.acquire().await.map_err(std::io::Error::other)?;
        self.count_get();
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: Some(version.to_string()),
            ..Default::default()
        };
        let r = store
            .get_opts(location, opts)
            .await
            .map_err(std::io::Error::other)?;
        Ok((permit, r))
    }

    /// Fetches every byte of `key` at `version` into a new file at `path`, in parallel ranged
    /// requests; the file, open for reading (the kernel's handles on it only read).
    #[allow(clippy::disallowed_methods)] // the file calls run on blocking threads
    async fn download(
        &self,
        path: &Path,
        key: &str,
        version: &str,
        size: u64,
        store: &Arc<dyn ObjectStore>,
    ) -> std::io::Result<File> {
        let location = object_store::path::Path::from(key);
        let create = |path: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
        };
        if size <= WRITE_BATCH as u64 {
            // A small file: one request, and the file made and written in one hand-over.
            let (_permit, r) = self.request(store, &location, version, 0..size).await?;
            let data = r.bytes().await.map_err(std::io::Error::other)?;
            whole_part(&(0..size), data.len() as u64)?;
            let path = path.to_path_buf();
            return blocking(move || {
                let f = create(&path)?;
                f.write_all_at(&data, 0)?;
                Ok(f)
            })
            .await;
        }
        let out = {
            let path = path.to_path_buf();
            blocking(move || {
                let f = create(&path)?;
                // Blocks reserved at once: the parts' writes then fill allocated extents
                // instead of reserving blocks page by page. A file system without
                // fallocate gets a sparse file of the size.
                match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::OPNOTSUPP) => f.set_len(size)?,
                    Err(e) => return Err(e.into()),
                }
                Ok(Arc::new(f))
            })
            .await?
        };
        let part = part_size(size);
        let parts = (0..size.div_ceil(part)).map(|i| i * part..((i + 1) * part).min(size));
        futures::stream::iter(parts)
            .map(|range| {
                let (out, location) = (out.clone(), location.clone());
                async move {
                    let (_permit, r) = self
                        .request(store, &location, version, range.clone())
                        .await?;
                    let mut body = r.into_stream();
                    // Written as it comes, a batch of chunks per hand-over to a blocking
                    // thread: no buffer of the part's size.
                    let mut at = range.start;
                    let mut batch: Vec<bytes::Bytes> = Vec::new();
                    let mut batched = 0;
                    loop {
                        let chunk = body
                            .next()
                            .await
                            .transpose()
                            .map_err(std::io::Error::other)?;
                        let last = chunk.is_none();
                        if let Some(c) = chunk {
                            batched += c.len();
                            batch.push(c);
                        }
                        if (last && !batch.is_empty()) || batched >= WRITE_BATCH {
                            let (out, chunks) = (out.clone(), std::mem::take(&mut batch));
                            let from = at;
                            at += batched as u64;
                            batched = 0;
                            if at > range.end {
                                break;
                            }
                            blocking(move || write_chunks_at(&out, &chunks, from)).await?;
                        }
                        if last {
                            break;
                        }
                    }
                    whole_part(&range, at - range.start)
                }
            })
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        // The parts' clones are gone with the stream: the file is this one's alone.
        Arc::try_unwrap(out).map_err(|_| std::io::Error::other("a part still holds the file"))
    }
}

/// The size of the ranged requests that fetch a file of `size` bytes: a quarter of it, at
/// least [`PART_MIN`] and at most [`PART_MAX`], in whole MiB.
fn part_size(size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    (size.div_ceil(PARTS_IN_FLIGHT as u64).div_ceil(MIB) * MIB).clamp(PART_MIN, PART_MAX)
}

/// The most buffers one `pwritev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes `chunks` one after another from `at`, in as few `pwritev` calls as the kernel takes.
/// Empty chunks are left out: a call given only empty buffers writes nothing, which would
/// read as a failed write.
fn write_chunks_at(file: &File, chunks: &[bytes::Bytes], at: u64) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| std::io::IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    let mut at = at;
    while !rest.is_empty() {
        let n = rustix::io::pwritev(file, &rest[..rest.len().min(IOV_MAX)], at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at += n as u64;
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Whether a response to `range` brought every byte of it.
fn whole_part(range: &Range<u64>, got: u64) -> std::io::Result<()> {
    if got == range.end - range.start {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "the store sent {got} bytes for {range:?}"
    )))
}

#[allow(clippy::disallowed_methods)] // on a blocking thread
async fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let _ = blocking(move || {
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    #[test]
    #[allow(clippy::disallowed_methods)] // a test's own file
    fn chunks_are_written_in_order_past_the_kernels_buffer_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        // More chunks than one pwritev takes, of uneven sizes, some empty (the last ones too:
        // a call left with only empty buffers would write nothing).
        let mut chunks: Vec<bytes::Bytes> = (0..IOV_MAX * 2 + 3)
            .map(|i| bytes::Bytes::from(vec![(i % 251) as u8; i % 7]))
            .collect();
        chunks.extend([bytes::Bytes::new(), bytes::Bytes::new()]);
        write_chunks_at(&file, &[bytes::Bytes::new()], 0).unwrap();
        write_chunks_at(&file, &chunks, 10).unwrap();
        let mut written = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut written).unwrap();
        assert_eq!(&written[..10], &[0; 10]);
        assert!(
            written[10..] == chunks.concat(),
            "the chunks, in order, from offset 10"
        );
    }

    #[test]
    fn parts_are_a_quarter_of_the_file_within_their_bounds() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(part_size(1), PART_MIN);
        assert_eq!(part_size(16 * MIB + 5), PART_MIN);
        assert_eq!(part_size(64 * MIB), 16 * MIB);
        assert_eq!(part_size(64 * MIB + 1), 17 * MIB);
        assert_eq!(part_size(512 * MIB), PART_MAX);
        assert_eq!(part_size(u64::MAX / 2), PART_MAX);
    }

    #[tokio::test]
    async fn copies_are_fetched_once_per_version_and_held_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..(2 * PART_MIN + 5)).map(|i| (i % 251) as u8).collect();
        let loc = object_store::path::Path::from("a/b.fits");
        let put = store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        let version = put.e_tag.unwrap();
        let size = data.len() as u64;
        let metrics = crate::MountMetrics::new();
        let copies = WholeCopies::open(dir.path().join("whole"), size, size + 5)
            .unwrap()
            .with_metrics(metrics.clone());
        assert!(copies.takes(size) && !copies.takes(size + 1) && !copies.takes(0));

        let get = || copies.get(0, "a/b.fits", &version, size, &store);
        let c = get().await.unwrap();
        let mut read = vec![0u8; data.len()];
        c.file.read_exact_at(&mut read, 0).unwrap();
        assert!(read == data, "the copy differs from the object");
        assert_eq!(
            metrics.backend_count("get"),
            3,
            "three parts of at most 8 MiB"
        );
        let again = get().await.unwrap();
        assert_eq!(metrics.backend_count("get"), 3, "fetched twice");
        again.file.read_exact_at(&mut read[..5], 7).unwrap();
        assert_eq!(&read[..5], &data[7..12]);
        assert_eq!(copies.bytes(), size);

        // The copy's file removed behind the index's back: the next open fetches it again.
        for f in std::fs::read_dir(dir.path().join("whole")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let refetched = get().await.unwrap();
        assert_eq!(metrics.backend_count("get"), 6);
        refetched.file.read_exact_at(&mut read, 0).unwrap();
        assert!(read == data);
        assert_eq!(copies.bytes(), size);

        // Another version cannot be fetched with If-Match of a version the store lacks.
        assert!(
            copies
                .get(0, "a/b.fits", "\"gone\"", size, &store)
                .await
                .is_none()
        );

        // A second file over the budget: the first copy goes (its open file still reads).
        store
            .put(
                &object_store::path::Path::from("c"),
                PutPayload::from(vec![7u8; 10]),
            )
            .await
            .unwrap();
        let v2 = store
            .head(&object_store::path::Path::from("c"))
            .await
            .unwrap()
            .e_tag
            .unwrap();
        assert!(copies.get(0, "c", &v2, 10, &store).await.is_some());
        assert_eq!(copies.bytes(), 10);
        assert_eq!(
            std::fs::read_dir(dir.path().join("whole")).unwrap().count(),
            1
        );
        c.file.read_exact_at(&mut read[..5], 2 * PART_MIN).unwrap();
        assert_eq!(&read[..5], &data[2 * PART_MIN as usize..]);
    }
}

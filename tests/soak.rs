//! Soak: many concurrent S3 clients and FUSE readers against one gateway, every answer
//! checked, errors counted (they must be none), latency per operation, the gateway's memory,
//! descriptors and upload spool watched.
//!
//! The test command runs a short version (16 clients, 20 s, the debug build). The full soak
//! is `scripts/soak` (64 clients, 5 minutes, the release build); the knobs are
//! `ARCHWAY_SOAK_CLIENTS`, `ARCHWAY_SOAK_SECONDS` and `ARCHWAY_SOAK_BIN` (another build of
//! `archway`).
//!
//! Each client owns a prefix of a workspace and keeps what it wrote: PUTs (1 byte to 256 KiB)
//! and multipart uploads (two 5 MiB parts), overwrites, deletes, GETs of its own objects; and
//! reads the archive (`demo/soak/`: 64 files of 256 KiB through the cache, whole and by
//! ranges), HEADs, and lists 2 500 archive keys over three pages. At the end each prefix must
//! list exactly what its client kept. Two FUSE readers read archive files through a mount of
//! the same gateway and check their digests.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
};
use common::mount::Mount;
use common::{BIN, Gateway, free_port, s3_client_with};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

const ARCHIVE_FILES: usize = 64;
const ARCHIVE_SIZE: usize = 256 * 1024;
const LISTED: usize = 2_500;
const CACHE_MEMORY: u64 = 64 << 20;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// What every client and reader saw.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: Vec<String>,
}

impl Tally {
    fn time(&mut self, op: &'static str, started: Instant) {
        self.latencies
            .entry(op)
            .or_default()
            .push(started.elapsed());
    }
    fn error(&mut self, what: String) {
        if self.errors.len() < 50 {
            self.errors.push(what);
        }
    }
    fn merge(&mut self, other: Tally) {
        for (op, mut l) in other.latencies {
            self.latencies.entry(op).or_default().append(&mut l);
        }
        self.errors.extend(other.errors);
    }
}

/// The archive: file i of `demo/soak/`, and its bytes.
fn archive(i: usize) -> Vec<u8> {
    Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1)).bytes(ARCHIVE_SIZE)
}

fn populate(data: &Path) {
    let dir = data.join("demo/soak");
    std::fs::create_dir_all(dir.join("listed")).unwrap();
    for i in 0..ARCHIVE_FILES {
        std::fs::write(dir.join(format!("file-{i:02}.bin")), archive(i)).unwrap();
    }
    for i in 0..LISTED {
        std::fs::write(dir.join(format!("listed/k{i:05}")), b"").unwrap();
    }
}

/// The gateway's resident memory, open descriptors, and what its upload spool holds: the
/// bytes of parts, and the uploads still open (not completed: a completed one keeps only a
/// record of its answer, for an hour, for retried completions).
fn vitals(pid: u32, data: &Path) -> (u64, usize, (u64, usize)) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss_kib * 1024, fds, spool(&data.join("uploads")))
}

fn spool(dir: &Path) -> (u64, usize) {
    let (mut part_bytes, mut open) = (0, 0);
    for upload in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let files: Vec<_> = std::fs::read_dir(upload.path())
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let name = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().into_owned();
        if !files.iter().any(|e| name(e) == "completed.json") {
            open += 1;
        }
        part_bytes += files
            .iter()
            .filter(|e| name(e).starts_with("part-"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>();
    }
    (part_bytes, open)
}

async fn client(
    n: usize,
    archive_store: Arc<dyn ObjectStore>,
    ws: Arc<dyn ObjectStore>,
    digests: Arc<Vec<[u8; 32]>>,
    deadline: Instant,
) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((n as u64 + 1) << 17));
    let mut kept: HashMap<String, [u8; 32]> = HashMap::new();
    let prefix = format!("soak/c{n:02}");
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let started = Instant::now();
        match roll {
            // Whole archive objects through the cache.
            0..=24 => {
                let i = rng.below(ARCHIVE_FILES as u64) as usize;
                let key = Key::from(format!("soak/file-{i:02}.bin"));
                match archive_store.get(&key).await {
                    Ok(r) => match r.bytes().await {
                        Ok(b) if sha(&b) == digests[i] => t.time("GET archive", started),
                        Ok(b) => t.error(format!("GET {key}: {} bytes, wrong digest", b.len())),
                        Err(e) => t.error(format!("GET {key} body: {e}")),
                    },
                    Err(e) => t.error(format!("GET {key}: {e}")),
                }
            }
            // Ranges of them.
            25..=44 => {
                let i = rng.below(ARCHIVE_FILES as u64) as usize;
                let start = rng.below(ARCHIVE_SIZE as u64 - 1);
                let len = 1 + rng.below((ARCHIVE_SIZE as u64 - start).min(64 * 1024));
                let key = Key::from(format!("soak/file-{i:02}.bin"));
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..start + len)),
                    ..Default::default()
                };
                let want = &archive(i)[start as usize..(start + len) as usize];
                match archive_store.get_opts(&key, opts).await {
                    Ok(r) => match r.bytes().await {
                        Ok(b) if b[..] == *want => t.time("GET range", started),
                        Ok(b) => {
                            t.error(format!("GET {key} {start}+{len}: {} wrong bytes", b.len()))
                        }
                        Err(e) => t.error(format!("GET {key} range body: {e}")),
                    },
                    Err(e) => t.error(format!("GET {key} range: {e}")),
                }
            }
            45..=54 => {
                let i = rng.below(ARCHIVE_FILES as u64) as usize;
                let key = Key::from(format!("soak/file-{i:02}.bin"));
                match archive_store.head(&key).await {
                    Ok(m) if m.size == ARCHIVE_SIZE as u64 => t.time("HEAD", started),
                    Ok(m) => t.error(format!("HEAD {key}: size {}", m.size)),
                    Err(e) => t.error(format!("HEAD {key}: {e}")),
                }
            }
            // 2 500 keys: three pages of ListObjectsV2.
            55..=57 => {
                let listed: Result<Vec<_>, _> = archive_store
                    .list(Some(&Key::from("soak/listed")))
                    .try_collect()
                    .await;
                match listed {
                    Ok(l) if l.len() == LISTED => t.time("LIST 3 pages", started),
                    Ok(l) => t.error(format!("LIST soak/listed: {} keys", l.len())),
                    Err(e) => t.error(format!("LIST soak/listed: {e}")),
                }
            }
            // Writes to the client's own prefix: new objects and overwrites.
            58..=79 => {
                let name = if !kept.is_empty() && rng.below(4) == 0 {
                    kept.keys()
                        .nth(rng.below(kept.len() as u64) as usize)
                        .unwrap()
                        .clone()
                } else {
                    seq += 1;
                    format!("{prefix}/o{seq:06}")
                };
                let size = 1 + rng.below(256 * 1024) as usize;
                let body = rng.bytes(size);
                let digest = sha(&body);
                match ws
                    .put(&Key::from(name.as_str()), PutPayload::from(body))
                    .await
                {
                    Ok(_) => {
                        kept.insert(name, digest);
                        t.time("PUT", started);
                    }
                    Err(e) => t.error(format!("PUT {name}: {e}")),
                }
            }
            80..=81 => {
                seq += 1;
                let name = format!("{prefix}/m{seq:06}");
                let body = rng.bytes(10 << 20);
                let digest = sha(&body);
                let upload = async {
                    let mut up = ws.put_multipart(&Key::from(name.as_str())).await?;
                    up.put_part(PutPayload::from(body[..5 << 20].to_vec()))
                        .await?;
                    up.put_part(PutPayload::from(body[5 << 20..].to_vec()))
                        .await?;
                    up.complete().await
                };
                match upload.await {
                    Ok(_) => {
                        kept.insert(name, digest);
                        t.time("multipart 10 MiB", started);
                    }
                    Err(e) => t.error(format!("multipart {name}: {e}")),
                }
            }
            82..=89 => {
                let Some(name) = kept.keys().next().cloned() else {
                    continue;
                };
                match ws.get(&Key::from(name.as_str())).await {
                    Ok(r) => match r.bytes().await {
                        Ok(b) if sha(&b) == kept[&name] => t.time("GET own", started),
                        Ok(_) => t.error(format!("GET {name}: not what was written")),
                        Err(e) => t.error(format!("GET {name} body: {e}")),
                    },
                    Err(e) => t.error(format!("GET {name}: {e}")),
                }
            }
            _ => {
                let Some(name) = kept
                    .keys()
                    .nth(rng.below(kept.len().max(1) as u64) as usize)
                    .cloned()
                else {
                    continue;
                };
                match ws.delete(&Key::from(name.as_str())).await {
                    Ok(()) => {
                        kept.remove(&name);
                        t.time("DELETE", started);
                    }
                    Err(e) => t.error(format!("DELETE {name}: {e}")),
                }
            }
        }
    }
    // The prefix holds exactly what the client kept.
    let listed: Vec<_> = match ws
        .list(Some(&Key::from(prefix.as_str())))
        .try_collect()
        .await
    {
        Ok(l) => l,
        Err(e) => {
            t.error(format!("final LIST {prefix}: {e}"));
            return t;
        }
    };
    let mut names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    let mut want: Vec<String> = kept.keys().cloned().collect();
    want.sort();
    if names != want {
        t.error(format!(
            "{prefix} lists {} objects, the client kept {}",
            names.len(),
            want.len()
        ));
    }
    t
}

fn fuse_reader(
    root: PathBuf,
    digests: Arc<Vec<[u8; 32]>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(seed);
    while !stop.load(Ordering::Relaxed) {
        let i = rng.below(ARCHIVE_FILES as u64) as usize;
        let path = root.join(format!("demo/soak/file-{i:02}.bin"));
        let started = Instant::now();
        match std::fs::read(&path) {
            Ok(b) if sha(&b) == digests[i] => t.time("FUSE read", started),
            Ok(b) => t.error(format!(
                "FUSE {}: {} bytes, wrong digest",
                path.display(),
                b.len()
            )),
            Err(e) => t.error(format!("FUSE {}: {e}", path.display())),
        }
    }
    t
}

/// object_store's S3 client without retries of its own (every failure counts), keeping idle
/// connections for 10 s: less than the gateway's `server.header_read_timeout` (30 s), after
/// which the gateway closes a connection waiting for its next request. A client that keeps
/// them longer meets, now and then, a connection closed as it sends on it, and retries — as
/// S3 SDKs, rclone and the aws cli do.
fn soak_client(url: &str, bucket: &str, key_id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    use archway_dataplane::object_store::ClientOptions;
    let options = ClientOptions::new()
        .with_allow_http(true)
        .with_pool_idle_timeout(Duration::from_secs(10));
    s3_client_with(url, bucket, key_id, secret, options)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_and_readers_for_a_while_every_answer_checked() {
    let clients = knob("ARCHWAY_SOAK_CLIENTS", 16) as usize;
    let seconds = knob("ARCHWAY_SOAK_SECONDS", 20);
    let bin = std::env::var("ARCHWAY_SOAK_BIN").unwrap_or_else(|_| BIN.to_string());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The gateway under soak may be another build (the release one, for the full soak).
    let gw = Gateway::start_bin(
        &bin,
        &data,
        free_port(),
        &[],
        &[("ARCHWAY_CACHE__MEMORY_BYTES", "67108864")],
    )
    .await;
    populate(&data);
    let pid = gw.child.as_ref().unwrap().id();
    let key = gw.credential("aws_access_key_id");
    let secret = gw.credential("aws_secret_access_key");
    let archive_store = soak_client(&gw.url, "demo", &key, &secret);
    let ws = soak_client(&gw.url, "workspace", &key, &secret);
    let digests: Arc<Vec<[u8; 32]>> =
        Arc::new((0..ARCHIVE_FILES).map(|i| sha(&archive(i))).collect());

    let mp = dir.path().join("mnt");
    let mount = Mount::remote(&mp, &gw.url, &data, &[]);

    // Warm up once, then take the baseline.
    for i in 0..ARCHIVE_FILES {
        let key = Key::from(format!("soak/file-{i:02}.bin"));
        archive_store.head(&key).await.unwrap();
    }
    let (rss_start, fds_start, spool_start) = vitals(pid, &data);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (root, digests, stop) = (mp.clone(), digests.clone(), stop.clone());
            std::thread::spawn(move || fuse_reader(root, digests, stop, 77 + r))
        })
        .collect();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            tokio::spawn(client(
                n,
                archive_store.clone(),
                ws.clone(),
                digests.clone(),
                deadline,
            ))
        })
        .collect();
    let mut rss_samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_samples.push(vitals(pid, &data).0);
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        tally.merge(r.join().unwrap());
    }
    // The clients go, and their pooled connections with them.
    drop(mount);
    drop((archive_store, ws));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_end, fds_end, spool_end) = vitals(pid, &data);
    let rss_peak = rss_samples.iter().copied().max().unwrap_or(rss_end);

    eprintln!(
        "soak: {clients} S3 clients + 2 FUSE readers, {seconds} s, {}",
        Path::new(&bin).display()
    );
    eprintln!(
        "{:<18} {:>8} {:>10} {:>10}",
        "operation", "count", "p50 ms", "p99 ms"
    );
    let mut total = 0;
    for (op, l) in &mut tally.latencies {
        l.sort_unstable();
        total += l.len();
        eprintln!(
            "{:<18} {:>8} {:>10.2} {:>10.2}",
            op,
            l.len(),
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3
        );
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "errors {}; RSS start {:.0} MiB, peak {:.0}, end {:.0} (cache.memory_bytes {:.0}); \
         fds {} -> {}; upload spool (part bytes, open uploads) {:?} -> {:?}",
        tally.errors.len(),
        mib(rss_start),
        mib(rss_peak),
        mib(rss_end),
        mib(CACHE_MEMORY),
        fds_start,
        fds_end,
        spool_start,
        spool_end
    );

    assert!(
        tally.errors.is_empty(),
        "errors:\n{}",
        tally.errors.join("\n")
    );
    assert!(total > clients * 10, "only {total} operations ran");
    for op in ["GET archive", "GET range", "HEAD", "PUT", "FUSE read"] {
        assert!(tally.latencies.contains_key(op), "no {op} ran");
    }
    // Memory: the cache's budget plus a stated constant for everything else (runtime,
    // buffers of the requests in flight, the catalogue's connections): 256 MiB.
    assert!(
        rss_peak <= CACHE_MEMORY + (256 << 20),
        "peak RSS {:.0} MiB past the cache's 64 MiB + 256 MiB",
        mib(rss_peak)
    );
    // Nothing left behind: descriptors back (a few may stay pooled), the spool empty again.
    assert!(
        fds_end <= fds_start + 16,
        "descriptors {fds_start} -> {fds_end}"
    );
    assert_eq!(
        spool_end, spool_start,
        "the upload spool kept parts or open uploads"
    );
}

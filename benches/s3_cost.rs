//! Per-request cost: the gateway CPU time a HEAD and a small GET take, against `rclone serve
//! s3` over the same local files, in one run.
//!
//! ```sh
//! cargo bench --bench s3_cost                      # needs rclone (scripts/test-services)
//! ARCHWAY_BENCH_BIN=/path/to/other/archway cargo bench --bench s3_cost   # another build
//! ARCHWAY_BENCH_REQUESTS=5000 cargo bench --bench s3_cost
//! ```
//!
//! Each server runs in its own process; its CPU time (user + system, from /proc) is read
//! before and after each workload, so the figures are the server's own cost, whatever the
//! client spends. Workloads, after a warm-up (page cache, connections, gateway state):
//! - HEAD of 64 KiB objects, one client, one request at a time;
//! - GET of 64 KiB objects, one client, one request at a time;
//! - the same two with 16 requests in flight (the rate on two shared cores);
//! - ListObjectsV2 of a folder of 2000 keys, pages of 1000 (one listing at a time), counted
//!   per page.
//!
//! Printed per workload and server: requests/s, server CPU-seconds per 1000 requests, and
//! archway's CPU per request as a ratio of rclone's (below 1: archway costs less).
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use archway_dataplane::object_store::path::Path as ObjectPath;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt};
use futures::StreamExt;

mod common;

use common::cpu_seconds;

const OBJECTS: usize = 256;
const SIZE: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum Kind {
    Head,
    Get,
    /// A whole listing of `tree/`: two pages.
    List,
}

/// Keys in the listed folder, and the page size S3 clients ask for.
const LISTED: usize = 2000;
const PAGE: usize = 1000;

/// Runs `requests` requests of `kind` over `keys` with `workers` in flight; (seconds, done).
async fn run(
    store: &Arc<dyn ObjectStore>,
    keys: &[String],
    kind: Kind,
    requests: usize,
    workers: usize,
) -> (f64, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keys = Arc::new(keys.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, next, keys) = (store.clone(), next.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let path = ObjectPath::from(keys[i % keys.len()].as_str());
                match kind {
                    Kind::List => {
                        let listed: Vec<_> =
                            store.list(Some(&ObjectPath::from("tree"))).collect().await;
                        assert_eq!(listed.len(), LISTED);
                        assert!(listed.iter().all(|m| m.is_ok()));
                        done += LISTED / PAGE - 1;
                    }
                    Kind::Head => {
                        let meta = store.head(&path).await.expect("head");
                        assert_eq!(meta.size, SIZE as u64);
                    }
                    Kind::Get => {
                        let mut stream = store.get(&path).await.expect("get").into_stream();
                        let mut n = 0;
                        while let Some(chunk) = stream.next().await {
                            n += chunk.expect("body").len();
                        }
                        assert_eq!(n, SIZE);
                    }
                }
                done += 1;
            }
            done
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("task");
    }
    (started.elapsed().as_secs_f64(), done)
}

fn write_files(dir: &Path) -> Vec<String> {
    let tree = dir.join("tree");
    for i in 0..LISTED {
        // Ten folders of 200, as an archive's tree would spread them.
        let path = tree.join(format!("d{}/f-{i:05}.fits", i % 10));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"SIMPLE  =                    T").expect("write");
    }
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..OBJECTS)
        .map(|i| {
            let key = format!("small/obj-{i:04}");
            let path = dir.join(&key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let bytes: Vec<u8> = (0..SIZE)
                .map(|_| common::xorshift(&mut state) as u8)
                .collect();
            std::fs::write(&path, bytes).expect("write");
            key
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rclone = std::env::var("ARCHWAY_TEST_RCLONE").unwrap_or_else(|_| "rclone".into());
    let binary = std::env::var("ARCHWAY_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_archway").to_string());
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test, on
    // a debug build: a few requests, to prove the workloads work.
    let full = std::env::args().any(|a| a == "--bench");
    let requests: usize = std::env::var("ARCHWAY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 4000 } else { 200 });
    let dir = tempfile::tempdir().expect("tempdir");
    let files_root = dir.path().join("files");
    let keys = write_files(&files_root.join("bench"));

    let (archway, archway_store) = common::archway_over(&binary, &files_root, dir.path());
    let (rclone, rclone_store) = common::rclone_over(&rclone, &files_root);

    println!("archway: {binary}; {requests} requests per workload");
    println!(
        "{:<26} {:>12} {:>12} {:>16} {:>16} {:>12}",
        "workload", "archway", "rclone", "archway CPU-s", "rclone CPU-s", "CPU ratio"
    );
    println!(
        "{:<26} {:>12} {:>12} {:>16} {:>16} {:>12}",
        "", "req/s", "req/s", "per 1000 req", "per 1000 req", "archway/rc"
    );
    let servers = [
        (&archway_store, archway.0.id()),
        (&rclone_store, rclone.0.id()),
    ];
    let mut list_cpu = (0.0, 0.0);
    for (name, kind, workers) in [
        ("HEAD 64 KiB, 1 in flight", Kind::Head, 1),
        ("GET 64 KiB, 1 in flight", Kind::Get, 1),
        ("HEAD 64 KiB, 16 in flight", Kind::Head, 16),
        ("GET 64 KiB, 16 in flight", Kind::Get, 16),
        ("LIST page of 1000 keys", Kind::List, 1),
    ] {
        // Listings cost 100 times a HEAD: fewer of them.
        let requests = match kind {
            Kind::List => (requests / 100).max(10),
            _ => requests,
        };
        let mut figures = Vec::new();
        for (store, pid) in servers {
            run(store, &keys, kind, OBJECTS.min(requests), workers).await;
            let before = cpu_seconds(pid);
            let (secs, done) = run(store, &keys, kind, requests, workers).await;
            let cpu = cpu_seconds(pid) - before;
            figures.push((done as f64 / secs, cpu / done as f64 * 1000.0));
        }
        let (a, r) = (figures[0], figures[1]);
        if matches!(kind, Kind::List) {
            list_cpu = (a.1, r.1);
        }
        println!(
            "{:<26} {:>12.0} {:>12.0} {:>16.3} {:>16.3} {:>11.2}x",
            name,
            a.0,
            r.0,
            a.1,
            r.1,
            a.1 / r.1
        );
    }
    let floor = listing_floor_ms(&files_root.join("bench/tree"), if full { 200 } else { 5 });
    println!(
        "floor of a listing page, in this process: read each folder, sort it, stat each file: \
         {floor:.3} ms per 1000 keys = {:.2}x rclone's CPU per page, {:.2}x archway's",
        floor / list_cpu.1,
        floor / list_cpu.0
    );
    drop(rclone);
    drop(archway);
}

/// What the kernel's part of listing the files below `tree` as one sorted walk costs per 1000
/// files, in ms: each folder read and sorted, each file `fstatat`ed beside its folder's
/// descriptor (its size and time), nothing else — the least any server listing files spends.
/// One thread over a warm tree, so its wall time is its CPU time.
fn listing_floor_ms(tree: &Path, reps: usize) -> f64 {
    use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags};
    let open = |at: rustix::fd::BorrowedFd<'_>, name: &std::ffi::CStr| {
        rustix::fs::openat(at, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .expect("open folder")
    };
    let started = Instant::now();
    let mut files = 0;
    for _ in 0..reps {
        let root = std::ffi::CString::new(tree.as_os_str().as_encoded_bytes()).expect("path");
        let mut stack = vec![open(CWD, &root)];
        while let Some(dir) = stack.pop() {
            let mut names: Vec<std::ffi::CString> = Dir::read_from(&dir)
                .expect("read folder")
                .map(|e| e.expect("entry").file_name().to_owned())
                .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
                .collect();
            names.sort();
            for name in names {
                let st = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).expect("stat");
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    stack.push(open(rustix::fd::AsFd::as_fd(&dir), &name));
                } else {
                    std::hint::black_box(st.st_size);
                    files += 1;
                }
            }
        }
    }
    started.elapsed().as_secs_f64() * 1000.0 / files as f64 * 1000.0
}

//! S3 GET benchmark: `archway serve` against `rclone serve s3` over the same local files, with a
//! plain local read of those files as the limit, all in one run.
//!
//! ```sh
//! cargo bench --bench s3_get            # needs rclone (scripts/test-services installs it)
//! ```
//!
//! Workloads, each after one warm-up pass (the files sit in the page cache, so this measures
//! the gateways, not the disk):
//! - GET throughput of 1 MiB objects, 4 concurrent clients;
//! - GET throughput of 64 MiB objects, 4 concurrent clients;
//! - request rate for 64 KiB objects, 16 concurrent clients.
//!
//! Both servers are reached with the same SigV4-signing Rust client (object_store) over
//! loopback. Figures are printed as MB/s (or requests/s) and as ratios.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use archway_dataplane::object_store::path::Path as ObjectPath;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt};
use futures::StreamExt;

mod common;

use common::MIB;

fn write_files(dir: &Path) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes =
        |n: usize| -> Vec<u8> { (0..n).map(|_| common::xorshift(&mut state) as u8).collect() };
    for (prefix, count, size) in [
        ("1m", 16, MIB),
        ("64m", 2, 64 * MIB),
        ("64k", 256, 64 * 1024),
    ] {
        for i in 0..count {
            let key = format!("{prefix}/obj-{i:03}");
            let path = dir.join(&key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, bytes(size)).expect("write");
            files.push((key, size));
        }
    }
    files
}

/// Reads `keys` `rounds` times with `workers` concurrent readers; returns (bytes, seconds, requests).
async fn run_s3(
    store: &Arc<dyn ObjectStore>,
    keys: &[String],
    rounds: usize,
    workers: usize,
) -> (u64, f64, u64) {
    let work: Vec<String> = (0..rounds).flat_map(|_| keys.iter().cloned()).collect();
    let work = Arc::new(std::sync::Mutex::new(work));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let store = store.clone();
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let (mut bytes, mut requests) = (0u64, 0u64);
            loop {
                let next = work.lock().expect("queue").pop();
                let Some(key) = next else { break };
                let mut stream = store
                    .get(&ObjectPath::from(key.as_str()))
                    .await
                    .expect("get")
                    .into_stream();
                while let Some(chunk) = stream.next().await {
                    bytes += chunk.expect("body").len() as u64;
                }
                requests += 1;
            }
            (bytes, requests)
        }));
    }
    let (mut bytes, mut requests) = (0, 0);
    for t in tasks {
        let (b, r) = t.await.expect("task");
        bytes += b;
        requests += r;
    }
    (bytes, started.elapsed().as_secs_f64(), requests)
}

/// The same pattern as plain file reads: the limit for any gateway on this machine.
async fn run_local(dir: &Path, keys: &[String], rounds: usize, workers: usize) -> (u64, f64, u64) {
    let work: Vec<PathBuf> = (0..rounds)
        .flat_map(|_| keys.iter().map(|k| dir.join(k)))
        .collect();
    let work = Arc::new(std::sync::Mutex::new(work));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let work = work.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let (mut bytes, mut requests) = (0u64, 0u64);
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let next = work.lock().expect("queue").pop();
                let Some(path) = next else { break };
                let mut f = std::fs::File::open(&path).expect("open");
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                }
                requests += 1;
            }
            (bytes, requests)
        }));
    }
    let (mut bytes, mut requests) = (0, 0);
    for t in tasks {
        let (b, r) = t.await.expect("task");
        bytes += b;
        requests += r;
    }
    (bytes, started.elapsed().as_secs_f64(), requests)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rclone = std::env::var("ARCHWAY_TEST_RCLONE").unwrap_or_else(|_| "rclone".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let files_root = dir.path().join("files");
    let bucket_dir = files_root.join("bench");
    let files = write_files(&bucket_dir);

    // archway over the files.
    let (archway, archway_store) =
        common::archway_over(env!("CARGO_BIN_EXE_archway"), &files_root, dir.path());
    let (rclone, rclone_store) = common::rclone_over(&rclone, &files_root);

    let keys = |prefix: &str| -> Vec<String> {
        files
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let workloads = [
        ("GET 1 MiB objects", keys("1m/"), 16usize, 4usize, false),
        ("GET 64 MiB objects", keys("64m/"), 8, 4, false),
        ("GET 64 KiB objects", keys("64k/"), 8, 16, true),
    ];
    println!(
        "{:<20} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "workload", "archway", "rclone", "local read", "vs rclone", "vs local"
    );
    for (name, keys, rounds, workers, per_request) in workloads {
        // Warm-up: page cache, connections, gateway state.
        run_s3(&archway_store, &keys, 1, workers).await;
        run_s3(&rclone_store, &keys, 1, workers).await;
        run_local(&bucket_dir, &keys, 1, workers).await;
        let a = run_s3(&archway_store, &keys, rounds, workers).await;
        let r = run_s3(&rclone_store, &keys, rounds, workers).await;
        let l = run_local(&bucket_dir, &keys, rounds, workers).await;
        let rate = |(bytes, secs, requests): (u64, f64, u64)| {
            if per_request {
                requests as f64 / secs
            } else {
                bytes as f64 / secs / 1e6
            }
        };
        let unit = if per_request { "req/s" } else { "MB/s" };
        let (ar, rr, lr) = (rate(a), rate(r), rate(l));
        println!(
            "{:<20} {:>8.0} {unit:<5} {:>8.0} {unit:<5} {:>8.0} {unit:<5} {:>11.2}x {:>11.3}x",
            name,
            ar,
            rr,
            lr,
            ar / rr,
            ar / lr
        );
    }
    drop(rclone);
    drop(archway);
}

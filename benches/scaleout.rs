//! Throughput of 3 replicas against 1, behind HAProxy (`balance uri`, `hash-type consistent`)
//! on one PostgreSQL catalogue: the same data read by the same S3 clients through the
//! balancer, cold (page cache dropped, fresh replicas) and warm (three passes more).
//!
//! ```sh
//! eval "$(scripts/test-services)"    # PostgreSQL, haproxy
//! cargo bench --bench scaleout       # as root (drop_caches)
//! ```
//!
//! On a machine whose cores the clients and every replica share, more replicas add no CPU:
//! the figure to read there is what each costs (gateway CPU-seconds per GB served, summed over
//! the replicas) and what reaches the archive (bytes fetched per data byte), not throughput.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::sync::Arc;
use std::time::Instant;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt};

mod common;
#[path = "../tests/common/mod.rs"]
mod testing;

use common::{MIB, cpu_seconds, drop_page_cache};
use testing::Gateway;
use testing::scale::{Haproxy, replicas_n, s3};

/// Reads every object `passes` times with `readers` in flight; (seconds, bytes).
async fn read_all(
    store: &Arc<dyn ObjectStore>,
    names: &[String],
    passes: usize,
    readers: usize,
) -> (f64, u64) {
    let work: Vec<String> = (0..passes).flat_map(|_| names.iter().cloned()).collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let (store, next, work) = (store.clone(), next.clone(), work.clone());
            tokio::spawn(async move {
                let mut bytes = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(name) = work.get(i) else { break };
                    let got = store.get(&Key::from(name.as_str())).await.expect("get");
                    bytes += got.bytes().await.expect("body").len() as u64;
                }
                bytes
            })
        })
        .collect();
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.expect("reader");
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// `archway_cache_bytes_total{kind="fetched"}` summed over the replicas.
async fn fetched(gws: &[Gateway]) -> f64 {
    let mut sum = 0.0;
    for gw in gws {
        sum += gw
            .metrics()
            .await
            .lines()
            .filter(|l| {
                l.starts_with("archway_cache_bytes_total") && l.contains("kind=\"fetched\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let (objects, size, readers) = if full { (32, 8 * MIB, 16) } else { (6, MIB, 4) };
    println!(
        "{objects} objects x {} MiB through HAProxy, {readers} readers",
        size / MIB
    );
    println!(
        "{:<9} {:>12} {:>12} {:>16} {:>18}",
        "replicas", "cold MB/s", "warm MB/s", "CPU-s per GB", "archive B per B"
    );
    let mut rates = Vec::new();
    for n in [1usize, 3] {
        let dir = tempfile::tempdir().expect("temp dir");
        let gws = replicas_n(dir.path(), n).await;
        let names: Vec<String> = (0..objects).map(|i| format!("data/o{i:03}.bin")).collect();
        for (i, name) in names.iter().enumerate() {
            let path = dir.path().join("archive/sky").join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let body: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            std::fs::write(path, body).expect("write");
        }
        let lb = Haproxy::start(dir.path(), &gws.iter().collect::<Vec<_>>());
        let store = s3(
            &lb.url,
            &gws[0].credential("aws_access_key_id"),
            &gws[0].credential("aws_secret_access_key"),
        );
        let pids: Vec<u32> = gws
            .iter()
            .map(|g| g.child.as_ref().expect("running").id())
            .collect();
        let cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
        if !drop_page_cache() {
            eprintln!("warning: cannot drop the page cache (not root?): cold figures are warm");
        }
        let (before_cpu, before_fetched) = (cpu(), fetched(&gws).await);
        let (cold_s, cold_b) = read_all(&store, &names, 1, readers).await;
        let (warm_s, warm_b) = read_all(&store, &names, 3, readers).await;
        let spent = cpu() - before_cpu;
        let origin = (fetched(&gws).await - before_fetched) / (objects * size) as f64;
        let (cold, warm) = (cold_b as f64 / cold_s / 1e6, warm_b as f64 / warm_s / 1e6);
        println!(
            "{n:<9} {cold:>12.0} {warm:>12.0} {:>16.2} {origin:>18.3}",
            spent / ((cold_b + warm_b) as f64 / 1e9)
        );
        assert_eq!(cold_b + warm_b, 4 * (objects * size) as u64);
        rates.push((cold, warm));
    }
    println!(
        "3 replicas vs 1: cold {:.2}x, warm {:.2}x",
        rates[1].0 / rates[0].0,
        rates[1].1 / rates[0].1
    );
}

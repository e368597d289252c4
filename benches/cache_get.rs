//! Cache benchmark: cold vs warm GET throughput through `archway serve`, with the archive
//! behind a real S3 server on loopback (moto's), and a plain local read of the same bytes as
//! the limit, all in one run.
//!
//! ```sh
//! cargo bench --bench cache_get     # needs moto[server] (scripts/test-services installs it)
//! ```
//!
//! 8 objects of 16 MiB are read by 4 concurrent clients: once cold (every block fetched from
//! the S3 server through the gateway's cache), then twice warm (served from the memory tier).
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::path::Path as ObjectPath;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use futures::StreamExt;

mod common;

use common::{MIB, Server, archway_client, free_port, s3_client, wait_for};

const OBJECTS: usize = 8;
const SIZE: usize = 16 * MIB;

async fn read_all(store: &Arc<dyn ObjectStore>, keys: &[String], workers: usize) -> f64 {
    let queue = Arc::new(std::sync::Mutex::new(keys.to_vec()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, queue) = (store.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some(key) = next else { break };
                let mut s = store
                    .get(&ObjectPath::from(key.as_str()))
                    .await
                    .expect("get")
                    .into_stream();
                while let Some(chunk) = s.next().await {
                    bytes += chunk.expect("body").len() as u64;
                }
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.expect("task");
    }
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // The archive: moto's S3 server.
    let moto_port = free_port();
    let _moto = Server(
        Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(moto_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (scripts/test-services installs it)"),
    );
    wait_for(moto_port);
    let moto_url = format!("http://127.0.0.1:{moto_port}");
    let http = reqwest::Client::new();
    let made = http
        .put(format!("{moto_url}/archive"))
        .send()
        .await
        .expect("create bucket");
    assert!(made.status().is_success());
    let archive = s3_client(&moto_url, "archive", "bench", "benchsecret");
    let keys: Vec<String> = (0..OBJECTS).map(|i| format!("obs/{i:02}.fits")).collect();
    for k in &keys {
        archive
            .put(
                &ObjectPath::from(k.as_str()),
                PutPayload::from(data.clone()),
            )
            .await
            .expect("upload");
    }

    // The gateway in front of it, with room for everything in memory. ARCHWAY_BENCH_BLOCK
    // (bytes) sets the cache's block size, to compare sizes.
    let block: u64 = std::env::var("ARCHWAY_BENCH_BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 * 1024);
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.remote]\nurl = \"s3://archive\"\nendpoint = \"{moto_url}\"\naccess_key_id = \"bench\"\n\
             secret_access_key = \"benchsecret\"\n\n[cache]\nmemory_bytes = {}\ndisk_bytes = 0\n\
             block_size = {block}\n\n[[volumes]]\nid = \"remote\"\nbackend = \"remote\"\n",
            4 * OBJECTS * SIZE
        ),
    )
    .expect("config");
    let port = free_port();
    let data_dir = dir.path().join("data");
    let _archway = Server(
        Command::new(env!("CARGO_BIN_EXE_archway"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("ARCHWAY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start archway"),
    );
    wait_for(port);
    std::thread::sleep(Duration::from_millis(300));
    let gateway = archway_client(&format!("http://127.0.0.1:{port}"), &data_dir, "remote");

    // The limit: the same bytes read from local files (page cache).
    let local_dir = dir.path().join("local");
    std::fs::create_dir_all(&local_dir).expect("mkdir");
    for i in 0..OBJECTS {
        std::fs::write(local_dir.join(format!("{i}")), &data).expect("write");
    }
    let local = {
        let files: Vec<_> = (0..OBJECTS)
            .map(|i| local_dir.join(format!("{i}")))
            .collect();
        let _ = files.iter().map(std::fs::read).count();
        let started = Instant::now();
        let mut bytes = 0;
        for f in &files {
            bytes += std::fs::read(f).expect("read").len();
        }
        bytes as f64 / started.elapsed().as_secs_f64() / 1e6
    };

    let direct = read_all(&archive, &keys, 4).await;
    let cold = read_all(&gateway, &keys, 4).await;
    let warm1 = read_all(&gateway, &keys, 4).await;
    let warm2 = read_all(&gateway, &keys, 4).await;
    let warm = warm1.max(warm2);
    println!(
        "{} objects of {} MiB, 4 concurrent readers",
        OBJECTS,
        SIZE / MIB
    );
    println!("S3 server directly        {direct:>9.0} MB/s");
    println!(
        "gateway, cold cache       {cold:>9.0} MB/s  ({:.2}x direct)",
        cold / direct
    );
    println!(
        "gateway, warm cache       {warm:>9.0} MB/s  ({:.1}x cold)",
        warm / cold
    );
    println!(
        "local read (the limit)    {local:>9.0} MB/s  (warm is {:.3}x)",
        warm / local
    );
}

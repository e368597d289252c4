//! FUSE read benchmark with fio: `archway mount` (remote mode, over `archway serve`) against
//! `rclone mount --vfs-cache-mode full` over the same gateway's S3 front, with plain reads of
//! the same files on the local disk as the limit, all in one run.
//!
//! ```sh
//! eval "$(scripts/test-services)"   # fio, fuse3, rclone
//! cargo bench --bench fuse_read     # as root (mounts, drop_caches)
//! ```
//!
//! Data: `ARCHWAY_BENCH_FILES` files (default 4) of `ARCHWAY_BENCH_MIB` MiB (default 256) of
//! random bytes behind the gateway's demo volume. Workloads, each cold and then warm:
//! - sequential read, 1 MiB blocks, one fio job per file (`--rw=read --bs=1M --numjobs=N`);
//! - random read, 4 KiB blocks, N jobs over the files for 10 s (`--rw=randread --bs=4k`).
//!
//! Cold: the kernel's page cache dropped (`/proc/sys/vm/drop_caches`) and each mount started
//! afresh with an empty cache. Warm: the same job again right after, caches as the first run
//! left them. Both mounts get a disk cache big enough for the data (archway: 256 MiB memory +
//! disk tier; rclone: its VFS cache), so warm reads are served by the tool, not the gateway.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::path::Path;
use std::process::Command;

mod common;

use common::{MIB, Mounted, drop_page_cache};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_files(dir: &Path, files: usize, mib: usize) {
    std::fs::create_dir_all(dir).expect("bench dir");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let mut data = Vec::with_capacity(mib * MIB);
        while data.len() < mib * MIB {
            data.extend_from_slice(&common::xorshift(&mut state).to_le_bytes());
        }
        std::fs::write(dir.join(format!("file{i}.bin")), &data).expect("bench file");
    }
}

#[derive(Clone, Copy)]
enum Job {
    Sequential,
    Random,
}

/// Runs fio over `dir`'s files; returns bytes/s (sequential) or IOPS (random).
fn fio(dir: &Path, job: Job, files: usize, mib: usize, seconds: u64) -> f64 {
    let mut args = vec![
        "--name=bench".to_string(),
        format!("--directory={}", dir.display()),
        "--filename_format=file$jobnum.bin".to_string(),
        format!("--size={mib}M"),
        format!("--numjobs={files}"),
        "--readonly".to_string(),
        "--ioengine=psync".to_string(),
    ];
    match job {
        Job::Sequential => args.extend(["--rw=read".into(), "--bs=1M".into()]),
        Job::Random => args.extend([
            "--rw=randread".into(),
            "--bs=4k".into(),
            "--time_based".into(),
            format!("--runtime={seconds}"),
        ]),
    }
    let read = &common::fio(&args)["read"];
    match job {
        Job::Sequential => read["bw_bytes"].as_f64().expect("bw_bytes"),
        Job::Random => read["iops"].as_f64().expect("iops"),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test, on
    // a small data set with short random runs.
    let full = std::env::args().any(|a| a == "--bench");
    let files = env_usize("ARCHWAY_BENCH_FILES", if full { 4 } else { 2 });
    let mib = env_usize("ARCHWAY_BENCH_MIB", if full { 256 } else { 16 });
    let seconds = if full { 10 } else { 2 };
    let rclone = std::env::var("ARCHWAY_TEST_RCLONE").unwrap_or_else(|_| "rclone".into());
    let bin = env!("CARGO_BIN_EXE_archway");
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("data");

    let (_gateway, url) = common::serve_embedded(bin, &data);
    let local = data.join("demo/bench");
    write_files(&local, files, mib);
    let (key, secret) = common::archway_credentials(&data);
    if !drop_page_cache() {
        eprintln!("warning: cannot drop the page cache (not root?): cold figures are warm");
    }

    let archway = |n: usize| {
        let mp = work.path().join(format!("archway{n}"));
        let cache = work.path().join(format!("archway-cache{n}"));
        let mut cmd = Command::new(bin);
        cmd.arg("mount")
            .arg(&mp)
            .args(["--gateway", &url, "--credentials-file"])
            .arg(data.join("credentials"))
            .args(["--profile", "archway", "--volume", "demo", "--foreground"])
            .args(["--cache-memory", "256MiB", "--cache-disk"])
            .arg(format!("{}MiB", files * mib + 256))
            .arg("--cache-dir")
            .arg(&cache);
        (Mounted::start(cmd, &mp), mp.join("demo/bench"))
    };
    let rclone_mount = |n: usize| {
        let mp = work.path().join(format!("rclone{n}"));
        let cache = work.path().join(format!("rclone-cache{n}"));
        let remote = format!(
            ":s3,provider=Other,endpoint='{url}',access_key_id={key},secret_access_key='{secret}',region=us-east-1:demo/bench"
        );
        let mut cmd = Command::new(&rclone);
        cmd.arg("mount")
            .arg(remote)
            .arg(&mp)
            .args(["--vfs-cache-mode", "full", "--cache-dir"])
            .arg(&cache)
            .args(["--vfs-cache-max-size"])
            .arg(format!("{}M", files * mib + 256));
        (Mounted::start(cmd, &mp), mp)
    };

    let mut results: Vec<(&str, &str, f64, f64, f64)> = Vec::new();
    for (label, job) in [("sequential", Job::Sequential), ("random 4k", Job::Random)] {
        let n = results.len();
        // Local disk, the limit.
        drop_page_cache();
        let local_cold = fio(&local, job, files, mib, seconds);
        let local_warm = fio(&local, job, files, mib, seconds);
        // archway mount, fresh.
        let (a, dir) = archway(n);
        drop_page_cache();
        let a_cold = fio(&dir, job, files, mib, seconds);
        let a_warm = fio(&dir, job, files, mib, seconds);
        drop(a);
        // rclone mount, fresh.
        let (r, dir) = rclone_mount(n);
        drop_page_cache();
        let r_cold = fio(&dir, job, files, mib, seconds);
        let r_warm = fio(&dir, job, files, mib, seconds);
        drop(r);
        results.push((label, "cold", a_cold, r_cold, local_cold));
        results.push((label, "warm", a_warm, r_warm, local_warm));
    }

    println!(
        "\n{files} files x {mib} MiB, fio psync, {files} jobs (sequential: MB/s, random: IOPS)"
    );
    println!(
        "{:<11} {:<5} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "workload", "", "archway", "rclone", "local", "vs rclone", "vs local"
    );
    for (label, phase, a, r, l) in results {
        let scale = if label == "sequential" { 1e6 } else { 1.0 };
        println!(
            "{:<11} {:<5} {:>12.0} {:>12.0} {:>12.0} {:>9.2}x {:>9.3}x",
            label,
            phase,
            a / scale,
            r / scale,
            l / scale,
            a / r,
            a / l
        );
    }
}

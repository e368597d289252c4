//! A reduction asked three sites away from its data: gateway A holds a large FITS image in its
//! `demo` volume; B has the peer volume `remote-demo` over A's `demo`; C has `far-demo` over
//! B's `remote-demo`. `stats` (count, sum, mean, min, max, var, std) of the image is asked at
//! A directly, at B (one link) and at C (two links), and once more at C with the peers' tokens
//! left out and `allow_pull` (C reads the data over S3 through B and reduces it itself: what
//! happened before reductions were forwarded hop by hop). For each, the wall time of the
//! request, the site that computed, the bytes it read there and the bytes on each link.
//!
//! ```sh
//! cargo bench --bench federation                       # a 1024 MiB float32 image
//! ARCHWAY_BENCH_MIB=256 cargo bench --bench federation  # another size
//! ```
//!
//! Every gateway is the release build on loopback, on the same two cores; the image is read
//! once before timing (the page cache holds it), so the figures compare what travels and where
//! the work is done, not the disk. The first run of each, and the best of three: a pull's
//! later runs find the data in C's and B's block caches (C's cache is what a pull fills). `cargo test --all-targets` runs it
//! as a smoke test on an 8 MiB image.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::io::Write;
use std::path::Path;
use std::time::Instant;

mod common;

use common::{MIB, archway_credentials, archway_token, serve};

/// A float32 image of `rows` × 4096 pixels, written row by row.
fn write_image(path: &Path, rows: usize) {
    let cols = 4096usize;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("image"));
    let header = archway_compute::header::write(&[
        "SIMPLE  =                    T".to_string(),
        "BITPIX  =                  -32".to_string(),
        "NAXIS   =                    2".to_string(),
        format!("NAXIS1  = {cols:>20}"),
        format!("NAXIS2  = {rows:>20}"),
    ]);
    out.write_all(&header).expect("write");
    let mut row = Vec::with_capacity(cols * 4);
    let mut x = 2463534242u32;
    for _ in 0..rows {
        row.clear();
        for _ in 0..cols {
            let x = common::xorshift32(&mut x);
            row.extend_from_slice(&(100.0 + (x % 1000) as f32 * 0.01).to_be_bytes());
        }
        out.write_all(&row).expect("write");
    }
    let data = rows * cols * 4;
    out.write_all(&vec![0u8; data.div_ceil(2880) * 2880 - data])
        .expect("write");
}

/// The configuration of a gateway with the peer volume `id` over `remote` at the gateway
/// whose data lives in `peer_dir` and listens at `peer_url` (with its API token, or without).
fn peer_config(
    peer_url: &str,
    peer_dir: &Path,
    with_token: bool,
    id: &str,
    remote: &str,
) -> String {
    let (key, secret) = archway_credentials(peer_dir);
    let token = if with_token {
        format!("token = \"{}\"\n", archway_token(peer_dir))
    } else {
        String::new()
    };
    format!(
        "[backends.peer-{id}]\nurl = \"archway+{peer_url}\"\naccess_key_id = \"{key}\"\n\
         secret_access_key = \"{secret}\"\n{token}\n\
         [[volumes]]\nid = \"{id}\"\nbackend = \"peer-{id}\"\nprefix = \"{remote}\"\n\n"
    )
}

struct Answer {
    /// The first run's time (caches empty for this path) and the best of three.
    first: f64,
    seconds: f64,
    json: serde_json::Value,
    bytes_back: usize,
}

/// `stats` of `demo/big.fits` as `volume` at `url`, best of three.
async fn reduce(url: &str, token: &str, volume: &str, allow_pull: bool) -> Answer {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .expect("client");
    let mut best: Option<Answer> = None;
    let mut first = None;
    for _ in 0..3 {
        let started = Instant::now();
        let resp = http
            .post(format!("{url}/api/v1/reduce"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "volume": volume, "key": "big.fits", "op": "stats", "allow_pull": allow_pull
            }))
            .send()
            .await
            .expect("reduce");
        let status = resp.status();
        let body = resp.bytes().await.expect("answer");
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            status.is_success(),
            "{volume} at {url}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let first = *first.get_or_insert(seconds);
        let answer = Answer {
            first,
            seconds,
            json: serde_json::from_slice(&body).expect("JSON"),
            bytes_back: body.len(),
        };
        if best.as_ref().is_none_or(|b| b.seconds > seconds) {
            best = Some(answer);
        }
    }
    best.expect("three runs")
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let mib: usize = if full {
        std::env::var("ARCHWAY_BENCH_MIB")
            .ok()
            .and_then(|m| m.parse().ok())
            .unwrap_or(1024)
    } else {
        8
    };
    let rows = mib * MIB / (4096 * 4);
    let bin = env!("CARGO_BIN_EXE_archway");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    let (_a, a_url) = serve(bin, &d.join("a"), &[]);
    let image = d.join("a/demo/big.fits");
    write_image(&image, rows);
    let size = std::fs::metadata(&image).expect("image").len();
    // Into the page cache, so every contender starts from memory.
    std::io::copy(
        &mut std::fs::File::open(&image).expect("image"),
        &mut std::io::sink(),
    )
    .expect("read");

    let start_with = |name: &str, config: String| {
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, config).expect("config");
        serve(
            bin,
            &d.join(name),
            &[std::ffi::OsStr::new("--config"), file.as_os_str()],
        )
    };
    let (_b, b_url) = start_with(
        "b",
        peer_config(&a_url, &d.join("a"), true, "remote-demo", "demo")
            + &peer_config(&a_url, &d.join("a"), false, "mute-remote-demo", "demo"),
    );
    let (_c, c_url) = start_with(
        "c",
        peer_config(&b_url, &d.join("b"), true, "far-demo", "remote-demo")
            + &peer_config(
                &b_url,
                &d.join("b"),
                false,
                "mute-far-demo",
                "mute-remote-demo",
            ),
    );

    println!(
        "federation: stats of a {:.0} MiB float32 image held at A ({a_url}), best of 3",
        size as f64 / MIB as f64
    );
    println!(
        "{:<34} {:>8} {:>8} {:>10} {:>12} {:>8}  links (bytes in / out)",
        "asked", "first s", "best s", "computed", "read there", "answer"
    );
    let rows_of = [
        ("at A (demo)", &a_url, d.join("a"), "demo", false),
        (
            "at B, one link (remote-demo)",
            &b_url,
            d.join("b"),
            "remote-demo",
            false,
        ),
        (
            "at C, two links (far-demo)",
            &c_url,
            d.join("c"),
            "far-demo",
            false,
        ),
        (
            "at C, data pulled (allow_pull)",
            &c_url,
            d.join("c"),
            "mute-far-demo",
            true,
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut at_a = 0.0;
    for (label, url, data, volume, pull) in rows_of {
        let r = runtime.block_on(reduce(url, &archway_token(&data), volume, pull));
        let site = r.json["site"].as_str().unwrap_or("here");
        let computed = if site == "here" { url.as_str() } else { site };
        let name = |u: &str| {
            if u == a_url {
                "A"
            } else if u == b_url {
                "B"
            } else if u == c_url {
                "C"
            } else {
                "?"
            }
        };
        let links: Vec<String> = r.json["sites"]
            .as_array()
            .map(|hops| {
                hops.iter()
                    .map(|h| {
                        format!(
                            "→{} {}/{}{}",
                            name(h["url"].as_str().unwrap_or("")),
                            h["bytes_in"],
                            h["bytes_out"],
                            if h["pulled"] == true { " (pulled)" } else { "" }
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if volume == "demo" {
            at_a = r.seconds;
        }
        println!(
            "{label:<34} {:>8.3} {:>8.3} {:>10} {:>12} {:>8}  {}   ({:.2}× the time at A)",
            r.first,
            r.seconds,
            name(computed),
            r.json["bytes_read"],
            r.bytes_back,
            links.join(", "),
            r.seconds / at_a
        );
        assert_eq!(
            r.json["count"].as_u64(),
            Some((rows * 4096) as u64),
            "{}",
            r.json
        );
        if !pull {
            assert_eq!(name(computed), "A", "{label}: computed at {computed}");
            for hop in r.json["sites"].as_array().into_iter().flatten() {
                let moved =
                    hop["bytes_in"].as_u64().unwrap_or(0) + hop["bytes_out"].as_u64().unwrap_or(0);
                assert!(
                    moved * 100 < size,
                    "{label}: {moved} bytes on a link, 1 % of the file or more"
                );
            }
        }
    }
}

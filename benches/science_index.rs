//! The science index at scale: cone-search latency with 10^6 indexed objects on SQLite and on
//! PostgreSQL, against reading every entry (what a search without the zone index costs); and
//! the scan rate — FITS objects indexed per second by `archway catalog volume scan` through
//! the gateway (headers by ranges, through the cache) — against astropy reading the same
//! headers straight from the local files.
//!
//! ```sh
//! eval "$(scripts/test-services)"          # PostgreSQL, and astropy in the test venv
//! cargo bench --bench science_index        # 10^6 objects, 500 cones; 2000 files scanned
//! ```
//!
//! `cargo test --all-targets` runs it small (10^4 objects, 50 cones, 40 files) to prove it
//! works. Objects are spread uniformly over the sky with fields of 0.05°–0.2°; cones have a
//! radius of 0.1° at random places.
#![allow(clippy::disallowed_methods)] // benches may block: they own their runtimes
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use archway_catalog::{Catalog, CatalogConfig, ScienceObject, ScienceQuery, SkyRegion, Timestamp};

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A point uniform on the sphere.
    fn sky(&mut self) -> (f64, f64) {
        let ra = 360.0 * self.next();
        let dec = (2.0 * self.next() - 1.0).asin().to_degrees();
        (ra, dec)
    }
}

fn object(n: usize, (ra, dec): (f64, f64), fov: f64) -> ScienceObject {
    ScienceObject {
        volume: format!("survey-{}", n % 4),
        key: format!("tiles/{:03}/{n:07}.fits", n % 1000),
        etag: Some(format!("{n:x}")),
        size: 5_760,
        indexed_at: Timestamp::now(),
        dataproduct_type: Some("image".into()),
        calib_level: Some(2),
        obs_id: Some(format!("obs{n}")),
        target_name: None,
        s_ra: Some(ra),
        s_dec: Some(dec),
        s_fov: Some(fov),
        s_region: Some(vec![[ra, dec]; 4]),
        t_min: Some(60_000.0 + (n % 3650) as f64),
        t_max: Some(60_000.01 + (n % 3650) as f64),
        t_exptime: Some(600.0),
        em_min: None,
        em_max: None,
        instrument_name: Some("CAM".into()),
        facility_name: Some("SCOPE".into()),
        hdus: serde_json::json!([{"index": 0, "kind": "image", "shape": [100, 100]}]),
        notes: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn cones(label: &str, catalog: &Catalog, objects: usize, cones: usize) {
    let started = Instant::now();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..objects {
        batch.push(object(n, rng.sky(), 0.05 + 0.15 * rng.next()));
        if batch.len() == 10_000 {
            catalog.index_objects(&batch).await.unwrap();
            batch.clear();
        }
    }
    catalog.index_objects(&batch).await.unwrap();
    let loaded = started.elapsed();
    let mut times = Vec::with_capacity(cones);
    let mut found = 0;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..cones {
        let (ra, dec) = rng.sky();
        let q = ScienceQuery {
            sky: Some(SkyRegion::Cone {
                ra,
                dec,
                radius: 0.1,
            }),
            limit: 10_000,
            ..Default::default()
        };
        let t = Instant::now();
        found += catalog.search_science(&q).await.unwrap().len();
        times.push(t.elapsed());
    }
    times.sort();
    // What a search costs without the zone index: every entry read and tested.
    let t = Instant::now();
    let mut all = 0;
    let mut after = None;
    loop {
        let q = ScienceQuery {
            limit: 100_000,
            after: after.clone(),
            ..Default::default()
        };
        let page = catalog.search_science(&q).await.unwrap();
        all += page.len();
        if page.len() < 100_000 {
            break;
        }
        after = page.last().map(|o| (o.volume.clone(), o.key.clone()));
    }
    let full = t.elapsed();
    assert_eq!(all, objects);
    let p50 = percentile(&times, 0.5);
    println!(
        "{label:<10} {objects:>9} objects (loaded in {:.1} s): cone r=0.1° p50 {:.2} ms, p99 {:.2} ms, \
         {:.1} matches each; reading every entry {:.0} ms = {:.0}× the p50 cone",
        loaded.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        found as f64 / cones as f64,
        full.as_secs_f64() * 1e3,
        full.as_secs_f64() / p50.as_secs_f64()
    );
}

/// `count` small FITS images, each with a TAN WCS, under `dir`.
fn write_fits(dir: &Path, count: usize) {
    let mut rng = Rng(7);
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        let (ra, dec) = rng.sky();
        let cards = [
            "SIMPLE  =                    T".to_string(),
            "BITPIX  =                  -32".into(),
            "NAXIS   =                    2".into(),
            "NAXIS1  =                   64".into(),
            "NAXIS2  =                   64".into(),
            "CTYPE1  = 'RA---TAN'".into(),
            "CTYPE2  = 'DEC--TAN'".into(),
            "CRPIX1  =                 32.5".into(),
            "CRPIX2  =                 32.5".into(),
            format!("CRVAL1  = {ra:20.8}"),
            format!("CRVAL2  = {dec:20.8}"),
            "CDELT1  =            -0.001".into(),
            "CDELT2  =             0.001".into(),
            "DATE-OBS= '2026-03-01T12:00:00'".into(),
            "EXPTIME =                300.0".into(),
            "INSTRUME= 'BENCHCAM'".into(),
        ];
        let mut bytes = archway_compute::header::write(&cards);
        bytes.resize(bytes.len() + 64 * 64 * 4, 0);
        bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
        std::fs::write(dir.join(format!("img{n:05}.fits")), bytes).unwrap();
    }
}

fn scan_rate(files: usize) {
    let bin = env!("CARGO_BIN_EXE_archway");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fits");
    write_fits(&data, files);
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.files]\nurl = \"file://{}\"\n\n[[volumes]]\nid = \"bench-fits\"\nbackend = \"files\"\nkind = \"archive\"\n",
            data.display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut gw = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(dir.path().join("data/credentials"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("archway_api_token = ").map(str::to_string))
        .unwrap();
    let t = Instant::now();
    let out = Command::new(bin)
        .args([
            "catalog",
            "--gateway",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            &token,
        ])
        .args(["--json", "volume", "scan", "bench-fits"])
        .output()
        .unwrap();
    let archway = t.elapsed();
    let _ = gw.kill();
    let _ = gw.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["science"]["with_position"], files, "{answer}");
    // The peer: astropy reading every header of the same files from the local disk.
    let python = std::env::var("ARCHWAY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("ARCHWAY_TEST_PYTHON is not set: run `eval \"$(scripts/test-services)\"` (astropy)")
    });
    let script = "import sys, glob, time\nfrom astropy.io import fits\nfrom astropy.wcs import WCS\n\
                  t = time.time()\nfor f in sorted(glob.glob(sys.argv[1] + '/*.fits')):\n    \
                  with fits.open(f, lazy_load_hdus=True) as h:\n        \
                  w = WCS(h[0].header); w.calc_footprint()\nprint(time.time() - t)";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let astropy: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    println!(
        "scan       {files:>9} FITS files: archway {:.0} objects/s (through the gateway, the cache \
         and the catalogue), astropy {:.0} objects/s (local files, headers and footprints) = {:.2}×",
        files as f64 / archway.as_secs_f64(),
        files as f64 / astropy,
        astropy / archway.as_secs_f64()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (objects, n_cones, files) = if full {
        (1_000_000, 500, 2000)
    } else {
        (10_000, 50, 40)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Catalog::open(&CatalogConfig::default(), dir.path())
            .await
            .unwrap();
        cones("SQLite", &sqlite, objects, n_cones).await;
        let admin = std::env::var("ARCHWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "ARCHWAY_TEST_POSTGRES_URL is not set: run `eval \"$(scripts/test-services)\"` \
                 (it starts PostgreSQL)"
            )
        });
        let name = format!("archway_test_{}_0_bench", std::process::id());
        let out = Command::new("psql")
            .arg(&admin)
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (base, _) = admin.rsplit_once('/').unwrap();
        let config = CatalogConfig {
            url: Some(format!("{base}/{name}")),
            ..Default::default()
        };
        let pg = Catalog::open(&config, dir.path()).await.unwrap();
        cones("PostgreSQL", &pg, objects, n_cones).await;
        drop(pg);
        let _ = Command::new("psql")
            .arg(&admin)
            .args(["-q", "-c", &format!("DROP DATABASE {name}")])
            .output();
    });
    scan_rate(files);
}

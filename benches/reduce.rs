//! CPU reduce throughput on a large FITS image: Archway's compute path (`stats`: count, sum,
//! mean, min, max, var, std in one pass, NaN-aware) against a plain read-and-sum loop over the
//! same bytes on all cores (the limit), and against astropy + numpy on the same file.
//!
//! ```sh
//! cargo bench --bench reduce
//! ARCHWAY_BENCH_PYTHON=/path/to/python-with-astropy cargo bench --bench reduce
//! ```
//!
//! The file (`ARCHWAY_BENCH_MIB`, default 1024 MiB of float32) is read once before timing, so
//! every contender reads from the page cache: this measures decoding and reducing, not the
//! disk. Archway reads it through object_store's local store, as the gateway does for a `file`
//! backend (without the block cache); astropy + numpy run `getdata` then `nanmean` and
//! `nanstd` (what a scientist writes), best of three.
//!
//! Then tile-compressed images: a 16-bit sky image (a quarter of the size above) compressed by
//! cfitsio's `fpack` with RICE_1 and with HCOMPRESS_1 (lossless), reduced by Archway, against
//! cfitsio's `funpack` decompressing the same file to /dev/null (decompression alone, by the
//! library that wrote it) and astropy + numpy (cfitsio's decompressors, then numpy). Needs
//! `fpack`/`funpack` (Debian's `libcfitsio-bin`); without them that part says so.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use archway_compute::{Engine, Op, ReduceRequest};
use archway_dataplane::object_store::local::LocalFileSystem;

/// Writes a FITS image of `rows` × 4096 pixels of `bitpix`, row by row: `pixel(row, col, x)`
/// appends one pixel's big-endian bytes, `x` being a xorshift stream seeded by `seed`.
/// Returns the bytes of data.
fn write_fits(
    path: &Path,
    bitpix: i64,
    rows: usize,
    seed: u32,
    mut pixel: impl FnMut(usize, usize, u32, &mut Vec<u8>),
) -> usize {
    use std::io::Write;
    let cols = 4096usize;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("bench file"));
    f.write_all(&archway_compute::header::write(&[
        "SIMPLE  =                    T".to_string(),
        format!("BITPIX  = {bitpix:>20}"),
        "NAXIS   =                    2".to_string(),
        format!("NAXIS1  = {cols:>20}"),
        format!("NAXIS2  = {rows:>20}"),
    ]))
    .expect("write");
    let mut x = seed;
    let mut row = Vec::with_capacity(cols * 8);
    for r in 0..rows {
        row.clear();
        for c in 0..cols {
            pixel(r, c, common::xorshift32(&mut x), &mut row);
        }
        f.write_all(&row).expect("write");
    }
    let data = rows * cols * bitpix.unsigned_abs() as usize / 8;
    f.write_all(&vec![0u8; (2880 - data % 2880) % 2880])
        .expect("write");
    f.flush().expect("flush");
    data
}

/// `mib` MiB of float32 values around 1000, one in 997 NaN; the bytes of data.
fn write_image(path: &Path, mib: usize) -> usize {
    write_fits(
        path,
        -32,
        mib * 1024 * 1024 / 4 / 4096,
        12345,
        |r, c, x, row| {
            let v = if (r * 4096 + c).is_multiple_of(997) {
                f32::NAN
            } else {
                1000.0 + (x % 10_000) as f32 * 0.01
            };
            row.extend_from_slice(&v.to_be_bytes());
        },
    )
}

/// A 16-bit sky image of about `mib` MiB: a background with a gradient and noise, the kind of
/// image fpack is made for; its pixels.
fn write_sky(path: &Path, mib: usize) -> usize {
    let rows = (mib * 1024 * 1024 / 2 / 4096).max(16);
    write_fits(path, 16, rows, 98765, |r, c, x, row| {
        let v = 1000 + (r / 64 + c / 64) as i32 + (x % 64) as i32;
        row.extend_from_slice(&(v as i16).to_be_bytes());
    }) / 2
}

/// `stats` of `key` on the CPU.
fn stats(key: &str) -> ReduceRequest {
    ReduceRequest {
        engine: Engine::Cpu,
        ..ReduceRequest::new("bench", key, Op::Stats)
    }
}

/// Times a command, best of three; None if it cannot run.
fn time_command(program: &str, args: &[&str]) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let ok = Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Some(best)
}

/// astropy `getdata` + `nanmean` + `nanstd` of HDU `hdu` of `path`, best of three.
fn time_astropy(python: &str, path: &Path, hdu: usize) -> Option<f64> {
    let script = format!(
        "import time, numpy as np\nfrom astropy.io import fits\nbest = 1e9\nfor _ in range(3):\n    \
         t = time.perf_counter()\n    d = fits.getdata('{}', {hdu})\n    m = float(np.nanmean(d)); \
         s = float(np.nanstd(d))\n    best = min(best, time.perf_counter() - t)\nprint(best, m, s)\n",
        path.display()
    );
    Command::new(python)
        .arg("-c")
        .arg(&script)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<f64>().ok())
        })
}

/// Sums the float32 values of `path`'s data on all cores, as plainly as it gets.
fn plain_sum(path: &Path, data: usize) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = (data / threads / 4 + 1) * 4;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    use std::io::{Seek, SeekFrom};
                    let mut f = std::fs::File::open(path).expect("open");
                    let start = (t * per).min(data);
                    let end = ((t + 1) * per).min(data);
                    f.seek(SeekFrom::Start(2880 + start as u64)).expect("seek");
                    let mut left = end - start;
                    let mut buf = vec![0u8; 4 << 20];
                    let mut sum = 0.0f64;
                    while left > 0 {
                        let n = left.min(buf.len());
                        f.read_exact(&mut buf[..n]).expect("read");
                        for c in buf[..n].chunks_exact(4) {
                            let v = f32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64;
                            if !v.is_nan() {
                                sum += v;
                            }
                        }
                        left -= n;
                    }
                    sum
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    })
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("ran"))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mib: usize = std::env::var("ARCHWAY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1024 } else { 16 });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("image.fits");
    let data = write_image(&path, mib);
    let total = std::fs::metadata(&path).expect("stat").len() as f64;
    // Into the page cache.
    let _ = std::fs::read(&path).map(|b| b.len());

    let (t_plain, plain) = best_of(3, || plain_sum(&path, data));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
    let req = stats("image.fits");
    let (t_archway, r) = best_of(3, || {
        rt.block_on(archway_compute::run(store.clone(), &req))
            .expect("reduce")
    });
    let sum = r.value["sum"].as_f64().expect("sum");
    assert!(
        (sum - plain).abs() <= plain.abs() * 1e-9,
        "archway {sum} vs plain {plain}"
    );

    let python = std::env::var("ARCHWAY_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let astropy = time_astropy(&python, &path, 0);

    let gbs = |t: f64| total / t / 1e9;
    println!(
        "\n{mib} MiB float32 image ({} values, 1 in 997 NaN), page cache, {} cores",
        data / 4,
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    println!("{:<34} {:>8} {:>10}", "", "GB/s", "ratio");
    println!(
        "{:<34} {:>8.2} {:>10}",
        "plain read-and-sum loop (limit)",
        gbs(t_plain),
        "1.00x"
    );
    println!(
        "{:<34} {:>8.2} {:>9.2}x",
        "archway reduce stats (cpu)",
        gbs(t_archway),
        t_plain / t_archway
    );
    match astropy {
        Some(t) => {
            println!(
                "{:<34} {:>8.2} {:>9.2}x",
                "astropy getdata + nanmean + nanstd",
                gbs(t),
                t_plain / t
            );
            println!("archway vs astropy + numpy: {:.2}x", t / t_archway);
        }
        None => println!(
            "astropy + numpy: not measured ({python} cannot import astropy; set \
             ARCHWAY_BENCH_PYTHON)"
        ),
    }

    tiled(&rt, dir.path(), mib / 4, &python);
}

/// Tile-compressed images: Archway's reduce against funpack and astropy on the same files.
fn tiled(rt: &tokio::runtime::Runtime, dir: &Path, mib: usize, python: &str) {
    let sky = dir.join("sky.fits");
    let pixels = write_sky(&sky, mib.max(4));
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir).expect("local store"));
    let mut req = stats("sky.fits");
    let plain = rt
        .block_on(archway_compute::run(store.clone(), &req))
        .expect("reduce sky");
    println!(
        "\n{:.0} Mpixel 16-bit sky image, tile-compressed by fpack (rows as tiles), page cache",
        pixels as f64 / 1e6
    );
    println!(
        "{:<12} {:>7} {:>16} {:>16} {:>16} {:>10} {:>10}",
        "codec",
        "ratio",
        "archway Mpix/s",
        "funpack Mpix/s",
        "astropy Mpix/s",
        "vs funpack",
        "vs astropy"
    );
    for (codec, flag) in [("RICE_1", "-r"), ("HCOMPRESS_1", "-h")] {
        let fz = dir.join(format!("sky-{flag}.fits.fz"));
        let (Some(fz_str), Some(sky_str)) = (fz.to_str(), sky.to_str()) else {
            return;
        };
        let packed = Command::new("fpack")
            .args(["-C", flag, "-O", fz_str, sky_str])
            .status()
            .is_ok_and(|s| s.success());
        if !packed {
            println!("{codec}: not measured (no fpack: apt install libcfitsio-bin)");
            continue;
        }
        let size = std::fs::metadata(&fz).map_or(0, |m| m.len());
        let _ = std::fs::read(&fz).map(|b| b.len());
        req.key = format!("sky-{flag}.fits.fz");
        let (t_archway, r) = best_of(3, || {
            rt.block_on(archway_compute::run(store.clone(), &req))
                .expect("reduce tiled")
        });
        // Lossless: the same values (variance merged in another order: to rounding).
        for k in ["count", "sum", "min", "max"] {
            assert_eq!(r.value[k], plain.value[k], "{codec} {k}");
        }
        let (v, w) = (r.value["var"].as_f64(), plain.value["var"].as_f64());
        assert!(
            v.zip(w).is_some_and(|(v, w)| (v - w).abs() <= w * 1e-9),
            "{codec} var"
        );
        let t_funpack = time_command("funpack", &["-S", fz_str]);
        let t_astropy = time_astropy(python, &fz, 1);
        let mpix = |t: f64| pixels as f64 / t / 1e6;
        let show = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.0}", mpix(t)));
        let ratio =
            |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.2}x", t / t_archway));
        println!(
            "{:<12} {:>6.2}x {:>16.0} {:>16} {:>16} {:>10} {:>10}",
            codec,
            (pixels * 2) as f64 / size.max(1) as f64,
            mpix(t_archway),
            show(t_funpack),
            show(t_astropy),
            ratio(t_funpack),
            ratio(t_astropy),
        );
    }
}

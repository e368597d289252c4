//! The short version of `scripts/fuzz` in the test command: every fuzz target's check (shared
//! with the target, `fuzz/common/`) run on its seeds (`fuzz/seeds/<target>`) and on every input
//! that once failed (`fuzz/regressions/<target>`, kept when the bug is fixed). The FITS
//! reader's are replayed by `compute/tests/fuzz_regressions.rs`.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

#[path = "../fuzz/common/cache_block_files.rs"]
mod cache_block_files;
#[path = "../fuzz/common/config.rs"]
mod config;
#[path = "../fuzz/common/credentials_files.rs"]
mod credentials_files;
#[path = "../fuzz/common/gateway.rs"]
mod gateway;

use std::path::PathBuf;

/// The seed and regression inputs of `target`, at least `min` of them.
fn inputs(target: &str, min: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            out.push((path, data));
        }
    }
    out.sort();
    assert!(
        out.len() >= min,
        "{target}: {} inputs under fuzz/seeds and fuzz/regressions, expected at least {min}",
        out.len()
    );
    out
}

#[test]
fn the_configuration_seeds_pass_the_config_target_check() {
    for (path, data) in inputs("config", 2) {
        config::exercise(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_credentials_file_seeds_pass_the_credentials_target_check() {
    for (path, data) in inputs("credentials_files", 6) {
        credentials_files::exercise(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_gateway_request_seeds_and_regressions_get_no_500() {
    for (path, data) in inputs("gateway_requests", 10) {
        gateway::exercise(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn forged_block_files_are_never_served() {
    // Seeds made here: an empty file, a truncated header, and junk, each over every block.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for pick in 0..4u8 {
        seeds.push(vec![pick]);
        seeds.push([vec![pick], b"ARCHWAYB".to_vec(), vec![0xFF; 40]].concat());
        seeds.push([vec![pick], (0..5000u32).map(|i| (i * 7) as u8).collect()].concat());
    }
    for (path, data) in inputs("cache_block_files", 0) {
        seeds.push(data);
        let _ = path;
    }
    for data in seeds {
        cache_block_files::exercise(&data).unwrap();
    }
}

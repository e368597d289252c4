//! Fuzzes the credentials files Archway reads: AWS shared credentials files (`archway mount`)
//! and the catalogue's secret key file; `fuzz/common/credentials_files.rs` says how an input
//! becomes a file and what must hold. `tests/fuzz_replay.rs` replays the seeds.
#![no_main]

#[path = "../common/credentials_files.rs"]
mod credentials_files;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = credentials_files::exercise(data) {
        panic!("{e}");
    }
});

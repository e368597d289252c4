//! Fuzzes the disk cache's block files (`fuzz/common/cache_block_files.rs` says what is
//! checked: a forged block file is never served).
#![no_main]

#[path = "../common/cache_block_files.rs"]
mod cache_block_files;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = cache_block_files::exercise(data) {
        panic!("{e}");
    }
});

//! Fuzzes the configuration parser (`fuzz/common/config.rs` says what is checked).
#![no_main]

#[path = "../common/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = config::exercise(data) {
        panic!("{e}");
    }
});

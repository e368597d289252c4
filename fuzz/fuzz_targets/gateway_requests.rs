//! Fuzzes the gateway's request handling in process: any HTTP request to the real router
//! (API JSON bodies, paths and queries; S3 paths, queries, headers and XML bodies) over a real
//! SQLite catalogue; `fuzz/common/gateway.rs` says how an input becomes a request. A panic, a
//! hang or a 500 is a bug. `tests/fuzz_replay.rs` replays the seeds and regressions.
#![no_main]

#[path = "../common/gateway.rs"]
mod gateway;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = gateway::exercise(data) {
        panic!("{e}");
    }
});

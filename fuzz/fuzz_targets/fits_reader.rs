//! Fuzzes the FITS reader end to end: any bytes, as an object, reduced as
//! `archway_compute::fuzzing::requests` says (statistics, histograms, quantiles, table
//! columns, cutouts, binning). Errors are fine; a panic, a hang or an allocation beyond the
//! object's size is a bug. Inputs that once crashed are replayed by
//! `compute/tests/fuzz_regressions.rs`.
#![no_main]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(archway_compute::fuzzing::exercise(data));
});

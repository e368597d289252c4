//! What the fuzz target (`fuzz/fuzz_targets/fits_reader.rs`) does with each input, shared with
//! the regression test that replays the inputs fuzzing once crashed on
//! (`compute/tests/fuzz_regressions.rs`), so both exercise the same requests.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{ComputeError, Engine, Op, ReduceRequest, Reduction, run};

fn request(op: Op, hdu: Option<&str>, column: Option<&str>) -> ReduceRequest {
    ReduceRequest {
        hdu: hdu.map(str::to_string),
        column: column.map(str::to_string),
        bins: Some(16),
        q: Some(vec![0.25, 0.5]),
        engine: Engine::Cpu,
        ..ReduceRequest::new("v", "f.fits", op)
    }
}

/// The requests made of one input: statistics of the first HDU with data, a histogram of the
/// second HDU, quantiles and statistics of its first two table columns, and a cutout and a
/// binning of both. The cutout's section and the binning factors come from the input's last
/// bytes (a FITS file's are padding), so the fuzzer explores requests too: sections past the
/// edges, empty ones, factors larger than the axes.
pub fn requests(data: &[u8]) -> Vec<ReduceRequest> {
    let tail = |i: usize| u64::from(data.len().checked_sub(i + 1).map_or(0, |at| data[at]));
    let section = vec![
        [tail(0) % 8, tail(0) % 8 + tail(1) % 40],
        [tail(2) % 8, 1 + tail(3) % 40],
    ];
    let factor = vec![1 + tail(1) % 5, 1 + tail(2) % 5];
    let mut requests = vec![
        request(Op::Stats, None, None),
        request(Op::Histogram, Some("1"), None),
        request(Op::Quantiles, Some("1"), Some("1")),
        request(Op::Stats, Some("1"), Some("2")),
    ];
    for hdu in [None, Some("1")] {
        let mut cutout = request(Op::Cutout, hdu, None);
        cutout.section = Some(section.clone());
        let mut bin = request(Op::Bin, hdu, None);
        bin.factor = Some(factor.clone());
        requests.extend([cutout, bin]);
    }
    requests
}

/// Runs every request of [`requests`] over `data` as an object; the answers, in order.
pub async fn exercise(data: &[u8]) -> Vec<Result<Reduction, ComputeError>> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    if let Err(e) = store
        .put(&"f.fits".into(), PutPayload::from(data.to_vec()))
        .await
    {
        return vec![Err(ComputeError::store(e))];
    }
    let mut out = Vec::new();
    for req in requests(data) {
        out.push(run(store.clone(), &req).await);
    }
    out
}

//! Fuzzes the FITS reader end to end: any bytes, as an object, reduced over the first HDU with
//! data, a table column and a compressed image's tiles. Errors are fine; a panic, a hang or an
//! allocation beyond the object's size is a bug.
#![no_main]

use std::sync::Arc;

use archway_compute::{Engine, Op, ReduceRequest, run};
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        if store
            .put(&"f.fits".into(), PutPayload::from(data.to_vec()))
            .await
            .is_err()
        {
            return;
        }
        for (hdu, column, op) in [
            (None, None, Op::Stats),
            (Some("1"), None, Op::Histogram),
            (Some("1"), Some("1"), Op::Quantiles),
        ] {
            let req = ReduceRequest {
                volume: "v".into(),
                key: "f.fits".into(),
                op,
                hdu: hdu.map(str::to_string),
                column: column.map(str::to_string),
                bins: Some(16),
                range: None,
                q: Some(vec![0.5]),
                approximate: false,
                section: None,
                factor: None,
                output: Default::default(),
                engine: Engine::Cpu,
            };
            let _ = run(store.clone(), &req).await;
        }
    });
});

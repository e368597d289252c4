//! What the compute tests share: the fixture files in a store, and a plain request.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use archway_compute::{Engine, Op, ReduceRequest};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Every fixture (`.fits` and `.fits.fz`) in an in-memory store, under its file name.
pub async fn fixtures() -> Arc<dyn ObjectStore> {
    let store = InMemory::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "fits" || e == "fz") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            store
                .put(
                    &Path::from(name),
                    PutPayload::from(std::fs::read(&path).unwrap()),
                )
                .await
                .unwrap();
        }
    }
    Arc::new(store)
}

/// `op` on `key`, everything else by default, on the CPU.
pub fn request(key: &str, op: Op) -> ReduceRequest {
    ReduceRequest {
        engine: Engine::Cpu,
        ..ReduceRequest::new("v", key, op)
    }
}

/// Reports that `test` could not run on this machine: on stderr, and as a line
/// `skipped: <test>: <reason>` in the file `ARCHWAY_TEST_SKIPS` names, which the test command
/// (`scripts/test`) prints at its end, so a skip is never mistaken for a pass.
pub fn skipped(test: &str, reason: &str) {
    let line = format!("skipped: {test}: {reason}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("ARCHWAY_TEST_SKIPS") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("ARCHWAY_TEST_SKIPS {}: {e}", path.display()));
        writeln!(f, "{line}").unwrap();
    }
}

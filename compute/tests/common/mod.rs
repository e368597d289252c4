//! What the compute tests share: the fixture files in a store, and a plain request.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use archway_compute::{Engine, Op, ReduceRequest};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

// The workspace's one way to report a skipped test.
#[path = "../../../tests/common/skip.rs"]
mod skip;
#[allow(unused_imports)] // not every test binary reports a skip
pub use skip::skipped;

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

/// What `compute/tests/SCRIPT` prints (JSON) given `input` as a JSON file: the astropy side of
/// a comparison, run with the test services' Python (`ARCHWAY_TEST_PYTHON`).
#[allow(clippy::disallowed_methods)] // tests may block
pub fn astropy(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let python = std::env::var("ARCHWAY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "ARCHWAY_TEST_PYTHON is not set: this test compares with astropy. Run the tests with \
             scripts/test, or `eval \"$(scripts/test-services)\"` first"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(input).unwrap()).unwrap();
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "astropy failed (scripts/test-services installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

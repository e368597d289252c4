//! Replays every input in `tests/fuzz-regressions/` — inputs on which `cargo fuzz run
//! fits_reader` once found a crash — through the fuzz target's requests: each must answer
//! (an error is fine) without a panic. Add a crashing input here when fixing what it found.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_once_crashed_are_answered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        // A panic inside a reduction's blocking task comes back as an error naming it; one on
        // this task fails the test. Both are bugs.
        let answers = tokio::spawn(async move { archway_compute::fuzzing::exercise(&data).await })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for answer in answers {
            if let Err(e) = answer {
                assert!(
                    !e.to_string().contains("panicked"),
                    "{}: {e}",
                    path.display()
                );
            }
        }
    }
}

//! Reporting a test that cannot run on this machine (shared by the workspace's test crates).

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

//! ARCHITECTURE.md's checkable claims, checked: the crate graph it lists is the one the
//! Cargo.toml files declare, each outside library is known only where it says, only the
//! dataplane names concrete stores, and the fronts make no access decision and write to no
//! store themselves.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Workspace member directories, by the short name ARCHITECTURE.md uses.
const CRATES: &[(&str, &str)] = &[
    ("archway", "."),
    ("cache", "cache"),
    ("catalog", "catalog"),
    ("compute", "compute"),
    ("config", "config"),
    ("dataplane", "dataplane"),
    ("fuse-mount", "fuse-mount"),
    ("gateway", "gateway"),
];

fn read(path: impl AsRef<Path>) -> String {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `[dependencies]` of a crate (normal ones only: not dev-, not build-).
fn dependencies(dir: &str) -> BTreeSet<String> {
    let manifest: toml::Table = read(Path::new(dir).join("Cargo.toml")).parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// The crate graph as ARCHITECTURE.md lists it, between its markers.
fn documented_graph() -> BTreeMap<String, BTreeSet<String>> {
    let doc = read("ARCHITECTURE.md");
    let start = doc
        .find("<!-- crate graph -->")
        .expect("ARCHITECTURE.md has a `<!-- crate graph -->` block");
    let end = doc[start..]
        .find("<!-- /crate graph -->")
        .expect("the crate graph block ends")
        + start;
    let mut graph = BTreeMap::new();
    for line in doc[start..end].lines() {
        if line.contains("<!--") {
            continue;
        }
        let Some((from, to)) = line.split_once("->") else {
            continue;
        };
        let from = from.split_whitespace().next().unwrap().to_string();
        let to: BTreeSet<String> = to
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "(nothing)")
            .collect();
        graph.insert(from, to);
    }
    graph
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let documented = documented_graph();
    for (name, dir) in CRATES {
        let real: BTreeSet<String> = dependencies(dir)
            .into_iter()
            .filter_map(|d| {
                let short = d.strip_prefix("archway-")?;
                Some(if short == "fuse" {
                    "fuse-mount".to_string()
                } else {
                    short.to_string()
                })
            })
            .collect();
        let listed = documented
            .get(*name)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md's crate graph lacks `{name}`"));
        assert_eq!(
            listed, &real,
            "ARCHITECTURE.md says `{name}` depends on {listed:?}; its Cargo.toml says {real:?}"
        );
    }
    assert_eq!(documented.len(), CRATES.len(), "extra crates in the graph");
}

/// Which crates may depend on each outside library ARCHITECTURE.md names as one layer's.
#[test]
fn each_outside_library_is_known_only_where_the_architecture_says() {
    let only: &[(&str, &[&str])] = &[
        ("s3s", &["gateway"]),
        ("hyper", &["gateway"]),
        ("hyper-util", &["gateway"]),
        ("rustls", &["gateway"]),
        ("tokio-rustls", &["gateway"]),
        ("utoipa-axum", &["gateway"]),
        ("reqwest", &["gateway"]),
        // The binary serves the mount's metrics with a small axum router.
        ("axum", &["gateway", "archway"]),
        ("fuser", &["fuse-mount"]),
        ("libc", &["fuse-mount"]),
        ("cudarc", &["compute"]),
        ("sqlx", &["catalog"]),
        // The gateway keeps the web pages' rendered quick-looks (gateway/src/ui/images.rs).
        ("moka", &["cache", "catalog", "gateway"]),
    ];
    for (library, allowed) in only {
        for (name, dir) in CRATES {
            if dependencies(dir).contains(*library) {
                assert!(
                    allowed.contains(name),
                    "`{name}` depends on `{library}`, which ARCHITECTURE.md gives only to {allowed:?}"
                );
            }
        }
    }
}

/// Every `.rs` file under `dir`, tests excepted (`tests/`, `benches/`, `#[cfg(test)]` files).
fn sources(dir: &str) -> Vec<PathBuf> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(ROOT).join(dir).join("src"), &mut out);
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)] mod tests` (tests may build any store).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn only_the_dataplane_names_concrete_stores() {
    // The concrete stores, by the object_store modules that hold them.
    let stores = [
        "local::LocalFileSystem",
        "aws::AmazonS3",
        "gcp::GoogleCloudStorage",
        "azure::MicrosoftAzure",
        "http::HttpBuilder",
        "http::HttpStore",
        "memory::InMemory",
    ];
    // The backends, a peer gateway's store, and the fuzz target's harness (an object in
    // memory, shared with the test that replays its findings).
    let allowed = [
        "dataplane/src/backend.rs",
        "dataplane/src/peer.rs",
        "compute/src/fuzzing.rs",
    ];
    for (_, dir) in CRATES {
        if *dir == "." {
            continue;
        }
        for file in sources(dir) {
            let rel = file
                .strip_prefix(ROOT)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let rel = rel.trim_start_matches('/');
            if allowed.contains(&rel) || rel.ends_with("conformance.rs") {
                continue;
            }
            let text = code(&file);
            for s in stores {
                assert!(
                    !text.contains(s),
                    "{rel} names the concrete store `{s}`: only dataplane/src/backend.rs may"
                );
            }
        }
    }
}

/// The fronts decide nothing about access and write to no store themselves: the dataplane
/// decides (`curation.rs`, `VolumeStore::allow`) and writes (`write::write_stream`).
#[test]
fn the_fronts_make_no_access_decision_and_no_direct_write() {
    let decisions = [
        "require_admin",
        "require_self_or_admin",
        ".admin ||",
        "|| who.admin",
        "p.admin",
        "< Access::",
        ">= Access::",
    ];
    let writes = [".put_opts(", ".put_multipart", "WriteMultipart", ".put(&"];
    for dir in ["gateway", "fuse-mount"] {
        for file in sources(dir) {
            let rel = file
                .strip_prefix(ROOT)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = code(&file);
            for d in decisions {
                assert!(
                    !text.contains(d),
                    "{rel} contains `{d}`: access decisions belong to the dataplane"
                );
            }
            for w in writes {
                assert!(
                    !text.contains(w),
                    "{rel} contains `{w}`: writes go through archway_dataplane::write"
                );
            }
        }
    }
}

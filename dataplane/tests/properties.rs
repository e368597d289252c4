//! Property tests: key validation, and listings that page through any set of keys with any
//! page size, prefix and delimiter exactly as one sorted listing would.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::collections::BTreeSet;

use archway_dataplane::conformance::fixture;
use archway_dataplane::key::parse_key;
use archway_dataplane::{BackendConfig, ListRequest, PutRequest};
use bytes::Bytes;
use proptest::prelude::*;

proptest! {
    #[test]
    fn keys_are_accepted_exactly_when_every_segment_is_sound(
        segments in prop::collection::vec("[a-z.é~#%() -]{0,6}", 1..6)
    ) {
        let key = segments.join("/");
        // A key ending in '/' is a folder marker: its segments before the '/' must be sound,
        // and it is kept in the store as the folder's marker entry (a single space).
        let marker = key.ends_with('/');
        let body: Vec<&str> = key.strip_suffix('/').unwrap_or(&key).split('/').collect();
        let sound = key.len() <= 1024
            && body.iter().all(|s| !s.is_empty() && *s != "." && *s != "..")
            && (marker || body.last() != Some(&" "));
        match parse_key(&key) {
            Ok(path) => {
                prop_assert!(sound, "accepted {key:?}");
                let stored = if marker { format!("{key} ") } else { key.clone() };
                prop_assert_eq!(path.as_ref(), stored.as_str());
            }
            Err(_) => prop_assert!(!sound, "refused {key:?}"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn paging_equals_one_sorted_listing(
        keys in prop::collection::btree_set("[ab]{1,2}(/[ab.]{1,2}){0,2}", 1..30),
        page in 1usize..6,
        prefix in "([ab]/?)?",
        slash in any::<bool>(),
    ) {
        // Keys that are also folders of other keys cannot exist in a file tree.
        let keys: BTreeSet<String> = keys
            .iter()
            .filter(|k| !keys.iter().any(|o| o.starts_with(&format!("{k}/"))))
            .filter(|k| parse_key(k).is_ok())
            .cloned()
            .collect();
        let delimiter = slash.then(|| "/".to_string());
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let f = fixture(BackendConfig {
                url: format!("file://{}", dir.path().display()),
                ..Default::default()
            })
            .await;
            for k in &keys {
                let body = futures::stream::iter(vec![Ok::<_, archway_dataplane::BodyError>(Bytes::from_static(b"x"))]);
                f.dataplane.put(Some(&f.admin), "rw-vol", k, body, PutRequest::default()).await.unwrap();
            }
            // What one listing must return: matching keys, grouped at the delimiter, sorted.
            let mut expected = BTreeSet::new();
            for k in keys.iter().filter(|k| k.starts_with(&prefix)) {
                match (&delimiter, k[prefix.len()..].find('/')) {
                    (Some(_), Some(i)) => expected.insert(k[..prefix.len() + i + 1].to_string()),
                    _ => expected.insert(k.clone()),
                };
            }
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let req = ListRequest {
                    prefix: prefix.clone(),
                    delimiter: delimiter.clone(),
                    start_after: after.clone(),
                    max_keys: Some(page),
                };
                let p = f.dataplane.list(Some(&f.admin), "rw-vol", &req).await.unwrap();
                assert!(p.objects.len() + p.common_prefixes.len() <= page);
                got.extend(p.objects.iter().map(|o| o.key.clone()));
                got.extend(p.common_prefixes.clone());
                match p.next_start_after {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            got.sort();
            let expected: Vec<String> = expected.into_iter().collect();
            assert_eq!(got, expected, "prefix {prefix:?} delimiter {delimiter:?} page {page}");
        });
    }
}

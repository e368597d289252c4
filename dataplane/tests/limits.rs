//! Configured bounds hold: an object over `limits.max_object_bytes` is refused and leaves
//! nothing behind, in the single-request and the multipart path.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use archway_dataplane::conformance::fixture_with;
use archway_dataplane::{BackendConfig, DataplaneError, LimitsConfig, PutRequest};
use bytes::Bytes;
use futures::stream;

const MIB: usize = 1024 * 1024;

fn body(
    len: usize,
    chunk: usize,
) -> impl futures::Stream<Item = Result<Bytes, archway_dataplane::BodyError>> {
    stream::iter(
        (0..len)
            .step_by(chunk)
            .map(move |i| Ok(Bytes::from(vec![7u8; chunk.min(len - i)]))),
    )
}

#[tokio::test]
async fn objects_over_the_limit_are_refused_whole() {
    let limits = LimitsConfig {
        upload_part_size: 5 * MIB,
        max_object_bytes: (11 * MIB) as u64,
        ..Default::default()
    };
    let f = fixture_with(
        BackendConfig {
            url: "memory://".into(),
            ..Default::default()
        },
        limits,
        Default::default(),
        "",
    )
    .await;
    let dp = &f.dataplane;
    // Small path: everything fits in one part.
    let ok = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "fits",
            body(MIB, 64 * 1024),
            PutRequest::default(),
        )
        .await;
    assert!(ok.is_ok());
    // Multipart path: over the limit after two parts went out.
    let err = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "too-big",
            body(12 * MIB, 256 * 1024),
            PutRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DataplaneError::EntityTooLarge { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("limits.max_object_bytes"), "{err}");
    assert!(
        dp.head(Some(&f.admin), "rw-vol", "too-big").await.is_err(),
        "a refused object was stored"
    );
    // Exactly at the limit is fine.
    let at = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "at-limit",
            body(11 * MIB, 256 * 1024),
            PutRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(at.size, (11 * MIB) as u64);
}

/// The upload spool's folders, by upload id.
fn spooled(dir: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn abandoned_uploads_expire_and_completion_records_go_after_an_hour() {
    use std::time::{Duration, SystemTime};
    let f = fixture_with(
        BackendConfig {
            url: "memory://".into(),
            ..Default::default()
        },
        LimitsConfig::default(),
        Default::default(),
        "",
    )
    .await;
    let dp = &f.dataplane;
    let who = Some(&f.admin);
    let abandoned = dp
        .create_upload(who, "rw-vol", "left", PutRequest::default())
        .await
        .unwrap();
    let done = dp
        .create_upload(who, "rw-vol", "done", PutRequest::default())
        .await
        .unwrap();
    let part = dp
        .upload_part(who, "rw-vol", "done", &done, 1, body(1000, 1000))
        .await
        .unwrap();
    let parts = [(1, part.etag.clone())];
    let first = dp
        .complete_upload(who, "rw-vol", "done", &done, &parts, PutRequest::default())
        .await
        .unwrap();
    let spool = f.spool_dir();
    assert_eq!(spooled(&spool).len(), 2);

    // Within the hour and the expiry, both stay, and a retried completion answers the same.
    assert_eq!(
        dp.expire_uploads(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    let again = dp
        .complete_upload(who, "rw-vol", "done", &done, &parts, PutRequest::default())
        .await
        .unwrap();
    assert_eq!(again, first);
    // Only the record is left of the completed upload: its parts are gone.
    let left: Vec<_> = std::fs::read_dir(spool.join(&done))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // An hour after completion the record goes; the open upload stays until its expiry.
    let record = std::fs::File::options()
        .write(true)
        .open(spool.join(&done).join("completed.json"))
        .unwrap();
    record
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    assert_eq!(
        dp.expire_uploads(Duration::from_secs(86_400))
            .await
            .unwrap(),
        1
    );
    assert_eq!(spooled(&spool), std::slice::from_ref(&abandoned));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        dp.expire_uploads(Duration::from_millis(10)).await.unwrap(),
        1
    );
    assert!(spooled(&spool).is_empty());
    assert!(matches!(
        dp.upload_part(who, "rw-vol", "left", &abandoned, 1, body(10, 10))
            .await,
        Err(DataplaneError::NoSuchUpload { .. })
    ));
}

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

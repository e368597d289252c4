//! The dataplane conformance suite, shipped as code so that every backend kind runs the same
//! checks: `run(backend)` builds a catalogue and a dataplane over `backend`, creates volumes,
//! users and grants, and exercises every operation and rule. A failure panics with what broke.
//!
//! The backend must be empty and writable; the suite uses volumes with prefixes `rw`, `ro` and
//! `pub` inside it.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{TryStreamExt, stream};

use crate::cache::CacheConfig;
use crate::catalog::{Access, Catalog, CatalogConfig, NewVolume, Principal, Subject, VolumeKind};
use crate::{
    BackendConfig, BodyError, CopyRequest, Dataplane, DataplaneConfig, DataplaneError,
    LimitsConfig, ListRequest, ObjectAttributes, PutRequest, ReadRange, ReadRequest,
};

const MIB: usize = 1024 * 1024;

/// What a backend can do beyond the core, where stores legitimately differ, and where in it
/// the suite may write.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// The store evaluates If-Match / If-None-Match / If-Modified-Since itself.
    pub conditional_reads: bool,
    /// The path inside the backend under which the suite's volumes live ("" for the root; a
    /// peer gateway's backend starts with a volume at the peer, e.g. `workspace/suite`).
    pub root: &'static str,
    /// A single-part write's ETag is the MD5 of its bytes (S3 does it; so does the file store).
    pub md5_etags: bool,
    /// A completed multipart upload's ETag is S3's MD5-of-part-MD5s-N (the file store keeps
    /// it; other stores give the ETag of their own re-upload of the object).
    pub multipart_etags: bool,
    /// The store keeps `Expires` and additional checksums (not a peer gateway: object_store
    /// reads no `Expires` header, and the peer answers checksums only when asked for them).
    pub expires: bool,
    /// Keys ending in '/' (folder markers) can be written (not through a peer gateway).
    pub folder_markers: bool,
    /// A file tree: it cannot hold both `a/b` and `a/b/c`, nor bytes in a folder marker, and
    /// says so with [`DataplaneError::KeyConflict`].
    pub file_tree: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            conditional_reads: true,
            root: "",
            md5_etags: false,
            multipart_etags: false,
            expires: true,
            folder_markers: true,
            file_tree: false,
        }
    }
}

pub struct Fixture {
    pub dataplane: Dataplane,
    pub admin: Principal,
    pub reader: Principal,
    pub stranger: Principal,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Where the fixture's dataplane spools multipart uploads.
    pub fn spool_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("uploads")
    }
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").finish_non_exhaustive()
    }
}

fn suite_limits() -> LimitsConfig {
    LimitsConfig {
        upload_part_size: 5 * MIB,
        upload_concurrency: 2,
        ..Default::default()
    }
}

/// Builds the catalogue, dataplane, principals and volumes the suite uses.
pub async fn fixture(backend: BackendConfig) -> Fixture {
    fixture_with(backend, suite_limits(), CacheConfig::default(), "").await
}

/// [`fixture`] with other limits and cache settings, and the volumes under `root`.
pub async fn fixture_with(
    backend: BackendConfig,
    limits: LimitsConfig,
    cache: CacheConfig,
    root: &str,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&CatalogConfig::default(), dir.path())
        .await
        .expect("catalogue");
    let mut backends = BTreeMap::new();
    backends.insert("under-test".to_string(), backend);
    let config = DataplaneConfig {
        backends,
        limits,
        spool_dir: dir.path().join("uploads"),
        cache,
        ..Default::default()
    };
    let dataplane = Dataplane::new(catalog.clone(), config)
        .await
        .expect("dataplane");
    for (name, admin) in [("root", true), ("reader", false), ("stranger", false)] {
        catalog.create_user(name, "", admin).await.expect("user");
    }
    for (id, prefix, kind, public) in [
        ("rw-vol", "rw", VolumeKind::Workspace, false),
        ("other-rw", "rw2", VolumeKind::Workspace, false),
        ("ro-vol", "ro", VolumeKind::Archive, false),
        ("pub-vol", "pub", VolumeKind::Archive, true),
    ] {
        catalog
            .create_volume(NewVolume {
                id: id.into(),
                backend: "under-test".into(),
                prefix: if root.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{root}/{prefix}")
                },
                kind,
                public_read: public,
                ..Default::default()
            })
            .await
            .expect("volume");
    }
    catalog
        .grant(&Subject::User("reader".into()), "rw-vol", Access::Read)
        .await
        .expect("grant");
    let p = |user: &str, admin| Principal {
        user: user.into(),
        admin,
        scope: Default::default(),
    };
    Fixture {
        dataplane,
        admin: p("root", true),
        reader: p("reader", false),
        stranger: p("stranger", false),
        _dir: dir,
    }
}

/// Runs the whole suite against `backend`.
pub async fn run(backend: BackendConfig, caps: Capabilities) {
    run_with(backend, caps, CacheConfig::default()).await;
}

/// Runs the whole suite with every volume, workspaces included, read through a small block
/// cache (64 KiB blocks, 1 MiB of memory, 4 MiB of disk), so reads span blocks and blocks are
/// evicted from both tiers.
pub async fn run_through_the_cache(backend: BackendConfig, caps: Capabilities) {
    let disk = tempfile::tempdir().expect("tempdir");
    let cache = CacheConfig {
        block_size: 64 * 1024,
        memory_bytes: MIB as u64,
        disk_bytes: 4 * MIB as u64,
        dir: Some(disk.path().to_path_buf()),
        bypass_workspaces: false,
        ..Default::default()
    };
    run_with(backend, caps, cache).await;
}

async fn run_with(backend: BackendConfig, caps: Capabilities, cache: CacheConfig) {
    let f = fixture_with(backend, suite_limits(), cache, caps.root).await;
    round_trip(&f).await;
    large_streamed_upload(&f).await;
    ranges(&f).await;
    if caps.conditional_reads {
        conditions(&f).await;
    }
    listing(&f).await;
    copy_and_delete(&f).await;
    attributes_and_etags(&f, caps).await;
    conditional_writes(&f).await;
    keys_are_checked(&f).await;
    folder_markers(&f, caps).await;
    access_is_checked(&f).await;
    multipart_uploads(&f).await;
    checksummed_uploads(&f, caps).await;
    scan_counts(&f).await;
}

async fn put(f: &Fixture, volume: &str, key: &str, data: &[u8]) {
    let body = stream::iter(
        data.chunks(64 * 1024)
            .map(|c| Ok::<_, BodyError>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    f.dataplane
        .put(Some(&f.admin), volume, key, body, PutRequest::default())
        .await
        .unwrap_or_else(|e| panic!("put {volume}/{key}: {e}"));
}

async fn read(f: &Fixture, who: &Principal, volume: &str, key: &str, req: ReadRequest) -> Vec<u8> {
    let r = f
        .dataplane
        .get(Some(who), volume, key, req.clone())
        .await
        .unwrap_or_else(|e| panic!("get {volume}/{key} {req:?}: {e}"));
    let chunks: Vec<Bytes> = r.body.try_collect().await.expect("body");
    chunks.concat()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

async fn round_trip(f: &Fixture) {
    let data = pattern(100_000, 1);
    put(f, "rw-vol", "dir/object.bin", &data).await;
    let head = f
        .dataplane
        .head(Some(&f.admin), "rw-vol", "dir/object.bin")
        .await
        .expect("head");
    assert_eq!(head.size, 100_000);
    assert_eq!(head.key, "dir/object.bin");
    assert!(head.etag.is_some(), "every store must give a version tag");
    assert_eq!(
        read(
            f,
            &f.admin,
            "rw-vol",
            "dir/object.bin",
            ReadRequest::default()
        )
        .await,
        data
    );
    // Overwrite replaces whole.
    put(f, "rw-vol", "dir/object.bin", b"short").await;
    assert_eq!(
        read(
            f,
            &f.admin,
            "rw-vol",
            "dir/object.bin",
            ReadRequest::default()
        )
        .await,
        b"short"
    );
    // An empty object.
    put(f, "rw-vol", "empty", b"").await;
    assert_eq!(
        f.dataplane
            .head(Some(&f.admin), "rw-vol", "empty")
            .await
            .expect("head")
            .size,
        0
    );
    // Unusual but valid characters round-trip verbatim.
    let odd = "odd names/with space é 日本 #1 (x) [y] {z} ~%.fits";
    put(f, "rw-vol", odd, b"odd").await;
    assert_eq!(
        read(f, &f.admin, "rw-vol", odd, ReadRequest::default()).await,
        b"odd"
    );
}

async fn large_streamed_upload(f: &Fixture) {
    // More than two parts of 5 MiB, fed in 64 KiB chunks: exercises the multipart path.
    let data = pattern(12 * MIB + 12_345, 7);
    put(f, "rw-vol", "large.bin", &data).await;
    let got = read(f, &f.admin, "rw-vol", "large.bin", ReadRequest::default()).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "large object differs after a multipart upload");
}

async fn ranges(f: &Fixture) {
    let data = pattern(10_000, 3);
    put(f, "rw-vol", "ranged", &data).await;
    let r = |range| ReadRequest {
        range: Some(range),
        ..Default::default()
    };
    let got = read(
        f,
        &f.admin,
        "rw-vol",
        "ranged",
        r(ReadRange::Bounded {
            start: 100,
            end: 200,
        }),
    )
    .await;
    assert_eq!(got, &data[100..200]);
    let got = read(f, &f.admin, "rw-vol", "ranged", r(ReadRange::From(9_990))).await;
    assert_eq!(got, &data[9_990..]);
    let got = read(f, &f.admin, "rw-vol", "ranged", r(ReadRange::Suffix(10))).await;
    assert_eq!(got, &data[9_990..]);
    // A range reaching past the end is cut at the end (HTTP semantics).
    let got = read(
        f,
        &f.admin,
        "rw-vol",
        "ranged",
        r(ReadRange::Bounded {
            start: 9_000,
            end: 20_000,
        }),
    )
    .await;
    assert_eq!(got, &data[9_000..]);
    let read = f
        .dataplane
        .get(
            Some(&f.admin),
            "rw-vol",
            "ranged",
            r(ReadRange::Bounded { start: 5, end: 15 }),
        )
        .await
        .expect("get");
    assert_eq!(read.range, 5..15);
    assert_eq!(read.info.size, 10_000);
    let err = f
        .dataplane
        .get(
            Some(&f.admin),
            "rw-vol",
            "ranged",
            r(ReadRange::From(10_000)),
        )
        .await
        .expect_err("range past the end");
    assert!(
        matches!(err, DataplaneError::InvalidRange { size: 10_000, .. }),
        "{err}"
    );
}

async fn conditions(f: &Fixture) {
    put(f, "rw-vol", "cond", b"conditional").await;
    let etag = f
        .dataplane
        .head(Some(&f.admin), "rw-vol", "cond")
        .await
        .expect("head")
        .etag
        .expect("etag");
    let ok = ReadRequest {
        if_match: Some(etag.clone()),
        ..Default::default()
    };
    assert_eq!(
        read(f, &f.admin, "rw-vol", "cond", ok).await,
        b"conditional"
    );
    let wrong = ReadRequest {
        if_match: Some("\"not-the-etag\"".into()),
        ..Default::default()
    };
    let err = f
        .dataplane
        .get(Some(&f.admin), "rw-vol", "cond", wrong.clone())
        .await
        .expect_err("if-match");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    let err = f
        .dataplane
        .head_if(Some(&f.admin), "rw-vol", "cond", &wrong)
        .await
        .expect_err("head if-match");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    let same = ReadRequest {
        if_none_match: Some(etag),
        ..Default::default()
    };
    let err = f
        .dataplane
        .head_if(Some(&f.admin), "rw-vol", "cond", &same)
        .await
        .expect_err("head if-none-match");
    assert!(matches!(err, DataplaneError::NotModified { .. }), "{err}");
    let err = f
        .dataplane
        .get(Some(&f.admin), "rw-vol", "cond", same)
        .await
        .expect_err("if-none-match");
    assert!(matches!(err, DataplaneError::NotModified { .. }), "{err}");
}

async fn listing(f: &Fixture) {
    let keys = [
        "list/a/1.fits",
        "list/a/2.fits",
        "list/a/b/3.fits",
        "list/ab.fits",
        "list/b.fits",
        "list/c/4.fits",
        "list/c/5.fits",
    ];
    for k in keys {
        put(f, "rw-vol", k, k.as_bytes()).await;
    }
    let list = |prefix: &str, delimiter: Option<&str>, start_after: Option<String>, max| {
        let req = ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(String::from),
            start_after,
            max_keys: max,
        };
        async move {
            f.dataplane
                .list(Some(&f.admin), "rw-vol", &req)
                .await
                .expect("list")
        }
    };
    let names = |p: &crate::ListPage| p.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();

    // Flat, with a prefix that is not a whole segment.
    let p = list("list/a", None, None, None).await;
    assert_eq!(
        names(&p),
        vec![
            "list/a/1.fits",
            "list/a/2.fits",
            "list/a/b/3.fits",
            "list/ab.fits"
        ]
    );
    assert!(p.common_prefixes.is_empty());
    assert_eq!(p.objects[0].size, "list/a/1.fits".len() as u64);

    // One level with '/'.
    let p = list("list/", Some("/"), None, None).await;
    assert_eq!(names(&p), vec!["list/ab.fits", "list/b.fits"]);
    assert_eq!(p.common_prefixes, vec!["list/a/", "list/c/"]);
    let p = list("list/a", Some("/"), None, None).await;
    assert_eq!(names(&p), vec!["list/ab.fits"]);
    assert_eq!(p.common_prefixes, vec!["list/a/"]);

    // Another delimiter is grouped by the dataplane.
    let p = list("list/", Some("."), None, None).await;
    assert!(p.objects.is_empty());
    assert_eq!(
        p.common_prefixes,
        vec![
            "list/a/1.",
            "list/a/2.",
            "list/a/b/3.",
            "list/ab.",
            "list/b.",
            "list/c/4.",
            "list/c/5."
        ]
    );

    // Pagination: every key exactly once, in order, whatever the page size.
    for page_size in [1, 2, 3, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = list("list/", None, after.clone(), Some(page_size)).await;
            assert!(p.objects.len() <= page_size);
            seen.extend(names(&p));
            match p.next_start_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, keys, "page size {page_size}");
    }
    // Paginating a delimited listing mixes objects and prefixes in key order.
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let p = list("list/", Some("/"), after.clone(), Some(1)).await;
        entries.extend(names(&p));
        entries.extend(p.common_prefixes.clone());
        match p.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        entries,
        vec!["list/a/", "list/ab.fits", "list/b.fits", "list/c/"]
    );

    // Nothing under a missing prefix.
    let p = list("nothing-here/", Some("/"), None, None).await;
    assert!(p.objects.is_empty() && p.common_prefixes.is_empty() && p.next_start_after.is_none());
    let p = list("nothing-here/", None, None, None).await;
    assert!(p.objects.is_empty());
}

/// Attributes (content headers, Expires, user metadata) are kept by every write path and
/// returned by every read; ETags are content MD5s where the backend can give them.
async fn attributes_and_etags(f: &Fixture, caps: Capabilities) {
    let dp = &f.dataplane;
    let attrs = ObjectAttributes {
        content_type: Some("text/bla".into()),
        content_encoding: Some("identity".into()),
        content_disposition: Some("attachment; filename=\"a.txt\"".into()),
        content_language: Some("en".into()),
        cache_control: Some("max-age=60".into()),
        expires: caps
            .expires
            .then(|| "Thu, 01 Dec 2033 16:00:00 GMT".to_string()),
        metadata: [
            ("mtime".to_string(), "1700000000.123456789".to_string()),
            ("uid".to_string(), "1000".to_string()),
        ]
        .into(),
        // Kept as metadata, as Expires is (not through a peer gateway: see `expires`).
        checksum: caps.expires.then(|| crate::checksum::Checksum {
            algorithm: crate::checksum::ChecksumAlgorithm::Sha256,
            value: crate::checksum::checksum_of(crate::checksum::ChecksumAlgorithm::Sha256, b"x"),
            kind: crate::checksum::ChecksumType::FullObject,
        }),
        parts: None,
    };
    let body =
        |data: &'static [u8]| stream::iter(vec![Ok::<_, BodyError>(Bytes::from_static(data))]);
    let out = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "attrs/one",
            body(b"hello"),
            PutRequest {
                attributes: attrs.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("put with attributes");
    let info = dp
        .head(Some(&f.admin), "rw-vol", "attrs/one")
        .await
        .expect("head");
    assert_eq!(info.attributes, attrs, "HEAD returns what PUT kept");
    let read = dp
        .get(
            Some(&f.admin),
            "rw-vol",
            "attrs/one",
            ReadRequest::default(),
        )
        .await
        .expect("get");
    assert_eq!(read.info.attributes, attrs, "GET returns what PUT kept");
    assert_eq!(info.etag, out.etag, "HEAD gives the ETag the PUT answered");
    if caps.md5_etags {
        assert_eq!(
            out.etag.as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592"),
            "a single-part object's ETag is the MD5 of its bytes"
        );
        let listed = dp
            .list(
                Some(&f.admin),
                "rw-vol",
                &ListRequest {
                    prefix: "attrs/".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(
            listed.objects[0].etag, out.etag,
            "a listing shows the same ETag"
        );
    }
    // Copies keep the attributes, or replace them (MetadataDirective=REPLACE).
    for to in [("rw-vol", "attrs/copy"), ("other-rw", "attrs/copy")] {
        dp.copy(
            Some(&f.admin),
            ("rw-vol", "attrs/one"),
            to,
            Default::default(),
        )
        .await
        .expect("copy");
        let copied = dp
            .head(Some(&f.admin), to.0, to.1)
            .await
            .expect("head copy");
        assert_eq!(
            copied.attributes, attrs,
            "a copy to {to:?} keeps the attributes"
        );
        if caps.md5_etags {
            assert_eq!(copied.etag, out.etag, "a copy has the same content ETag");
        }
        let replaced = ObjectAttributes::content_type(Some("application/x-new".into()));
        dp.copy(
            Some(&f.admin),
            ("rw-vol", "attrs/one"),
            to,
            CopyRequest {
                attributes: Some(replaced.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("copy with new attributes");
        let copied = dp
            .head(Some(&f.admin), to.0, to.1)
            .await
            .expect("head copy");
        assert_eq!(copied.attributes, replaced, "REPLACE replaces");
    }
    // A multipart upload keeps the attributes given when it was created.
    let id = dp
        .create_upload(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            PutRequest {
                attributes: attrs.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("create upload");
    let part = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            &id,
            1,
            body(b"hello"),
        )
        .await
        .expect("part");
    let done = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            &id,
            &[(1, part.etag.clone())],
            Default::default(),
        )
        .await
        .expect("complete");
    let info = dp
        .head(Some(&f.admin), "rw-vol", "attrs/multi")
        .await
        .expect("head multi");
    // Its own: the checksum it was created with (none), and its parts.
    let expected = ObjectAttributes {
        checksum: None,
        parts: caps
            .expires
            .then(|| crate::attributes::PartSizes::new(vec![5])),
        ..attrs.clone()
    };
    assert_eq!(
        info.attributes, expected,
        "a multipart upload keeps its attributes"
    );
    if caps.multipart_etags {
        assert_eq!(
            done.etag,
            crate::uploads::multipart_etag(std::slice::from_ref(&part.etag)),
            "a multipart object's ETag is the MD5 of its parts' MD5s, and their number"
        );
        assert!(done.etag.as_deref().unwrap_or_default().ends_with("-1"));
        assert_eq!(info.etag, done.etag);
    }
    // A completion retried with the same parts answers the same; other parts are refused.
    let again = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            &id,
            &[(1, part.etag.clone())],
            Default::default(),
        )
        .await
        .expect("a retried completion");
    assert_eq!(again, done);
    let err = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            &id,
            &[(1, "0".repeat(32))],
            Default::default(),
        )
        .await
        .expect_err("completed with other parts");
    assert!(matches!(err, DataplaneError::InvalidPart { .. }), "{err}");
    let err = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "attrs/multi",
            &id,
            2,
            body(b"late"),
        )
        .await
        .expect_err("a part after completion");
    assert!(matches!(err, DataplaneError::NoSuchUpload { .. }), "{err}");
}

/// If-None-Match: * and If-Match on writes and deletes: 412 when they do not hold.
async fn conditional_writes(f: &Fixture) {
    let dp = &f.dataplane;
    let body =
        |data: &'static [u8]| stream::iter(vec![Ok::<_, BodyError>(Bytes::from_static(data))]);
    let create = || PutRequest {
        if_none_match: Some("*".into()),
        ..Default::default()
    };
    let first = dp
        .put(Some(&f.admin), "rw-vol", "cond-w/x", body(b"one"), create())
        .await
        .expect("If-None-Match: * on a new key");
    let err = dp
        .put(Some(&f.admin), "rw-vol", "cond-w/x", body(b"two"), create())
        .await
        .expect_err("If-None-Match: * over an object");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    assert_eq!(
        read(f, &f.admin, "rw-vol", "cond-w/x", ReadRequest::default()).await,
        b"one"
    );
    let if_match = |etag: &str| PutRequest {
        if_match: Some(etag.to_string()),
        ..Default::default()
    };
    let err = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "cond-w/x",
            body(b"two"),
            if_match("stale"),
        )
        .await
        .expect_err("If-Match with a stale ETag");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    let current = first.etag.clone().unwrap_or_default();
    let second = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "cond-w/x",
            body(b"two"),
            if_match(&current),
        )
        .await
        .expect("If-Match with the current ETag");
    let err = dp
        .put(
            Some(&f.admin),
            "rw-vol",
            "cond-w/none",
            body(b"x"),
            if_match("*"),
        )
        .await
        .expect_err("If-Match on a missing key");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    let err = dp
        .delete_if(Some(&f.admin), "rw-vol", "cond-w/x", Some(&current))
        .await
        .expect_err("a delete with a stale If-Match");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );
    dp.delete_if(Some(&f.admin), "rw-vol", "cond-w/x", second.etag.as_deref())
        .await
        .expect("a delete with the current If-Match");
    assert!(dp.head(Some(&f.admin), "rw-vol", "cond-w/x").await.is_err());
}

async fn copy_and_delete(f: &Fixture) {
    put(f, "rw-vol", "copy/src", b"copy me").await;
    f.dataplane
        .copy(
            Some(&f.admin),
            ("rw-vol", "copy/src"),
            ("rw-vol", "copy/dst"),
            Default::default(),
        )
        .await
        .expect("copy within");
    assert_eq!(
        read(f, &f.admin, "rw-vol", "copy/dst", ReadRequest::default()).await,
        b"copy me"
    );
    f.dataplane
        .copy(
            Some(&f.admin),
            ("rw-vol", "copy/src"),
            ("other-rw", "copied"),
            Default::default(),
        )
        .await
        .expect("copy across");
    assert_eq!(
        read(f, &f.admin, "other-rw", "copied", ReadRequest::default()).await,
        b"copy me"
    );
    // The other volume's prefix keeps them apart.
    assert!(
        f.dataplane
            .head(Some(&f.admin), "rw-vol", "copied")
            .await
            .is_err()
    );

    f.dataplane
        .delete(Some(&f.admin), "rw-vol", "copy/src")
        .await
        .expect("delete");
    let err = f
        .dataplane
        .head(Some(&f.admin), "rw-vol", "copy/src")
        .await
        .expect_err("gone");
    assert!(matches!(err, DataplaneError::NoSuchKey { .. }), "{err}");
    f.dataplane
        .delete(Some(&f.admin), "rw-vol", "copy/src")
        .await
        .expect("deleting a missing key succeeds");
    let err = f
        .dataplane
        .get(
            Some(&f.admin),
            "rw-vol",
            "no/such/key",
            ReadRequest::default(),
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, DataplaneError::NoSuchKey { .. }), "{err}");
}

async fn keys_are_checked(f: &Fixture) {
    for key in ["../escape", "a/../../b", "a//b", "/abs", "/", "dir/ ", ""] {
        let err = f
            .dataplane
            .put(
                Some(&f.admin),
                "rw-vol",
                key,
                stream::iter(vec![Ok::<_, BodyError>(Bytes::from_static(b"x"))]),
                PutRequest::default(),
            )
            .await
            .expect_err("bad key");
        assert!(
            matches!(err, DataplaneError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
        let err = f
            .dataplane
            .head(Some(&f.admin), "rw-vol", key)
            .await
            .expect_err("bad key");
        assert!(
            matches!(err, DataplaneError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
    }
    // Listing prefixes are never refused for their characters: no key begins with these.
    for prefix in ["../", "/", "a//", "dir//", "\u{1}x", "./"] {
        for delimiter in [None, Some("/".to_string()), Some(String::new())] {
            let req = ListRequest {
                prefix: prefix.into(),
                delimiter: delimiter.clone(),
                ..Default::default()
            };
            let page = f
                .dataplane
                .list(Some(&f.admin), "rw-vol", &req)
                .await
                .unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}"));
            assert_eq!(page, crate::ListPage::default(), "prefix {prefix:?}");
        }
    }
    // An empty delimiter is none.
    put(f, "rw-vol", "empty-delim/a/b", b"x").await;
    let req = |delimiter: Option<&str>| ListRequest {
        prefix: "empty-delim/".into(),
        delimiter: delimiter.map(String::from),
        ..Default::default()
    };
    let none = f
        .dataplane
        .list(Some(&f.admin), "rw-vol", &req(None))
        .await
        .expect("the dataplane call");
    let empty = f
        .dataplane
        .list(Some(&f.admin), "rw-vol", &req(Some("")))
        .await
        .expect("the dataplane call");
    assert_eq!(none, empty);
    assert_eq!(none.objects.len(), 1);
    f.dataplane
        .delete(Some(&f.admin), "rw-vol", "empty-delim/a/b")
        .await
        .expect("the dataplane call");
}

/// Keys ending in '/' are folder markers: objects of their own where the backend can hold
/// them, listed where S3 lists them; folders implied by keys below them are never objects;
/// a file tree refuses what it cannot hold with an error that names both keys.
async fn folder_markers(f: &Fixture, caps: Capabilities) {
    let dp = &f.dataplane;
    let admin = Some(&f.admin);
    let body = |data: &'static [u8]| {
        stream::iter(
            (!data.is_empty())
                .then(|| Ok::<_, BodyError>(Bytes::from_static(data)))
                .into_iter()
                .collect::<Vec<_>>(),
        )
    };
    if !caps.folder_markers {
        let err = dp
            .put(
                admin,
                "rw-vol",
                "marks/d/",
                body(b""),
                PutRequest::default(),
            )
            .await
            .expect_err("a folder marker where none can be held");
        assert!(matches!(err, DataplaneError::InvalidKey { .. }), "{err}");
        assert!(err.to_string().contains("folder markers"), "{err}");
        return;
    }
    let list = |prefix: &str, delimiter: Option<&str>, after: Option<String>, max| {
        let req = ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(String::from),
            start_after: after,
            max_keys: max,
        };
        async move { dp.list(admin, "rw-vol", &req).await.expect("list") }
    };
    let names = |p: &crate::ListPage| p.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    let no_such_key = |r: crate::Result<crate::ObjectInfo>| {
        let err = r.expect_err("no object");
        assert!(matches!(err, DataplaneError::NoSuchKey { .. }), "{err}");
    };

    // A marker with attributes (what s3fs writes on mkdir), read back as an empty object.
    let attrs = ObjectAttributes {
        content_type: Some("application/x-directory".into()),
        metadata: BTreeMap::from([("mode".to_string(), "16877".to_string())]),
        ..Default::default()
    };
    let put_marker = PutRequest {
        attributes: attrs.clone(),
        ..Default::default()
    };
    let out = dp
        .put(admin, "rw-vol", "marks/d/", body(b""), put_marker.clone())
        .await
        .expect("a folder marker");
    assert_eq!(out.size, 0);
    let head = dp
        .head(Some(&f.reader), "rw-vol", "marks/d/")
        .await
        .expect("HEAD of a folder marker");
    assert_eq!((head.key.as_str(), head.size), ("marks/d/", 0));
    assert_eq!(head.attributes.content_type, attrs.content_type);
    assert_eq!(head.attributes.metadata, attrs.metadata);
    assert_eq!(head.etag, out.etag);
    if caps.md5_etags {
        assert_eq!(
            head.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
    }
    assert!(
        read(f, &f.reader, "rw-vol", "marks/d/", ReadRequest::default())
            .await
            .is_empty()
    );

    // Listed as an object under its own prefix, as a common prefix one level up.
    let p = list("marks/d/", Some("/"), None, None).await;
    assert_eq!(names(&p), vec!["marks/d/"]);
    assert!(p.common_prefixes.is_empty());
    assert_eq!(p.objects[0].size, 0);
    let p = list("marks/", Some("/"), None, None).await;
    assert!(p.objects.is_empty(), "{p:?}");
    assert_eq!(p.common_prefixes, vec!["marks/d/"]);
    assert_eq!(
        names(&list("marks/", None, None, None).await),
        vec!["marks/d/"]
    );

    // Objects below it: the marker lists first, in key order, on every page size.
    for k in ["marks/d/!first", "marks/d/x", "marks/d/e/y"] {
        put(f, "rw-vol", k, k.as_bytes()).await;
    }
    let all = vec!["marks/d/", "marks/d/!first", "marks/d/e/y", "marks/d/x"];
    assert_eq!(names(&list("marks/", None, None, None).await), all);
    for page_size in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = list("marks/", None, after.clone(), Some(page_size)).await;
            seen.extend(names(&p));
            match p.next_start_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, all, "page size {page_size}");
    }
    let p = list("marks/d/", Some("/"), None, None).await;
    assert_eq!(names(&p), vec!["marks/d/", "marks/d/!first", "marks/d/x"]);
    assert_eq!(p.common_prefixes, vec!["marks/d/e/"]);

    // A folder that exists only because of keys below it is no object.
    no_such_key(dp.head(admin, "rw-vol", "marks/d/e/").await);
    assert_eq!(
        names(&list("marks/d/e/", Some("/"), None, None).await),
        vec!["marks/d/e/y"]
    );

    // If-None-Match: * over a marker that exists.
    let err = dp
        .put(
            admin,
            "rw-vol",
            "marks/d/",
            body(b""),
            PutRequest {
                if_none_match: Some("*".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("If-None-Match: * over a marker");
    assert!(
        matches!(err, DataplaneError::PreconditionFailed { .. }),
        "{err}"
    );

    // Deleting the marker leaves the objects below it; deleting those leaves nothing.
    dp.delete(admin, "rw-vol", "marks/d/")
        .await
        .expect("delete a marker");
    no_such_key(dp.head(admin, "rw-vol", "marks/d/").await);
    assert_eq!(
        names(&list("marks/", None, None, None).await),
        all[1..].to_vec()
    );
    for k in &all[1..] {
        dp.delete(admin, "rw-vol", k)
            .await
            .expect("the dataplane call");
    }
    let p = list("marks/", Some("/"), None, None).await;
    assert_eq!(p, crate::ListPage::default());

    // Deleting the objects below a marker leaves the marker.
    dp.put(
        admin,
        "rw-vol",
        "marks/k/",
        body(b""),
        PutRequest::default(),
    )
    .await
    .expect("the dataplane call");
    put(f, "rw-vol", "marks/k/z", b"z").await;
    dp.delete(admin, "rw-vol", "marks/k/z")
        .await
        .expect("the dataplane call");
    assert_eq!(
        names(&list("marks/", None, None, None).await),
        vec!["marks/k/"]
    );
    let p = list("marks/", Some("/"), None, None).await;
    assert_eq!(p.common_prefixes, vec!["marks/k/"]);

    // A copy keeps it a marker; a marker copies to an empty object.
    dp.copy(
        admin,
        ("rw-vol", "marks/k/"),
        ("rw-vol", "marks/c/"),
        Default::default(),
    )
    .await
    .expect("copy a marker");
    let head = dp
        .head(admin, "rw-vol", "marks/c/")
        .await
        .expect("the copied marker");
    assert_eq!(head.size, 0);
    dp.copy(
        admin,
        ("rw-vol", "marks/k/"),
        ("rw-vol", "marks/empty"),
        Default::default(),
    )
    .await
    .expect("a marker to an object");
    assert!(
        read(f, &f.admin, "rw-vol", "marks/empty", ReadRequest::default())
            .await
            .is_empty()
    );
    for k in ["marks/k/", "marks/c/", "marks/empty"] {
        dp.delete(admin, "rw-vol", k)
            .await
            .expect("the dataplane call");
    }
    assert_eq!(
        list("marks/", None, None, None).await,
        crate::ListPage::default()
    );

    // What a file tree cannot hold: refused, naming both keys; elsewhere, S3's answers.
    put(f, "rw-vol", "marks/obj", b"object").await;
    put(f, "rw-vol", "marks/folder/x", b"below").await;
    let cases: [(&str, &'static [u8], &str); 4] = [
        ("marks/obj/below", b"x", "marks/obj"),
        ("marks/obj/", b"", "marks/obj"),
        ("marks/folder", b"y", "marks/folder/"),
        ("marks/full/", b"bytes", "marks/full/"),
    ];
    for (key, data, other) in cases {
        let r = dp
            .put(admin, "rw-vol", key, body(data), PutRequest::default())
            .await;
        if caps.file_tree {
            let err = r.expect_err("a file tree cannot hold it");
            match &err {
                DataplaneError::KeyConflict {
                    key: k, other: o, ..
                } => {
                    assert_eq!((k.as_str(), o.as_str()), (key, other), "{err}");
                }
                _ => panic!("{key}: {err}"),
            }
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(other), "{text}");
        } else {
            r.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(
                read(f, &f.admin, "rw-vol", key, ReadRequest::default()).await,
                data
            );
            dp.delete(admin, "rw-vol", key)
                .await
                .expect("the dataplane call");
        }
    }
    // Nothing was lost by a refusal.
    assert_eq!(
        read(f, &f.admin, "rw-vol", "marks/obj", ReadRequest::default()).await,
        b"object"
    );
    assert_eq!(
        names(&list("marks/", None, None, None).await),
        vec!["marks/folder/x", "marks/obj"]
    );
    for k in ["marks/obj", "marks/folder/x"] {
        dp.delete(admin, "rw-vol", k)
            .await
            .expect("the dataplane call");
    }
}

async fn access_is_checked(f: &Fixture) {
    put(f, "rw-vol", "secret.txt", b"s").await;
    // A reader reads but does not write.
    assert_eq!(
        read(f, &f.reader, "rw-vol", "secret.txt", ReadRequest::default()).await,
        b"s"
    );
    let body = || stream::iter(vec![Ok::<_, BodyError>(Bytes::from_static(b"x"))]);
    let err = f
        .dataplane
        .put(
            Some(&f.reader),
            "rw-vol",
            "w",
            body(),
            PutRequest::default(),
        )
        .await
        .expect_err("reader write");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    // A stranger does neither.
    let err = f
        .dataplane
        .head(Some(&f.stranger), "rw-vol", "secret.txt")
        .await
        .expect_err("stranger");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    let err = f
        .dataplane
        .list(Some(&f.stranger), "rw-vol", &ListRequest::default())
        .await
        .expect_err("stranger list");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    // Anonymous callers read public volumes only.
    assert!(
        f.dataplane
            .list(None, "pub-vol", &ListRequest::default())
            .await
            .is_ok()
    );
    let err = f
        .dataplane
        .list(None, "rw-vol", &ListRequest::default())
        .await
        .expect_err("anon");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    // Read-only volumes refuse writes, even to admins, and keep nothing of the attempt.
    let err = f
        .dataplane
        .put(Some(&f.admin), "ro-vol", "x", body(), PutRequest::default())
        .await
        .expect_err("read-only");
    assert!(matches!(err, DataplaneError::ReadOnly { .. }), "{err}");
    let err = f
        .dataplane
        .delete(Some(&f.admin), "ro-vol", "x")
        .await
        .expect_err("read-only delete");
    assert!(matches!(err, DataplaneError::ReadOnly { .. }), "{err}");
    let err = f
        .dataplane
        .copy(
            Some(&f.admin),
            ("rw-vol", "secret.txt"),
            ("ro-vol", "x"),
            Default::default(),
        )
        .await
        .expect_err("copy into read-only");
    assert!(matches!(err, DataplaneError::ReadOnly { .. }), "{err}");
    // Copying out of a volume needs read access there.
    let err = f
        .dataplane
        .copy(
            Some(&f.reader),
            ("rw-vol", "secret.txt"),
            ("rw-vol", "y"),
            Default::default(),
        )
        .await
        .expect_err("reader copy");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    let err = f
        .dataplane
        .head(Some(&f.admin), "no-such-volume", "k")
        .await
        .expect_err("volume");
    assert!(matches!(err, DataplaneError::NoSuchVolume { .. }), "{err}");
}

/// Uploads with an additional checksum: every part's is kept, the object's is combined from
/// them (of the whole object, or of the parts' checksums), and the object keeps its part sizes.
async fn checksummed_uploads(f: &Fixture, caps: Capabilities) {
    use crate::checksum::{ChecksumAlgorithm, ChecksumType, checksum_of};
    use crate::uploads::CompletedPart;
    let dp = &f.dataplane;
    let admin = Some(&f.admin);
    let body = |data: Vec<u8>| stream::iter(vec![Ok::<_, BodyError>(Bytes::from(data))]);
    let (a, b) = (pattern(5 * MIB, 21), pattern(77_777, 22));
    let whole = [a.clone(), b.clone()].concat();
    for (algorithm, kind) in [
        (ChecksumAlgorithm::Crc32c, ChecksumType::FullObject),
        (ChecksumAlgorithm::Sha256, ChecksumType::Composite),
        (ChecksumAlgorithm::Crc64Nvme, ChecksumType::FullObject),
    ] {
        let key = format!("sums/{}", algorithm.as_str());
        let id = dp
            .create_upload_with(
                admin,
                "rw-vol",
                &key,
                PutRequest::default(),
                Some((algorithm, Some(kind))),
            )
            .await
            .expect("create an upload with a checksum");
        let mut listed = Vec::new();
        for (n, data) in [(1, &a), (2, &b)] {
            let part = dp
                .upload_part(admin, "rw-vol", &key, &id, n, body(data.clone()))
                .await
                .expect("a part");
            assert_eq!(part.checksum, Some(checksum_of(algorithm, data)));
            listed.push(CompletedPart {
                number: n,
                etag: part.etag,
                checksum: part.checksum,
            });
        }
        // A part listed with another checksum is refused, and nothing is written.
        let mut wrong = listed.clone();
        wrong[1].checksum = Some(checksum_of(algorithm, b"other"));
        let err = dp
            .complete_upload_with(admin, "rw-vol", &key, &id, &wrong, PutRequest::default())
            .await
            .expect_err("a wrong part checksum");
        assert!(matches!(err, DataplaneError::InvalidPart { .. }), "{err}");
        let out = dp
            .complete_upload_with(admin, "rw-vol", &key, &id, &listed, PutRequest::default())
            .await
            .expect("complete");
        let checksum = out.checksum.clone().expect("the object's checksum");
        assert_eq!(checksum.kind, kind);
        match kind {
            ChecksumType::FullObject => assert_eq!(checksum.value, checksum_of(algorithm, &whole)),
            ChecksumType::Composite => assert!(checksum.value.ends_with("-2"), "{checksum:?}"),
        }
        let head = dp.head(admin, "rw-vol", &key).await.expect("head");
        if caps.expires {
            assert_eq!(head.attributes.checksum, Some(checksum));
            let parts = head.attributes.parts.expect("part sizes");
            assert_eq!(parts.range(2), Some(a.len() as u64..whole.len() as u64));
        }
        assert_eq!(
            read(f, &f.admin, "rw-vol", &key, ReadRequest::default()).await,
            whole
        );
        dp.delete(admin, "rw-vol", &key).await.expect("delete");
    }
    // SHA checksums cannot be of the whole object; CRC64NVME is never composite.
    for (algorithm, kind) in [
        (ChecksumAlgorithm::Sha1, ChecksumType::FullObject),
        (ChecksumAlgorithm::Crc64Nvme, ChecksumType::Composite),
    ] {
        let err = dp
            .create_upload_with(
                admin,
                "rw-vol",
                "sums/bad",
                PutRequest::default(),
                Some((algorithm, Some(kind))),
            )
            .await
            .expect_err("a checksum type that does not go with the algorithm");
        assert!(
            matches!(err, DataplaneError::InvalidRequest { .. }),
            "{err}"
        );
    }
}

async fn multipart_uploads(f: &Fixture) {
    let dp = &f.dataplane;
    let body = |data: Vec<u8>| stream::iter(vec![Ok::<_, BodyError>(Bytes::from(data))]);
    let part1 = pattern(5 * MIB, 11);
    let part2 = pattern(5 * MIB, 12);
    let part3 = pattern(123_457, 13);
    let id = dp
        .create_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            PutRequest::default(),
        )
        .await
        .expect("create upload");
    // Parts arrive out of order; one is retried with other bytes first.
    let p3 = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            3,
            body(part3.clone()),
        )
        .await
        .expect("part 3");
    let _stale = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            1,
            body(vec![9; 10]),
        )
        .await
        .expect("part 1");
    let p1 = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            1,
            body(part1.clone()),
        )
        .await
        .expect("part 1 again");
    let p2 = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            2,
            body(part2.clone()),
        )
        .await
        .expect("part 2");
    let listed = dp
        .list_parts(Some(&f.admin), "rw-vol", "mpu/object.bin", &id, 0, 1000)
        .await
        .expect("list parts");
    assert_eq!(
        listed.items.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(!listed.truncated);
    assert_eq!(listed.items[0].size, 5 * MIB as u64);
    // Pages of parts: at most `max`, resumed after the last part seen.
    let first = dp
        .list_parts(Some(&f.admin), "rw-vol", "mpu/object.bin", &id, 0, 2)
        .await
        .expect("first page of parts");
    assert_eq!(
        first.items.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(first.truncated);
    let rest = dp
        .list_parts(Some(&f.admin), "rw-vol", "mpu/object.bin", &id, 2, 2)
        .await
        .expect("second page of parts");
    assert_eq!(
        rest.items.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![3]
    );
    assert!(!rest.truncated);
    // Uploads in pages too: a second upload of another key, listed after the first.
    let other = dp
        .create_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/other.bin",
            Default::default(),
        )
        .await
        .expect("second upload");
    let uploads = dp
        .list_uploads(Some(&f.admin), "rw-vol", "mpu/", None, 1000)
        .await
        .expect("list uploads");
    assert_eq!(
        uploads
            .items
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("mpu/object.bin", id.as_str()),
            ("mpu/other.bin", other.as_str())
        ]
    );
    let page = dp
        .list_uploads(Some(&f.admin), "rw-vol", "mpu/", None, 1)
        .await
        .expect("first page of uploads");
    assert_eq!(page.items.len(), 1);
    assert!(page.truncated);
    let page = dp
        .list_uploads(
            Some(&f.admin),
            "rw-vol",
            "mpu/",
            Some(("mpu/object.bin", Some(id.as_str()))),
            1,
        )
        .await
        .expect("second page of uploads");
    assert_eq!(page.items[0].upload_id, other);
    assert!(!page.truncated);
    dp.abort_upload(Some(&f.admin), "rw-vol", "mpu/other.bin", &other)
        .await
        .expect("abort the second upload");
    // Nothing is visible before completion.
    assert!(
        dp.head(Some(&f.admin), "rw-vol", "mpu/object.bin")
            .await
            .is_err()
    );
    // Others may not touch the upload.
    let err = dp
        .upload_part(
            Some(&f.reader),
            "rw-vol",
            "mpu/object.bin",
            &id,
            4,
            body(vec![1]),
        )
        .await
        .expect_err("reader part");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
    // Bad completions are refused and keep the upload.
    let err = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            &[(2, p2.etag.clone()), (1, p1.etag.clone())],
            Default::default(),
        )
        .await
        .expect_err("order");
    assert!(
        matches!(err, DataplaneError::InvalidPartOrder { .. }),
        "{err}"
    );
    let err = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            &[(1, "0".repeat(32))],
            Default::default(),
        )
        .await
        .expect_err("etag");
    assert!(matches!(err, DataplaneError::InvalidPart { .. }), "{err}");
    let err = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            &[(3, p3.etag.clone()), (4, p3.etag.clone())],
            Default::default(),
        )
        .await
        .expect_err("small part");
    assert!(
        matches!(
            err,
            DataplaneError::InvalidPart { .. } | DataplaneError::EntityTooSmall { .. }
        ),
        "{err}"
    );
    let done = dp
        .complete_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/object.bin",
            &id,
            &[(1, p1.etag), (2, format!("\"{}\"", p2.etag)), (3, p3.etag)],
            Default::default(),
        )
        .await
        .expect("complete");
    assert_eq!(done.size, (part1.len() + part2.len() + part3.len()) as u64);
    let got = read(
        f,
        &f.admin,
        "rw-vol",
        "mpu/object.bin",
        ReadRequest::default(),
    )
    .await;
    assert!(
        got == [part1, part2, part3].concat(),
        "assembled object differs"
    );
    let err = dp
        .list_parts(Some(&f.admin), "rw-vol", "mpu/object.bin", &id, 0, 1000)
        .await
        .expect_err("gone");
    assert!(matches!(err, DataplaneError::NoSuchUpload { .. }), "{err}");

    // Abort discards everything; read-only volumes refuse uploads.
    let id = dp
        .create_upload(
            Some(&f.admin),
            "rw-vol",
            "mpu/aborted",
            PutRequest::default(),
        )
        .await
        .expect("create");
    dp.upload_part(
        Some(&f.admin),
        "rw-vol",
        "mpu/aborted",
        &id,
        1,
        body(vec![1, 2, 3]),
    )
    .await
    .expect("part");
    dp.abort_upload(Some(&f.admin), "rw-vol", "mpu/aborted", &id)
        .await
        .expect("abort");
    assert!(
        dp.head(Some(&f.admin), "rw-vol", "mpu/aborted")
            .await
            .is_err()
    );
    let err = dp
        .abort_upload(Some(&f.admin), "rw-vol", "mpu/aborted", &id)
        .await
        .expect_err("twice");
    assert!(matches!(err, DataplaneError::NoSuchUpload { .. }), "{err}");
    let err = dp
        .create_upload(Some(&f.admin), "ro-vol", "x", PutRequest::default())
        .await
        .expect_err("read-only");
    assert!(matches!(err, DataplaneError::ReadOnly { .. }), "{err}");
    let err = dp
        .upload_part(
            Some(&f.admin),
            "rw-vol",
            "mpu/x",
            "../../etc",
            1,
            body(vec![1]),
        )
        .await
        .expect_err("bad id");
    assert!(matches!(err, DataplaneError::NoSuchUpload { .. }), "{err}");
}

async fn scan_counts(f: &Fixture) {
    for i in 0..5 {
        put(
            f,
            "other-rw",
            &format!("scan/{i}"),
            &vec![0u8; 1000 * (i + 1)],
        )
        .await;
    }
    let mut calls = 0;
    let before = f
        .dataplane
        .list(Some(&f.admin), "other-rw", &ListRequest::default())
        .await
        .expect("list");
    let expected_bytes: u64 = before.objects.iter().map(|o| o.size).sum();
    let summary = f
        .dataplane
        .scan(Some(&f.admin), "other-rw", |_, _| calls += 1)
        .await
        .expect("scan");
    assert_eq!(summary.objects, before.objects.len() as u64);
    assert_eq!(summary.bytes, expected_bytes);
    assert!(calls >= 1);
    let v = f
        .dataplane
        .catalog()
        .get_volume("other-rw")
        .await
        .expect("volume");
    assert_eq!(v.last_scan, Some(summary));
    let err = f
        .dataplane
        .scan(Some(&f.reader), "rw-vol", |_, _| {})
        .await
        .expect_err("scan needs admin");
    assert!(matches!(err, DataplaneError::AccessDenied { .. }), "{err}");
}

//! File backends never serve what lies outside their folder: symbolic links to files and
//! folders outside and inside, `..` in link targets, a link swapped in while requests run, and
//! random trees (property test), through the dataplane as every front reaches it; and what
//! listings of such a tree say stays true to its files as they change.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;

use archway_dataplane::catalog::{Catalog, CatalogConfig, NewVolume, Principal, VolumeKind};
use archway_dataplane::posix::Links;
use archway_dataplane::{
    BackendConfig, BodyError, Dataplane, DataplaneConfig, DataplaneError, ListRequest, PutRequest,
    ReadRequest,
};
use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;

const SECRET: &[u8] = b"SECRET: outside the volume";

struct Fixture {
    dp: Dataplane,
    admin: Principal,
    _dir: tempfile::TempDir,
}

/// A dataplane with one volume `vol` over `root` (a file backend with `links`).
async fn fixture(root: &Path, links: Links) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&CatalogConfig::default(), dir.path())
        .await
        .unwrap();
    let mut backends = BTreeMap::new();
    backends.insert(
        "tree".to_string(),
        BackendConfig {
            url: format!("file://{}", root.display()),
            links,
            ..Default::default()
        },
    );
    let config = DataplaneConfig {
        backends,
        spool_dir: dir.path().join("uploads"),
        ..Default::default()
    };
    let dp = Dataplane::new(catalog.clone(), config).await.unwrap();
    catalog
        .create_volume(NewVolume {
            id: "vol".into(),
            backend: "tree".into(),
            kind: VolumeKind::Workspace,
            ..Default::default()
        })
        .await
        .unwrap();
    Fixture {
        dp,
        admin: Principal {
            user: "root".into(),
            admin: true,
            scope: Default::default(),
        },
        _dir: dir,
    }
}

impl Fixture {
    async fn get(&self, key: &str) -> Result<Vec<u8>, DataplaneError> {
        let r = self
            .dp
            .get(Some(&self.admin), "vol", key, ReadRequest::default())
            .await?;
        let chunks: Vec<Bytes> = r.body.try_collect().await?;
        Ok(chunks.concat())
    }

    async fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut req = ListRequest::default();
        loop {
            let page = self.dp.list(Some(&self.admin), "vol", &req).await.unwrap();
            out.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_start_after {
                Some(after) => req.start_after = Some(after),
                None => return out,
            }
        }
    }

    async fn put(&self, key: &str, data: &'static [u8]) -> Result<(), DataplaneError> {
        let body = futures::stream::iter([Ok::<_, BodyError>(Bytes::from_static(data))]);
        self.dp
            .put(Some(&self.admin), "vol", key, body, PutRequest::default())
            .await
            .map(|_| ())
    }
}

/// A volume folder with links to files and folders outside and inside it.
fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let outside = top.path().join("outside");
    std::fs::create_dir_all(outside.join("etc")).unwrap();
    std::fs::write(outside.join("shadow"), SECRET).unwrap();
    std::fs::write(outside.join("etc/passwd"), SECRET).unwrap();
    let root = top.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
    symlink(outside.join("shadow"), root.join("shadow-link")).unwrap();
    symlink(outside.join("etc"), root.join("etc-link")).unwrap();
    symlink("../outside/shadow", root.join("dotdot-link")).unwrap();
    symlink("../../outside/etc", root.join("sub/dotdot-dir")).unwrap();
    symlink("a.txt", root.join("inside-link")).unwrap();
    symlink("../a.txt", root.join("sub/up-link")).unwrap();
    symlink("sub", root.join("sub-link")).unwrap();
    symlink("/nowhere", root.join("dangling")).unwrap();
    (top, root)
}

fn no_object(r: Result<Vec<u8>, DataplaneError>, key: &str) {
    match r {
        Err(DataplaneError::NoSuchKey { .. }) => {}
        Ok(bytes) => panic!("`{key}` served {:?}", String::from_utf8_lossy(&bytes)),
        Err(e) => panic!("`{key}`: {e}"),
    }
}

#[tokio::test]
async fn links_are_not_followed_or_listed_by_default() {
    let (_top, root) = tree();
    let f = fixture(&root, Links::Skip).await;
    for key in [
        "shadow-link",
        "etc-link/passwd",
        "dotdot-link",
        "sub/dotdot-dir/passwd",
        "inside-link",
        "sub/up-link",
        "sub-link/b.txt",
        "dangling",
    ] {
        no_object(f.get(key).await, key);
        let head = f.dp.head(Some(&f.admin), "vol", key).await;
        assert!(
            matches!(head, Err(DataplaneError::NoSuchKey { .. })),
            "{key}: {head:?}"
        );
    }
    assert_eq!(f.keys().await, vec!["a.txt", "sub/b.txt"]);
    // One level at a time, too: no link as an object or a folder.
    let page =
        f.dp.list(
            Some(&f.admin),
            "vol",
            &ListRequest {
                delimiter: Some("/".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["a.txt"]);
    assert_eq!(page.common_prefixes, vec!["sub/"]);
    assert_eq!(f.get("a.txt").await.unwrap(), b"a");
}

#[tokio::test]
async fn links_that_stay_inside_are_followed_when_asked() {
    let (_top, root) = tree();
    let f = fixture(&root, Links::Inside).await;
    assert_eq!(f.get("inside-link").await.unwrap(), b"a");
    assert_eq!(f.get("sub/up-link").await.unwrap(), b"a");
    assert_eq!(f.get("sub-link/b.txt").await.unwrap(), b"b");
    for key in [
        "shadow-link",
        "etc-link/passwd",
        "dotdot-link",
        "sub/dotdot-dir/passwd",
        "dangling",
    ] {
        no_object(f.get(key).await, key);
    }
    assert_eq!(
        f.keys().await,
        vec![
            "a.txt",
            "inside-link",
            "sub-link/b.txt",
            "sub-link/up-link",
            "sub/b.txt",
            "sub/up-link"
        ]
    );
}

#[tokio::test]
async fn writes_never_go_through_a_link() {
    let (top, root) = tree();
    let f = fixture(&root, Links::Skip).await;
    // Into a folder that is a link out: refused, nothing written outside.
    assert!(f.put("etc-link/new.txt", b"x").await.is_err());
    assert!(!top.path().join("outside/etc/new.txt").exists());
    // Over a link: the link is replaced by the object; its target is untouched.
    f.put("shadow-link", b"mine").await.unwrap();
    assert_eq!(
        std::fs::read(top.path().join("outside/shadow")).unwrap(),
        SECRET
    );
    assert_eq!(f.get("shadow-link").await.unwrap(), b"mine");
    // Deleting a link's path through a linked folder touches nothing outside.
    let _ = f.dp.delete(Some(&f.admin), "vol", "etc-link/passwd").await;
    assert!(top.path().join("outside/etc/passwd").exists());
}

/// Listings remember files' recorded ETags between pages (one stat per file); they must
/// still show what HEAD shows after a file changes — through Archway or behind its back.
#[tokio::test]
async fn listed_etags_follow_the_files_as_they_change() {
    let (_top, root) = tree();
    let f = fixture(&root, Links::Skip).await;
    async fn listed(f: &Fixture) -> String {
        let page =
            f.dp.list(Some(&f.admin), "vol", &ListRequest::default())
                .await
                .unwrap();
        let obj = page.objects.into_iter().find(|o| o.key == "e/x").unwrap();
        let head = f.dp.head(Some(&f.admin), "vol", "e/x").await.unwrap();
        assert_eq!(obj.etag, head.etag, "a listing shows the ETag HEAD shows");
        obj.etag.unwrap()
    }
    let (one, two) = (
        "f97c5d29941bfb1b2fdab0874906ab82",
        "b8a9f715dbb64fd5c56e7783c6820a61",
    );
    f.put("e/x", b"one").await.unwrap();
    assert_eq!(listed(&f).await, one);
    assert_eq!(listed(&f).await, one);
    f.put("e/x", b"two").await.unwrap();
    assert_eq!(listed(&f).await, two);
    // Rewritten in place by another program (same size): no recorded ETag applies any more.
    std::fs::write(root.join("e/x"), b"six").unwrap();
    let etag = listed(&f).await;
    assert_ne!(etag, two);
    assert_eq!(listed(&f).await, etag);
}

/// A name flipped between a file and a link to a secret while reads run: no read ever returns
/// the secret (nothing is checked and then opened by name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_swapped_in_during_reads_never_redirects_them() {
    let (top, root) = tree();
    let f = fixture(&root, Links::Skip).await;
    let target = root.join("flip");
    let secret = top.path().join("outside/shadow");
    std::fs::write(&target, b"plain").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (target, secret, stop) = (target.clone(), secret.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp_file = target.with_extension("file");
            let tmp_link = target.with_extension("link");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if n.is_multiple_of(2) {
                    let _ = std::fs::remove_file(&tmp_link);
                    symlink(&secret, &tmp_link).unwrap();
                    std::fs::rename(&tmp_link, &target).unwrap();
                } else {
                    std::fs::write(&tmp_file, b"plain").unwrap();
                    std::fs::rename(&tmp_file, &target).unwrap();
                }
                n += 1;
            }
            n
        })
    };
    let (mut plain, mut absent) = (0, 0);
    for _ in 0..2000 {
        match f.get("flip").await {
            Ok(bytes) => {
                assert_eq!(bytes, b"plain", "a swapped-in link redirected a read");
                plain += 1;
            }
            Err(DataplaneError::NoSuchKey { .. }) => absent += 1,
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 10, "the name was flipped only {flips} times");
    assert!(
        plain > 0 && absent > 0,
        "{plain} reads of the file, {absent} of the link"
    );
}

/// A random tree: files, folders, and links with targets inside and outside, absolute and
/// relative (with `..`).
#[derive(Clone, Debug)]
enum Node {
    File(u8),
    Dir(Vec<(u8, Node)>),
    Link(String),
}

fn node() -> impl Strategy<Value = Node> {
    let target = prop_oneof![
        Just("../outside/shadow".to_string()),
        Just("/".to_string()),
        Just("..".to_string()),
        Just("../..".to_string()),
        Just("n0".to_string()),
        Just("../n1".to_string()),
        Just("n2/n3".to_string()),
        Just("OUTSIDE".to_string()),
    ];
    let leaf = prop_oneof![
        any::<u8>().prop_map(Node::File),
        target.prop_map(Node::Link)
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        proptest::collection::vec((0u8..6, inner), 0..4).prop_map(Node::Dir)
    })
}

fn build(at: &Path, node: &Node, outside: &Path) {
    match node {
        Node::File(b) => std::fs::write(at, [b'f', *b]).unwrap(),
        Node::Dir(children) => {
            std::fs::create_dir_all(at).unwrap();
            for (name, child) in children {
                let path = at.join(format!("n{name}"));
                if !path.exists() && std::fs::symlink_metadata(&path).is_err() {
                    build(&path, child, outside);
                }
            }
        }
        Node::Link(t) => {
            let t = if t == "OUTSIDE" {
                outside.display().to_string()
            } else {
                t.clone()
            };
            symlink(t, at).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the tree, every listed object reads back as a file beneath the root, no read
    /// returns what lies outside, and no link is listed (default) or leads out (`inside`).
    #[test]
    fn no_tree_leads_out(children in proptest::collection::vec((0u8..6, node()), 1..5), inside in any::<bool>()) {
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("shadow"), SECRET).unwrap();
        let root = top.path().join("root");
        build(&root, &Node::Dir(children), &outside);
        let links = if inside { Links::Inside } else { Links::Skip };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let f = fixture(&root, links).await;
            for key in f.keys().await {
                let bytes = f.get(&key).await.unwrap();
                prop_assert!(bytes != SECRET, "`{}` served the secret", key);
                // What a listed key names is a regular file beneath the root...
                let real = std::fs::canonicalize(root.join(&key)).unwrap();
                prop_assert!(real.starts_with(std::fs::canonicalize(&root).unwrap()), "`{}` is {:?}", key, real);
                prop_assert!(real.is_file());
                if !inside {
                    // ...reached without any link.
                    let mut at = root.clone();
                    for part in key.split('/') {
                        at = at.join(part);
                        prop_assert!(!std::fs::symlink_metadata(&at).unwrap().file_type().is_symlink(), "`{}` goes through a link", key);
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn the_staging_sweep_takes_only_stale_staging_files_and_follows_no_link() {
    use std::time::{Duration, SystemTime};
    let tmp = tempfile::tempdir().unwrap();
    let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let stale = |path: &Path| {
        std::fs::write(path, b"x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
    };
    stale(&tree.join("a/b/\u{1}archway-00"));
    stale(&tree.join("\u{1}archway-01"));
    std::fs::write(tree.join("a/\u{1}archway-02"), b"in progress").unwrap();
    stale(&tree.join("a/old-object"));
    stale(&outside.join("\u{1}archway-03"));
    symlink(&outside, tree.join("a/link")).unwrap();
    for links in [Links::Skip, Links::Inside] {
        let store = archway_dataplane::posix::PosixStore::new(&tree, links).unwrap();
        let removed = store.sweep_staging(Duration::from_secs(3600)).unwrap();
        assert_eq!(removed, if links == Links::Skip { 2 } else { 0 });
    }
    assert!(!tree.join("a/b/\u{1}archway-00").exists());
    assert!(!tree.join("\u{1}archway-01").exists());
    assert!(
        tree.join("a/\u{1}archway-02").exists(),
        "a write in progress"
    );
    assert!(tree.join("a/old-object").exists(), "an object");
    assert!(outside.join("\u{1}archway-03").exists(), "beyond a link");
}

//! End to end: workspace quotas through the real fronts — S3 PUT, multipart completion and
//! CopyObject from an S3 client, writers racing past a limit, an admin raising it on a running
//! gateway, a user's quota over two workspaces, a new workspace's default from the
//! configuration (aws cli's `s3 mb`), and EDQUOT through a real mount.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use common::mount::Mount;
use common::{BIN, Gateway, aws, s3_client, text};
use futures::TryStreamExt;

const KIB: u64 = 1024;

/// A user with S3 keys and an API token; (key id, secret, token).
fn user(gw: &Gateway, name: &str) -> (String, String, String) {
    gw.catalog(&["user", "add", name]);
    let key = gw.catalog(&["user", "key", "create", name]);
    let token = gw.catalog(&["user", "token", "create", name]);
    (
        key["access_key_id"].as_str().unwrap().to_string(),
        key["secret_access_key"].as_str().unwrap().to_string(),
        token["secret"].as_str().unwrap().to_string(),
    )
}

/// A workspace owned by `owner`, with `flags` (quotas) on its creation.
fn workspace(gw: &Gateway, id: &str, owner: &str, flags: &[&str]) {
    let mut args = vec![
        "volume",
        "add",
        id,
        "--backend",
        "workspaces",
        "--prefix",
        id,
        "--kind",
        "workspace",
        "--owner",
        owner,
    ];
    args.extend_from_slice(flags);
    gw.catalog(&args);
}

/// What `volume show` says the workspace holds: (bytes, objects).
fn usage(gw: &Gateway, id: &str) -> (u64, u64) {
    let v = gw.catalog(&["volume", "show", id]);
    (
        v["usage_bytes"].as_u64().unwrap(),
        v["usage_objects"].as_u64().unwrap(),
    )
}

/// What a listing of the whole workspace finds: (bytes, objects).
async fn listed(store: &Arc<dyn ObjectStore>) -> (u64, u64) {
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    (all.iter().map(|m| m.size).sum(), all.len() as u64)
}

fn is_quota_refusal(e: &dyn std::error::Error) -> bool {
    // The S3 answer's code, as the client reports it (status 403, code QuotaExceeded).
    format!("{e:?}").contains("QuotaExceeded")
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_hold_on_every_s3_write_path_and_under_racing_writers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let (id, secret, _) = user(&gw, "quinn");
    workspace(&gw, "q-one", "quinn", &["--quota-bytes", "1MiB"]);
    let store = s3_client(&gw.url, "q-one", &id, &secret);

    // 16 writers race two 100 KiB objects each into 1 MiB: exactly the ten that fit commit.
    let body = PutPayload::from(vec![7u8; 100 * KIB as usize]);
    let mut writers = Vec::new();
    for w in 0..16 {
        let (store, body) = (store.clone(), body.clone());
        writers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..2 {
                let key = Key::from(format!("race/w{w:02}-{n}.bin"));
                outcomes.push(store.put(&key, body.clone()).await.map(|_| ()));
            }
            outcomes
        }));
    }
    let (mut committed, mut refused) = (0u64, 0u64);
    for w in writers {
        for outcome in w.await.unwrap() {
            match outcome {
                Ok(()) => committed += 1,
                Err(e) if is_quota_refusal(&e) => refused += 1,
                Err(e) => panic!("a racing writer failed otherwise: {e}"),
            }
        }
    }
    assert_eq!((committed, refused), (10, 22), "10 × 100 KiB fit in 1 MiB");
    assert_eq!(listed(&store).await, (10 * 100 * KIB, 10));
    assert_eq!(
        usage(&gw, "q-one"),
        listed(&store).await,
        "usage is what is there"
    );
    let metrics = gw.metrics().await;
    let metric = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
    };
    assert_eq!(
        metric("archway_quota_refusals_total{scope=\"workspace\",what=\"bytes\"}"),
        22
    );
    assert_eq!(
        metric("archway_workspace_usage{unit=\"bytes\"}"),
        10 * 100 * KIB,
        "the only workspace's usage"
    );

    // Overwriting an object with a smaller one is never refused, and frees the difference.
    let first = store
        .list(Some(&Key::from("race")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()[0]
        .location
        .clone();
    store
        .put(&first, PutPayload::from(vec![1u8; 10 * KIB as usize]))
        .await
        .unwrap();
    assert_eq!(usage(&gw, "q-one").0, 9 * 100 * KIB + 10 * KIB);
    store
        .put(
            &Key::from("fill.bin"),
            PutPayload::from(vec![2u8; 60 * KIB as usize]),
        )
        .await
        .unwrap();

    // CopyObject is charged like a write: a copy that would not fit is refused, no object.
    let free = 1024 * KIB - usage(&gw, "q-one").0;
    assert!(free < 100 * KIB, "{free}");
    let other = store
        .list(Some(&Key::from("race")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.size == 100 * KIB)
        .unwrap()
        .location;
    let err = store
        .copy(&other, &Key::from("copies/a.bin"))
        .await
        .unwrap_err();
    assert!(is_quota_refusal(&err), "{err}");
    assert!(store.head(&Key::from("copies/a.bin")).await.is_err());

    // A multipart upload is refused at completion, and leaves no object.
    let big = Key::from("big/six-mib.bin");
    let six_mib = vec![3u8; 6 << 20];
    let err = store
        .put(&big, PutPayload::from(six_mib.clone()))
        .await
        .unwrap_err();
    assert!(is_quota_refusal(&err), "{err}");
    assert!(
        store.head(&big).await.is_err(),
        "nothing partial is visible"
    );

    // The S3 answer names the quota (what aws cli and boto3 show).
    let err = store
        .put(&Key::from("one-more.bin"), body.clone())
        .await
        .unwrap_err();
    let words = format!("{err:?}");
    assert!(
        words.contains("quota of workspace `q-one` is 1048576 bytes"),
        "{words}"
    );

    // An admin raises the quota on the running gateway; the same writes now commit.
    gw.catalog(&["volume", "update", "q-one", "--quota-bytes", "16MiB"]);
    store.put(&big, PutPayload::from(six_mib)).await.unwrap();
    store
        .copy(&other, &Key::from("copies/a.bin"))
        .await
        .unwrap();
    assert_eq!(usage(&gw, "q-one"), listed(&store).await);

    // Deletes give back what they removed; `none` lifts the limit.
    store.delete(&big).await.unwrap();
    assert_eq!(usage(&gw, "q-one"), listed(&store).await);
    gw.catalog(&["volume", "update", "q-one", "--quota-bytes", "none"]);
    assert!(gw.catalog(&["volume", "show", "q-one"])["quota_bytes"].is_null());

    // An object limit counts objects, not bytes.
    let limit = usage(&gw, "q-one").1 + 3;
    gw.catalog(&[
        "volume",
        "update",
        "q-one",
        "--quota-objects",
        &limit.to_string(),
    ]);
    for n in 0..3 {
        store
            .put(
                &Key::from(format!("small/{n}")),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
    }
    let err = store
        .put(&Key::from("small/too-many"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains(&format!("{limit} objects")),
        "{err:?}"
    );
    // Replacing an object adds none.
    store
        .put(&Key::from("small/2"), PutPayload::from_static(b"yy"))
        .await
        .unwrap();
    assert_eq!(usage(&gw, "q-one"), listed(&store).await);

    // Quotas are for workspaces: an archive refuses one, naming the key.
    let out = Command::new(BIN)
        .args([
            "catalog",
            "--gateway",
            &gw.url,
            "--token",
            &gw.credential("archway_api_token"),
            "volume",
            "update",
            "demo",
            "--quota-bytes",
            "1GiB",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("quota_bytes") && said.contains("quotas apply to workspaces"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_quota_spans_their_workspaces_and_new_workspaces_get_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        "[workspaces]\ndefault_quota_bytes = \"256KiB\"\ndefault_quota_objects = 50\n",
    )
    .unwrap();
    let gw = Gateway::start(&data, &["--config", config.to_str().unwrap()]).await;
    let (id, secret, token) = user(&gw, "uma");
    gw.catalog(&["user", "update", "uma", "--create-workspaces", "true"]);

    // A workspace made through S3 (aws s3 mb) starts with the configured quota.
    aws(&gw.url, Some((&id, &secret)), &["s3", "mb", "s3://uma-new"]);
    let v = gw.catalog(&["volume", "show", "uma-new"]);
    assert_eq!(
        (v["quota_bytes"].as_u64(), v["quota_objects"].as_u64()),
        (Some(256 * KIB), Some(50))
    );

    // The user's own quota counts both workspaces together.
    workspace(&gw, "uma-two", "uma", &[]);
    gw.catalog(&["user", "update", "uma", "--quota-bytes", "300KiB"]);
    let one = s3_client(&gw.url, "uma-new", &id, &secret);
    let two = s3_client(&gw.url, "uma-two", &id, &secret);
    let body = PutPayload::from(vec![5u8; 100 * KIB as usize]);
    one.put(&Key::from("a"), body.clone()).await.unwrap();
    one.put(&Key::from("b"), body.clone()).await.unwrap();
    two.put(&Key::from("c"), body.clone()).await.unwrap();
    let err = two.put(&Key::from("d"), body.clone()).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("quota of user `uma` is 307200 bytes"),
        "{err:?}"
    );
    // The workspace's own limit (256 KiB) holds too, before the user's.
    gw.catalog(&["user", "update", "uma", "--quota-bytes", "none"]);
    let err = one.put(&Key::from("e"), body.clone()).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("quota of workspace `uma-new`"),
        "{err:?}"
    );

    // The user sees their usage (whoami), and so does an admin (user show).
    let (status, me) = gw.get_json("/api/v1/whoami", &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["usage_bytes"].as_u64(), Some(300 * KIB), "{me}");
    assert_eq!(me["usage_objects"].as_u64(), Some(3), "{me}");
    let shown = gw.catalog(&["user", "show", "uma"]);
    assert_eq!(shown["usage_bytes"], me["usage_bytes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_writing_past_a_quota_gets_edquot_and_the_file_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let (id, secret, token) = user(&gw, "mo");
    workspace(&gw, "mo-ws", "mo", &["--quota-bytes", "64KiB"]);
    let creds = dir.path().join("mo.credentials");
    std::fs::write(
        &creds,
        format!(
            "[mo]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\
             archway_api_token = {token}\n"
        ),
    )
    .unwrap();
    let mp = dir.path().join("mnt");
    let _m = Mount::start(
        &mp,
        &[
            "--gateway",
            &gw.url,
            "--credentials-file",
            creds.to_str().unwrap(),
            "--profile",
            "mo",
        ],
    );
    let ws = mp.join("mo-ws");
    std::fs::write(ws.join("fits.txt"), vec![b'a'; 32 * 1024]).unwrap();
    // The mount commits a file when it is flushed (fsync, close): fsync reports the refusal
    // (close's would be lost by `std::fs::write`, as by most programs).
    let mut f = std::fs::File::create(ws.join("too-big.bin")).unwrap();
    std::io::Write::write_all(&mut f, &[b'b'; 64 * 1024]).unwrap();
    let err = f.sync_all().unwrap_err();
    drop(f);
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EDQUOT),
        "writing past the quota: {err}"
    );
    let store = s3_client(&gw.url, "mo-ws", &id, &secret);
    assert!(
        store.head(&Key::from("too-big.bin")).await.is_err(),
        "the refused file was not committed"
    );
    assert_eq!(usage(&gw, "mo-ws"), (32 * 1024, 1));
    assert!(Path::new(&ws.join("fits.txt")).exists());
}

//! The symlink hole, closed on every front of the real binary: links placed in the `demo`
//! volume's folder (`shadow-link -> a secret file`, `etc-link -> a folder outside`) are no
//! objects to a signed S3 GET, a listing, a reduction, a scan and a mount in local mode.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::os::unix::fs::symlink;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt};
use archway_dataplane::{BackendConfig, Secret};
use common::Gateway;
use common::mount::Mount;
use futures::TryStreamExt;

const SECRET: &[u8] = b"root:$6$not-for-you:19000:0:99999:7:::\n";

#[tokio::test(flavor = "multi_thread")]
async fn links_out_of_a_volume_are_no_objects_on_any_front() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::start(&data, &[]).await;
    let outside = dir.path().join("etc");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("shadow"), SECRET).unwrap();
    let demo = data.join("demo");
    symlink(outside.join("shadow"), demo.join("shadow-link")).unwrap();
    symlink(&outside, demo.join("etc-link")).unwrap();
    symlink("../../etc/shadow", demo.join("images/dotdot-link")).unwrap();
    std::fs::copy(demo.join("images/field1.fits"), outside.join("field.fits")).unwrap();
    symlink(
        outside.join("field.fits"),
        demo.join("images/fits-link.fits"),
    )
    .unwrap();

    // S3, signed by the admin.
    let backend = BackendConfig {
        url: format!("archway+{}", gw.url),
        access_key_id: Some(gw.credential("aws_access_key_id")),
        secret_access_key: Some(Secret(gw.credential("aws_secret_access_key"))),
        max_retries: Some(0),
        ..Default::default()
    };
    let s3 = archway_dataplane::gateway_volume(&backend, "demo")
        .unwrap()
        .store;
    for key in [
        "shadow-link",
        "etc-link/shadow",
        "images/dotdot-link",
        "images/fits-link.fits",
    ] {
        match s3.get(&Key::from(key)).await {
            Err(archway_dataplane::object_store::Error::NotFound { .. }) => {}
            Ok(r) => panic!("S3 GET `{key}` served {:?}", r.bytes().await),
            Err(e) => panic!("S3 GET `{key}`: {e}"),
        }
    }
    let listed: Vec<String> = s3
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert!(!listed.is_empty());
    for key in &listed {
        assert!(
            !key.contains("link") && !key.contains("shadow"),
            "listed `{key}`: {listed:?}"
        );
    }

    // The HTTP API: a reduction of a link is a missing object; a scan counts no link.
    let token = gw.credential("archway_api_token");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/reduce", gw.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"volume": "demo", "key": "images/fits-link.fits", "op": "sum"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
    let scan = gw.catalog(&["volume", "scan", "demo"]);
    assert_eq!(
        scan["scan"]["objects"].as_u64().unwrap(),
        listed.len() as u64,
        "{scan}"
    );

    // A mount in local mode shows the same tree.
    let mp = dir.path().join("mnt");
    let _m = Mount::start(&mp, &["--data-dir", data.to_str().unwrap()]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . -print",
            mp.join("demo").display()
        ))
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{found}");
    assert!(
        !found.contains("link") && !found.contains("shadow"),
        "the mount shows {found}"
    );
    assert!(std::fs::read(mp.join("demo/shadow-link")).is_err());
    assert!(std::fs::read(mp.join("demo/etc-link/shadow")).is_err());
}

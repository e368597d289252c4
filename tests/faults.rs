//! Faults with real processes: the gateway SIGKILLed while an upload streams in and while a
//! multipart upload is open (after a restart nothing partial is visible, what was committed is
//! intact, and the open upload goes on where it was); an archive's S3 server killed in the
//! middle of a GET (the client sees an error or a short body, never wrong bytes, and the cache
//! keeps nothing partial).
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStoreExt, PutPayload};
use common::{Gateway, aws, free_port, s3_client};
use futures::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 2_654_435_761) >> 7) as u8 ^ seed)
        .collect()
}

/// `aws s3api ARGS` against the gateway as its admin; the JSON answer.
fn s3api(gw: &Gateway, args: &[&str]) -> Value {
    let (id, secret) = (
        gw.credential("aws_access_key_id"),
        gw.credential("aws_secret_access_key"),
    );
    let mut all = vec!["s3api"];
    all.extend_from_slice(args);
    aws(&gw.url, Some((&id, &secret)), &all)
}

/// Uploads part `n` of `upload` (of `workspace/mp/three.bin`) with the aws cli; its ETag.
fn upload_part(gw: &Gateway, dir: &Path, upload: &str, n: usize, bytes: &[u8]) -> String {
    let file = dir.join(format!("part{n}"));
    std::fs::write(&file, bytes).unwrap();
    let number = n.to_string();
    let answer = s3api(
        gw,
        &[
            "upload-part",
            "--bucket",
            "workspace",
            "--key",
            "mp/three.bin",
            "--upload-id",
            upload,
            "--part-number",
            &number,
            "--body",
            file.to_str().unwrap(),
        ],
    );
    answer["ETag"].as_str().unwrap().to_string()
}

/// Every file below `dir`, as paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_upload_loses_nothing_committed_and_shows_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut gw = Gateway::start_on(&data, port, &[]).await;
    let (key, secret) = (
        gw.credential("aws_access_key_id"),
        gw.credential("aws_secret_access_key"),
    );
    let ws = s3_client(&gw.url, "workspace", &key, &secret);

    // Committed before the crash.
    let mut committed = Vec::new();
    for (n, len) in [(1u8, 10), (2, 300_000), (3, 9 << 20)] {
        let body = bytes(n, len);
        let name = format!("kept/{n}.bin");
        ws.put(&Key::from(name.as_str()), PutPayload::from(body.clone()))
            .await
            .unwrap();
        committed.push((name, Sha256::digest(&body)));
    }
    // An open multipart upload with two of its three parts.
    let parts: Vec<Vec<u8>> = (0..3).map(|p| bytes(10 + p, 5 << 20)).collect();
    let upload = s3api(
        &gw,
        &[
            "create-multipart-upload",
            "--bucket",
            "workspace",
            "--key",
            "mp/three.bin",
        ],
    )["UploadId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut etags = Vec::new();
    for n in 1..=2 {
        etags.push(upload_part(&gw, dir.path(), &upload, n, &parts[n - 1]));
    }

    // A 40 MB PUT streaming in at 4 MB/s when the gateway is killed.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, bytes(99, 40_000_000)).unwrap();
    let mut curl = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--limit-rate",
            "4M",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{key}:{secret}"),
            "-T",
            big.to_str().unwrap(),
            &format!("{}/workspace/partial/big.bin", gw.url),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("curl (Debian's curl package)");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        curl.try_wait().unwrap().is_none(),
        "the upload ended before the kill"
    );
    let mut child = gw.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let _ = curl.wait();
    drop(gw);

    let gw = Gateway::start_on(&data, port, &[]).await;
    let ws = s3_client(&gw.url, "workspace", &key, &secret);
    // Nothing partial is visible; what was committed is whole.
    assert!(ws.head(&Key::from("partial/big.bin")).await.is_err());
    let listed: Vec<String> = ws
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    let mut want: Vec<String> = committed.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(listed, want, "the listing after the restart");
    for (name, digest) in &committed {
        let got = ws
            .get(&Key::from(name.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(Sha256::digest(&got), *digest, "{name}");
    }
    // The killed PUT's staging file is hidden; once an hour unmodified (no write in progress
    // leaves its file that long), the sweep at start and every hour removes it.
    let folder = data.join("workspaces").join("workspace");
    let stray: Vec<String> = files(&folder)
        .into_iter()
        .filter(|f| !want.contains(f))
        .collect();
    assert_eq!(stray.len(), 1, "{stray:?}");
    assert!(stray[0].contains("\u{1}archway-"), "{stray:?}");
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(folder.join(&stray[0]))
        .unwrap()
        .set_modified(old)
        .unwrap();
    drop(ws);
    let mut gw = gw;
    gw.stop();
    let gw = Gateway::start_on(&data, port, &[]).await;
    let ws = s3_client(&gw.url, "workspace", &key, &secret);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while files(&folder) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale staging file stayed: {:?}",
            files(&folder)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The open upload survived and completes with its third part.
    let open = s3api(&gw, &["list-multipart-uploads", "--bucket", "workspace"]);
    assert_eq!(open["Uploads"][0]["UploadId"], upload.as_str(), "{open}");
    etags.push(upload_part(&gw, dir.path(), &upload, 3, &parts[2]));
    let listing: Vec<Value> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"PartNumber": i + 1, "ETag": e}))
        .collect();
    s3api(
        &gw,
        &[
            "complete-multipart-upload",
            "--bucket",
            "workspace",
            "--key",
            "mp/three.bin",
            "--upload-id",
            &upload,
            "--multipart-upload",
            &serde_json::json!({ "Parts": listing }).to_string(),
        ],
    );
    let got = ws
        .get(&Key::from("mp/three.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), 15 << 20);
    assert!(got[..] == parts.concat()[..], "the completed object");
}

/// moto's S3 server on `port` (in memory), with bucket `arch` holding `big.bin` = `object`.
async fn moto_with(port: u16, object: &[u8]) -> std::process::Child {
    // scripts/test-services installs moto for the system's python3 (as the benches use it).
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto's S3 server (scripts/test-services installs moto[server])");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "moto did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://127.0.0.1:{port}");
    let made = reqwest::Client::new()
        .put(format!("{url}/arch"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success());
    s3_client(&url, "arch", "arkey", "arsecret")
        .put(&Key::from("big.bin"), PutPayload::from(object.to_vec()))
        .await
        .unwrap();
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_killed_mid_get_gives_a_detectable_error_and_the_cache_keeps_nothing_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let object = bytes(42, 48 << 20);
    let digest = Sha256::digest(&object);
    let s3_port = free_port();
    let mut archive = moto_with(s3_port, &object).await;
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.remote]\nurl = \"s3://arch\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"arkey\"\nsecret_access_key = \"arsecret\"\n\n\
             [[volumes]]\nid = \"remote\"\nbackend = \"remote\"\nkind = \"archive\"\n"
        ),
    )
    .unwrap();
    let gw = Gateway::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let store = s3_client(
        &gw.url,
        "remote",
        &gw.credential("aws_access_key_id"),
        &gw.credential("aws_secret_access_key"),
    );
    let key = Key::from("big.bin");

    // Read the first few MiB, then the archive dies.
    let mut body = store.get(&key).await.unwrap().into_stream();
    let mut got = Vec::new();
    while got.len() < 4 << 20 {
        got.extend_from_slice(&body.try_next().await.unwrap().unwrap());
    }
    archive.kill().unwrap();
    archive.wait().unwrap();
    let ended = loop {
        match body.try_next().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Either the body fails, or it is short — never a whole-length body with other bytes.
    match ended {
        Err(_) => {}
        Ok(()) if got.len() < object.len() => {}
        Ok(()) => assert_eq!(
            Sha256::digest(&got),
            digest,
            "a full-length body must be the object"
        ),
    }
    assert!(
        got[..] == object[..got.len()],
        "the bytes that came are the object's"
    );

    // With the archive down, a read that needs it fails — never with wrong bytes.
    let whole = async { store.get(&key).await?.bytes().await }.await;
    if let Ok(b) = whole {
        assert_eq!(Sha256::digest(&b), digest, "what the cache served alone");
    }

    // The archive back (the same bytes, so the same ETag): the whole object, right, through
    // the same cache.
    let mut archive = moto_with(s3_port, &object).await;
    let again = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(again.len(), object.len());
    assert_eq!(
        Sha256::digest(&again),
        digest,
        "the cache kept nothing partial or wrong"
    );
    archive.kill().unwrap();
    archive.wait().unwrap();
}

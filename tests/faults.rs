//! Faults with real processes: the gateway SIGKILLed while an upload streams in and while a
//! multipart upload is open (after a restart nothing partial is visible, what was committed is
//! intact, and the open upload goes on where it was); an archive's S3 server killed in the
//! middle of a GET (the client sees an error or a short body, never wrong bytes, and the cache
//! keeps nothing partial); an archive stalled behind a TCP proxy (a 503 naming the volume after
//! the backend's time-out, other volumes served meanwhile); archives changed behind the gateway
//! (seen by their version, never mixed); the catalogue's own PostgreSQL stopped and started
//! under load (503s, then recovery without a restart); the disk cache's file system full (a
//! 4 MiB tmpfs: reads stay right, writes pause). The peer gateway down during a forwarded
//! reduce is in `tests/reduce.rs`.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// The `[backends.remote]` section for moto's bucket `arch` on `port`, with `extra` lines.
fn moto_backend(port: u16, extra: &str) -> String {
    format!(
        "[backends.remote]\nurl = \"s3://arch\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         region = \"us-east-1\"\naccess_key_id = \"arkey\"\nsecret_access_key = \"arsecret\"\n{extra}\n"
    )
}

/// `[[volumes]]` entries: an archive per (id, backend).
fn archives(volumes: &[(&str, &str)]) -> String {
    volumes
        .iter()
        .map(|(id, backend)| {
            format!("[[volumes]]\nid = \"{id}\"\nbackend = \"{backend}\"\nkind = \"archive\"\n\n")
        })
        .collect()
}

/// A gateway on `config` (written to `dir/archway.toml`), its data in `dir/data`; with the
/// admin's key id and secret.
async fn configured(dir: &Path, config: &str) -> (Gateway, String, String) {
    let file = dir.join("archway.toml");
    std::fs::write(&file, config).unwrap();
    let gw = Gateway::start(&dir.join("data"), &["--config", file.to_str().unwrap()]).await;
    let (id, secret) = (
        gw.credential("aws_access_key_id"),
        gw.credential("aws_secret_access_key"),
    );
    (gw, id, secret)
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
    let config = moto_backend(s3_port, "") + &archives(&[("remote", "remote")]);
    let (gw, id, secret) = configured(dir.path(), &config).await;
    let store = s3_client(&gw.url, "remote", &id, &secret);
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

/// A TCP proxy to `127.0.0.1:target` that forwards until told to stall; stalled, it holds
/// every connection, old and new, and forwards nothing: an archive whose server hangs.
struct StallingProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(target: u16) -> StallingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, flag.clone()), pump(sr, cw, flag));
                });
            }
        });
        StallingProxy { port, stalled }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A folder for a file backend, holding `files`.
fn file_archive(dir: &Path, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join(name), body).unwrap();
    }
    dir.to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_archive_times_out_with_a_clear_error_while_other_volumes_serve() {
    let dir = tempfile::tempdir().unwrap();
    let first = bytes(7, 3 << 20);
    let other = bytes(8, 2 << 20);
    let s3_port = free_port();
    let mut archive = moto_with(s3_port, &first).await;
    s3_client(
        &format!("http://127.0.0.1:{s3_port}"),
        "arch",
        "arkey",
        "arsecret",
    )
    .put(&Key::from("other.bin"), PutPayload::from(other.clone()))
    .await
    .unwrap();
    let proxy = StallingProxy::start(s3_port).await;
    let local_body = bytes(9, 1 << 20);
    let local = file_archive(&dir.path().join("local"), &[("file.bin", &local_body)]);
    let config = moto_backend(proxy.port, "timeout = \"2s\"\nmax_retries = 1\n")
        + &format!("[backends.local]\nurl = \"file://{}\"\n\n", local.display())
        + &archives(&[("remote", "remote"), ("local", "local")]);
    let (gw, id, secret) = configured(dir.path(), &config).await;
    let remote = s3_client(&gw.url, "remote", &id, &secret);
    let local = s3_client(&gw.url, "local", &id, &secret);
    let got = remote
        .get(&Key::from("big.bin"))
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(
        got.unwrap()[..] == first[..],
        "through the proxy, before the stall"
    );

    // The archive hangs: a read it must serve fails with a clear 503 naming the volume...
    proxy.stall(true);
    let stalled = {
        let remote = remote.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = async { remote.get(&Key::from("other.bin")).await?.bytes().await }.await;
            (got, started.elapsed())
        })
    };
    // ... while the other volume keeps serving.
    for _ in 0..5 {
        let got = local
            .get(&Key::from("file.bin"))
            .await
            .unwrap()
            .bytes()
            .await;
        assert!(
            got.unwrap()[..] == local_body[..],
            "the local volume, during the stall"
        );
    }
    assert!(
        !stalled.is_finished(),
        "the stalled read should still be waiting while the local volume answered"
    );
    let (got, waited) = stalled.await.unwrap();
    let e = got.expect_err("a read from a stalled archive").to_string();
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(e.contains("503"), "{e}\n{log}");
    assert!(
        e.contains("volume `remote`") && e.contains("did not answer"),
        "the error names the volume and what happened: {e}"
    );
    // Two tries of 2 s each, with a back-off between: bounded by the configuration.
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    assert!(
        std::fs::read_to_string(&gw.stderr)
            .unwrap()
            .contains("a volume's storage did not answer"),
        "the gateway logs it"
    );

    // The archive answers again: so does the volume, without a restart.
    proxy.stall(false);
    let got = remote
        .get(&Key::from("other.bin"))
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(got.unwrap()[..] == other[..], "after the stall");
    archive.kill().unwrap();
    archive.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_changed_behind_the_gateway_is_seen_by_its_version_and_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let old = bytes(21, 24 << 20);
    let new = bytes(22, 24 << 20);
    let s3_port = free_port();
    let mut archive = moto_with(s3_port, &old).await;
    let behind = s3_client(
        &format!("http://127.0.0.1:{s3_port}"),
        "arch",
        "arkey",
        "arsecret",
    );
    let files = file_archive(
        &dir.path().join("files"),
        &[("frame.fits", &bytes(31, 3 << 20))],
    );
    let config = "[cache]\nmetadata_ttl = \"1s\"\n\n".to_string()
        + &moto_backend(s3_port, "")
        + &format!("[backends.files]\nurl = \"file://{}\"\n\n", files.display())
        + &archives(&[("remote", "remote"), ("files", "files")]);
    let (gw, id, secret) = configured(dir.path(), &config).await;
    let remote = s3_client(&gw.url, "remote", &id, &secret);
    let key = Key::from("big.bin");

    // S3 archive: the whole object read once (its blocks cached under its ETag).
    let first = remote.get(&key).await.unwrap();
    let first_etag = first.meta.e_tag.clone();
    assert!(first.bytes().await.unwrap()[..] == old[..]);

    // A read in progress when the object is replaced: the old object or a body cut short,
    // never a mix.
    let mut body = remote.get(&key).await.unwrap().into_stream();
    let mut got = Vec::new();
    while got.len() < 2 << 20 {
        got.extend_from_slice(&body.try_next().await.unwrap().unwrap());
    }
    behind
        .put(&key, PutPayload::from(new.clone()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past metadata_ttl
    let ended = loop {
        match body.try_next().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        got[..] == old[..got.len()],
        "the bytes of a read that started before the change are the old object's ({} of them, ended {ended:?})",
        got.len()
    );

    // The next read sees the new version whole: its ETag, its bytes.
    let second = remote.get(&key).await.unwrap();
    assert_ne!(second.meta.e_tag, first_etag, "the archive's new ETag");
    assert!(
        second.bytes().await.unwrap()[..] == new[..],
        "the new object, no block of the old one"
    );

    // File archive: a file rewritten in place, its size and modification time put back, as
    // `cp -p` does. Its ctime still moves, so its version does.
    let fits = s3_client(&gw.url, "files", &id, &secret);
    let fkey = Key::from("frame.fits");
    let before = fits.get(&fkey).await.unwrap();
    let before_etag = before.meta.e_tag.clone();
    before.bytes().await.unwrap();
    let path = files.join("frame.fits");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let changed = bytes(32, 3 << 20);
    std::thread::sleep(Duration::from_millis(20)); // a ctime of its own
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&changed).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    tokio::time::sleep(Duration::from_millis(1500)).await; // past metadata_ttl
    let after = fits.get(&fkey).await.unwrap();
    assert_ne!(
        after.meta.e_tag, before_etag,
        "the rewritten file's version"
    );
    assert!(
        after.bytes().await.unwrap()[..] == changed[..],
        "the rewritten file's bytes"
    );
    archive.kill().unwrap();
    archive.wait().unwrap();
}

/// A PostgreSQL cluster of this test's own (not the shared test server, which other tests
/// use at the same time): made with initdb in `dir`, on a free port, run as the `postgres`
/// user when the test runs as root (PostgreSQL refuses root). Stopped when dropped.
struct OwnPostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    fn init(dir: &Path) -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql (scripts/test-services installs them)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/pg_ctl");
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        if root {
            use std::os::unix::fs::PermissionsExt;
            // The test's folder (0700, root's) must let the postgres user through.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(owned.success(), "chown of the cluster's folder to postgres");
        }
        let pg = OwnPostgres {
            bin,
            data,
            port: free_port(),
            as_postgres: root,
        };
        let data = pg.data.to_str().unwrap().to_string();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        pg.start();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            common::text(&out.stdout),
            common::text(&out.stderr)
        );
    }

    fn start(&self) {
        let data = self.data.to_str().unwrap();
        let log = self.data.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {data} -c fsync=off",
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-w",
                "-m",
                "fast",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

/// What one request of the load came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// 503: the clear "unavailable, retry" answer.
    Unavailable,
    Other(String),
}

fn outcome<T>(r: &archway_dataplane::object_store::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => {
            let text = e.to_string();
            if text.contains("503") {
                Outcome::Unavailable
            } else {
                Outcome::Other(text)
            }
        }
    }
}

/// One round of the load: PUT, GET (checked), HEAD, LIST; the outcome of each.
async fn round(
    ws: &Arc<dyn archway_dataplane::object_store::ObjectStore>,
    client: usize,
    n: usize,
) -> Vec<(&'static str, Outcome)> {
    let key = Key::from(format!("load/{client}/{n}.bin"));
    let body = bytes((client * 31 + n) as u8, 20_000);
    let put = ws.put(&key, PutPayload::from(body.clone())).await;
    let mut out = vec![("put", outcome(&put))];
    if put.is_ok() {
        let got = async { ws.get(&key).await?.bytes().await }.await;
        if let Ok(b) = &got {
            assert!(b[..] == body[..], "{key}: the bytes written");
        }
        out.push(("get", outcome(&got)));
        out.push(("head", outcome(&ws.head(&key).await)));
    }
    let prefix = Key::from(format!("load/{client}"));
    out.push((
        "list",
        outcome(&ws.list(Some(&prefix)).try_collect::<Vec<_>>().await),
    ));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_database_restarted_under_load_gives_503s_then_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pg = OwnPostgres::init(dir.path());
    // Requests wait at most 1 s for a database connection, so a 5 s outage shows as 503s.
    let config = format!(
        "[catalog]\nurl = \"{}\"\nacquire_timeout = \"1s\"\n",
        pg.url()
    );
    let (mut gw, id, secret) = configured(dir.path(), &config).await;
    let ws = s3_client(&gw.url, "workspace", &id, &secret);

    // 8 clients in a loop; each outcome recorded with the phase it happened in.
    // 0 up, 1 down, 2 back (recovering), 3 recovered; 9 a round across a change of phase.
    let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (ws, phase, stop) = (ws.clone(), phase.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(usize, &'static str, Outcome)> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let at = phase.load(Ordering::SeqCst);
                let started = Instant::now();
                let outcomes = round(&ws, client, n).await;
                // A round that spans a change of phase belongs to neither.
                let at = if phase.load(Ordering::SeqCst) == at {
                    at
                } else {
                    9
                };
                for (op, o) in outcomes {
                    seen.push((at, op, o));
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "a round took {:?}: requests must fail, not hang",
                    started.elapsed()
                );
                n += 1;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.store(1, Ordering::SeqCst);
    pg.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    pg.start();
    phase.store(2, Ordering::SeqCst);
    // Back: within 30 s a whole round succeeds, without restarting the gateway.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = round(&ws, 99, 0).await;
        if r.iter().all(|(_, o)| *o == Outcome::Ok) && r.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover after the database came back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase.store(3, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }
    let count = |p: usize, want: &dyn Fn(&Outcome) -> bool| {
        seen.iter().filter(|(at, _, o)| *at == p && want(o)).count()
    };
    // The outcomes per phase and operation, for the record (`--nocapture` shows them).
    for p in [0, 1, 9, 2, 3] {
        for op in ["put", "get", "head", "list"] {
            let of = |want: &dyn Fn(&Outcome) -> bool| {
                seen.iter()
                    .filter(|(at, o_op, o)| *at == p && *o_op == op && want(o))
                    .count()
            };
            eprintln!(
                "phase {p} {op:<4}: {} ok, {} 503",
                of(&|o| *o == Outcome::Ok),
                of(&|o| *o == Outcome::Unavailable)
            );
        }
    }
    let others: Vec<_> = seen
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Other(_)))
        .collect();
    assert!(others.is_empty(), "every failure is a 503: {others:?}");
    let before: Vec<_> = seen
        .iter()
        .filter(|(at, _, o)| *at == 0 && *o != Outcome::Ok)
        .collect();
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(
        before.is_empty(),
        "no failure before the outage: {before:?}\n{log}"
    );
    assert!(
        count(0, &|o| *o == Outcome::Ok) > 0,
        "load before the outage"
    );
    assert!(
        count(1, &|o| *o == Outcome::Unavailable) > 0,
        "the outage shows as 503s"
    );
    // Reads need no database: the in-memory view authenticates and authorizes them.
    let failed_reads: Vec<_> = seen
        .iter()
        .filter(|(at, op, o)| *at == 1 && *op != "put" && *o != Outcome::Ok)
        .collect();
    assert!(
        failed_reads.is_empty(),
        "reads during the outage: {failed_reads:?}"
    );
    assert!(count(3, &|o| *o == Outcome::Ok) > 0, "load after recovery");
    assert_eq!(
        count(3, &|o| *o != Outcome::Ok),
        0,
        "no failure once recovered"
    );
    assert!(
        gw.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the gateway runs on"
    );
    assert!(!log.contains("panicked"), "no panic: {log}");
}

/// A small tmpfs mounted on `dir` (the tests run as root), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the test command runs as root): {}",
            common::text(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_cache_file_system_is_bypassed_and_reads_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Tmpfs::mount(&dir.path().join("cache"), "4m");
    // 24 MiB of objects through a 4 MiB file system for a 1 GiB disk tier, 4 MiB of memory.
    let bodies: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("f{i:02}.bin"), bytes(40 + i as u8, 2 << 20)))
        .collect();
    let refs: Vec<(&str, &[u8])> = bodies
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let files = file_archive(&dir.path().join("files"), &refs);
    let config = format!(
        "[cache]\ndir = \"{}\"\nmemory_bytes = 4194304\ndisk_bytes = 1073741824\n\n\
         [backends.files]\nurl = \"file://{}\"\n\n",
        cache.0.display(),
        files.display()
    ) + &archives(&[("files", "files")]);
    let (gw, id, secret) = configured(dir.path(), &config).await;
    let store = s3_client(&gw.url, "files", &id, &secret);
    for pass in 0..3 {
        for (name, body) in &bodies {
            let got = store
                .get(&Key::from(name.as_str()))
                .await
                .unwrap_or_else(|e| panic!("pass {pass}, {name}: {e}"))
                .bytes()
                .await
                .unwrap();
            assert!(got[..] == body[..], "pass {pass}, {name}: the file's bytes");
        }
    }
    let metrics = gw.metrics().await;
    let write_faults: u64 = metrics
        .lines()
        .find(|l| l.starts_with("archway_cache_disk_faults_total{kind=\"write\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(write_faults > 0, "the full file system was met: {metrics}");
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert_eq!(
        log.matches("the disk cache's file system is full").count(),
        1,
        "said once, then writes pause: {log}"
    );
    // Nothing cut short stays to take the space: only whole block files.
    let mut left = Vec::new();
    for shard in std::fs::read_dir(&cache.0).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            left.push(f.path());
        }
    }
    assert!(
        left.iter()
            .all(|p| p.extension().is_some_and(|e| e == "blk")),
        "{left:?}"
    );
}

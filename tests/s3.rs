//! End to end: the real binary's S3 front, driven by a real Rust S3 client (object_store's
//! AmazonS3, SigV4-signed, over loopback). The other clients (aws cli, boto3, s3fs, rclone)
//! run in `tests/interop/clients.py`.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::sync::Arc;

use archway_dataplane::object_store::aws::AmazonS3Builder;
use archway_dataplane::object_store::path::Path;
use archway_dataplane::object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use common::Gateway;
use futures::StreamExt;
use serde_json::{Value, json};

fn client(gw: &Gateway, bucket: &str, key_id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    common::s3_client(&gw.url, bucket, key_id, secret)
}

fn admin(gw: &Gateway, bucket: &str) -> Arc<dyn ObjectStore> {
    client(
        gw,
        bucket,
        &gw.credential("aws_access_key_id"),
        &gw.credential("aws_secret_access_key"),
    )
}

async fn api(gw: &Gateway, method: reqwest::Method, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", gw.url))
        .header(
            "authorization",
            format!("Bearer {}", gw.credential("archway_api_token")),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn objects_round_trip_through_a_rust_s3_client() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let ws = admin(&gw, "workspace");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ws.put(&Path::from("dir/a.bin"), PutPayload::from(data.clone()))
        .await
        .unwrap();
    let got = ws
        .get(&Path::from("dir/a.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    let part = ws
        .get_range(&Path::from("dir/a.bin"), 1000..2000)
        .await
        .unwrap();
    assert_eq!(part.as_ref(), &data[1000..2000]);
    let tail = ws
        .get_opts(
            &Path::from("dir/a.bin"),
            GetOptions {
                range: Some(GetRange::Suffix(10)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &data[data.len() - 10..]);
    let meta = ws.head(&Path::from("dir/a.bin")).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    let etag = meta.e_tag.clone().unwrap();

    // Conditions.
    let wrong = GetOptions {
        if_match: Some("\"nope\"".into()),
        ..Default::default()
    };
    let err = ws
        .get_opts(&Path::from("dir/a.bin"), wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            archway_dataplane::object_store::Error::Precondition { .. }
        ),
        "{err}"
    );
    let same = GetOptions {
        if_none_match: Some(etag.clone()),
        ..Default::default()
    };
    let err = ws
        .get_opts(&Path::from("dir/a.bin"), same)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            archway_dataplane::object_store::Error::NotModified { .. }
        ),
        "{err}"
    );
    let right = GetOptions {
        if_match: Some(etag),
        ..Default::default()
    };
    assert!(ws.get_opts(&Path::from("dir/a.bin"), right).await.is_ok());

    // Multipart upload (three parts) through the S3 multipart API.
    let big: Vec<u8> = (0..(12 * 1024 * 1024 + 777) as u32)
        .map(|i| (i % 253) as u8)
        .collect();
    let upload = ws.put_multipart(&Path::from("dir/big.bin")).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    for chunk in big.chunks(256 * 1024) {
        writer.write(chunk);
    }
    writer.finish().await.unwrap();
    let got = ws
        .get(&Path::from("dir/big.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == big.as_slice(), "multipart object differs");

    // Listing with a delimiter, and copy and delete.
    let listed = ws
        .list_with_delimiter(Some(&Path::from("dir")))
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    assert_eq!(keys, vec!["dir/a.bin", "dir/big.bin"]);
    ws.copy(&Path::from("dir/a.bin"), &Path::from("copy/a.bin"))
        .await
        .unwrap();
    assert_eq!(
        ws.head(&Path::from("copy/a.bin")).await.unwrap().size,
        data.len() as u64
    );
    ws.delete(&Path::from("copy/a.bin")).await.unwrap();
    assert!(ws.head(&Path::from("copy/a.bin")).await.is_err());
    let all: Vec<_> = ws.list(None).collect().await;
    assert_eq!(all.len(), 2);

    // Reads of the demo archive; writes there are refused.
    let demo = admin(&gw, "demo");
    let fits = demo
        .get(&Path::from("images/field1.fits"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(fits.starts_with(b"SIMPLE  ="));
    let err = demo
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test]
async fn signatures_and_grants_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;

    // A wrong secret.
    let forged = client(
        &gw,
        "demo",
        &gw.credential("aws_access_key_id"),
        "wrong-secret-0123456789012345678901234",
    );
    let err = forged.head(&Path::from("README.txt")).await.unwrap_err();
    let err = format!("{err:?}");
    assert!(err.contains("403"), "{err}");
    let err = forged
        .list_with_delimiter(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    // An unknown key.
    let unknown = client(&gw, "demo", "AKNOSUCHKEY000000000", "x".repeat(40).as_str());
    let err = unknown
        .list_with_delimiter(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("InvalidAccessKeyId"), "{err}");

    // A user without grants sees nothing; with a read grant, reads but does not write.
    api(
        &gw,
        reqwest::Method::POST,
        "/api/v1/users",
        json!({"name": "eve"}),
    )
    .await;
    let key = api(
        &gw,
        reqwest::Method::POST,
        "/api/v1/users/eve/keys",
        json!({}),
    )
    .await;
    let eve = client(
        &gw,
        "demo",
        key["access_key_id"].as_str().unwrap(),
        key["secret_access_key"].as_str().unwrap(),
    );
    let err = eve.list_with_delimiter(None).await.unwrap_err().to_string();
    assert!(err.contains("AccessDenied"), "{err}");
    api(
        &gw,
        reqwest::Method::PUT,
        "/api/v1/volumes/demo/grants/user:eve",
        json!({"level": "read"}),
    )
    .await;
    assert_eq!(
        eve.list_with_delimiter(None)
            .await
            .unwrap()
            .common_prefixes
            .len(),
        2
    );
    let eve_ws = client(
        &gw,
        "workspace",
        key["access_key_id"].as_str().unwrap(),
        key["secret_access_key"].as_str().unwrap(),
    );
    let err = eve_ws
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AccessDenied"), "{err}");

    // Anonymous requests reach public volumes only.
    let anonymous = |bucket: &str| -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&gw.url)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_skip_signature(true)
                .with_virtual_hosted_style_request(false)
                .with_client_options(ClientOptions::new().with_allow_http(true))
                .with_retry(RetryConfig {
                    max_retries: 0,
                    ..Default::default()
                })
                .build()
                .unwrap(),
        )
    };
    assert!(anonymous("demo").list_with_delimiter(None).await.is_err());
    api(
        &gw,
        reqwest::Method::PATCH,
        "/api/v1/volumes/demo",
        json!({"public_read": true}),
    )
    .await;
    assert!(anonymous("demo").list_with_delimiter(None).await.is_ok());
    let err = anonymous("demo")
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await;
    assert!(err.is_err());
    assert!(
        anonymous("workspace")
            .list_with_delimiter(None)
            .await
            .is_err()
    );

    // S3 requests are counted by operation and result.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"archway_s3_requests_total{op="ListObjectsV2",result="client_error"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"archway_s3_requests_total{op="ListObjectsV2",result="ok"}"#),
        "{metrics}"
    );
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_4_gib_get_keeps_the_gateway_small_and_it_does_not_grow_with_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::start(&data, &[]).await;
    // A sparse 4 GiB file in the demo archive: real bytes to the gateway, no disk used.
    let size: u64 = 4 * 1024 * 1024 * 1024;
    let file = std::fs::File::create(data.join("demo/huge.bin")).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    let demo = admin(&gw, "demo");
    let mut stream = demo
        .get(&Path::from("huge.bin"))
        .await
        .unwrap()
        .into_stream();
    let pid = gw.child.as_ref().unwrap().id();
    let mut total = 0u64;
    let mut half = None;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len() as u64;
        if half.is_none() && total >= size / 2 {
            half = Some(peak_rss_bytes(pid));
        }
    }
    assert_eq!(total, size);
    let (half, peak) = (half.unwrap(), peak_rss_bytes(pid));
    let mib = |b: u64| b / 1024 / 1024;
    eprintln!(
        "gateway peak RSS during a 4 GiB GET: {} MiB after 2 GiB, {} MiB at the end",
        mib(half),
        mib(peak)
    );
    // Bounded by configuration, not by the object: the second 2 GiB add nothing to speak of.
    // (Measured: 167 MiB after 256 MiB, 190 after 1.25 GiB, 198 after 2.25 GiB, 199 after
    // 4 GiB: glibc's allocator arenas, one per thread that allocated, up to 8 per core, each
    // keep some freed blocks until all of them have some.)
    assert!(
        peak - half < 24 * 1024 * 1024,
        "the gateway grew from {} to {} MiB while streaming the second 2 GiB",
        mib(half),
        mib(peak)
    );
    // What configuration bounds stays small: the 64 MiB memory tier, one reader's read-ahead,
    // blocks waiting for the disk tier, and those arenas.
    assert!(
        peak < 240 * 1024 * 1024,
        "gateway peak RSS {} MiB during a 4 GiB GET",
        mib(peak)
    );
}

// Multi-threaded, so the client's connection task answers the server's shutdown PING while
// this test blocks waiting for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_virtual_hosted_style() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and a server certificate for 127.0.0.1 signed by it.
    let (cert, key, ca_cert) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.path().join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=Archway test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndomain = \"s3.archway.test\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let port = common::free_port();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(common::BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = https.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            let e = https
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap_err();
            panic!("the TLS gateway did not come up: {e:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Plain HTTP to the TLS port gets no answer.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err()
    );

    // Virtual-hosted style: the bucket in the Host header (anonymous, on a public volume).
    std::fs::write(data.join("workspaces/workspace/README.txt"), b"hello").unwrap();
    let creds = std::fs::read_to_string(data.join("credentials")).unwrap();
    let token = creds
        .lines()
        .find_map(|l| l.strip_prefix("archway_api_token = "))
        .unwrap()
        .to_string();
    let r = https
        .patch(format!("{base}/api/v1/volumes/workspace"))
        .bearer_auth(&token)
        .json(&json!({"public_read": true}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    let listing = https
        .get(format!("{base}/?list-type=2"))
        .header("host", format!("workspace.s3.archway.test:{port}"))
        .send()
        .await
        .unwrap();
    let status = listing.status();
    let xml = listing.text().await.unwrap();
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<Key>README.txt</Key>"), "{xml}");
    // Path style keeps working.
    let path_style = https
        .get(format!("{base}/workspace?list-type=2"))
        .send()
        .await
        .unwrap();
    assert!(
        path_style
            .text()
            .await
            .unwrap()
            .contains("<Key>README.txt</Key>")
    );

    let stopping = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    // Idle HTTP/2 connections (the client above still holds one) do not hold up shutdown.
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    drop(https);
}

/// An archive served by `rclone serve s3`, which answers every ranged GET with `200 OK` and
/// the range's `Content-Range` (not 206): read through the gateway's block cache — whole,
/// ranged, cold and warm, small and larger than a block — every byte right.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_on_a_server_that_answers_ranges_with_200_reads_right_through_the_cache() {
    let rclone = std::env::var("ARCHWAY_TEST_RCLONE").unwrap_or_else(|_| {
        panic!(
            "ARCHWAY_TEST_RCLONE is not set: this test needs rclone. Run the tests with \
             scripts/test, or `eval \"$(scripts/test-services)\"` first"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("served");
    std::fs::create_dir_all(root.join("arch")).unwrap();
    let big: Vec<u8> = (0..(5u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let small = b"a small object, less than a block".to_vec();
    std::fs::write(root.join("arch/big.bin"), &big).unwrap();
    std::fs::write(root.join("arch/small.txt"), &small).unwrap();
    let port = common::free_port();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _rclone = Killed(
        std::process::Command::new(&rclone)
            .args(["serve", "s3", "--auth-key", "rckey,rcsecret", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rclone serve s3"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rclone did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let config = dir.path().join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.rc]\nurl = \"s3://arch\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             access_key_id = \"rckey\"\nsecret_access_key = \"rcsecret\"\n\n\
             [[volumes]]\nid = \"rclone-arch\"\nbackend = \"rc\"\nkind = \"archive\"\n"
        ),
    )
    .unwrap();
    let gw = Gateway::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let store = admin(&gw, "rclone-arch");
    for pass in ["cold", "warm"] {
        let got = store.get(&Path::from("big.bin")).await.unwrap();
        assert!(got.bytes().await.unwrap()[..] == big[..], "{pass}: whole");
        let got = store.get(&Path::from("small.txt")).await.unwrap();
        assert_eq!(got.bytes().await.unwrap()[..], small[..], "{pass}: small");
        for range in [0..10u64, 1_048_570..1_048_600, 4_000_000..5_200_000] {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let got = store.get_opts(&Path::from("big.bin"), opts).await.unwrap();
            let bytes = got.bytes().await.unwrap();
            assert!(
                bytes[..] == big[range.start as usize..range.end as usize],
                "{pass}: {range:?}"
            );
        }
    }
}

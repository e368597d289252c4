//! The audit trail of the real binary: `[audit] path` set (from the environment, on the
//! embedded default), requests on the S3 and API fronts each leave one JSON line with the
//! documented fields, refusals are counted by reason, and no secret reaches the file.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStoreExt, PutPayload};
use common::{Gateway, free_port, records_until, s3_client};
use serde_json::Value;

fn find(records: &[Value], what: impl Fn(&Value) -> bool) -> Option<&Value> {
    records.iter().find(|r| what(r))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_get_an_upload_a_reduce_and_refusals_each_leave_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trail = dir.path().join("audit/trail.jsonl");
    let gw = Gateway::start_with_env(
        &data,
        free_port(),
        &[],
        &[
            ("ARCHWAY_AUDIT__PATH", trail.to_str().unwrap()),
            ("ARCHWAY_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    )
    .await;
    let (key_id, secret, token) = (
        gw.credential("aws_access_key_id"),
        gw.credential("aws_secret_access_key"),
        gw.credential("archway_api_token"),
    );
    let demo = s3_client(&gw.url, "demo", &key_id, &secret);
    let workspace = s3_client(&gw.url, "workspace", &key_id, &secret);
    let fits = std::fs::read(data.join("demo/images/field1.fits")).unwrap();

    // An S3 GET, an upload, a reduction (from a client a trusted proxy names), and refusals.
    let got = demo
        .get(&Key::from("images/field1.fits"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), fits.len());
    workspace
        .put(
            &Key::from("notes/a.txt"),
            PutPayload::from(vec![b'x'; 1234]),
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let body = r#"{"volume":"demo","key":"images/field1.fits","op":"mean"}"#;
    let reduced = http
        .post(format!("{}/api/v1/reduce", gw.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("x-forwarded-for", "192.0.2.77")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reduced.status(), 200);
    let request_id = reduced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let answer = reduced.bytes().await.unwrap();
    let unsigned = http
        .get(format!("{}/demo/images/counts.fits", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let forged = s3_client(
        &gw.url,
        "demo",
        &key_id,
        "not-the-secret-at-all-0000000000000000000",
    );
    assert!(forged.get(&Key::from("tables/sources.fits")).await.is_err());
    let no_token = http
        .get(format!("{}/api/v1/volumes/demo", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let no_token_id = no_token.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let records = records_until(&trail, |r| {
        r.iter()
            .filter(|r| r["status"].as_u64() >= Some(400))
            .count()
            >= 3
            && r.iter().any(|r| r["op"] == "POST /api/v1/reduce")
            && r.iter().any(|r| r["op"] == "PutObject")
            && r.iter().any(|r| r["op"] == "GetObject")
    })
    .await;
    for r in &records {
        for field in [
            "time",
            "request_id",
            "front",
            "op",
            "principal",
            "auth",
            "source",
            "volume",
            "key",
            "bytes_in",
            "bytes_out",
            "status",
            "duration_ms",
        ] {
            assert!(r.get(field).is_some(), "{field} missing from {r}");
        }
    }

    for r in &records {
        eprintln!("{r}");
    }
    let get = find(&records, |r| r["op"] == "GetObject").unwrap();
    assert_eq!(get["front"], "s3");
    assert_eq!(get["principal"], "admin");
    assert_eq!(get["auth"], "sigv4");
    assert_eq!(get["source"], "127.0.0.1");
    assert_eq!(get["volume"], "demo");
    assert_eq!(get["key"], "images/field1.fits");
    assert_eq!(get["bytes_out"], fits.len() as u64);
    assert_eq!(get["status"], 200);
    assert_eq!(get["request_id"].as_str().unwrap().len(), 16);

    let put = find(&records, |r| r["op"] == "PutObject").unwrap();
    assert_eq!(put["volume"], "workspace");
    assert_eq!(put["key"], "notes/a.txt");
    assert_eq!(put["bytes_in"], 1234);

    let reduce = find(&records, |r| r["op"] == "POST /api/v1/reduce").unwrap();
    assert_eq!(reduce["front"], "api");
    assert_eq!(reduce["principal"], "admin");
    assert_eq!(reduce["auth"], "bearer");
    assert_eq!(reduce["source"], "192.0.2.77", "through the trusted proxy");
    assert_eq!(reduce["volume"], "demo");
    assert_eq!(reduce["key"], "images/field1.fits");
    assert_eq!(reduce["bytes_in"], body.len() as u64);
    assert_eq!(reduce["bytes_out"], answer.len() as u64);
    assert_eq!(reduce["request_id"], request_id.as_str());

    let refused = find(&records, |r| r["status"] == 403 && r["auth"] == "anonymous").unwrap();
    assert_eq!(refused["front"], "s3");
    assert_eq!(refused["op"], "GetObject");
    assert_eq!(refused["key"], "images/counts.fits");
    assert!(refused["principal"].is_null());
    let forged = find(&records, |r| r["status"] == 403 && r["auth"] == "sigv4").unwrap();
    assert!(
        forged["principal"].is_null(),
        "a forged signature named a user: {forged}"
    );
    assert_eq!(forged["volume"], "demo");
    assert_eq!(forged["key"], "tables/sources.fits");
    let unauthorized = find(&records, |r| r["status"] == 401).unwrap();
    assert_eq!(unauthorized["front"], "api");
    assert_eq!(unauthorized["volume"], "demo");
    assert_eq!(unauthorized["auth"], "anonymous");
    assert_eq!(unauthorized["request_id"], no_token_id.as_str());

    // Nothing secret in the trail; /healthz (polled at start) is not in it.
    let text = std::fs::read_to_string(&trail).unwrap();
    for secret in [
        &secret,
        &token,
        &"X-Amz-Signature".to_string(),
        &"Signature=".to_string(),
    ] {
        assert!(!text.contains(secret.as_str()), "the trail holds {secret}");
    }
    assert!(!text.contains("/healthz"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&trail).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Refusals by reason, whether or not a trail is kept.
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "archway_requests_denied_total{front=\"s3\",reason=\"AccessDenied\"} 1",
        "archway_requests_denied_total{front=\"s3\",reason=\"SignatureDoesNotMatch\"} 1",
        "archway_requests_denied_total{front=\"api\",reason=\"Unauthorized\"} 1",
        "archway_audit_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

/// `archway mount --audit-log FILE`: one record per open file at its last close, with the
/// bytes read and written through it, the mount's user (from its API token) and the volume
/// and key; the gateway's own trail meanwhile has the S3 requests the mount made.
#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_file_read_and_one_written_each_leave_a_record_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gateway_trail = dir.path().join("gateway.jsonl");
    let gw = Gateway::start_with_env(
        &data,
        free_port(),
        &[],
        &[("ARCHWAY_AUDIT__PATH", gateway_trail.to_str().unwrap())],
    )
    .await;
    let mount_trail = dir.path().join("mount.jsonl");
    let mp = dir.path().join("mnt");
    let mut m = common::mount::Mount::remote(
        &mp,
        &gw.url,
        &data,
        &["--audit-log", mount_trail.to_str().unwrap()],
    );
    let fits = std::fs::read(data.join("demo/images/field1.fits")).unwrap();
    assert_eq!(
        std::fs::read(mp.join("demo/images/field1.fits")).unwrap(),
        fits
    );
    std::fs::write(mp.join("workspace/from-mount.txt"), vec![b'm'; 4321]).unwrap();
    let denied = std::fs::write(mp.join("demo/not-allowed.txt"), b"x");
    assert!(denied.is_err());

    let records = records_until(&mount_trail, |r| r.len() >= 3).await;
    for r in &records {
        eprintln!("{r}");
    }
    let read = find(&records, |r| r["op"] == "read").unwrap();
    assert_eq!(read["front"], "fuse");
    assert_eq!(read["principal"], "admin");
    assert_eq!(read["auth"], "sigv4");
    assert_eq!(read["volume"], "demo");
    assert_eq!(read["key"], "images/field1.fits");
    assert_eq!(read["bytes_out"], fits.len() as u64);
    assert_eq!(read["bytes_in"], 0);
    assert_eq!(read["status"], 200);
    let write = find(&records, |r| r["op"] == "write").unwrap();
    assert_eq!(write["volume"], "workspace");
    assert_eq!(write["key"], "from-mount.txt");
    assert_eq!(write["bytes_in"], 4321);
    assert_eq!(write["status"], 200);
    let refused = find(&records, |r| r["status"] == 403).unwrap();
    assert_eq!(refused["op"], "write");
    assert_eq!(refused["volume"], "demo");
    assert_eq!(refused["key"], "not-allowed.txt");
    assert!(m.signal("-TERM").success());

    // The gateway saw the mount's S3 requests as the same user.
    let gateway = records_until(&gateway_trail, |r| {
        r.iter()
            .any(|r| r["op"] == "PutObject" && r["key"] == "from-mount.txt")
    })
    .await;
    let put = find(&gateway, |r| r["op"] == "PutObject").unwrap();
    assert_eq!(put["principal"], "admin");
    assert_eq!(put["bytes_in"], 4321);
}

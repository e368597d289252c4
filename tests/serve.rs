//! End to end: the real `archway` binary on loopback, driven over real HTTP and its own CLI.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use common::{Gateway, archway, text};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// On a terminal the first start shows the admin's credentials once; `script` gives the
/// gateway one (a pseudo-terminal), as a person starting it by hand has.
#[test]
fn first_start_on_a_terminal_shows_the_credentials_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let command = format!(
        "exec {} serve --data-dir '{}' --listen 127.0.0.1:{port}",
        common::BIN,
        data.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("listening on") {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = reader.join().unwrap();
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-f", &format!("--listen 127.0.0.1:{port}")])
        .status();
    let _ = child.kill();
    let _ = child.wait();
    let creds = std::fs::read_to_string(data.join("credentials")).unwrap();
    let value = |key: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap()
            .to_string()
    };
    for key in [
        "aws_access_key_id",
        "aws_secret_access_key",
        "archway_api_token",
    ] {
        assert!(
            out.contains(&value(key)),
            "{key} not shown on the terminal:\n{out}"
        );
    }
}

#[tokio::test]
async fn first_start_prints_credentials_once_and_serves_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut gw = Gateway::start(&data, &[]).await;
    let out = gw.stdout();
    let key_id = gw.credential("aws_access_key_id");
    let secret = gw.credential("aws_secret_access_key");
    let token = gw.credential("archway_api_token");
    // Standard output is a file here, as under a container engine or systemd: a log. It names
    // the credentials file and holds no secret.
    assert!(
        !out.contains(&secret) && !out.contains(&token),
        "a secret reached standard output: {out}"
    );
    assert!(
        out.contains(&format!(
            "admin credentials written to {}",
            data.join("credentials").display()
        )),
        "{out}"
    );
    assert!(!key_id.is_empty());
    assert!(out.contains("listening on http://127.0.0.1:"), "{out}");

    // The credentials file: AWS shared-credentials format, profile [archway], mode 0600.
    let creds = std::fs::read_to_string(data.join("credentials")).unwrap();
    assert!(creds.contains("[archway]\naws_access_key_id = "), "{creds}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let r = http
        .get(format!("{}/api/v1/volumes", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");

    let list: Value = http
        .get(format!("{}/api/v1/volumes", gw.url))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["demo", "workspace"]);
    let demo = &list["volumes"][0];
    assert_eq!(demo["kind"], "archive");
    assert_eq!(demo["read_only"], true);
    let ws = &list["volumes"][1];
    assert_eq!(ws["kind"], "workspace");
    assert_eq!(ws["read_only"], false);
    assert_eq!(ws["owner"], "admin");

    // The demo files are real FITS, written by the gateway itself.
    let fits = std::fs::read(data.join("demo/images/field1.fits")).unwrap();
    assert!(fits.starts_with(b"SIMPLE  ="));
    assert_eq!(fits.len() % 2880, 0);

    // Scan records the demo's size.
    let scan = http
        .post(format!("{}/api/v1/volumes/demo/scan", gw.url))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(scan.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "done");
    assert_eq!(last["scan"]["objects"], 4);

    // Metrics count requests by route and result.
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"archway_http_requests_total{op="GET /api/v1/volumes",result="2xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"archway_http_requests_total{op="GET /api/v1/volumes",result="4xx"} 1"#)
    );

    let status = gw.stop();
    assert!(
        status.success(),
        "SIGTERM should stop the gateway cleanly: {status}"
    );

    // A restart keeps everything and prints no secret.
    let mut again = Gateway::start(&data, &[]).await;
    let out = again.stdout();
    assert!(
        !out.contains(&secret) && !out.contains(&token),
        "secrets printed again: {out}"
    );
    let r = http
        .get(format!("{}/api/v1/volumes/demo", again.url))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["last_scan"]["objects"], 4, "the scan survives a restart");
    assert!(again.stop().success());
    // No secret in the logs.
    let logs = std::fs::read_to_string(&again.stderr).unwrap()
        + &std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(!logs.contains(&secret) && !logs.contains(&token));
}

#[tokio::test]
async fn api_statuses_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let admin = gw.credential("archway_api_token");
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", gw.url);
    let send = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = http
            .request(method, url(path))
            .header("authorization", bearer(token));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };

    // A wrong token is refused like a missing one.
    let r = send(
        reqwest::Method::GET,
        "/api/v1/volumes",
        "awt_000000000000_nope",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A non-admin user with a token of their own.
    let r = send(
        reqwest::Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({"name": "bob"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = send(
        reqwest::Method::POST,
        "/api/v1/users/bob/tokens",
        &admin,
        Some(json!({"name": "t"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let bob = t["secret"].as_str().unwrap().to_string();
    // A lifetime beyond any date a client can read (found by fuzzing: its answer could not be
    // written out) is refused, naming the field; nothing is made.
    let r = send(
        reqwest::Method::POST,
        "/api/v1/users/bob/tokens",
        &admin,
        Some(json!({"name": "forever", "ttl": "0000000000000000000000000391635707d"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "ttl", "{body}");
    let tokens: Value = send(
        reqwest::Method::GET,
        "/api/v1/users/bob/tokens",
        &admin,
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(!tokens.to_string().contains("forever"), "{tokens}");

    let new_volume =
        json!({"id": "gaia-dr3", "backend": "demo", "title": "Gaia DR3", "mission": "Gaia"});
    let r = send(
        reqwest::Method::POST,
        "/api/v1/volumes",
        &bob,
        Some(new_volume.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin role"),
        "{e}"
    );
    // Bob sees neither the demo nor the admin's workspace.
    let list: Value = send(reqwest::Method::GET, "/api/v1/volumes", &bob, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["volumes"], json!([]));
    let r = send(reqwest::Method::GET, "/api/v1/volumes/demo", &bob, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Bob manages his own tokens but not others'.
    let r = send(reqwest::Method::GET, "/api/v1/users/bob/tokens", &bob, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        reqwest::Method::GET,
        "/api/v1/users/admin/tokens",
        &bob,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = send(
        reqwest::Method::GET,
        "/api/v1/volumes/no-such-volume",
        &admin,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-volume")
    );

    // Invalid bodies: 400 naming the field.
    for (body, field) in [
        (
            json!({"id": "x-vol", "backend": "demo", "tags": "not-a-list"}),
            "tags",
        ),
        (
            json!({"id": "x-vol", "backend": "demo", "titel": "typo"}),
            "titel",
        ),
        (json!({"id": "Bad_Id", "backend": "demo"}), "id"),
        (json!({"id": "x-vol", "backend": "nowhere"}), "backend"),
        (
            json!({"id": "x-vol", "backend": "demo", "calib_level": 7}),
            "calib_level",
        ),
        (json!({"backend": "demo"}), "id"),
    ] {
        let r = send(
            reqwest::Method::POST,
            "/api/v1/volumes",
            &admin,
            Some(body.clone()),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let e: Value = r.json().await.unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            e["error"]["field"] == field || message.contains(field),
            "{body} -> {e}"
        );
    }
    let r = http
        .post(url("/api/v1/volumes"))
        .header("authorization", bearer(&admin))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A body over the limit is refused with 413.
    let huge = json!({"id": "big", "backend": "demo", "description": "x".repeat(2 * 1024 * 1024)});
    let r = send(reqwest::Method::POST, "/api/v1/volumes", &admin, Some(huge))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Create, conflict, grant, and bob then sees it with read access.
    let r = send(
        reqwest::Method::POST,
        "/api/v1/volumes",
        &admin,
        Some(new_volume.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(
        reqwest::Method::POST,
        "/api/v1/volumes",
        &admin,
        Some(new_volume),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = send(
        reqwest::Method::PUT,
        "/api/v1/volumes/gaia-dr3/grants/user:bob",
        &admin,
        Some(json!({"level": "read"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = send(reqwest::Method::GET, "/api/v1/volumes/gaia-dr3", &bob, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["access"], "read");
    let r = send(
        reqwest::Method::PATCH,
        "/api/v1/volumes/gaia-dr3",
        &bob,
        Some(json!({"title": "x"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(reqwest::Method::GET, "/api/v1/nothing-here", &admin, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let spec: Value = http
        .get(url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
}

/// Runs the CLI against the gateway and returns its JSON output.
fn cli_json(gw: &Gateway, token: &str, args: &[&str]) -> Value {
    let mut all = vec!["catalog", "--gateway", &gw.url, "--token", token, "--json"];
    all.extend_from_slice(args);
    let out = archway(&all);
    assert!(
        out.status.success(),
        "archway {args:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test]
async fn cli_and_http_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::start(&data, &[]).await;
    let token = gw.credential("archway_api_token");
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{}{path}", gw.url))
            .header("authorization", bearer(&token))
            .send()
    };

    // Create through the CLI, read through HTTP.
    let created = cli_json(
        &gw,
        &token,
        &[
            "volume",
            "add",
            "xmm-pps",
            "--backend",
            "demo",
            "--prefix",
            "images",
            "--title",
            "XMM-Newton pipeline products",
            "--mission",
            "XMM-Newton",
            "--instrument",
            "EPIC",
            "--tag",
            "x-ray",
            "--tag",
            "catalogue",
            "--license",
            "CC-BY-4.0",
            "--calib-level",
            "2",
        ],
    );
    let via_http: Value = get("/api/v1/volumes/xmm-pps".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created, via_http);
    assert_eq!(via_http["tags"], json!(["x-ray", "catalogue"]));

    // Update through HTTP, read through the CLI.
    let r = http
        .patch(format!("{}/api/v1/volumes/xmm-pps", gw.url))
        .header("authorization", bearer(&token))
        .json(&json!({"description": "Serendipitous X-ray sources", "instrument": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown = cli_json(&gw, &token, &["volume", "show", "xmm-pps"]);
    assert_eq!(shown["description"], "Serendipitous X-ray sources");
    assert_eq!(shown["instrument"], Value::Null);

    // Update through the CLI.
    let updated = cli_json(
        &gw,
        &token,
        &["volume", "update", "xmm-pps", "--title", "XMM PPS"],
    );
    assert_eq!(updated["title"], "XMM PPS");
    assert!(updated["updated_at"].as_str() > shown["updated_at"].as_str());

    // Search agrees.
    let cli = cli_json(&gw, &token, &["volume", "search", "serendipitous x-ray"]);
    let web: Value = get("/api/v1/volumes?q=serendipitous%20x-ray".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cli, web);
    assert_eq!(web["volumes"].as_array().unwrap().len(), 1);
    assert_eq!(web["volumes"][0]["id"], "xmm-pps");
    let by_mission = cli_json(
        &gw,
        &token,
        &["volume", "search", "", "--mission", "xmm-newton"],
    );
    assert_eq!(by_mission["volumes"][0]["id"], "xmm-pps");

    // The local data directory (in-process API) sees the same catalogue.
    let data_arg = data.to_str().unwrap();
    let out = archway(&[
        "catalog",
        "--data-dir",
        data_arg,
        "--json",
        "volume",
        "show",
        "xmm-pps",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["title"], "XMM PPS");

    // Scan through the CLI.
    let scanned = cli_json(&gw, &token, &["volume", "scan", "xmm-pps"]);
    assert_eq!(scanned["scan"]["objects"], 2, "the two demo images");

    // Users, grants and groups through the CLI.
    cli_json(&gw, &token, &["user", "add", "carol"]);
    cli_json(&gw, &token, &["group", "add", "xmm-team"]);
    cli_json(&gw, &token, &["group", "add-member", "xmm-team", "carol"]);
    cli_json(
        &gw,
        &token,
        &["grant", "add", "group:xmm-team", "xmm-pps", "write"],
    );
    let grants: Value = get("/api/v1/volumes/xmm-pps/grants".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        grants["grants"][0]["subject"],
        json!({"kind": "group", "name": "xmm-team"})
    );
    assert_eq!(grants["grants"][0]["level"], "write");
    let key = cli_json(&gw, &token, &["user", "key", "create", "carol"]);
    assert_eq!(key["secret_access_key"].as_str().unwrap().len(), 40);

    // Remove through the CLI; HTTP then says 404.
    let out = archway(&[
        "catalog",
        "--gateway",
        &gw.url,
        "--token",
        &token,
        "volume",
        "remove",
        "xmm-pps",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        get("/api/v1/volumes/xmm-pps".into())
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // CLI errors carry the gateway's message and exit non-zero.
    let out = archway(&[
        "catalog",
        "--gateway",
        &gw.url,
        "--token",
        &token,
        "volume",
        "show",
        "xmm-pps",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("volume `xmm-pps` does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = archway(&["catalog", "--gateway", &gw.url, "volume", "list"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}

#[test]
fn config_check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:9000\"\n\n[backends.archive]\nurll = \"file:///srv\"\nurl = \"htp:/bad url\"\n",
    )
    .unwrap();
    let out = archway(&["config", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("bad.toml:5: backends.archive.urll: unknown key"),
        "{err}"
    );
    assert!(err.contains("bad.toml:6: backends.archive.url:"), "{err}");

    let example = archway(&["config", "example"]);
    assert!(example.status.success());
    let good = dir.path().join("example.toml");
    std::fs::write(&good, &example.stdout).unwrap();
    let out = archway(&["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // serve refuses a bad file the same way, before touching anything.
    let out = archway(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("backends.archive.urll"));
    assert!(!dir.path().join("d").exists());
}

#[tokio::test]
async fn a_config_file_declares_backends_and_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(archive.join("gaia/dr3")).unwrap();
    std::fs::write(
        archive.join("gaia/dr3/part-0.csv"),
        b"source_id,ra,dec\n1,2,3\n",
    )
    .unwrap();
    let file = dir.path().join("archway.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[backends.esa]
url = "file://{}"

[[volumes]]
id = "gaia-dr3"
title = "Gaia DR3"
mission = "Gaia"
backend = "esa"
prefix = "gaia/dr3"
public_read = true
"#,
            archive.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut gw = Gateway::start(&data, &["--config", file.to_str().unwrap()]).await;
    let token = gw.credential("archway_api_token");
    let list: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/volumes", gw.url))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["gaia-dr3", "workspace"],
        "no demo volume with a config file"
    );
    let scanned = cli_json(&gw, &token, &["volume", "scan", "gaia-dr3"]);
    assert_eq!(scanned["scan"]["objects"], 1);
    assert!(gw.stop().success());
}

/// Sends `data` on `stream` and reads one answer: its head, lower-cased, and its body (by
/// Content-Length; none for `100 Continue`).
fn exchange(stream: &mut std::net::TcpStream, data: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    stream.write_all(data.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => got.push(byte[0]),
        }
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

/// A client that sends `Expect: 100-continue` and gets a final answer instead of `100
/// Continue` sends no body and may reuse the connection (botocore does, after a 412 or 403):
/// the gateway must not read its next request as that body. It closes the connection.
#[tokio::test]
async fn an_expect_continue_body_never_asked_for_closes_the_connection() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let token = gw.credential("archway_api_token");
    let blocking = tokio::task::spawn_blocking(move || {
        let timeout = Some(std::time::Duration::from_secs(10));
        // S3: an anonymous PUT to a private volume is refused before its body is read.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(timeout).unwrap();
        let (head, _) = exchange(
            &mut s,
            &format!(
                "PUT /workspace/expect/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3\r\n\
                 Expect: 100-continue\r\n\r\n"
            ),
        );
        assert!(head.starts_with("http/1.1 403"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        // What the client sends next on that connection is never read as a request (its
        // first bytes taken for the body): the gateway closed the connection.
        let _ = s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection stayed open: {e}"),
        }
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

        // API: a body that is asked for gets `100 Continue`, and the connection stays open.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(timeout).unwrap();
        let (head, _) = exchange(
            &mut s,
            &format!(
                "POST /api/v1/volumes HTTP/1.1\r\nHost: {addr}\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            ),
        );
        assert!(head.starts_with("http/1.1 100 continue"), "{head}");
        let (head, _) = exchange(&mut s, "{}");
        assert!(head.starts_with("http/1.1 4"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let (head, body) = exchange(
            &mut s,
            &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        assert!(
            head.starts_with("http/1.1 200"),
            "{head} {}",
            String::from_utf8_lossy(&body)
        );
    });
    blocking.await.unwrap();
}

/// A client that sends its body without waiting (no `Expect`) while the gateway refuses the
/// request gets the refusal, not a broken connection: a body of up to 8 MiB is read to its end
/// before the answer (rclone's PUT to a read-only volume once saw `broken pipe`), and the
/// connection serves the next request; a larger body gets `Connection: close`.
#[tokio::test]
async fn a_refused_upload_is_answered_after_its_body_not_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let blocking = tokio::task::spawn_blocking(move || {
        let timeout = Some(std::time::Duration::from_secs(10));
        let body = vec![b'x'; 2 * 1024 * 1024];
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(timeout).unwrap();
        s.write_all(
            format!(
                "PUT /demo/refused.bin HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        // The refusal is decided before the body comes; the body still arrives whole.
        std::thread::sleep(std::time::Duration::from_millis(300));
        for chunk in body.chunks(64 * 1024) {
            s.write_all(chunk)
                .expect("the gateway stopped reading the body");
        }
        let (head, answer) = exchange(&mut s, "");
        assert!(head.starts_with("http/1.1 403"), "{head}");
        assert!(String::from_utf8_lossy(&answer).contains("AccessDenied"));
        assert!(!head.contains("connection: close"), "{head}");
        let (head, _) = exchange(
            &mut s,
            &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        assert!(head.starts_with("http/1.1 200"), "{head}");

        // Beyond 8 MiB the gateway does not read on: it answers and closes.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(timeout).unwrap();
        let (head, _) = exchange(
            &mut s,
            &format!(
                "PUT /demo/huge.bin HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
                64u64 << 20
            ),
        );
        assert!(head.starts_with("http/1.1 403"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    blocking.await.unwrap();
}

/// Least privilege, checked at start: running as root, a data directory other users may enter
/// and a secret file others may read are each named in a warning; files kept private are not.
#[tokio::test]
async fn serve_warns_at_start_about_root_and_loose_modes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut gw = Gateway::start(&data, &[]).await;
    assert!(gw.stop().success());
    let first = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(!first.contains("has mode"), "{first}");

    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    chmod(&data, 0o755);
    chmod(&data.join("secret.key"), 0o644);
    let mut gw = Gateway::start(&data, &[]).await;
    assert!(gw.stop().success());
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    assert_eq!(log.contains("archway serve runs as root"), root, "{log}");
    assert!(
        log.contains(&format!(
            "the data directory {} has mode 0755: other users may enter it",
            data.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "the catalogue secret key {} has mode 0644: others may read or change it",
            data.join("secret.key").display()
        )),
        "{log}"
    );
    assert!(!log.contains("the admin credentials"), "{log}");
}

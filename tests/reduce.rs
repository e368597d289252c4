//! End to end: `POST /api/v1/reduce` and `archway reduce` on the real binary, against numpy's
//! answers for a stored fixture, with the API's refusals.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Gateway, free_port, text};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/compute/tests/fixtures");

fn expected(file: &str) -> Value {
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap(),
    )
    .unwrap();
    all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == file && c["hdu"].is_null())
        .unwrap()["expected"]
        .clone()
}

fn close(got: &Value, want: &Value) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!((g - w).abs() <= w.abs() * 1e-12, "{g} vs numpy {w}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reductions_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::start(&data, &[]).await;
    // A fixture with NaNs, placed in the demo archive.
    std::fs::copy(
        format!("{FIXTURES}/f32_nan.fits"),
        data.join("demo/images/f32_nan.fits"),
    )
    .unwrap();
    let want = expected("f32_nan.fits");
    let token = gw.credential("archway_api_token");

    // The CLI against the gateway: one JSON object with the agreed fields.
    let out = Command::new(BIN)
        .args(["reduce", "demo/images/f32_nan.fits", "--op", "std"])
        .args(["--gateway", &gw.url, "--token", &token])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "op",
        "value",
        "count",
        "engine",
        "bytes_read",
        "bytes_returned",
    ] {
        assert!(r.get(field).is_some(), "no {field} in {r}");
    }
    assert_eq!(r["op"], "std");
    assert_eq!(r["engine"], "cpu");
    close(&r["value"], &want["std"]);
    assert_eq!(r["count"], want["count"]);
    assert_eq!(r["missing"], want["missing"]);

    // The same in local mode, straight from the data directory.
    let out = Command::new(BIN)
        .args([
            "reduce",
            "demo/images/f32_nan.fits",
            "--op",
            "histogram",
            "--bins",
            "7",
        ])
        .args(["--range", "950,1050", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap(),
    )
    .unwrap();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "f32_nan.fits" && c["bins"] == 7)
        .unwrap();
    assert_eq!(
        h["value"]["counts"],
        case["expected"]["histogram"]["counts"]
    );

    // An array answer: the binned image as a FITS file, a JSON summary on stdout.
    let out_file = dir.path().join("binned.fits");
    let out = Command::new(BIN)
        .args([
            "reduce",
            "demo/images/f32_nan.fits",
            "--op",
            "bin",
            "--factor",
            "4,3",
        ])
        .args(["--gateway", &gw.url, "--token", &token, "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["value"]["shape"], json!([16, 16]));
    let fits = std::fs::read(&out_file).unwrap();
    assert_eq!(
        summary["bytes_returned"].as_u64().unwrap(),
        fits.len() as u64
    );
    assert!(fits.starts_with(b"SIMPLE  =                    T"));
    assert_eq!(fits.len(), 2880 + (16 * 16 * 8usize).div_ceil(2880) * 2880);
    assert!(summary["bytes_read"].as_u64().unwrap() > 0);

    // The API: the answer states its own size; refusals name the problem.
    let client = reqwest::Client::new();
    let post = |body: Value, token: Option<String>| {
        let mut req = client.post(format!("{}/api/v1/reduce", gw.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let body = json!({"volume": "demo", "key": "images/f32_nan.fits", "op": "mean", "hdu": 0});
    let resp = post(body.clone(), Some(token.clone())).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(r["bytes_returned"].as_u64().unwrap(), bytes.len() as u64);
    close(&r["value"], &want["mean"]);
    assert!(r["bytes_read"].as_u64().unwrap() <= 17280);

    assert_eq!(post(body.clone(), None).await.unwrap().status(), 401);
    let status_and_message = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        (
            status,
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (s, m) = status_and_message(
        post(
            json!({"volume": "demo", "key": "x.fits", "op": "mean", "colour": 1}),
            Some(token.clone()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(m.contains("colour"), "{m}");
    let (s, m) = status_and_message(
        post(
            json!({"volume": "demo", "key": "README.txt", "op": "sum"}),
            Some(token.clone()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        m.contains("README.txt") && m.contains("not a FITS file"),
        "{m}"
    );
    let (s, m) = status_and_message(
        post(
            json!({"volume": "demo", "key": "nope.fits", "op": "sum"}),
            Some(token.clone()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert!(
        m.contains("nope.fits") && !m.contains(data.to_str().unwrap()),
        "{m}"
    );
    let (s, _) = status_and_message(
        post(
            json!({"volume": "demo", "key": "images/f32_nan.fits", "op": "sum", "engine": "cuda"}),
            Some(token.clone()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 409);

    // A user without access to the volume is refused, as for a read.
    let cli = |args: &[&str]| gw.catalog(args);
    cli(&["user", "add", "eve"]);
    let eve = cli(&["user", "token", "create", "eve"])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = post(body, Some(eve)).await.unwrap();
    assert!(
        [403, 404].contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );
}

/// A float32 image FITS file of `rows × cols` values `f(i)`.
fn fits_image(rows: usize, cols: usize, f: impl Fn(usize) -> f32) -> Vec<u8> {
    let mut out = archway_compute::header::write(&[
        "SIMPLE  =                    T".to_string(),
        "BITPIX  =                  -32".to_string(),
        "NAXIS   =                    2".to_string(),
        format!("NAXIS1  = {cols:>20}"),
        format!("NAXIS2  = {rows:>20}"),
    ]);
    for i in 0..rows * cols {
        out.extend_from_slice(&f(i).to_be_bytes());
    }
    out.resize(out.len().div_ceil(2880) * 2880, 0);
    out
}

async fn s3_bytes_out(gw: &Gateway) -> u64 {
    let body = gw.metrics().await;
    body.lines()
        .find(|l| l.starts_with("archway_s3_bytes_total{direction=\"out\"}"))
        .map_or(0, |l| {
            l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reduction_on_a_peer_volume_runs_at_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    // Site A holds the data.
    let a = Gateway::start(&dir.path().join("a"), &[]).await;
    let image = fits_image(2048, 1024, |i| (i % 1000) as f32 * 0.5);
    std::fs::write(dir.path().join("a/demo/big.fits"), &image).unwrap();
    // Site B has a volume over A's demo volume, with A's credentials.
    let config = dir.path().join("b.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.site-a]\nurl = \"archway+{url}\"\naccess_key_id = \"{key}\"\n\
             secret_access_key = \"{secret}\"\ntoken = \"{token}\"\n\n\
             [backends.mute]\nurl = \"archway+{url}\"\naccess_key_id = \"{key}\"\n\
             secret_access_key = \"{secret}\"\n\n\
             [[volumes]]\nid = \"a-demo\"\nbackend = \"site-a\"\nprefix = \"demo\"\n\n\
             [[volumes]]\nid = \"a-mute\"\nbackend = \"mute\"\nprefix = \"demo\"\n",
            url = a.url,
            key = a.credential("aws_access_key_id"),
            secret = a.credential("aws_secret_access_key"),
            token = a.credential("archway_api_token"),
        ),
    )
    .unwrap();
    let b = Gateway::start(
        &dir.path().join("b"),
        &["--config", config.to_str().unwrap()],
    )
    .await;

    let client = reqwest::Client::new();
    let reduce = |gw: &Gateway, volume: &str| {
        client
            .post(format!("{}/api/v1/reduce", gw.url))
            .bearer_auth(gw.credential("archway_api_token"))
            .json(&json!({"volume": volume, "key": "big.fits", "op": "stats"}))
            .send()
    };
    let direct: Value = reduce(&a, "demo").await.unwrap().json().await.unwrap();
    let out_before = s3_bytes_out(&a).await;
    let resp = reduce(&b, "a-demo").await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.bytes().await.unwrap();
    let forwarded: Value = serde_json::from_slice(&answer).unwrap();
    let pulled = s3_bytes_out(&a).await - out_before;
    assert_eq!(forwarded["site"], a.url.as_str(), "{forwarded}");
    assert_eq!(forwarded["value"], direct["value"]);
    assert_eq!(
        forwarded["bytes_read"], direct["bytes_read"],
        "read at A, from A's source"
    );
    assert_eq!(
        forwarded["bytes_returned"].as_u64().unwrap(),
        answer.len() as u64
    );
    // Between the sites: A's answer (about the size of B's) and no object bytes over S3.
    let between = pulled + answer.len() as u64;
    eprintln!(
        "peer reduce of a {} byte file: {pulled} bytes over S3, {} bytes of answer ({:.5} of the file)",
        image.len(),
        answer.len(),
        between as f64 / image.len() as f64
    );
    assert_eq!(pulled, 0, "no object bytes pulled from the peer");
    assert!(between * 1000 < image.len() as u64);

    // An array answer comes from the peer too, streamed through with its summary headers.
    let out_before = s3_bytes_out(&a).await;
    let resp = client
        .post(format!("{}/api/v1/reduce", b.url))
        .bearer_auth(b.credential("archway_api_token"))
        .json(
            &json!({"volume": "a-demo", "key": "big.fits", "op": "bin", "factor": [64, 64],
                      "output": "npy"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-archway-site"], a.url.as_str());
    assert_eq!(resp.headers()["x-archway-shape"], "16,32");
    let npy = resp.bytes().await.unwrap();
    assert!(npy.starts_with(b"\x93NUMPY"));
    assert_eq!(s3_bytes_out(&a).await, out_before, "the binning ran at A");

    // A batch over the peer volume: each object reduced at the peer.
    let resp = client
        .post(format!("{}/api/v1/reduce/batch", b.url))
        .bearer_auth(b.credential("archway_api_token"))
        .json(&json!({"volume": "a-demo", "prefix": "", "glob": "big.fits", "op": "max"}))
        .send()
        .await
        .unwrap();
    let lines: Vec<Value> = resp
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["event"], "result");
    assert_eq!(lines[0]["site"], a.url.as_str());
    assert_eq!(lines[0]["value"], direct["value"]["max"]);
    assert_eq!(lines[1]["event"], "done");
    assert_eq!(s3_bytes_out(&a).await, out_before, "the batch ran at A");

    // A peer without a token to ask: refused, not pulled.
    let out_before = s3_bytes_out(&a).await;
    let resp = reduce(&b, "a-mute").await.unwrap();
    assert_eq!(resp.status(), 501);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("token"),
        "{v}"
    );
    assert_eq!(s3_bytes_out(&a).await, out_before);
    // The peer's own refusals come back as such.
    let resp = client
        .post(format!("{}/api/v1/reduce", b.url))
        .bearer_auth(b.credential("archway_api_token"))
        .json(&json!({"volume": "a-demo", "key": "README.txt", "op": "sum"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

/// A `[backends.NAME]` over the gateway `gw` (its admin's keys and token, or no token) and a
/// volume `id` over its volume `remote`.
fn peer_volume(name: &str, gw: &Gateway, token: bool, id: &str, remote: &str) -> String {
    let token = if token {
        format!("token = \"{}\"\n", gw.credential("archway_api_token"))
    } else {
        String::new()
    };
    format!(
        "[backends.{name}]\nurl = \"archway+{url}\"\naccess_key_id = \"{key}\"\n\
         secret_access_key = \"{secret}\"\n{token}\n\
         [[volumes]]\nid = \"{id}\"\nbackend = \"{name}\"\nprefix = \"{remote}\"\n\n",
        url = gw.url,
        key = gw.credential("aws_access_key_id"),
        secret = gw.credential("aws_secret_access_key"),
    )
}

/// Starts a gateway in `dir/name` with `config` as its configuration file.
async fn gateway_with(dir: &Path, name: &str, port: u16, config: &str) -> Gateway {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config).unwrap();
    Gateway::start_on(&dir.join(name), port, &["--config", file.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reduction_chases_the_data_through_every_hop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A holds the data; B has `remote-demo` over A's demo; C has `far-demo` over B's
    // `remote-demo`; D has `farthest-demo` over C's `far-demo`. B allows two hops before it.
    let a_port = free_port();
    let mut a = Gateway::start_on(&d.join("a"), a_port, &[]).await;
    let image = fits_image(2048, 1024, |i| (i % 1000) as f32 * 0.5);
    std::fs::write(d.join("a/demo/big.fits"), &image).unwrap();
    let b = gateway_with(
        d,
        "b",
        free_port(),
        &format!(
            "[server]\npeer_max_hops = 2\n\n{}{}{}",
            peer_volume("site-a", &a, true, "remote-demo", "demo"),
            peer_volume("site-a-mute", &a, false, "mute-demo", "demo"),
            peer_volume("site-a-loop", &a, true, "loop-b", "loop-a"),
        ),
    )
    .await;
    let c = gateway_with(
        d,
        "c",
        free_port(),
        &format!(
            "{}{}",
            peer_volume("site-b", &b, true, "far-demo", "remote-demo"),
            peer_volume("site-b-mute", &b, true, "far-mute", "mute-demo"),
        ),
    )
    .await;
    let dd = gateway_with(
        d,
        "d",
        free_port(),
        &peer_volume("site-c", &c, true, "farthest-demo", "far-demo"),
    )
    .await;

    let client = reqwest::Client::new();
    let reduce = |gw: &Gateway, body: Value| {
        let (client, url, token) = (
            client.clone(),
            gw.url.clone(),
            gw.credential("archway_api_token"),
        );
        async move {
            let resp = client
                .post(format!("{url}/api/v1/reduce"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let stats = |volume: &str| json!({"volume": volume, "key": "big.fits", "op": "stats"});

    // Asked at A directly, then at C: C → B → A, computed at A, nothing pulled on any link.
    let t = std::time::Instant::now();
    let (status, direct) = reduce(&a, stats("demo")).await;
    let direct_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "{direct}");
    let before = (s3_bytes_out(&a).await, s3_bytes_out(&b).await);
    let t = std::time::Instant::now();
    let (status, chained) = reduce(&c, stats("far-demo")).await;
    let chained_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "{chained}");
    assert_eq!(chained["site"], a.url.as_str(), "computed at A: {chained}");
    assert_eq!(chained["value"], direct["value"]);
    assert_eq!(chained["bytes_read"], direct["bytes_read"]);
    assert_eq!(
        (s3_bytes_out(&a).await, s3_bytes_out(&b).await),
        before,
        "no object bytes left A or B over S3"
    );
    let sites = chained["sites"].as_array().unwrap();
    let urls: Vec<&str> = sites.iter().map(|h| h["url"].as_str().unwrap()).collect();
    assert_eq!(urls, [b.url.as_str(), a.url.as_str()], "{chained}");
    for hop in sites {
        let moved = hop["bytes_in"].as_u64().unwrap() + hop["bytes_out"].as_u64().unwrap();
        assert!(moved > 0 && moved * 100 < image.len() as u64, "{hop}");
    }
    eprintln!(
        "C → B → A: {:.0} ms (A directly: {direct_ms:.0} ms), file {} bytes, links {}",
        chained_ms,
        image.len(),
        serde_json::to_string(sites).unwrap()
    );

    // A batch and an array answer chase the data too.
    let resp = client
        .post(format!("{}/api/v1/reduce/batch", c.url))
        .bearer_auth(c.credential("archway_api_token"))
        .json(&json!({"volume": "far-demo", "glob": "big.fits", "op": "max"}))
        .send()
        .await
        .unwrap();
    let first: Value =
        serde_json::from_str(resp.text().await.unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["site"], a.url.as_str(), "{first}");
    assert_eq!(first["value"], direct["value"]["max"]);
    let resp = client
        .post(format!("{}/api/v1/reduce", c.url))
        .bearer_auth(c.credential("archway_api_token"))
        .json(
            &json!({"volume": "far-demo", "key": "big.fits", "op": "bin", "factor": [64, 64],
                      "output": "npy"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-archway-site"], a.url.as_str());
    assert_eq!(
        (s3_bytes_out(&a).await, s3_bytes_out(&b).await),
        before,
        "the batch and the binning ran at A"
    );

    // D → C → B: B has seen two hops already and refuses, naming its limit.
    let (status, err) = reduce(&dd, stats("farthest-demo")).await;
    assert_eq!(status, 508, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("peer_max_hops"), "{err}");

    // A hop that cannot compute (B has no token for A) is named; with allow_pull, B reads
    // the data and reduces it — the last site that can — and the pulled link says so.
    let (status, err) = reduce(&c, stats("far-mute")).await;
    assert_eq!(status, 501, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&b.url) && message.contains("token"),
        "{err}"
    );
    let mut pull = stats("far-mute");
    pull["allow_pull"] = json!(true);
    let (status, pulled) = reduce(&c, pull).await;
    assert_eq!(status, 200, "{pulled}");
    assert_eq!(pulled["value"], direct["value"]);
    assert_eq!(pulled["site"], b.url.as_str(), "{pulled}");
    assert_eq!(pulled["sites"][1]["pulled"], true, "{pulled}");
    assert_eq!(pulled["sites"][1]["url"], a.url.as_str(), "{pulled}");

    // A loop: B's `loop-b` is over A's `loop-a`, which A (restarted with it) puts over B's
    // `loop-b`. Asked at A: A → B → A, refused at A as a loop.
    a.stop();
    let a = gateway_with(
        d,
        "a",
        a_port,
        &peer_volume("site-b", &b, true, "loop-a", "loop-b"),
    )
    .await;
    let (status, err) = reduce(
        &a,
        json!({"volume": "loop-a", "key": "x.fits", "op": "sum"}),
    )
    .await;
    assert_eq!(status, 508, "{err}");
    assert_eq!(err["error"]["code"], "PeerLoop", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("loop"),
        "{err}"
    );

    // A peer down mid-chain: the error names it.
    drop(a);
    let (status, err) = reduce(&c, stats("far-demo")).await;
    assert_eq!(status, 502, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{a_port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_reduces_every_matching_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::start(&data, &[]).await;
    let batch = data.join("demo/batch");
    std::fs::create_dir_all(batch.join("deeper")).unwrap();
    for f in [
        "i16.fits",
        "u8.fits",
        "i16_rice.fits.fz",
        "f32_rice_dither1.fits.fz",
    ] {
        std::fs::copy(format!("{FIXTURES}/{f}"), batch.join(f)).unwrap();
    }
    std::fs::copy(
        format!("{FIXTURES}/f64.fits"),
        batch.join("deeper/f64.fits"),
    )
    .unwrap();
    std::fs::write(batch.join("broken.fits"), b"not fits at all").unwrap();
    std::fs::write(batch.join("notes.txt"), b"skip me").unwrap();
    let token = gw.credential("archway_api_token");

    // The CLI: a JSON table, one row per object, the broken one an error row.
    let out = Command::new(BIN)
        .args(["reduce", "demo/batch/", "--glob", "*.fits*", "--op", "mean"])
        .args(["--gateway", &gw.url, "--token", &token])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "batch/broken.fits",
            "batch/f32_rice_dither1.fits.fz",
            "batch/i16.fits",
            "batch/i16_rice.fits.fz",
            "batch/u8.fits"
        ]
    );
    for r in &rows {
        let file = r["key"].as_str().unwrap().trim_start_matches("batch/");
        if file == "broken.fits" {
            assert_eq!(r["event"], "error");
            assert!(
                r["message"].as_str().unwrap().contains("not a FITS file"),
                "{r}"
            );
        } else {
            assert_eq!(r["event"], "result", "{r}");
            close(&r["value"], &expected(file)["mean"]);
        }
    }
    assert!(
        text(&out.stderr).contains("5 objects reduced (1 failed)"),
        "{}",
        text(&out.stderr)
    );

    // `**` reaches into folders; CSV from the API.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/reduce/batch", gw.url))
        .bearer_auth(&token)
        .json(
            &json!({"volume": "demo", "prefix": "batch/", "glob": "**/f64.fits",
                      "op": "std", "format": "csv"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "key,op,value,count,missing,hdu,engine,bytes_read,error"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with("batch/deeper/f64.fits,std,"), "{csv}");
    let std: f64 = lines[1].split(',').nth(2).unwrap().parse().unwrap();
    close(&json!(std), &expected("f64.fits")["std"]);
}

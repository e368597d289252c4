//! End to end: `POST /api/v1/reduce` and `archway reduce` on the real binary, against numpy's
//! answers for a stored fixture, with the API's refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{BIN, Gateway, text};
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
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["catalog", "--gateway", &gw.url, "--token", &token, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()
    };
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

//! Hostile clients against a real gateway: credential guessing is slowed per source, and the
//! right credentials from the same source wait too, while anonymous requests do not.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::time::{Duration, Instant};

use archway_dataplane::object_store::ObjectStoreExt;
use archway_dataplane::object_store::path::Path as Key;
use common::{Gateway, free_port, s3_client};

/// The value of one metric line (`name{labels}`), 0 when absent.
fn metric(text: &str, line: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_are_slowed_per_source_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_env(
        &dir.path().join("data"),
        free_port(),
        &[],
        &[
            ("ARCHWAY_SERVER__AUTH_FAILURE_BURST", "5"),
            ("ARCHWAY_SERVER__AUTH_FAILURES_PER_MINUTE", "60"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let whoami = format!("{}/api/v1/whoami", gw.url);
    let token = gw.credential("archway_api_token");

    // Five guesses at a token: each is refused as such.
    for n in 0..5 {
        let r = http
            .get(&whoami)
            .bearer_auth(format!("awt_000000000000_guess{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {n}");
    }
    // The sixth request with credentials waits, even with the right token: its credentials
    // are not even checked.
    let r = http.get(&whoami).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyFailedAuthentications");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many failed authentications"),
        "{body}"
    );

    // The S3 front holds off signed requests from the same source: 503 SlowDown, which SDKs
    // retry with back-off.
    let s3 = s3_client(
        &gw.url,
        "demo",
        &gw.credential("aws_access_key_id"),
        &gw.credential("aws_secret_access_key"),
    );
    let r = http
        .get(format!("{}/demo/images/field1.fits", gw.url))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261207/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let xml = r.text().await.unwrap();
    assert!(xml.contains("<Code>SlowDown</Code>"), "{xml}");

    // Anonymous requests are not held up.
    let r = http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/demo/images/field1.fits", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "an anonymous read of a private volume is refused as such"
    );

    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "archway_auth_throttled_total{front=\"api\"}"),
        1
    );
    assert_eq!(
        metric(&metrics, "archway_auth_throttled_total{front=\"s3\"}"),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "archway_requests_denied_total{front=\"api\",reason=\"Unauthorized\"}"
        ),
        5
    );

    // One allowance a second refills: the right credentials work again, and a success does
    // not spend the allowance.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.get(&whoami).bearer_auth(&token).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(Instant::now() < deadline, "not refilled within 5 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..10 {
        let r = http.get(&whoami).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    s3.head(&Key::from("images/field1.fits")).await.unwrap();
    // An authenticated caller refused access is no failed authentication.
    gw.catalog(&["user", "add", "eve"]);
    let key = gw.catalog(&["user", "key", "create", "eve"]);
    let eve = s3_client(
        &gw.url,
        "demo",
        key["access_key_id"].as_str().unwrap(),
        key["secret_access_key"].as_str().unwrap(),
    );
    for _ in 0..10 {
        let err = eve
            .head(&Key::from("images/field1.fits"))
            .await
            .unwrap_err();
        let words = format!("{err:?}");
        assert!(
            words.contains("403") && !words.contains("SlowDown"),
            "{words}"
        );
    }
    let r = http.get(&whoami).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A TCP connection that sent `head` and nothing more.
async fn partial(url: &str, head: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_client_is_cut_off_and_connections_are_bounded() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();

    // A request head that never ends is cut off after server.header_read_timeout.
    let gw = Gateway::start_with_env(
        &dir.path().join("a"),
        free_port(),
        &[],
        &[("ARCHWAY_SERVER__HEADER_READ_TIMEOUT", "1s")],
    )
    .await;
    let mut slow = partial(&gw.url, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after 10 s with a 1 s header read time-out"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    let r = reqwest::get(format!("{}/healthz", gw.url)).await.unwrap();
    assert_eq!(r.status(), 200);

    // At server.max_connections, a new connection waits until one closes.
    let gw = Gateway::start_with_env(
        &dir.path().join("b"),
        free_port(),
        &[],
        &[("ARCHWAY_SERVER__MAX_CONNECTIONS", "4")],
    )
    .await;
    // The start-up's health checks may still hold a slot briefly: let them go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(partial(&gw.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n").await);
    }
    let url = format!("{}/healthz", gw.url);
    let fifth = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth connection was served while four held every slot"
    );
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(10), fifth)
        .await
        .expect("served once the slots were free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

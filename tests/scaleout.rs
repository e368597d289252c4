//! Scale-out on loopback with the real parts: three `archway serve` replicas on one PostgreSQL
//! catalogue with one secret key, behind HAProxy (Debian's package) with `balance uri` and
//! `hash-type consistent`, so each replica caches its share, and health checks on `/healthz`.
//!
//! PostgreSQL comes from `ARCHWAY_TEST_POSTGRES_URL` (an account that may create databases)
//! and HAProxy from PATH; `scripts/test-services` provides both.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use common::scale::{Haproxy, replicas, s3, s3_bucket};
use common::{Gateway, text};

/// How long a replica may take to honour a change made through another: the documented
/// bound is `catalog.refresh_interval` (1 s here) plus one reload, and PostgreSQL's
/// notifications usually bring it at once. The margin is for a loaded CI machine.
const BOUND: Duration = Duration::from_secs(5);

/// Waits until `ok` holds for the store, polling; how long that took. Fails past `BOUND`.
async fn within_bound(what: &str, mut ok: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if ok().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_and_grant_made_on_one_replica_are_honoured_and_revoked_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let gws = replicas(dir.path()).await;
    std::fs::write(dir.path().join("archive/sky/m31.fits"), b"SIMPLE  =  T").unwrap();
    let first = &gws[0];

    // A user, a key and a read grant, made through the first replica.
    first.catalog(&["user", "add", "carol"]);
    let key = first.catalog(&["user", "key", "create", "carol"]);
    let key_id = key["access_key_id"].as_str().unwrap().to_string();
    let secret = key["secret_access_key"].as_str().unwrap().to_string();
    first.catalog(&["grant", "add", "user:carol", "sky", "read"]);
    let object = Key::from("m31.fits");
    for (i, gw) in gws.iter().enumerate() {
        let carol = s3(&gw.url, &key_id, &secret);
        let took = within_bound(&format!("the new key on replica {i}"), async || {
            carol.head(&object).await.is_ok()
        })
        .await;
        eprintln!("new key and grant honoured by replica {i} after {took:?}");
    }

    // Revoked through the second replica (with the admin's token: the first replica wrote
    // the credentials): refused by all of them.
    let out = Command::new(common::BIN)
        .args(["catalog", "--gateway", &gws[1].url, "--token"])
        .arg(first.credential("archway_api_token"))
        .args(["user", "key", "revoke", "carol", &key_id])
        .output()
        .unwrap();
    assert!(out.status.success(), "revoke: {}", text(&out.stderr));
    for (i, gw) in gws.iter().enumerate() {
        let carol = s3(&gw.url, &key_id, &secret);
        let took = within_bound(&format!("the revocation on replica {i}"), async || {
            carol.head(&object).await.is_err()
        })
        .await;
        eprintln!("revocation honoured by replica {i} after {took:?}");
        let refused = carol.head(&object).await.unwrap_err().to_string();
        assert!(
            refused.contains("403") || refused.contains("Forbidden"),
            "{refused}"
        );
    }
}

/// `archway_cache_bytes_total{kind="fetched"}` of one replica.
async fn fetched(gw: &Gateway) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("archway_cache_bytes_total") && l.contains("kind=\"fetched\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_through_a_hashing_balancer_fetch_each_block_from_the_archive_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let gws = replicas(dir.path()).await;
    // 24 objects of 1.5 MiB: two blocks each, the second partial.
    let objects: Vec<(String, Vec<u8>)> = (0..24u8)
        .map(|i| {
            let data: Vec<u8> = (0..3 * 512 * 1024u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) >> 24) as u8 ^ i)
                .collect();
            (format!("tiles/t{i:02}.fits"), data)
        })
        .collect();
    for (name, data) in &objects {
        let path = dir.path().join("archive/sky").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let total: usize = objects.iter().map(|(_, d)| d.len()).sum();
    let lb = Haproxy::start(dir.path(), &gws.iter().collect::<Vec<_>>());
    let admin = s3(
        &lb.url,
        &gws[0].credential("aws_access_key_id"),
        &gws[0].credential("aws_secret_access_key"),
    );
    let before: f64 = {
        let mut sum = 0.0;
        for gw in &gws {
            sum += fetched(gw).await;
        }
        sum
    };
    // Three passes, with 8 readers: every object read whole, then a range of each.
    for _ in 0..3 {
        let mut readers = Vec::new();
        for (name, data) in objects.iter().cloned() {
            let admin = admin.clone();
            readers.push(tokio::spawn(async move {
                let got = admin.get(&Key::from(name.as_str())).await.unwrap();
                assert!(got.bytes().await.unwrap() == data, "{name}");
                let part = admin
                    .get_range(&Key::from(name.as_str()), 1_000_000..1_100_000)
                    .await
                    .unwrap();
                assert!(part == data[1_000_000..1_100_000], "{name} range");
            }));
        }
        for r in readers {
            r.await.unwrap();
        }
    }
    let mut per_replica = Vec::new();
    for gw in &gws {
        per_replica.push(fetched(gw).await);
    }
    let after: f64 = per_replica.iter().sum();
    let ratio = (after - before) / total as f64;
    eprintln!(
        "archive bytes fetched per data byte through HAProxy with 3 replicas: {ratio:.3} \
         (per replica: {per_replica:?})"
    );
    assert!(
        ratio <= 1.2,
        "each block should come from the archive about once, not once per replica: {ratio:.3}"
    );
    assert!(
        per_replica.iter().filter(|f| **f > 0.0).count() >= 2,
        "the balancer spread the objects over the replicas: {per_replica:?}"
    );
}

/// Replicas behind HAProxy with 16 archive objects to read, and admin clients (no retries)
/// for the archive and the shared workspace through the balancer.
struct Balanced {
    gws: Vec<Gateway>,
    _lb: Haproxy,
    archive: Arc<dyn ObjectStore>,
    workspace: Arc<dyn ObjectStore>,
}

async fn balanced(dir: &Path) -> Balanced {
    let gws = replicas(dir).await;
    for i in 0..16 {
        let path = dir.join(format!("archive/sky/read/r{i:02}.fits"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![i as u8; 200 * 1024]).unwrap();
    }
    let lb = Haproxy::start(dir, &gws.iter().collect::<Vec<_>>());
    let (key, secret) = (
        gws[0].credential("aws_access_key_id"),
        gws[0].credential("aws_secret_access_key"),
    );
    Balanced {
        archive: s3(&lb.url, &key, &secret),
        workspace: s3_bucket(&lb.url, "workspace", &key, &secret),
        gws,
        _lb: lb,
    }
}

/// What the load saw: every request's time (since `started`), name and outcome, and the
/// uploads that were acknowledged with their bodies.
type Seen = (Vec<(Duration, String, bool)>, Vec<(String, Vec<u8>)>);

/// Eight clients, each in a loop until `stop`: upload an object of its own, read it back,
/// read an archive object.
fn load(
    b: &Balanced,
    started: Instant,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..8u32)
        .map(|c| {
            let (archive, workspace) = (b.archive.clone(), b.workspace.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut outcomes, mut committed) = (Vec::new(), Vec::new());
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let name = format!("load/c{c}-{n:05}.bin");
                    let key = Key::from(name.as_str());
                    let body: Vec<u8> = (0..64 * 1024u32).map(|j| (j ^ n ^ c) as u8).collect();
                    let put = workspace.put(&key, PutPayload::from(body.clone())).await;
                    outcomes.push((started.elapsed(), format!("put {name}"), put.is_ok()));
                    if put.is_ok() {
                        committed.push((name.clone(), body.clone()));
                        let got = match workspace.get(&key).await {
                            Ok(r) => r.bytes().await.is_ok_and(|b| b == body),
                            Err(_) => false,
                        };
                        outcomes.push((started.elapsed(), format!("get {name}"), got));
                    }
                    let read = Key::from(format!("read/r{:02}.fits", n % 16));
                    let got = match archive.get(&read).await {
                        Ok(r) => r.bytes().await.is_ok_and(|b| b.len() == 200 * 1024),
                        Err(_) => false,
                    };
                    outcomes.push((started.elapsed(), format!("get {read}"), got));
                }
                (outcomes, committed)
            })
        })
        .collect()
}

async fn seen(clients: Vec<tokio::task::JoinHandle<Seen>>) -> Seen {
    let (mut outcomes, mut committed) = (Vec::new(), Vec::new());
    for c in clients {
        let (o, k) = c.await.unwrap();
        outcomes.extend(o);
        committed.extend(k);
    }
    (outcomes, committed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_under_load_costs_only_its_requests_in_flight_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = balanced(dir.path()).await;
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(&b, started, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = started.elapsed();
    b.gws[1].child.as_mut().unwrap().kill().unwrap();
    b.gws[1].child.as_mut().unwrap().wait().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (outcomes, committed) = seen(clients).await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, _, ok)| !ok).collect();
    let before_kill = outcomes.iter().filter(|(t, _, _)| *t < killed_at).count();
    let last_failure = failed.iter().map(|(t, _, _)| *t).max();
    eprintln!(
        "{} requests, {before_kill} before the SIGKILL; {} failed: {:?}; last failure {:?} \
         after the kill",
        outcomes.len(),
        failed.len(),
        failed.iter().map(|(t, op, _)| (op, *t)).collect::<Vec<_>>(),
        last_failure.map(|t| t.saturating_sub(killed_at))
    );
    assert!(before_kill > 0 && outcomes.len() > before_kill);
    assert!(
        failed.iter().all(|(t, _, _)| *t >= killed_at),
        "failures before the kill"
    );
    // At most the requests in flight on the killed replica: one per client.
    assert!(failed.len() <= 8, "{} failures", failed.len());
    // Nothing fails once HAProxy has routed around the dead replica (two checks, 500 ms apart).
    if let Some(last) = last_failure {
        assert!(
            last.saturating_sub(killed_at) < Duration::from_secs(2),
            "failures went on {:?} after the kill",
            last.saturating_sub(killed_at)
        );
    }

    // Every upload that was acknowledged reads back whole through the survivors, and every
    // object listed is one that was acknowledged or whole: nothing partial is visible.
    let by_name: std::collections::HashMap<String, Vec<u8>> = committed.into_iter().collect();
    for (name, body) in &by_name {
        let got = b.workspace.get(&Key::from(name.as_str())).await.unwrap();
        assert!(
            got.bytes().await.unwrap() == *body,
            "{name} lost or changed"
        );
    }
    use futures::StreamExt;
    let listed: Vec<_> = b
        .workspace
        .list(Some(&Key::from("load")))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|m| m.unwrap())
        .collect();
    assert!(listed.len() >= by_name.len());
    for meta in &listed {
        assert_eq!(meta.size, 64 * 1024, "{} is partial", meta.location);
    }
    eprintln!(
        "{} uploads acknowledged, all read back; {} listed, none partial",
        by_name.len(),
        listed.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_behind_haproxy_serves_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = balanced(dir.path()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(&b, Instant::now(), &stop);
    // Each replica in turn: stopped (SIGTERM: it finishes what it serves), started again on
    // its port with the same configuration, taken back by HAProxy.
    for (i, gw) in b.gws.iter_mut().enumerate() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();
        assert!(gw.stop().success(), "replica {i} stopped uncleanly");
        let config = dir.path().join(format!("replica{i}.toml"));
        let config = config.to_str().unwrap().to_string();
        *gw = Gateway::start_on(
            &dir.path().join(format!("replica{i}")),
            port,
            &["--config", &config],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (outcomes, _) = seen(clients).await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, _, ok)| !ok).collect();
    eprintln!(
        "rolling restart of 3 replicas: {} requests, {} failed",
        outcomes.len(),
        failed.len()
    );
    assert!(
        outcomes.len() > 100,
        "the load ran: {} requests",
        outcomes.len()
    );
    assert!(failed.is_empty(), "requests failed: {failed:?}");
}

/// Client addresses survive the load balancer: a gateway that trusts HAProxy's address
/// (`server.trusted_proxies`) logs the client HAProxy names in `X-Forwarded-For`, not
/// HAProxy; an `X-Forwarded-For` a client sends itself is believed neither through HAProxy
/// (which appends the address it saw) nor straight to the gateway (the client is not a
/// trusted proxy). Clients are told apart by their source address on loopback (127.0.0.2,
/// 127.0.0.3), HAProxy connecting from 127.0.0.1.
#[tokio::test(flavor = "multi_thread")]
async fn client_addresses_survive_the_load_balancer_and_claimed_ones_are_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\naccess_log = true\n",
    )
    .unwrap();
    let gw = Gateway::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let lb = Haproxy::start(dir.path(), &[&gw]);
    let from = |source: &str| {
        reqwest::Client::builder()
            .local_address(source.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let claimed = "198.51.100.7";
    let requests = [
        ("through-haproxy", "127.0.0.2", &lb.url, Some(claimed)),
        ("through-haproxy-plain", "127.0.0.2", &lb.url, None),
        ("straight", "127.0.0.3", &gw.url, Some(claimed)),
        // The trusted address itself, as a proxy in front would send it: believed.
        ("from-the-proxy", "127.0.0.1", &gw.url, Some("192.0.2.44")),
    ];
    for (name, source, url, header) in requests {
        let mut req = from(source).get(format!("{url}/whoami/{name}"));
        if let Some(h) = header {
            req = req.header("x-forwarded-for", h);
        }
        let status = req.send().await.unwrap().status();
        assert!(status.is_client_error(), "{name}: {status}");
    }

    let client_of = |log: &str, name: &str| -> Option<String> {
        log.lines()
            .filter(|l| {
                l.contains("archway::access") && l.contains(&format!("path=/whoami/{name} "))
            })
            .find_map(|l| {
                let rest = &l[l.find("client=")? + "client=".len()..];
                Some(rest.split_whitespace().next()?.to_string())
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&gw.stderr).unwrap();
        if requests
            .iter()
            .all(|(name, ..)| client_of(&log, name).is_some())
        {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "access log lines missing:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        client_of(&log, "through-haproxy").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        client_of(&log, "through-haproxy-plain").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(client_of(&log, "straight").as_deref(), Some("127.0.0.3"));
    assert_eq!(
        client_of(&log, "from-the-proxy").as_deref(),
        Some("192.0.2.44")
    );
    assert!(
        !log.contains(claimed),
        "a claimed address reached the log:\n{log}"
    );
}

/// Uploads in progress stay with the replica that began them (doc/deploy.md): HAProxy hashes
/// the path, not the query, so every part of an upload reaches that replica while it lives.
/// Killing it loses the upload, clearly — once HAProxy has routed around the dead replica, the
/// next part is refused with `NoSuchUpload` and a message that says to start again — with
/// nothing partial visible; the upload started again
/// completes on the replica that now serves the key, and reads back whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_cut_by_a_killed_replica_fails_clearly_and_completes_when_begun_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = balanced(dir.path()).await;
    let key = Key::from("big/cut-short.bin");
    let part = |n: u8| PutPayload::from(vec![n; 5 * 1024 * 1024]);

    let mut upload = b.workspace.put_multipart(&key).await.unwrap();
    upload.put_part(part(1)).await.unwrap();
    let holders: Vec<usize> = (0..b.gws.len())
        .filter(|&i| {
            std::fs::read_dir(b.gws[i].data_dir.join("uploads"))
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "the upload's parts are on replicas {holders:?}"
    );
    let holder = holders[0];
    b.gws[holder].child.as_mut().unwrap().kill().unwrap();
    b.gws[holder].child.as_mut().unwrap().wait().unwrap();
    let killed = Instant::now();

    // Until HAProxy takes the dead replica out (two failed checks, 500 ms apart), a part may
    // reach it and fail in transit (a body too large for HAProxy to hold and send elsewhere);
    // a client tries again, as it would.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        let err = upload.put_part(part(2)).await.unwrap_err().to_string();
        if err.contains("NoSuchUpload") || Instant::now() > deadline {
            break err;
        }
        eprintln!("a part in transit when HAProxy had not yet routed around the kill: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        err.contains("NoSuchUpload") && err.contains("start the upload again"),
        "the part after the kill failed unclearly: {err}"
    );
    eprintln!(
        "the part {:?} after the kill (HAProxy routes the upload's path elsewhere): {err}",
        killed.elapsed()
    );
    let _ = upload.abort().await;
    assert!(
        matches!(
            b.workspace.head(&key).await,
            Err(archway_dataplane::object_store::Error::NotFound { .. })
        ),
        "a partial object is visible"
    );

    let mut again = b.workspace.put_multipart(&key).await.unwrap();
    again.put_part(part(1)).await.unwrap();
    again.put_part(part(2)).await.unwrap();
    again
        .put_part(PutPayload::from(vec![3u8; 1000]))
        .await
        .unwrap();
    again.complete().await.unwrap();
    let got = b.workspace.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), 10 * 1024 * 1024 + 1000);
    assert!(got[..5 * 1024 * 1024].iter().all(|&x| x == 1));
    assert!(
        got[5 * 1024 * 1024..10 * 1024 * 1024]
            .iter()
            .all(|&x| x == 2)
    );
    assert!(got[10 * 1024 * 1024..].iter().all(|&x| x == 3));
}

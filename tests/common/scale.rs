//! Replicas on one PostgreSQL catalogue behind HAProxy, for the scale-out test and benchmark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::ObjectStore;

use super::{Gateway, free_port, text};

/// A fresh database on the test PostgreSQL server; its URL.
pub fn postgres_database() -> String {
    let admin = std::env::var("ARCHWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ARCHWAY_TEST_POSTGRES_URL is not set: the scale-out test needs a PostgreSQL server. \
             Run the tests with scripts/test (which starts one), or start one with \
             `eval \"$(scripts/test-services)\"` and run cargo test in that shell"
        )
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "archway_scaleout_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .arg(&admin)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql (Debian's postgresql-client; scripts/test-services installs it)");
    assert!(
        out.status.success(),
        "creating database {name}: {}",
        text(&out.stderr)
    );
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// HAProxy in the foreground, stopped when dropped.
pub struct Haproxy {
    child: Child,
    pub url: String,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Balances on the request URI with consistent hashing over `replicas`, each checked on
    /// `/healthz` every 500 ms (down after two failures). A request that cannot reach its
    /// replica, or gets no answer from it, is sent to another (`redispatch`, `retry-on`).
    /// HAProxy retries only requests it holds whole: bodies up to `tune.bufsize` (128 KiB
    /// here) are buffered first (`http-buffer-request`); a larger upload cut off mid-body
    /// fails to its client, which retries it. Each request carries its client's address in
    /// `X-Forwarded-For` (`option forwardfor`).
    pub fn start(dir: &Path, replicas: &[&Gateway]) -> Haproxy {
        let port = free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, gw)| {
                let addr = gw.url.trim_start_matches("http://");
                format!("    server replica{i} {addr} check inter 500ms fall 2 rise 1\n")
            })
            .collect();
        let config = format!(
            "global\n    maxconn 512\n    tune.bufsize 131072\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    option http-keep-alive\n\
             frontend s3\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance uri\n    hash-type consistent\n    option httpchk GET /healthz\n    option forwardfor\n\
             option redispatch\n    retries 3\n    retry-on conn-failure empty-response\n\
             option http-buffer-request\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("haproxy (Debian's haproxy; scripts/test-services installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not start: {}",
                std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// Three replicas on one fresh PostgreSQL database and one secret key, each serving the
/// archive folder `archive/sky` as volume `sky` and keeping workspaces in the shared folder
/// `shared`; started all at once (one of them creates the admin and its workspace and writes
/// the credentials: it is returned first).
pub async fn replicas(dir: &Path) -> Vec<Gateway> {
    replicas_n(dir, 3).await
}

/// `n` replicas as [`replicas`] makes them.
pub async fn replicas_n(dir: &Path, n: usize) -> Vec<Gateway> {
    let database = postgres_database();
    let archive = dir.join("archive");
    std::fs::create_dir_all(archive.join("sky")).unwrap();
    // Workspaces on storage every replica reaches, as they would be on a shared filesystem.
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let key_file = dir.join("secret.key");
    let mut starts = Vec::new();
    for i in 0..n {
        let config = dir.join(format!("replica{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[catalog]\nurl = \"{database}\"\nsecret_key_file = \"{}\"\nrefresh_interval = \"1s\"\n\n\
                 [backends.archive]\nurl = \"file://{}\"\n\n\
                 [backends.shared]\nurl = \"file://{}\"\n\n\
                 [workspaces]\nbackend = \"shared\"\n\n\
                 [[volumes]]\nid = \"sky\"\nbackend = \"archive\"\nprefix = \"sky\"\n",
                key_file.display(),
                archive.display(),
                shared.display()
            ),
        )
        .unwrap();
        let data: PathBuf = dir.join(format!("replica{i}"));
        let config = config.to_str().unwrap().to_string();
        starts.push(async move { Gateway::start(&data, &["--config", &config]).await });
    }
    // All at once, as a Deployment's pods start on a fresh install: the first start (catalogue
    // migrations, the shared secret key file, the admin, the declared volumes) is raced.
    let mut gws = futures::future::join_all(starts).await;
    // The first start happened once: one replica made the admin and wrote its credentials;
    // that one goes first, as callers take the admin's credentials from replica 0.
    let bootstrapped: Vec<usize> = (0..n)
        .filter(|&i| gws[i].data_dir.join("credentials").exists())
        .collect();
    assert_eq!(
        bootstrapped.len(),
        1,
        "replicas {bootstrapped:?} each made the admin's credentials"
    );
    gws.swap(0, bootstrapped[0]);
    gws
}

pub fn s3(url: &str, key_id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    s3_bucket(url, "sky", key_id, secret)
}

pub fn s3_bucket(url: &str, bucket: &str, key_id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    super::s3_client(url, bucket, key_id, secret)
}

//! Starting the real `archway` binary on loopback for end-to-end tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod mount;
pub mod scale;
pub mod sigv4;
mod skip;

#[allow(unused_imports)] // not every test binary reports a skip
pub use skip::skipped;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::aws::AmazonS3Builder;
use archway_dataplane::object_store::{ClientOptions, ObjectStore, RetryConfig};

pub const BIN: &str = env!("CARGO_BIN_EXE_archway");

/// object_store's S3 client for `bucket` at `url` (path style, plain HTTP), signing with
/// `key_id` and `secret`, with no retries of its own: a test sees every failure.
pub fn s3_client(url: &str, bucket: &str, key_id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    s3_client_with(
        url,
        bucket,
        key_id,
        secret,
        ClientOptions::new().with_allow_http(true),
    )
}

/// [`s3_client`] with other client options (`with_allow_http(true)` among them).
pub fn s3_client_with(
    url: &str,
    bucket: &str,
    key_id: &str,
    secret: &str,
    options: ClientOptions,
) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(url)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap(),
    )
}

/// The aws cli `scripts/test-services` installed (`ARCHWAY_TEST_AWS`), else the one next to
/// the test services' Python (`ARCHWAY_TEST_PYTHON`), else the one on PATH.
pub fn aws_cli() -> PathBuf {
    if let Some(aws) = std::env::var_os("ARCHWAY_TEST_AWS") {
        return aws.into();
    }
    match std::env::var_os("ARCHWAY_TEST_PYTHON").map(PathBuf::from) {
        Some(python) if python.with_file_name("aws").exists() => python.with_file_name("aws"),
        _ => "aws".into(),
    }
}

/// `aws ARGS --endpoint-url URL --region us-east-1 --output json`, signing with `keys` (none:
/// unsigned, as STS's web-identity exchange is), with no configuration or credentials file
/// of the machine's. A failure fails the test, naming `what`; the JSON answer (null when none).
pub fn aws(url: &str, keys: Option<(&str, &str)>, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(aws_cli());
    cmd.args(args)
        .args([
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    if let Some((id, secret)) = keys {
        cmd.env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "aws {args:?} (scripts/test-services installs the aws cli, ARCHWAY_TEST_AWS): {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `archway serve`, stopped with SIGTERM on drop.
pub struct Gateway {
    pub child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Gateway {
    /// Starts `archway serve` on a free port with `data_dir` and extra arguments.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Gateway {
        Self::start_on(data_dir, free_port(), extra).await
    }

    /// Starts `archway serve` on `port` (a restart where a load balancer expects it).
    pub async fn start_on(data_dir: &Path, port: u16, extra: &[&str]) -> Gateway {
        Self::start_with_env(data_dir, port, extra, &[]).await
    }

    /// [`Gateway::start_on`] with `ARCHWAY_*` and other variables set for the process (the
    /// embedded default configured from the environment).
    pub async fn start_with_env(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Self::start_bin(BIN, data_dir, port, extra, env).await
    }

    /// [`Gateway::start_with_env`] with another build of `archway` (`bin`).
    pub async fn start_bin(
        bin: &str,
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = data_dir.with_extension(format!("{port}.{n}.stdout"));
        let stderr = data_dir.with_extension(format!("{port}.{n}.stderr"));
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let gw = Gateway {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            stdout,
            stderr,
        };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not become healthy; stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// A value of the credentials file, e.g. `archway_api_token`.
    pub fn credential(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.data_dir.join("credentials")).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {key} in credentials"))
    }

    /// `archway catalog --json ARGS` against this gateway as the admin (its API token); the
    /// JSON answer (null when it printed none). A failure fails the test.
    pub fn catalog(&self, args: &[&str]) -> serde_json::Value {
        let token = self.credential("archway_api_token");
        let out = Command::new(BIN)
            .args([
                "catalog",
                "--gateway",
                &self.url,
                "--token",
                &token,
                "--json",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// `GET path` on this gateway with `token` as the bearer: the status and the JSON answer.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// The gateway's Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway did not stop within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `archway ARGS` to completion.
pub fn archway(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("ARCHWAY_GATEWAY")
        .env_remove("ARCHWAY_TOKEN")
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The records in the audit trail at `path`, waiting (up to 10 s) until `done` holds for them.
pub async fn records_until(
    path: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records: Vec<serde_json::Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "records missing; the trail holds:\n{}",
            records
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

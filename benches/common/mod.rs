//! What the benchmarks share: servers on loopback and an S3 client for them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::ClientOptions;
use archway_dataplane::object_store::ObjectStore;
use archway_dataplane::object_store::aws::AmazonS3Builder;

pub const MIB: usize = 1024 * 1024;

/// A server process, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something listens on `port`.
pub fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A SigV4-signing S3 client for a server on loopback (path style, plain HTTP).
pub fn s3_client(url: &str, bucket: &str, key: &str, secret: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(url)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_pool_max_idle_per_host(64),
            )
            .build()
            .expect("client"),
    )
}

/// An S3 client with the admin credentials of an archway data directory.
pub fn archway_client(url: &str, data_dir: &Path, bucket: &str) -> Arc<dyn ObjectStore> {
    let creds = std::fs::read_to_string(data_dir.join("credentials")).expect("credentials");
    let value = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")).map(str::to_string))
            .expect("credential")
    };
    s3_client(
        url,
        bucket,
        &value("aws_access_key_id"),
        &value("aws_secret_access_key"),
    )
}

/// `archway serve` (the binary at `binary`) with one archive volume `bench` over the folder
/// `root/bench`, its state under `work`; the server and an admin S3 client for `bench`.
pub fn archway_over(binary: &str, root: &Path, work: &Path) -> (Server, Arc<dyn ObjectStore>) {
    let config = work.join("archway.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.files]\nurl = \"file://{}\"\n\n[[volumes]]\nid = \"bench\"\nbackend = \"files\"\nprefix = \"bench\"\n",
            root.display()
        ),
    )
    .expect("config");
    let port = free_port();
    let data = work.join("data");
    let server = Server(
        Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("ARCHWAY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start archway"),
    );
    wait_for(port);
    std::thread::sleep(Duration::from_millis(300));
    let store = archway_client(&format!("http://127.0.0.1:{port}"), &data, "bench");
    (server, store)
}

/// `rclone serve s3` over `root` (each folder a bucket); the server and a client for `bench`.
pub fn rclone_over(rclone: &str, root: &Path) -> (Server, Arc<dyn ObjectStore>) {
    let port = free_port();
    let server = Server(
        Command::new(rclone)
            .args([
                "serve",
                "s3",
                "--auth-key",
                "benchkey,benchsecret",
                "--addr",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve s3 (install rclone: scripts/test-services)"),
    );
    wait_for(port);
    let store = s3_client(
        &format!("http://127.0.0.1:{port}"),
        "bench",
        "benchkey",
        "benchsecret",
    );
    (server, store)
}

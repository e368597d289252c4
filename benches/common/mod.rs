//! What the benchmarks share: servers on loopback and an S3 client for them.
#![allow(dead_code)]

use std::path::Path;
use std::process::Child;
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

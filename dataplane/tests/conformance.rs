#![allow(clippy::unwrap_used)]
//! The conformance suite against every backend kind available here: local files, in-memory,
//! and a real S3 server (moto's, from PyPI, which `scripts/test-services` installs) on
//! loopback, reached through object_store's S3 client.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use archway_dataplane::conformance::{Capabilities, run, run_through_the_cache};
use archway_dataplane::{BackendConfig, Secret};

#[tokio::test]
async fn local_files() {
    let dir = tempfile::tempdir().unwrap();
    run(
        BackendConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        },
        Capabilities {
            md5_etags: true,
            multipart_etags: true,
            file_tree: true,
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn in_memory() {
    run(
        BackendConfig {
            url: "memory://".into(),
            ..Default::default()
        },
        Capabilities::default(),
    )
    .await;
}

/// moto's S3 server on a free loopback port, killed on drop. (`rclone serve s3` answers ranged
/// GETs with 200 instead of 206, which real S3 clients rightly refuse, so it serves benchmarks
/// rather than conformance.)
struct MotoS3 {
    child: Child,
    endpoint: String,
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server, flask_cors"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_moto(bucket: &str) -> MotoS3 {
    assert!(
        moto_available(),
        "moto's S3 server is missing (python3 -c 'import moto.server' fails): the S3 backend is \
         tested against it. Run the tests with scripts/test, or install it with \
         scripts/test-services"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let server = MotoS3 {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Create the bucket (moto accepts unsigned requests); this also proves it is up.
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) {
            let request = format!(
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut reply = String::new();
            if conn.write_all(request.as_bytes()).is_ok()
                && conn.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/1.1 200")
            {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "moto's S3 server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn s3_server() {
    let server = start_moto("archive");
    run(
        BackendConfig {
            url: "s3://archive/under/test".into(),
            endpoint: Some(server.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testkey".into()),
            secret_access_key: Some(Secret("testsecret".into())),
            path_style: Some(true),
            ..Default::default()
        },
        Capabilities {
            md5_etags: true,
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn local_files_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    run_through_the_cache(
        BackendConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        },
        Capabilities {
            md5_etags: true,
            multipart_etags: true,
            file_tree: true,
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn in_memory_through_the_cache() {
    run_through_the_cache(
        BackendConfig {
            url: "memory://".into(),
            ..Default::default()
        },
        Capabilities::default(),
    )
    .await;
}

#[tokio::test]
async fn s3_server_through_the_cache() {
    let server = start_moto("archive");
    run_through_the_cache(
        BackendConfig {
            url: "s3://archive/cached".into(),
            endpoint: Some(server.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testkey".into()),
            secret_access_key: Some(Secret("testsecret".into())),
            path_style: Some(true),
            ..Default::default()
        },
        Capabilities {
            md5_etags: true,
            ..Default::default()
        },
    )
    .await;
}

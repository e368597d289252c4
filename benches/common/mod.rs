//! What the benchmarks share: servers on loopback and an S3 client for them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archway_dataplane::object_store::ClientOptions;
use archway_dataplane::object_store::ObjectStore;
use archway_dataplane::object_store::aws::AmazonS3Builder;

pub const MIB: usize = 1024 * 1024;

/// The next value of a 64-bit xorshift sequence (13, 7, 17): deterministic bench data.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The next value of a 32-bit xorshift sequence (13, 17, 5): deterministic pixel values.
pub fn xorshift32(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

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
    let (key, secret) = archway_credentials(data_dir);
    s3_client(url, bucket, &key, &secret)
}

/// `archway serve` (the binary at `binary`) on its embedded default (no configuration) with
/// its data in `data_dir`; the server and its URL, once it listens.
pub fn serve_embedded(binary: &str, data_dir: &Path) -> (Server, String) {
    serve(binary, data_dir, &[])
}

/// `archway serve` with its data in `data_dir` and `extra` arguments, on a free port; the
/// server and its URL, once it listens.
pub fn serve(binary: &str, data_dir: &Path, extra: &[&std::ffi::OsStr]) -> (Server, String) {
    let port = free_port();
    let server = Server(
        Command::new(binary)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("ARCHWAY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("archway serve"),
    );
    wait_for(port);
    (server, format!("http://127.0.0.1:{port}"))
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
    let data = work.join("data");
    let (server, url) = serve(binary, &data, &["--config".as_ref(), config.as_os_str()]);
    std::thread::sleep(Duration::from_millis(300));
    let store = archway_client(&url, &data, "bench");
    (server, store)
}

/// The credentials `rclone serve s3` is started with here.
pub const RCLONE_KEY: (&str, &str) = ("benchkey", "benchsecret");

/// `rclone serve s3` over `root` (each folder a bucket), with [`RCLONE_KEY`]; the server and
/// its URL, once it listens.
pub fn rclone_serve(rclone: &str, root: &Path) -> (Server, String) {
    let port = free_port();
    let server = Server(
        Command::new(rclone)
            .args(["serve", "s3", "--auth-key"])
            .arg(format!("{},{}", RCLONE_KEY.0, RCLONE_KEY.1))
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve s3 (install rclone: scripts/test-services)"),
    );
    wait_for(port);
    (server, format!("http://127.0.0.1:{port}"))
}

/// `rclone serve s3` over `root` (each folder a bucket); the server and a client for `bench`.
pub fn rclone_over(rclone: &str, root: &Path) -> (Server, Arc<dyn ObjectStore>) {
    let (server, url) = rclone_serve(rclone, root);
    let store = s3_client(&url, "bench", RCLONE_KEY.0, RCLONE_KEY.1);
    (server, store)
}

/// CPU seconds (user + system) process `pid` has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command.
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks_per_second()
}

/// The unit of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux unless told otherwise).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Whether something is mounted at `mountpoint`.
pub fn mounted(mountpoint: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let want = mountpoint.to_str().unwrap_or_default();
    table
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want))
}

/// A FUSE mount process: unmounted and stopped when dropped.
pub struct Mounted {
    pub server: Option<Server>,
    pub mountpoint: PathBuf,
}

impl Mounted {
    /// Starts `cmd` and waits until `mountpoint` is mounted.
    pub fn start(mut cmd: Command, mountpoint: &Path) -> Mounted {
        std::fs::create_dir_all(mountpoint).expect("mount point");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !mounted(mountpoint) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{:?} exited with {status} before mounting",
                    cmd.get_program()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not mount",
                mountpoint.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mounted {
            server: Some(Server(child)),
            mountpoint: mountpoint.to_path_buf(),
        }
    }

    /// The mount process's id.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().map(|s| s.0.id()).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mountpoint)
            .status();
        drop(self.server.take());
        if mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// Drops the kernel's page cache (root only); whether it could.
pub fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Runs fio with `args` and JSON output; the report's first job (`--group_reporting`).
pub fn fio(args: &[String]) -> serde_json::Value {
    fio_on(args, None)
}

/// [`fio`], run on CPU `cpu` where one is given (`taskset`).
pub fn fio_on(args: &[String], cpu: Option<usize>) -> serde_json::Value {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "fio"]);
            c
        }
        None => Command::new("fio"),
    };
    let out = cmd
        .args(args)
        .args(["--group_reporting", "--output-format=json"])
        .output()
        .expect("fio (scripts/test-services installs it)");
    assert!(
        out.status.success(),
        "fio {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fio JSON");
    report["jobs"][0].clone()
}

/// Credentials of an archway data directory's `credentials` file: (access key, secret).
pub fn archway_credentials(data_dir: &Path) -> (String, String) {
    let creds = std::fs::read_to_string(data_dir.join("credentials")).expect("credentials");
    let value = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")).map(str::to_string))
            .expect("credential")
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

/// The admin's API token of an archway data directory's `credentials` file.
pub fn archway_token(data_dir: &Path) -> String {
    let creds = std::fs::read_to_string(data_dir.join("credentials")).expect("credentials");
    creds
        .lines()
        .find_map(|l| l.strip_prefix("archway_api_token = ").map(str::to_string))
        .expect("archway_api_token")
}

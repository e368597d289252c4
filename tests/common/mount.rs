//! `archway mount` as a child process, for the end-to-end tests that mount.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

/// Whether a FUSE mount is at `mountpoint` now (a bind mount beneath one does not count).
pub fn is_mounted(mountpoint: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let want = mountpoint.to_str().unwrap();
    table.lines().any(|l| {
        let mut fields = l.split_whitespace();
        fields.nth(1) == Some(want) && fields.next().is_some_and(|t| t.starts_with("fuse"))
    })
}

pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `archway mount … --foreground` as a child; unmounted (SIGTERM) and reaped on drop.
pub struct Mount {
    pub child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Mount {
    pub fn start(mountpoint: &Path, args: &[&str]) -> Mount {
        std::fs::create_dir_all(mountpoint).unwrap();
        let log = mountpoint.with_extension("log");
        let child = Command::new(BIN)
            .arg("mount")
            .arg(mountpoint)
            .args(args)
            .arg("--foreground")
            .env("ARCHWAY_LOG", "info,archway_fuse=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            log,
        };
        wait_for("the mount", || {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited with {status}: {}", m.log());
            }
            is_mounted(mountpoint)
        });
        m
    }

    /// `archway mount` of a gateway's volumes (remote mode) as the admin whose credentials
    /// `archway serve` wrote in `data_dir`, then `extra` options.
    pub fn remote(mountpoint: &Path, gateway_url: &str, data_dir: &Path, extra: &[&str]) -> Mount {
        let credentials = data_dir.join("credentials");
        let base = [
            "--gateway",
            gateway_url,
            "--credentials-file",
            credentials.to_str().unwrap(),
            "--profile",
            "archway",
        ];
        Mount::start(mountpoint, &[&base[..], extra].concat())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let log = self.log();
        self.try_signal(signal)
            .unwrap_or_else(|| panic!("mount did not exit: {log}"))
    }

    pub fn try_signal(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let st = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .output();
        eprintln!("kill {signal} {}: {st:?}", child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = Command::new("sh").arg("-c").arg(format!("for t in /proc/{0}/task/*; do echo $t $(cut -d' ' -f3 $t/stat) $(cat $t/wchan) $(cat $t/comm); done; cat /proc/{0}/stack", child.id())).status();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.try_signal("-TERM");
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// The errno of a failed filesystem call (a success fails the test).
pub fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("no errno in {e}")),
    }
}

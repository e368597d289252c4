//! The audit trail: one JSON line per request — who did what to which object, from where, how
//! it ended — written off the request path.
//!
//! The fronts build an [`AuditRecord`] for each request and hand it to [`AuditLog::record`],
//! which only queues it: a thread of its own writes the queue to the configured file (rotated
//! by size) or to standard output, flushing after each burst. Should the writer fall
//! [`QUEUE`] records behind (a stalled disk), further records are dropped and counted
//! ([`AuditLog::dropped`], exported as a metric) rather than holding requests up. Records never
//! hold secrets: no credential, token, signature or query string is ever put in one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::{Deserialize, Serialize};

/// Records queued for the writer at most; more are dropped and counted.
pub const QUEUE: usize = 65_536;

/// The `[audit]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Where records go: a file (appended to, rotated at `max_bytes`), or `-` for standard
    /// output. None: no audit trail.
    pub path: Option<String>,
    /// The file is rotated when a record would take it past this size.
    pub max_bytes: u64,
    /// Rotated files kept: `PATH.1` (the newest) to `PATH.<keep>`; 0 keeps none.
    pub keep: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
        }
    }
}

impl AuditConfig {
    /// Problems with this section, as (key within the section, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.path.as_deref() == Some("") {
            out.push((
                "path".into(),
                "may not be empty: a file, `-` for standard output, or leave it out".into(),
            ));
        }
        if self.max_bytes < 64 * 1024 {
            out.push(("max_bytes".into(), "must be at least 65536".into()));
        }
        out
    }
}

/// One request, as the audit trail keeps it. The field names are an interface
/// (doc/audit.md): log pipelines parse them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request ended (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The id the client saw (`x-amz-request-id`, or an error body's `request_id`).
    pub request_id: String,
    /// `s3`, `api` or `fuse`.
    pub front: String,
    /// The operation: S3's name (`GetObject`), the API's route (`POST /api/v1/reduce`), or the
    /// file operation (`read`, `write`).
    pub op: String,
    /// The Archway user, when the request authenticated as one.
    pub principal: Option<String>,
    /// How it authenticated: `sigv4`, `sigv4-presigned`, `bearer`, `local` (the CLI or a
    /// local-mode mount acting as the administrator) or `anonymous`.
    pub auth: String,
    /// The client's address (through trusted proxies: `server.trusted_proxies`).
    pub source: Option<String>,
    pub volume: Option<String>,
    pub key: Option<String>,
    /// Bytes of the request body (data written), and of the answer (data read).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The HTTP status (for `fuse`: 200, or the errno's nearest status when it failed).
    pub status: u16,
    /// From the request's arrival to its answer's last byte.
    pub duration_ms: f64,
}

impl AuditRecord {
    /// Now, as `time` wants it.
    pub fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// The time since `started`, as `duration_ms` wants it: milliseconds to the microsecond
    /// (plenty, and the line stays short).
    pub fn millis_since(started: std::time::Instant) -> f64 {
        (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0
    }
}

/// A fresh request id: 16 hex digits, as the S3 front's `x-amz-request-id`.
pub fn fresh_id() -> String {
    let mut raw = [0u8; 8];
    // An id is for matching a record or a log line; without randomness it is still unique
    // enough by time.
    if getrandom::fill(&mut raw).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        raw = t.to_be_bytes();
    }
    hex::encode_upper(raw)
}

/// Where records are queued; cheap to clone. [`AuditLog::disabled`] takes records and drops
/// them without a thread.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: Option<SyncSender<AuditRecord>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Opens the trail `config` names (creating the file, mode 0600, and its folder) and starts
    /// its writer; disabled when no path is set. Blocking: for start-up.
    #[allow(clippy::disallowed_methods)] // start-up
    pub fn open(config: &AuditConfig) -> io::Result<Self> {
        let Some(path) = config.path.as_deref() else {
            return Ok(Self::disabled());
        };
        let sink = if path == "-" {
            Sink::Stdout(io::stdout())
        } else {
            Sink::File(RotatingFile::open(
                PathBuf::from(path),
                config.max_bytes,
                config.keep,
            )?)
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("archway-audit".into())
            .spawn(move || write_all(rx, sink))?;
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `record` for the writer; never waits.
    pub fn record(&self, record: AuditRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(
                        queued = QUEUE,
                        "the audit trail's writer is behind: records are being dropped \
                         (counted in archway_audit_dropped_total)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped so far because the writer was behind or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(RotatingFile),
}

fn write_all(rx: Receiver<AuditRecord>, mut sink: Sink) {
    let mut line = Vec::with_capacity(512);
    // One record, then whatever else is queued, then a flush: records reach the file within a
    // burst of their request's end.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            line.clear();
            if serde_json::to_writer(&mut line, &record).is_ok() {
                line.push(b'\n');
                let written = match &mut sink {
                    Sink::Stdout(out) => out.lock().write_all(&line),
                    Sink::File(f) => f.write_line(&line),
                };
                if let Err(e) = written {
                    tracing::error!(error = %e, "writing the audit trail failed");
                }
            }
            next = rx.try_recv().ok();
        }
        let flushed = match &mut sink {
            Sink::Stdout(out) => out.lock().flush(),
            Sink::File(f) => f.flush(),
        };
        if let Err(e) = flushed {
            tracing::error!(error = %e, "flushing the audit trail failed");
        }
    }
    // Every sender is gone (the process is ending): what was written is flushed above.
}

/// An append-only file rotated by size: `PATH` → `PATH.1` → … → `PATH.<keep>`. Blocking: it
/// lives on the writer's own thread.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: BufWriter<File>,
    size: u64,
}

#[allow(clippy::disallowed_methods)] // the audit writer's own thread
impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            keep,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = BufWriter::with_capacity(64 * 1024, open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[allow(clippy::disallowed_methods)] // start-up and the audit writer's own thread
fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            time: AuditRecord::now(),
            request_id: format!("R{i:04}"),
            front: "s3".into(),
            op: "GetObject".into(),
            principal: Some("alice".into()),
            auth: "sigv4".into(),
            source: Some("192.0.2.9".into()),
            volume: Some("demo".into()),
            key: Some(format!("k/{i}")),
            bytes_in: 0,
            bytes_out: i,
            status: 200,
            duration_ms: 1.5,
        }
    }

    fn lines(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn wait_for(mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn records_are_json_lines_in_order_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/archway.jsonl");
        let log = AuditLog::open(&AuditConfig {
            path: Some(path.to_str().unwrap().into()),
            ..Default::default()
        })
        .unwrap();
        for i in 0..100 {
            log.record(record(i));
        }
        wait_for(|| lines(&path).len() == 100);
        let got = lines(&path);
        assert_eq!(got[0], record(0).clone_with_time(&got[0].time));
        assert!(got.iter().enumerate().all(|(i, r)| r.bytes_out == i as u64));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_as_many_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let log = AuditLog::open(&AuditConfig {
            path: Some(path.to_str().unwrap().into()),
            max_bytes: 64 * 1024,
            keep: 2,
        })
        .unwrap();
        let one = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
        let n = 4 * 64 * 1024 / one + 10; // more than four files' worth
        for i in 0..n {
            log.record(record(i));
        }
        let rotated = |k: u32| PathBuf::from(format!("{}.{k}", path.display()));
        wait_for(|| lines(&path).last().is_some_and(|r| r.bytes_out == n - 1));
        // The newest records are in PATH, the ones before in PATH.1, then PATH.2; no PATH.3.
        for p in [&path, &rotated(1), &rotated(2)] {
            let size = std::fs::metadata(p).unwrap().len();
            assert!(size <= 64 * 1024, "{} has {size} bytes", p.display());
        }
        assert!(!rotated(3).exists());
        let (older, newer) = (lines(&rotated(1)), lines(&path));
        assert_eq!(older.last().unwrap().bytes_out + 1, newer[0].bytes_out);
        assert_eq!(
            lines(&rotated(2)).last().unwrap().bytes_out + 1,
            older[0].bytes_out
        );
    }

    #[test]
    fn a_disabled_trail_takes_records_and_writes_nothing() {
        let log = AuditLog::open(&AuditConfig::default()).unwrap();
        assert!(!log.enabled());
        log.record(record(1));
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn problems_name_the_key() {
        let bad = AuditConfig {
            path: Some(String::new()),
            max_bytes: 10,
            keep: 1,
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["path", "max_bytes"]);
    }

    impl AuditRecord {
        fn clone_with_time(&self, time: &str) -> Self {
            Self {
                time: time.to_string(),
                ..self.clone()
            }
        }
    }
}

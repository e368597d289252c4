//! The mount's side of the audit trail (`archway_dataplane::audit`): one record per open file,
//! written when its last descriptor is released, with the bytes read and written through it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use archway_dataplane::audit::{AuditLog, AuditRecord};

use crate::{FsError, Result};

/// Who the mount acts as, and the open files not yet released.
#[derive(Debug)]
pub struct FileAudit {
    log: AuditLog,
    principal: Option<String>,
    auth: &'static str,
    open: Mutex<HashMap<u64, OpenFile>>,
}

#[derive(Debug)]
struct OpenFile {
    write: bool,
    volume: String,
    key: String,
    opened: Instant,
    read: u64,
    written: u64,
}

impl FileAudit {
    /// Records go to `log`, naming `principal` (the mount's user, where known) and how the
    /// mount authenticates to its volumes (`sigv4`, `anonymous`, `local`).
    pub fn new(log: AuditLog, principal: Option<String>, auth: &'static str) -> Self {
        Self {
            log,
            principal,
            auth,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OpenFile>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn opened(&self, fh: u64, write: bool, volume: &str, key: &str) {
        self.files().insert(
            fh,
            OpenFile {
                write,
                volume: volume.to_string(),
                key: key.to_string(),
                opened: Instant::now(),
                read: 0,
                written: 0,
            },
        );
    }

    pub(super) fn moved(&self, fh: u64, read: u64, written: u64) {
        if let Some(f) = self.files().get_mut(&fh) {
            f.read += read;
            f.written += written;
        }
    }

    /// The file's last release: its record, with the outcome of the release (the upload of
    /// what was written).
    pub(super) fn released(&self, fh: u64, result: &Result<()>) {
        let Some(f) = self.files().remove(&fh) else {
            return;
        };
        let status = match result {
            Ok(()) => 200,
            Err(e) => status_of(e),
        };
        self.emit(f, status);
    }

    /// An open for writing refused before it got a handle (a read-only volume, no write
    /// access): its record at once.
    pub(super) fn refused(&self, volume: &str, key: &str, e: &FsError) {
        let f = OpenFile {
            write: true,
            volume: volume.to_string(),
            key: key.to_string(),
            opened: Instant::now(),
            read: 0,
            written: 0,
        };
        self.emit(f, status_of(e));
    }

    fn emit(&self, f: OpenFile, status: u16) {
        self.log.record(AuditRecord {
            time: AuditRecord::now(),
            request_id: archway_dataplane::audit::fresh_id(),
            front: "fuse".into(),
            op: if f.write { "write" } else { "read" }.into(),
            principal: self.principal.clone(),
            auth: self.auth.into(),
            source: None,
            volume: Some(f.volume),
            key: Some(f.key),
            bytes_in: f.written,
            bytes_out: f.read,
            status,
            duration_ms: AuditRecord::millis_since(f.opened),
        });
    }
}

/// The HTTP status nearest a failed release's errno.
fn status_of(e: &FsError) -> u16 {
    match e.errno() {
        libc::ENOENT => 404,
        libc::EACCES | libc::EPERM | libc::EROFS | libc::EDQUOT => 403,
        libc::EFBIG | libc::ENOSPC => 413,
        libc::EINVAL | libc::ENAMETOOLONG => 400,
        _ => 502,
    }
}

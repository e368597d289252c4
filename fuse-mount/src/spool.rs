//! The local file a workspace file is written into until it is uploaded.
//!
//! Writes land at any offset (random writes, `truncate`), so they cannot stream straight into an
//! upload; the spool is an unnamed temporary file in the spool directory, deleted when the last
//! handle closes. Every file operation runs on tokio's blocking threads.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

#[derive(Debug)]
pub(crate) struct Spool {
    file: Arc<std::fs::File>,
    size: AtomicU64,
    /// Written since the last upload.
    dirty: AtomicBool,
    /// Open handles sharing this spool.
    pub(crate) handles: AtomicU64,
    /// Serialises uploads, so two closes never upload the same file at once.
    pub(crate) upload: tokio::sync::Mutex<()>,
}

/// Runs file work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

impl Spool {
    pub(crate) async fn create(dir: &Path) -> std::io::Result<Self> {
        let dir = dir.to_path_buf();
        let file = blocking(move || tempfile::tempfile_in(dir)).await?;
        Ok(Self {
            file: Arc::new(file),
            size: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            handles: AtomicU64::new(0),
            upload: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn mark_clean(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    pub(crate) async fn write_at(&self, offset: u64, data: Bytes) -> std::io::Result<()> {
        let file = self.file.clone();
        let end = offset + data.len() as u64;
        blocking(move || file.write_all_at(&data, offset)).await?;
        self.size.fetch_max(end, Ordering::AcqRel);
        self.mark_dirty();
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub(crate) async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let size = self.size();
        if offset >= size {
            return Ok(Bytes::new());
        }
        let len = len.min((size - offset) as usize);
        let file = self.file.clone();
        blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    pub(crate) async fn set_len(&self, len: u64) -> std::io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.set_len(len)).await?;
        self.size.store(len, Ordering::Release);
        self.mark_dirty();
        Ok(())
    }
}

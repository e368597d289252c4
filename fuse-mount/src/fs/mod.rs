//! The filesystem: inodes over volume keys, listings, open files and the write spool.
//!
//! Nothing here knows `fuser`: operations are async methods returning [`FsError`], so the
//! semantics are tested without a kernel mount, and the adapter in [`crate::fuse`] only
//! translates. Inode numbers are allocated on first sight of a path and live while the kernel
//! holds a reference (lookup counting, as FUSE defines it), so the table is bounded by what the
//! kernel caches, not by what was ever listed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::list::PaginatedListOptions;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

mod audit;
mod dir;
mod file;
mod inodes;
mod names;
mod xattr;

pub use audit::FileAudit;
pub use xattr::USER as XATTR_USER;

use dir::{DirStream, Listed};
use inodes::{Inodes, Node};

use crate::spool::Spool;
use crate::{FsConfig, FsError, MountMetrics, MountVolume, Result, Writes};

/// The mount point's inode.
pub const ROOT: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Attributes of one inode, as `stat` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// The position after this entry (what the kernel passes back to continue).
    pub offset: u64,
    pub name: String,
    pub attr: Attr,
}

/// An open file: its handle, whether the kernel may keep pages it cached before, and the
/// whole local copy the kernel may read instead of asking the mount.
#[derive(Clone, Debug)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    pub whole: Option<crate::whole::WholeCopy>,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

enum Handle {
    Read {
        ino: u64,
        version: Option<String>,
        size: u64,
    },
    Write {
        ino: u64,
        spool: Arc<Spool>,
    },
    Dir(Arc<tokio::sync::Mutex<DirStream>>),
}

/// The filesystem over a set of volumes.
pub struct Fs {
    volumes: Vec<MountVolume>,
    config: FsConfig,
    metrics: MountMetrics,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    started: SystemTime,
    audit: Option<FileAudit>,
    /// Whole-file copies the kernel reads directly ([`crate::whole`]), while the kernel
    /// accepts them (`passthrough` turns false when it does not).
    whole: Option<crate::whole::WholeCopies>,
    passthrough: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("volumes", &self.volumes)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Checks a name given by the kernel for use as one key segment.
fn check_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(FsError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name == "." || name == ".." {
        return bad("not a file name");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name == archway_dataplane::key::MARKER {
        return bad("a name of one space stands for a folder marker in the store");
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| FsError::InvalidName {
        name: key.to_string(),
        reason: e.to_string(),
    })
}

impl Fs {
    pub fn new(volumes: Vec<MountVolume>, config: FsConfig, metrics: MountMetrics) -> Self {
        let started = SystemTime::now();
        let mut nodes = HashMap::new();
        let mut children = HashMap::new();
        let root = Node {
            parent: ROOT,
            name: Arc::from(""),
            volume: None,
            kind: Kind::Dir,
            size: 0,
            mtime: started,
            etag: None,
            lookups: 1,
            fresh_until: None,
            pinned: true,
            local: false,
            unlinked: false,
            spool: None,
            cached_version: None,
        };
        nodes.insert(ROOT, root);
        for (i, v) in volumes.iter().enumerate() {
            let ino = ROOT + 1 + i as u64;
            let name: Arc<str> = Arc::from(v.name.as_str());
            nodes.insert(
                ino,
                Node {
                    parent: ROOT,
                    name: name.clone(),
                    volume: Some(i),
                    kind: Kind::Dir,
                    size: 0,
                    mtime: started,
                    etag: None,
                    lookups: 0,
                    fresh_until: None,
                    pinned: true,
                    local: false,
                    unlinked: false,
                    spool: None,
                    cached_version: None,
                },
            );
            children.insert((ROOT, name), ino);
        }
        let next = ROOT + 1 + volumes.len() as u64;
        Self {
            volumes,
            config,
            metrics,
            inodes: Mutex::new(Inodes {
                nodes,
                children,
                next,
            }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            started,
            audit: None,
            whole: None,
            passthrough: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Reads files up to the copies' size limit from whole local copies, fetched at open and
    /// read by the kernel directly (FUSE passthrough). Not with an audit trail: the kernel
    /// reads a copy without the mount, so the bytes read could not be counted.
    pub fn with_whole_copies(mut self, copies: crate::whole::WholeCopies) -> Self {
        self.whole = Some(copies.with_metrics(self.metrics.clone()));
        self.passthrough = std::sync::atomic::AtomicBool::new(true);
        self
    }

    /// Whether opens may still be given whole-file copies to pass through.
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    /// Stops whole-file copies: the kernel refused passthrough (an old kernel, no
    /// CAP_SYS_ADMIN). Said once.
    pub fn stop_passthrough(&self, why: &str) {
        if self.passthrough.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "the kernel does not pass reads through to local copies: files are read \
                 through the mount (--whole-file-max has no effect)"
            );
        }
    }

    /// Keeps an audit record of every open file (at its release).
    pub fn with_audit(mut self, audit: FileAudit) -> Self {
        self.audit = Some(audit);
        self
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn metrics(&self) -> &MountMetrics {
        &self.metrics
    }

    pub fn volumes(&self) -> &[MountVolume] {
        &self.volumes
    }

    fn inodes(&self) -> MutexGuard<'_, Inodes> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters more than losing the mount, so a poisoned lock is used as is.
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn volume(&self, i: usize) -> &MountVolume {
        &self.volumes[i]
    }

    fn writable(&self, volume: usize) -> Result<()> {
        let v = self.volume(volume);
        match v.writes {
            Writes::Allowed => Ok(()),
            Writes::ReadOnly => Err(FsError::ReadOnly {
                volume: v.name.clone(),
            }),
            Writes::Denied => Err(FsError::WriteDenied {
                volume: v.name.clone(),
            }),
        }
    }

    fn attr_of(&self, ino: u64, node: &Node) -> Attr {
        let writable = node
            .volume
            .is_some_and(|v| self.volumes[v].writes == Writes::Allowed);
        let perm = match (node.kind, writable) {
            (Kind::Dir, true) => 0o777,
            (Kind::Dir, false) => 0o555,
            (Kind::File, true) => 0o666,
            (Kind::File, false) => 0o444,
        } & !self.config.umask;
        let size = match &node.spool {
            Some(s) => s.size(),
            None => node.size,
        };
        Attr {
            ino,
            kind: node.kind,
            size,
            mtime: if node.kind == Kind::Dir && node.volume.is_none() {
                self.started
            } else {
                node.mtime
            },
            perm,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn fresh_until(&self) -> Option<Instant> {
        Instant::now().checked_add(self.config.attr_ttl)
    }

    /// Records what the store said about a child and returns its inode (without a reference).
    fn remember(&self, parent: u64, listed: &Listed) -> Result<(u64, Attr)> {
        let fresh = self.fresh_until();
        let mut t = self.inodes();
        let ino = t.upsert(parent, &listed.name, listed.kind)?;
        let node = t.get_mut(ino)?;
        // Local data is newer than anything the store can say.
        if node.spool.is_none() && !node.local {
            if listed.kind == Kind::File {
                node.size = listed.size;
                node.mtime = listed.mtime;
                node.etag = listed.etag.clone();
            }
            node.fresh_until = fresh;
        }
        let attr = self.attr_of(ino, node);
        Ok((ino, attr))
    }

    /// Attributes of an inode, asking the store when they are stale.
    pub async fn getattr(&self, ino: u64) -> Result<Attr> {
        let (volume, key) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            if node.fresh(Instant::now()) || node.kind == Kind::Dir || node.unlinked {
                return Ok(self.attr_of(ino, node));
            }
            t.key(ino)?
        };
        let v = self.volume(volume);
        self.metrics.backend("head");
        match v.store.head(&path(&key)?).await {
            Ok(meta) => {
                let fresh = self.fresh_until();
                let mut t = self.inodes();
                let node = t.get_mut(ino)?;
                if node.spool.is_none() {
                    node.size = meta.size;
                    node.mtime = meta.last_modified.into();
                    node.etag = meta.e_tag;
                    node.fresh_until = fresh;
                }
                Ok(self.attr_of(ino, node))
            }
            Err(e) => Err(FsError::store(&v.name, &key, "head", e)),
        }
    }

    /// Finds `name` in `parent`, taking a kernel reference on the result.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        check_name(name)?;
        let (volume, key) = {
            let mut t = self.inodes();
            let p = t.get(parent)?;
            if p.kind != Kind::Dir {
                return Err(FsError::NotFound);
            }
            let now = Instant::now();
            if let Some(ino) = t.child(parent, name) {
                let node = t.get(ino)?;
                if node.fresh(now) {
                    let attr = self.attr_of(ino, node);
                    t.get_mut(ino)?.lookups += 1;
                    return Ok(attr);
                }
            }
            if parent == ROOT {
                // Only the volumes live in the root, and they are all known.
                return Err(FsError::NotFound);
            }
            let (volume, pkey) = t.key(parent)?;
            (volume, join(&pkey, name))
        };
        let v = self.volume(volume);
        let location = path(&key)?;
        let dir_prefix = format!("{key}/");
        self.metrics.backend("head");
        self.metrics.backend("list");
        let (file, dir) = tokio::join!(
            v.store.head(&location),
            self.list_level(volume, &dir_prefix, None, 1)
        );
        let found = match dir {
            Ok((_, _, true)) => Some(Listed {
                name: name.to_string(),
                kind: Kind::Dir,
                size: 0,
                mtime: self.started,
                etag: None,
            }),
            Ok(_) => None,
            Err(e) => return Err(e),
        };
        let found = match (found, file) {
            (Some(d), _) => d,
            (None, Ok(meta)) => Listed {
                name: name.to_string(),
                kind: Kind::File,
                size: meta.size,
                mtime: meta.last_modified.into(),
                etag: meta.e_tag,
            },
            (None, Err(object_store::Error::NotFound { .. })) => {
                let mut t = self.inodes();
                if let Some(ino) = t.child(parent, name) {
                    t.detach(ino);
                }
                return Err(FsError::NotFound);
            }
            (None, Err(e)) => return Err(FsError::store(&v.name, &key, "head", e)),
        };
        let (ino, attr) = self.remember(parent, &found)?;
        self.inodes().get_mut(ino)?.lookups += 1;
        Ok(attr)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut t = self.inodes();
        if let Some(node) = t.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        t.maybe_drop(ino);
    }

    /// Number of inodes held (for tests and metrics).
    pub fn inode_count(&self) -> usize {
        self.inodes().nodes.len()
    }
}

#[cfg(test)]
mod tests;

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

/// An open file: its handle, and whether the kernel may keep pages it cached before.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

struct Node {
    parent: u64,
    name: Arc<str>,
    /// The volume (index into the mount's volumes); None for the root.
    volume: Option<usize>,
    kind: Kind,
    size: u64,
    mtime: SystemTime,
    /// The store's version tag, exactly as the store gave it.
    etag: Option<String>,
    /// References the kernel holds (FUSE lookup count).
    lookups: u64,
    /// Until when the attributes may be trusted without asking the store.
    fresh_until: Option<Instant>,
    /// Never dropped on forget: the root, the volumes, directories made in this mount.
    pinned: bool,
    /// Exists only in this mount: a directory made here, or a file not yet uploaded.
    local: bool,
    /// Removed from its directory while still open.
    unlinked: bool,
    /// The data being written, while a handle is open for writing.
    spool: Option<Arc<Spool>>,
    /// The version whose pages the kernel may still hold in its page cache.
    cached_version: Option<String>,
}

impl Node {
    fn fresh(&self, now: Instant) -> bool {
        self.pinned
            || self.local
            || self.spool.is_some()
            || self.fresh_until.is_some_and(|t| t > now)
    }
}

struct Inodes {
    nodes: HashMap<u64, Node>,
    children: HashMap<(u64, Arc<str>), u64>,
    next: u64,
}

impl Inodes {
    fn get(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn get_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, Arc::from(name))).copied()
    }

    /// The key of an inode inside its volume ("" for a volume's root).
    fn key(&self, ino: u64) -> Result<(usize, String)> {
        let mut parts = Vec::new();
        let mut at = ino;
        loop {
            let node = self.get(at)?;
            let volume = node.volume.ok_or(FsError::RootReadOnly)?;
            if node.parent == ROOT {
                parts.reverse();
                return Ok((volume, parts.join("/")));
            }
            parts.push(node.name.clone());
            at = node.parent;
        }
    }

    /// The child `name` of `parent` with this kind, created if missing or of another kind.
    fn upsert(&mut self, parent: u64, name: &str, kind: Kind) -> Result<u64> {
        let volume = self.get(parent)?.volume;
        if let Some(ino) = self.child(parent, name) {
            if self.get(ino)?.kind == kind {
                return Ok(ino);
            }
            self.detach(ino);
        }
        let ino = self.next;
        self.next += 1;
        let name: Arc<str> = Arc::from(name);
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.clone(),
                volume,
                kind,
                size: 0,
                mtime: SystemTime::now(),
                etag: None,
                lookups: 0,
                fresh_until: None,
                pinned: false,
                local: false,
                unlinked: false,
                spool: None,
                cached_version: None,
            },
        );
        self.children.insert((parent, name), ino);
        Ok(ino)
    }

    /// Takes a node out of its directory; it lives on while the kernel or a handle holds it.
    fn detach(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            let key = (node.parent, node.name.clone());
            node.unlinked = true;
            node.pinned = false;
            if self.children.get(&key) == Some(&ino) {
                self.children.remove(&key);
            }
            if node.lookups == 0 && node.spool.is_none() {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Drops a node nobody refers to any more.
    fn maybe_drop(&mut self, ino: u64) {
        let drop = self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.lookups == 0 && !n.pinned && n.spool.is_none());
        if drop && let Some(node) = self.nodes.remove(&ino) {
            let key = (node.parent, node.name);
            if self.children.get(&key) == Some(&ino) {
                self.children.remove(&key);
            }
        }
    }
}

/// One entry as a listing gave it.
#[derive(Clone, Debug)]
struct Listed {
    name: String,
    kind: Kind,
    size: u64,
    mtime: SystemTime,
    etag: Option<String>,
}

/// The state of one open directory: a window of entries, refilled page by page.
struct DirStream {
    ino: u64,
    volume: usize,
    /// The listing prefix: the directory's key and '/', or "" for a volume's root.
    prefix: String,
    /// Entries not on the backend yet (made in this mount), listed first.
    local: Vec<Listed>,
    /// Entries from `position` on (index 0 is ".", 1 is "..").
    window: VecDeque<Listed>,
    position: u64,
    token: Option<String>,
    done: bool,
    started: bool,
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
        }
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
            self.list_page(volume, &dir_prefix, None, 1)
        );
        let found = match dir {
            Ok((entries, _)) if !entries.is_empty() => Some(Listed {
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

    /// One page of a directory level: (entries, token of the next page).
    async fn list_page(
        &self,
        volume: usize,
        prefix: &str,
        token: Option<String>,
        max: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let v = self.volume(volume);
        let list_error = |e| FsError::store(&v.name, prefix, "list", e);
        let result = if let Some(lister) = &v.lister {
            let opts = PaginatedListOptions {
                delimiter: Some("/".into()),
                max_keys: Some(max),
                page_token: token,
                ..Default::default()
            };
            let prefix = (!prefix.is_empty()).then_some(prefix);
            let r = lister
                .list_paginated(prefix, opts)
                .await
                .map_err(list_error)?;
            (r.result, r.page_token)
        } else {
            let folder = prefix.trim_end_matches('/');
            let folder = (!folder.is_empty()).then(|| path(folder)).transpose()?;
            match v.store.list_with_delimiter(folder.as_ref()).await {
                Ok(r) => (r, None),
                Err(object_store::Error::NotFound { .. }) => return Ok((Vec::new(), None)),
                Err(e) => return Err(list_error(e)),
            }
        };
        let (list, next) = result;
        let mut out = Vec::with_capacity(list.objects.len() + list.common_prefixes.len());
        let name_of = |full: &str| -> Option<String> {
            let rest = full.strip_prefix(prefix)?.trim_end_matches('/');
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
        };
        for p in &list.common_prefixes {
            if let Some(name) = name_of(p.as_ref()) {
                out.push(Listed {
                    name,
                    kind: Kind::Dir,
                    size: 0,
                    mtime: self.started,
                    etag: None,
                });
            }
        }
        for meta in list.objects {
            if let Some(name) = name_of(meta.location.as_ref()) {
                out.push(Listed {
                    name,
                    kind: Kind::File,
                    size: meta.size,
                    mtime: meta.last_modified.into(),
                    etag: meta.e_tag,
                });
            }
        }
        // Directory markers and a file shadowed by a directory of the same name: the
        // directory wins, as in `lookup`.
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then((a.kind == Kind::File).cmp(&(b.kind == Kind::File)))
        });
        out.dedup_by(|b, a| a.name == b.name);
        Ok((out, next))
    }

    fn new_fh(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, handle);
        fh
    }

    pub async fn opendir(&self, ino: u64) -> Result<u64> {
        let t = self.inodes();
        let node = t.get(ino)?;
        if node.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        let (volume, prefix) = match node.volume {
            None => (usize::MAX, String::new()),
            Some(_) => {
                let (v, key) = t.key(ino)?;
                (
                    v,
                    if key.is_empty() {
                        key
                    } else {
                        format!("{key}/")
                    },
                )
            }
        };
        drop(t);
        let stream = DirStream {
            ino,
            volume,
            prefix,
            local: Vec::new(),
            window: VecDeque::new(),
            position: 0,
            token: None,
            done: false,
            started: false,
        };
        Ok(self.new_fh(Handle::Dir(Arc::new(tokio::sync::Mutex::new(stream)))))
    }

    /// Entries from `offset` on, handed to `add` until it says the reply is full. With `plus`,
    /// every entry handed over and accepted takes a kernel reference (READDIRPLUS).
    pub async fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(&DirEntry) -> bool + Send,
    ) -> Result<()> {
        let stream = match self.handles().get(&fh) {
            Some(Handle::Dir(s)) => s.clone(),
            _ => return Err(FsError::BadHandle(fh)),
        };
        let mut s = stream.lock().await;
        if offset < s.position || !s.started {
            self.restart(&mut s)?;
        }
        let mut at = offset;
        loop {
            // Fill the window up to the wanted position.
            while !s.done && at >= s.position + s.window.len() as u64 {
                self.fill(&mut s).await?;
            }
            // Forget what the kernel has consumed.
            while s.position < at && !s.window.is_empty() {
                s.window.pop_front();
                s.position += 1;
            }
            let Some(entry) = s.window.front().cloned() else {
                return Ok(());
            };
            let (ino, attr, fresh_node) = match entry.name.as_str() {
                "." => {
                    let t = self.inodes();
                    (s.ino, self.attr_of(s.ino, t.get(s.ino)?), false)
                }
                ".." => {
                    let t = self.inodes();
                    let parent = t.get(s.ino)?.parent;
                    (parent, self.attr_of(parent, t.get(parent)?), false)
                }
                _ if s.volume == usize::MAX => {
                    let t = self.inodes();
                    let ino = t.child(ROOT, &entry.name).ok_or(FsError::NotFound)?;
                    (ino, self.attr_of(ino, t.get(ino)?), false)
                }
                _ => {
                    let existed = self.inodes().child(s.ino, &entry.name).is_some();
                    let (ino, attr) = self.remember(s.ino, &entry)?;
                    (ino, attr, !existed)
                }
            };
            let e = DirEntry {
                offset: at + 1,
                name: entry.name,
                attr,
            };
            if add(&e) {
                // The reply is full: this entry goes in the next one.
                if fresh_node {
                    self.inodes().maybe_drop(ino);
                }
                return Ok(());
            }
            if plus && e.name != "." && e.name != ".." {
                if let Ok(node) = self.inodes().get_mut(ino) {
                    node.lookups += 1;
                }
            } else if fresh_node {
                self.inodes().maybe_drop(ino);
            }
            at += 1;
        }
    }

    /// Starts a directory's listing over: ".", "..", what exists only here, then the store.
    fn restart(&self, s: &mut DirStream) -> Result<()> {
        s.window.clear();
        s.position = 0;
        s.token = None;
        s.done = false;
        s.started = true;
        let dot = |name: &str| Listed {
            name: name.to_string(),
            kind: Kind::Dir,
            size: 0,
            mtime: self.started,
            etag: None,
        };
        s.window.push_back(dot("."));
        s.window.push_back(dot(".."));
        let t = self.inodes();
        if s.volume == usize::MAX {
            for v in &self.volumes {
                s.window.push_back(dot(&v.name));
            }
            s.done = true;
            return Ok(());
        }
        s.local = t
            .children
            .iter()
            .filter(|((parent, _), _)| *parent == s.ino)
            .filter_map(|(_, ino)| t.nodes.get(ino))
            .filter(|n| n.local && !n.unlinked)
            .map(|n| Listed {
                name: n.name.to_string(),
                kind: n.kind,
                size: n.spool.as_ref().map_or(n.size, |sp| sp.size()),
                mtime: n.mtime,
                etag: None,
            })
            .collect();
        s.local.sort_by(|a, b| a.name.cmp(&b.name));
        s.window.extend(s.local.iter().cloned());
        Ok(())
    }

    async fn fill(&self, s: &mut DirStream) -> Result<()> {
        let (entries, next) = self
            .list_page(s.volume, &s.prefix, s.token.take(), self.config.list_page)
            .await?;
        self.metrics.backend("list");
        for e in entries {
            if s.local.iter().any(|l| l.name == e.name) {
                continue;
            }
            s.window.push_back(e);
        }
        s.token = next;
        s.done = s.token.is_none();
        Ok(())
    }

    /// Opens a file for reading, or (workspaces) for writing into a spool.
    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened> {
        let (volume, key, kind) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            let (volume, key) = t.key(ino)?;
            (volume, key, node.kind)
        };
        if kind == Kind::Dir {
            let v = self.volume(volume);
            return Err(FsError::IsDir {
                volume: v.name.clone(),
                key,
            });
        }
        if mode.write || mode.truncate {
            self.writable(volume)?;
            let spool = self.spool_for(ino, volume, &key, mode.truncate).await?;
            let fh = self.new_fh(Handle::Write { ino, spool });
            return Ok(Opened {
                fh,
                keep_cache: false,
            });
        }
        // Pin the version read through this handle; refresh it when the attributes are stale.
        let stale = {
            let t = self.inodes();
            let node = t.get(ino)?;
            !node.fresh(Instant::now())
        };
        if stale {
            self.getattr_refresh(ino).await?;
        }
        let mut t = self.inodes();
        let node = t.get_mut(ino)?;
        let version = node.etag.clone();
        let keep_cache =
            version.is_some() && node.spool.is_none() && node.cached_version == version;
        node.cached_version = version.clone();
        let size = node.size;
        drop(t);
        let fh = self.new_fh(Handle::Read { ino, version, size });
        Ok(Opened { fh, keep_cache })
    }

    async fn getattr_refresh(&self, ino: u64) -> Result<Attr> {
        if let Ok(node) = self.inodes().get_mut(ino) {
            node.fresh_until = None;
        }
        self.getattr(ino).await
    }

    /// The spool of a file opened for writing, shared by every handle writing it; filled with
    /// the current content unless the open truncates.
    async fn spool_for(
        &self,
        ino: u64,
        volume: usize,
        key: &str,
        truncate: bool,
    ) -> Result<Arc<Spool>> {
        let spool_error = |source| FsError::Spool {
            volume: self.volume(volume).name.clone(),
            key: key.to_string(),
            source,
        };
        let (existing, local, size) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            (node.spool.clone(), node.local, node.size)
        };
        if let Some(spool) = existing {
            spool.handles.fetch_add(1, Ordering::AcqRel);
            if truncate {
                spool.set_len(0).await.map_err(spool_error)?;
            }
            return Ok(spool);
        }
        let spool = Arc::new(
            Spool::create(&self.config.spool_dir)
                .await
                .map_err(spool_error)?,
        );
        if truncate {
            spool.mark_dirty();
        } else if !local && size > 0 {
            self.download(volume, key, &spool).await?;
        }
        spool.handles.fetch_add(1, Ordering::AcqRel);
        let mut t = self.inodes();
        let node = t.get_mut(ino)?;
        // Another open may have raced us to it: share theirs.
        if let Some(other) = &node.spool {
            other.handles.fetch_add(1, Ordering::AcqRel);
            return Ok(other.clone());
        }
        node.spool = Some(spool.clone());
        node.cached_version = None;
        Ok(spool)
    }

    async fn download(&self, volume: usize, key: &str, spool: &Spool) -> Result<()> {
        let v = self.volume(volume);
        self.metrics.backend("get");
        let r = v
            .store
            .get(&path(key)?)
            .await
            .map_err(|e| FsError::store(&v.name, key, "get", e))?;
        let mut body = r.into_stream();
        let mut offset = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FsError::store(&v.name, key, "get", e))?;
            let n = chunk.len() as u64;
            spool
                .write_at(offset, chunk)
                .await
                .map_err(|source| FsError::Spool {
                    volume: v.name.clone(),
                    key: key.to_string(),
                    source,
                })?;
            offset += n;
        }
        // Loaded, not changed: nothing to upload unless written.
        spool.mark_clean();
        Ok(())
    }

    /// Reads `size` bytes at `offset` through the handle (fewer at the end of the file).
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        let (ino, version, file_size, spool) = match self.handles().get(&fh) {
            Some(Handle::Read { ino, version, size }) => (*ino, version.clone(), *size, None),
            Some(Handle::Write { ino, spool }) => (*ino, None, 0, Some(spool.clone())),
            _ => return Err(FsError::BadHandle(fh)),
        };
        let (volume, key, spool) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            let spool = spool.or_else(|| node.spool.clone());
            let (volume, key) = t.key(ino)?;
            (volume, key, spool)
        };
        let v = self.volume(volume);
        if let Some(spool) = spool {
            let data = spool
                .read_at(offset, size as usize)
                .await
                .map_err(|source| FsError::Spool {
                    volume: v.name.clone(),
                    key: key.clone(),
                    source,
                })?;
            self.metrics.read_bytes.inc_by(data.len() as u64);
            return Ok(data);
        }
        if offset >= file_size || size == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + u64::from(size)).min(file_size);
        let opts = GetOptions {
            range: Some(GetRange::Bounded(offset..end)),
            if_match: version,
            ..Default::default()
        };
        self.metrics.backend("get");
        let r = v
            .store
            .get_opts(&path(&key)?, opts)
            .await
            .map_err(|e| FsError::store(&v.name, &key, "get", e))?;
        let mut body = r.into_stream();
        let mut out: Option<Bytes> = None;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FsError::store(&v.name, &key, "get", e))?;
            // One chunk (the usual case with the cache) goes out without a copy.
            match out.take() {
                None if buf.is_empty() => out = Some(chunk),
                Some(first) => {
                    buf.reserve((end - offset) as usize);
                    buf.extend_from_slice(&first);
                    buf.extend_from_slice(&chunk);
                }
                None => buf.extend_from_slice(&chunk),
            }
        }
        let data = out.unwrap_or_else(|| Bytes::from(buf));
        self.metrics.read_bytes.inc_by(data.len() as u64);
        Ok(data)
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Bytes) -> Result<u32> {
        let (ino, spool) = match self.handles().get(&fh) {
            Some(Handle::Write { ino, spool }) => (*ino, spool.clone()),
            _ => return Err(FsError::BadHandle(fh)),
        };
        let n = data.len();
        if let Err(source) = spool.write_at(offset, data).await {
            let (volume, key) = self.inodes().key(ino)?;
            return Err(FsError::Spool {
                volume: self.volume(volume).name.clone(),
                key,
                source,
            });
        }
        if let Ok(node) = self.inodes().get_mut(ino) {
            node.mtime = SystemTime::now();
        }
        self.metrics.written_bytes.inc_by(n as u64);
        Ok(n as u32)
    }

    /// `close` of one descriptor: uploads what was written, so that errors reach the writer.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let write = match self.handles().get(&fh) {
            Some(Handle::Write { ino, spool }) => Some((*ino, spool.clone())),
            Some(_) => None,
            None => return Err(FsError::BadHandle(fh)),
        };
        match write {
            Some((ino, spool)) => self.upload(ino, &spool).await,
            None => Ok(()),
        }
    }

    /// The last close of a handle.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let handle = self.handles().remove(&fh);
        let Some(Handle::Write { ino, spool }) = handle else {
            return Ok(());
        };
        let result = self.upload(ino, &spool).await;
        if spool.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut t = self.inodes();
            if let Some(node) = t.nodes.get_mut(&ino)
                && node.spool.as_ref().is_some_and(|s| Arc::ptr_eq(s, &spool))
            {
                node.spool = None;
                if result.is_err() {
                    // Never uploaded: the file is gone with its spool.
                    node.fresh_until = None;
                }
            }
            t.maybe_drop(ino);
        }
        result
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles().remove(&fh);
    }

    /// Uploads a spool to the file's current key, if anything changed since the last upload.
    async fn upload(&self, ino: u64, spool: &Arc<Spool>) -> Result<()> {
        let _one_at_a_time = spool.upload.lock().await;
        if !spool.is_dirty() {
            return Ok(());
        }
        let (volume, key, unlinked) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            let (volume, key) = t.key(ino)?;
            (volume, key, node.unlinked)
        };
        if unlinked {
            spool.mark_clean();
            return Ok(());
        }
        // Writes landing during the upload mark the spool dirty again, for the next close.
        spool.mark_clean();
        let result = self.put_spool(volume, &key, spool).await;
        match result {
            Ok(etag) => {
                let fresh = self.fresh_until();
                let mut t = self.inodes();
                if let Ok(node) = t.get_mut(ino) {
                    node.local = false;
                    node.size = spool.size();
                    node.etag = etag;
                    node.mtime = SystemTime::now();
                    node.fresh_until = fresh;
                }
                // Its parents exist on the store now.
                let mut at = t.get(ino).map(|n| n.parent).unwrap_or(ROOT);
                while at != ROOT {
                    match t.nodes.get_mut(&at) {
                        Some(n) if n.local => {
                            n.local = false;
                            n.pinned = false;
                            at = n.parent;
                        }
                        _ => break,
                    }
                }
                Ok(())
            }
            Err(e) => {
                spool.mark_dirty();
                Err(e)
            }
        }
    }

    /// Uploads the spool's content through the dataplane's one write path: one request up to
    /// a part, a multipart upload above, committed only when every byte went. Returns the new
    /// version tag as the store gives it.
    async fn put_spool(&self, volume: usize, key: &str, spool: &Spool) -> Result<Option<String>> {
        let v = self.volume(volume);
        let location = path(key)?;
        let size = spool.size();
        let part = self.config.part_size;
        let body = futures::stream::try_unfold(0u64, move |offset| async move {
            if offset >= size {
                return Ok(None);
            }
            let want = ((size - offset) as usize).min(part);
            match spool.read_at(offset, want).await {
                Ok(chunk) if chunk.is_empty() => Ok(None),
                Ok(chunk) => {
                    let next = offset + chunk.len() as u64;
                    Ok(Some((chunk, next)))
                }
                Err(source) => Err(archway_dataplane::BodyError::Local {
                    what: "the mount's spool file".into(),
                    source,
                }),
            }
        });
        let shape = archway_dataplane::WriteShape {
            part_size: part,
            concurrency: self.config.upload_concurrency,
            max_bytes: self.config.max_object_bytes,
            max_bytes_from: "the mount's largest object",
        };
        self.metrics.backend(if size <= part as u64 {
            "put"
        } else {
            "multipart"
        });
        let written = archway_dataplane::write::write_stream(
            &*v.store,
            &v.name,
            key,
            &location,
            body,
            Default::default(),
            shape,
        )
        .await
        .map_err(|e| FsError::write(&v.name, key, e))?;
        self.metrics.uploaded_bytes.inc_by(written.size);
        Ok(written.e_tag)
    }

    /// Creates a file and opens it for writing.
    pub async fn create(&self, parent: u64, name: &str) -> Result<(Attr, Opened)> {
        check_name(name)?;
        let (volume, key) = self.child_key(parent, name)?;
        self.writable(volume)?;
        let spool = Arc::new(
            Spool::create(&self.config.spool_dir)
                .await
                .map_err(|source| FsError::Spool {
                    volume: self.volume(volume).name.clone(),
                    key: key.clone(),
                    source,
                })?,
        );
        spool.mark_dirty();
        spool.handles.fetch_add(1, Ordering::AcqRel);
        let (ino, attr) = {
            let mut t = self.inodes();
            if let Some(existing) = t.child(parent, name)
                && t.get(existing)?.kind == Kind::Dir
            {
                return Err(FsError::IsDir {
                    volume: self.volume(volume).name.clone(),
                    key,
                });
            }
            let ino = t.upsert(parent, name, Kind::File)?;
            let node = t.get_mut(ino)?;
            node.local = node.etag.is_none() && node.fresh_until.is_none();
            node.spool = Some(spool.clone());
            node.mtime = SystemTime::now();
            node.unlinked = false;
            node.cached_version = None;
            node.lookups += 1;
            (ino, self.attr_of(ino, node))
        };
        let fh = self.new_fh(Handle::Write { ino, spool });
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: false,
            },
        ))
    }

    fn child_key(&self, parent: u64, name: &str) -> Result<(usize, String)> {
        let t = self.inodes();
        let p = t.get(parent)?;
        if p.volume.is_none() {
            return Err(FsError::RootReadOnly);
        }
        if p.kind != Kind::Dir {
            return Err(FsError::NotFound);
        }
        let (volume, pkey) = t.key(parent)?;
        Ok((volume, join(&pkey, name)))
    }

    /// Makes a directory. It lives in this mount until a file is written into it (object
    /// stores have no empty directories).
    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        check_name(name)?;
        let (volume, key) = self.child_key(parent, name)?;
        self.writable(volume)?;
        if self.exists(parent, name).await? {
            return Err(FsError::Exists {
                volume: self.volume(volume).name.clone(),
                key,
            });
        }
        let mut t = self.inodes();
        let ino = t.upsert(parent, name, Kind::Dir)?;
        let node = t.get_mut(ino)?;
        node.local = true;
        node.pinned = true;
        node.unlinked = false;
        node.mtime = SystemTime::now();
        node.lookups += 1;
        Ok(self.attr_of(ino, node))
    }

    /// Whether `name` exists in `parent` (in this mount or on the store).
    async fn exists(&self, parent: u64, name: &str) -> Result<bool> {
        match self.lookup(parent, name).await {
            Ok(attr) => {
                self.forget(attr.ino, 1);
                Ok(true)
            }
            Err(FsError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The inode of `name` in `parent`, looked up on the store when not known here.
    async fn resolve(&self, parent: u64, name: &str) -> Result<u64> {
        let attr = self.lookup(parent, name).await?;
        // The reference taken by this lookup is ours, not the kernel's.
        let mut t = self.inodes();
        if let Ok(node) = t.get_mut(attr.ino) {
            node.lookups = node.lookups.saturating_sub(1);
        }
        Ok(attr.ino)
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        check_name(name)?;
        let (volume, key) = self.child_key(parent, name)?;
        self.writable(volume)?;
        let ino = self.resolve(parent, name).await?;
        let (kind, local) = {
            let t = self.inodes();
            let n = t.get(ino)?;
            (n.kind, n.local)
        };
        let v = self.volume(volume);
        if kind == Kind::Dir {
            return Err(FsError::IsDir {
                volume: v.name.clone(),
                key,
            });
        }
        if !local {
            self.metrics.backend("delete");
            match v.store.delete(&path(&key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(FsError::store(&v.name, &key, "delete", e)),
            }
        }
        self.inodes().detach(ino);
        Ok(())
    }

    /// Whether a directory holds anything, here or on the store.
    async fn is_empty_dir(&self, ino: u64, volume: usize, key: &str) -> Result<bool> {
        let has_local = {
            let t = self.inodes();
            t.children
                .iter()
                .any(|((p, _), c)| *p == ino && t.nodes.get(c).is_some_and(|n| n.local))
        };
        if has_local {
            return Ok(false);
        }
        let (entries, _) = self.list_page(volume, &format!("{key}/"), None, 1).await?;
        self.metrics.backend("list");
        Ok(entries.is_empty())
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        check_name(name)?;
        let (volume, key) = self.child_key(parent, name)?;
        self.writable(volume)?;
        let ino = self.resolve(parent, name).await?;
        let v = self.volume(volume);
        if self.inodes().get(ino)?.kind != Kind::Dir {
            return Err(FsError::NotDir {
                volume: v.name.clone(),
                key,
            });
        }
        if !self.is_empty_dir(ino, volume, &key).await? {
            return Err(FsError::NotEmpty {
                volume: v.name.clone(),
                key,
            });
        }
        self.inodes().detach(ino);
        Ok(())
    }

    /// Renames a file or a directory (every object under it) within a volume.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        check_name(name)?;
        check_name(new_name)?;
        let (volume, from) = self.child_key(parent, name)?;
        let (to_volume, to) = self.child_key(new_parent, new_name)?;
        if volume != to_volume {
            return Err(FsError::CrossVolume {
                from: self.volume(volume).name.clone(),
                to: self.volume(to_volume).name.clone(),
            });
        }
        self.writable(volume)?;
        let v = self.volume(volume);
        let ino = self.resolve(parent, name).await?;
        let (kind, local) = {
            let t = self.inodes();
            let n = t.get(ino)?;
            (n.kind, n.local)
        };
        let target = match self.resolve(new_parent, new_name).await {
            Ok(t) => Some(t),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some(target) = target {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(FsError::Exists {
                    volume: v.name.clone(),
                    key: to,
                });
            }
            let target_kind = self.inodes().get(target)?.kind;
            match (kind, target_kind) {
                (Kind::File, Kind::Dir) => {
                    return Err(FsError::IsDir {
                        volume: v.name.clone(),
                        key: to,
                    });
                }
                (Kind::Dir, Kind::File) => {
                    return Err(FsError::NotDir {
                        volume: v.name.clone(),
                        key: to,
                    });
                }
                (Kind::Dir, Kind::Dir) => {
                    if !self.is_empty_dir(target, volume, &to).await? {
                        return Err(FsError::NotEmpty {
                            volume: v.name.clone(),
                            key: to,
                        });
                    }
                }
                (Kind::File, Kind::File) => {}
            }
        }
        match kind {
            Kind::File if !local => {
                self.metrics.backend("copy");
                self.metrics.backend("delete");
                v.store
                    .rename(&path(&from)?, &path(&to)?)
                    .await
                    .map_err(|e| FsError::store(&v.name, &from, "rename", e))?;
            }
            Kind::File => {}
            Kind::Dir => {
                // Every object under the directory moves; not atomic (object stores have no
                // directory rename), but each object moves whole.
                self.metrics.backend("list");
                let mut objects = v.store.list(Some(&path(&from)?));
                let mut moves = Vec::new();
                while let Some(meta) = objects.next().await {
                    let meta = meta.map_err(|e| FsError::store(&v.name, &from, "list", e))?;
                    let old = meta.location.as_ref().to_string();
                    if let Some(rest) = old.strip_prefix(&format!("{from}/")) {
                        moves.push((old.clone(), format!("{to}/{rest}")));
                    }
                }
                for (old, new) in moves {
                    self.metrics.backend("copy");
                    self.metrics.backend("delete");
                    v.store
                        .rename(&path(&old)?, &path(&new)?)
                        .await
                        .map_err(|e| FsError::store(&v.name, &old, "rename", e))?;
                }
            }
        }
        let mut t = self.inodes();
        if let Some(target) = target {
            t.detach(target);
        }
        let node = t.get_mut(ino)?;
        let old_key = (node.parent, node.name.clone());
        let new_name: Arc<str> = Arc::from(new_name);
        node.parent = new_parent;
        node.name = new_name.clone();
        if t.children.get(&old_key) == Some(&ino) {
            t.children.remove(&old_key);
        }
        t.children.insert((new_parent, new_name), ino);
        Ok(())
    }

    /// Changes a file's size (truncate); other attribute changes are accepted and ignored on
    /// writable volumes (object stores keep no modes, owners or times).
    pub async fn setattr(&self, ino: u64, size: Option<u64>, fh: Option<u64>) -> Result<Attr> {
        let (volume, key, kind) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            let volume = node.volume.ok_or(FsError::RootReadOnly)?;
            let (_, key) = t.key(ino)?;
            (volume, key, node.kind)
        };
        self.writable(volume)?;
        if let Some(size) = size {
            if kind == Kind::Dir {
                return Err(FsError::IsDir {
                    volume: self.volume(volume).name.clone(),
                    key,
                });
            }
            let spool_error = |source| FsError::Spool {
                volume: self.volume(volume).name.clone(),
                key: key.clone(),
                source,
            };
            let open = fh.and_then(|fh| match self.handles().get(&fh) {
                Some(Handle::Write { spool, .. }) => Some(spool.clone()),
                _ => None,
            });
            let open = open.or_else(|| self.inodes().get(ino).ok().and_then(|n| n.spool.clone()));
            match open {
                // Uploaded when the writer closes.
                Some(spool) => spool.set_len(size).await.map_err(spool_error)?,
                None => {
                    let spool = self.spool_for(ino, volume, &key, size == 0).await?;
                    let r = async {
                        spool.set_len(size).await.map_err(spool_error)?;
                        self.upload(ino, &spool).await
                    }
                    .await;
                    if spool.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let mut t = self.inodes();
                        if let Ok(node) = t.get_mut(ino) {
                            node.spool = None;
                        }
                    }
                    r?;
                }
            }
        }
        let t = self.inodes();
        Ok(self.attr_of(ino, t.get(ino)?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    fn fs_over(store: Arc<InMemory>, writable: bool) -> Fs {
        let volumes = vec![MountVolume {
            name: "vol".into(),
            store,
            lister: None,
            writes: if writable {
                Writes::Allowed
            } else {
                Writes::ReadOnly
            },
        }];
        Fs::new(volumes, FsConfig::default(), MountMetrics::new())
    }

    async fn put(store: &InMemory, key: &str, data: &'static [u8]) {
        store
            .put(&Path::from(key), PutPayload::from_static(data))
            .await
            .unwrap();
    }

    async fn names(fs: &Fs, ino: u64) -> Vec<String> {
        let fh = fs.opendir(ino).await.unwrap();
        let mut out = Vec::new();
        fs.readdir(fh, 0, false, |e| {
            out.push(e.name.clone());
            false
        })
        .await
        .unwrap();
        fs.releasedir(fh);
        out
    }

    #[tokio::test]
    async fn directories_come_from_slashes_in_keys() {
        let store = Arc::new(InMemory::new());
        put(&store, "a/b/c.txt", b"hello").await;
        put(&store, "a/d.txt", b"x").await;
        put(&store, "top", b"t").await;
        let fs = fs_over(store, false);
        assert_eq!(names(&fs, ROOT).await, [".", "..", "vol"]);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        assert_eq!(names(&fs, vol.ino).await, [".", "..", "a", "top"]);
        let a = fs.lookup(vol.ino, "a").await.unwrap();
        assert_eq!(a.kind, Kind::Dir);
        let b = fs.lookup(a.ino, "b").await.unwrap();
        let c = fs.lookup(b.ino, "c.txt").await.unwrap();
        assert_eq!((c.kind, c.size, c.perm), (Kind::File, 5, 0o444));
        let o = fs.open(c.ino, OpenMode::default()).await.unwrap();
        assert_eq!(&fs.read(o.fh, 1, 100).await.unwrap()[..], b"ello");
        assert_eq!(fs.read(o.fh, 5, 100).await.unwrap().len(), 0);
        fs.release(o.fh).await.unwrap();
        assert!(matches!(
            fs.lookup(vol.ino, "missing").await,
            Err(FsError::NotFound)
        ));
    }

    #[tokio::test]
    async fn read_only_volumes_refuse_every_change() {
        let store = Arc::new(InMemory::new());
        put(&store, "f", b"data").await;
        let fs = fs_over(store, false);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        let f = fs.lookup(vol.ino, "f").await.unwrap();
        let erofs = |r: Result<()>| assert_eq!(r.unwrap_err().errno(), libc::EROFS);
        erofs(fs.create(vol.ino, "new").await.map(|_| ()));
        erofs(fs.mkdir(vol.ino, "d").await.map(|_| ()));
        erofs(fs.unlink(vol.ino, "f").await);
        erofs(fs.rename(vol.ino, "f", vol.ino, "g", false).await);
        erofs(fs.setattr(f.ino, Some(0), None).await.map(|_| ()));
        let write = OpenMode {
            write: true,
            truncate: false,
        };
        erofs(fs.open(f.ino, write).await.map(|_| ()));
        erofs(fs.mkdir(ROOT, "x").await.map(|_| ()));
    }

    #[tokio::test]
    async fn written_files_appear_whole_on_close() {
        let store = Arc::new(InMemory::new());
        let fs = fs_over(store.clone(), true);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        let d = fs.mkdir(vol.ino, "dir").await.unwrap();
        let (attr, o) = fs.create(d.ino, "f.bin").await.unwrap();
        fs.write(o.fh, 0, Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        fs.write(o.fh, 6, Bytes::from_static(b"WORLD"))
            .await
            .unwrap();
        assert!(store.head(&Path::from("dir/f.bin")).await.is_err());
        assert_eq!(fs.getattr(attr.ino).await.unwrap().size, 11);
        fs.flush(o.fh).await.unwrap();
        fs.release(o.fh).await.unwrap();
        let got = store
            .get(&Path::from("dir/f.bin"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello WORLD");
        // Rename the directory, then the file back and forth.
        fs.rename(vol.ino, "dir", vol.ino, "moved", false)
            .await
            .unwrap();
        let got = store
            .get(&Path::from("moved/f.bin"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello WORLD");
        let m = fs.lookup(vol.ino, "moved").await.unwrap();
        assert_eq!(
            fs.rmdir(vol.ino, "moved").await.unwrap_err().errno(),
            libc::ENOTEMPTY
        );
        // Truncate and append through a second open.
        let f = fs.lookup(m.ino, "f.bin").await.unwrap();
        fs.setattr(f.ino, Some(5), None).await.unwrap();
        let o = fs
            .open(
                f.ino,
                OpenMode {
                    write: true,
                    truncate: false,
                },
            )
            .await
            .unwrap();
        fs.write(o.fh, 5, Bytes::from_static(b"!")).await.unwrap();
        fs.release(o.fh).await.unwrap();
        let got = store
            .get(&Path::from("moved/f.bin"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello!");
        fs.unlink(m.ino, "f.bin").await.unwrap();
        assert!(store.head(&Path::from("moved/f.bin")).await.is_err());
        fs.rmdir(vol.ino, "moved").await.unwrap();
    }

    #[tokio::test]
    async fn readdir_resumes_where_the_kernel_stopped_and_restarts_on_rewind() {
        let store = Arc::new(InMemory::new());
        for i in 0..25 {
            put(&store, &format!("d/{i:02}"), b"x").await;
        }
        let fs = fs_over(store, true);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        let d = fs.lookup(vol.ino, "d").await.unwrap();
        fs.mkdir(d.ino, "local-dir").await.unwrap();
        let fh = fs.opendir(d.ino).await.unwrap();
        // Replies that hold 4 entries, as a small kernel buffer would.
        let mut offset = 0;
        let mut names = Vec::new();
        loop {
            let mut batch = Vec::new();
            fs.readdir(fh, offset, true, |e| {
                if batch.len() == 4 {
                    return true;
                }
                batch.push((e.offset, e.name.clone()));
                false
            })
            .await
            .unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.0;
            names.extend(batch.into_iter().map(|b| b.1));
        }
        let mut expected = vec![".".to_string(), "..".into(), "local-dir".into()];
        expected.extend((0..25).map(|i| format!("{i:02}")));
        assert_eq!(names, expected);
        // rewinddir: from the start again.
        let mut again = Vec::new();
        fs.readdir(fh, 0, false, |e| {
            again.push(e.name.clone());
            false
        })
        .await
        .unwrap();
        assert_eq!(again, expected);
        fs.releasedir(fh);
    }

    #[tokio::test]
    async fn a_file_changed_while_open_is_stale_not_mixed() {
        let store = Arc::new(InMemory::new());
        put(&store, "f", b"version one").await;
        let fs = fs_over(store.clone(), false);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        let f = fs.lookup(vol.ino, "f").await.unwrap();
        let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
        assert!(!o.keep_cache, "first open: nothing cached yet");
        assert_eq!(&fs.read(o.fh, 0, 7).await.unwrap()[..], b"version");
        put(&store, "f", b"VERSION TWO").await;
        assert_eq!(fs.read(o.fh, 8, 3).await.unwrap_err().errno(), libc::ESTALE);
        fs.release(o.fh).await.unwrap();
        // Reopened after the attributes expire: the new version, and the kernel must drop
        // its pages. Reopened unchanged: the kernel may keep them.
        fs.getattr_refresh(f.ino).await.unwrap();
        let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
        assert!(!o.keep_cache);
        assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"VERSION TWO");
        fs.release(o.fh).await.unwrap();
        let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
        assert!(o.keep_cache);
        fs.release(o.fh).await.unwrap();
    }

    #[tokio::test]
    async fn listing_attributes_spare_the_store_and_forget_frees_inodes() {
        let store = Arc::new(InMemory::new());
        for i in 0..50 {
            store
                .put(
                    &Path::from(format!("d/f{i:03}")),
                    PutPayload::from(vec![0u8; i]),
                )
                .await
                .unwrap();
        }
        let fs = fs_over(store, false);
        let vol = fs.lookup(ROOT, "vol").await.unwrap();
        let d = fs.lookup(vol.ino, "d").await.unwrap();
        let fh = fs.opendir(d.ino).await.unwrap();
        let mut seen = Vec::new();
        fs.readdir(fh, 0, true, |e| {
            seen.push((e.attr.ino, e.name.clone(), e.attr.size));
            false
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 52);
        let before = fs.metrics().backend_count("head");
        for (_, name, size) in &seen[2..] {
            let a = fs.lookup(d.ino, name).await.unwrap();
            assert_eq!(a.size, *size);
        }
        assert_eq!(
            fs.metrics().backend_count("head"),
            before,
            "no HEAD per entry"
        );
        let held = fs.inode_count();
        for (ino, name, _) in &seen[2..] {
            assert!(!name.is_empty());
            fs.forget(*ino, 2);
        }
        assert_eq!(fs.inode_count(), held - 50);
    }
}

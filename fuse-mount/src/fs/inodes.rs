//! The inode table: nodes over (volume, key path), with FUSE lookup counting.

use super::*;

pub(super) struct Node {
    pub(super) parent: u64,
    pub(super) name: Arc<str>,
    /// The volume (index into the mount's volumes); None for the root.
    pub(super) volume: Option<usize>,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    /// The store's version tag, exactly as the store gave it.
    pub(super) etag: Option<String>,
    /// References the kernel holds (FUSE lookup count).
    pub(super) lookups: u64,
    /// Until when the attributes may be trusted without asking the store.
    pub(super) fresh_until: Option<Instant>,
    /// Never dropped on forget: the root, the volumes, directories made in this mount.
    pub(super) pinned: bool,
    /// Exists only in this mount: a directory made here, or a file not yet uploaded.
    pub(super) local: bool,
    /// Removed from its directory while still open.
    pub(super) unlinked: bool,
    /// The data being written, while a handle is open for writing.
    pub(super) spool: Option<Arc<Spool>>,
    /// The version whose pages the kernel may still hold in its page cache.
    pub(super) cached_version: Option<String>,
}

impl Node {
    pub(super) fn fresh(&self, now: Instant) -> bool {
        self.pinned
            || self.local
            || self.spool.is_some()
            || self.fresh_until.is_some_and(|t| t > now)
    }
}

pub(super) struct Inodes {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) children: HashMap<(u64, Arc<str>), u64>,
    pub(super) next: u64,
}

impl Inodes {
    pub(super) fn get(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn get_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, Arc::from(name))).copied()
    }

    /// The key of an inode inside its volume ("" for a volume's root).
    pub(super) fn key(&self, ino: u64) -> Result<(usize, String)> {
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
    pub(super) fn upsert(&mut self, parent: u64, name: &str, kind: Kind) -> Result<u64> {
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
    pub(super) fn detach(&mut self, ino: u64) {
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
    pub(super) fn maybe_drop(&mut self, ino: u64) {
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

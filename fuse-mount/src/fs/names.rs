//! Changes to names: create, mkdir, unlink, rmdir, rename, truncate.

use super::*;

impl Fs {
    /// Creates a file and opens it for writing.
    pub async fn create(&self, parent: u64, name: &str) -> Result<(Attr, Opened)> {
        check_name(name)?;
        let (volume, key) = self.child_key(parent, name)?;
        self.writable_audited(volume, &key)?;
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
        if let Some(a) = &self.audit {
            a.opened(fh, true, &self.volume(volume).name, &key);
        }
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: false,
                whole: None,
            },
        ))
    }

    pub(super) fn child_key(&self, parent: u64, name: &str) -> Result<(usize, String)> {
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
    pub(super) async fn exists(&self, parent: u64, name: &str) -> Result<bool> {
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
    pub(super) async fn resolve(&self, parent: u64, name: &str) -> Result<u64> {
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
    pub(super) async fn is_empty_dir(&self, ino: u64, volume: usize, key: &str) -> Result<bool> {
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
        if v.lister.is_none() {
            // Through the dataplane: the folder's marker (`key/`, made by an S3 client) goes too.
            let marker = path(&format!("{key}/{}", archway_dataplane::key::MARKER))?;
            match v.store.delete(&marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(FsError::store(&v.name, &key, "delete", e)),
            }
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
                    {
                        let mut t = self.inodes();
                        if spool.handles.fetch_sub(1, Ordering::AcqRel) == 1
                            && let Ok(node) = t.get_mut(ino)
                            && node.spool.as_ref().is_some_and(|s| Arc::ptr_eq(s, &spool))
                        {
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

//! Open files: reads pinned to the version seen at open, writes into a spool uploaded on close
//! through the dataplane's write path.

use super::*;

impl Fs {
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
            self.writable_audited(volume, &key)?;
            let spool = self.spool_for(ino, volume, &key, mode.truncate).await?;
            let fh = self.new_fh(Handle::Write { ino, spool });
            if let Some(a) = &self.audit {
                a.opened(fh, true, &self.volume(volume).name, &key);
            }
            return Ok(Opened {
                fh,
                keep_cache: false,
                whole: None,
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
        let (version, keep_cache, size, local) = {
            let t = self.inodes();
            let node = t.get(ino)?;
            let version = node.etag.clone();
            let keep_cache =
                version.is_some() && node.spool.is_none() && node.cached_version == version;
            // Read through the mount while this mount writes the file (its spool answers).
            (
                version,
                keep_cache,
                node.size,
                node.local || node.spool.is_some(),
            )
        };
        let whole = match (&self.whole, &version, &self.volume(volume).origin) {
            (Some(copies), Some(v), Some(origin))
                if !local && self.audit.is_none() && self.passthrough() && copies.takes(size) =>
            {
                copies.get(volume, &key, v, size, origin).await
            }
            _ => None,
        };
        // The version whose pages the kernel may keep at the next open: a handle reading a
        // copy fills none of them (the kernel caches the copy's pages instead), so after one
        // the next open through the mount starts with an empty page cache.
        if let Ok(node) = self.inodes().get_mut(ino) {
            node.cached_version = if whole.is_some() {
                None
            } else {
                version.clone()
            };
        }
        let fh = self.new_fh(Handle::Read { ino, version, size });
        if let Some(a) = &self.audit {
            a.opened(fh, false, &self.volume(volume).name, &key);
        }
        Ok(Opened {
            fh,
            keep_cache,
            whole,
        })
    }

    /// [`Fs::writable`], with a refusal kept in the audit trail (the open that never got a
    /// handle).
    pub(super) fn writable_audited(&self, volume: usize, key: &str) -> Result<()> {
        let r = self.writable(volume);
        if let (Some(a), Err(e)) = (&self.audit, &r) {
            a.refused(&self.volume(volume).name, key, e);
        }
        r
    }

    pub(super) async fn getattr_refresh(&self, ino: u64) -> Result<Attr> {
        if let Ok(node) = self.inodes().get_mut(ino) {
            node.fresh_until = None;
        }
        self.getattr(ino).await
    }

    /// The spool of a file opened for writing, shared by every handle writing it; filled with
    /// the current content unless the open truncates.
    pub(super) async fn spool_for(
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
            // Counted under the table's lock, as `release` uncounts: a spool whose last handle
            // is being released is either still the node's (and kept) or already gone.
            let existing = node.spool.clone();
            if let Some(spool) = &existing {
                spool.handles.fetch_add(1, Ordering::AcqRel);
            }
            (existing, node.local, node.size)
        };
        if let Some(spool) = existing {
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
        let other = {
            let mut t = self.inodes();
            let node = t.get_mut(ino)?;
            match &node.spool {
                // Another open may have raced us to it: share theirs.
                Some(other) => {
                    other.handles.fetch_add(1, Ordering::AcqRel);
                    other.clone()
                }
                None => {
                    node.spool = Some(spool.clone());
                    node.cached_version = None;
                    return Ok(spool);
                }
            }
        };
        // Sharing theirs, an open that truncates still truncates.
        if truncate {
            other.set_len(0).await.map_err(spool_error)?;
        }
        Ok(other)
    }

    pub(super) async fn download(&self, volume: usize, key: &str, spool: &Spool) -> Result<()> {
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
        let r = self.read_at(fh, offset, size).await;
        if let (Some(a), Ok(data)) = (&self.audit, &r) {
            a.moved(fh, data.len() as u64, 0);
        }
        r
    }

    async fn read_at(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
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
        if let Some(a) = &self.audit {
            a.moved(fh, 0, n as u64);
        }
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
        let r = self.release_handle(fh).await;
        if let Some(a) = &self.audit {
            a.released(fh, &r);
        }
        r
    }

    async fn release_handle(&self, fh: u64) -> Result<()> {
        let handle = self.handles().remove(&fh);
        let Some(Handle::Write { ino, spool }) = handle else {
            return Ok(());
        };
        let result = self.upload(ino, &spool).await;
        let mut t = self.inodes();
        // Uncounted under the table's lock, so an open sharing this spool cannot count itself
        // in between and be left writing to a spool no node holds.
        if spool.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
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
        drop(t);
        result
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles().remove(&fh);
    }

    /// Uploads a spool to the file's current key, if anything changed since the last upload.
    pub(super) async fn upload(&self, ino: u64, spool: &Arc<Spool>) -> Result<()> {
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
    pub(super) async fn put_spool(
        &self,
        volume: usize,
        key: &str,
        spool: &Spool,
    ) -> Result<Option<String>> {
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
            &archway_dataplane::PutRequest::default(),
            shape,
        )
        .await
        .map_err(|e| FsError::write(&v.name, key, e))?;
        self.metrics.uploaded_bytes.inc_by(written.size);
        Ok(written.e_tag)
    }
}

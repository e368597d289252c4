//! Directories: one level of a volume listed page by page, and the streams the kernel reads.

use super::*;
use archway_dataplane::key::MARKER;

/// One entry as a listing gave it.
#[derive(Clone, Debug)]
pub(super) struct Listed {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    pub(super) etag: Option<String>,
}

/// The state of one open directory: a window of entries, refilled page by page.
pub(super) struct DirStream {
    pub(super) ino: u64,
    pub(super) volume: usize,
    /// The listing prefix: the directory's key and '/', or "" for a volume's root.
    pub(super) prefix: String,
    /// Entries not on the backend yet (made in this mount), listed first.
    pub(super) local: Vec<Listed>,
    /// Entries from `position` on (index 0 is ".", 1 is "..").
    pub(super) window: VecDeque<Listed>,
    pub(super) position: u64,
    pub(super) token: Option<String>,
    pub(super) done: bool,
    pub(super) started: bool,
}

impl Fs {
    /// One page of a directory level: (entries, token of the next page).
    pub(super) async fn list_page(
        &self,
        volume: usize,
        prefix: &str,
        token: Option<String>,
        max: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let (entries, next, _) = self.list_level(volume, prefix, token, max).await?;
        Ok((entries, next))
    }

    /// [`Fs::list_page`], and whether anything at all lies below `prefix`: a folder that holds
    /// only its folder marker exists, though it lists no entries.
    pub(super) async fn list_level(
        &self,
        volume: usize,
        prefix: &str,
        token: Option<String>,
        max: usize,
    ) -> Result<(Vec<Listed>, Option<String>, bool)> {
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
                Err(object_store::Error::NotFound { .. }) => return Ok((Vec::new(), None, false)),
                Err(e) => return Err(list_error(e)),
            }
        };
        let (list, next) = result;
        let anything = !list.objects.is_empty() || !list.common_prefixes.is_empty();
        let mut out = Vec::with_capacity(list.objects.len() + list.common_prefixes.len());
        let name_of = |full: &str| -> Option<String> {
            let rest = full.strip_prefix(prefix)?.trim_end_matches('/');
            // A folder marker (`dir/␠`) is the directory itself, no entry of it.
            (!rest.is_empty() && !rest.contains('/') && rest != MARKER).then(|| rest.to_string())
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
        Ok((out, next, anything))
    }

    pub(super) fn new_fh(&self, handle: Handle) -> u64 {
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
    pub(super) fn restart(&self, s: &mut DirStream) -> Result<()> {
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

    pub(super) async fn fill(&self, s: &mut DirStream) -> Result<()> {
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
}

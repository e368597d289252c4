//! Archway's own store for local and NFS file trees (`file://` backends).
//!
//! object_store's `LocalFileSystem` follows symbolic links, so a link planted in a volume's
//! folder (`demo/etc-link -> /etc`) served whatever the gateway process could read. This store
//! is contained: every path is resolved beneath the backend's root by the kernel
//! (`resolve.rs`), symbolic links are not followed and not listed (with `links = "inside"`,
//! followed and listed only while they stay beneath the root), and a link swapped in during a
//! request cannot redirect it, because nothing is checked and then opened by name. It lists in
//! key order and resumes from any key without reading the rest of the tree (`walk.rs`), and
//! writes atomically: into a staging file in the target's directory (named with a control
//! character, so that no key can ever name or list it) renamed into place when complete.
//!
//! Every call runs on a blocking thread; a read of up to 256 KiB is done there with the open,
//! longer ones stream from the open file. Errors name keys, never the server's paths.

mod kept;
mod resolve;
mod walk;

use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::TreeConflict;
use crate::write::ContentEtag;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode, UploadPart,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use kept::Kept;
use md5::{Digest, Md5};
use resolve::{Root, split};

/// What a file backend does with symbolic links in its tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Links {
    /// Never followed, never listed: a link is no object.
    #[default]
    Skip,
    /// Followed while the target stays beneath the backend's root; links that lead out of it
    /// are no objects.
    Inside,
}

const STORE: &str = "PosixStore";

/// Objects listed per trip to a blocking thread. The first trip reads one more: a listing
/// page (1000 keys unless asked for fewer, `listing.rs`) and the key that proves there is a
/// next one, so that a page reads the attributes of no file it does not return.
const LIST_BATCH: usize = 1000;
/// Reads of at most this many bytes are done with the open, in one blocking call; longer ones
/// are streamed from the open file.
const INLINE_READ: u64 = 256 * 1024;

/// A file tree as an object store; see the module documentation.
#[derive(Debug, Clone)]
pub struct PosixStore {
    root: Arc<Root>,
    path: Arc<PathBuf>,
}

impl std::fmt::Display for PosixStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PosixStore({})", self.path.display())
    }
}

/// The error for `errno` on `key`: a link, an escape or a directory where an object was asked
/// for is no object.
fn error(key: &str, errno: Errno) -> object_store::Error {
    let source = Box::new(std::io::Error::from(errno));
    match errno {
        Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV | Errno::ISDIR => {
            object_store::Error::NotFound {
                path: key.to_string(),
                source,
            }
        }
        Errno::ACCESS | Errno::PERM => object_store::Error::PermissionDenied {
            path: key.to_string(),
            source,
        },
        Errno::EXIST => object_store::Error::AlreadyExists {
            path: key.to_string(),
            source,
        },
        _ => object_store::Error::Generic {
            store: STORE,
            source: format!("`{key}`: {}", std::io::Error::from(errno)).into(),
        },
    }
}

/// The folder a folder marker's path stands for (`a/b` for `a/b/␠`, see `crate::key`).
fn marker_folder(path: &str) -> Option<&str> {
    path.strip_suffix(crate::key::MARKER)?.strip_suffix('/')
}

/// The MD5 of no bytes: a folder marker's ETag unless its writer gave one.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The attributes a folder marker shows: no bytes, and the time it was marked.
fn marker_stat(dir: &Stat, kept: &Kept) -> Stat {
    let mut st = *dir;
    st.st_size = 0;
    st.st_mtime = kept.mtime.0 as _;
    st.st_mtime_nsec = kept.mtime.1 as _;
    st
}

/// The metadata of the folder marker `key` on a directory with attributes `dir`.
fn marker_meta(key: &str, dir: &Stat, kept: &Kept) -> Option<ObjectMeta> {
    meta_of(
        key,
        &marker_stat(dir, kept),
        Some(kept.etag.as_deref().unwrap_or(EMPTY_MD5)),
    )
}

/// An object's metadata from its file's attributes. The ETag is the one recorded when Archway
/// wrote the file (`etag`, see `kept.rs`), else inode, modification time and size, as
/// object_store's local store (and many HTTP servers) make it, and the status-change time: a
/// file rewritten in place with its size and modification time put back (`cp -p`, `touch -r`)
/// still gets a new version, which no one but the kernel can set.
pub(super) fn meta_of(key: &str, st: &Stat, etag: Option<&str>) -> Option<ObjectMeta> {
    let nanos = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    let micros = (nanos / 1000).max(0) as u128;
    let last_modified =
        chrono::DateTime::from_timestamp_nanos(nanos.clamp(0, i64::MAX as i128) as i64);
    Some(ObjectMeta {
        location: Path::parse(key).ok()?,
        last_modified,
        size: st.st_size.max(0) as u64,
        e_tag: Some(match etag {
            Some(e) => e.to_string(),
            None => {
                let changed =
                    i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec);
                format!(
                    "{:x}-{:x}-{:x}-{:x}",
                    st.st_ino,
                    micros,
                    st.st_size,
                    changed.max(0)
                )
            }
        }),
        version: None,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> object_store::Result<T> + Send + 'static,
) -> object_store::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// A fresh staging name: a control character first, so no key can name it and no listing
/// shows it.
fn staging_name() -> String {
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    format!("{STAGING_PREFIX}{}", hex::encode(raw))
}

/// The prefix of every staging file's name.
const STAGING_PREFIX: &str = "\u{1}archway-";

/// How long a staging file stays unmodified before [`PosixStore::sweep_staging`] takes it for
/// the leftover of a write that a crash interrupted. A write in progress modifies its file as
/// its body streams in, and no request outlives `server.request_timeout` (5 minutes by
/// default), so an hour is far past any live one — another replica's on shared storage too.
pub const STAGING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl PosixStore {
    /// Removes the staging files of interrupted writes — unmodified for `max_age` — anywhere
    /// in the tree; returns how many went. Never follows a link, and touches nothing but
    /// files named as staging files. Blocking.
    pub fn sweep_staging(&self, max_age: std::time::Duration) -> std::io::Result<usize> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let cutoff = now - max_age.as_secs() as i64;
        let mut removed = 0;
        let mut dirs = vec![self.root.dir("", false)?];
        while let Some(dir) = dirs.pop() {
            for entry in rustix::fs::Dir::read_from(&dir)? {
                let Ok(entry) = entry else { continue };
                let Ok(name) = entry.file_name().to_str() else {
                    continue;
                };
                if name == "." || name == ".." {
                    continue;
                }
                match entry.file_type() {
                    FileType::Directory if walk::nameable(name) => {
                        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
                        if let Ok(fd) = rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                            dirs.push(fd);
                        }
                    }
                    FileType::RegularFile | FileType::Unknown
                        if name.starts_with(STAGING_PREFIX) =>
                    {
                        let stale = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|st| {
                                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                                    && st.st_mtime < cutoff
                            });
                        if stale && rustix::fs::unlinkat(&dir, name, AtFlags::empty()).is_ok() {
                            removed += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(removed)
    }

    /// The tree at `path`, which must be a directory. Blocking.
    pub fn new(path: &std::path::Path, links: Links) -> std::io::Result<Self> {
        let root = Root::open(path, links).map_err(|e| {
            if e == Errno::NOSYS {
                std::io::Error::other(
                    "links = \"inside\" needs openat2 (Linux 5.6 or later, not filtered by a sandbox)",
                )
            } else {
                std::io::Error::from(e)
            }
        })?;
        Ok(Self {
            root: Arc::new(root),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The regular file at `key`, opened for reading, with its file attributes and what
    /// Archway keeps with it.
    fn open_object(root: &Root, key: &str) -> object_store::Result<(OwnedFd, Stat, Kept)> {
        let fd = root
            .open_at(key, OFlags::RDONLY, Mode::empty())
            .map_err(|e| error(key, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| error(key, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(error(key, Errno::NOENT));
        }
        let kept = Kept::read(&fd);
        Ok((fd, st, kept))
    }

    /// Records `kept` (with `etag`, the MD5 of the content unless given) with the staging file
    /// `file`, and answers the object's ETag.
    fn keep(
        file: &std::fs::File,
        key: &str,
        kept: Kept,
        etag: String,
    ) -> object_store::Result<Option<String>> {
        let st = rustix::fs::fstat(file).map_err(|e| error(key, e))?;
        let kept = kept.with_etag(Some(etag), &st);
        kept.write(file).map_err(|e| error(key, e))?;
        // Read back: a file system without extended attributes keeps no ETag.
        let kept = Kept::read(file);
        Ok(meta_of(key, &st, kept.etag_for(&st)).and_then(|m| m.e_tag))
    }

    /// The directory `folder` beneath the root for writing `key`, made (with the folders above
    /// it) if missing. A file on the way is an object where a folder would have to be.
    fn folder(root: &Root, folder: &str, key: &str) -> object_store::Result<OwnedFd> {
        root.dir(folder, true).map_err(|e| match e {
            Errno::NOTDIR | Errno::EXIST => match Self::object_above(root, key) {
                Some(up) => TreeConflict::ParentIsObject { up }.error(key),
                None => error(key, e),
            },
            e => error(key, e),
        })
    }

    /// How many segments above `key` the first regular file on its way lies, if one does.
    fn object_above(root: &Root, key: &str) -> Option<usize> {
        let parts: Vec<&str> = resolve::components(key).collect();
        for i in 0..parts.len().saturating_sub(1) {
            let fd = root
                .open_at(&parts[..=i].join("/"), OFlags::PATH, Mode::empty())
                .ok()?;
            let st = rustix::fs::fstat(&fd).ok()?;
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                return Some(parts.len() - 1 - i);
            }
        }
        None
    }

    /// The directory that will hold `key` (made if missing) and the name in it.
    fn parent_of(root: &Root, key: &str) -> object_store::Result<(OwnedFd, String)> {
        let (parent, name) = split(key);
        Ok((Self::folder(root, parent, key)?, name.to_string()))
    }

    /// The directory of the folder marker `key` (at `folder`), with its record: not found
    /// unless it is marked.
    fn marked(root: &Root, folder: &str, key: &str) -> object_store::Result<(OwnedFd, Stat, Kept)> {
        let dir = root.dir(folder, false).map_err(|e| error(key, e))?;
        let kept = Kept::read(&dir);
        if !kept.marker {
            return Err(error(key, Errno::NOENT));
        }
        let st = rustix::fs::fstat(&dir).map_err(|e| error(key, e))?;
        Ok((dir, st, kept))
    }

    /// Makes `folder` (and the folders above it) and marks it as the folder marker `key`.
    fn mark(
        root: &Root,
        folder: &str,
        key: &str,
        kept: &Kept,
        mode: &PutMode,
    ) -> object_store::Result<()> {
        let dir = Self::folder(root, folder, key)?;
        if let PutMode::Update(version) = mode {
            let current = Kept::read(&dir);
            let etag = current
                .marker
                .then(|| current.etag.unwrap_or_else(|| EMPTY_MD5.to_string()));
            if etag.is_none() || etag != version.e_tag {
                return Err(object_store::Error::Precondition {
                    path: key.to_string(),
                    source: "the object changed (or is gone) since the version given".into(),
                });
            }
        }
        kept.mark(&dir, matches!(mode, PutMode::Create))
            .map_err(|e| match e {
                Errno::OPNOTSUPP => object_store::Error::NotSupported {
                    source: format!(
                        "`{key}`: this backend's file system keeps no extended attributes, \
                         which folder markers need"
                    )
                    .into(),
                },
                e => error(key, e),
            })
    }

    /// Whether `name` in `dir` is a directory (not following a link).
    fn is_folder(dir: &OwnedFd, name: &str) -> bool {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    }

    /// Removes the folder `name` in `dir` if it is empty and no folder marker.
    fn remove_empty_folder(dir: &OwnedFd, name: &str) -> bool {
        let Ok(sub) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        if Kept::read(&sub).marker {
            return false;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).is_ok()
    }

    /// Moves the staging file `tmp` over `name` in `dir` (without replacing, for `create`).
    fn commit(
        dir: &OwnedFd,
        tmp: &str,
        name: &str,
        key: &str,
        create: bool,
    ) -> object_store::Result<()> {
        let flags = if create {
            RenameFlags::NOREPLACE
        } else {
            RenameFlags::empty()
        };
        let mut moved = rustix::fs::renameat_with(dir, tmp, dir, name, flags);
        // An empty folder (left by a tool, no marker) is no object: it makes way.
        if matches!(moved, Err(Errno::ISDIR | Errno::EXIST | Errno::NOTEMPTY))
            && Self::is_folder(dir, name)
            && Self::remove_empty_folder(dir, name)
        {
            moved = rustix::fs::renameat_with(dir, tmp, dir, name, flags);
        }
        match moved {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, tmp, AtFlags::empty());
                Err(match e {
                    _ if Self::is_folder(dir, name) => TreeConflict::IsFolder.error(key),
                    Errno::EXIST if create => error(key, Errno::EXIST),
                    e => error(key, e),
                })
            }
        }
    }

    /// Removes the now empty folders above `key`, as far as they are empty and no folder
    /// markers.
    fn prune(root: &Root, key: &str) {
        let parts: Vec<&str> = resolve::components(key).collect();
        for depth in (1..parts.len()).rev() {
            let parent = parts[..depth - 1].join("/");
            let Ok(dir) = root.dir(&parent, false) else {
                return;
            };
            if !Self::remove_empty_folder(&dir, parts[depth - 1]) {
                return;
            }
        }
    }

    /// A copy from or to a folder marker: a marker copies to an empty object and back.
    fn copy_marker(root: &Root, src: &str, dst: &str, create: bool) -> object_store::Result<()> {
        let (kept, size) = match marker_folder(src) {
            Some(folder) => (Self::marked(root, folder, src)?.2, 0),
            None => {
                let (_, st, kept) = Self::open_object(root, src)?;
                (kept, st.st_size.max(0) as u64)
            }
        };
        match marker_folder(dst) {
            Some(folder) => {
                if size > 0 {
                    return Err(TreeConflict::MarkerHoldsBytes.error(dst));
                }
                let mode = if create {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                };
                Self::mark(
                    root,
                    folder,
                    dst,
                    &Kept::marker(kept.attrs, EMPTY_MD5.to_string()),
                    &mode,
                )
            }
            None => {
                let (dir, name) = Self::parent_of(root, dst)?;
                let (tmp, out) = Self::create_staging(&dir, dst)?;
                let record = Kept {
                    attrs: kept.attrs,
                    ..Default::default()
                };
                if let Err(e) = Self::keep(&out, dst, record, EMPTY_MD5.to_string()) {
                    let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                    return Err(e);
                }
                Self::commit(&dir, &tmp, &name, dst, create)
            }
        }
    }

    fn create_staging(dir: &OwnedFd, key: &str) -> object_store::Result<(String, std::fs::File)> {
        let tmp = staging_name();
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| error(key, e))?;
        Ok((tmp, std::fs::File::from(fd)))
    }
}

#[async_trait]
impl ObjectStore for PosixStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let root = self.root.clone();
        let key = location.as_ref().to_string();
        blocking(move || {
            if let Some(folder) = marker_folder(&key) {
                if payload.content_length() > 0 {
                    return Err(TreeConflict::MarkerHoldsBytes.error(&key));
                }
                let etag = opts
                    .extensions
                    .get::<ContentEtag>()
                    .map_or_else(|| EMPTY_MD5.to_string(), |e| e.0.clone());
                let kept = Kept::marker(Kept::new(&opts.attributes).attrs, etag.clone());
                Self::mark(&root, folder, &key, &kept, &opts.mode)?;
                return Ok(PutResult {
                    e_tag: Some(etag),
                    version: None,
                    extensions: Default::default(),
                });
            }
            let (dir, name) = Self::parent_of(&root, &key)?;
            if let PutMode::Update(version) = &opts.mode {
                let current = match Self::open_object(&root, &key) {
                    Ok((_, st, kept)) => {
                        meta_of(&key, &st, kept.etag_for(&st)).and_then(|m| m.e_tag)
                    }
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                if current.is_none() || current != version.e_tag {
                    return Err(object_store::Error::Precondition {
                        path: key,
                        source: "the object changed (or is gone) since the version given".into(),
                    });
                }
            }
            let given = opts.extensions.get::<ContentEtag>().map(|e| e.0.clone());
            let (tmp, file) = Self::create_staging(&dir, &key)?;
            let written = (|| {
                let mut md5 = Md5::new();
                let mut at = 0u64;
                for chunk in payload.iter() {
                    file.write_all_at(chunk, at)?;
                    if given.is_none() {
                        md5.update(chunk);
                    }
                    at += chunk.len() as u64;
                }
                let etag = given.clone().unwrap_or_else(|| hex::encode(md5.finalize()));
                Self::keep(&file, &key, Kept::new(&opts.attributes), etag)
                    .map_err(std::io::Error::other)
            })();
            let e_tag = match written {
                Ok(e) => e,
                Err(e) => {
                    let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source: format!("writing `{key}`: {e}").into(),
                    });
                }
            };
            Self::commit(
                &dir,
                &tmp,
                &name,
                &key,
                matches!(opts.mode, PutMode::Create),
            )?;
            Ok(PutResult {
                e_tag,
                version: None,
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let kept = Kept::new(&opts.attributes);
        let given = opts.extensions.get::<ContentEtag>().map(|e| e.0.clone());
        let root = self.root.clone();
        let key = location.as_ref().to_string();
        if marker_folder(&key).is_some() {
            return Err(TreeConflict::MarkerHoldsBytes.error(&key));
        }
        let upload = blocking(move || {
            let (dir, name) = Self::parent_of(&root, &key)?;
            let (tmp, file) = Self::create_staging(&dir, &key)?;
            Ok(PosixUpload {
                dir: Arc::new(dir),
                tmp,
                name,
                key,
                file: Arc::new(file),
                next: Arc::new(AtomicU64::new(0)),
                kept,
                given,
                done: false,
            })
        })
        .await?;
        Ok(Box::new(upload))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let root = self.root.clone();
        let key = location.as_ref().to_string();
        let shown = self.path.join(&key);
        blocking(move || {
            if let Some(folder) = marker_folder(&key) {
                let (_, st, kept) = Self::marked(&root, folder, &key)?;
                let meta =
                    marker_meta(&key, &st, &kept).ok_or_else(|| error(&key, Errno::NOENT))?;
                options.check_preconditions(&meta)?;
                if let Some(r) = &options.range {
                    r.as_range(0).map_err(|e| object_store::Error::Generic {
                        store: STORE,
                        source: format!("`{key}`: {e}").into(),
                    })?;
                }
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                    meta,
                    range: 0..0,
                    attributes: kept.attributes(),
                    extensions: Default::default(),
                });
            }
            let (fd, st, kept) = Self::open_object(&root, &key)?;
            let meta =
                meta_of(&key, &st, kept.etag_for(&st)).ok_or_else(|| error(&key, Errno::NOENT))?;
            options.check_preconditions(&meta)?;
            let range = match &options.range {
                Some(r) => r
                    .as_range(meta.size)
                    .map_err(|e| object_store::Error::Generic {
                        store: STORE,
                        source: format!("`{key}`: {e}").into(),
                    })?,
                None => 0..meta.size,
            };
            let file = std::fs::File::from(fd);
            let len = range.end - range.start;
            let payload = if options.head || len == 0 {
                GetResultPayload::Stream(futures::stream::empty().boxed())
            } else if len <= INLINE_READ {
                // Read here, on the blocking thread that opened the file: a small GET makes
                // one hand-over to a blocking thread, not one for the open, the seek and each
                // read (those hand-overs were most of a 64 KiB GET's CPU).
                let data = read_range(&file, &key, &range)?;
                GetResultPayload::Stream(futures::stream::once(async { Ok(data) }).boxed())
            } else {
                GetResultPayload::File(file, shown)
            };
            Ok(GetResult {
                payload,
                meta,
                range,
                attributes: kept.attributes(),
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let root = self.root.clone();
        let key = location.as_ref().to_string();
        let ranges = ranges.to_vec();
        blocking(move || {
            if let Some(folder) = marker_folder(&key) {
                Self::marked(&root, folder, &key)?;
                return ranges
                    .iter()
                    .map(|r| match r.end {
                        0 => Ok(Bytes::new()),
                        _ => Err(object_store::Error::Generic {
                            store: STORE,
                            source: format!("`{key}`: range {r:?} outside its 0 bytes").into(),
                        }),
                    })
                    .collect();
            }
            let (fd, st, _) = Self::open_object(&root, &key)?;
            let size = st.st_size.max(0) as u64;
            let file = std::fs::File::from(fd);
            ranges
                .iter()
                .map(|r| {
                    if r.end > size || r.start > r.end {
                        return Err(object_store::Error::Generic {
                            store: STORE,
                            source: format!("`{key}`: range {r:?} outside its {size} bytes").into(),
                        });
                    }
                    read_range(&file, &key, r)
                })
                .collect()
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let root = self.root.clone();
        locations
            .then(move |location| {
                let root = root.clone();
                async move {
                    let location = location?;
                    let key = location.as_ref().to_string();
                    blocking(move || {
                        if let Some(folder) = marker_folder(&key) {
                            let (dir, _, _) = Self::marked(&root, folder, &key)?;
                            Kept::unmark(&dir).map_err(|e| error(&key, e))?;
                            drop(dir);
                            Self::prune(&root, &key);
                            return Ok(());
                        }
                        let (parent, name) = split(&key);
                        let dir = root.dir(parent, false).map_err(|e| error(&key, e))?;
                        rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                            .map_err(|e| error(&key, e))?;
                        Self::prune(&root, &key);
                        Ok(())
                    })
                    .await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.walk(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.walk(prefix, Some(offset.as_ref().to_string()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        // The whole level: every key of it begins with "" and sorts after "".
        self.list_level(prefix, "", "", usize::MAX).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let root = self.root.clone();
        let (src, dst) = (from.as_ref().to_string(), to.as_ref().to_string());
        let create = matches!(options.mode, CopyMode::Create);
        blocking(move || {
            if marker_folder(&src).is_some() || marker_folder(&dst).is_some() {
                return Self::copy_marker(&root, &src, &dst, create);
            }
            let (src_fd, src_st, kept) = Self::open_object(&root, &src)?;
            let (dir, name) = Self::parent_of(&root, &dst)?;
            let (tmp, out) = Self::create_staging(&dir, &dst)?;
            let copied = copy_bytes(&src_fd, &out).and_then(|()| {
                // The same bytes: the same ETag (computed now if the source had none).
                let etag = match kept.etag_for(&src_st) {
                    Some(e) => e.to_string(),
                    None => md5_of(&out)?,
                };
                Self::keep(&out, &dst, kept, etag)
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            });
            if let Err(e) = copied {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                return Err(object_store::Error::Generic {
                    store: STORE,
                    source: format!("copying `{src}` to `{dst}`: {e}").into(),
                });
            }
            Self::commit(&dir, &tmp, &name, &dst, create)
        })
        .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let root = self.root.clone();
        let (src, dst) = (from.as_ref().to_string(), to.as_ref().to_string());
        let create = matches!(options.target_mode, RenameTargetMode::Create);
        let markers = marker_folder(&src).is_some() || marker_folder(&dst).is_some();
        let moved = !markers
            && blocking({
                let root = root.clone();
                let (src, dst) = (src.clone(), dst.clone());
                move || {
                    // The source must be an object (not a link, not a folder).
                    drop(Self::open_object(&root, &src)?);
                    let (sparent, sname) = split(&src);
                    let sdir = root.dir(sparent, false).map_err(|e| error(&src, e))?;
                    let (ddir, dname) = Self::parent_of(&root, &dst)?;
                    let flags = if create {
                        RenameFlags::NOREPLACE
                    } else {
                        RenameFlags::empty()
                    };
                    match rustix::fs::renameat_with(&sdir, sname, &ddir, dname.as_str(), flags) {
                        Ok(()) => {
                            Self::prune(&root, &src);
                            Ok(true)
                        }
                        // Another file system (a mount inside the tree): copy, then delete.
                        Err(Errno::XDEV) => Ok(false),
                        Err(Errno::EXIST) if create => Err(error(&dst, Errno::EXIST)),
                        Err(Errno::ISDIR | Errno::NOTEMPTY) => {
                            Err(TreeConflict::IsFolder.error(&dst))
                        }
                        Err(e) => Err(error(&src, e)),
                    }
                }
            })
            .await?;
        // Markers, and moves across file systems: copy, then delete.
        if !moved {
            let mode = if create {
                CopyMode::Create
            } else {
                CopyMode::Overwrite
            };
            self.copy_opts(from, to, CopyOptions::new().with_mode(mode))
                .await?;
            object_store::ObjectStoreExt::delete(self, from).await?;
        }
        Ok(())
    }
}

/// Where a listing stream stands.
enum Listing {
    Start(Option<String>),
    Walking(walk::Walk),
    Done,
}

impl PosixStore {
    /// One directory level as a listing with delimiter '/' pages it: the objects (the folder
    /// marker first) and the folders (as common prefixes) directly in `dir`, whose keys begin
    /// with `prefix` and sort after `after`, in key order, at most `limit` of them. The
    /// attributes of only the files returned are read, so a page costs what it returns,
    /// however large the directory. Keys are this store's (beneath its root).
    pub async fn list_level(
        &self,
        dir: Option<&Path>,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> object_store::Result<ListResult> {
        let root = self.root.clone();
        let rel = dir.map(|p| p.as_ref().to_string()).unwrap_or_default();
        let (prefix, after) = (prefix.to_string(), after.to_string());
        blocking(move || {
            walk::level(&root, &rel, &prefix, &after, limit).map_err(|e| error(&rel, e))
        })
        .await
    }

    /// The objects below `prefix` in key order (after `after`), read a batch at a time on a
    /// blocking thread.
    fn walk(
        &self,
        prefix: Option<&Path>,
        after: Option<String>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = self.root.clone();
        let rel = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        futures::stream::unfold(Listing::Start(after), move |state| {
            let (root, rel) = (root.clone(), rel.clone());
            async move {
                let n = match state {
                    Listing::Start(_) => LIST_BATCH + 1,
                    _ => LIST_BATCH,
                };
                let mut walk = match state {
                    Listing::Done => return None,
                    Listing::Walking(w) => Some(w),
                    Listing::Start(after) => {
                        let started = {
                            let (root, rel) = (root.clone(), rel.clone());
                            blocking(move || {
                                walk::Walk::new(&root, &rel, after).map_err(|e| error(&rel, e))
                            })
                            .await
                        };
                        match started {
                            Ok(w) => Some(w),
                            Err(e) => return Some((vec![Err(e)], Listing::Done)),
                        }
                    }
                }?;
                let r = tokio::task::spawn_blocking(move || {
                    let batch = walk.batch(&root, n);
                    (batch, walk)
                })
                .await;
                match r {
                    Ok((batch, _)) if batch.is_empty() => None,
                    Ok((batch, walk)) => {
                        let failed = batch.iter().any(Result::is_err);
                        let items = batch
                            .into_iter()
                            .map(|m| m.map_err(|e| error(&rel, e)))
                            .collect();
                        let next = if failed {
                            Listing::Done
                        } else {
                            Listing::Walking(walk)
                        };
                        Some((items, next))
                    }
                    Err(e) => Some((vec![Err(e.into())], Listing::Done)),
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }
}

/// Bytes `range` of `key`'s open file, in one read into a new buffer.
fn read_range(file: &std::fs::File, key: &str, range: &Range<u64>) -> object_store::Result<Bytes> {
    crate::read::read_chunk(file, range.start, (range.end - range.start) as usize)
        .map(Bytes::from)
        .map_err(|e| object_store::Error::Generic {
            store: STORE,
            source: format!("reading `{key}`: {e}").into(),
        })
}

/// The hex MD5 of a file's whole content.
fn md5_of(file: &std::fs::File) -> std::io::Result<String> {
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(hex::encode(md5.finalize()));
        }
        md5.update(&buf[..n]);
        at += n as u64;
    }
}

/// Copies every byte of `src` to `out` (the kernel's copy where it can).
fn copy_bytes(src: &OwnedFd, out: &std::fs::File) -> std::io::Result<()> {
    loop {
        match rustix::fs::copy_file_range(src, None, out.as_fd(), None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Across file systems, or where the kernel cannot: read and write.
    let mut input = std::fs::File::from(src.try_clone()?);
    let mut output = out;
    std::io::copy(&mut input, &mut output).map(|_| ())
}

/// A multipart upload into a staging file in the target's directory: parts are written at
/// their offsets as they arrive, and the file is renamed into place on completion.
#[derive(Debug)]
struct PosixUpload {
    dir: Arc<OwnedFd>,
    tmp: String,
    name: String,
    key: String,
    file: Arc<std::fs::File>,
    /// Where the next part starts (parts come in order; their writes may finish in any).
    next: Arc<AtomicU64>,
    /// Attributes to keep, and the ETag when the writer gave one.
    kept: Kept,
    given: Option<String>,
    done: bool,
}

#[async_trait]
impl MultipartUpload for PosixUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let at = self
            .next
            .fetch_add(data.content_length() as u64, Ordering::AcqRel);
        let file = self.file.clone();
        let key = self.key.clone();
        Box::pin(blocking(move || {
            let mut offset = at;
            for chunk in data.iter() {
                file.write_all_at(chunk, offset)
                    .map_err(|e| object_store::Error::Generic {
                        store: STORE,
                        source: format!("writing `{key}`: {e}").into(),
                    })?;
                offset += chunk.len() as u64;
            }
            Ok(())
        }))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (dir, tmp, name, key, file, kept, given) = (
            self.dir.clone(),
            self.tmp.clone(),
            self.name.clone(),
            self.key.clone(),
            self.file.clone(),
            self.kept.clone(),
            self.given.clone(),
        );
        let r = blocking(move || {
            // The whole content's MD5 (read back from the page cache) unless the writer said.
            let etag = match given {
                Some(e) => e,
                None => md5_of(&file).map_err(|e| object_store::Error::Generic {
                    store: STORE,
                    source: format!("reading `{key}` back: {e}").into(),
                })?,
            };
            let e_tag = PosixStore::keep(&file, &key, kept, etag)?;
            PosixStore::commit(&dir, &tmp, &name, &key, false)?;
            Ok(PutResult {
                e_tag,
                version: None,
                extensions: Default::default(),
            })
        })
        .await;
        self.done = true;
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (dir, tmp) = (self.dir.clone(), self.tmp.clone());
        self.done = true;
        blocking(
            move || match rustix::fs::unlinkat(&*dir, tmp.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(object_store::Error::Generic {
                    store: STORE,
                    source: format!("removing a staging file: {}", std::io::Error::from(e)).into(),
                }),
            },
        )
        .await
    }
}

impl Drop for PosixUpload {
    fn drop(&mut self) {
        if !self.done {
            // Neither completed nor aborted: the staging file goes (one quick unlink).
            let _ = rustix::fs::unlinkat(&*self.dir, self.tmp.as_str(), AtFlags::empty());
        }
    }
}

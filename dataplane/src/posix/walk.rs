//! Listing a file tree as object keys: in key order, resumable from any key, one directory
//! read at a time.
//!
//! Keys sort as strings, so a directory `a` sorts as `a/` among its siblings (`a-b` comes
//! before `a/c`): entries are ordered by their name with a '/' after directories, and a walk
//! descends into a directory only when keys past the resume point can lie below it. Memory is
//! one sorted directory per level of depth. Symbolic links are left out (with
//! `links = "inside"`: listed as what they point to, when that stays beneath the root), and so
//! is every name that no key can spell (control characters, the store's own staging files, not
//! UTF-8).

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::kept::Kept;
use super::resolve::Root;
use super::{Links, marker_stat, meta_of};

/// One entry of a directory, as a listing sees it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) found: Found,
}

/// What a directory entry is.
#[derive(Debug, Clone)]
pub(super) enum Found {
    /// A directory: its keys lie below it.
    Dir,
    /// A regular file (by the directory's own record of its type), not yet looked at: a
    /// listing asks for its attributes only when it hands the object out, so a page of 1000
    /// keys costs 1000 `statx`, however large the directory.
    File,
    /// An object, with its attributes and recorded ETag (when that is for the file as it is).
    Object(Stat, Option<String>),
}

impl Entry {
    /// The entry's place among its siblings in key order.
    fn sort_key(&self) -> String {
        match self.found {
            Found::Dir => format!("{}/", self.name),
            _ => self.name.clone(),
        }
    }

    /// The object this entry is, with its attributes (None: a directory, or a file gone or
    /// no longer a file since the directory was read).
    pub(super) fn object(
        self,
        dir: &OwnedFd,
    ) -> rustix::io::Result<Option<(Stat, Option<String>)>> {
        match self.found {
            Found::Dir => Ok(None),
            Found::File => object(dir, &self.name),
            Found::Object(st, etag) => Ok(Some((st, etag))),
        }
    }
}

/// Whether a file name can be a key segment (see `crate::key`): staging files and names with
/// control characters cannot.
pub(super) fn nameable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.chars().any(char::is_control)
}

/// The entries of the directory `dir` (at `rel` beneath the root), in key order. Regular
/// files are [`Found::File`]: their attributes are read when they are listed.
pub(super) fn read_dir(root: &Root, dir: &OwnedFd, rel: &str) -> rustix::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if !nameable(name) {
            continue;
        }
        let name = name.to_string();
        let kind = entry.file_type();
        // A file named like a folder marker's last segment is no key's.
        if name == crate::key::MARKER && kind != FileType::Directory {
            continue;
        }
        let found = match kind {
            FileType::Directory => Some(Found::Dir),
            FileType::RegularFile => Some(Found::File),
            FileType::Symlink if root.links() == Links::Skip => None,
            // A link (followed only beneath the root), or a file system that does not say.
            _ => classify(root, dir, rel, &name, kind)?,
        };
        // None: gone since the directory was read, or nothing a key can reach.
        if let Some(found) = found {
            out.push(Entry { name, found });
        }
    }
    out.sort_by_cached_key(Entry::sort_key);
    Ok(out)
}

/// The folder marker of the directory `dir`, as its first entry, if it is marked.
pub(super) fn marker_entry(dir: &OwnedFd) -> Option<Entry> {
    let kept = Kept::read(dir);
    if !kept.marker {
        return None;
    }
    let st = rustix::fs::fstat(dir).ok()?;
    Some(Entry {
        name: crate::key::MARKER.to_string(),
        found: Found::Object(
            marker_stat(&st, &kept),
            Some(
                kept.etag
                    .clone()
                    .unwrap_or_else(|| super::EMPTY_MD5.to_string()),
            ),
        ),
    })
}

/// A regular file's attributes and recorded ETag (None when it is gone, or no longer a file).
///
/// One `statx` per file: the recorded ETag comes from [`ETAGS`] while the file's change time
/// says it is the file that was read; only a new or changed file is opened and its record read.
fn object(dir: &OwnedFd, name: &str) -> rustix::io::Result<Option<(Stat, Option<String>)>> {
    #[cfg(test)]
    tests::LOOKED_AT.with(|n| n.set(n.get() + 1));
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    if let Some(etag) = ETAGS.get(&st) {
        return Ok(Some((st, etag)));
    }
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let etag = Kept::read(&fd).etag_for(&st).map(str::to_string);
    ETAGS.put(&st, etag.clone());
    Ok(Some((st, etag)))
}

/// Recorded ETags of files listings have read, by file identity (device, inode) and valid
/// while the file's change time, size and modification time are as they were. Every change to
/// a file — its bytes, its record (an extended attribute), its mode — moves its change time,
/// which no caller can set back; a file replaced by a rename is another inode. Bounded: two
/// generations of at most [`ETAG_MEMO_ENTRIES`] / 2 entries each (about 100 bytes an entry).
static ETAGS: EtagMemo = EtagMemo::new();

/// The most files whose ETags [`ETAGS`] remembers.
pub(super) const ETAG_MEMO_ENTRIES: usize = 131_072;

type FileId = (u64, u64);

/// What a file was when its ETag was read: change time, size, modification time.
type Validity = (i64, i64, i64, i64, i64);

#[derive(Default)]
struct Generations {
    current: std::collections::HashMap<FileId, (Validity, Option<std::sync::Arc<str>>)>,
    previous: std::collections::HashMap<FileId, (Validity, Option<std::sync::Arc<str>>)>,
}

struct EtagMemo(std::sync::Mutex<Option<Generations>>);

impl EtagMemo {
    const fn new() -> Self {
        EtagMemo(std::sync::Mutex::new(None))
    }

    // `stat`'s field types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn id_and_validity(st: &Stat) -> (FileId, Validity) {
        (
            (st.st_dev as u64, st.st_ino as u64),
            (
                st.st_ctime as i64,
                st.st_ctime_nsec as i64,
                st.st_size as i64,
                st.st_mtime as i64,
                st.st_mtime_nsec as i64,
            ),
        )
    }

    /// The remembered ETag of the file `st` describes (Some(None): it has none), if the file
    /// is unchanged since.
    fn get(&self, st: &Stat) -> Option<Option<String>> {
        let (id, validity) = Self::id_and_validity(st);
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let gens = guard.as_mut()?;
        let hit = match gens.current.get(&id) {
            Some((v, etag)) if *v == validity => return Some(etag.as_deref().map(str::to_string)),
            Some(_) => None,
            None => gens.previous.remove(&id).filter(|(v, _)| *v == validity),
        };
        let (v, etag) = hit?;
        let found = etag.as_deref().map(str::to_string);
        Self::insert(gens, id, (v, etag));
        Some(found)
    }

    fn put(&self, st: &Stat, etag: Option<String>) {
        let (id, validity) = Self::id_and_validity(st);
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let gens = guard.get_or_insert_with(Generations::default);
        Self::insert(gens, id, (validity, etag.map(std::sync::Arc::from)));
    }

    fn insert(gens: &mut Generations, id: FileId, value: (Validity, Option<std::sync::Arc<str>>)) {
        if gens.current.len() >= ETAG_MEMO_ENTRIES / 2 {
            gens.previous = std::mem::take(&mut gens.current);
        }
        gens.current.insert(id, value);
    }
}

/// What an entry of unknown type (or a link) is: a directory, an object, or nothing a key can
/// reach (`None`).
fn classify(
    root: &Root,
    dir: &OwnedFd,
    rel: &str,
    name: &str,
    kind: FileType,
) -> rustix::io::Result<Option<Found>> {
    let st = if kind == FileType::Symlink {
        // Through the root, so that a link is followed only while it stays beneath it.
        let full = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        match root.open_at(&full, OFlags::PATH, Mode::empty()) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                    let etag = root
                        .open_at(&full, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
                        .ok()
                        .and_then(|f| Kept::read(&f).etag_for(&st).map(str::to_string));
                    return Ok(Some(Found::Object(st, etag)));
                }
                st
            }
            Err(Errno::NOENT | Errno::LOOP | Errno::XDEV | Errno::NOTDIR | Errno::ACCESS) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    } else {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                return Ok(object(dir, name)?.map(|(st, etag)| Found::Object(st, etag)));
            }
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Some(Found::Dir),
        // Devices, sockets, fifos, links not followed: no object.
        _ => None,
    })
}

/// One directory level as a listing with delimiter '/' pages it (see
/// [`super::PosixStore::list_level`]): `limit` entries of `rel` whose keys begin with `prefix`
/// and sort after `after`, reading the attributes of only the files among them.
pub(super) fn level(
    root: &Root,
    rel: &str,
    prefix: &str,
    after: &str,
    limit: usize,
) -> rustix::io::Result<object_store::ListResult> {
    let mut out = object_store::ListResult {
        common_prefixes: Vec::new(),
        objects: Vec::new(),
        extensions: Default::default(),
    };
    let dir = match root.dir(rel, false) {
        Ok(d) => d,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(out),
        Err(e) => return Err(e),
    };
    let wanted = |key: &str| key.starts_with(prefix) && key > after;
    let entries = read_dir(root, &dir, rel)?;
    let base = if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}/")
    };
    // The folder's own marker: its key is the folder's (`a/b/`), before all in it.
    let marker = (!rel.is_empty() && wanted(&base))
        .then(|| marker_entry(&dir))
        .flatten();
    let mut kept = 0;
    for e in marker.into_iter().chain(entries) {
        if kept >= limit {
            break;
        }
        let name = format!("{base}{}", e.name);
        if matches!(e.found, Found::Dir) {
            if wanted(&format!("{name}/"))
                && let Ok(folder) = object_store::path::Path::parse(&name)
            {
                out.common_prefixes.push(folder);
                kept += 1;
            }
            continue;
        }
        if e.name != crate::key::MARKER && !wanted(&name) {
            continue;
        }
        if let Some((st, etag)) = e.object(&dir)? {
            out.objects.extend(meta_of(&name, &st, etag.as_deref()));
            kept += 1;
        }
    }
    Ok(out)
}

/// One level of a walk: a directory and the entries of it not yet visited.
struct Level {
    fd: OwnedFd,
    rel: String,
    /// The directory's device and inode: a followed link back up the tree is not entered again.
    id: (u64, u64),
    entries: VecDeque<Entry>,
}

/// A walk over every object below a directory, in key order, after an optional key.
pub(super) struct Walk {
    stack: Vec<Level>,
    after: Option<String>,
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

impl Walk {
    /// A walk of the objects below `rel` (a directory; none when it is not one), after the key
    /// `after` when given.
    pub(super) fn new(root: &Root, rel: &str, after: Option<String>) -> rustix::io::Result<Self> {
        let mut walk = Self {
            stack: Vec::new(),
            after,
        };
        match root.dir(rel, false) {
            Ok(fd) => walk.enter(root, fd, rel.to_string())?,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {}
            Err(e) => return Err(e),
        }
        Ok(walk)
    }

    fn enter(&mut self, root: &Root, fd: OwnedFd, rel: String) -> rustix::io::Result<()> {
        let st = rustix::fs::fstat(&fd)?;
        let id = (st.st_dev, st.st_ino);
        // A cycle (a link to a folder above, with `links = "inside"`), or a path no key can
        // be as long as: nothing below is listed.
        if self.stack.iter().any(|l| l.id == id) || rel.len() > crate::key::MAX_KEY_BYTES {
            return Ok(());
        }
        let mut entries: VecDeque<Entry> = read_dir(root, &fd, &rel)?.into();
        // The directory's own folder marker comes first: `a/b/␠` sorts before all in `a/b/`.
        if !rel.is_empty()
            && let Some(marker) = marker_entry(&fd)
        {
            entries.push_front(marker);
        }
        if let Some(after) = &self.after {
            // Only what can hold keys past the resume point.
            entries.retain(|e| {
                let key = join(&rel, &e.name);
                match e.found {
                    Found::Dir => {
                        let below = format!("{key}/");
                        below.as_str() > after.as_str() || after.starts_with(&below)
                    }
                    _ => key.as_str() > after.as_str(),
                }
            });
        }
        self.stack.push(Level {
            fd,
            rel,
            id,
            entries,
        });
        Ok(())
    }

    /// The next object: its key, attributes and recorded ETag.
    pub(super) fn next(
        &mut self,
        root: &Root,
    ) -> Option<rustix::io::Result<(String, Stat, Option<String>)>> {
        loop {
            let level = self.stack.last_mut()?;
            let Some(entry) = level.entries.pop_front() else {
                self.stack.pop();
                continue;
            };
            let key = join(&level.rel, &entry.name);
            match entry.found {
                Found::Object(st, etag) => return Some(Ok((key, st, etag))),
                Found::File => match object(&level.fd, &entry.name) {
                    Ok(Some((st, etag))) => return Some(Ok((key, st, etag))),
                    // Gone, or no longer a file, since the directory was read.
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                },
                Found::Dir => {
                    let sub = root.open_beneath(
                        level.fd.as_fd(),
                        &entry.name,
                        OFlags::RDONLY | OFlags::DIRECTORY,
                        Mode::empty(),
                    );
                    match sub {
                        Ok(fd) => {
                            if let Err(e) = self.enter(root, fd, key) {
                                return Some(Err(e));
                            }
                        }
                        // Gone, or replaced by a link, since the directory was read.
                        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }

    /// Up to `n` objects, as object metadata.
    pub(super) fn batch(
        &mut self,
        root: &Root,
        n: usize,
    ) -> Vec<Result<object_store::ObjectMeta, rustix::io::Errno>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next(root) {
                Some(Ok((key, st, etag))) => {
                    out.extend(meta_of(&key, &st, etag.as_deref()).map(Ok))
                }
                Some(Err(e)) => {
                    out.push(Err(e));
                    self.stack.clear();
                    break;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test on its own thread: blocking is what it does
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Files whose attributes this thread's listings read.
        pub(super) static LOOKED_AT: Cell<usize> = const { Cell::new(0) };
    }

    fn looked_at<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = LOOKED_AT.with(Cell::get);
        let out = f();
        (out, LOOKED_AT.with(Cell::get) - before)
    }

    #[test]
    fn a_page_reads_the_attributes_of_only_the_files_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..2500 {
            std::fs::write(big.join(format!("f{i:04}")), b"x").unwrap();
        }
        std::fs::create_dir(big.join("f1000-sub")).unwrap();
        let root = Root::open(dir.path(), Links::Skip).unwrap();

        // A flat walk: a page of 1000 and the key after it.
        let (batch, n) = looked_at(|| {
            let mut walk = Walk::new(&root, "big", Some("big/f0999".into())).unwrap();
            walk.batch(&root, 1001)
        });
        assert_eq!(batch.len(), 1001);
        assert_eq!(batch[0].as_ref().unwrap().location.as_ref(), "big/f1000");
        assert_eq!(n, 1001, "read the attributes of {n} files for 1001 objects");

        // One level, from the middle: the folder `f1000-sub/` takes its place in key order.
        let (page, n) = looked_at(|| level(&root, "big", "big/", "big/f0999", 1000).unwrap());
        assert_eq!(n, 999, "read the attributes of {n} files for 999 objects");
        assert_eq!(page.objects.len(), 999);
        assert_eq!(page.objects[0].location.as_ref(), "big/f1000");
        assert_eq!(page.objects[1].location.as_ref(), "big/f1001");
        let folders: Vec<&str> = page.common_prefixes.iter().map(|p| p.as_ref()).collect();
        assert_eq!(folders, ["big/f1000-sub"]);
        assert_eq!(page.objects.last().unwrap().location.as_ref(), "big/f1998");

        // A prefix within the level: only what begins with it.
        let (page, n) = looked_at(|| level(&root, "big", "big/f24", "", 1000).unwrap());
        assert_eq!(page.objects.len(), 100);
        assert_eq!(n, 100);
    }
}

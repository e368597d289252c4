//! The thin adapter between the kernel (`fuser`) and [`Fs`]: every request is handed to the
//! tokio runtime, so requests run concurrently and the session thread only reads and
//! dispatches; errors become errno values here and are logged with the volume and key.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::{Attr, Fs, Kind, OpenMode, Opened};
use crate::{FsError, Result};

/// Largest read and write the kernel is asked to send in one request.
pub const MAX_IO: u32 = 1024 * 1024;

/// The `fuser::Filesystem` over an [`Fs`].
#[derive(Debug)]
pub struct FuseFs {
    fs: Arc<Fs>,
    rt: Handle,
    modes: Arc<Mutex<IoModes>>,
}

/// How each open file reads, as the kernel requires per inode: once one handle of an inode
/// reads a local copy (passthrough), every other open of it must read the same copy until
/// they are all closed (the kernel fails any other open with EINVAL), and none may be opened
/// while the inode has handles using the page cache (ETXTBSY). So an open beside a copy in use
/// reads that copy, the version it holds (as the handles already open do), and an open for
/// writing beside it is refused with ETXTBSY, as for a running program's file. The counts
/// here fall only when the kernel has released a handle (it sends RELEASE after dropping its
/// own count), so they are never below the kernel's.
#[derive(Debug, Default)]
struct IoModes {
    /// Open handles per inode that use the page cache.
    cached: HashMap<u64, usize>,
    /// Inodes read through a local copy: its version, the kernel's id for it, handles.
    passed: HashMap<u64, Passed>,
    /// Each open handle's inode and mode, for its release.
    handles: HashMap<u64, (u64, IoMode)>,
}

#[derive(Debug)]
struct Passed {
    version: String,
    backing: BackingId,
    handles: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoMode {
    Cached,
    Passthrough,
}

/// The refusal of an open for writing beside handles reading a copy, counted.
fn busy(fs: &Fs) -> Errno {
    fs.metrics()
        .ops
        .with_label_values(&["open", "ETXTBSY"])
        .inc();
    Errno::ETXTBSY
}

impl IoModes {
    /// Whether `ino` is read through a copy now: an open for writing is refused.
    fn busy(&self, ino: u64) -> bool {
        self.passed.contains_key(&ino)
    }

    /// Replies to an open of `ino` (`write`: for writing) with the mode the kernel allows:
    /// passthrough to `o.whole` where possible, else through the mount. False when it was
    /// refused (the handle is then to be released).
    fn reply_open(&mut self, fs: &Fs, ino: u64, o: Opened, write: bool, reply: ReplyOpen) -> bool {
        let fh = FileHandle(o.fh);
        if let Some(p) = self.passed.get_mut(&ino) {
            if write {
                reply.error(busy(fs));
                return false;
            }
            if o.whole.as_ref().is_none_or(|w| w.version != p.version) {
                tracing::debug!(
                    ino,
                    version = %p.version,
                    "opened beside handles reading a copy: reads that copy's version"
                );
            }
            p.handles += 1;
            self.handles.insert(o.fh, (ino, IoMode::Passthrough));
            fs.metrics().passthrough_opens.inc();
            reply.opened_passthrough(fh, FopenFlags::empty(), &p.backing);
            return true;
        }
        if let Some(w) = o
            .whole
            .filter(|_| !write && !self.cached.contains_key(&ino))
        {
            match reply.open_backing(&*w.file) {
                Ok(backing) => {
                    let p = self.passed.entry(ino).or_insert(Passed {
                        version: w.version,
                        backing,
                        handles: 0,
                    });
                    p.handles += 1;
                    self.handles.insert(o.fh, (ino, IoMode::Passthrough));
                    fs.metrics().passthrough_opens.inc();
                    reply.opened_passthrough(fh, FopenFlags::empty(), &p.backing);
                    return true;
                }
                Err(e) => fs.stop_passthrough(&format!("registering a backing file: {e}")),
            }
        }
        self.opened_cached(ino, o.fh);
        let flags = if o.keep_cache {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        reply.opened(fh, flags);
        true
    }

    fn opened_cached(&mut self, ino: u64, fh: u64) {
        *self.cached.entry(ino).or_default() += 1;
        self.handles.insert(fh, (ino, IoMode::Cached));
    }

    /// Forgets a released handle (the kernel has dropped its mode already).
    fn released(&mut self, fh: u64) {
        match self.handles.remove(&fh) {
            Some((ino, IoMode::Cached)) => {
                if let Some(n) = self.cached.get_mut(&ino) {
                    *n -= 1;
                    if *n == 0 {
                        self.cached.remove(&ino);
                    }
                }
            }
            Some((ino, IoMode::Passthrough)) => {
                if let Some(p) = self.passed.get_mut(&ino) {
                    p.handles -= 1;
                    if p.handles == 0 {
                        // Dropping the id closes it in the kernel (which keeps the file while
                        // it uses it).
                        self.passed.remove(&ino);
                    }
                }
            }
            None => {}
        }
    }
}

impl FuseFs {
    pub fn new(fs: Arc<Fs>, rt: Handle) -> Self {
        Self {
            fs,
            rt,
            modes: Arc::default(),
        }
    }

    fn modes(modes: &Mutex<IoModes>) -> MutexGuard<'_, IoModes> {
        modes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` to its end on the session thread when it can finish at once (a read from
    /// blocks in memory), else on the runtime. A reader doing one request at a time (a FITS
    /// cutout, fio at depth 1) then waits for no thread hand-over when its data is cached: on
    /// two cores those wake-ups were most of a cached read's cost.
    fn run(&self, op: impl std::future::Future<Output = ()> + Send + 'static) {
        let _runtime = self.rt.enter();
        let mut op = Box::pin(op);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if op.as_mut().poll(&mut cx).is_pending() {
            // Polled again at once there, with a waker that counts.
            self.rt.spawn(op);
        }
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let kind = match a.kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind,
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: MAX_IO,
        flags: 0,
    }
}

/// Names the error for the ops metric: `ok`, or the errno's name.
fn errno_name(code: i32) -> &'static str {
    match code {
        libc::ENOENT => "ENOENT",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EISDIR => "EISDIR",
        libc::ENOTDIR => "ENOTDIR",
        libc::EXDEV => "EXDEV",
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::ESTALE => "ESTALE",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EFBIG => "EFBIG",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "EIO",
    }
}

impl FuseFs {
    fn ttl(&self) -> Duration {
        self.fs.config().attr_ttl
    }

    fn ttls(&self) -> (Duration, Duration) {
        (self.fs.config().attr_ttl, self.fs.config().entry_ttl)
    }

    /// Records the outcome and turns an error into the errno to reply with.
    fn done<T>(fs: &Fs, op: &'static str, r: Result<T>) -> std::result::Result<T, Errno> {
        match r {
            Ok(v) => {
                fs.metrics().ops.with_label_values(&[op, "ok"]).inc();
                Ok(v)
            }
            Err(e) => {
                let code = e.errno();
                fs.metrics()
                    .ops
                    .with_label_values(&[op, errno_name(code)])
                    .inc();
                if e.is_failure() {
                    tracing::warn!(op, error = %e, "filesystem operation failed");
                } else {
                    tracing::debug!(op, error = %e, "filesystem operation refused");
                }
                Err(Errno::from_i32(code))
            }
        }
    }

    fn name(name: &OsStr) -> Result<String> {
        name.to_str()
            .map(str::to_string)
            .ok_or_else(|| FsError::InvalidName {
                name: name.to_string_lossy().into_owned(),
                reason: "not UTF-8 (keys are UTF-8)".into(),
            })
    }
}

impl fuser::Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Large requests: up to 1 MiB per read and write (FUSE_MAX_PAGES), a deep queue of
        // background requests (read-ahead) and READDIRPLUS so listings carry attributes.
        let _ = config.set_max_write(MAX_IO);
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_ASYNC_READ;
        let offered = config.capabilities() & wanted;
        if let Err(unsupported) = config.add_capabilities(offered) {
            tracing::debug!(?unsupported, "kernel lacks some FUSE capabilities");
        }
        if self.fs.passthrough() {
            // Reads of whole-file copies go from the kernel to the copy (Linux 6.9 on). A
            // stacking depth of 1: the copies are on an ordinary file system.
            let passthrough = config.capabilities() & InitFlags::FUSE_PASSTHROUGH;
            if passthrough.is_empty() {
                self.fs
                    .stop_passthrough("the kernel offers no FUSE passthrough");
            } else if config.add_capabilities(passthrough).is_err()
                || config.set_max_stack_depth(1).is_err()
            {
                self.fs
                    .stop_passthrough("FUSE passthrough could not be enabled");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, ttl) = (self.fs.clone(), self.ttls());
        let name = Self::name(name);
        self.rt.spawn(async move {
            let r = match name {
                Ok(name) => fs.lookup(parent.0, &name).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "lookup", r) {
                Ok(v) => reply.entry_with_ttls(&ttl.0, &ttl.1, &file_attr(&v), Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, ttl) = (self.fs.clone(), self.ttl());
        self.rt.spawn(async move {
            let r = fs.getattr(ino.0).await;
            match Self::done(&fs, "getattr", r) {
                Ok(v) => reply.attr(&ttl, &file_attr(&v)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (fs, ttl) = (self.fs.clone(), self.ttl());
        self.rt.spawn(async move {
            let r = fs.setattr(ino.0, size, fh.map(|f| f.0)).await;
            match Self::done(&fs, "setattr", r) {
                Ok(v) => reply.attr(&ttl, &file_attr(&v)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, ttl) = (self.fs.clone(), self.ttls());
        let name = Self::name(name);
        self.rt.spawn(async move {
            let r = match name {
                Ok(name) => fs.mkdir(parent.0, &name).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "mkdir", r) {
                Ok(v) => reply.entry_with_ttls(&ttl.0, &ttl.1, &file_attr(&v), Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let name = Self::name(name);
        self.rt.spawn(async move {
            let r = match name {
                Ok(name) => fs.unlink(parent.0, &name).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "unlink", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let name = Self::name(name);
        self.rt.spawn(async move {
            let r = match name {
                Ok(name) => fs.rmdir(parent.0, &name).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "rmdir", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let names = Self::name(name).and_then(|a| Ok((a, Self::name(newname)?)));
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        self.rt.spawn(async move {
            if exchange {
                // Object stores cannot swap two keys atomically.
                return reply.error(Errno::EINVAL);
            }
            let r = match names {
                Ok((a, b)) => fs.rename(parent.0, &a, newparent.0, &b, no_replace).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "rename", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let mode = OpenMode {
            write: flags.acc_mode() != OpenAccMode::O_RDONLY,
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        let write = mode.write || mode.truncate;
        if write && Self::modes(&self.modes).busy(ino.0) {
            reply.error(busy(&self.fs));
            return;
        }
        let modes = self.modes.clone();
        self.rt.spawn(async move {
            let r = fs.open(ino.0, mode).await;
            match Self::done(&fs, "open", r) {
                Ok(o) => {
                    let fh = o.fh;
                    let opened = Self::modes(&modes).reply_open(&fs, ino.0, o, write, reply);
                    if !opened {
                        // A copy came into use while this open for writing was made.
                        let _ = fs.release(fh).await;
                    }
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            let r = fs.read(fh.0, offset, size).await;
            match Self::done(&fs, "read", r) {
                Ok(v) => reply.data(&v),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = self.fs.clone();
        let data = Bytes::copy_from_slice(data);
        self.rt.spawn(async move {
            let r = fs.write(fh.0, offset, data).await;
            match Self::done(&fs, "write", r) {
                Ok(v) => reply.written(v),
                Err(e) => reply.error(e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.flush(fh.0).await;
            match Self::done(&fs, "flush", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.flush(fh.0).await;
            match Self::done(&fs, "fsync", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        Self::modes(&self.modes).released(fh.0);
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.release(fh.0).await;
            match Self::done(&fs, "release", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.opendir(ino.0).await;
            match Self::done(&fs, "opendir", r) {
                Ok(v) => reply.opened(FileHandle(v), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs
                .readdir(fh.0, offset, false, |e| {
                    let kind = match e.attr.kind {
                        Kind::File => FileType::RegularFile,
                        Kind::Dir => FileType::Directory,
                    };
                    reply.add(INodeNo(e.attr.ino), e.offset, kind, &e.name)
                })
                .await;
            match Self::done(&fs, "readdir", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (fs, ttl) = (self.fs.clone(), self.ttl());
        self.rt.spawn(async move {
            let r = fs
                .readdir(fh.0, offset, true, |e| {
                    reply.add(
                        INodeNo(e.attr.ino),
                        e.offset,
                        &e.name,
                        &ttl,
                        &file_attr(&e.attr),
                        Generation(0),
                    )
                })
                .await;
            match Self::done(&fs, "readdirplus", r) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.fs.config().xattrs {
            // Not implemented: the kernel stops asking, for every name.
            reply.error(Errno::ENOSYS);
            return;
        }
        // Only `user.` names are an object's (its metadata): other namespaces (`ls` and
        // SELinux probes) are absent without asking the store.
        let Some(name) = name
            .to_str()
            .filter(|n| n.starts_with(crate::fs::XATTR_USER))
        else {
            reply.error(Errno::NO_XATTR);
            return;
        };
        let name = name.to_string();
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.xattrs(ino.0).await;
            match Self::done(&fs, "getxattr", r) {
                Ok(all) => match all.into_iter().find(|(n, _)| *n == name) {
                    None => reply.error(Errno::NO_XATTR),
                    Some((_, value)) => xattr_reply(reply, size, &value),
                },
                Err(e) => reply.error(e),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.fs.config().xattrs {
            reply.error(Errno::ENOSYS);
            return;
        }
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            let r = fs.xattrs(ino.0).await;
            match Self::done(&fs, "listxattr", r) {
                Ok(all) => {
                    let mut names = Vec::new();
                    for (n, _) in all {
                        names.extend_from_slice(n.as_bytes());
                        names.push(0);
                    }
                    xattr_reply(reply, size, &names);
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Object stores have no fixed capacity: report a large, constant one so that tools
        // checking free space before writing go ahead.
        const BLOCKS: u64 = 1 << 40;
        reply.statfs(BLOCKS, BLOCKS, BLOCKS, 1 << 32, 1 << 32, 4096, 1024, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, ttl) = (self.fs.clone(), self.ttl());
        let name = Self::name(name);
        let modes = self.modes.clone();
        self.rt.spawn(async move {
            let r = match name {
                Ok(name) => fs.create(parent.0, &name).await,
                Err(e) => Err(e),
            };
            match Self::done(&fs, "create", r) {
                Ok(v) => {
                    let (attr, o) = v;
                    // A new file: no handle reads a copy of it.
                    Self::modes(&modes).opened_cached(attr.ino, o.fh);
                    reply.created(
                        &ttl,
                        &file_attr(&attr),
                        Generation(0),
                        FileHandle(o.fh),
                        FopenFlags::empty(),
                    );
                }
                Err(e) => reply.error(e),
            }
        });
    }
}

/// Answers an extended attribute request: its size when asked for none, ERANGE when the
/// caller's buffer is too small.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

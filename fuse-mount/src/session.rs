//! Mounting and unmounting: checks that say what is missing, the FUSE session on its own
//! thread, clean unmount on request, and `archway unmount`.
//!
//! Blocking file calls are allowed here: they are one-time steps at a mount's start and end
//! (the CLI before it serves, the watchdog process after) — `/dev/fuse`, the mount point,
//! `/proc/self/mountinfo`, the kernel's read-ahead knob — never per-request work.
#![allow(clippy::disallowed_methods)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};

use crate::Fs;
use crate::fuse::FuseFs;

/// How the filesystem is mounted.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// Let other users (not only the mounting one and root) use the mount.
    pub allow_other: bool,
    /// Mount read-only (the kernel refuses every change).
    pub read_only: bool,
    /// Let `fusermount3` unmount when this process dies, whatever the cause.
    pub auto_unmount: bool,
    /// Threads reading requests from the kernel (the work itself runs on the tokio runtime).
    pub threads: usize,
}

impl MountOptions {
    pub fn new(mountpoint: impl Into<PathBuf>) -> Self {
        Self {
            mountpoint: mountpoint.into(),
            allow_other: false,
            read_only: false,
            auto_unmount: true,
            threads: 4,
        }
    }
}

/// Why a mount could not be made, in words a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    #[error(
        "/dev/fuse is missing: load the fuse module, or start the container with `--device /dev/fuse`"
    )]
    NoDevice,
    #[error(
        "no permission to use /dev/fuse ({0}): run as root, or give this user access to /dev/fuse (in a container: `--device /dev/fuse --cap-add SYS_ADMIN`)"
    )]
    DeviceDenied(io::Error),
    #[error("mount point {0}: {1}")]
    Mountpoint(PathBuf, String),
    #[error(
        "`fusermount3` is needed for auto-unmount (Debian package `fuse3`), or pass --no-auto-unmount"
    )]
    NoFusermount,
    #[error("mounting {0} failed: {1}")]
    Mount(PathBuf, io::Error),
}

/// Checks what a mount needs before trying it, so the error says what is missing.
pub fn preflight(opts: &MountOptions) -> Result<(), MountError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MountError::NoDevice),
        Err(e) => return Err(MountError::DeviceDenied(e)),
    }
    let mp = &opts.mountpoint;
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(MountError::Mountpoint(mp.clone(), "not a directory".into())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::Mountpoint(
                mp.clone(),
                format!(
                    "a dead mount is still there: run `archway unmount {}`",
                    mp.display()
                ),
            ));
        }
        Err(e) => return Err(MountError::Mountpoint(mp.clone(), e.to_string())),
    }
    if opts.auto_unmount && which("fusermount3").is_none() && which("fusermount").is_none() {
        return Err(MountError::NoFusermount);
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    which::which(program).ok()
}

/// A mounted filesystem, served on its own thread until unmounted.
#[derive(Debug)]
pub struct Mounted {
    mountpoint: PathBuf,
    unmounter: fuser::SessionUnmounter,
    done: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

/// Mounts `fs` at `opts.mountpoint`; requests run on the runtime behind `rt`.
pub fn mount(
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    opts: &MountOptions,
) -> Result<Mounted, MountError> {
    preflight(opts)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("archway".into()),
        MountOption::Subtype("archway".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        if opts.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    if opts.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.auto_unmount {
        // fusermount's auto-unmount needs allow_other at the kernel; fuser keeps everyone
        // but root and the owner out.
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    let session =
        fuser::Session::new(FuseFs::new(fs, rt), &opts.mountpoint, &config).map_err(|e| match e
            .raw_os_error()
        {
            Some(libc::EPERM) | Some(libc::EACCES) => MountError::DeviceDenied(e),
            _ => MountError::Mount(opts.mountpoint.clone(), e),
        })?;
    let mut session = session;
    let unmounter = session.unmount_callable();
    let (tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("archway-fuse".into())
        .spawn(move || {
            let _ = tx.send(session.run());
        })
        .map_err(|e| MountError::Mount(opts.mountpoint.clone(), e))?;
    raise_readahead(&opts.mountpoint);
    Ok(Mounted {
        mountpoint: opts.mountpoint.clone(),
        unmounter,
        done,
    })
}

/// Sequential readers get 1 MiB requests only if the kernel reads ahead that far; the
/// per-mount default is 128 KiB. Raising it needs root; without, the default stays.
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    let kb = crate::fuse::MAX_IO / 1024;
    match std::fs::write(&knob, kb.to_string()) {
        Ok(()) => tracing::debug!(knob, kb, "raised the mount's read-ahead"),
        Err(e) => tracing::debug!(knob, error = %e, "could not raise the mount's read-ahead"),
    }
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves until the filesystem is unmounted from outside (`archway unmount`) or `stop`
    /// resolves, then unmounts and waits for the session to end.
    pub async fn serve_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> io::Result<()> {
        tokio::select! {
            r = &mut self.done => {
                return r.unwrap_or_else(|_| Err(io::Error::other("the FUSE session thread died")));
            }
            () = stop => {}
        }
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounting");
        // With auto-unmount this only tells fusermount3 to let go, which it does in its own
        // time; unmount explicitly so the session ends now.
        if let Err(e) = self.unmounter.unmount() {
            tracing::debug!(error = %e, "releasing the mount handle");
        }
        // fusermount3, let go of above, may be unmounting at the same moment: the kernel then
        // answers our unmount "busy" for a moment. A few tries before detaching lazily; a
        // mount that has gone meanwhile is what we asked for.
        let mut tries = 0;
        while is_mounted(&self.mountpoint) {
            match unmount(&self.mountpoint, false) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) if tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed (files still open?); detaching lazily");
                    match unmount(&self.mountpoint, true) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => break,
                    }
                }
            }
        }
        let ended = self
            .done
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the FUSE session thread died")));
        match ended {
            // The end we asked for: the connection aborted as the mount went (fusermount3's
            // auto-unmount, or the last user of a lazily detached mount letting go).
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::debug!(error = %e, "the FUSE connection ended with the unmount");
                Ok(())
            }
            r => r,
        }
    }
}

/// Whether a FUSE filesystem — what `archway mount` makes — is mounted on top at `path` (per
/// /proc/self/mountinfo). Another filesystem there is not: a container's bind mount of the
/// mount point (a Kubernetes hostPath, a compose bind with `rshared`) must outlive every
/// mount and unmount made on top of it.
pub fn is_mounted(path: &Path) -> bool {
    mount_type(path).is_some_and(|t| is_fuse(&t))
}

fn is_fuse(fstype: &str) -> bool {
    fstype == "fuse" || fstype.starts_with("fuse.")
}

/// The type of the filesystem mounted on top at `path` ("fuse", "ext4", ...). None when
/// nothing is mounted there.
pub fn mount_type(path: &Path) -> Option<String> {
    top_mount_at(path).map(|(_, t)| t)
}

/// The mount id of the FUSE mount on top at `path`, if one is: a later mount at the same place
/// has another.
pub fn fuse_mount_id(path: &Path) -> Option<u64> {
    top_mount_at(path)
        .filter(|(_, t)| is_fuse(t))
        .map(|(id, _)| id)
}

/// The id and type of the filesystem mounted on top at `path`, from one read of
/// /proc/self/mountinfo.
fn top_mount_at(path: &Path) -> Option<(u64, String)> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    top_mount(&table, &want)
}

/// The id (mountinfo's first field) and type of the filesystem mounted on top at `want`: the
/// last line of the table that names it.
fn top_mount(table: &str, want: &Path) -> Option<(u64, String)> {
    // The newest mount at a path is listed last.
    table
        .lines()
        .rev()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|mp| Path::new(&unescape_mount_path(mp)) == want)
        })
        // After the optional fields, " - " and then the filesystem type.
        .find_map(|line| {
            let id = line.split(' ').next()?.parse().ok()?;
            let fstype = line.split_once(" - ")?.1.split(' ').next()?;
            Some((id, fstype.to_string()))
        })
}

/// Mount tables write space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if bytes[i] == b'\\'
            && let Some(d) = octal
        {
            let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For after the mount's process ended: if it ended without unmounting (killed: SIGKILL,
/// the OOM killer) and `mountpoint` is left dead ("Transport endpoint is not connected"),
/// detaches it. fusermount3's own auto-unmount does the same, but can miss a process killed
/// while the kernel is still tearing its connection down; this waits for that (up to 10 s).
/// Only the mount `watched` (its [`fuse_mount_id`], read while the mount was live) is looked
/// at: a new mount at the same place is never touched, not even listed (a listing holds it open,
/// and an unmount racing it would find it busy).
pub fn detach_if_dead(mountpoint: &Path, watched: Option<u64>) -> io::Result<()> {
    for _ in 0..100 {
        let now = fuse_mount_id(mountpoint);
        if now.is_none() || now != watched {
            return Ok(());
        }
        // Listing asks the filesystem itself (attributes may come from the kernel's cache).
        match std::fs::read_dir(mountpoint) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                return unmount(mountpoint, true);
            }
            // Still answering: fusermount3 may be detaching it, or it is someone else's.
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    Ok(())
}

/// Unmounts a FUSE mount (also a dead one: "Transport endpoint is not connected"). Any other
/// filesystem at `mountpoint` is left alone, with an error that names it.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    match mount_type(mountpoint) {
        None => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("nothing is mounted at {}", mountpoint.display()),
            ));
        }
        Some(fstype) if !is_fuse(&fstype) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a {fstype} mount, not a FUSE mount made by `archway mount`; left \
                     alone",
                    mountpoint.display()
                ),
            ));
        }
        Some(_) => {}
    }
    let mut tried = Vec::new();
    for program in ["fusermount3", "fusermount", "umount"] {
        let Some(bin) = which(program) else { continue };
        let mut cmd = std::process::Command::new(&bin);
        if program == "umount" {
            if lazy {
                cmd.arg("-l");
            }
        } else {
            cmd.arg(if lazy { "-uz" } else { "-u" });
        }
        let out = cmd.arg(mountpoint).output()?;
        if out.status.success() {
            return Ok(());
        }
        tried.push(format!(
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if tried.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "neither fusermount3, fusermount nor umount is installed",
        ));
    }
    Err(io::Error::other(format!(
        "cannot unmount {}: {}",
        mountpoint.display(),
        tried.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/odd\\"), "/odd\\");
        assert!(
            mount_type(Path::new("/")).is_some() || !Path::new("/proc/self/mountinfo").exists()
        );
    }

    #[test]
    fn only_a_fuse_mount_on_top_counts_as_mounted() {
        // A bind mount of the mount point (a container's hostPath), then a FUSE mount on it.
        let table = "\
            24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
            40 24 8:1 /srv/mnt /mnt/archway rw,relatime shared:9 - ext4 /dev/sda1 rw\n\
            41 40 0:50 / /mnt/archway rw,nosuid,nodev shared:10 - fuse archway rw,user_id=0\n";
        let at = Path::new("/mnt/archway");
        assert_eq!(top_mount(table, at), Some((41, "fuse".to_string())));
        let bind_only: String = table.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(top_mount(&bind_only, at), Some((40, "ext4".to_string())));
        assert!(!is_fuse("ext4"));
        assert!(is_fuse("fuse") && is_fuse("fuse.archway") && !is_fuse("fuseblk"));
        assert_eq!(top_mount(table, Path::new("/elsewhere")), None);
    }
}

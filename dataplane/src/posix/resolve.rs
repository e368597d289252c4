//! Resolving keys beneath a backend's root, without ever leaving it.
//!
//! Every open is relative to the root's file descriptor, never to a path string: with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it, else one
//! `openat(O_NOFOLLOW)` per component, each relative to the directory opened before. Either way
//! a symbolic link is never followed (or, with `links = "inside"`, followed only while it stays
//! beneath the root), `..` cannot climb out, and nothing can be swapped between a check and
//! the open: there is no check, only the open.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::Links;

/// The root of a file backend, held open.
#[derive(Debug)]
pub(super) struct Root {
    fd: OwnedFd,
    links: Links,
    /// Whether the kernel offers openat2 (Linux ≥ 5.6, and not filtered by a sandbox).
    openat2: bool,
}

/// The components of a relative key path ("" has none).
pub(super) fn components(rel: &str) -> impl Iterator<Item = &str> {
    rel.split('/').filter(|c| !c.is_empty())
}

/// Splits a relative key path into its parent path and its last component.
pub(super) fn split(rel: &str) -> (&str, &str) {
    match rel.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", rel),
    }
}

impl Root {
    pub(super) fn open(path: &std::path::Path, links: Links) -> rustix::io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let openat2 = match rustix::fs::openat2(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH,
        ) {
            Ok(_) => true,
            Err(Errno::NOSYS) | Err(Errno::PERM) => false,
            Err(e) => return Err(e),
        };
        if !openat2 && links == Links::Inside {
            // Following links only while they stay inside needs the kernel's help.
            return Err(Errno::NOSYS);
        }
        Ok(Self { fd, links, openat2 })
    }

    pub(super) fn links(&self) -> Links {
        self.links
    }

    fn resolve_flags(&self) -> ResolveFlags {
        let mut flags = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        if self.links == Links::Skip {
            flags |= ResolveFlags::NO_SYMLINKS;
        }
        flags
    }

    /// Opens `rel` beneath the root (the root itself for ""). A symbolic link anywhere on the
    /// way is `ELOOP` (with `links = "inside"`: followed when it stays beneath the root, else
    /// `EXDEV`).
    pub(super) fn open_at(
        &self,
        rel: &str,
        flags: OFlags,
        mode: Mode,
    ) -> rustix::io::Result<OwnedFd> {
        self.open_beneath(self.fd.as_fd(), rel, flags, mode)
    }

    /// [`Root::open_at`] relative to `dir`, a directory beneath the root.
    pub(super) fn open_beneath(
        &self,
        dir: BorrowedFd<'_>,
        rel: &str,
        flags: OFlags,
        mode: Mode,
    ) -> rustix::io::Result<OwnedFd> {
        let flags = flags | OFlags::CLOEXEC;
        let rel = if rel.is_empty() { "." } else { rel };
        if self.openat2 {
            // The kernel answers EAGAIN when it cannot be sure a `..` in a followed link did
            // not race a rename out of the tree: asking again is what it expects.
            let mut tries = 0;
            loop {
                match rustix::fs::openat2(dir, rel, flags, mode, self.resolve_flags()) {
                    Err(Errno::AGAIN) if tries < 64 => tries += 1,
                    other => return other,
                }
            }
        }
        // One component at a time, never following a link.
        let parts: Vec<&str> = components(rel).collect();
        let Some((last, parents)) = parts.split_last() else {
            return rustix::fs::openat(dir, ".", flags, mode);
        };
        let mut current: Option<OwnedFd> = None;
        for part in parents {
            if *part == ".." || *part == "." {
                return Err(Errno::XDEV);
            }
            let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
            current = Some(rustix::fs::openat(
                at,
                *part,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
        }
        if *last == ".." || *last == "." {
            return Err(Errno::XDEV);
        }
        let at = current.as_ref().map_or(dir, |fd| fd.as_fd());
        rustix::fs::openat(at, *last, flags | OFlags::NOFOLLOW, mode)
    }

    /// The directory `rel` beneath the root, opened for reading; with `create`, missing
    /// directories are made on the way (each relative to the one before, so a link planted
    /// meanwhile is refused, not followed).
    pub(super) fn dir(&self, rel: &str, create: bool) -> rustix::io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        match self.open_at(rel, flags, Mode::empty()) {
            Err(Errno::NOENT) if create => {}
            other => return other,
        }
        let mut current = self.open_at("", flags, Mode::empty())?;
        for part in components(rel) {
            current = match self.open_beneath(current.as_fd(), part, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&current, part, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    self.open_beneath(current.as_fd(), part, flags, Mode::empty())?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(current)
    }
}

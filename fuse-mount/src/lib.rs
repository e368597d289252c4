//! Archway's FUSE front: volumes as ordinary files under `MOUNTPOINT/<volume>/<key path>`.
//!
//! The crate owns the mapping between filesystem operations and object-store calls — inodes,
//! directory listings, open files, the write spool — and the only place errno values are
//! chosen ([`FsError::errno`]). It sees each volume as an `Arc<dyn ObjectStore>` and names no
//! backend itself, so one implementation serves both modes:
//!
//! - **local**: each volume is the dataplane's checked handle
//!   (`archway_dataplane::VolumeStore`), which holds every call to the caller's access and the
//!   volume's limits, straight to the backends;
//! - **remote**: a gateway's volumes through its S3 front (the gateway checks), built as the
//!   dataplane builds a peer gateway's stores.
//!
//! Either way files are uploaded through the dataplane's one write path
//! (`archway_dataplane::write::write_stream`), and decides nothing about access itself
//! beyond what the volume list says (read-only volumes, volumes the caller may only read).
//!
//! Layout: [`fs::Fs`] is the filesystem, with async methods and no `fuser` types, so that its
//! semantics are tested without a kernel mount; [`fuse`] is the thin adapter that the kernel
//! talks to; [`session`] mounts, waits for signals and unmounts.
//!
//! Semantics in short (the full list is `doc/mount.md`): directories are derived from `/` in
//! keys; attributes come from listings (no request per entry); reads go through the block
//! cache with the object's version pinned at open; writes go to a local spool file and are
//! uploaded on close (multipart above the part size), so S3 readers only ever see complete
//! files; new empty directories exist in the mount only until a file is written into them.

pub mod fs;
pub mod fuse;
pub mod metrics;
pub mod session;
mod spool;
pub mod whole;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use archway_dataplane::catalog::CatalogError;
use archway_dataplane::{BodyError, DataplaneError};
use object_store::ObjectStore;
use object_store::list::PaginatedListStore;

pub use fs::Fs;
pub use metrics::MountMetrics;
pub use session::{MountOptions, unmount};

/// One volume as the mount sees it.
#[derive(Clone)]
pub struct MountVolume {
    /// The directory name under the mount point (the volume id).
    pub name: String,
    /// The volume's store, rooted at the volume (keys are paths inside it).
    pub store: Arc<dyn ObjectStore>,
    /// Page-by-page directory listing, where the store offers it (S3-like stores). Without it,
    /// a directory is listed with one `list_with_delimiter` call.
    pub lister: Option<Arc<dyn PaginatedListStore>>,
    /// Whether writes are tried, and how they are refused when not.
    pub writes: Writes,
    /// The volume's store without the block cache (remote mode), for whole-file copies.
    pub origin: Option<Arc<dyn ObjectStore>>,
}

/// What the mount does with a change to a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// Tried (the store may still refuse: EACCES when it does).
    Allowed,
    /// The volume, or the mount, is read-only: EROFS.
    ReadOnly,
    /// The caller may read but not write it: EACCES.
    Denied,
}

impl std::fmt::Debug for MountVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountVolume")
            .field("name", &self.name)
            .field("writes", &self.writes)
            .field("paged_listing", &self.lister.is_some())
            .finish_non_exhaustive()
    }
}

/// How the filesystem behaves (independent of how it is mounted).
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// How long the kernel (and the mount) may trust attributes before asking again.
    pub attr_ttl: Duration,
    /// How long the kernel may trust a name (a directory entry) before looking it up again.
    pub entry_ttl: Duration,
    /// Owner and group of every file.
    pub uid: u32,
    pub gid: u32,
    /// Bits removed from the modes (0644/0755 for writable volumes, 0444/0555 otherwise).
    pub umask: u16,
    /// Where files being written are kept until they are uploaded.
    pub spool_dir: PathBuf,
    /// Uploads above this size are multipart, in parts of this size.
    pub part_size: usize,
    /// Parts of one upload in flight at once.
    pub upload_concurrency: usize,
    /// Entries asked for per listing request.
    pub list_page: usize,
    /// The largest file an upload may create (the store may hold it lower; in local mode the
    /// dataplane holds it to `limits.max_object_bytes`).
    pub max_object_bytes: u64,
    /// Show S3 metadata as extended attributes. Without, the mount answers the first
    /// `getxattr` and `listxattr` with ENOSYS and the kernel asks it no more (every name then
    /// reads as unsupported): `ls -l`, which asks two names of every entry, makes no round
    /// trip to the mount for them.
    pub xattrs: bool,
}

impl Default for FsConfig {
    fn default() -> Self {
        Self {
            attr_ttl: Duration::from_secs(10),
            entry_ttl: Duration::from_secs(10),
            uid: 0,
            gid: 0,
            umask: 0o022,
            spool_dir: std::env::temp_dir(),
            part_size: 8 * 1024 * 1024,
            upload_concurrency: 4,
            list_page: 1000,
            max_object_bytes: u64::MAX,
            xattrs: true,
        }
    }
}

/// What can go wrong in a filesystem operation, with the volume and key it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("volume `{volume}` is read-only")]
    ReadOnly { volume: String },
    #[error("no write access to volume `{volume}`")]
    WriteDenied { volume: String },
    #[error("the mount's root holds only the volumes")]
    RootReadOnly,
    #[error("`{key}` in volume `{volume}` exists")]
    Exists { volume: String, key: String },
    #[error("`{key}` in volume `{volume}` is not empty")]
    NotEmpty { volume: String, key: String },
    #[error("`{key}` in volume `{volume}` is a directory")]
    IsDir { volume: String, key: String },
    #[error("`{key}` in volume `{volume}` is not a directory")]
    NotDir { volume: String, key: String },
    #[error("cannot move between volumes (`{from}` to `{to}`)")]
    CrossVolume { from: String, to: String },
    #[error("invalid name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    #[error("`{key}` in volume `{volume}` changed while it was open")]
    Changed { volume: String, key: String },
    #[error("{op} `{key}` in volume `{volume}`: access denied: {source}")]
    Denied {
        volume: String,
        key: String,
        op: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("{op} `{key}` in volume `{volume}` failed: {source}")]
    Store {
        volume: String,
        key: String,
        op: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("spool for `{key}` in volume `{volume}`: {source}")]
    Spool {
        volume: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// The dataplane refused or failed the operation: an upload (every mode), or any call to a
    /// volume's checked handle (local mode).
    #[error("{op} `{key}` in volume `{volume}`: {source}")]
    Dataplane {
        volume: String,
        key: String,
        op: &'static str,
        #[source]
        source: Box<DataplaneError>,
    },
}

impl FsError {
    /// The errno a user sees: the one place the mapping is decided.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::ReadOnly { .. } | FsError::RootReadOnly => libc::EROFS,
            FsError::Exists { .. } => libc::EEXIST,
            FsError::NotEmpty { .. } => libc::ENOTEMPTY,
            FsError::IsDir { .. } => libc::EISDIR,
            FsError::NotDir { .. } => libc::ENOTDIR,
            FsError::CrossVolume { .. } => libc::EXDEV,
            FsError::InvalidName { .. } => libc::EINVAL,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::Changed { .. } => libc::ESTALE,
            FsError::Denied { .. } | FsError::WriteDenied { .. } => libc::EACCES,
            FsError::Store { source, .. } => store_errno(source),
            FsError::Spool { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Dataplane { source, .. } => dataplane_errno(source),
        }
    }

    /// Whether the error is worth a warning in the log (backend and spool failures), as opposed
    /// to an answer the user asked for (ENOENT on a lookup, EROFS on an archive).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            FsError::Store { .. }
                | FsError::Spool { .. }
                | FsError::Changed { .. }
                | FsError::Denied { .. }
                | FsError::Dataplane { .. }
        ) && self.errno() != libc::ENOENT
    }

    pub(crate) fn store(volume: &str, key: &str, op: &'static str, e: object_store::Error) -> Self {
        // A refusal by the dataplane's checked handle (local mode) is the dataplane's own error.
        let e = match archway_dataplane::error::take_refusal(e) {
            Ok(source) => {
                return FsError::Dataplane {
                    volume: volume.to_string(),
                    key: key.to_string(),
                    op,
                    source: Box::new(source),
                };
            }
            Err(e) => e,
        };
        match e {
            // A quota's refusal is no denial: `Store` keeps it, and its errno (EDQUOT).
            object_store::Error::PermissionDenied { ref source, .. }
                if quota_refusal(source.as_ref()) =>
            {
                FsError::Store {
                    volume: volume.to_string(),
                    key: key.to_string(),
                    op,
                    source: Box::new(e),
                }
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => FsError::Denied {
                volume: volume.to_string(),
                key: key.to_string(),
                op,
                source: Box::new(e),
            },
            object_store::Error::Precondition { .. } => FsError::Changed {
                volume: volume.to_string(),
                key: key.to_string(),
            },
            e => FsError::Store {
                volume: volume.to_string(),
                key: key.to_string(),
                op,
                source: Box::new(e),
            },
        }
    }

    /// An upload's failure, from the dataplane's write path.
    pub(crate) fn write(volume: &str, key: &str, e: DataplaneError) -> Self {
        match e {
            DataplaneError::Store { source, .. } => FsError::store(volume, key, "put", *source),
            DataplaneError::Body {
                source: BodyError::Local { source, .. },
                ..
            } => FsError::Spool {
                volume: volume.to_string(),
                key: key.to_string(),
                source,
            },
            source => FsError::Dataplane {
                volume: volume.to_string(),
                key: key.to_string(),
                op: "put",
                source: Box::new(source),
            },
        }
    }
}

/// The errno for a store's own error.
fn store_errno(e: &object_store::Error) -> i32 {
    match e {
        // The storage (or the gateway) did not answer in time, or refused the connection.
        e if archway_dataplane::error::did_not_answer(e) => libc::ETIMEDOUT,
        object_store::Error::NotFound { .. } => libc::ENOENT,
        object_store::Error::AlreadyExists { .. } => libc::EEXIST,
        // A gateway's workspace quota (S3 403 `QuotaExceeded`, in the answer's body).
        object_store::Error::PermissionDenied { source, .. } if quota_refusal(source.as_ref()) => {
            libc::EDQUOT
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => libc::EACCES,
        object_store::Error::Precondition { .. } => libc::ESTALE,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            libc::ENOTSUP
        }
        _ => libc::EIO,
    }
}

/// Whether a refusal from a gateway's S3 front is its quota's: the S3 error code is only in
/// the answer's body, which the client keeps in its error.
fn quota_refusal(source: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(e) = at {
        if format!("{e:?}").contains("<Code>QuotaExceeded</Code>") {
            return true;
        }
        at = e.source();
    }
    false
}

/// The errno for a dataplane error: every variant says what it means to a file user.
fn dataplane_errno(e: &DataplaneError) -> i32 {
    match e {
        DataplaneError::NoSuchVolume { .. }
        | DataplaneError::NoSuchKey { .. }
        | DataplaneError::NoSuchUpload { .. } => libc::ENOENT,
        DataplaneError::AccessDenied { .. } | DataplaneError::NotPermitted { .. } => libc::EACCES,
        DataplaneError::ReadOnly { .. } => libc::EROFS,
        DataplaneError::VolumeExists { .. } => libc::EEXIST,
        DataplaneError::KeyConflict { .. } => libc::EEXIST,
        DataplaneError::VolumeNotEmpty { .. } => libc::ENOTEMPTY,
        DataplaneError::NotAWorkspace { .. } => libc::EPERM,
        DataplaneError::InvalidKey { .. }
        | DataplaneError::InvalidRequest { .. }
        | DataplaneError::InvalidRange { .. }
        | DataplaneError::InvalidPart { .. }
        | DataplaneError::InvalidPartOrder { .. }
        | DataplaneError::EntityTooSmall { .. } => libc::EINVAL,
        DataplaneError::EntityTooLarge { .. } => libc::EFBIG,
        DataplaneError::QuotaExceeded { .. } => libc::EDQUOT,
        DataplaneError::PreconditionFailed { .. } | DataplaneError::NotModified { .. } => {
            libc::ESTALE
        }
        DataplaneError::Body { source, .. } => match source {
            BodyError::Source(inner) => dataplane_errno(inner),
            BodyError::Local { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            BodyError::DigestMismatch { .. }
            | BodyError::ChunkSignature
            | BodyError::Incomplete { .. } => libc::EIO,
        },
        DataplaneError::Store { source, .. } => store_errno(source),
        DataplaneError::UnknownBackend { .. }
        | DataplaneError::Backend { .. }
        | DataplaneError::NoWorkspaceBackend
        | DataplaneError::Spool { .. } => libc::EIO,
        DataplaneError::Catalog(CatalogError::QuotaExceeded { .. }) => libc::EDQUOT,
        DataplaneError::Catalog(_) => libc::EIO,
    }
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_that_does_not_answer_is_etimedout_and_other_failures_eio() {
        use object_store::client::{HttpError, HttpErrorKind};
        let http = |kind| object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(kind, std::io::Error::other("no answer"))),
        };
        assert_eq!(store_errno(&http(HttpErrorKind::Timeout)), libc::ETIMEDOUT);
        assert_eq!(store_errno(&http(HttpErrorKind::Connect)), libc::ETIMEDOUT);
        assert_eq!(store_errno(&http(HttpErrorKind::Decode)), libc::EIO);
        let wrapped = DataplaneError::Store {
            volume: "v".into(),
            key: "k".into(),
            op: archway_dataplane::Op::Get,
            source: Box::new(http(HttpErrorKind::Timeout)),
        };
        assert_eq!(dataplane_errno(&wrapped), libc::ETIMEDOUT);
        assert_eq!(wrapped.unreachable_backend(), Some("v"));
    }
}

//! The dataplane's one error enum, and the errors of a body being written.
//!
//! Fronts tell errors apart by variant, never by text: every case a front must answer
//! differently (an S3 code, an HTTP status, an errno) has a variant of its own. Messages name
//! the volume and key. Variants that carry a backend's or the spool's own error
//! ([`DataplaneError::Store`], [`DataplaneError::Backend`], [`DataplaneError::Spool`], the
//! catalogue's database errors) may name server paths or hosts: fronts log them and answer
//! with [`DataplaneError::is_internal`]'s generic words instead.

use crate::Op;

/// Everything that can go wrong on the dataplane, with the volume and key it concerns.
/// Not `#[non_exhaustive]`: the fronts of this workspace map it exhaustively, so a new
/// variant does not compile until each of them says what it means.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("volume `{volume}` does not exist")]
    NoSuchVolume { volume: String },
    #[error("access to volume `{volume}` denied for {op}{}", if *anonymous { " (the request was anonymous)" } else { "" })]
    AccessDenied {
        volume: String,
        op: Op,
        /// The caller was anonymous (HTTP fronts answer 401: authenticating may help).
        anonymous: bool,
    },
    #[error("volume `{volume}` is read-only")]
    ReadOnly { volume: String },
    /// A catalogue change (or a catalogue read) the caller's role does not allow.
    #[error("{action} needs {requirement}; {} does not have it", caller(user.as_deref()))]
    NotPermitted {
        /// The caller (None: anonymous).
        user: Option<String>,
        action: String,
        requirement: &'static str,
    },
    #[error("volume `{volume}` already exists")]
    VolumeExists {
        volume: String,
        /// The caller owns it (or is an admin).
        yours: bool,
    },
    #[error("volume `{volume}` is not empty")]
    VolumeNotEmpty { volume: String },
    #[error(
        "volume `{volume}` is an archive: only workspaces are removed this way (an admin removes \
         an archive's record with `archway catalog volume remove`)"
    )]
    NotAWorkspace { volume: String },
    #[error("no workspace backend is configured here ([workspaces] backend)")]
    NoWorkspaceBackend,
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("no object `{key}` in volume `{volume}`")]
    NoSuchKey { volume: String, key: String },
    /// A file backend cannot hold both an object and keys below it (`a/b` and `a/b/c`), nor
    /// bytes in a folder marker.
    #[error("`{key}` in volume `{volume}` conflicts with `{other}`: {reason}")]
    KeyConflict {
        volume: String,
        key: String,
        /// The key already there that makes the write impossible.
        other: String,
        reason: String,
    },
    #[error("precondition failed for `{key}` in volume `{volume}`")]
    PreconditionFailed { volume: String, key: String },
    #[error("`{key}` in volume `{volume}` not modified")]
    NotModified { volume: String, key: String },
    #[error("range not satisfiable for `{key}` in volume `{volume}` ({size} bytes)")]
    InvalidRange {
        volume: String,
        key: String,
        size: u64,
    },
    #[error("invalid request: {message}")]
    InvalidRequest { message: String },
    #[error("volume `{volume}` uses backend `{backend}`, which is not configured")]
    UnknownBackend { volume: String, backend: String },
    #[error("backend `{backend}`: {message}")]
    Backend { backend: String, message: String },
    #[error("{op} `{key}` in volume `{volume}` failed: {source}")]
    Store {
        volume: String,
        key: String,
        op: Op,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("the body of `{key}` in volume `{volume}`: {source}")]
    Body {
        volume: String,
        key: String,
        #[source]
        source: BodyError,
    },
    #[error(
        "no multipart upload `{upload_id}` for this key: it was completed, aborted or expired, \
         or it began on another gateway replica (an upload in progress stays with the replica \
         that began it); start the upload again"
    )]
    NoSuchUpload { upload_id: String },
    #[error("upload `{upload_id}`: {message}")]
    InvalidPart { upload_id: String, message: String },
    #[error(
        "upload `{upload_id}`: parts must be listed in ascending order (part {part} after {previous})"
    )]
    InvalidPartOrder {
        upload_id: String,
        part: u32,
        previous: u32,
    },
    #[error("{message}")]
    EntityTooSmall { message: String },
    #[error("`{key}` in volume `{volume}` would exceed {limit} bytes ({what})")]
    EntityTooLarge {
        volume: String,
        key: String,
        limit: u64,
        what: &'static str,
    },
    /// A write to workspace `volume` would pass its quota or its owner's.
    #[error("volume `{volume}`: {message}")]
    QuotaExceeded { volume: String, message: String },
    #[error("upload spool: {message}")]
    Spool { message: String },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

fn caller(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("`{u}`"),
        None => "an anonymous caller".to_string(),
    }
}

impl DataplaneError {
    /// True when retrying the same request cannot succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            DataplaneError::Store { source, .. } => !matches!(
                **source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            DataplaneError::Catalog(e) => e.is_permanent(),
            DataplaneError::Body { source, .. } => source.is_permanent(),
            DataplaneError::Backend { .. } | DataplaneError::Spool { .. } => false,
            _ => true,
        }
    }

    /// True when the message may describe this server's inside (a backend's own error, a
    /// spool path, the database): fronts log such an error with a request id and answer the
    /// client in generic words with that id.
    pub fn is_internal(&self) -> bool {
        match self {
            DataplaneError::Store { .. }
            | DataplaneError::Backend { .. }
            | DataplaneError::Spool { .. }
            | DataplaneError::UnknownBackend { .. }
            | DataplaneError::NoWorkspaceBackend => true,
            DataplaneError::Catalog(c) => !matches!(
                c,
                crate::catalog::CatalogError::NotFound { .. }
                    | crate::catalog::CatalogError::AlreadyExists { .. }
                    | crate::catalog::CatalogError::Invalid { .. }
                    | crate::catalog::CatalogError::Conflict { .. }
                    | crate::catalog::CatalogError::QuotaExceeded { .. }
            ),
            DataplaneError::Body { source, .. } => source.is_internal(),
            _ => false,
        }
    }

    /// The volume whose storage did not answer — the request timed out, or the connection was
    /// refused or dropped — when that is what failed. Fronts answer such an error as
    /// "unavailable, retry later" naming the volume (S3 503, HTTP 503, FUSE ETIMEDOUT), not
    /// as an internal error: the gateway is fine, and its other volumes keep serving.
    pub fn unreachable_backend(&self) -> Option<&str> {
        match self {
            DataplaneError::Store { volume, source, .. } if did_not_answer(source.as_ref()) => {
                Some(volume)
            }
            DataplaneError::Body {
                source: BodyError::Source(inner),
                ..
            } => inner.unreachable_backend(),
            _ => None,
        }
    }

    /// Builds the error for an `object_store` error from a checked handle: the dataplane's own
    /// refusal travels inside it (see [`crate::VolumeStore`]'s `ObjectStore` implementation).
    pub fn from_store_error(
        volume: &str,
        key: &str,
        op: Op,
        source: object_store::Error,
    ) -> DataplaneError {
        if let Some(conflict) = tree_conflict(&source) {
            return conflict.to_error(volume, key);
        }
        match source {
            object_store::Error::NotFound { .. } => DataplaneError::NoSuchKey {
                volume: volume.to_string(),
                key: key.to_string(),
            },
            object_store::Error::Precondition { .. } => DataplaneError::PreconditionFailed {
                volume: volume.to_string(),
                key: key.to_string(),
            },
            object_store::Error::NotModified { .. } => DataplaneError::NotModified {
                volume: volume.to_string(),
                key: key.to_string(),
            },
            source => match unwrap_refusal(source) {
                Ok(refused) => refused,
                Err(source) => DataplaneError::Store {
                    volume: volume.to_string(),
                    key: key.to_string(),
                    op,
                    source: Box::new(source),
                },
            },
        }
    }
}

/// True when an HTTP request to a backend timed out, could not connect, or was cut off: the
/// object_store client's `HttpError` somewhere in the error's chain says so.
pub fn did_not_answer(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Timeout | HttpErrorKind::Connect | HttpErrorKind::Interrupted
            );
        }
        next = err.source();
    }
    false
}

/// What a file tree cannot do that S3 can: the file store's reason for an `AlreadyExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeConflict {
    /// A folder above the key (`up` segments above its store path) is a file: an object.
    ParentIsObject { up: usize },
    /// The key is a folder with objects below it.
    IsFolder,
    /// A folder marker is a directory: it holds no bytes.
    MarkerHoldsBytes,
}

impl std::fmt::Display for TreeConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TreeConflict::ParentIsObject { .. } => "an object is where a folder would have to be",
            TreeConflict::IsFolder => "a folder with objects in it has this name",
            TreeConflict::MarkerHoldsBytes => "a folder marker holds no bytes in a file tree",
        })
    }
}

impl std::error::Error for TreeConflict {}

impl TreeConflict {
    /// The store error carrying this conflict for `path` (a path of the store).
    pub(crate) fn error(self, path: &str) -> object_store::Error {
        object_store::Error::AlreadyExists {
            path: path.to_string(),
            source: Box::new(self),
        }
    }

    /// The dataplane error for this conflict on `key` (as the client named it).
    fn to_error(self, volume: &str, key: &str) -> DataplaneError {
        let (other, reason) = match self {
            TreeConflict::ParentIsObject { up } => {
                let path = crate::key::parse_key(key)
                    .map(|p| p.as_ref().to_string())
                    .unwrap_or_else(|_| key.to_string());
                let parts: Vec<&str> = path.split('/').collect();
                let keep = parts.len().saturating_sub(up).max(1);
                let other = parts[..keep].join("/");
                let reason = format!(
                    "`{other}` is an object, and a file backend cannot also hold keys below it \
                     (`{other}/…`): delete `{other}` first, or choose another key"
                );
                (other, reason)
            }
            TreeConflict::IsFolder => {
                let base = key.trim_end_matches('/');
                let other = format!("{base}/");
                let reason = format!(
                    "`{base}` is a folder with other objects below it, and a file backend cannot \
                     also hold an object of that name"
                );
                (other, reason)
            }
            TreeConflict::MarkerHoldsBytes => (
                key.to_string(),
                "a key ending in '/' is a folder marker, which a file backend keeps as a folder: \
                 it holds no bytes and is written with a single PUT of an empty body"
                    .to_string(),
            ),
        };
        DataplaneError::KeyConflict {
            volume: volume.to_string(),
            key: key.to_string(),
            other,
            reason,
        }
    }
}

/// The file tree's conflict inside a store error, if that is what it is.
pub(crate) fn tree_conflict(e: &object_store::Error) -> Option<TreeConflict> {
    match e {
        object_store::Error::AlreadyExists { source, .. } => {
            source.downcast_ref::<TreeConflict>().copied()
        }
        _ => None,
    }
}

/// The dataplane's own error inside an `object_store` error (put there by a checked handle),
/// if there is one.
pub fn refusal(e: &object_store::Error) -> Option<&DataplaneError> {
    let source = match e {
        object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Generic { source, .. } => source,
        _ => return None,
    };
    source.downcast_ref::<DataplaneError>()
}

/// The dataplane's own error inside an `object_store` error, taken out; the error as it was
/// when it carries none.
pub fn take_refusal(e: object_store::Error) -> Result<DataplaneError, object_store::Error> {
    unwrap_refusal(e)
}

fn unwrap_refusal(e: object_store::Error) -> Result<DataplaneError, object_store::Error> {
    match e {
        object_store::Error::PermissionDenied { path, source } => {
            match source.downcast::<DataplaneError>() {
                Ok(d) => Ok(*d),
                Err(source) => Err(object_store::Error::PermissionDenied { path, source }),
            }
        }
        object_store::Error::Generic { store, source } => {
            match source.downcast::<DataplaneError>() {
                Ok(d) => Ok(*d),
                Err(source) => Err(object_store::Error::Generic { store, source }),
            }
        }
        other => Err(other),
    }
}

/// Why the body of a write did not arrive whole and right.
/// Not `#[non_exhaustive]`: the fronts of this workspace map it exhaustively, so a new
/// variant does not compile until each of them says what it means.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A digest the request declared (Content-MD5, x-amz-checksum-*) differs from the body's.
    #[error("{header} does not match the body")]
    DigestMismatch { header: &'static str },
    /// The signature of a signed chunk (aws-chunked streaming upload) does not match.
    #[error("a chunk signature does not match")]
    ChunkSignature,
    /// The client's body stopped or was malformed before its end.
    #[error("the body ended before it was complete: {reason}")]
    Incomplete { reason: String },
    /// The source being copied (another object, the parts of an upload) could not be read.
    #[error("reading the source failed: {0}")]
    Source(#[source] Box<DataplaneError>),
    /// A local file holding the body (a mount's spool, an upload's part) could not be read.
    #[error("reading {what} failed: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl BodyError {
    fn is_permanent(&self) -> bool {
        match self {
            BodyError::Source(e) => e.is_permanent(),
            BodyError::Local { .. } => false,
            _ => true,
        }
    }

    fn is_internal(&self) -> bool {
        match self {
            BodyError::Source(e) => e.is_internal(),
            BodyError::Local { .. } => true,
            _ => false,
        }
    }
}

//! The dataplane: the one read/write path that every front (S3, FUSE, compute) shares, and
//! the one place that decides who may do what.
//!
//! A volume is a catalogue record naming a backend and a prefix; the dataplane resolves it to an
//! `Arc<dyn ObjectStore>` rooted at that prefix ([`backend`]) and hands a front only a checked
//! handle, [`VolumeStore`], which checks the caller's access, the volume's limits and the key
//! rules ([`key`]) on every call — through its own methods and through the `ObjectStore`
//! implementation that the mount and the compute path use. Catalogue changes a caller asks for
//! (volumes, workspaces, grants, users, keys, tokens, groups) are checked in [`curation`].
//! Every write, whichever front it comes from, goes through [`write::write_stream`]. Errors
//! come back as one [`DataplaneError`] enum with the volume and key; the fronts map it to S3
//! errors, HTTP statuses or errno, each in one place.

pub mod attributes;
pub mod audit;
pub mod backend;
mod checked;
pub mod checksum;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod curation;
pub mod error;
pub mod key;
mod listing;
pub mod peer;
mod plane;
pub mod posix;
mod quota;
mod read;
pub mod uploads;
mod volume;
pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use archway_cache as cache;
pub use archway_catalog as catalog;
pub use attributes::ObjectAttributes;
pub use backend::{BackendConfig, BackendKind, GatewayVolume, Secret, gateway_volume};
pub use curation::{LINK_KEY, PeerSync, SITE_KEY, VolumeAcl, linked_site};
pub use error::{BodyError, DataplaneError};
pub use listing::{ListPage, ListRequest};
pub use object_store;
pub use plane::Dataplane;
pub use read::{ObjectInfo, ObjectRead, ReadRange, ReadRequest};
pub use volume::{PeerLocation, VolumeStore};
pub use write::{ContentEtag, CopyRequest, PutOutcome, PutRequest, WriteShape, Written};

/// The `[workspaces]` section: where new workspace volumes live.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspacesConfig {
    /// The backend for new workspaces. Default: the built-in `workspaces` backend, a folder
    /// `workspaces/` in the data directory.
    #[serde(default)]
    pub backend: Option<String>,
    /// A path inside that backend under which each workspace gets `<prefix>/<volume id>`.
    #[serde(default)]
    pub prefix: String,
    /// The quota in bytes a new workspace starts with (bytes, or a size such as `100GiB`);
    /// none when absent.
    #[serde(default, deserialize_with = "size_option")]
    pub default_quota_bytes: Option<u64>,
    /// The quota in objects a new workspace starts with; none when absent.
    #[serde(default)]
    pub default_quota_objects: Option<u64>,
}

/// A size as a number of bytes or a string with a unit (`100GiB`, `10GB`).
fn size_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => s
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Some(b.as_u64()))
            .map_err(|e| {
                serde::de::Error::custom(format!("`{s}` is not a size (e.g. 100GiB): {e}"))
            }),
    }
}

/// The `[limits]` section: bounds on what one request may cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// The most keys one listing page returns (S3's own ceiling is 1000).
    pub list_max_keys: usize,
    /// Part size for streamed uploads; bodies smaller than this are written in one request.
    pub upload_part_size: usize,
    /// Parts of one upload in flight at once; with the part size, bounds an upload's memory.
    pub upload_concurrency: usize,
    /// Backend requests in flight at once, per backend.
    pub backend_concurrency: usize,
    /// The largest object a write may create (S3's own limit is 5 TiB).
    pub max_object_bytes: u64,
    /// Multipart uploads neither completed nor aborted within this time are removed.
    #[serde(with = "humantime_serde")]
    pub upload_expiry: std::time::Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            list_max_keys: 1000,
            // 8 MiB: above S3's 5 MiB minimum part, few enough parts for 80 GB objects
            // within S3's 10 000-part ceiling.
            upload_part_size: 8 * 1024 * 1024,
            upload_concurrency: 4,
            backend_concurrency: 64,
            max_object_bytes: 5 * 1024 * 1024 * 1024 * 1024,
            upload_expiry: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl LimitsConfig {
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=100_000).contains(&self.list_max_keys) {
            out.push(("list_max_keys".into(), "must be 1 to 100000".into()));
        }
        if !(5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&self.upload_part_size) {
            out.push((
                "upload_part_size".into(),
                "must be 5 MiB to 5 GiB (S3's part size limits)".into(),
            ));
        }
        if !(1..=64).contains(&self.upload_concurrency) {
            out.push(("upload_concurrency".into(), "must be 1 to 64".into()));
        }
        if self.upload_expiry < std::time::Duration::from_secs(60) {
            out.push(("upload_expiry".into(), "must be at least a minute".into()));
        }
        if self.max_object_bytes == 0 {
            out.push(("max_object_bytes".into(), "must be at least 1".into()));
        }
        if self.backend_concurrency == 0 {
            out.push(("backend_concurrency".into(), "must be at least 1".into()));
        }
        out
    }
}

/// Everything the dataplane needs from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DataplaneConfig {
    pub backends: BTreeMap<String, BackendConfig>,
    pub workspaces: WorkspacesConfig,
    pub limits: LimitsConfig,
    /// Where multipart upload parts wait for completion (`<data_dir>/uploads` in a gateway).
    pub spool_dir: std::path::PathBuf,
    /// The block cache reads go through.
    pub cache: archway_cache::CacheConfig,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            backends: BTreeMap::new(),
            workspaces: WorkspacesConfig::default(),
            limits: LimitsConfig::default(),
            spool_dir: std::env::temp_dir().join("archway-uploads"),
            cache: archway_cache::CacheConfig::default(),
        }
    }
}

/// The operation a dataplane call performs: the closed set used in logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Head,
    Get,
    Put,
    Copy,
    Delete,
    Scan,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Head => "head",
            Op::Get => "get",
            Op::Put => "put",
            Op::Copy => "copy",
            Op::Delete => "delete",
            Op::Scan => "scan",
        }
    }
}

impl Op {
    /// Whether the operation changes a volume's data (refused on read-only volumes).
    pub fn writes(self) -> bool {
        matches!(self, Op::Put | Op::Copy | Op::Delete)
    }

    /// The access level the operation needs.
    pub fn needs(self) -> catalog::Access {
        match self {
            Op::List | Op::Head | Op::Get => catalog::Access::Read,
            Op::Put | Op::Copy | Op::Delete => catalog::Access::Write,
            Op::Scan => catalog::Access::Admin,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;

//! Workspace quotas at the storage seam: every commit to a workspace (a put, a multipart
//! completion, a copy, a rename over an object, a delete) moves its usage in the catalogue,
//! and a commit that would pass the workspace's or its owner's quota is refused before it
//! happens ([`archway_catalog::Catalog::charge_usage`]).
//!
//! A write is charged the difference it makes: its size less the size of the object it
//! replaces, and one object unless it replaces one. The object replaced is read, and the
//! commit made, under a lock on the key (one of [`STRIPES`] locks a key hashes to), so two
//! writers of one key on this gateway do not both count the object they replace. Replicas
//! behind a load balancer that hashes by URI see one key's writers on one gateway; writers of
//! one key on two replicas at the same instant can each count the object they both replace,
//! leaving usage off by that object's size until the next `archway catalog volume scan`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use archway_catalog::{Catalog, CatalogError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::DataplaneError;

/// How many key locks a gateway keeps (keys share them by hash).
pub const STRIPES: usize = 256;

/// What a workspace's writes are counted with: the catalogue, and the key locks.
#[derive(Clone)]
pub(crate) struct Meter {
    catalog: Catalog,
    locks: Arc<Metering>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

/// What every workspace's meter shares: striped locks over (volume, key), and this gateway's
/// count of refused commits.
pub(crate) struct Metering {
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Refusals by (scope, what): see [`REFUSAL_LABELS`].
    refusals: [AtomicU64; 4],
}

/// The (scope, what) of each refusal counter.
pub const REFUSAL_LABELS: [(&str, &str); 4] = [
    ("workspace", "bytes"),
    ("workspace", "objects"),
    ("user", "bytes"),
    ("user", "objects"),
];

impl Metering {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            refusals: Default::default(),
        }
    }

    /// Commits refused by a quota on this gateway, by (scope, what).
    pub(crate) fn refusals(&self) -> Vec<(&'static str, &'static str, u64)> {
        REFUSAL_LABELS
            .iter()
            .zip(&self.refusals)
            .map(|((scope, what), n)| (*scope, *what, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn refused(&self, scope: &str, what: &str) {
        if let Some(i) = REFUSAL_LABELS
            .iter()
            .position(|(s, w)| *s == scope && *w == what)
        {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stripe(volume: &str, key: &Path) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (volume, key.as_ref()).hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }
}

/// Held while a commit's usage is decided and the commit made.
pub(crate) struct KeyGuard<'a> {
    _first: tokio::sync::MutexGuard<'a, ()>,
    _second: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Meter {
    pub(crate) fn new(catalog: Catalog, locks: Arc<Metering>) -> Self {
        Self { catalog, locks }
    }

    /// Locks `key` of `volume`.
    pub(crate) async fn lock(&self, volume: &str, key: &Path) -> KeyGuard<'_> {
        KeyGuard {
            _first: self.locks.stripes[Metering::stripe(volume, key)]
                .lock()
                .await,
            _second: None,
        }
    }

    /// Locks two keys of `volume` (a rename), in stripe order so two renames cannot deadlock.
    pub(crate) async fn lock_two(&self, volume: &str, a: &Path, b: &Path) -> KeyGuard<'_> {
        let (i, j) = (Metering::stripe(volume, a), Metering::stripe(volume, b));
        let (lo, hi) = (i.min(j), i.max(j));
        let first = self.locks.stripes[lo].lock().await;
        let second = if hi != lo {
            Some(self.locks.stripes[hi].lock().await)
        } else {
            None
        };
        KeyGuard {
            _first: first,
            _second: second,
        }
    }

    /// Charges `volume` the change a commit makes, or refuses it.
    pub(crate) async fn charge(&self, volume: &str, change: Change) -> Result<(), DataplaneError> {
        if change.is_zero() {
            return Ok(());
        }
        match self
            .catalog
            .charge_usage(volume, change.bytes, change.objects)
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ CatalogError::QuotaExceeded { .. }) => {
                if let CatalogError::QuotaExceeded { scope, what, .. } = &e {
                    self.locks.refused(scope.kind(), what);
                }
                Err(DataplaneError::QuotaExceeded {
                    volume: volume.to_string(),
                    message: e.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives back what a charge took when its commit did not happen, or what a removed object
    /// held. Never refused; a catalogue that cannot be reached leaves usage counted high
    /// (the safe side) until the next scan, and says so in the log.
    /// An object of `size` bytes left the workspace (deleted, or replaced by a rename).
    pub(crate) async fn removed(&self, volume: &str, size: u64) {
        self.refund(volume, Change::write(size, None)).await;
    }

    /// Gives back what a charge took (never refused).
    pub(crate) async fn refund(&self, volume: &str, change: Change) {
        let back = Change {
            bytes: -change.bytes,
            objects: -change.objects,
        };
        if back.is_zero() {
            return;
        }
        if let Err(e) = self
            .catalog
            .charge_usage(volume, back.bytes, back.objects)
            .await
        {
            tracing::warn!(
                volume,
                error = %e,
                "workspace usage not lowered: it stays counted high until the next scan"
            );
        }
    }
}

/// A change of usage: bytes and objects, either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub bytes: i64,
    pub objects: i64,
}

impl Change {
    fn is_zero(&self) -> bool {
        self.bytes == 0 && self.objects == 0
    }

    /// Writing `size` bytes over `replaced` (the size of the object there, if any).
    pub(crate) fn write(size: u64, replaced: Option<u64>) -> Self {
        Self {
            bytes: clamp(size) - clamp(replaced.unwrap_or(0)),
            objects: i64::from(replaced.is_none()),
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The size of the object at `path` in `store`, None when there is none.
pub(crate) async fn size_of(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Option<u64>> {
    match store.head(path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

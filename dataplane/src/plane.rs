//! The dataplane: resolve a volume, decide what the caller may do, act.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::backend::Backend;
use crate::catalog::{Catalog, CatalogError, Principal, ScanSummary, VolumeKind};
use crate::listing::{ListPage, ListRequest};
use crate::read::{ObjectInfo, ObjectRead, ReadRequest};
use crate::write::{CopyRequest, PutOutcome, PutRequest};
use crate::{BodyError, DataplaneConfig, DataplaneError, Op, Result, VolumeStore};
use archway_cache::{BlockCache, CachedStore};

/// The shared read/write path, and the one place that decides who may do what.
pub struct Dataplane {
    catalog: Catalog,
    backends: HashMap<String, Arc<Backend>>,
    /// Backends of the volumes linked from peer gateways (`peer.NAME`), built from the
    /// catalogue's link records on first use and checked against them every
    /// [`PEER_RECHECK`].
    peers: std::sync::Mutex<HashMap<String, PeerBackend>>,
    config: DataplaneConfig,
    limits: Arc<crate::LimitsConfig>,
    cache: Option<Arc<BlockCache>>,
    /// The key locks and refusal counts of workspace commits (see `quota.rs`).
    metering: Arc<crate::quota::Metering>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A peer link's backend as built, and from which version of the link.
#[derive(Clone)]
struct PeerBackend {
    backend: Arc<Backend>,
    updated_at: archway_catalog::Timestamp,
    checked: std::time::Instant,
}

/// How long a peer link's backend is used before the link's record is read again: the bound
/// on how stale a changed link's credentials can be on another replica.
pub const PEER_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl Dataplane {
    /// Builds every configured backend; a backend that cannot be built is an error naming it.
    pub async fn new(catalog: Catalog, config: DataplaneConfig) -> Result<Self> {
        let configured = config.backends.clone();
        let concurrency = config.limits.backend_concurrency;
        // Building a file backend looks at its directory: off the runtime's workers.
        let backends = tokio::task::spawn_blocking(move || {
            let mut backends = HashMap::new();
            for (name, backend) in &configured {
                let b = Backend::new(name, backend, concurrency)?;
                backends.insert(name.clone(), Arc::new(b));
            }
            Ok::<_, DataplaneError>(backends)
        })
        .await
        .map_err(|e| DataplaneError::Backend {
            backend: "(all)".into(),
            message: format!("building the backends failed: {e}"),
        })??;
        let cache = if config.cache.enabled {
            Some(BlockCache::new(config.cache.clone()).await)
        } else {
            None
        };
        Ok(Self {
            catalog,
            backends,
            peers: std::sync::Mutex::new(HashMap::new()),
            limits: Arc::new(config.limits.clone()),
            config,
            cache,
            metering: Arc::new(crate::quota::Metering::new()),
        })
    }

    /// Removes what writes interrupted by a crash left in the file backends that hold
    /// writable volumes (staging files unmodified for `max_age`); returns how many files went.
    pub async fn sweep_staging(&self, max_age: std::time::Duration) -> Result<usize> {
        let system = archway_catalog::Principal::gateway();
        let mut names: Vec<String> = Vec::new();
        let page = 10_000u32;
        for n in 0.. {
            let query = archway_catalog::VolumeQuery {
                limit: Some(page),
                offset: Some(n * page),
                ..Default::default()
            };
            let volumes = self.catalog.list_volumes(Some(&system), &query).await?;
            let last = volumes.len() < page as usize;
            names.extend(
                volumes
                    .into_iter()
                    .filter(|(v, _)| !v.read_only)
                    .map(|(v, _)| v.backend),
            );
            if last {
                break;
            }
        }
        names.push(self.workspace_backend());
        names.sort();
        names.dedup();
        let mut removed = 0;
        for name in names {
            let Some(posix) = self.backends.get(&name).and_then(|b| b.posix.clone()) else {
                continue;
            };
            let swept = tokio::task::spawn_blocking(move || posix.sweep_staging(max_age)).await;
            match swept {
                Ok(Ok(n)) => removed += n,
                Ok(Err(e)) => {
                    tracing::warn!(backend = %name, error = %e, "sweeping staging files failed")
                }
                Err(e) => tracing::warn!(backend = %name, error = %e, "staging sweep panicked"),
            }
        }
        Ok(removed)
    }

    /// Commits refused by a workspace quota on this gateway, by (scope, what): `workspace` or
    /// `user`, `bytes` or `objects`.
    pub fn quota_refusals(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.metering.refusals()
    }

    /// The backend of the volumes linked from peer `name`: the cached one while the link is
    /// unchanged, else built again from the link's record.
    async fn peer_backend(&self, name: &str) -> Result<Arc<Backend>> {
        let now = std::time::Instant::now();
        let cached = self.lock_peers().get(name).cloned();
        if let Some(p) = &cached
            && now.duration_since(p.checked) < PEER_RECHECK
        {
            return Ok(p.backend.clone());
        }
        let link = self.catalog.peer_credentials(name).await?;
        if let Some(p) = cached
            && p.updated_at == link.updated_at
        {
            let mut peers = self.lock_peers();
            if let Some(entry) = peers.get_mut(name) {
                entry.checked = now;
            }
            return Ok(p.backend);
        }
        let config = crate::BackendConfig {
            url: format!("archway+{}", link.url),
            access_key_id: Some(link.access_key_id.clone()),
            secret_access_key: Some(crate::backend::Secret(link.secret_access_key.clone())),
            token: link.token.clone().map(crate::backend::Secret),
            ..Default::default()
        };
        let backend_name = archway_catalog::peer_backend(name);
        let concurrency = self.config.limits.backend_concurrency;
        let backend = tokio::task::spawn_blocking(move || {
            Backend::new(&backend_name, &config, concurrency).map(Arc::new)
        })
        .await
        .map_err(|e| DataplaneError::Backend {
            backend: archway_catalog::peer_backend(name),
            message: format!("building the backend failed: {e}"),
        })??;
        self.lock_peers().insert(
            name.to_string(),
            PeerBackend {
                backend: backend.clone(),
                updated_at: link.updated_at,
                checked: now,
            },
        );
        Ok(backend)
    }

    /// Forgets the backend of peer `name` (its link changed or went).
    pub(crate) fn forget_peer(&self, name: &str) {
        self.lock_peers().remove(name);
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerBackend>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The block cache, when enabled.
    pub fn cache(&self) -> Option<&Arc<BlockCache>> {
        self.cache.as_ref()
    }

    /// The catalogue, for reading what every caller may read (health, authentication) and
    /// for the gateway's own start-up; changes a caller asks for go through
    /// [`Dataplane`]'s catalogue operations, which check the caller.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &DataplaneConfig {
        &self.config
    }

    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }

    /// The backend new workspaces go to (`[workspaces] backend`, else the built-in one).
    fn workspace_backend(&self) -> String {
        self.config
            .workspaces
            .backend
            .clone()
            .unwrap_or_else(|| "workspaces".into())
    }

    /// The backend new workspaces go to, and the prefix for a workspace named `id`.
    pub fn workspace_location(&self, id: &str) -> Option<(String, String)> {
        let ws = &self.config.workspaces;
        let backend = self.workspace_backend();
        if !self.has_backend(&backend) {
            return None;
        }
        let prefix = ws.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            id.to_string()
        } else {
            format!("{prefix}/{id}")
        };
        Some((backend, prefix))
    }

    /// Resolves `volume` for `op` by `who` (None: anonymous), checking access: the checked
    /// handle every front works through.
    pub async fn open(&self, who: Option<&Principal>, volume: &str, op: Op) -> Result<VolumeStore> {
        // From the catalogue's in-memory view: no database round trip per request.
        let view = self.catalog.view().await?;
        let record = match view.volume(volume) {
            Ok(v) => v,
            Err(CatalogError::NotFound { .. }) => {
                return Err(DataplaneError::NoSuchVolume {
                    volume: volume.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let access = view
            .access(who, &record)
            .ok_or_else(|| DataplaneError::AccessDenied {
                volume: volume.to_string(),
                op,
                anonymous: who.is_none(),
            })?;
        let backend = match self.backends.get(&record.backend) {
            Some(b) => b.clone(),
            None => match record.backend.strip_prefix("peer.") {
                Some(peer) => self.peer_backend(peer).await.map_err(|e| match e {
                    DataplaneError::Catalog(CatalogError::NotFound { .. }) => {
                        DataplaneError::UnknownBackend {
                            volume: volume.to_string(),
                            backend: record.backend.clone(),
                        }
                    }
                    other => other,
                })?,
                None => {
                    return Err(DataplaneError::UnknownBackend {
                        volume: volume.to_string(),
                        backend: record.backend.clone(),
                    });
                }
            },
        };
        let mut store = backend.volume_store(&record.prefix)?;
        if let Some(cache) = &self.cache
            && !(cache.config().bypass_workspaces && record.kind == VolumeKind::Workspace)
            && !cache.config().bypass_volumes.contains(&record.id)
        {
            // Volumes over the same backend and prefix share their blocks.
            let scope = format!("{}:{}", record.backend, record.prefix);
            store = Arc::new(CachedStore::new(store, cache.clone(), scope));
        }
        let meter = (record.kind == VolumeKind::Workspace)
            .then(|| crate::quota::Meter::new(self.catalog.clone(), self.metering.clone()));
        let handle = VolumeStore {
            volume: record,
            access,
            who: who.cloned(),
            inner: store,
            backend,
            limits: self.limits.clone(),
            meter,
        };
        handle.allow(op)?;
        Ok(handle)
    }

    pub async fn head(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
    ) -> Result<ObjectInfo> {
        self.head_if(who, volume, key, &ReadRequest::default())
            .await
    }

    /// HEAD with HTTP conditions (the request's range is ignored).
    pub async fn head_if(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: &ReadRequest,
    ) -> Result<ObjectInfo> {
        crate::key::parse_key(key)?;
        self.open(who, volume, Op::Head).await?.head(key, req).await
    }

    pub async fn get(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        req: ReadRequest,
    ) -> Result<ObjectRead> {
        crate::key::parse_key(key)?;
        self.open(who, volume, Op::Get).await?.get(key, req).await
    }

    /// Writes `body` to `key`, streaming; readers see the old object or the complete new one.
    pub async fn put<S>(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        body: S,
        req: PutRequest,
    ) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, BodyError>> + Send,
    {
        crate::key::parse_key(key)?;
        self.open(who, volume, Op::Put)
            .await?
            .put(key, body, req)
            .await
    }

    /// Copies an object, within a volume or across volumes (streamed through the gateway).
    ///
    /// The copy keeps the source's attributes unless `req.attributes` replaces them (S3's
    /// `MetadataDirective=REPLACE`), and is held to `req`'s conditions on the target.
    pub async fn copy(
        &self,
        who: Option<&Principal>,
        from: (&str, &str),
        to: (&str, &str),
        req: CopyRequest,
    ) -> Result<PutOutcome> {
        let (src_volume, src_key) = from;
        let (dst_volume, dst_key) = to;
        crate::key::parse_key(src_key)?;
        crate::key::parse_key(dst_key)?;
        let dst = self.open(who, dst_volume, Op::Copy).await?;
        let plain =
            req.attributes.is_none() && req.if_match.is_none() && req.if_none_match.is_none();
        if src_volume == dst_volume && plain {
            return dst.copy_within(src_key, dst_key).await;
        }
        let src = if src_volume == dst_volume {
            dst.clone()
        } else {
            self.open(who, src_volume, Op::Get).await?
        };
        let read = src.get(src_key, ReadRequest::default()).await?;
        // The copy is a new single-part object: it keeps the source's checksum of the whole
        // object, but not its parts (nor a checksum of them).
        let mut source_attributes = read.info.attributes.clone();
        source_attributes.parts = None;
        source_attributes
            .checksum
            .take_if(|c| c.kind == crate::checksum::ChecksumType::Composite);
        let req = PutRequest {
            attributes: req.attributes.unwrap_or(source_attributes),
            if_match: req.if_match,
            if_none_match: req.if_none_match,
            etag: None,
        };
        let body = read
            .body
            .map(|r| r.map_err(|e| BodyError::Source(Box::new(e))));
        dst.put(dst_key, body, req).await
    }

    /// Deletes an object; deleting one that does not exist succeeds (S3 semantics).
    pub async fn delete(&self, who: Option<&Principal>, volume: &str, key: &str) -> Result<()> {
        self.delete_if(who, volume, key, None).await
    }

    /// [`Dataplane::delete`], only when the object's ETag is `if_match` (`*`: when it
    /// exists); otherwise `PreconditionFailed`.
    pub async fn delete_if(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        crate::key::parse_key(key)?;
        let h = self.open(who, volume, Op::Delete).await?;
        if let Some(want) = if_match {
            let failed = || DataplaneError::PreconditionFailed {
                volume: volume.to_string(),
                key: key.to_string(),
            };
            match h.head(key, &ReadRequest::default()).await {
                Ok(info) => {
                    let want = crate::read::unquote(want.trim());
                    if want != "*" && info.etag.as_deref() != Some(want.as_str()) {
                        return Err(failed());
                    }
                }
                Err(DataplaneError::NoSuchKey { .. }) => return Err(failed()),
                Err(e) => return Err(e),
            }
        }
        h.delete(key).await
    }

    /// One page of keys under a prefix, optionally grouped by a delimiter.
    pub async fn list(
        &self,
        who: Option<&Principal>,
        volume: &str,
        req: &ListRequest,
    ) -> Result<ListPage> {
        self.open(who, volume, Op::List).await?.list(req).await
    }

    /// Walks the whole volume, counting objects and bytes, and records the result in the
    /// catalogue. `progress` sees running totals every 1000 objects and at the end.
    pub async fn scan(
        &self,
        who: Option<&Principal>,
        volume: &str,
        progress: impl FnMut(u64, u64) + Send,
    ) -> Result<ScanSummary> {
        let h = self.open(who, volume, Op::Scan).await?;
        let (objects, bytes) = h.count(progress).await?;
        Ok(self.catalog.record_scan(volume, objects, bytes).await?)
    }
}

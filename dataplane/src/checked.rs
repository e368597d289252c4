//! The storage seam of a [`VolumeStore`]: every `ObjectStore` call checked.
//!
//! Layers that take any store — the mount in local mode, the compute path — get the volume as
//! this implementation, so the rules hold whoever calls: the caller's access for the operation
//! (reads, writes, deletes), read-only volumes, key validation, and
//! `limits.max_object_bytes` on single puts and on the parts of a multipart upload. A refusal
//! travels inside the `object_store` error as the [`DataplaneError`] it is
//! (`PermissionDenied` for access, `Generic` for a bad key or a size), so a front finds it by
//! type ([`crate::error::refusal`]), never by text.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};

use crate::key::{check_path, is_marker_path, key_of};
use crate::quota::{Change, Meter, size_of};
use crate::{DataplaneError, Op, VolumeStore};

/// The store name in `Generic` errors carrying a dataplane refusal.
const STORE: &str = "archway";

fn refused(path: &Path, e: DataplaneError) -> object_store::Error {
    match e {
        DataplaneError::AccessDenied { .. } | DataplaneError::ReadOnly { .. } => {
            object_store::Error::PermissionDenied {
                path: path.to_string(),
                source: Box::new(e),
            }
        }
        e => object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        },
    }
}

impl VolumeStore {
    /// Checks `op` on `path` (a key, or a listing prefix when `prefix`).
    fn check(&self, op: Op, path: &Path) -> object_store::Result<()> {
        self.allow(op).map_err(|e| refused(path, e))?;
        check_path(path).map_err(|e| refused(path, e))?;
        if matches!(op, Op::Put | Op::Copy)
            && is_marker_path(path)
            && !self.backend.holds_folder_markers()
        {
            return Err(refused(
                path,
                DataplaneError::InvalidKey {
                    key: key_of(path),
                    reason: format!(
                        "volume `{}` is on a {} backend, which cannot hold folder markers \
                         (keys ending in '/')",
                        self.volume.id,
                        self.backend.kind.as_str()
                    ),
                },
            ));
        }
        Ok(())
    }

    fn check_listing(&self, prefix: Option<&Path>) -> object_store::Result<()> {
        let at = prefix.cloned().unwrap_or_default();
        // Any path is a prefix (one no key begins with lists nothing).
        self.allow(Op::List).map_err(|e| refused(&at, e))
    }

    fn too_large(&self, path: &Path, what: &'static str) -> object_store::Error {
        refused(
            path,
            DataplaneError::EntityTooLarge {
                volume: self.volume.id.clone(),
                key: path.to_string(),
                limit: self.limits.max_object_bytes,
                what,
            },
        )
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for VolumeStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(Op::Put, location)?;
        if payload.content_length() as u64 > self.limits.max_object_bytes {
            return Err(self.too_large(location, "limits.max_object_bytes"));
        }
        if !self.backend.keeps_attributes() {
            opts.attributes = Default::default();
        }
        let Some(meter) = &self.meter else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let _key = meter.lock(&self.volume.id, location).await;
        let replaced = size_of(self.inner.as_ref(), location).await?;
        let change = Change::write(payload.content_length() as u64, replaced);
        let put = self.inner.put_opts(location, payload, opts);
        charged(meter, &self.volume.id, location, change, put).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        mut opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(Op::Put, location)?;
        if !self.backend.keeps_attributes() {
            opts.attributes = Default::default();
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(BoundedUpload {
            inner,
            written: Arc::new(AtomicU64::new(0)),
            limit: self.limits.max_object_bytes,
            volume: self.volume.id.clone(),
            key: location.to_string(),
            metered: self
                .meter
                .clone()
                .map(|m| (m, self.inner.clone(), location.clone())),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.check(op, location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(Op::Get, location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        if let Some(meter) = self.meter.clone() {
            // A workspace: each delete, under its key's lock, gives back what it removed.
            return locations
                .then(move |p| {
                    let (this, meter) = (this.clone(), meter.clone());
                    async move {
                        let p = p?;
                        this.check(Op::Delete, &p)?;
                        this.metered_delete(&meter, &p).await?;
                        Ok(p)
                    }
                })
                .boxed();
        }
        let checked = locations
            .map(move |p| {
                let p = p?;
                this.check(Op::Delete, &p)?;
                Ok(p)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check_listing(prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check_listing(prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check_listing(prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(Op::Get, from)?;
        self.check(Op::Copy, to)?;
        let Some(meter) = &self.meter else {
            return self.inner.copy_opts(from, to, options).await;
        };
        let _key = meter.lock(&self.volume.id, to).await;
        let size = self.inner.head(from).await?.size;
        let replaced = size_of(self.inner.as_ref(), to).await?;
        let change = Change::write(size, replaced);
        let copy = self.inner.copy_opts(from, to, options);
        charged(meter, &self.volume.id, to, change, copy).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.check(Op::Delete, from)?;
        self.check(Op::Copy, to)?;
        let Some(meter) = &self.meter else {
            return self.inner.rename_opts(from, to, options).await;
        };
        // The object moves within the workspace: only one it replaces leaves the usage.
        let _keys = meter.lock_two(&self.volume.id, from, to).await;
        let replaced = size_of(self.inner.as_ref(), to).await?;
        self.inner.rename_opts(from, to, options).await?;
        if let Some(size) = replaced {
            meter.removed(&self.volume.id, size).await;
        }
        Ok(())
    }
}

/// Charges `change` to workspace `volume` (refused past a quota, as a refusal of `path`),
/// makes `commit`, and gives the charge back when the commit fails.
async fn charged<T>(
    meter: &Meter,
    volume: &str,
    path: &Path,
    change: Change,
    commit: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    meter
        .charge(volume, change)
        .await
        .map_err(|e| refused(path, e))?;
    let done = commit.await;
    if done.is_err() {
        meter.refund(volume, change).await;
    }
    done
}

impl VolumeStore {
    /// Deletes `path` of a workspace, giving back what the object held.
    async fn metered_delete(&self, meter: &Meter, path: &Path) -> object_store::Result<()> {
        let _key = meter.lock(&self.volume.id, path).await;
        let removed = size_of(self.inner.as_ref(), path).await?;
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(size) = removed {
            meter.removed(&self.volume.id, size).await;
        }
        Ok(())
    }
}

/// A multipart upload held to the volume's object size limit: a part that would take the
/// object past it fails, and so does the completion.
#[derive(Debug)]
struct BoundedUpload {
    inner: Box<dyn MultipartUpload>,
    written: Arc<AtomicU64>,
    limit: u64,
    volume: String,
    key: String,
    /// A workspace's meter, its unchecked store and the key: the completion is charged.
    metered: Option<(Meter, Arc<dyn ObjectStore>, Path)>,
}

impl BoundedUpload {
    fn over(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: Box::new(DataplaneError::EntityTooLarge {
                volume: self.volume.clone(),
                key: self.key.clone(),
                limit: self.limit,
                what: "limits.max_object_bytes",
            }),
        }
    }
}

#[async_trait]
impl MultipartUpload for BoundedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let total = self
            .written
            .fetch_add(data.content_length() as u64, Ordering::AcqRel)
            + data.content_length() as u64;
        if total > self.limit {
            let err = self.over();
            return Box::pin(async move { Err(err) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let size = self.written.load(Ordering::Acquire);
        if size > self.limit {
            return Err(self.over());
        }
        let Some((meter, store, path)) = self.metered.clone() else {
            return self.inner.complete().await;
        };
        let _key = meter.lock(&self.volume, &path).await;
        let replaced = size_of(store.as_ref(), &path).await?;
        let change = Change::write(size, replaced);
        let complete = self.inner.complete();
        charged(&meter, &self.volume, &path, change, complete).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

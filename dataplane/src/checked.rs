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
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

use crate::key::{check_path, is_marker_path, key_of};
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
        self.inner.put_opts(location, payload, opts).await
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
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.check(Op::Delete, from)?;
        self.check(Op::Copy, to)?;
        self.inner.rename_opts(from, to, options).await
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
        if self.written.load(Ordering::Acquire) > self.limit {
            return Err(self.over());
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

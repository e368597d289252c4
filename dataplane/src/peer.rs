//! Volumes of another Archway gateway, reached through its S3 front: what a peer backend
//! serves, and what `archway mount` uses in remote mode.
//!
//! object_store reports a refused object request as `PermissionDenied`, but a refused *listing*
//! as a generic error with the HTTP status buried in its source. [`PeerStore`] tells the two
//! apart by kind: when a listing fails that way it asks the gateway about one key of the same
//! volume (a HEAD, which the gateway answers 403 for a volume the caller may not read whether or
//! not the key exists) and reports the listing as `PermissionDenied` when that is refused.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// The key asked about when a listing of the volume's root fails.
const PROBE_KEY: &str = ".archway-access-probe";

/// A peer gateway's volume as an S3 store, with refused listings reported as such.
#[derive(Debug, Clone)]
pub struct PeerStore {
    inner: Arc<object_store::aws::AmazonS3>,
}

impl fmt::Display for PeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerStore({})", self.inner)
    }
}

impl PeerStore {
    pub fn new(inner: object_store::aws::AmazonS3) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `e` from listing `prefix`, as `PermissionDenied` when the gateway refuses the caller.
    async fn classify(&self, prefix: Option<&str>, e: object_store::Error) -> object_store::Error {
        if !matches!(e, object_store::Error::Generic { .. }) {
            return e;
        }
        let probe = match prefix.map(|p| p.trim_end_matches('/')) {
            Some(p) if !p.is_empty() => Path::from(p),
            _ => Path::from(PROBE_KEY),
        };
        match self.inner.head(&probe).await {
            Err(
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ) => object_store::Error::PermissionDenied {
                path: probe.to_string(),
                source: Box::new(e),
            },
            _ => e,
        }
    }

    fn classified_stream(
        &self,
        prefix: Option<&Path>,
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.map(|p| p.to_string());
        stream
            .or_else(move |e| {
                let this = this.clone();
                let prefix = prefix.clone();
                async move { Err(this.classify(prefix.as_deref(), e).await) }
            })
            .boxed()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for PeerStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.classified_stream(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.classified_stream(prefix, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        match self.inner.list_with_delimiter(prefix).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.classify(prefix.map(Path::as_ref), e).await),
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[async_trait]
impl PaginatedListStore for PeerStore {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> object_store::Result<PaginatedListResult> {
        match self.inner.list_paginated(prefix, opts).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.classify(prefix, e).await),
        }
    }
}

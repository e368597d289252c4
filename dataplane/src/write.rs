//! The one streamed write path: a body of any length into one atomic object.
//!
//! Bodies up to one part go to the store in one request; longer ones as a multipart upload
//! with at most `concurrency` parts in memory, completed only after the body ended cleanly
//! (and aborted otherwise), so readers see the old object or the whole new one. Every writer
//! uses it — the S3 front and the HTTP API through [`crate::VolumeStore::put`], the mount
//! through [`write_stream`] over its volume's store (in local mode the dataplane's checked
//! [`crate::VolumeStore`], in remote mode a gateway's S3 front).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    UpdateVersion, WriteMultipart,
};

use crate::attributes::ObjectAttributes;
use crate::read::unquote;
use crate::{BodyError, DataplaneError, Op, Result};

/// What a write asks for besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub attributes: ObjectAttributes,
    /// Write only if the object's ETag is this one (`*`: if it exists at all).
    pub if_match: Option<String>,
    /// Write only if no object exists (`*`, the only form S3 takes on writes).
    pub if_none_match: Option<String>,
    /// The ETag S3 gives the result, when it is not the MD5 of the body: a completed multipart
    /// upload's `md5-of-part-md5s-N`.
    pub etag: Option<String>,
}

/// What a copy asks for besides its source and target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyRequest {
    /// New attributes (S3's `MetadataDirective=REPLACE`); None keeps the source's.
    pub attributes: Option<ObjectAttributes>,
    /// Conditions on the target, as for [`PutRequest`].
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

/// The ETag of an object being written, for stores that record it (the file store): set by
/// the write path in the options' extensions when it is known before the write (a completed
/// multipart upload's); otherwise the store computes the MD5 of the bytes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentEtag(pub String);

/// The condition a write is held to, resolved against the object as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    None,
    /// No object may exist.
    Create,
    /// The object must still have this version (as the store names it).
    Update(UpdateVersion),
}

impl Condition {
    fn mode(&self) -> PutMode {
        match self {
            Condition::None => PutMode::Overwrite,
            Condition::Create => PutMode::Create,
            Condition::Update(v) => PutMode::Update(v.clone()),
        }
    }

    /// Checks the condition against the object now (before a multipart upload commits, where
    /// the store has no conditional completion).
    async fn holds(
        &self,
        store: &dyn ObjectStore,
        path: &Path,
        volume: &str,
        key: &str,
    ) -> Result<()> {
        let failed = || DataplaneError::PreconditionFailed {
            volume: volume.to_string(),
            key: key.to_string(),
        };
        match self {
            Condition::None => Ok(()),
            Condition::Create => match store.head(path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                Ok(_) => Err(failed()),
                Err(e) => Err(DataplaneError::from_store_error(volume, key, Op::Put, e)),
            },
            Condition::Update(v) => match store.head(path).await {
                Ok(meta) if meta.e_tag == v.e_tag => Ok(()),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Err(failed()),
                Err(e) => Err(DataplaneError::from_store_error(volume, key, Op::Put, e)),
            },
        }
    }
}

/// Resolves a write's `If-Match`/`If-None-Match` against the object as it is now.
pub(crate) async fn condition(
    store: &dyn ObjectStore,
    path: &Path,
    volume: &str,
    key: &str,
    req: &PutRequest,
) -> Result<Condition> {
    let failed = || DataplaneError::PreconditionFailed {
        volume: volume.to_string(),
        key: key.to_string(),
    };
    match (&req.if_none_match, &req.if_match) {
        (None, None) => Ok(Condition::None),
        (Some(n), _) if n.trim() != "*" => Err(DataplaneError::InvalidRequest {
            message: "If-None-Match on a write takes only `*` (write if no object exists)".into(),
        }),
        (Some(_), Some(_)) => Err(DataplaneError::InvalidRequest {
            message: "If-Match and If-None-Match together on a write".into(),
        }),
        (Some(_), None) => Ok(Condition::Create),
        (None, Some(want)) => match store.head(path).await {
            Ok(meta) => {
                let now = meta.e_tag.as_deref().map(unquote);
                let want = unquote(want.trim());
                if want == "*" || now.as_deref() == Some(want.as_str()) {
                    Ok(Condition::Update(UpdateVersion {
                        e_tag: meta.e_tag,
                        version: meta.version,
                    }))
                } else {
                    Err(failed())
                }
            }
            Err(object_store::Error::NotFound { .. }) => Err(failed()),
            Err(e) => Err(DataplaneError::from_store_error(volume, key, Op::Put, e)),
        },
    }
}

/// A write's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub etag: Option<String>,
    pub size: u64,
    /// The additional checksum the object keeps, if it was written with one.
    pub checksum: Option<crate::checksum::Checksum>,
}

/// What [`write_stream`] wrote: the version tag exactly as the store gave it (quoted or not,
/// as the store compares it in conditions), and the size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub e_tag: Option<String>,
    pub size: u64,
}

impl Written {
    /// The outcome as fronts show it (the ETag unquoted).
    pub fn outcome(&self) -> PutOutcome {
        PutOutcome {
            etag: self.e_tag.as_deref().map(unquote),
            size: self.size,
            checksum: None,
        }
    }
}

/// How a streamed write is cut into requests, and how large it may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteShape {
    /// Bodies up to this size go in one request; longer ones in parts of this size.
    pub part_size: usize,
    /// Parts in flight at once: with the part size, bounds the write's memory.
    pub concurrency: usize,
    /// The largest object the write may create.
    pub max_bytes: u64,
    /// Where `max_bytes` comes from, for the error (e.g. `limits.max_object_bytes`).
    pub max_bytes_from: &'static str,
}

/// Writes `body` to `path` of `store` (the key `key` of `volume`, for errors), streaming.
pub async fn write_stream<S>(
    store: &dyn ObjectStore,
    volume: &str,
    key: &str,
    path: &Path,
    body: S,
    req: &PutRequest,
    shape: WriteShape,
) -> Result<Written>
where
    S: Stream<Item = std::result::Result<Bytes, BodyError>> + Send,
{
    let body_error = |source: BodyError| DataplaneError::Body {
        volume: volume.to_string(),
        key: key.to_string(),
        source,
    };
    let condition = condition(store, path, volume, key, req).await?;
    let store_error = |e| match e {
        // A write that may not replace: the object appeared meanwhile.
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
            if condition != Condition::None && crate::error::tree_conflict(&e).is_none() =>
        {
            DataplaneError::PreconditionFailed {
                volume: volume.to_string(),
                key: key.to_string(),
            }
        }
        e => DataplaneError::from_store_error(volume, key, Op::Put, e),
    };
    let mut extensions = http::Extensions::new();
    if let Some(etag) = &req.etag {
        extensions.insert(ContentEtag(etag.clone()));
    }
    let attributes = req.attributes.to_store();
    let too_large = || DataplaneError::EntityTooLarge {
        volume: volume.to_string(),
        key: key.to_string(),
        limit: shape.max_bytes,
        what: shape.max_bytes_from,
    };
    let mut body = std::pin::pin!(body);
    let mut head: Vec<Bytes> = Vec::new();
    let mut size: u64 = 0;
    let mut buffered = 0usize;
    while buffered < shape.part_size {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(body_error)?;
                buffered += chunk.len();
                size += chunk.len() as u64;
                if size > shape.max_bytes {
                    return Err(too_large());
                }
                head.push(chunk);
            }
            None => {
                let opts = PutOptions {
                    mode: condition.mode(),
                    attributes,
                    extensions,
                    ..Default::default()
                };
                let r = store
                    .put_opts(path, PutPayload::from_iter(head), opts)
                    .await
                    .map_err(store_error)?;
                return Ok(Written {
                    e_tag: r.e_tag,
                    size,
                });
            }
        }
    }
    let opts = PutMultipartOptions {
        attributes,
        extensions,
        ..Default::default()
    };
    let upload = store
        .put_multipart_opts(path, opts)
        .await
        .map_err(store_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, shape.part_size);
    for chunk in head {
        writer.put(chunk);
    }
    let failed = |writer: WriteMultipart, err: DataplaneError| async move {
        if let Err(abort) = writer.abort().await {
            tracing::warn!(volume, key, error = %abort, "aborting an upload failed");
        }
        err
    };
    loop {
        if let Err(e) = writer.wait_for_capacity(shape.concurrency).await {
            return Err(store_error(e));
        }
        match body.next().await {
            Some(Ok(chunk)) if size + chunk.len() as u64 > shape.max_bytes => {
                return Err(failed(writer, too_large()).await);
            }
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                writer.put(chunk);
            }
            Some(Err(e)) => return Err(failed(writer, body_error(e)).await),
            None => break,
        }
    }
    // Multipart completion is not conditional in object_store: check just before it.
    if let Err(e) = condition.holds(store, path, volume, key).await {
        return Err(failed(writer, e).await);
    }
    let r = writer.finish().await.map_err(store_error)?;
    Ok(Written {
        e_tag: r.e_tag,
        size,
    })
}

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
    Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use crate::read::unquote;
use crate::{BodyError, DataplaneError, Op, Result};

/// What a write asks for besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub content_type: Option<String>,
}

/// A write's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub etag: Option<String>,
    pub size: u64,
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
    attributes: Attributes,
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
    let store_error = |e| DataplaneError::from_store_error(volume, key, Op::Put, e);
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
                    attributes,
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
    let r = writer.finish().await.map_err(store_error)?;
    Ok(Written {
        e_tag: r.e_tag,
        size,
    })
}

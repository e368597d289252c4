//! Reads: what a front asks for (ranges, HTTP conditions) and what it gets back.

use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::{Attributes, GetOptions, GetRange, ObjectMeta};

use crate::attributes::ObjectAttributes;

use crate::Result;

/// An object's metadata as the fronts need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// The backend's version tag, unquoted (S3 ETag; for local files the MD5 of what Archway
    /// wrote, or inode-mtime-size-ctime for files it did not write).
    pub etag: Option<String>,
    /// Content headers and user metadata (empty in listings).
    pub attributes: ObjectAttributes,
}

impl ObjectInfo {
    pub(crate) fn new(meta: &ObjectMeta, attributes: &Attributes) -> Self {
        ObjectInfo {
            key: crate::key::key_of(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified.into(),
            etag: meta.e_tag.as_deref().map(unquote),
            attributes: ObjectAttributes::from_store(attributes),
        }
    }
}

/// A byte range of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRange {
    /// Bytes `start..end` (end exclusive).
    Bounded { start: u64, end: u64 },
    /// From `start` to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

impl ReadRange {
    /// Whether an object of `size` bytes holds any of the range.
    pub(crate) fn satisfiable(self, size: u64) -> bool {
        match self {
            ReadRange::Bounded { start, .. } | ReadRange::From(start) => start < size,
            ReadRange::Suffix(n) => n > 0,
        }
    }

    fn get_range(self) -> GetRange {
        match self {
            ReadRange::Bounded { start, end } => GetRange::Bounded(start..end),
            ReadRange::From(start) => GetRange::Offset(start),
            ReadRange::Suffix(n) => GetRange::Suffix(n),
        }
    }
}

/// A read with optional range and conditions (HTTP semantics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    pub range: Option<ReadRange>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<SystemTime>,
    pub if_unmodified_since: Option<SystemTime>,
}

impl ReadRequest {
    /// The `object_store` options for this read; `etag` puts an ETag in the form the store
    /// compares against.
    pub(crate) fn options(&self, head: bool, etag: impl Fn(&str) -> String) -> GetOptions {
        GetOptions {
            head,
            if_match: self.if_match.as_deref().map(&etag),
            if_none_match: self.if_none_match.as_deref().map(&etag),
            if_modified_since: self.if_modified_since.map(Into::into),
            if_unmodified_since: self.if_unmodified_since.map(Into::into),
            range: if head {
                None
            } else {
                self.range.map(ReadRange::get_range)
            },
            ..Default::default()
        }
    }
}

/// A read in progress: metadata, the byte range being returned, and the streamed body.
pub struct ObjectRead {
    pub info: ObjectInfo,
    pub range: Range<u64>,
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// ETags travel without quotes inside Archway, whatever form the store uses.
pub(crate) fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Why a local file read found fewer bytes than its size promised.
pub(crate) const FILE_ENDED_EARLY: &str = "the file ended early (truncated while being read?)";

/// Chunk size for local file reads: large enough that the per-chunk hand-off to a blocking
/// thread is noise next to copying the bytes.
const FILE_CHUNK: usize = 512 * 1024;

/// A local file's range as a stream of large chunks, read on tokio's blocking threads: one
/// hand-over and one positional read per chunk, straight into the chunk's buffer (no seek,
/// no zeroing, no intermediate buffer). object_store's own stream reads 8 KiB per blocking
/// task, which caps a local read far below the disk; tokio's `File` copies each read once
/// more out of its own buffer.
pub(crate) fn file_stream(
    file: std::fs::File,
    path: std::path::PathBuf,
    range: Range<u64>,
) -> impl futures::Stream<Item = std::result::Result<Bytes, object_store::Error>> + Send {
    let io_error = move |source: std::io::Error| object_store::Error::Generic {
        store: "local file",
        source: format!("reading {}: {source}", path.display()).into(),
    };
    let file = std::sync::Arc::new(file);
    let end = range.end;
    futures::stream::try_unfold(range.start, move |pos| {
        let (file, io_error) = (file.clone(), io_error.clone());
        async move {
            if pos >= end {
                return Ok(None);
            }
            let want = ((end - pos) as usize).min(FILE_CHUNK);
            let read = tokio::task::spawn_blocking(move || read_chunk(&file, pos, want))
                .await
                .map_err(|e| io_error(std::io::Error::other(e)))?
                .map_err(&io_error)?;
            Ok(Some((Bytes::from(read), pos + want as u64)))
        }
    })
}

/// `want` bytes of `file` from `at`, read into a new buffer's spare capacity; a file that
/// ends first is an error saying so ([`FILE_ENDED_EARLY`]).
pub(crate) fn read_chunk(file: &std::fs::File, at: u64, want: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(want);
    while buf.len() < want {
        let offset = at + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                FILE_ENDED_EARLY,
            ));
        }
    }
    // The allocator may have given more room than asked, and the read filled it.
    buf.truncate(want);
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn a_file_range_streams_in_chunks_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3 * FILE_CHUNK + 77).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let open = || std::fs::File::open(&path).unwrap();

        let range = 100..(2 * FILE_CHUNK + 5) as u64;
        let chunks: Vec<Bytes> = file_stream(open(), path.clone(), range.clone())
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [FILE_CHUNK, FILE_CHUNK - 95]);
        let joined: Vec<u8> = chunks.concat();
        assert!(joined == data[range.start as usize..range.end as usize]);

        // The file shorter than the range promised (truncated while read): an error that says
        // so, after the bytes there were.
        let past = (data.len() - 10) as u64..(data.len() + 10) as u64;
        let err = file_stream(open(), path.clone(), past)
            .try_collect::<Vec<Bytes>>()
            .await
            .unwrap_err();
        assert!(err.to_string().contains(FILE_ENDED_EARLY), "{err}");
    }
}

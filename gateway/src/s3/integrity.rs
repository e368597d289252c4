//! Body integrity: the digests a request declared, checked as its body streams.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::crypto::Checksum as _;
use s3s::dto::StreamingBlob;
use s3s::{S3Result, s3_error};

use archway_dataplane::BodyError;

use crate::metrics::Metrics;

/// Checks a body against the digests its request declared (Content-MD5, x-amz-checksum-*),
/// ending the stream with an error instead of its end when one differs — so the dataplane,
/// which commits only on a clean end, never stores a corrupted object.
pub(super) struct Integrity {
    md5: Option<(s3s::crypto::Md5, Vec<u8>)>,
    sha256: Option<(s3s::crypto::Sha256, String)>,
    sha1: Option<(s3s::crypto::Sha1, String)>,
    crc32: Option<(s3s::crypto::Crc32, String)>,
    crc32c: Option<(s3s::crypto::Crc32c, String)>,
    crc64nvme: Option<(s3s::crypto::Crc64Nvme, String)>,
}

impl Integrity {
    pub(super) fn new(
        content_md5: Option<&str>,
        sha256: Option<&str>,
        sha1: Option<&str>,
        crc32: Option<&str>,
        crc32c: Option<&str>,
        crc64nvme: Option<&str>,
    ) -> S3Result<Self> {
        let md5 = match content_md5 {
            Some(b64) => {
                let raw = STANDARD
                    .decode(b64.trim())
                    .ok()
                    .filter(|r| r.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))?;
                Some((s3s::crypto::Md5::new(), raw))
            }
            None => None,
        };
        Ok(Self {
            md5,
            sha256: sha256.map(|v| (s3s::crypto::Sha256::new(), v.trim().to_string())),
            sha1: sha1.map(|v| (s3s::crypto::Sha1::new(), v.trim().to_string())),
            crc32: crc32.map(|v| (s3s::crypto::Crc32::new(), v.trim().to_string())),
            crc32c: crc32c.map(|v| (s3s::crypto::Crc32c::new(), v.trim().to_string())),
            crc64nvme: crc64nvme.map(|v| (s3s::crypto::Crc64Nvme::new(), v.trim().to_string())),
        })
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        if let Some((h, _)) = &mut self.md5 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.sha256 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.sha1 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc32 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc32c {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.crc64nvme {
            h.update(data);
        }
    }

    /// The first declared digest that the body did not match.
    pub(super) fn mismatch(self) -> Option<&'static str> {
        if let Some((h, want)) = self.md5
            && h.finalize().as_ref() != want.as_slice()
        {
            return Some("Content-MD5");
        }
        fn differs<H: s3s::crypto::Checksum>(h: Option<(H, String)>) -> bool
        where
            H::Output: AsRef<[u8]>,
        {
            h.is_some_and(|(h, want)| STANDARD.encode(h.finalize().as_ref()) != want)
        }
        if differs(self.sha256) {
            return Some("x-amz-checksum-sha256");
        }
        if differs(self.sha1) {
            return Some("x-amz-checksum-sha1");
        }
        if differs(self.crc32) {
            return Some("x-amz-checksum-crc32");
        }
        if differs(self.crc32c) {
            return Some("x-amz-checksum-crc32c");
        }
        if differs(self.crc64nvme) {
            return Some("x-amz-checksum-crc64nvme");
        }
        None
    }

    /// Wraps `body`: hashes as it goes, counts bytes in, and fails at the end on a mismatch.
    pub(super) fn guard(
        self,
        body: StreamingBlob,
        metrics: Arc<Metrics>,
    ) -> impl Stream<Item = Result<Bytes, BodyError>> + Send {
        let state = Some(self);
        futures::stream::unfold((body, state), move |(mut body, mut state)| {
            let metrics = metrics.clone();
            async move {
                let check = state.as_mut()?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        check.update(&chunk);
                        metrics
                            .s3_bytes
                            .with_label_values(&["in"])
                            .inc_by(chunk.len() as u64);
                        Some((Ok(chunk), (body, state)))
                    }
                    Some(Err(e)) => Some((Err(body_error(&*e)), (body, None))),
                    None => {
                        let check = state.take()?;
                        check
                            .mismatch()
                            .map(|header| (Err(BodyError::DigestMismatch { header }), (body, None)))
                    }
                }
            }
        })
    }
}

/// What went wrong with a body as s3s streams it. s3s checks the signature of each
/// aws-chunked chunk as the body streams, but its error type (`AwsChunkedStreamError`) is
/// private in s3s 0.14: its `SignatureMismatch` variant is known here by its rendering, the
/// one place Archway reads an error's text, turned into a typed [`BodyError`] at once.
fn body_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> BodyError {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        BodyError::ChunkSignature
    } else {
        BodyError::Incomplete { reason: text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        let good = STANDARD.encode(s3s::crypto::Md5::checksum(b"hello").as_ref());
        let mut i = Integrity::new(Some(&good), None, None, None, None, None).unwrap();
        i.update(b"hello");
        assert_eq!(i.mismatch(), None);
        let mut i = Integrity::new(Some(&good), None, None, None, None, None).unwrap();
        i.update(b"hellO");
        assert_eq!(i.mismatch(), Some("Content-MD5"));
        assert!(Integrity::new(Some("not base64!"), None, None, None, None, None).is_err());
    }
}

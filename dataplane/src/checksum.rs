//! S3's additional checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256): computed as bodies
//! stream, kept with objects and upload parts, and combined for multipart uploads — either
//! as a checksum of the part checksums (`COMPOSITE`, `value-N`) or, for the CRCs, as the CRC
//! of the whole object (`FULL_OBJECT`), combined from the parts' CRCs without reading them
//! again.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crc_fast::CrcAlgorithm;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// An additional checksum algorithm, by S3's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    #[serde(rename = "CRC32")]
    Crc32,
    #[serde(rename = "CRC32C")]
    Crc32c,
    #[serde(rename = "CRC64NVME")]
    Crc64Nvme,
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }

    /// The digest's length in bytes.
    fn width(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// The default kind of a multipart upload's checksum (S3's): the whole object's CRC for
    /// CRC64NVME, a checksum of checksums for the others.
    pub fn default_multipart_type(self) -> ChecksumType {
        match self {
            ChecksumAlgorithm::Crc64Nvme => ChecksumType::FullObject,
            _ => ChecksumType::Composite,
        }
    }
}

/// Whether a checksum is of the object's bytes, or of its parts' checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumType {
    FullObject,
    Composite,
}

impl ChecksumType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumType::FullObject => "FULL_OBJECT",
            ChecksumType::Composite => "COMPOSITE",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "FULL_OBJECT" => Some(ChecksumType::FullObject),
            "COMPOSITE" => Some(ChecksumType::Composite),
            _ => None,
        }
    }
}

/// An object's checksum as S3 shows it: the base64 value (`value-N` when composite).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
    pub kind: ChecksumType,
}

impl Checksum {
    /// As kept with an object: `ALGORITHM:value:TYPE`.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}:{}",
            self.algorithm.as_str(),
            self.value,
            self.kind.as_str()
        )
    }

    pub fn from_text(text: &str) -> Option<Self> {
        let mut it = text.splitn(3, ':');
        Some(Self {
            algorithm: ChecksumAlgorithm::parse(it.next()?)?,
            value: it.next()?.to_string(),
            kind: ChecksumType::parse(it.next()?)?,
        })
    }
}

/// A running checksum of one algorithm.
pub enum Hasher {
    Crc(CrcAlgorithm, crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Hasher::Crc(CrcAlgorithm::Crc64Nvme, _) => "CRC64NVME",
            Hasher::Crc(CrcAlgorithm::Crc32Iscsi, _) => "CRC32C",
            Hasher::Crc(..) => "CRC32",
            Hasher::Sha1(_) => "SHA1",
            Hasher::Sha256(_) => "SHA256",
        };
        f.debug_tuple("Hasher").field(&name).finish()
    }
}

impl Hasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm.crc() {
            Some(crc) => Hasher::Crc(crc, crc_fast::Digest::new(crc)),
            None if algorithm == ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            None => Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(_, d) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => sha2::Digest::update(h, data),
        }
    }

    /// The digest's bytes (big-endian for the CRCs, as S3 encodes them).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc(CrcAlgorithm::Crc64Nvme, d) => d.finalize().to_be_bytes().to_vec(),
            Hasher::Crc(_, d) => (d.finalize() as u32).to_be_bytes().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => sha2::Digest::finalize(h).to_vec(),
        }
    }

    /// The digest in base64, as S3's headers carry it.
    pub fn finish_base64(self) -> String {
        STANDARD.encode(self.finish())
    }
}

/// The checksum of one buffer, in base64.
pub fn checksum_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.finish_base64()
}

fn decode(algorithm: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(value.trim())
        .ok()
        .filter(|raw| raw.len() == algorithm.width())
}

/// A multipart object's checksum from its parts' (base64 values, sizes, in order). None when
/// a part's value is not a checksum of `algorithm`, or the kind is FULL_OBJECT for a SHA.
pub fn combine(
    algorithm: ChecksumAlgorithm,
    kind: ChecksumType,
    parts: &[(String, u64)],
) -> Option<String> {
    match kind {
        ChecksumType::Composite => {
            let mut h = Hasher::new(algorithm);
            for (value, _) in parts {
                h.update(&decode(algorithm, value)?);
            }
            Some(format!("{}-{}", h.finish_base64(), parts.len()))
        }
        ChecksumType::FullObject => {
            let crc = algorithm.crc()?;
            let mut total: Option<u64> = None;
            for (value, size) in parts {
                let raw = decode(algorithm, value)?;
                let part = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                total = Some(match total {
                    None => part,
                    Some(t) => crc_fast::checksum_combine(crc, t, part, *size),
                });
            }
            let total = total?;
            let bytes = if algorithm == ChecksumAlgorithm::Crc64Nvme {
                total.to_be_bytes().to_vec()
            } else {
                (total as u32).to_be_bytes().to_vec()
            };
            Some(STANDARD.encode(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_s3s() {
        // S3's documented values for "hello".
        assert_eq!(checksum_of(ChecksumAlgorithm::Crc32, b"hello"), "NhCmhg==");
        assert_eq!(
            checksum_of(ChecksumAlgorithm::Sha256, b"hello"),
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
        );
    }

    #[test]
    fn full_object_crcs_combine_from_parts() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b, c) = (&data[..40_000], &data[40_000..90_000], &data[90_000..]);
        for alg in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let parts: Vec<(String, u64)> = [a, b, c]
                .iter()
                .map(|p| (checksum_of(alg, p), p.len() as u64))
                .collect();
            assert_eq!(
                combine(alg, ChecksumType::FullObject, &parts),
                Some(checksum_of(alg, &data)),
                "{alg:?}"
            );
        }
        let parts = vec![(checksum_of(ChecksumAlgorithm::Sha1, a), 1)];
        assert_eq!(
            combine(ChecksumAlgorithm::Sha1, ChecksumType::FullObject, &parts),
            None
        );
    }

    #[test]
    fn composites_are_checksums_of_checksums() {
        let alg = ChecksumAlgorithm::Sha256;
        let parts = vec![(checksum_of(alg, b"a"), 1), (checksum_of(alg, b"b"), 1)];
        let mut h = Hasher::new(alg);
        h.update(&STANDARD.decode(&parts[0].0).unwrap());
        h.update(&STANDARD.decode(&parts[1].0).unwrap());
        assert_eq!(
            combine(alg, ChecksumType::Composite, &parts),
            Some(format!("{}-2", h.finish_base64()))
        );
        // A value of another algorithm is no part checksum.
        let bad = vec![(checksum_of(ChecksumAlgorithm::Crc32, b"a"), 1)];
        assert_eq!(combine(alg, ChecksumType::Composite, &bad), None);
        let c = Checksum {
            algorithm: alg,
            value: "x-2".into(),
            kind: ChecksumType::Composite,
        };
        assert_eq!(Checksum::from_text(&c.to_text()), Some(c));
    }
}

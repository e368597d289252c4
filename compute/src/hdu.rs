//! Finding HDUs with ranged reads: headers are read block by block and data units skipped by
//! their size, so reaching the tenth extension of a 10 GB file reads ten headers, not the file.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::ComputeError;
use crate::header::{self, BLOCK, Header, Progress};

/// Blocks read by the first request for a header (most headers fit one or two blocks);
/// each further request reads twice as many, up to `HEADER_READ_MAX_BLOCKS`.
const HEADER_READ_BLOCKS: usize = 1;
const HEADER_READ_MAX_BLOCKS: usize = 16;
/// Longest header accepted: 1000 blocks (36 000 cards). Protects against a file that is not
/// FITS at all, or a header without END, being read to the end.
const MAX_HEADER_BLOCKS: usize = 1000;

/// One object read by ranges, counting the bytes it fetched.
#[derive(Debug)]
pub struct Source {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    read: AtomicU64,
}

impl Source {
    pub async fn open(store: Arc<dyn ObjectStore>, key: &str) -> Result<Self, ComputeError> {
        let mut src = Self::with_size(store, key, 0)?;
        src.size = src
            .store
            .head(&src.path)
            .await
            .map_err(ComputeError::store)?
            .size;
        Ok(src)
    }

    /// A source whose size the caller already knows (from a listing): no request to open.
    pub fn with_size(
        store: Arc<dyn ObjectStore>,
        key: &str,
        size: u64,
    ) -> Result<Self, ComputeError> {
        let path = Path::parse(key).map_err(|e| ComputeError::InvalidRequest {
            message: format!("invalid key `{key}`: {e}"),
        })?;
        Ok(Self {
            store,
            path,
            size,
            read: AtomicU64::new(0),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes fetched so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes `range` of the object; bytes past its end are an error (the file is shorter
    /// than its headers say), never a shorter answer.
    pub async fn read(&self, range: Range<u64>) -> Result<Bytes, ComputeError> {
        if range.end > self.size {
            return Err(ComputeError::Truncated {
                size: self.size,
                start: range.start,
                end: range.end,
            });
        }
        self.read_up_to(range).await
    }

    /// Bytes `range` of the object, or fewer where it ends first (headers are read ahead in
    /// several blocks at a time).
    pub async fn read_up_to(&self, range: Range<u64>) -> Result<Bytes, ComputeError> {
        let end = range.end.min(self.size);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        let bytes = self
            .store
            .get_range(&self.path, range.start..end)
            .await
            .map_err(ComputeError::store)?;
        self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != end - range.start {
            return Err(ComputeError::Task(format!(
                "the object changed while it was read: {} bytes at offset {} instead of {}",
                bytes.len(),
                range.start,
                end - range.start
            )));
        }
        Ok(bytes)
    }
}

/// The kind of data an HDU holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HduKind {
    Image,
    BinTable,
    AsciiTable,
    /// A primary HDU of random groups (`GROUPS = T`, `NAXIS1 = 0`): its size is known, so the
    /// extensions after it are found, but it does not reduce.
    RandomGroups,
    Other(String),
}

/// Whether a primary header announces random groups.
fn random_groups(h: &Header) -> bool {
    matches!(h.get("GROUPS"), Some(header::Value::Logical(true))) && h.int("NAXIS1") == Some(0)
}

/// One header-data unit: its header and where its data lies.
#[derive(Clone, Debug)]
pub struct Hdu {
    /// 0 for the primary HDU.
    pub index: usize,
    pub kind: HduKind,
    pub header: Header,
    pub data_start: u64,
    /// Data bytes (without the padding to whole blocks).
    pub data_len: u64,
}

impl Hdu {
    pub fn name(&self) -> Option<&str> {
        self.header.str("EXTNAME")
    }
}

/// Which HDU a request means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HduSelector {
    /// The first HDU with data (the primary when it has any).
    FirstWithData,
    Index(usize),
    /// By EXTNAME, case-insensitively (as astropy does).
    Name(String),
}

impl HduSelector {
    /// `N` is an index; anything else an EXTNAME.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            None => HduSelector::FirstWithData,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(i) => HduSelector::Index(i),
                Err(_) => HduSelector::Name(s.trim().to_string()),
            },
        }
    }
}

/// Reads the header starting at `start`; returns it and where its data begins.
async fn read_header(
    src: &Source,
    start: u64,
    index: usize,
) -> Result<(Header, u64), ComputeError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut blocks = HEADER_READ_BLOCKS;
    loop {
        let at = start + buf.len() as u64;
        if at >= src.size() {
            return Err(ComputeError::Format {
                hdu: index,
                card: None,
                message: format!(
                    "the file ends inside this header ({} bytes, no END card)",
                    src.size()
                ),
            });
        }
        let chunk = src.read_up_to(at..at + (blocks * BLOCK) as u64).await?;
        blocks = (blocks * 2).min(HEADER_READ_MAX_BLOCKS);
        if at == 0 && !chunk.starts_with(b"SIMPLE  =") {
            return Err(ComputeError::Format {
                hdu: 0,
                card: Some(1),
                message: "not a FITS file: it does not begin with SIMPLE = T".into(),
            });
        }
        let whole = chunk.len() / BLOCK * BLOCK;
        if whole == 0 {
            return Err(ComputeError::Format {
                hdu: index,
                card: None,
                message: "the file ends inside a header block".into(),
            });
        }
        buf.extend_from_slice(&chunk[..whole]);
        match header::parse(&buf, index)? {
            Progress::Done(h, len) => return Ok((h, start + len as u64)),
            Progress::More if buf.len() >= MAX_HEADER_BLOCKS * BLOCK => {
                return Err(ComputeError::Format {
                    hdu: index,
                    card: None,
                    message: format!("no END card in the first {MAX_HEADER_BLOCKS} blocks"),
                });
            }
            Progress::More => {}
        }
    }
}

/// Data bytes of an HDU (FITS 4.0 eq. 2): |BITPIX|/8 × GCOUNT × (PCOUNT + NAXIS1 × … × NAXISn).
fn data_len(h: &Header, index: usize) -> Result<u64, ComputeError> {
    let bitpix = h.required_int("BITPIX", index)?;
    if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
        return Err(ComputeError::Format {
            hdu: index,
            card: h.card_index("BITPIX"),
            message: format!("BITPIX = {bitpix} is not one of 8, 16, 32, 64, -32, -64"),
        });
    }
    let naxis = h.required_int("NAXIS", index)?;
    if !(0..=999).contains(&naxis) {
        return Err(ComputeError::Format {
            hdu: index,
            card: h.card_index("NAXIS"),
            message: format!("NAXIS = {naxis} is outside 0..=999"),
        });
    }
    if naxis == 0 {
        return Ok(0);
    }
    let overflow = || ComputeError::Format {
        hdu: index,
        card: None,
        message: "the data size overflows 64 bits".into(),
    };
    let mut elements: u64 = 1;
    // Random groups: NAXIS1 = 0 is a marker, not a size (FITS 4.0, section 6).
    let first_axis = if index == 0 && random_groups(h) { 2 } else { 1 };
    for i in first_axis..=naxis {
        let key = format!("NAXIS{i}");
        let n = h.required_int(&key, index)?;
        let n = u64::try_from(n).map_err(|_| ComputeError::Format {
            hdu: index,
            card: h.card_index(&key),
            message: format!("{key} = {n} is negative"),
        })?;
        elements = elements.checked_mul(n).ok_or_else(overflow)?;
    }
    let pcount = u64::try_from(h.int("PCOUNT").unwrap_or(0)).map_err(|_| ComputeError::Format {
        hdu: index,
        card: h.card_index("PCOUNT"),
        message: "PCOUNT is negative".into(),
    })?;
    let gcount = u64::try_from(h.int("GCOUNT").unwrap_or(1)).map_err(|_| ComputeError::Format {
        hdu: index,
        card: h.card_index("GCOUNT"),
        message: "GCOUNT is negative".into(),
    })?;
    let bytes = bitpix.unsigned_abs() / 8;
    elements
        .checked_add(pcount)
        .and_then(|n| n.checked_mul(gcount))
        .and_then(|n| n.checked_mul(bytes))
        .ok_or_else(overflow)
}

fn kind(h: &Header, index: usize) -> Result<HduKind, ComputeError> {
    if index == 0 {
        return match h.get("SIMPLE") {
            Some(header::Value::Logical(true)) if random_groups(h) => Ok(HduKind::RandomGroups),
            Some(header::Value::Logical(true)) => Ok(HduKind::Image),
            _ => Err(ComputeError::Format {
                hdu: 0,
                card: Some(1),
                message: "not a FITS file: the first card is not SIMPLE = T".into(),
            }),
        };
    }
    match h.str("XTENSION").map(str::trim) {
        Some("IMAGE") => Ok(HduKind::Image),
        Some("BINTABLE") => Ok(HduKind::BinTable),
        Some("TABLE") => Ok(HduKind::AsciiTable),
        Some(other) => Ok(HduKind::Other(other.to_string())),
        None => Err(ComputeError::Format {
            hdu: index,
            card: Some(1),
            message: "an extension must start with XTENSION".into(),
        }),
    }
}

/// The HDU whose header starts at `start`, and where the next one starts.
async fn hdu_at(src: &Source, start: u64, index: usize) -> Result<(Hdu, u64), ComputeError> {
    let (header, data_start) = read_header(src, start, index).await?;
    let kind = kind(&header, index)?;
    let data_len = data_len(&header, index)?;
    let padded = data_len.div_ceil(BLOCK as u64) * BLOCK as u64;
    let end = data_start.checked_add(padded).ok_or(ComputeError::Format {
        hdu: index,
        card: None,
        message: "the data size overflows 64 bits".into(),
    })?;
    if data_start + data_len > src.size() {
        return Err(ComputeError::Format {
            hdu: index,
            card: None,
            message: format!(
                "truncated: the header announces {data_len} data bytes from offset \
                 {data_start}, but the file has {} bytes",
                src.size()
            ),
        });
    }
    let hdu = Hdu {
        index,
        kind,
        header,
        data_start,
        data_len,
    };
    Ok((hdu, end))
}

fn empty_file() -> ComputeError {
    ComputeError::Format {
        hdu: 0,
        card: None,
        message: "the file is empty; a FITS file begins with a SIMPLE card".into(),
    }
}

/// Every HDU of the file, up to `max`, reading only their headers (a few ranged reads each,
/// however large the data between them): what the science index records.
pub async fn headers(src: &Source, max: usize) -> Result<Vec<Hdu>, ComputeError> {
    if src.size() == 0 {
        return Err(empty_file());
    }
    let mut out = Vec::new();
    let mut start = 0u64;
    while start < src.size() && out.len() < max {
        let (hdu, end) = hdu_at(src, start, out.len()).await?;
        out.push(hdu);
        start = end;
    }
    Ok(out)
}

/// Finds the HDU `sel` means, reading only headers.
pub async fn locate(src: &Source, sel: &HduSelector) -> Result<Hdu, ComputeError> {
    if src.size() == 0 {
        return Err(empty_file());
    }
    let mut start = 0u64;
    let mut index = 0usize;
    let mut names = Vec::new();
    while start < src.size() {
        let (hdu, end) = hdu_at(src, start, index).await?;
        let wanted = match sel {
            HduSelector::FirstWithData => hdu.data_len > 0,
            HduSelector::Index(i) => *i == index,
            HduSelector::Name(n) => hdu.name().is_some_and(|x| x.eq_ignore_ascii_case(n)),
        };
        if wanted {
            return Ok(hdu);
        }
        if let Some(n) = hdu.name() {
            names.push(n.to_string());
        }
        start = end;
        index += 1;
    }
    Err(ComputeError::NoSuchHdu {
        wanted: match sel {
            HduSelector::FirstWithData => "an HDU with data".into(),
            HduSelector::Index(i) => format!("HDU {i}"),
            HduSelector::Name(n) => format!("EXTNAME {n}"),
        },
        available: format!(
            "{index} HDUs{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (EXTNAME {})", names.join(", "))
            }
        ),
    })
}

//! Archway's compute path: decode and reduce science data where it is stored.
//!
//! Kernels are pure: they take bytes and a spec and return mergeable partial results
//! ([`reduce`]). [`run`] drives them over an object read by ranges ([`hdu::Source`], through
//! whatever cache wraps the store): it finds the HDU by reading headers only, cuts the data
//! into chunks, fetches a bounded number at a time and reduces them on all cores, merging as
//! they finish — one pass, memory bounded by `parallelism × CHUNK`, whatever the file size.
//!
//! Built so far: FITS headers (CONTINUE, HIERARCH), HDUs by index or EXTNAME, images of every
//! BITPIX with BSCALE/BZERO and BLANK/NaN as missing; count, sum, mean, min, max, var, std,
//! histogram and all moments at once; the CPU engine.

pub mod hdu;
pub mod header;
pub mod image;
pub mod reduce;

use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

pub use hdu::{Hdu, HduKind, HduSelector, Source};
pub use reduce::{Histogram, Moments, Op};

/// Bytes of data fetched and reduced as one unit: a multiple of every element width and of the
/// cache's block size, small enough that `parallelism` of them in memory is nothing.
pub const CHUNK: u64 = 4 * 1024 * 1024;

/// Where a reduction runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The GPU when one is usable, else the CPU (saying why).
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// A reduction request, as `POST /api/v1/reduce` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceRequest {
    pub volume: String,
    pub key: String,
    pub op: Op,
    /// An HDU index (`0` is the primary) or EXTNAME; default: the first HDU with data.
    #[serde(default, deserialize_with = "hdu_field")]
    pub hdu: Option<String>,
    /// A table column (binary tables).
    #[serde(default)]
    pub column: Option<String>,
    /// Histogram bins (default 10).
    #[serde(default)]
    pub bins: Option<usize>,
    /// Histogram range `[lo, hi]` (default: the data's min and max).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    #[serde(default)]
    pub engine: Engine,
}

/// Accepts `"hdu": 1` as well as `"hdu": "SCI"`.
fn hdu_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IndexOrName {
        Index(u64),
        Name(String),
    }
    Ok(Option::<IndexOrName>::deserialize(d)?.map(|v| match v {
        IndexOrName::Index(i) => i.to_string(),
        IndexOrName::Name(s) => s,
    }))
}

/// The answer to a reduction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduction {
    pub op: Op,
    /// A number, or an object (histogram, stats); null when no value was usable.
    pub value: serde_json::Value,
    /// Values used.
    pub count: u64,
    /// Values skipped as missing (BLANK, NaN).
    pub missing: u64,
    /// The HDU reduced.
    pub hdu: usize,
    pub engine: Engine,
    /// Why `auto` chose the engine it did, when it is not the obvious one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_note: Option<String>,
    /// Bytes read from the object (headers and data) for this answer.
    pub bytes_read: u64,
    /// Bytes of this answer as sent (set by the front that sends it).
    pub bytes_returned: u64,
    pub elapsed_ms: f64,
}

/// Everything that can go wrong in a reduction, naming the HDU and card where it applies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError {
    #[error("HDU {hdu}{}: {message}", card.map(|c| format!(", card {c}")).unwrap_or_default())]
    Format {
        hdu: usize,
        card: Option<usize>,
        message: String,
    },
    #[error("no {wanted} in this file; it has {available}")]
    NoSuchHdu { wanted: String, available: String },
    #[error("{message}")]
    InvalidRequest { message: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("{engine} engine unavailable: {reason}")]
    EngineUnavailable {
        engine: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Store(#[source] Box<object_store::Error>),
    #[error("a compute task failed: {0}")]
    Task(String),
}

impl ComputeError {
    pub(crate) fn store(e: object_store::Error) -> Self {
        ComputeError::Store(Box::new(e))
    }

    /// The store's error, when the failure came from reading.
    pub fn store_error(&self) -> Option<&object_store::Error> {
        match self {
            ComputeError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// How many chunks are fetched and reduced at once.
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Runs `req` on the object `req.key` of `store` (the volume's store, access already checked).
pub async fn run(
    store: Arc<dyn ObjectStore>,
    req: &ReduceRequest,
) -> Result<Reduction, ComputeError> {
    let started = Instant::now();
    let engine_note = match req.engine {
        Engine::Cuda => {
            return Err(ComputeError::EngineUnavailable {
                engine: "cuda",
                reason: "this gateway was built without the `cuda` feature".into(),
            });
        }
        Engine::Auto => Some("no GPU engine in this build: ran on the CPU".to_string()),
        Engine::Cpu => None,
    };
    if req.column.is_some() {
        return Err(ComputeError::Unsupported {
            what: "reducing table columns (--column)".into(),
        });
    }
    if let Some(bins) = req.bins
        && !(1..=1_000_000).contains(&bins)
    {
        return Err(ComputeError::InvalidRequest {
            message: format!("bins must be 1 to 1000000, not {bins}"),
        });
    }
    if let Some([lo, hi]) = req.range
        && !(lo.is_finite() && hi.is_finite() && lo <= hi)
    {
        return Err(ComputeError::InvalidRequest {
            message: format!("range [{lo}, {hi}] must be finite with lo <= hi"),
        });
    }
    let src = Arc::new(Source::open(store, &req.key).await?);
    let hdu = hdu::locate(&src, &HduSelector::parse(req.hdu.as_deref())).await?;
    match &hdu.kind {
        HduKind::Image => {}
        HduKind::BinTable | HduKind::AsciiTable => {
            return Err(ComputeError::Unsupported {
                what: format!("reducing table HDU {} (tables)", hdu.index),
            });
        }
        HduKind::Other(x) => {
            return Err(ComputeError::Unsupported {
                what: format!("XTENSION = '{x}' (HDU {})", hdu.index),
            });
        }
    }
    if hdu.header.get("ZIMAGE").is_some() {
        return Err(ComputeError::Unsupported {
            what: format!("tile-compressed images (HDU {})", hdu.index),
        });
    }
    let layout = image::Layout::of(&hdu)?;
    let moments = moments_of(&src, &hdu, layout).await?;
    let number = |x: f64| serde_json::json!(x);
    let finite = |x: Option<f64>| x.filter(|v| v.is_finite()).map(number).unwrap_or_default();
    let var = moments.var();
    let any = moments.count > 0;
    let value = match req.op {
        Op::Count => serde_json::json!(moments.count),
        Op::Sum => number(moments.total()),
        Op::Mean => finite(any.then(|| moments.total() / moments.count as f64)),
        Op::Min => finite(any.then_some(moments.min)),
        Op::Max => finite(any.then_some(moments.max)),
        Op::Var => finite(var),
        Op::Std => finite(var.map(f64::sqrt)),
        Op::Stats => serde_json::json!({
            "count": moments.count,
            "sum": moments.total(),
            "mean": finite(any.then(|| moments.total() / moments.count as f64)),
            "min": finite(any.then_some(moments.min)),
            "max": finite(any.then_some(moments.max)),
            "var": finite(var),
            "std": finite(var.map(f64::sqrt)),
        }),
        Op::Histogram => {
            let bins = req.bins.unwrap_or(10);
            let [lo, hi] = match req.range {
                Some(r) => r,
                None if any => [moments.min, moments.max],
                None => [0.0, 1.0],
            };
            let h = histogram_of(&src, &hdu, layout, Histogram::new(bins, lo, hi)).await?;
            serde_json::json!({
                "bins": bins,
                "range": [h.lo, h.hi],
                "edges": h.edges(),
                "counts": h.counts,
            })
        }
    };
    Ok(Reduction {
        op: req.op,
        value,
        count: moments.count,
        missing: moments.missing,
        hdu: hdu.index,
        engine: Engine::Cpu,
        engine_note,
        bytes_read: src.bytes_read(),
        bytes_returned: 0,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// The data of `hdu` in chunks, each fetched and then handed to `f` on a blocking thread;
/// results in any order.
async fn over_chunks<T: Send + 'static>(
    src: &Arc<Source>,
    hdu: &Hdu,
    f: impl Fn(bytes::Bytes) -> T + Send + Sync + Clone + 'static,
) -> Result<Vec<T>, ComputeError> {
    let (start, end) = (hdu.data_start, hdu.data_start + hdu.data_len);
    let ranges: Vec<_> = (start..end)
        .step_by(CHUNK as usize)
        .map(|s| s..(s + CHUNK).min(end))
        .collect();
    futures::stream::iter(ranges)
        .map(|r| {
            let (src, f) = (src.clone(), f.clone());
            async move {
                let bytes = src.read(r).await?;
                tokio::task::spawn_blocking(move || f(bytes))
                    .await
                    .map_err(|e| ComputeError::Task(e.to_string()))
            }
        })
        .buffer_unordered(parallelism())
        .try_collect()
        .await
}

async fn moments_of(
    src: &Arc<Source>,
    hdu: &Hdu,
    layout: image::Layout,
) -> Result<Moments, ComputeError> {
    let parts = over_chunks(src, hdu, move |bytes| {
        Moments::of(|f| layout.for_each(&bytes, &mut *f))
    })
    .await?;
    let mut total = Moments::default();
    for p in &parts {
        total.merge(p);
    }
    Ok(total)
}

async fn histogram_of(
    src: &Arc<Source>,
    hdu: &Hdu,
    layout: image::Layout,
    empty: Histogram,
) -> Result<Histogram, ComputeError> {
    let template = empty.clone();
    let parts = over_chunks(src, hdu, move |bytes| {
        let mut h = template.clone();
        h.fill(|f| layout.for_each(&bytes, &mut *f));
        h
    })
    .await?;
    let mut total = empty;
    for p in &parts {
        total.merge(p);
    }
    Ok(total)
}

//! Archway's compute path: decode and reduce science data where it is stored.
//!
//! Kernels are pure: they take bytes and a spec and return mergeable partial results
//! ([`reduce`]). [`run`] drives them over an object read by ranges ([`hdu::Source`], through
//! whatever cache wraps the store): it finds the HDU by reading headers only, cuts the data
//! into chunks, fetches a bounded number at a time and reduces them on all cores, merging as
//! they finish — one pass, memory bounded by `parallelism × CHUNK`, whatever the file size.
//!
//! Reads FITS headers (CONTINUE, HIERARCH), images of every BITPIX with BSCALE/BZERO and
//! BLANK/NaN, binary table columns (fixed and heap arrays), and tile-compressed images (Rice,
//! gzip, quantized floats). Computes moments, histograms, quantiles (exact or bounded), per
//! column statistics, cutouts and binning, on the CPU or (feature `cuda`) the GPU, for one
//! object or a batch over a prefix and glob. See `doc/compute.md`.

pub mod array;
#[cfg(feature = "cuda")]
pub mod cuda;
#[doc(hidden)]
pub mod fuzzing;
pub mod hcompress;
pub mod hdu;
pub mod header;
pub mod image;
pub mod reduce;
pub mod table;
pub mod tiled;

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
    /// Quantiles to compute (op `quantiles`), each in [0, 1].
    #[serde(default)]
    pub q: Option<Vec<f64>>,
    /// Quantiles from one histogram pass, within a stated error bound, instead of exactly.
    #[serde(default)]
    pub approximate: bool,
    /// Cutout: one `[start, end)` per axis, axis 1 first.
    #[serde(default)]
    pub section: Option<Vec<[u64; 2]>>,
    /// Binning: one factor per axis, axis 1 first.
    #[serde(default)]
    pub factor: Option<Vec<u64>>,
    /// How array answers (cutout, bin) are encoded: fits (default) or npy.
    #[serde(default)]
    pub output: array::ArrayFormat,
    #[serde(default)]
    pub engine: Engine,
}

impl ReduceRequest {
    /// `op` on `key` of `volume`, everything else by default (the first HDU with data, no
    /// column, 10 bins over the data's range, engine `auto`).
    pub fn new(volume: impl Into<String>, key: impl Into<String>, op: Op) -> Self {
        Self {
            volume: volume.into(),
            key: key.into(),
            op,
            hdu: None,
            column: None,
            bins: None,
            range: None,
            q: None,
            approximate: false,
            section: None,
            factor: None,
            output: Default::default(),
            engine: Engine::default(),
        }
    }
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
    /// The peer gateway that computed the answer, when the data lives at another site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Bytes read from the object (headers and data) for this answer, at the site holding it.
    pub bytes_read: u64,
    /// Bytes of this answer as sent (set by the front that sends it).
    pub bytes_returned: u64,
    pub elapsed_ms: f64,
    /// The array of a cutout or binning, sent as FITS or NPY rather than in the JSON.
    #[serde(skip)]
    pub array: Option<array::Array>,
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
    #[error("HDU {hdu} has no column `{wanted}`; its columns are {available}")]
    NoSuchColumn {
        hdu: usize,
        wanted: String,
        available: String,
    },
    #[error(
        "truncated: the file has {size} bytes, but its headers place data at bytes {start} to {end}"
    )]
    Truncated { size: u64, start: u64, end: u64 },
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
    // Which engine is checked first (a request for `cuda` where there is none fails before
    // any data is read), and again once the HDU is known (the GPU reduces images).
    #[cfg(not(feature = "cuda"))]
    if req.engine == Engine::Cuda {
        return Err(ComputeError::EngineUnavailable {
            engine: "cuda",
            reason: "this gateway was built without the `cuda` feature".into(),
        });
    }
    #[cfg(feature = "cuda")]
    if req.engine == Engine::Cuda
        && let Err(reason) = cuda::engine()
    {
        return Err(ComputeError::EngineUnavailable {
            engine: "cuda",
            reason: reason.to_string(),
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
    let quantiles = match (req.op, &req.q) {
        (Op::Median, _) => vec![0.5],
        (Op::Quantiles, Some(q)) if !q.is_empty() && q.len() <= 100 => {
            if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
                return Err(ComputeError::InvalidRequest {
                    message: format!("quantile {bad} is outside [0, 1]"),
                });
            }
            q.clone()
        }
        (Op::Quantiles, _) => {
            return Err(ComputeError::InvalidRequest {
                message: "`quantiles` needs q: 1 to 100 values in [0, 1] (e.g. [0.05, 0.5, 0.95])"
                    .into(),
            });
        }
        _ => Vec::new(),
    };
    let src = Arc::new(Source::open(store, &req.key).await?);
    let hdu = hdu::locate(&src, &HduSelector::parse(req.hdu.as_deref())).await?;
    let values = Arc::new(values_of(&hdu, req)?);
    let (gpu, engine, engine_note) = choose_engine(req, &values, hdu.index)?;
    if let Values::Columns(table, columns) = &*values {
        // Per-column statistics of a table, in one pass.
        let parts = partials(&src, &hdu, &values, |v, chunk| {
            Ok(match v {
                Values::Columns(table, columns) => {
                    let mut buf = Vec::new();
                    columns
                        .iter()
                        .map(|c| {
                            buf.clear();
                            let mut row = chunk.first_row;
                            for p in &chunk.pieces {
                                c.rows_for_each(table, p, row, |x| buf.push(x))?;
                                row += p.len() as u64 / table.row_bytes.max(1);
                            }
                            Ok(Moments::of(&buf))
                        })
                        .collect::<Result<Vec<_>, ComputeError>>()?
                }
                _ => Vec::new(),
            })
        })
        .await?;
        let mut totals = vec![Moments::default(); columns.len()];
        for part in &parts {
            for (t, p) in totals.iter_mut().zip(part) {
                t.merge(p);
            }
        }
        let mut value = serde_json::Map::new();
        for (c, m) in columns.iter().zip(&totals) {
            value.insert(c.name.clone(), stats_json(m));
        }
        return Ok(Reduction {
            op: req.op,
            value: serde_json::Value::Object(value),
            count: table.rows,
            missing: 0,
            hdu: hdu.index,
            engine: Engine::Cpu,
            engine_note: engine_note.clone(),
            site: None,
            bytes_read: src.bytes_read(),
            bytes_returned: 0,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            array: None,
        });
    }
    if matches!(req.op, Op::Cutout | Op::Bin) {
        let array = array_of(&src, &hdu, &values, req).await?;
        let count = array.values.iter().filter(|v| !v.is_nan()).count() as u64;
        return Ok(Reduction {
            op: req.op,
            value: serde_json::json!({
                "shape": array.shape,
                "format": req.output,
            }),
            count,
            missing: array.values.len() as u64 - count,
            hdu: hdu.index,
            engine: Engine::Cpu,
            engine_note,
            site: None,
            bytes_read: src.bytes_read(),
            bytes_returned: 0,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            array: Some(array),
        });
    }
    let moments = {
        let parts = partials(&src, &hdu, &values, move |v, chunk| {
            chunk_moments(gpu, v, chunk)
        })
        .await?;
        let mut total = Moments::default();
        for p in &parts {
            total.merge(p);
        }
        total
    };
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
        Op::Stats => stats_json(&moments),
        // Answered above, before the moments pass.
        Op::Cutout | Op::Bin => serde_json::Value::Null,
        Op::Median | Op::Quantiles => {
            let found =
                quantiles_of(&src, &hdu, &values, &moments, &quantiles, req.approximate).await?;
            if req.op == Op::Median {
                finite(found.first().map(|f| f.0))
            } else {
                let bound = found.iter().map(|f| f.1).fold(0.0, f64::max);
                serde_json::json!({
                    "q": quantiles,
                    "values": found.iter().map(|f| finite(Some(f.0))).collect::<Vec<_>>(),
                    "exact": !req.approximate,
                    "error_bound": bound,
                })
            }
        }
        Op::Histogram => {
            let bins = req.bins.unwrap_or(10);
            let [lo, hi] = match req.range {
                Some(r) => r,
                None if any => [moments.min, moments.max],
                None => [0.0, 1.0],
            };
            let empty = Histogram::new(bins, lo, hi);
            let template = empty.clone();
            let parts = partials(&src, &hdu, &values, move |v, chunk| {
                let mut h = template.clone();
                chunk_histogram(gpu, v, chunk, &mut h)?;
                Ok(h)
            })
            .await?;
            let mut h = empty;
            for p in &parts {
                h.merge(p);
            }
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
        engine,
        engine_note,
        site: None,
        bytes_read: src.bytes_read(),
        bytes_returned: 0,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        array: None,
    })
}

/// The GPU a reduction runs on, when it runs on one.
#[cfg(feature = "cuda")]
type Gpu = Option<&'static cuda::GpuEngine>;
#[cfg(not(feature = "cuda"))]
type Gpu = Option<std::convert::Infallible>;

/// Decides the engine: the GPU for image moments and histograms when asked (`cuda`) or when
/// usable (`auto`); otherwise the CPU, with the reason when `auto` could not use the GPU.
fn choose_engine(
    req: &ReduceRequest,
    values: &Values,
    hdu: usize,
) -> Result<(Gpu, Engine, Option<String>), ComputeError> {
    let gpu_op = matches!(
        req.op,
        Op::Count
            | Op::Sum
            | Op::Mean
            | Op::Min
            | Op::Max
            | Op::Var
            | Op::Std
            | Op::Stats
            | Op::Histogram
    ) && matches!(values, Values::Image(_));
    if req.engine == Engine::Cpu {
        return Ok((None, Engine::Cpu, None));
    }
    if !gpu_op {
        let what = format!(
            "the GPU engine reduces images (count to stats, histogram); `{}` of HDU {hdu} runs on \
             the CPU",
            req.op.as_str()
        );
        if req.engine == Engine::Cuda {
            return Err(ComputeError::Unsupported { what });
        }
        return Ok((None, Engine::Cpu, Some(what)));
    }
    #[cfg(feature = "cuda")]
    {
        match cuda::engine() {
            Ok(g) => Ok((Some(g), Engine::Cuda, None)),
            Err(reason) => Ok((None, Engine::Cpu, Some(format!("{reason}: ran on the CPU")))),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok((
            None,
            Engine::Cpu,
            Some("no GPU engine in this build (feature `cuda`): ran on the CPU".into()),
        ))
    }
}

fn chunk_moments(gpu: Gpu, v: &Values, chunk: &Chunk) -> Result<Moments, ComputeError> {
    #[cfg(feature = "cuda")]
    if let (Some(g), Values::Image(layout)) = (gpu, v) {
        return g.moments(&chunk.pieces[0], layout);
    }
    let _ = gpu;
    if let Values::Image(layout) = v {
        let mut total = Moments::default();
        image_pieces(layout, chunk, |values| total.merge(&Moments::of(values)));
        return Ok(total);
    }
    Ok(Moments::of(&v.decode(chunk)?))
}

/// Values an image chunk is decoded in at a time: 512 KiB of float64, which stays in the
/// core's cache while the kernels pass over it (twice for the moments), instead of a whole
/// chunk's values going out to memory and back.
const PIECE_VALUES: usize = 64 * 1024;

/// Calls `f` with the physical values of an image chunk, `PIECE_VALUES` at a time.
fn image_pieces(layout: &image::Layout, chunk: &Chunk, mut f: impl FnMut(&[f64])) {
    let mut buf = Vec::with_capacity(PIECE_VALUES);
    for p in &chunk.pieces {
        for part in p.chunks(PIECE_VALUES * layout.width()) {
            buf.clear();
            layout.for_each(part, |x| buf.push(x));
            f(&buf);
        }
    }
}

fn chunk_histogram(
    gpu: Gpu,
    v: &Values,
    chunk: &Chunk,
    h: &mut Histogram,
) -> Result<(), ComputeError> {
    #[cfg(feature = "cuda")]
    if let (Some(g), Values::Image(layout)) = (gpu, v) {
        return g.histogram(&chunk.pieces[0], layout, h);
    }
    let _ = gpu;
    if let Values::Image(layout) = v {
        image_pieces(layout, chunk, |values| h.fill(values));
        return Ok(());
    }
    h.fill(&v.decode(chunk)?);
    Ok(())
}

/// A cutout (reading only the runs of pixels it covers) or a binning (one pass) of an image.
async fn array_of(
    src: &Arc<Source>,
    hdu: &Hdu,
    values: &Arc<Values>,
    req: &ReduceRequest,
) -> Result<array::Array, ComputeError> {
    if let (Values::Tiled(table, t, index), Op::Cutout) = (&**values, req.op) {
        return tiled_cutout(src, hdu, table, t, *index, req).await;
    }
    if let (Values::Tiled(table, t, index), Op::Bin) = (&**values, req.op) {
        let factors = bin_factors(req, &t.shape, *index)?;
        let out_shape: Vec<u64> = t.shape.iter().zip(&factors).map(|(n, f)| n / f).collect();
        let (shape, row_bytes) = (t.shape.clone(), table.row_bytes.max(1) as usize);
        let parts = partials(src, hdu, values, move |v, chunk| {
            let Values::Tiled(_, t, index) = v else {
                return Ok(array::BinPart::default());
            };
            let rows = chunk.pieces.first().cloned().unwrap_or_default();
            let mut all = Vec::new();
            let mut decoded = Vec::new();
            for (i, fields) in rows.chunks_exact(row_bytes).enumerate() {
                let data = chunk.pieces.get(1 + 2 * i).cloned().unwrap_or_default();
                let gzip = chunk.pieces.get(2 + 2 * i).cloned().unwrap_or_default();
                let tile = chunk.first_row + i as u64;
                decoded.clear();
                t.decode(tile, fields, &data, &gzip, *index, &mut decoded)?;
                all.extend(t.pixel_indices(tile).zip(decoded.iter().copied()));
            }
            Ok(array::bin_indexed(all.into_iter(), &shape, &factors))
        })
        .await?;
        return Ok(array::bin_finish(parts, out_shape));
    }
    let Values::Image(layout) = &**values else {
        return Err(ComputeError::Unsupported {
            what: format!(
                "{} of HDU {}: cutouts work on images (also tile-compressed), binning on \
                 uncompressed images",
                req.op.as_str(),
                hdu.index
            ),
        });
    };
    let layout = *layout;
    let naxis = hdu.header.required_int("NAXIS", hdu.index)? as usize;
    let shape: Vec<u64> = (1..=naxis)
        .map(|i| {
            hdu.header
                .required_int(&format!("NAXIS{i}"), hdu.index)
                .map(|n| n as u64)
        })
        .collect::<Result<_, _>>()?;
    if shape.is_empty() || shape.contains(&0) {
        return Err(ComputeError::InvalidRequest {
            message: format!("HDU {} holds no image data", hdu.index),
        });
    }
    let width = layout.width() as u64;
    if req.op == Op::Cutout {
        let section = req
            .section
            .as_deref()
            .ok_or_else(|| ComputeError::InvalidRequest {
                message: "a cutout needs section: one [start, end) per axis, axis 1 first".into(),
            })?;
        let section = array::check_section(section, &shape, hdu.index)?;
        let runs = array::section_runs(&section, &shape, width);
        let reads = array::coalesce(&runs, 64 * 1024, 4 * CHUNK);
        let base = hdu.data_start;
        let fetched: Vec<(std::ops::Range<u64>, bytes::Bytes)> = futures::stream::iter(reads)
            .map(|r| {
                let src = src.clone();
                async move {
                    let b = src.read(base + r.start..base + r.end).await?;
                    Ok::<_, ComputeError>((r, b))
                }
            })
            .buffered(parallelism())
            .try_collect()
            .await?;
        let pieces = array::slice_runs(&fetched, &runs);
        let out_shape: Vec<u64> = section.iter().map(|r| r.end - r.start).collect();
        let values = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for p in &pieces {
                layout.for_each(p, |x| out.push(x));
            }
            out
        })
        .await
        .map_err(|e| ComputeError::Task(e.to_string()))?;
        return Ok(array::Array {
            shape: out_shape,
            values,
        });
    }
    let factors = req
        .factor
        .clone()
        .ok_or_else(|| ComputeError::InvalidRequest {
            message: "binning needs factor: one integer per axis, axis 1 first".into(),
        })?;
    if factors.len() != shape.len() || factors.contains(&0) {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "factor needs {} positive integers (one per axis of HDU {}), not {factors:?}",
                shape.len(),
                hdu.index
            ),
        });
    }
    let out_shape: Vec<u64> = shape.iter().zip(&factors).map(|(n, f)| n / f).collect();
    if out_shape.contains(&0) {
        return Err(ComputeError::InvalidRequest {
            message: format!("factor {factors:?} is larger than the image {shape:?}"),
        });
    }
    let total: u64 = out_shape.iter().product();
    if total > array::MAX_OUTPUT_VALUES {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "the binned image would hold {total} values; the limit is {}",
                array::MAX_OUTPUT_VALUES
            ),
        });
    }
    let (shape_c, factors_c) = (shape.clone(), factors.clone());
    let parts = partials(src, hdu, values, move |v, chunk| {
        Ok(array::bin_chunk(
            &v.decode(chunk)?,
            chunk.first_row,
            &shape_c,
            &factors_c,
        ))
    })
    .await?;
    Ok(array::bin_finish(parts, out_shape))
}

/// The binning factors of a request, checked against the image's shape and the output limit.
fn bin_factors(req: &ReduceRequest, shape: &[u64], hdu: usize) -> Result<Vec<u64>, ComputeError> {
    let factors = req
        .factor
        .clone()
        .ok_or_else(|| ComputeError::InvalidRequest {
            message: "binning needs factor: one integer per axis, axis 1 first".into(),
        })?;
    if factors.len() != shape.len() || factors.contains(&0) {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "factor needs {} positive integers (one per axis of HDU {hdu}), not {factors:?}",
                shape.len(),
            ),
        });
    }
    let out_shape: Vec<u64> = shape.iter().zip(&factors).map(|(n, f)| n / f).collect();
    if out_shape.contains(&0) {
        return Err(ComputeError::InvalidRequest {
            message: format!("factor {factors:?} is larger than the image {shape:?}"),
        });
    }
    let total: u64 = out_shape.iter().product();
    if total > array::MAX_OUTPUT_VALUES {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "the binned image would hold {total} values; the limit is {}",
                array::MAX_OUTPUT_VALUES
            ),
        });
    }
    Ok(factors)
}

/// A cutout of a tile-compressed image: only the tiles the section touches are read (their
/// rows, then their compressed bytes) and decoded.
async fn tiled_cutout(
    src: &Arc<Source>,
    hdu: &Hdu,
    table: &table::Table,
    t: &tiled::Tiled,
    index: usize,
    req: &ReduceRequest,
) -> Result<array::Array, ComputeError> {
    let section = req
        .section
        .as_deref()
        .ok_or_else(|| ComputeError::InvalidRequest {
            message: "a cutout needs section: one [start, end) per axis, axis 1 first".into(),
        })?;
    let section = array::check_section(section, &t.shape, index)?;
    let tiles_per_axis: Vec<u64> = t
        .shape
        .iter()
        .zip(&t.tile)
        .map(|(n, k)| n.div_ceil(*k).max(1))
        .collect();
    // The tiles the section touches, as table rows.
    let mut rows = vec![0u64];
    let mut stride = 1u64;
    for ((r, k), count) in section.iter().zip(&t.tile).zip(&tiles_per_axis) {
        let (lo, hi) = (r.start / k, (r.end - 1) / k);
        rows = rows
            .iter()
            .flat_map(|base| (lo..=hi).map(move |c| base + c * stride))
            .collect();
        stride *= count;
    }
    rows.sort_unstable();
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let row_bytes = table.row_bytes.max(1);
    let start = hdu.data_start;
    let row_data = src
        .read(start + first * row_bytes..start + (last + 1) * row_bytes)
        .await?;
    let row_of = |r: u64| {
        let at = ((r - first) * row_bytes) as usize;
        row_data.slice(at..at + row_bytes as usize)
    };
    // Compressed bytes of the needed tiles: one read when they lie close, else one each.
    let mut wanted = Vec::new();
    for col in t.data_columns() {
        let mut spans = Vec::new();
        for &r in &rows {
            let row = row_of(r);
            let (n, off) = table::descriptors(&row, table, col)[0];
            let end = n
                .checked_mul(col.elem.width() as u64)
                .and_then(|b| b.checked_add(off))
                .filter(|e| *e <= table.heap_bytes)
                .ok_or_else(|| ComputeError::Format {
                    hdu: index,
                    card: None,
                    message: format!("tile {} points outside the heap", r + 1),
                })?;
            spans.push((off, end));
        }
        wanted.push(spans);
    }
    let heap = start + table.heap_offset;
    let mut arrays: Vec<Vec<bytes::Bytes>> = Vec::new();
    for spans in &wanted {
        let used: Vec<&(u64, u64)> = spans.iter().filter(|s| s.1 > s.0).collect();
        let lo = used.iter().map(|s| s.0).min().unwrap_or(0);
        let hi = used.iter().map(|s| s.1).max().unwrap_or(0);
        let total: u64 = used.iter().map(|s| s.1 - s.0).sum();
        let mut out = Vec::with_capacity(spans.len());
        if !used.is_empty() && hi - lo <= 2 * total.max(CHUNK) {
            let all = src.read(heap + lo..heap + hi).await?;
            for &(a, b) in spans {
                out.push(if b > a {
                    all.slice((a - lo) as usize..(b - lo) as usize)
                } else {
                    bytes::Bytes::new()
                });
            }
        } else {
            for &(a, b) in spans {
                out.push(if b > a {
                    src.read(heap + a..heap + b).await?
                } else {
                    bytes::Bytes::new()
                });
            }
        }
        arrays.push(out);
    }
    let tiles: Vec<(u64, bytes::Bytes, bytes::Bytes, bytes::Bytes)> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let gzip = arrays.get(1).map(|a| a[i].clone()).unwrap_or_default();
            (r, row_of(r), arrays[0][i].clone(), gzip)
        })
        .collect();
    let (t, section) = (t.clone(), section.clone());
    tokio::task::spawn_blocking(move || {
        let out_shape: Vec<u64> = section.iter().map(|r| r.end - r.start).collect();
        let mut values = vec![f64::NAN; out_shape.iter().product::<u64>() as usize];
        let mut decoded = Vec::new();
        for (r, fields, data, gzip) in tiles {
            decoded.clear();
            t.decode(r, &fields, &data, &gzip, index, &mut decoded)?;
            // The tile's corner and size.
            let mut rest = r;
            let mut corner = Vec::new();
            let mut dims = Vec::new();
            for ((n, k), count) in t.shape.iter().zip(&t.tile).zip(&tiles_per_axis) {
                let c = rest % count;
                rest /= count;
                corner.push(c * k);
                dims.push((*k).min(n - c * k));
            }
            for (local, v) in decoded.iter().enumerate() {
                let mut l = local as u64;
                let mut out = 0u64;
                let mut ostride = 1u64;
                let mut inside = true;
                for (axis, d) in dims.iter().enumerate() {
                    let g = corner[axis] + l % d;
                    l /= d;
                    if !section[axis].contains(&g) {
                        inside = false;
                        break;
                    }
                    out += (g - section[axis].start) * ostride;
                    ostride *= out_shape[axis];
                }
                if inside && let Some(slot) = values.get_mut(out as usize) {
                    *slot = *v;
                }
            }
        }
        Ok(array::Array {
            shape: out_shape,
            values,
        })
    })
    .await
    .map_err(|e| ComputeError::Task(e.to_string()))?
}

/// Bins per pass of the quantile search (a 32 KiB histogram per chunk).
const QUANTILE_BINS: usize = 4096;
/// Values collected in the last pass of an exact quantile (32 MiB as float64).
const QUANTILE_COLLECT: u64 = 4 * 1024 * 1024;

/// Quantiles with their error bounds (0 when exact). Exact: for each order statistic needed,
/// histogram passes narrow the interval holding it (each pass reading the data again, through
/// the cache) until few enough values remain to collect and sort. Approximate: one pass of
/// `QUANTILE_BINS` bins; the value is interpolated within its bin, off by at most a bin width.
async fn quantiles_of(
    src: &Arc<Source>,
    hdu: &Hdu,
    values: &Arc<Values>,
    m: &Moments,
    qs: &[f64],
    approximate: bool,
) -> Result<Vec<(f64, f64)>, ComputeError> {
    use reduce::{Level, Refinement, interpolate};
    let n = m.count;
    if n == 0 {
        return Ok(qs.iter().map(|_| (f64::NAN, 0.0)).collect());
    }
    let pass = |levels: Vec<Level>, lo: f64, hi: f64, collect: bool| {
        let levels = Arc::new(levels);
        async move {
            let parts = partials(src, hdu, values, move |v, chunk| {
                Ok(Refinement::of(
                    &v.decode(chunk)?,
                    &levels,
                    lo,
                    hi,
                    QUANTILE_BINS,
                    collect,
                ))
            })
            .await?;
            let mut total = Refinement {
                counts: vec![0; if collect { 0 } else { QUANTILE_BINS }],
                ..Default::default()
            };
            for p in parts {
                total.merge(p);
            }
            Ok::<_, ComputeError>(total)
        }
    };
    if approximate {
        let (lo, hi) = (m.min, m.max);
        let h = pass(Vec::new(), lo, hi, false).await?;
        let width = (hi - lo) / QUANTILE_BINS as f64;
        return Ok(qs
            .iter()
            .map(|&q| {
                let target = (n - 1) as f64 * q;
                let mut seen = 0u64;
                for (b, &c) in h.counts.iter().enumerate() {
                    if c > 0 && (seen + c) as f64 > target {
                        let within = (target - seen as f64 + 0.5) / c as f64;
                        return (lo + width * (b as f64 + within.clamp(0.0, 1.0)), width);
                    }
                    seen += c;
                }
                (hi, width)
            })
            .collect());
    }
    // The order statistics each quantile needs.
    let mut ranks: Vec<u64> = Vec::new();
    for &q in qs {
        let h = (n - 1) as f64 * q;
        ranks.push(h.floor() as u64);
        ranks.push((h.ceil() as u64).min(n - 1));
    }
    ranks.sort_unstable();
    ranks.dedup();
    let mut found = std::collections::HashMap::new();
    for &rank in &ranks {
        let mut levels: Vec<Level> = Vec::new();
        let (mut lo, mut hi) = (m.min, m.max);
        let mut below = 0u64;
        let mut inside = n;
        loop {
            if inside <= QUANTILE_COLLECT || hi <= lo || levels.len() >= 16 {
                let mut r = pass(levels.clone(), lo, hi, true).await?;
                r.values.sort_unstable_by(f64::total_cmp);
                let i = (rank - below.min(rank)) as usize;
                let v = r.values.get(i).copied().ok_or_else(|| {
                    ComputeError::Task("the data changed while a quantile was computed".into())
                })?;
                found.insert(rank, v);
                break;
            }
            let r = pass(levels.clone(), lo, hi, false).await?;
            below = r.below;
            let mut seen = below;
            let mut chosen = None;
            for (b, &c) in r.counts.iter().enumerate() {
                if seen + c > rank {
                    chosen = Some((b, c));
                    break;
                }
                seen += c;
            }
            let Some((b, c)) = chosen else {
                return Err(ComputeError::Task(
                    "the data changed while a quantile was computed".into(),
                ));
            };
            levels.push(Level {
                lo,
                hi,
                bins: QUANTILE_BINS,
                bin: b,
            });
            below = seen;
            inside = c;
            let w = (hi - lo) / QUANTILE_BINS as f64;
            let (nlo, nhi) = (lo + w * b as f64, lo + w * (b + 1) as f64);
            // Bins are decided by `Level::bin_of`; these bounds only size the next histogram.
            lo = nlo.max(m.min);
            hi = nhi.min(m.max).max(lo);
        }
    }
    Ok(qs
        .iter()
        .map(|&q| {
            let h = (n - 1) as f64 * q;
            let lower = found[&(h.floor() as u64)];
            let upper = found[&((h.ceil() as u64).min(n - 1))];
            (interpolate(q, n, lower, upper), 0.0)
        })
        .collect())
}

/// The statistics object of `stats` (and of each column in a table's `stats`).
fn stats_json(m: &Moments) -> serde_json::Value {
    let finite = |x: Option<f64>| {
        x.filter(|v| v.is_finite())
            .map(|v| serde_json::json!(v))
            .unwrap_or_default()
    };
    let any = m.count > 0;
    let var = m.var();
    serde_json::json!({
        "count": m.count,
        "missing": m.missing,
        "sum": m.total(),
        "mean": finite(any.then(|| m.total() / m.count as f64)),
        "min": finite(any.then_some(m.min)),
        "max": finite(any.then_some(m.max)),
        "var": finite(var),
        "std": finite(var.map(f64::sqrt)),
    })
}

/// What a request reduces in an HDU.
#[derive(Debug)]
enum Values {
    Image(image::Layout),
    /// A column with its elements in the rows.
    Fixed(table::Table, table::Column),
    /// A variable-length array column: descriptors in the rows, elements in the heap.
    Heap(table::Table, table::Column),
    /// Every numeric fixed column of a table (`stats` without a column).
    Columns(table::Table, Vec<table::Column>),
    /// A tile-compressed image: one tile per row of the table.
    Tiled(table::Table, Box<tiled::Tiled>, usize),
}

/// One unit of work: a run of rows (or of image bytes) and what was fetched for it.
#[derive(Debug)]
struct Chunk {
    /// The first row (tables) or element (images) of the chunk, 0-based.
    first_row: u64,
    /// Image bytes or table rows; for heap columns, one array per row after the rows; for
    /// tiled images, the rows, then each tile's compressed data and gzip-compressed data.
    pieces: Vec<bytes::Bytes>,
}

impl Values {
    /// The physical values of a chunk, NaN where missing: decoded once into a buffer that
    /// the kernels then run over in tight loops.
    fn decode(&self, chunk: &Chunk) -> Result<Vec<f64>, ComputeError> {
        let pieces = &chunk.pieces;
        let bytes: usize = pieces.iter().map(|p| p.len()).sum();
        let values = match self {
            Values::Image(layout) => bytes / layout.width(),
            Values::Fixed(table, col) => match col.storage {
                table::Storage::Fixed { .. } => {
                    bytes / table.row_bytes.max(1) as usize * col.values_per_row() as usize
                }
                table::Storage::Heap { .. } => 0,
            },
            Values::Heap(_, col) => bytes / col.elem.width(),
            Values::Columns(..) | Values::Tiled(..) => 0,
        };
        let mut out = Vec::with_capacity(values);
        match self {
            Values::Image(layout) => {
                for p in pieces {
                    layout.for_each(p, |x| out.push(x));
                }
            }
            Values::Fixed(table, col) => {
                let mut row = chunk.first_row;
                for p in pieces {
                    col.rows_for_each(table, p, row, |x| out.push(x))?;
                    row += p.len() as u64 / table.row_bytes.max(1);
                }
            }
            // The rows come first; the arrays after them.
            Values::Heap(_, col) => {
                for p in pieces.iter().skip(1) {
                    // Binary elements: only an ASCII field can be bad.
                    let _ = col.for_each(p, |x| out.push(x));
                }
            }
            Values::Tiled(table, t, hdu) => {
                let rows = pieces.first().cloned().unwrap_or_default();
                let fields: Vec<&[u8]> =
                    rows.chunks_exact(table.row_bytes.max(1) as usize).collect();
                for (i, row) in fields.iter().enumerate() {
                    let data = pieces.get(1 + 2 * i).cloned().unwrap_or_default();
                    let gzip = pieces.get(2 + 2 * i).cloned().unwrap_or_default();
                    t.decode(
                        chunk.first_row + i as u64,
                        row,
                        &data,
                        &gzip,
                        *hdu,
                        &mut out,
                    )?;
                }
            }
            Values::Columns(..) => {}
        }
        Ok(out)
    }

    /// The data bytes cut into chunks, and the unit a chunk boundary must respect.
    fn extent(&self, hdu: &Hdu) -> (u64, u64) {
        match self {
            Values::Image(layout) => (hdu.data_len, layout.width() as u64),
            Values::Fixed(t, _)
            | Values::Heap(t, _)
            | Values::Columns(t, _)
            | Values::Tiled(t, _, _) => (t.row_bytes * t.rows, t.row_bytes.max(1)),
        }
    }
}

fn values_of(hdu: &Hdu, req: &ReduceRequest) -> Result<Values, ComputeError> {
    match &hdu.kind {
        HduKind::Image => {
            if hdu.header.get("ZIMAGE").is_some() {
                return Err(ComputeError::Unsupported {
                    what: format!("tile-compressed images (HDU {})", hdu.index),
                });
            }
            if let Some(c) = &req.column {
                return Err(ComputeError::InvalidRequest {
                    message: format!("HDU {} is an image: it has no column `{c}`", hdu.index),
                });
            }
            Ok(Values::Image(image::Layout::of(hdu)?))
        }
        HduKind::BinTable | HduKind::AsciiTable => {
            let table = table::Table::of(hdu)?;
            if matches!(hdu.header.get("ZIMAGE"), Some(header::Value::Logical(true))) {
                if let Some(c) = &req.column {
                    return Err(ComputeError::InvalidRequest {
                        message: format!(
                            "HDU {} is a compressed image: it has no column `{c}`",
                            hdu.index
                        ),
                    });
                }
                let t = tiled::Tiled::of(hdu, &table)?;
                return Ok(Values::Tiled(table, Box::new(t), hdu.index));
            }
            let Some(name) = &req.column else {
                if req.op == Op::Stats {
                    let columns = table
                        .columns
                        .iter()
                        .filter(|c| {
                            c.is_numeric() && matches!(c.storage, table::Storage::Fixed { .. })
                        })
                        .cloned()
                        .collect();
                    return Ok(Values::Columns(table, columns));
                }
                return Err(ComputeError::InvalidRequest {
                    message: format!(
                        "HDU {} is a table: name a column (its columns are {}), or ask for \
                         `stats` of every column",
                        hdu.index,
                        table.names()
                    ),
                });
            };
            let col = table.column(name, hdu.index)?.clone();
            if !col.is_numeric() {
                return Err(ComputeError::InvalidRequest {
                    message: format!(
                        "column `{}` of HDU {} holds {:?} values, which do not reduce to numbers",
                        col.name, hdu.index, col.elem
                    ),
                });
            }
            Ok(match col.storage {
                table::Storage::Fixed { .. } => Values::Fixed(table, col),
                table::Storage::Heap { .. } => Values::Heap(table, col),
            })
        }
        HduKind::RandomGroups => Err(ComputeError::Unsupported {
            what: format!(
                "random groups (HDU {}); ask for an extension with --hdu",
                hdu.index
            ),
        }),
        HduKind::Other(x) => Err(ComputeError::Unsupported {
            what: format!("XTENSION = '{x}' (HDU {})", hdu.index),
        }),
    }
}

/// Reduces the HDU's data chunk by chunk: each chunk is fetched (with, for heap columns and
/// compressed tiles, the heap arrays its rows point to), handed to `f` on a blocking thread,
/// and the partial results returned in any order.
async fn partials<T: Send + 'static>(
    src: &Arc<Source>,
    hdu: &Hdu,
    values: &Arc<Values>,
    f: impl Fn(&Values, &Chunk) -> Result<T, ComputeError> + Send + Sync + Clone + 'static,
) -> Result<Vec<T>, ComputeError> {
    let (len, unit) = values.extent(hdu);
    let step = (CHUNK / unit).max(1) * unit;
    // A compressed tile is one small row that decodes to many pixels: as many tiles per
    // chunk as decode to about a chunk of values (in f64), so memory stays bounded by the
    // chunk size and the tiles spread over all cores.
    let step = match &**values {
        Values::Tiled(_, t, _) => ((CHUNK / 8) / t.tile_pixels().max(1)).max(1) * unit,
        _ => step,
    };
    let start = hdu.data_start;
    let ranges: Vec<_> = (0..len)
        .step_by(step as usize)
        .map(|s| start + s..start + (s + step).min(len))
        .collect();
    let index = hdu.index;
    futures::stream::iter(ranges)
        .map(|r| {
            let (src, f, values) = (src.clone(), f.clone(), values.clone());
            async move {
                let rows = src.read(r.clone()).await?;
                let mut chunk = Chunk {
                    first_row: (r.start - start) / unit,
                    pieces: vec![rows.clone()],
                };
                match &*values {
                    Values::Heap(table, col) => {
                        chunk.first_row = (r.start - start) / table.row_bytes.max(1);
                        let arrays =
                            heap_arrays(&src, start, index, table, col, &rows, chunk.first_row)
                                .await?;
                        chunk.pieces.extend(arrays);
                    }
                    Values::Tiled(table, t, _) => {
                        chunk.first_row = (r.start - start) / table.row_bytes.max(1);
                        let data = heap_arrays(
                            &src,
                            start,
                            index,
                            table,
                            &t.compressed,
                            &rows,
                            chunk.first_row,
                        )
                        .await?;
                        let gzip = match &t.gzip_compressed {
                            Some(c) => {
                                heap_arrays(&src, start, index, table, c, &rows, chunk.first_row)
                                    .await?
                            }
                            None => vec![bytes::Bytes::new(); data.len()],
                        };
                        for (d, g) in data.into_iter().zip(gzip) {
                            chunk.pieces.push(d);
                            chunk.pieces.push(g);
                        }
                    }
                    _ => {}
                }
                tokio::task::spawn_blocking(move || f(&values, &chunk))
                    .await
                    .map_err(|e| ComputeError::Task(e.to_string()))?
            }
        })
        .buffer_unordered(parallelism())
        .try_collect()
        .await
}

/// Fetches the heap arrays that `rows` point to, one per row (empty where a row's array is):
/// one read for the span they cover when it is small, else one read per array.
async fn heap_arrays(
    src: &Source,
    data_start: u64,
    hdu: usize,
    table: &table::Table,
    col: &table::Column,
    rows: &bytes::Bytes,
    first_row: u64,
) -> Result<Vec<bytes::Bytes>, ComputeError> {
    let width = col.elem.width() as u64;
    let mut spans = Vec::new();
    for (i, (n, off)) in table::descriptors(rows, table, col).into_iter().enumerate() {
        let end = n
            .checked_mul(width)
            .and_then(|b| off.checked_add(b))
            .filter(|e| *e <= table.heap_bytes)
            .ok_or_else(|| ComputeError::Format {
                hdu,
                card: None,
                message: format!(
                    "row {} of column `{}` points outside the heap ({n} elements at {off}, heap \
                     of {} bytes)",
                    first_row + i as u64 + 1,
                    col.name,
                    table.heap_bytes
                ),
            })?;
        spans.push((off, end));
    }
    let used = || spans.iter().filter(|s| s.1 > s.0);
    let Some(lo) = used().map(|s| s.0).min() else {
        return Ok(vec![bytes::Bytes::new(); spans.len()]);
    };
    let hi = used().map(|s| s.1).max().unwrap_or(lo);
    let heap = data_start + table.heap_offset;
    if hi - lo <= 4 * CHUNK {
        let all = src.read(heap + lo..heap + hi).await?;
        return Ok(spans
            .iter()
            .map(|&(a, b)| {
                if b > a {
                    all.slice((a - lo) as usize..(b - lo) as usize)
                } else {
                    bytes::Bytes::new()
                }
            })
            .collect());
    }
    let mut out = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        out.push(if b > a {
            src.read(heap + a..heap + b).await?
        } else {
            bytes::Bytes::new()
        });
    }
    Ok(out)
}

/// A reduction over many objects: every key under `prefix` whose rest matches `glob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub volume: String,
    /// Keys beginning with this (e.g. `obs/2024/`); default: the whole volume.
    #[serde(default)]
    pub prefix: String,
    /// A pattern the rest of the key (after `prefix`) must match: `*` any run of characters
    /// but `/`, `**` any run including `/`, `?` one character. Default: everything.
    #[serde(default)]
    pub glob: Option<String>,
    pub op: Op,
    #[serde(default, deserialize_with = "hdu_field")]
    pub hdu: Option<String>,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub bins: Option<usize>,
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    #[serde(default)]
    pub q: Option<Vec<f64>>,
    #[serde(default)]
    pub approximate: bool,
    #[serde(default)]
    pub engine: Engine,
    /// `ndjson` (default: one event per line as results arrive) or `csv`.
    #[serde(default)]
    pub format: BatchFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchFormat {
    #[default]
    Ndjson,
    Csv,
}

impl BatchRequest {
    /// `req` over every key under `req.key` (a prefix) that matches `glob`: the same
    /// reduction, answered as a table (arrays — cutouts, binning — are not batched).
    pub fn over(req: ReduceRequest, glob: Option<String>, format: BatchFormat) -> Self {
        Self {
            volume: req.volume,
            prefix: req.key,
            glob,
            op: req.op,
            hdu: req.hdu,
            column: req.column,
            bins: req.bins,
            range: req.range,
            q: req.q,
            approximate: req.approximate,
            engine: req.engine,
            format,
        }
    }

    /// The single-object request for `key`.
    pub fn for_key(&self, key: &str) -> ReduceRequest {
        ReduceRequest {
            volume: self.volume.clone(),
            key: key.to_string(),
            op: self.op,
            hdu: self.hdu.clone(),
            column: self.column.clone(),
            bins: self.bins,
            range: self.range,
            q: self.q.clone(),
            approximate: self.approximate,
            section: None,
            factor: None,
            output: array::ArrayFormat::Fits,
            engine: self.engine,
        }
    }

    /// Whether `key` (under the prefix) is part of the batch.
    pub fn selects(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        match &self.glob {
            None => true,
            Some(g) => glob_match(g.as_bytes(), rest.as_bytes()),
        }
    }
}

/// One line of a batch's NDJSON answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "event")]
pub enum BatchEvent {
    Result {
        key: String,
        #[serde(flatten)]
        reduction: Reduction,
    },
    /// One object failed; the batch goes on.
    Error {
        key: String,
        code: String,
        message: String,
    },
    /// The end: how many objects were reduced and how many failed.
    Done {
        objects: u64,
        failed: u64,
        bytes_read: u64,
        elapsed_ms: f64,
    },
    /// The batch itself failed (listing the volume).
    Fatal { code: String, message: String },
}

/// `*` matches any run without `/`, `**` any run, `**/` any run of whole folders (also none),
/// `?` one character other than `/`. Linear in the key per pattern element (no backtracking),
/// so no pattern can make it slow.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    enum Tok {
        Lit(u8),
        One,
        Star,
        Any,
        Folders,
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' if pattern.get(i + 1) == Some(&b'*') => {
                if pattern.get(i + 2) == Some(&b'/') {
                    toks.push(Tok::Folders);
                    i += 3;
                } else {
                    toks.push(Tok::Any);
                    i += 2;
                }
            }
            b'*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            b'?' => {
                toks.push(Tok::One);
                i += 1;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    // dp[j]: the tokens so far match text[..j].
    let n = text.len();
    let mut dp = vec![false; n + 1];
    dp[0] = true;
    for tok in &toks {
        let mut next = vec![false; n + 1];
        match tok {
            Tok::Lit(c) => {
                for j in 0..n {
                    next[j + 1] = dp[j] && text[j] == *c;
                }
            }
            Tok::One => {
                for j in 0..n {
                    next[j + 1] = dp[j] && text[j] != b'/';
                }
            }
            Tok::Star => {
                next[0] = dp[0];
                for j in 1..=n {
                    next[j] = dp[j] || (next[j - 1] && text[j - 1] != b'/');
                }
            }
            Tok::Any => {
                next[0] = dp[0];
                for j in 1..=n {
                    next[j] = dp[j] || next[j - 1];
                }
            }
            Tok::Folders => {
                let mut seen = dp[0];
                next[0] = dp[0];
                for j in 1..=n {
                    next[j] = dp[j] || (seen && text[j - 1] == b'/');
                    seen |= dp[j];
                }
            }
        }
        dp = next;
    }
    dp[n]
}

/// The CSV header and one row per event (results and per-object errors).
pub fn csv_header() -> &'static str {
    "key,op,value,count,missing,hdu,engine,bytes_read,error\n"
}

pub fn csv_row(event: &BatchEvent) -> Option<String> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    match event {
        BatchEvent::Result { key, reduction: r } => {
            let value = match &r.value {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            Some(format!(
                "{},{},{},{},{},{},{},{},\n",
                quote(key),
                r.op.as_str(),
                quote(&value),
                r.count,
                r.missing,
                r.hdu,
                match r.engine {
                    Engine::Cuda => "cuda",
                    _ => "cpu",
                },
                r.bytes_read
            ))
        }
        BatchEvent::Error { key, message, .. } => {
            Some(format!("{},,,,,,,,{}\n", quote(key), quote(message)))
        }
        BatchEvent::Fatal { message, .. } => Some(format!(
            ",,,,,,,,{}\n",
            quote(&format!("the batch stopped: {message}"))
        )),
        BatchEvent::Done { .. } => None,
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_asks_each_object_what_the_request_asked() {
        let req = ReduceRequest {
            hdu: Some("SCI".into()),
            column: Some("FLUX".into()),
            bins: Some(7),
            range: Some([0.0, 1.0]),
            q: Some(vec![0.5]),
            approximate: true,
            engine: Engine::Cpu,
            ..ReduceRequest::new("demo", "obs/2024/", Op::Quantiles)
        };
        let batch = BatchRequest::over(req.clone(), Some("*.fits".into()), BatchFormat::Csv);
        assert_eq!(batch.prefix, "obs/2024/");
        assert!(batch.selects("obs/2024/a.fits") && !batch.selects("obs/2024/a.txt"));
        assert_eq!(
            batch.for_key("obs/2024/a.fits"),
            ReduceRequest {
                key: "obs/2024/a.fits".into(),
                ..req
            }
        );
    }

    #[test]
    fn globs_match_like_a_shell() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("*.fits", "a.fits"));
        assert!(!m("*.fits", "d/a.fits"));
        assert!(m("**/*.fits", "d/e/a.fits"));
        assert!(m("**/*.fits", "a.fits"));
        assert!(m("**", "anything/at/all"));
        assert!(m("img_??.fits", "img_01.fits"));
        assert!(!m("img_?.fits", "img_01.fits"));
        assert!(!m("*.fits", "a.fits.fz"));
        assert!(m("*.fits*", "a.fits.fz"));
        assert!(m("obs/**/raw_*.fits", "obs/2024/01/raw_7.fits"));
        assert!(m("obs/**/raw_*.fits", "obs/raw_7.fits"));
        assert!(!m("obs/**/raw_*.fits", "obs/2024/cal_7.fits"));
        // No backtracking blow-up.
        let long = "a".repeat(1000);
        assert!(!m("*a*a*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn csv_rows_quote_what_needs_it() {
        let e = BatchEvent::Error {
            key: "a,b.fits".into(),
            code: "InvalidFits".into(),
            message: "HDU 0, card 1: \"bad\"".into(),
        };
        assert_eq!(
            csv_row(&e).unwrap_or_default(),
            "\"a,b.fits\",,,,,,,,\"HDU 0, card 1: \"\"bad\"\"\"\n"
        );
    }
}

//! Running one reduction over an object: find the HDU from headers, cut the data into chunks,
//! fetch a bounded number at a time, reduce them on all cores (or the GPU), merge.

use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;

#[cfg(feature = "cuda")]
use crate::cuda;
use crate::cutout::array_of;
use crate::quantile::quantiles_of;
use crate::{
    CHUNK, ComputeError, Engine, Hdu, HduKind, HduSelector, Histogram, Moments, Op, ReduceRequest,
    Reduction, Source, hdu, header, image, table, tiled,
};

/// How many chunks are fetched and reduced at once.
pub(crate) fn parallelism() -> usize {
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
            sites: Vec::new(),
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
            sites: Vec::new(),
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
        sites: Vec::new(),
        bytes_read: src.bytes_read(),
        bytes_returned: 0,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        array: None,
    })
}

/// The GPU a reduction runs on, when it runs on one.
#[cfg(feature = "cuda")]
pub(crate) type Gpu = Option<&'static cuda::GpuEngine>;
#[cfg(not(feature = "cuda"))]
pub(crate) type Gpu = Option<std::convert::Infallible>;

/// Decides the engine: the GPU for image moments and histograms when asked (`cuda`) or when
/// usable (`auto`); otherwise the CPU, with the reason when `auto` could not use the GPU.
pub(crate) fn choose_engine(
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

pub(crate) fn chunk_moments(gpu: Gpu, v: &Values, chunk: &Chunk) -> Result<Moments, ComputeError> {
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
pub(crate) const PIECE_VALUES: usize = 64 * 1024;

/// Calls `f` with the physical values of an image chunk, `PIECE_VALUES` at a time.
pub(crate) fn image_pieces(layout: &image::Layout, chunk: &Chunk, mut f: impl FnMut(&[f64])) {
    let mut buf = Vec::with_capacity(PIECE_VALUES);
    for p in &chunk.pieces {
        for part in p.chunks(PIECE_VALUES * layout.width()) {
            buf.clear();
            layout.for_each(part, |x| buf.push(x));
            f(&buf);
        }
    }
}

pub(crate) fn chunk_histogram(
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

/// The statistics object of `stats` (and of each column in a table's `stats`).
pub(crate) fn stats_json(m: &Moments) -> serde_json::Value {
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
pub(crate) enum Values {
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
pub(crate) struct Chunk {
    /// The first row (tables) or element (images) of the chunk, 0-based.
    pub(crate) first_row: u64,
    /// Image bytes or table rows; for heap columns, one array per row after the rows; for
    /// tiled images, the rows, then each tile's compressed data and gzip-compressed data.
    pub(crate) pieces: Vec<bytes::Bytes>,
}

impl Values {
    /// The physical values of a chunk, NaN where missing: decoded once into a buffer that
    /// the kernels then run over in tight loops.
    pub(crate) fn decode(&self, chunk: &Chunk) -> Result<Vec<f64>, ComputeError> {
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

pub(crate) fn values_of(hdu: &Hdu, req: &ReduceRequest) -> Result<Values, ComputeError> {
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
pub(crate) async fn partials<T: Send + 'static>(
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
pub(crate) async fn heap_arrays(
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

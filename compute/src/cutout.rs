//! Cutouts (reading only the pixels they cover) and binning of images, tiled ones included.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::runner::{Values, parallelism, partials};
use crate::{CHUNK, ComputeError, Hdu, Op, ReduceRequest, Source, array, table, tiled};

/// A cutout (reading only the runs of pixels it covers) or a binning (one pass) of an image.
pub(crate) async fn array_of(
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
pub(crate) fn bin_factors(
    req: &ReduceRequest,
    shape: &[u64],
    hdu: usize,
) -> Result<Vec<u64>, ComputeError> {
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
pub(crate) async fn tiled_cutout(
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

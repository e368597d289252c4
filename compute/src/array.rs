//! Reductions whose answer is an array: a cutout (a section of an image, reading only the rows
//! it covers) and binning (downsampling by integer factors, NaN-aware means), written as FITS
//! or NPY. Both stream: a cutout reads one range per run of pixels along the first axis, a
//! binning accumulates each chunk into the (bounded) output.

use std::ops::Range;

use bytes::Bytes;

use crate::ComputeError;

/// The largest array an answer may hold (float64 values): 32 Mi values, 256 MiB.
pub const MAX_OUTPUT_VALUES: u64 = 32 * 1024 * 1024;

/// How an array answer is encoded.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ArrayFormat {
    #[default]
    Fits,
    Npy,
}

/// An array answer: values in FITS order (axis 1 fastest) and its shape (axis 1 first).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<u64>,
    pub values: Vec<f64>,
}

impl Array {
    /// Encodes as a FITS file (BITPIX -64, NaN as missing) or an NPY file (`<f8`, C order,
    /// shape last axis first as numpy shows FITS data).
    pub fn encode(&self, format: ArrayFormat, cards: &[(String, String)]) -> Vec<u8> {
        match format {
            ArrayFormat::Fits => {
                let mut header = vec![
                    "SIMPLE  =                    T".to_string(),
                    "BITPIX  =                  -64".to_string(),
                    format!("NAXIS   = {:>20}", self.shape.len()),
                ];
                for (i, n) in self.shape.iter().enumerate() {
                    header.push(format!("NAXIS{:<3}= {:>20}", i + 1, n));
                }
                header.extend(cards.iter().map(|(k, v)| format!("{k:<8}= {v}")));
                let mut out = crate::header::write(&header);
                for v in &self.values {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.resize(out.len().div_ceil(2880) * 2880, 0);
                out
            }
            ArrayFormat::Npy => {
                let shape: Vec<String> = self.shape.iter().rev().map(u64::to_string).collect();
                let shape = if shape.len() == 1 {
                    format!("({},)", shape[0])
                } else {
                    format!("({})", shape.join(", "))
                };
                let mut dict =
                    format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
                // Magic (6) + version (2) + length (2) + dict + newline, padded to 64 bytes.
                let total = (10 + dict.len() + 1).div_ceil(64) * 64;
                while 10 + dict.len() + 1 < total {
                    dict.push(' ');
                }
                dict.push('\n');
                let mut out = b"\x93NUMPY\x01\x00".to_vec();
                out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
                out.extend_from_slice(dict.as_bytes());
                for v in &self.values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out
            }
        }
    }
}

impl Array {
    /// The array of an NPY answer as [`Array::encode`] writes it (version 1, `<f8`, C order),
    /// as a gateway gets it back from a peer that computed it. Anything else is refused,
    /// saying what.
    pub fn from_npy(bytes: &[u8]) -> Result<Array, ComputeError> {
        let bad = |why: &str| ComputeError::InvalidRequest {
            message: format!("the array answer is not the NPY Archway writes: {why}"),
        };
        let rest = bytes
            .strip_prefix(b"\x93NUMPY\x01\x00")
            .ok_or_else(|| bad("no NPY version 1 magic"))?;
        let (len, rest) = rest.split_at_checked(2).ok_or_else(|| bad("truncated"))?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let (dict, data) = rest.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
        let dict = std::str::from_utf8(dict).map_err(|_| bad("the header is not text"))?;
        if !dict.contains("'descr': '<f8'") || !dict.contains("'fortran_order': False") {
            return Err(bad("not little-endian float64 in C order"));
        }
        let shape = dict
            .split_once("'shape': (")
            .and_then(|(_, s)| s.split_once(')'))
            .ok_or_else(|| bad("no shape"))?
            .0;
        let mut dims = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| bad("a dimension is not a number"))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        dims.reverse();
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("the shape overflows"))?;
        if data.len() as u64 != n.saturating_mul(8) {
            return Err(bad("the data's length does not match the shape"));
        }
        let values = data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Array {
            shape: dims,
            values,
        })
    }
}

/// A section of an image: one half-open range per axis, axis 1 first (`[[x0, x1], [y0, y1]]`
/// is numpy's `data[y0:y1, x0:x1]`).
pub fn check_section(
    section: &[[u64; 2]],
    shape: &[u64],
    hdu: usize,
) -> Result<Vec<Range<u64>>, ComputeError> {
    if section.len() != shape.len() {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "the section has {} ranges, but HDU {hdu} has {} axes",
                section.len(),
                shape.len()
            ),
        });
    }
    let mut out = Vec::new();
    let mut values = 1u64;
    for (i, ([a, b], n)) in section.iter().zip(shape).enumerate() {
        if a >= b || b > n {
            return Err(ComputeError::InvalidRequest {
                message: format!(
                    "section range {a}..{b} of axis {} is empty or outside 0..{n}",
                    i + 1
                ),
            });
        }
        values = values.saturating_mul(b - a);
        out.push(*a..*b);
    }
    if values > MAX_OUTPUT_VALUES {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "the cutout would hold {values} values; the limit is {MAX_OUTPUT_VALUES}"
            ),
        });
    }
    Ok(out)
}

/// The byte ranges (relative to the data start) of a section's runs along axis 1, in output
/// order.
pub fn section_runs(section: &[Range<u64>], shape: &[u64], width: u64) -> Vec<Range<u64>> {
    let mut runs = Vec::new();
    let outer: Vec<Range<u64>> = section[1..].to_vec();
    let mut idx: Vec<u64> = outer.iter().map(|r| r.start).collect();
    loop {
        // The linear index of (x0, idx...).
        let mut linear = 0u64;
        let mut stride = shape[0];
        for (i, v) in idx.iter().enumerate() {
            linear += v * stride;
            stride *= shape[i + 1];
        }
        let start = (linear + section[0].start) * width;
        runs.push(start..start + (section[0].end - section[0].start) * width);
        // Next index, axis 2 fastest.
        let mut axis = 0;
        loop {
            if axis == idx.len() {
                return runs;
            }
            idx[axis] += 1;
            if idx[axis] < outer[axis].end {
                break;
            }
            idx[axis] = outer[axis].start;
            axis += 1;
        }
    }
}

/// Merges runs that are close (gap of at most `slack` bytes) into fewer reads.
pub fn coalesce(runs: &[Range<u64>], slack: u64, max: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in runs {
        match out.last_mut() {
            Some(last) if r.start <= last.end + slack && r.end - last.start <= max => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

/// Partial sums of a binning, for the output values `start..start + sums.len()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BinPart {
    pub start: u64,
    pub sums: Vec<f64>,
    pub counts: Vec<u32>,
}

/// Accumulates `values` (elements `first..` of the image, FITS order) into blocks of
/// `factors`; pixels of partial blocks at the far edges are dropped (as astropy's
/// `block_reduce`).
pub fn bin_chunk(values: &[f64], first: u64, shape: &[u64], factors: &[u64]) -> BinPart {
    bin_indexed(
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (first + i as u64, v)),
        shape,
        factors,
    )
}

/// Accumulates values given with their linear index in the image (FITS order) into blocks of
/// `factors` (for tiles, whose pixels are not in image order).
pub fn bin_indexed(
    values: impl Iterator<Item = (u64, f64)>,
    shape: &[u64],
    factors: &[u64],
) -> BinPart {
    let out_shape: Vec<u64> = shape.iter().zip(factors).map(|(n, f)| n / f).collect();
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    let mut hits: Vec<(u64, f64)> = Vec::new();
    for (index, v) in values {
        let mut rest = index;
        let mut out = 0u64;
        let mut stride = 1u64;
        let mut inside = true;
        for ((n, f), on) in shape.iter().zip(factors).zip(&out_shape) {
            let c = rest % n;
            rest /= n;
            let o = c / f;
            if o >= *on {
                inside = false;
                break;
            }
            out += o * stride;
            stride *= on;
        }
        if inside {
            lo = lo.min(out);
            hi = hi.max(out);
            hits.push((out, v));
        }
    }
    if hits.is_empty() {
        return BinPart::default();
    }
    let len = (hi - lo + 1) as usize;
    let mut part = BinPart {
        start: lo,
        sums: vec![0.0; len],
        counts: vec![0; len],
    };
    for (o, v) in hits {
        if !v.is_nan() {
            let k = (o - lo) as usize;
            part.sums[k] += v;
            part.counts[k] += 1;
        }
    }
    part
}

/// The binned image from its parts: NaN-aware block means.
pub fn bin_finish(parts: Vec<BinPart>, out_shape: Vec<u64>) -> Array {
    let n: u64 = out_shape.iter().product();
    let mut sums = vec![0.0; n as usize];
    let mut counts = vec![0u32; n as usize];
    for p in parts {
        for (k, (s, c)) in p.sums.iter().zip(&p.counts).enumerate() {
            let i = p.start as usize + k;
            if i < sums.len() {
                sums[i] += s;
                counts[i] += c;
            }
        }
    }
    Array {
        shape: out_shape,
        values: sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c == 0 { f64::NAN } else { s / f64::from(*c) })
            .collect(),
    }
}

/// Decoded values of the runs read for a cutout, sliced back out of coalesced reads.
pub fn slice_runs(reads: &[(Range<u64>, Bytes)], runs: &[Range<u64>]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(runs.len());
    let mut k = 0;
    for r in runs {
        while k < reads.len() && reads[k].0.end < r.end {
            k += 1;
        }
        if let Some((range, bytes)) = reads.get(k)
            && range.start <= r.start
            && r.end <= range.end
        {
            out.push(bytes.slice((r.start - range.start) as usize..(r.end - range.start) as usize));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_answers_read_back_and_strangers_are_refused() {
        let a = Array {
            shape: vec![3, 2, 1],
            values: vec![1.0, f64::NAN, 3.5, -4.0, 5.0, 6.0],
        };
        let back = Array::from_npy(&a.encode(ArrayFormat::Npy, &[])).unwrap();
        assert_eq!(back.shape, a.shape);
        assert_eq!(back.values[0], 1.0);
        assert!(back.values[1].is_nan());
        assert_eq!(&back.values[2..], &a.values[2..]);
        let mut cut = a.encode(ArrayFormat::Npy, &[]);
        cut.pop();
        assert!(
            Array::from_npy(&cut)
                .unwrap_err()
                .to_string()
                .contains("length")
        );
        assert!(
            Array::from_npy(b"PK\x03\x04")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(Array::from_npy(&a.encode(ArrayFormat::Fits, &[])).is_err());
    }

    #[test]
    fn section_runs_cover_the_rows_of_a_cutout() {
        // A 10 x 4 image (NAXIS1 = 10), cutout x 2..5, y 1..3, 4-byte values.
        let runs = section_runs(&[2..5, 1..3], &[10, 4], 4);
        assert_eq!(runs, vec![48..60, 88..100]);
        assert_eq!(coalesce(&runs, 64, 1 << 20), vec![48..100]);
        assert_eq!(coalesce(&runs, 8, 1 << 20), runs);
    }

    #[test]
    fn binning_drops_partial_blocks_and_skips_nan() {
        // 5 x 3 image, values 0..15, binned by 2 x 2: one output row of two blocks.
        let mut v: Vec<f64> = (0..15).map(f64::from).collect();
        v[1] = f64::NAN;
        let parts = vec![
            bin_chunk(&v[..7], 0, &[5, 3], &[2, 2]),
            bin_chunk(&v[7..], 7, &[5, 3], &[2, 2]),
        ];
        let a = bin_finish(parts, vec![2, 1]);
        // Block (0,0): 0, NaN, 5, 6 -> 11/3; block (1,0): 2, 3, 7, 8 -> 5.
        assert_eq!(a.values, vec![11.0 / 3.0, 5.0]);
    }

    #[test]
    fn npy_headers_are_aligned() {
        let a = Array {
            shape: vec![3, 2],
            values: vec![0.0; 6],
        };
        let npy = a.encode(ArrayFormat::Npy, &[]);
        let len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        assert!(String::from_utf8_lossy(&npy[10..10 + len]).contains("'shape': (2, 3)"));
        assert_eq!(npy.len(), 10 + len + 48);
        let fits = a.encode(ArrayFormat::Fits, &[]);
        assert_eq!(fits.len() % 2880, 0);
    }
}

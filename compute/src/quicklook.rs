//! Quick-looks: an image HDU binned down to a small picture, stretched for the eye and encoded
//! as an 8-bit greyscale PNG, as the catalogue's web pages show it.
//!
//! The binning is the `bin` reduction (NaN-aware block means, read through the cache where the
//! data lies); this module chooses its factors, the display limits and the encoding:
//!
//! - [`factors`]: the smallest integer factor that brings both of the first two axes within the
//!   requested size (the aspect kept); further axes (cube planes) are averaged whole.
//! - [`zscale`]: IRAF's zscale, as astropy's `ZScaleInterval` computes it (up to 1000 samples
//!   evenly strided, a line fitted with iterative 2.5σ rejection, contrast 0.25); checked
//!   against astropy in `compute/tests/quicklook.rs`.
//! - [`percentile`]: the values at two percentiles (astropy's `AsymmetricPercentileInterval`,
//!   linear interpolation).
//! - [`render_png`]: values mapped linearly between the limits to 1..=255, missing values (NaN)
//!   black (0); FITS row 1 at the bottom, as astronomers' viewers (ds9, astropy's `imshow`
//!   with `origin="lower"`) draw it.

use serde::{Deserialize, Serialize};

use crate::ComputeError;
use crate::array::Array;

/// How values become grey levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stretch {
    /// IRAF's zscale limits (contrast 0.25).
    #[default]
    Zscale,
    /// The 0.5th and 99.5th percentiles.
    Percentile,
    /// The data's minimum and maximum.
    Minmax,
}

impl Stretch {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zscale" => Some(Self::Zscale),
            "percentile" => Some(Self::Percentile),
            "minmax" => Some(Self::Minmax),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zscale => "zscale",
            Self::Percentile => "percentile",
            Self::Minmax => "minmax",
        }
    }

    /// The display limits of `values` (missing values skipped); None when no value is finite.
    pub fn limits(self, values: &[f64]) -> Option<(f64, f64)> {
        match self {
            Self::Zscale => zscale(values),
            Self::Percentile => percentile(values, 0.5, 99.5),
            Self::Minmax => {
                let finite = values.iter().copied().filter(|v| v.is_finite());
                finite.fold(None, |acc, v| match acc {
                    None => Some((v, v)),
                    Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
                })
            }
        }
    }
}

/// The largest quick-look side a request may ask for.
pub const MAX_SIDE: u64 = 2048;

/// Binning factors (axis 1 first) that bring an image of `shape` within `max_side` pixels on
/// each of its first two axes — the same factor for both, keeping the aspect — averaging any
/// further axes whole. Refused for fewer than two
/// axes (a spectrum or a table is not an image).
pub fn factors(shape: &[u64], max_side: u64) -> Result<Vec<u64>, ComputeError> {
    if shape.len() < 2 || shape.iter().take(2).any(|&n| n == 0) {
        return Err(ComputeError::InvalidRequest {
            message: format!(
                "a quick-look needs an image of two or more axes; this HDU's shape is {shape:?}"
            ),
        });
    }
    let max_side = max_side.clamp(1, MAX_SIDE);
    // One factor for both axes: the picture keeps the image's aspect.
    let f = shape[0].max(shape[1]).div_ceil(max_side).max(1);
    Ok(shape
        .iter()
        .enumerate()
        .map(|(axis, &n)| if axis < 2 { f } else { n.max(1) })
        .collect())
}

/// IRAF's zscale limits of `values`, as astropy's `ZScaleInterval()` (its defaults: 1000
/// samples, contrast 0.25, rejection at 2.5σ, at most half the samples rejected, 5 iterations).
pub fn zscale(values: &[f64]) -> Option<(f64, f64)> {
    const N_SAMPLES: usize = 1000;
    const CONTRAST: f64 = 0.25;
    const MAX_REJECT: f64 = 0.5;
    const MIN_NPIXELS: usize = 5;
    const KREJ: f64 = 2.5;
    const MAX_ITERATIONS: usize = 5;

    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let stride = ((finite.len() as f64 / N_SAMPLES as f64) as usize).max(1);
    let mut samples: Vec<f64> = finite
        .iter()
        .step_by(stride)
        .take(N_SAMPLES)
        .copied()
        .collect();
    samples.sort_by(f64::total_cmp);
    let npix = samples.len();
    let (mut vmin, mut vmax) = (samples[0], samples[npix - 1]);
    let minpix = MIN_NPIXELS.max((npix as f64 * MAX_REJECT) as usize);
    let x: Vec<f64> = (0..npix).map(|i| i as f64).collect();
    let ngrow = ((npix as f64 * 0.01) as usize).max(1);
    let mut bad = vec![0u32; npix];
    let mut ngood = npix;
    let mut last_ngood = npix + 1;
    let mut fit = (0.0, 0.0);
    for _ in 0..MAX_ITERATIONS {
        if ngood >= last_ngood || ngood < minpix {
            break;
        }
        fit = line_fit(&x, &samples, &bad)?;
        let flat: Vec<f64> = x
            .iter()
            .zip(&samples)
            .map(|(&xi, &s)| s - (fit.0 * xi + fit.1))
            .collect();
        let good: Vec<f64> = flat
            .iter()
            .zip(&bad)
            .filter(|(_, b)| **b == 0)
            .map(|(f, _)| *f)
            .collect();
        let mean = good.iter().sum::<f64>() / good.len() as f64;
        let std =
            (good.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / good.len() as f64).sqrt();
        let threshold = KREJ * std;
        for (b, f) in bad.iter_mut().zip(&flat) {
            if *f < -threshold || *f > threshold {
                *b = 1;
            }
        }
        bad = grow(&bad, ngrow);
        last_ngood = ngood;
        ngood = bad.iter().filter(|&&b| b == 0).count();
    }
    if ngood >= minpix {
        let slope = fit.0 / CONTRAST;
        let center = (npix - 1) / 2;
        let median = if npix % 2 == 1 {
            samples[npix / 2]
        } else {
            0.5 * (samples[npix / 2 - 1] + samples[npix / 2])
        };
        vmin = vmin.max(median - (center as f64 - 1.0) * slope);
        vmax = vmax.min(median + (npix as f64 - center as f64) * slope);
    }
    Some((vmin, vmax))
}

/// Least squares line through the points not marked bad: (slope, intercept), as numpy's
/// `polyfit(x, y, 1, w=(bad == 0))`.
fn line_fit(x: &[f64], y: &[f64], bad: &[u32]) -> Option<(f64, f64)> {
    let (mut n, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for ((&xi, &yi), &b) in x.iter().zip(y).zip(bad) {
        if b == 0 {
            n += 1.0;
            sx += xi;
            sy += yi;
        }
    }
    if n < 2.0 {
        return None;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for ((&xi, &yi), &b) in x.iter().zip(y).zip(bad) {
        if b == 0 {
            sxx += (xi - mx) * (xi - mx);
            sxy += (xi - mx) * (yi - my);
        }
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    Some((slope, my - slope * mx))
}

/// numpy's `convolve(bad, ones(k), mode="same")`: each rejected sample also rejects its
/// neighbours.
fn grow(bad: &[u32], k: usize) -> Vec<u32> {
    let n = bad.len();
    let shift = (k - 1) / 2;
    (0..n)
        .map(|i| {
            let hi = i + shift;
            let lo = hi.saturating_sub(k - 1);
            bad[lo..=hi.min(n - 1)].iter().sum()
        })
        .collect()
}

/// The values at percentiles `lo` and `hi` (0..=100) of the finite values, interpolated
/// linearly between order statistics (numpy's default).
pub fn percentile(values: &[f64], lo: f64, hi: f64) -> Option<(f64, f64)> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let pos = (p / 100.0).clamp(0.0, 1.0) * (finite.len() - 1) as f64;
        let below = pos.floor() as usize;
        let above = (below + 1).min(finite.len() - 1);
        finite[below] + (finite[above] - finite[below]) * (pos - below as f64)
    };
    Some((at(lo), at(hi)))
}

/// The first plane of `array` as an 8-bit greyscale PNG, stretched between the limits the
/// stretch finds (a constant image is mid-grey; missing values are black). FITS row 1 is the
/// picture's bottom row.
pub fn render_png(array: &Array, stretch: Stretch) -> Result<Vec<u8>, ComputeError> {
    let (w, h) = match array.shape.as_slice() {
        [w, h, ..] if *w > 0 && *h > 0 => (*w as usize, *h as usize),
        other => {
            return Err(ComputeError::InvalidRequest {
                message: format!(
                    "a quick-look needs an image of two or more axes; the binned shape is {other:?}"
                ),
            });
        }
    };
    let plane = &array.values[..w * h];
    let (lo, hi) = stretch.limits(plane).unwrap_or((0.0, 0.0));
    let span = hi - lo;
    let mut pixels = vec![0u8; w * h];
    for row in 0..h {
        let out = &mut pixels[(h - 1 - row) * w..][..w];
        for (o, &v) in out.iter_mut().zip(&plane[row * w..][..w]) {
            *o = if !v.is_finite() {
                0
            } else if span <= 0.0 {
                128
            } else {
                (1.0 + 254.0 * ((v - lo) / span).clamp(0.0, 1.0)).round() as u8
            };
        }
    }
    encode_png(w as u32, h as u32, &pixels)
}

/// An 8-bit greyscale PNG of `pixels` (rows top to bottom).
pub fn encode_png(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, ComputeError> {
    let mut out = Vec::with_capacity(pixels.len() / 2 + 64);
    let failed = |e: png::EncodingError| ComputeError::Task(format!("PNG encoding: {e}"));
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(pixels).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn factors_bring_the_image_within_the_side_and_average_planes() {
        assert_eq!(factors(&[4096, 2048], 512).unwrap(), vec![8, 8]);
        assert_eq!(factors(&[300, 200], 512).unwrap(), vec![1, 1]);
        assert_eq!(factors(&[513, 512, 7], 512).unwrap(), vec![2, 2, 7]);
        assert_eq!(factors(&[600, 1000], 100).unwrap(), vec![10, 10]);
        assert!(factors(&[100], 512).is_err());
        assert!(factors(&[0, 5], 512).is_err());
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v: Vec<f64> = (1..=5).map(f64::from).chain([f64::NAN]).collect();
        // numpy.percentile([1, 2, 3, 4, 5], [10, 90]) == [1.4, 4.6]
        let (lo, hi) = percentile(&v, 10.0, 90.0).unwrap();
        assert!(
            (lo - 1.4).abs() < 1e-12 && (hi - 4.6).abs() < 1e-12,
            "{lo} {hi}"
        );
        assert_eq!(percentile(&[f64::NAN], 1.0, 99.0), None);
    }

    #[test]
    fn zscale_of_a_ramp_is_its_range() {
        // A straight line needs no rejection: the limits stay the data's extremes.
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(zscale(&v), Some((0.0, 99.0)));
    }

    #[test]
    fn grow_matches_numpy_convolve_same() {
        // numpy.convolve([0,0,1,0,0,0], ones(3), 'same') == [0,1,1,1,0,0]
        assert_eq!(grow(&[0, 0, 1, 0, 0, 0], 3), vec![0, 1, 1, 1, 0, 0]);
        // numpy.convolve([0,0,1,0,0,0], ones(2), 'same') == [0,0,1,1,0,0]
        assert_eq!(grow(&[0, 0, 1, 0, 0, 0], 2), vec![0, 0, 1, 1, 0, 0]);
    }

    #[test]
    fn the_png_is_flipped_stretched_and_decodes() {
        let a = Array {
            shape: vec![3, 2],
            values: vec![0.0, 1.0, 2.0, 3.0, f64::NAN, 5.0],
        };
        let png_bytes = render_png(&a, Stretch::Minmax).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        // Top row of the picture is FITS row 2: 3, NaN (black), 5 (white).
        assert_eq!(&buf[..3], &[153, 0, 255]);
        assert_eq!(&buf[3..6], &[1, 52, 103]);
    }
}

//! Reductions that merge: every chunk of data is reduced on its own (in parallel), and the
//! partial results combine exactly as if the data had been seen in one pass.
//!
//! Moments use a two-pass mean and sum of squared deviations within a chunk and Chan et al.'s
//! pairwise update across chunks, so variance stays accurate for data far from zero; sums are
//! compensated (Neumaier). Missing values (BLANK, NaN) are counted and skipped.

use serde::{Deserialize, Serialize};

/// What to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    /// Population variance (numpy's `var`, ddof = 0).
    Var,
    /// Population standard deviation (numpy's `std`, ddof = 0).
    Std,
    Histogram,
    /// Count, sum, mean, min, max, var and std at once.
    Stats,
    /// The median (numpy's `median`: the 0.5 quantile, linear interpolation).
    Median,
    /// Quantiles `q` in [0, 1] (numpy's default, linear interpolation between order
    /// statistics); exact, or approximate with a stated error bound.
    Quantiles,
    /// A section of an image, as an array.
    Cutout,
    /// The image downsampled by integer factors (NaN-aware block means), as an array.
    Bin,
}

impl Op {
    /// Whether the answer is an array (sent as FITS or NPY) rather than numbers.
    pub fn answers_array(self) -> bool {
        matches!(self, Op::Cutout | Op::Bin)
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Count => "count",
            Op::Sum => "sum",
            Op::Mean => "mean",
            Op::Min => "min",
            Op::Max => "max",
            Op::Var => "var",
            Op::Std => "std",
            Op::Histogram => "histogram",
            Op::Stats => "stats",
            Op::Median => "median",
            Op::Quantiles => "quantiles",
            Op::Cutout => "cutout",
            Op::Bin => "bin",
        }
    }
}

/// Adds `x` to the sum `s`, keeping what the addition loses in `c` (Neumaier's compensated
/// summation: the total is `s + c`).
#[inline]
fn neumaier(s: &mut f64, c: &mut f64, x: f64) {
    let t = *s + x;
    if s.abs() >= x.abs() {
        *c += (*s - t) + x;
    } else {
        *c += (x - t) + *s;
    }
    *s = t;
}

/// Count, extremes and moments of the values seen, mergeable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub missing: u64,
    pub sum: f64,
    compensation: f64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            count: 0,
            missing: 0,
            sum: 0.0,
            compensation: 0.0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// The moments of `xs` (NaN = missing): sums of blocks of 256 in plain float64, which the
    /// compiler vectorises, combined with compensation (Neumaier) — accurate to well below
    /// 1e-13 relative for any length — then a second pass for the squared deviations.
    pub fn of(xs: &[f64]) -> Self {
        let mut m = Moments::default();
        let (mut s, mut c) = (0.0f64, 0.0f64);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut count = 0u64;
        for block in xs.chunks(256) {
            let mut b = 0.0f64;
            let mut n = 0u64;
            for &x in block {
                let ok = !x.is_nan();
                b += if ok { x } else { 0.0 };
                n += u64::from(ok);
                // f64::min/max return the other operand when one is NaN.
                lo = lo.min(x);
                hi = hi.max(x);
            }
            count += n;
            neumaier(&mut s, &mut c, b);
        }
        m.count = count;
        m.missing = xs.len() as u64 - count;
        m.sum = s;
        m.compensation = c;
        m.min = lo;
        m.max = hi;
        if count == 0 {
            m.min = f64::INFINITY;
            m.max = f64::NEG_INFINITY;
            return m;
        }
        let mean = (s + c) / count as f64;
        let (mut m2, mut c2) = (0.0f64, 0.0f64);
        for &x in xs {
            let d = if x.is_nan() { 0.0 } else { x - mean };
            m2 += d * d;
            c2 += d;
        }
        // The corrected two-pass formula (Chan, Golub & LeVeque): removes the error of `mean`.
        m.mean = mean;
        m.m2 = m2 - c2 * c2 / count as f64;
        m
    }

    /// The moments of a chunk from per-block partials (the GPU engine's first pass): counts,
    /// plain sums (combined here with compensation), minima and maxima. `values` is the
    /// chunk's number of elements (missing ones included).
    pub fn from_blocks(
        values: u64,
        counts: &[u64],
        sums: &[f64],
        mins: &[f64],
        maxs: &[f64],
    ) -> Self {
        let mut m = Moments::default();
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for (((&n, &b), &lo), &hi) in counts.iter().zip(sums).zip(mins).zip(maxs) {
            if n == 0 {
                continue;
            }
            m.count += n;
            neumaier(&mut s, &mut c, b);
            m.min = m.min.min(lo);
            m.max = m.max.max(hi);
        }
        m.sum = s;
        m.compensation = c;
        m.missing = values - m.count;
        if m.count > 0 {
            m.mean = (s + c) / m.count as f64;
        }
        m
    }

    /// Sets the squared deviations from `mean` (second pass): Σ(x − mean)² and Σ(x − mean).
    pub fn set_deviations(&mut self, m2: f64, c2: f64) {
        if self.count > 0 {
            self.m2 = m2 - c2 * c2 / self.count as f64;
        }
    }

    /// Combines two disjoint parts.
    pub fn merge(&mut self, o: &Moments) {
        self.missing += o.missing;
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            let missing = self.missing;
            *self = *o;
            self.missing = missing;
            return;
        }
        let n = (self.count + o.count) as f64;
        let delta = o.mean - self.mean;
        self.m2 += o.m2 + delta * delta * self.count as f64 * o.count as f64 / n;
        self.mean += delta * o.count as f64 / n;
        // Compensated addition of the other's sum.
        for x in [o.sum, o.compensation] {
            neumaier(&mut self.sum, &mut self.compensation, x);
        }
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn total(&self) -> f64 {
        self.sum + self.compensation
    }

    pub fn var(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).max(0.0))
    }
}

/// Equal-width bins over `[lo, hi]`, as numpy's `histogram(bins=n, range=(lo, hi))`: the last
/// bin includes `hi`; values outside the range are not counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(bins: usize, lo: f64, hi: f64) -> Self {
        // numpy widens an empty range by 0.5 on each side.
        let (lo, hi) = if lo == hi {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        Self {
            lo,
            hi,
            counts: vec![0; bins],
        }
    }

    pub fn edges(&self) -> Vec<f64> {
        let n = self.counts.len();
        let step = (self.hi - self.lo) / n as f64;
        let mut e: Vec<f64> = (0..=n).map(|i| self.lo + step * i as f64).collect();
        if let Some(last) = e.last_mut() {
            *last = self.hi;
        }
        e
    }

    /// Counts the values of `xs` (NaN and values outside the range are not counted).
    pub fn fill(&mut self, xs: &[f64]) {
        let n = self.counts.len();
        let (lo, hi) = (self.lo, self.hi);
        let edges = self.edges();
        let norm = n as f64 / (hi - lo);
        let counts = &mut self.counts;
        for &x in xs {
            if !(x >= lo && x <= hi) {
                continue;
            }
            let mut i = (((x - lo) * norm) as usize).min(n - 1);
            // Floating-point rounding can put a value one bin off its edges: correct it the
            // way numpy does.
            if i > 0 && x < edges[i] {
                i -= 1;
            } else if i + 1 < n && x >= edges[i + 1] {
                i += 1;
            }
            counts[i] += 1;
        }
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn moments(xs: &[f64]) -> Moments {
        Moments::of(xs)
    }

    #[test]
    fn merged_chunks_equal_one_pass() {
        let xs: Vec<f64> = (0..10_000)
            .map(|i| 1e9 + ((i * 7919) % 1000) as f64 * 0.001)
            .collect();
        let whole = moments(&xs);
        let mut parts = Moments::default();
        for c in xs.chunks(333) {
            parts.merge(&moments(c));
        }
        assert_eq!(whole.count, parts.count);
        assert!((whole.mean - parts.mean).abs() < 1e-6);
        let (v1, v2) = (whole.var().unwrap(), parts.var().unwrap());
        // The inputs themselves are only good to 1.2e-7 (one ulp at 1e9).
        assert!((v1 - v2).abs() / v1 < 1e-7, "{v1} {v2}");
        // The variance of 0.000..0.999 in steps of 0.001, shifted by 1e9: catastrophic
        // cancellation would show here.
        let expected = (1000.0f64 * 1000.0 - 1.0) / 12.0 * 1e-6;
        assert!(
            (v1 - expected).abs() / expected < 1e-6,
            "{v1} vs {expected}"
        );
        assert_eq!(whole.min, 1e9);
    }

    #[test]
    fn missing_values_are_counted_not_used() {
        let m = moments(&[1.0, f64::NAN, 3.0]);
        assert_eq!((m.count, m.missing, m.total(), m.mean), (2, 1, 4.0, 2.0));
        let empty = moments(&[f64::NAN]);
        assert_eq!(empty.var(), None);
        let mut a = moments(&[]);
        a.merge(&moments(&[5.0]));
        assert_eq!((a.count, a.min, a.max), (1, 5.0, 5.0));
    }

    #[test]
    fn histogram_matches_numpy_edges() {
        let mut h = Histogram::new(4, 0.0, 1.0);
        let xs = [0.0, 0.25, 0.5, 0.74, 1.0, 1.5, -0.1, f64::NAN];
        h.fill(&xs);
        // numpy.histogram([...], bins=4, range=(0, 1)) -> [1, 1, 2, 1]
        assert_eq!(h.counts, vec![1, 1, 2, 1]);
        assert_eq!(h.edges(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let mut single = Histogram::new(3, 2.0, 2.0);
        single.fill(&[2.0]);
        // numpy.histogram([2.0], bins=3) -> [0, 1, 0] over [1.5, 2.5]
        assert_eq!(single.counts, vec![0, 1, 0]);
    }

    #[test]
    fn ops_parse_by_name() {
        assert_eq!(Op::parse("STD"), Some(Op::Std));
        assert_eq!(Op::parse("histogram"), Some(Op::Histogram));
        assert_eq!(Op::parse("median"), Some(Op::Median));
        assert_eq!(Op::parse("mode"), None);
    }
}

/// One level of the search for an order statistic: values whose bin over `[lo, hi]` is `bin`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub lo: f64,
    pub hi: f64,
    pub bins: usize,
    pub bin: usize,
}

impl Level {
    /// The bin of `x` over `[lo, hi]` (the last bin closed), None outside.
    #[inline]
    pub fn bin_of(lo: f64, hi: f64, bins: usize, x: f64) -> Option<usize> {
        if !(x >= lo && x <= hi) {
            return None;
        }
        if hi <= lo {
            return Some(0);
        }
        Some((((x - lo) / (hi - lo) * bins as f64) as usize).min(bins - 1))
    }
}

/// Where the values of a chunk fall relative to nested levels: how many are below the
/// current interval, and the counts of its bins (or the values themselves, at the end).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refinement {
    pub below: u64,
    pub counts: Vec<u64>,
    pub values: Vec<f64>,
}

impl Refinement {
    /// Counts `xs` against `levels` (each narrowing the last) and, within the innermost
    /// interval, by `bins` equal bins over `[lo, hi]` — or, when `collect`, keeps the values.
    pub fn of(xs: &[f64], levels: &[Level], lo: f64, hi: f64, bins: usize, collect: bool) -> Self {
        let mut r = Refinement {
            below: 0,
            counts: vec![0; if collect { 0 } else { bins }],
            values: Vec::new(),
        };
        'values: for &x in xs {
            if x.is_nan() {
                continue;
            }
            for l in levels {
                match Level::bin_of(l.lo, l.hi, l.bins, x) {
                    Some(b) if b == l.bin => {}
                    Some(b) if b < l.bin => {
                        r.below += 1;
                        continue 'values;
                    }
                    // Below the first level's range cannot happen (it spans min..max).
                    None if x < l.lo => {
                        r.below += 1;
                        continue 'values;
                    }
                    _ => continue 'values,
                }
            }
            if collect {
                r.values.push(x);
            } else if let Some(b) = Level::bin_of(lo, hi, bins, x) {
                r.counts[b] += 1;
            }
        }
        r
    }

    pub fn merge(&mut self, o: Refinement) {
        self.below += o.below;
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.values.extend(o.values);
    }
}

/// numpy's linear quantile from two neighbouring order statistics, computed as numpy does
/// (from the upper neighbour when past half way) so the results agree to the bit.
pub fn interpolate(q: f64, n: u64, lower: f64, upper: f64) -> f64 {
    let h = (n - 1) as f64 * q;
    let t = h - h.floor();
    let d = upper - lower;
    if t >= 0.5 {
        upper - d * (1.0 - t)
    } else {
        lower + d * t
    }
}

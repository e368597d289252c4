//! Quantiles: exact, by narrowing histogram passes, or approximate with a stated bound.

use std::sync::Arc;

use crate::runner::{Values, partials};
use crate::{ComputeError, Hdu, Moments, Source, reduce};

/// Bins per pass of the quantile search (a 32 KiB histogram per chunk).
pub(crate) const QUANTILE_BINS: usize = 4096;
/// Values collected in the last pass of an exact quantile (32 MiB as float64).
pub(crate) const QUANTILE_COLLECT: u64 = 4 * 1024 * 1024;

/// Quantiles with their error bounds (0 when exact). Exact: for each order statistic needed,
/// histogram passes narrow the interval holding it (each pass reading the data again, through
/// the cache) until few enough values remain to collect and sort. Approximate: one pass of
/// `QUANTILE_BINS` bins; the value is interpolated within its bin, off by at most a bin width.
pub(crate) async fn quantiles_of(
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

//! The quick-look's display limits against astropy.visualization: zscale
//! (`ZScaleInterval()`) and the percentile stretch (`AsymmetricPercentileInterval(0.5,
//! 99.5)`) on images as telescopes give them — sky noise with stars, a gradient, hot pixels,
//! missing values, more values than zscale samples, a constant image — computed by
//! `compute/tests/quicklook_astropy.py`. Both sides work in float64: the limits agree to 1e-9
//! relative.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block

mod common;

use archway_compute::quicklook::Stretch;
use serde_json::{Map, Value, json};

/// A deterministic generator (xorshift), so both sides see the same values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (the sum of 12 uniforms, less 6).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.next()).sum::<f64>() - 6.0
    }
}

fn sky(n: usize, seed: u64, f: impl Fn(usize, &mut Rng) -> f64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n).map(|i| f(i, &mut rng)).collect()
}

fn cases() -> Vec<(&'static str, Vec<f64>)> {
    vec![
        (
            "noise-with-stars",
            sky(256 * 256, 7, |i, r| {
                let star = if i % 997 == 0 { 5000.0 * r.next() } else { 0.0 };
                100.0 + 5.0 * r.normal() + star
            }),
        ),
        (
            "gradient-and-hot-pixels",
            sky(300 * 200, 11, |i, r| {
                let hot = if i % 401 == 3 { 65535.0 } else { 0.0 };
                (i % 300) as f64 * 0.5 + 20.0 * r.normal() + hot
            }),
        ),
        (
            "missing-values",
            sky(120 * 80, 13, |i, r| {
                if i % 7 == 0 {
                    f64::NAN
                } else {
                    -3.0e-3 + 1.0e-4 * r.normal()
                }
            }),
        ),
        ("few-values", vec![1.0, 5.0, 2.0, 8.0, 3.0, f64::NAN]),
        ("constant", vec![42.0; 5000]),
        (
            "more-than-a-thousand-samples-uneven",
            sky(1234 * 7, 17, |_, r| (r.normal() * 3.0).exp()),
        ),
    ]
}

#[test]
fn display_limits_agree_with_astropy() {
    let cases = cases();
    let input: Map<String, Value> = cases
        .iter()
        .map(|(name, v)| {
            let values: Vec<Value> = v
                .iter()
                .map(|x| if x.is_finite() { json!(x) } else { Value::Null })
                .collect();
            (name.to_string(), Value::Array(values))
        })
        .collect();
    let expected = common::astropy("quicklook_astropy.py", &Value::Object(input));
    for (name, values) in &cases {
        for stretch in [Stretch::Zscale, Stretch::Percentile] {
            let (lo, hi) = stretch.limits(values).unwrap();
            let want = &expected[*name][stretch.as_str()];
            let (wlo, whi) = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300);
            assert!(
                close(lo, wlo) && close(hi, whi),
                "{name} {}: Archway ({lo}, {hi}), astropy ({wlo}, {whi})",
                stretch.as_str()
            );
        }
    }
}

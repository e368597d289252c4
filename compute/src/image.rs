//! Image data: big-endian values of BITPIX 8, 16, 32, 64, -32, -64, scaled by BSCALE/BZERO
//! (which covers the unsigned-integer convention: BZERO = 2^15, 2^31, 2^63), with BLANK
//! (integers) and NaN (floats) treated as missing.

use crate::ComputeError;
use crate::hdu::Hdu;

/// How to turn an image's bytes into physical values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub bitpix: i64,
    pub bscale: f64,
    pub bzero: f64,
    /// Raw integer value meaning "no data".
    pub blank: Option<i64>,
}

impl Layout {
    pub fn of(hdu: &Hdu) -> Result<Self, ComputeError> {
        let h = &hdu.header;
        let bitpix = h.required_int("BITPIX", hdu.index)?;
        let blank = h.int("BLANK");
        if blank.is_some() && bitpix < 0 {
            tracing::debug!(hdu = hdu.index, "BLANK ignored for floating-point data");
        }
        Ok(Self {
            bitpix,
            bscale: h.real("BSCALE").unwrap_or(1.0),
            bzero: h.real("BZERO").unwrap_or(0.0),
            blank: if bitpix > 0 { blank } else { None },
        })
    }

    /// Bytes per element.
    pub fn width(&self) -> usize {
        (self.bitpix.unsigned_abs() / 8) as usize
    }

    /// Calls `f` with every element of `raw` (whole elements only) as a physical value, or NaN
    /// when missing.
    #[inline]
    pub fn for_each(&self, raw: &[u8], mut f: impl FnMut(f64)) {
        let (scale, zero) = (self.bscale, self.bzero);
        let identity = scale == 1.0 && zero == 0.0;
        macro_rules! ints {
            ($t:ty, $n:expr) => {{
                let blank = self.blank;
                for c in raw.chunks_exact($n) {
                    let v = <$t>::from_be_bytes(c.try_into().unwrap_or([0; $n]));
                    if blank == Some(v as i64) {
                        f(f64::NAN);
                    } else if identity {
                        f(v as f64);
                    } else {
                        f(zero + scale * v as f64);
                    }
                }
            }};
        }
        match self.bitpix {
            8 => ints!(u8, 1),
            16 => ints!(i16, 2),
            32 => ints!(i32, 4),
            64 => ints!(i64, 8),
            -32 => {
                for c in raw.chunks_exact(4) {
                    let v = f32::from_be_bytes(c.try_into().unwrap_or([0; 4])) as f64;
                    f(if identity { v } else { zero + scale * v });
                }
            }
            -64 => {
                for c in raw.chunks_exact(8) {
                    let v = f64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
                    f(if identity { v } else { zero + scale * v });
                }
            }
            // Checked when the HDU was located.
            _ => {}
        }
    }
}

//! HCOMPRESS_1 decoding (R. White's H-transform coder, as cfitsio's `fits_hdecompress.c`):
//! a 2-D tile's integers, H-transformed, digitized by a scale factor, written as quadtree-coded
//! bit planes of each quadrant's coefficients followed by their signs. Decoding reads the bit
//! planes back, multiplies by the scale and inverts the transform (optionally smoothing, for
//! lossy tiles compressed with `SMOOTH`).
//!
//! The arithmetic is in `i64` for every pixel width (cfitsio has an `int` and a `long long`
//! copy of each routine; they agree on every stream that does not overflow `int`). Every
//! read is bounds-checked: a short or corrupt stream is an error, never a read past the end.

/// The stream's first two bytes.
const MAGIC: [u8; 2] = [0xDD, 0x99];

/// Bits read most significant first, as cfitsio's `input_bit`/`input_nbits`.
struct Bits<'a> {
    data: &'a [u8],
    next: usize,
    buffer: u32,
    bits: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next: 0,
            buffer: 0,
            bits: 0,
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .data
            .get(self.next)
            .ok_or_else(|| format!("the stream ends after {} bytes", self.data.len()))?;
        self.next += 1;
        Ok(b)
    }

    fn int(&mut self, bytes: usize) -> Result<i64, String> {
        let mut v = 0i64;
        for _ in 0..bytes {
            v = (v << 8) | i64::from(self.byte()?);
        }
        Ok(v)
    }

    /// Drops the bits left in the current byte (`start_inputing_bits`).
    fn align(&mut self) {
        self.bits = 0;
    }

    fn nbits(&mut self, n: u32) -> Result<u32, String> {
        if self.bits < n {
            self.buffer = (self.buffer << 8) | u32::from(self.byte()?);
            self.bits += 8;
        }
        self.bits -= n;
        Ok((self.buffer >> self.bits) & ((1 << n) - 1))
    }

    fn bit(&mut self) -> Result<u32, String> {
        self.nbits(1)
    }

    fn nybble(&mut self) -> Result<u8, String> {
        Ok(self.nbits(4)? as u8)
    }

    /// One quadtree code (cfitsio's `input_huffman`).
    fn huffman(&mut self) -> Result<u8, String> {
        let mut c = self.nbits(3)?;
        if c < 4 {
            return Ok(1 << c);
        }
        c = self.bit()? | (c << 1);
        match c {
            8 => return Ok(3),
            9 => return Ok(5),
            10 => return Ok(10),
            11 => return Ok(12),
            12 => return Ok(15),
            _ => {}
        }
        c = self.bit()? | (c << 1);
        match c {
            26 => return Ok(6),
            27 => return Ok(7),
            28 => return Ok(9),
            29 => return Ok(11),
            30 => return Ok(13),
            _ => {}
        }
        c = self.bit()? | (c << 1);
        Ok(if c == 62 { 0 } else { 14 })
    }
}

/// log2 of `n` rounded up (`n` ≥ 1).
fn log2_up(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

/// Decodes a tile: its `(nx, ny)` (ny varies fastest: FITS axis 1) and pixels. `max_pixels`
/// bounds what the stream's own dimensions may ask for.
pub fn decode(
    data: &[u8],
    smooth: bool,
    max_pixels: u64,
) -> Result<(usize, usize, Vec<i64>), String> {
    let mut input = Bits::new(data);
    if data.get(..2) != Some(&MAGIC[..]) {
        return Err("HCOMPRESS_1 stream without its magic number".into());
    }
    input.next = 2;
    let nx = input.int(4)? as i32;
    let ny = input.int(4)? as i32;
    let scale = input.int(4)? as i32;
    // cfitsio writes tiles of at least 4 x 4; below 2 x 2 a quadrant would be empty.
    if nx < 2 || ny < 2 || (nx as u64) * (ny as u64) > max_pixels {
        return Err(format!(
            "HCOMPRESS_1 tile of {nx} x {ny} pixels (at least 2 x 2, at most {max_pixels} \
             pixels)"
        ));
    }
    let (nx, ny) = (nx as usize, ny as usize);
    let sumall = input.int(8)?;
    let planes = [input.byte()?, input.byte()?, input.byte()?];
    let mut a = vec![0i64; nx * ny];
    dodecode(&mut input, &mut a, nx, ny, planes)?;
    a[0] = sumall;
    if scale > 1 {
        for v in &mut a {
            *v = v.wrapping_mul(i64::from(scale));
        }
    }
    hinv(&mut a, nx, ny, smooth, i64::from(scale))?;
    Ok((nx, ny, a))
}

fn dodecode(
    input: &mut Bits,
    a: &mut [i64],
    nx: usize,
    ny: usize,
    planes: [u8; 3],
) -> Result<(), String> {
    let (nx2, ny2) = (nx.div_ceil(2), ny.div_ceil(2));
    input.align();
    // The four quadrants: (offset, rows, columns, bit planes).
    for (offset, qx, qy, planes) in [
        (0, nx2, ny2, planes[0]),
        (ny2, nx2, ny / 2, planes[1]),
        (ny * nx2, nx / 2, ny2, planes[1]),
        (ny * nx2 + ny2, nx / 2, ny / 2, planes[2]),
    ] {
        qtree_decode(input, &mut a[offset..], ny, qx, qy, planes)?;
    }
    if input.nybble()? != 0 {
        return Err("HCOMPRESS_1: bad bit plane values (no end code)".into());
    }
    input.align();
    for v in a.iter_mut() {
        if *v != 0 && input.bit()? == 1 {
            *v = -*v;
        }
    }
    Ok(())
}

/// Decodes `planes` bit planes of an `nqx` × `nqy` quadrant whose rows are `n` apart in `a`.
fn qtree_decode(
    input: &mut Bits,
    a: &mut [i64],
    n: usize,
    nqx: usize,
    nqy: usize,
    planes: u8,
) -> Result<(), String> {
    if planes > 62 {
        return Err(format!("HCOMPRESS_1: {planes} bit planes"));
    }
    let log2n = log2_up(nqx.max(nqy));
    let mut scratch = vec![0u8; nqx.div_ceil(2) * nqy.div_ceil(2)];
    let mut expanded = scratch.clone();
    for bit in (0..u32::from(planes)).rev() {
        match input.nybble()? {
            0 => {
                // The bit plane written directly, four pixels a nybble.
                for s in scratch.iter_mut() {
                    *s = input.nybble()?;
                }
                bitins(&scratch, nqx, nqy, a, n, bit);
            }
            0xf => {
                scratch[0] = input.huffman()?;
                for k in 1..log2n {
                    // cfitsio's sizes n[k-1] = (n[k] + 1) / 2 with n[log2n] = nqx or nqy,
                    // that is n[k] = ceil(n / 2^(log2n - k)).
                    let (nx, ny) = (
                        nqx.div_ceil(1 << (log2n - k)),
                        nqy.div_ceil(1 << (log2n - k)),
                    );
                    expand(input, &scratch, &mut expanded, nx, ny)?;
                    std::mem::swap(&mut scratch, &mut expanded);
                }
                bitins(&scratch, nqx, nqy, a, n, bit);
            }
            c => return Err(format!("HCOMPRESS_1: bad quadtree format code {c}")),
        }
    }
    Ok(())
}

/// Expands the `(nx+1)/2` × `(ny+1)/2` codes in `codes` to `nx` × `ny` one-bit values in
/// `out` (`qtree_copy`: a code's bits 3, 2, 1, 0 are the pixels (0,0), (0,1), (1,0), (1,1) of
/// its 2 × 2 block), then reads a new code for each non-zero one, last first (`qtree_expand`).
fn expand(
    input: &mut Bits,
    codes: &[u8],
    out: &mut [u8],
    nx: usize,
    ny: usize,
) -> Result<(), String> {
    let out = &mut out[..nx * ny];
    out.fill(0);
    for_each_bit(codes, nx, ny, ny, |at| out[at] = 1);
    for v in out.iter_mut().rev() {
        if *v != 0 {
            *v = input.huffman()?;
        }
    }
    Ok(())
}

/// Sets bit `bit` of the `nx` × `ny` pixels of `b` (rows `n` apart) from the 2 × 2 codes in `a`.
fn bitins(a: &[u8], nx: usize, ny: usize, b: &mut [i64], n: usize, bit: u32) {
    let plane = 1i64 << bit;
    for_each_bit(a, nx, ny, n, |at| b[at] |= plane);
}

/// Calls `set` with the index (rows `n` apart) of every pixel of an `nx` × `ny` array whose bit
/// is set in the 2 × 2 block codes `codes` (`(ny+1)/2` per row); blocks cut by an odd edge
/// have only their pixels inside. Blocks with code 0, most of them, cost one test.
#[inline]
fn for_each_bit(codes: &[u8], nx: usize, ny: usize, n: usize, mut set: impl FnMut(usize)) {
    let ny2 = ny.div_ceil(2);
    for (bi, row) in codes.chunks(ny2.max(1)).take(nx.div_ceil(2)).enumerate() {
        let i = 2 * bi;
        let second_row = i + 1 < nx;
        for (bj, &code) in row.iter().enumerate() {
            if code == 0 {
                continue;
            }
            let j = 2 * bj;
            let second_col = j + 1 < ny;
            let at = i * n + j;
            if code & 8 != 0 {
                set(at);
            }
            if code & 4 != 0 && second_col {
                set(at + 1);
            }
            if code & 2 != 0 && second_row {
                set(at + n);
            }
            if code & 1 != 0 && second_row && second_col {
                set(at + n + 1);
            }
        }
    }
}

/// Interleaves the first and second halves of the `n` elements `a[0]`, `a[n2]`, … so the
/// first half lands on the even places and the second on the odd ones.
fn unshuffle(a: &mut [i64], start: usize, n: usize, n2: usize, tmp: &mut Vec<i64>) {
    let half = n.div_ceil(2);
    tmp.clear();
    tmp.extend((half..n).map(|i| a[start + i * n2]));
    for i in (0..half).rev() {
        a[start + 2 * i * n2] = a[start + i * n2];
    }
    for (k, i) in (1..n).step_by(2).enumerate() {
        a[start + i * n2] = tmp[k];
    }
}

/// `v` moved toward zero by `by` (a bit cfitsio moves between coefficients); arithmetic
/// wraps, as cfitsio's does, so a corrupt stream gives wrong pixels, never a panic.
#[inline]
fn toward_zero(v: i64, by: i64) -> i64 {
    if v >= 0 {
        v.wrapping_sub(by)
    } else {
        v.wrapping_add(by)
    }
}

/// The inverse H-transform, in place (`hinv`). Arithmetic wraps (see [`toward_zero`]).
fn hinv(a: &mut [i64], nx: usize, ny: usize, smooth: bool, scale: i64) -> Result<(), String> {
    let nmax = nx.max(ny);
    if nmax < 2 {
        return Ok(());
    }
    let log2n = log2_up(nmax);
    let mut shift = 1;
    let mut bit0: i64 = 1 << (log2n - 1);
    let mut bit1 = bit0 << 1;
    let bit2 = bit0 << 2;
    let mut mask0 = -bit0;
    let mut mask1 = mask0 << 1;
    let mask2 = mask0 << 2;
    let mut prnd0 = bit0 >> 1;
    let mut prnd1 = bit1 >> 1;
    let prnd2 = bit2 >> 1;
    let mut nrnd0 = prnd0 - 1;
    let mut nrnd1 = prnd1 - 1;
    let nrnd2 = prnd2 - 1;
    let round =
        |v: i64, p: i64, n: i64, mask: i64| (v.wrapping_add(if v >= 0 { p } else { n })) & mask;
    a[0] = round(a[0], prnd2, nrnd2, mask2);
    let mut tmp = Vec::with_capacity(nmax.div_ceil(2));
    for k in (0..log2n).rev() {
        // The block being inverted: cfitsio's sizes ntop[k-1] = (ntop[k] + 1) / 2, with
        // ntop[log2n] = the full size, that is ceil(n / 2^k).
        let (nxtop, nytop) = (nx.div_ceil(1 << k), ny.div_ceil(1 << k));
        if k == 0 {
            nrnd0 = 0;
            shift = 2;
        }
        for i in 0..nxtop {
            unshuffle(a, ny * i, nytop, 1, &mut tmp);
        }
        for j in 0..nytop {
            unshuffle(a, j, nxtop, ny, &mut tmp);
        }
        if smooth {
            hsmooth(a, nxtop, nytop, ny, scale);
        }
        let (oddx, oddy) = (nxtop % 2, nytop % 2);
        let mut i = 0;
        while i + oddx < nxtop {
            let mut s00 = ny * i;
            let mut s10 = s00 + ny;
            let mut j = 0;
            while j + oddy < nytop {
                let mut h0 = a[s00];
                let hx = round(a[s10], prnd1, nrnd1, mask1);
                let hy = round(a[s00 + 1], prnd1, nrnd1, mask1);
                let hc = round(a[s10 + 1], prnd0, nrnd0, mask0);
                // Bit 0 of hc into hx and hy; bits 0 and 1 of hc, hx, hy into h0.
                let lowbit0 = hc & bit0;
                let hx = toward_zero(hx, lowbit0);
                let hy = toward_zero(hy, lowbit0);
                let lowbit1 = (hc ^ hx ^ hy) & bit1;
                h0 = if h0 >= 0 || lowbit0 != 0 {
                    h0.wrapping_add(lowbit0).wrapping_sub(lowbit1)
                } else {
                    h0.wrapping_add(lowbit1)
                };
                a[s10 + 1] = h0.wrapping_add(hx).wrapping_add(hy).wrapping_add(hc) >> shift;
                a[s10] = h0.wrapping_add(hx).wrapping_sub(hy).wrapping_sub(hc) >> shift;
                a[s00 + 1] = h0.wrapping_sub(hx).wrapping_add(hy).wrapping_sub(hc) >> shift;
                a[s00] = h0.wrapping_sub(hx).wrapping_sub(hy).wrapping_add(hc) >> shift;
                s00 += 2;
                s10 += 2;
                j += 2;
            }
            if oddy == 1 {
                // The last element of an odd row.
                let h0 = a[s00];
                let hx = round(a[s10], prnd1, nrnd1, mask1);
                let h0 = toward_zero(h0, hx & bit1);
                a[s10] = h0.wrapping_add(hx) >> shift;
                a[s00] = h0.wrapping_sub(hx) >> shift;
            }
            i += 2;
        }
        if oddx == 1 {
            // The last row of an odd column.
            let mut s00 = ny * i;
            let mut j = 0;
            while j + oddy < nytop {
                let h0 = a[s00];
                let hy = round(a[s00 + 1], prnd1, nrnd1, mask1);
                let h0 = toward_zero(h0, hy & bit1);
                a[s00 + 1] = h0.wrapping_add(hy) >> shift;
                a[s00] = h0.wrapping_sub(hy) >> shift;
                s00 += 2;
                j += 2;
            }
            if oddy == 1 {
                a[s00] >>= shift;
            }
        }
        bit1 = bit0;
        bit0 >>= 1;
        mask1 = mask0;
        mask0 >>= 1;
        prnd1 = prnd0;
        prnd0 >>= 1;
        nrnd1 = nrnd0;
        nrnd0 = prnd0 - 1;
    }
    Ok(())
}

/// Smooths the coefficients of the `nxtop` × `nytop` block (rows `ny` apart) within what the
/// digitization by `scale` allows (`hsmooth`): the slopes and curvature are nudged toward the
/// neighbouring zones' means, each by at most scale / 2. Arithmetic wraps, as in [`hinv`].
fn hsmooth(a: &mut [i64], nxtop: usize, nytop: usize, ny: usize, scale: i64) {
    let smax = scale >> 1;
    if smax <= 0 {
        return;
    }
    let ny2 = ny << 1;
    let d = |x: i64, y: i64| x.wrapping_sub(y);
    let s = |x: i64, y: i64| x.wrapping_add(y);
    // The change of a coefficient `coef` (times 2^shift) toward `diff`, within the
    // monotonicity limits and ±smax.
    let change = |diff: i64, dmax: i64, dmin: i64, coef: i64, shift: u32| {
        let diff = diff.min(dmax).max(dmin);
        let t = d(diff, coef << shift);
        let t = if t >= 0 {
            t >> shift
        } else {
            s(t, (1 << shift) - 1) >> shift
        };
        t.min(smax).max(-smax)
    };
    // The x slopes, then the y slopes: each toward the slope that would match the mean
    // values of the zones on either side.
    let mut i = 2;
    while i + 2 < nxtop {
        let (mut s00, mut s10) = (ny * i, ny * i + ny);
        let mut j = 0;
        while j < nytop {
            let (hm, h0, hp) = (a[s00 - ny2], a[s00], a[s00 + ny2]);
            let dmax = d(hp, h0).min(d(h0, hm)).max(0) << 2;
            let dmin = d(hp, h0).max(d(h0, hm)).min(0) << 2;
            if dmin < dmax {
                a[s10] = s(a[s10], change(d(hp, hm), dmax, dmin, a[s10], 3));
            }
            s00 += 2;
            s10 += 2;
            j += 2;
        }
        i += 2;
    }
    let mut i = 0;
    while i < nxtop {
        let mut s00 = ny * i + 2;
        let mut j = 2;
        while j + 2 < nytop {
            let (hm, h0, hp) = (a[s00 - 2], a[s00], a[s00 + 2]);
            let dmax = d(hp, h0).min(d(h0, hm)).max(0) << 2;
            let dmin = d(hp, h0).max(d(h0, hm)).min(0) << 2;
            if dmin < dmax {
                a[s00 + 1] = s(a[s00 + 1], change(d(hp, hm), dmax, dmin, a[s00 + 1], 3));
            }
            s00 += 2;
            j += 2;
        }
        i += 2;
    }
    // The curvature, from the four diagonal neighbours.
    let mut i = 2;
    while i + 2 < nxtop {
        let mut s00 = ny * i + 2;
        let mut s10 = s00 + ny;
        let mut j = 2;
        while j + 2 < nytop {
            let hmm = a[s00 - ny2 - 2];
            let hpm = a[s00 + ny2 - 2];
            let hmp = a[s00 - ny2 + 2];
            let hpp = a[s00 + ny2 + 2];
            let h0 = a[s00];
            let diff = d(s(hpp, hmm), s(hmp, hpm));
            let hx2 = a[s10] << 1;
            let hy2 = a[s00 + 1] << 1;
            let m1 = d(d(d(hpp, h0).max(0), hx2), hy2).min(d(s(d(h0, hpm).max(0), hx2), hy2));
            let m2 = s(d(d(h0, hmp).max(0), hx2), hy2).min(s(s(d(hmm, h0).max(0), hx2), hy2));
            let dmax = m1.min(m2) << 4;
            let m1 = d(d(d(hpp, h0).min(0), hx2), hy2).max(d(s(d(h0, hpm).min(0), hx2), hy2));
            let m2 = s(d(d(h0, hmp).min(0), hx2), hy2).max(s(s(d(hmm, h0).min(0), hx2), hy2));
            let dmin = m1.max(m2) << 4;
            if dmin < dmax {
                a[s10 + 1] = s(a[s10 + 1], change(diff, dmax, dmin, a[s10 + 1], 6));
            }
            s00 += 2;
            s10 += 2;
            j += 2;
        }
        i += 2;
    }
}

/// PLIO_1 decoding (IRAF's line lists, cfitsio's `pl_l2pi`): 16-bit words, each an opcode
/// (top 4 bits) and 12 bits of data, setting runs of zeros or of the current value and
/// changing the value. `npix` pixels come out; a list that ends early leaves zeros.
pub fn plio_decode(words: &[i16], npix: usize) -> Result<Vec<i64>, String> {
    let word = |i: usize| -> Result<i32, String> {
        words
            .get(i)
            .map(|&w| i32::from(w))
            .ok_or_else(|| format!("PLIO_1 line list ends at word {}", words.len()))
    };
    let mut out = Vec::with_capacity(npix);
    if npix == 0 {
        return Ok(out);
    }
    // The header: its length and where the list starts (old and new formats). A list of no
    // length is all zeros, as in cfitsio.
    let (len, first) = if word(2)? > 0 {
        (i64::from(word(2)?), 3)
    } else {
        (
            (i64::from(word(4)?) << 15) + i64::from(word(3)?),
            i64::from(word(1)?),
        )
    };
    if len <= 0 {
        return Ok(vec![0; npix]);
    }
    let Ok(first) = usize::try_from(first) else {
        return Err(format!("PLIO_1 line list starting at word {first}"));
    };
    let len = (len as usize).min(words.len());
    let xe = npix as i64;
    let (mut x1, mut pv) = (1i64, 1i64);
    let mut ip = first;
    while ip < len {
        let w = word(ip)?;
        let (opcode, data) = (w >> 12, i64::from(w & 4095));
        match opcode {
            // Zeros (0), the value (4), or zeros and then the value (5), for `data` pixels.
            0 | 4 | 5 => {
                let x2 = x1 + data - 1;
                let i1 = x1.max(1);
                let i2 = x2.min(xe);
                if i2 >= i1 {
                    let n = (i2 - i1 + 1) as usize;
                    let fill = if opcode == 4 { pv } else { 0 };
                    out.extend(std::iter::repeat_n(fill, n));
                    if opcode == 5
                        && i2 == x2
                        && let Some(last) = out.last_mut()
                    {
                        *last = pv;
                    }
                }
                x1 = x2 + 1;
            }
            // A new value from this word's data and the next word's.
            1 => {
                pv = (i64::from(word(ip + 1)?) << 12) + data;
                ip += 1;
            }
            2 => pv += data,
            3 => pv -= data,
            // Change the value and set one pixel to it.
            6 | 7 => {
                pv += if opcode == 6 { data } else { -data };
                if x1 >= 1 && x1 <= xe {
                    out.push(pv);
                }
                x1 += 1;
            }
            _ => {}
        }
        if x1 > xe {
            break;
        }
        ip += 1;
    }
    out.resize(npix, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log2_rounds_up() {
        assert_eq!(log2_up(1), 0);
        assert_eq!(log2_up(2), 1);
        assert_eq!(log2_up(3), 2);
        assert_eq!(log2_up(4), 2);
        assert_eq!(log2_up(5), 3);
        assert_eq!(log2_up(1024), 10);
    }

    #[test]
    fn unshuffle_interleaves_halves() {
        let mut a = vec![0, 1, 2, 10, 11];
        unshuffle(&mut a, 0, 5, 1, &mut Vec::new());
        assert_eq!(a, vec![0, 10, 1, 11, 2]);
    }

    #[test]
    fn bad_streams_are_errors() {
        assert!(decode(b"", false, 100).is_err());
        assert!(decode(&[0xDD, 0x99, 0, 0], false, 100).is_err());
        let mut header = vec![0xDD, 0x99];
        header.extend(1000i32.to_be_bytes());
        header.extend(1000i32.to_be_bytes());
        header.extend(0i32.to_be_bytes());
        assert!(
            decode(&header, false, 100)
                .unwrap_err()
                .contains("1000 x 1000")
        );
    }

    #[test]
    fn plio_runs() {
        // New-format header (7 words), then: value 3 (opcode 1 data 3, next word 0), 4 pixels
        // of it (opcode 4), 2 zeros (opcode 0), +2 and one pixel (opcode 6: value 5).
        let words = [0, 7, -100, 12, 0, 0, 0, 0x1003, 0, 0x4004, 0x0002, 0x6002];
        assert_eq!(
            plio_decode(&words, 8).unwrap(),
            vec![3, 3, 3, 3, 0, 0, 5, 0]
        );
        assert!(plio_decode(&[0, 7], 4).is_err());
        // Old-format header with a negative length: all zeros (as cfitsio); a negative start
        // is an error, never an index.
        assert_eq!(
            plio_decode(&[0, 7, -100, 5, -3, 0], 3).unwrap(),
            vec![0, 0, 0]
        );
        assert!(plio_decode(&[0, -7, -100, 5, 0, 0], 3).is_err());
    }
}

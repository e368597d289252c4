//! The demo volume's contents: a few small, real FITS files written by Archway itself, so the
//! embedded default has science data to list, read and (later) reduce without any download.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

const BLOCK: usize = 2880;

enum Value<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// One 80-character header card in FITS fixed format.
fn card(key: &str, value: Value<'_>, comment: &str) -> String {
    let value = match value {
        Value::Bool(b) => format!("{:>20}", if b { "T" } else { "F" }),
        Value::Int(i) => format!("{i:>20}"),
        Value::Float(f) => format!("{:>20}", format!("{f:.6}")),
        Value::Str(s) => format!("{:<20}", format!("'{:<8}'", s.replace('\'', "''"))),
    };
    let mut c = format!("{key:<8}= {value}");
    if !comment.is_empty() {
        c.push_str(" / ");
        c.push_str(comment);
    }
    c.truncate(80);
    format!("{c:<80}")
}

fn header(cards: &[String]) -> Vec<u8> {
    let mut h = cards.concat();
    h.push_str(&format!("{:<80}", "END"));
    let mut bytes = h.into_bytes();
    let padded = bytes.len().div_ceil(BLOCK) * BLOCK;
    bytes.resize(padded, b' ');
    bytes
}

fn pad_data(mut data: Vec<u8>) -> Vec<u8> {
    let padded = data.len().div_ceil(BLOCK) * BLOCK;
    data.resize(padded, 0);
    data
}

/// A deterministic pseudo-random sequence (xorshift), so the demo files are the same everywhere.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn common(cards: &mut Vec<String>, object: &str) {
    cards.push(card(
        "TELESCOP",
        Value::Str("ARCHWAY"),
        "demo data written by Archway",
    ));
    cards.push(card("INSTRUME", Value::Str("DEMOCAM"), ""));
    cards.push(card("OBJECT", Value::Str(object), ""));
    cards.push(card("DATE-OBS", Value::Str("2026-01-01T00:00:00"), ""));
}

/// A celestial WCS: a TAN projection centred on (`ra`, `dec`), `arcsec` per pixel, north up
/// and east left, for an image `w` × `h` pixels: what the science index reads.
fn sky(cards: &mut Vec<String>, (w, h): (usize, usize), (ra, dec): (f64, f64), arcsec: f64) {
    let step = arcsec / 3600.0;
    cards.extend([
        card("CTYPE1", Value::Str("RA---TAN"), ""),
        card("CTYPE2", Value::Str("DEC--TAN"), ""),
        card("CRPIX1", Value::Float((w as f64 + 1.0) / 2.0), ""),
        card("CRPIX2", Value::Float((h as f64 + 1.0) / 2.0), ""),
        card("CRVAL1", Value::Float(ra), "deg"),
        card("CRVAL2", Value::Float(dec), "deg"),
        card("CDELT1", Value::Float(-step), "deg per pixel"),
        card("CDELT2", Value::Float(step), "deg per pixel"),
        card("RADESYS", Value::Str("ICRS"), ""),
    ]);
}

/// A 128×128 32-bit float image: two Gaussian sources on a noisy sky.
fn float_image() -> Vec<u8> {
    let (w, h) = (128usize, 128usize);
    let mut cards = vec![
        card("SIMPLE", Value::Bool(true), "conforms to FITS"),
        card("BITPIX", Value::Int(-32), "IEEE single precision"),
        card("NAXIS", Value::Int(2), ""),
        card("NAXIS1", Value::Int(w as i64), ""),
        card("NAXIS2", Value::Int(h as i64), ""),
    ];
    common(&mut cards, "demo field 1");
    // Where M51 is: 128 pixels of 2".
    sky(&mut cards, (w, h), (202.469_6, 47.195_3), 2.0);
    cards.push(card("BUNIT", Value::Str("adu"), ""));
    let mut data = Vec::with_capacity(w * h * 4);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for y in 0..h {
        for x in 0..w {
            let g = |cx: f64, cy: f64, s: f64, a: f64| {
                let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
                a * (-d2 / (2.0 * s * s)).exp()
            };
            let v = 100.0
                + 5.0 * (noise.next() - 0.5)
                + g(40.0, 60.0, 3.0, 900.0)
                + g(90.0, 30.0, 5.0, 400.0);
            data.extend_from_slice(&(v as f32).to_be_bytes());
        }
    }
    [header(&cards), pad_data(data)].concat()
}

/// A 64×64 unsigned 16-bit image stored the FITS way: BITPIX 16 with BZERO 32768.
fn unsigned_image() -> Vec<u8> {
    let (w, h) = (64usize, 64usize);
    let mut cards = vec![
        card("SIMPLE", Value::Bool(true), "conforms to FITS"),
        card("BITPIX", Value::Int(16), ""),
        card("NAXIS", Value::Int(2), ""),
        card("NAXIS1", Value::Int(w as i64), ""),
        card("NAXIS2", Value::Int(h as i64), ""),
        card("BZERO", Value::Float(32768.0), "unsigned 16-bit convention"),
        card("BSCALE", Value::Float(1.0), ""),
    ];
    common(&mut cards, "demo counts");
    // Where the Crab nebula is: 64 pixels of 4".
    sky(&mut cards, (w, h), (83.633_1, 22.014_5), 4.0);
    cards.push(card("BUNIT", Value::Str("count"), ""));
    let mut data = Vec::with_capacity(w * h * 2);
    for y in 0..h {
        for x in 0..w {
            let counts: u16 = ((x * 1031 + y * 977) % 65_536) as u16;
            let stored = (i32::from(counts) - 32768) as i16;
            data.extend_from_slice(&stored.to_be_bytes());
        }
    }
    [header(&cards), pad_data(data)].concat()
}

/// An empty primary HDU and a binary table of 50 sources.
fn source_table() -> Vec<u8> {
    let rows = 50usize;
    // ID (J: i32), RA (D: f64), DEC (D: f64), MAG (E: f32), NAME (8A)
    let row_len = 4 + 8 + 8 + 4 + 8;
    let mut primary = vec![
        card("SIMPLE", Value::Bool(true), "conforms to FITS"),
        card("BITPIX", Value::Int(8), ""),
        card("NAXIS", Value::Int(0), ""),
        card("EXTEND", Value::Bool(true), ""),
    ];
    common(&mut primary, "demo sources");
    let table = vec![
        card("XTENSION", Value::Str("BINTABLE"), "binary table extension"),
        card("BITPIX", Value::Int(8), ""),
        card("NAXIS", Value::Int(2), ""),
        card("NAXIS1", Value::Int(row_len as i64), "bytes per row"),
        card("NAXIS2", Value::Int(rows as i64), "rows"),
        card("PCOUNT", Value::Int(0), ""),
        card("GCOUNT", Value::Int(1), ""),
        card("TFIELDS", Value::Int(5), ""),
        card("EXTNAME", Value::Str("SOURCES"), ""),
        card("TTYPE1", Value::Str("ID"), ""),
        card("TFORM1", Value::Str("J"), ""),
        card("TTYPE2", Value::Str("RA"), ""),
        card("TFORM2", Value::Str("D"), ""),
        card("TUNIT2", Value::Str("deg"), ""),
        card("TTYPE3", Value::Str("DEC"), ""),
        card("TFORM3", Value::Str("D"), ""),
        card("TUNIT3", Value::Str("deg"), ""),
        card("TTYPE4", Value::Str("MAG"), ""),
        card("TFORM4", Value::Str("E"), ""),
        card("TTYPE5", Value::Str("NAME"), ""),
        card("TFORM5", Value::Str("8A"), ""),
    ];
    let mut data = Vec::with_capacity(rows * row_len);
    let mut noise = Noise(0xD1B5_4A32_D192_ED03);
    for i in 0..rows {
        data.extend_from_slice(&(i as i32 + 1).to_be_bytes());
        data.extend_from_slice(&(10.0 + noise.next()).to_be_bytes());
        data.extend_from_slice(&(41.0 + noise.next()).to_be_bytes());
        data.extend_from_slice(&((14.0 + 8.0 * noise.next()) as f32).to_be_bytes());
        data.extend_from_slice(format!("SRC{:05}", i + 1).as_bytes());
    }
    [header(&primary), header(&table), pad_data(data)].concat()
}

const README: &str = "Archway demo volume\n\
\n\
Small FITS files written by Archway on first start:\n\
  images/field1.fits    128x128 float32 image (BITPIX -32), two sources on a noisy sky\n\
  images/counts.fits    64x64 unsigned 16-bit image (BITPIX 16, BZERO 32768)\n\
  tables/sources.fits   binary table SOURCES: ID, RA, DEC, MAG, NAME (50 rows)\n";

/// Writes the demo files into `dir` unless they are there already.
pub fn write_demo_files(dir: &Path) -> Result<()> {
    let files: [(&str, Vec<u8>); 4] = [
        ("images/field1.fits", float_image()),
        ("images/counts.fits", unsigned_image()),
        ("tables/sources.fits", source_table()),
        ("README.txt", README.as_bytes().to_vec()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = path.with_extension("partial");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_are_80_columns_in_fixed_format() {
        let c = card("BITPIX", Value::Int(-32), "x");
        assert_eq!(c.len(), 80);
        assert_eq!(&c[..10], "BITPIX  = ");
        assert_eq!(&c[10..30], format!("{:>20}", -32));
        let s = card("EXTNAME", Value::Str("SOURCES"), "");
        assert_eq!(&s[10..20], "'SOURCES '");
        let short = card("X", Value::Str("ab"), "");
        assert_eq!(&short[10..20], "'ab      '");
    }

    #[test]
    fn files_are_whole_blocks() {
        for f in [float_image(), unsigned_image(), source_table()] {
            assert_eq!(f.len() % BLOCK, 0);
            assert!(f.starts_with(b"SIMPLE  =                    T"));
        }
        // header block + 128*128*4 data bytes padded.
        assert_eq!(
            float_image().len(),
            BLOCK + (128 * 128 * 4_usize).div_ceil(BLOCK) * BLOCK
        );
    }
}

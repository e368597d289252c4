//! Tables: binary tables (XTENSION = 'BINTABLE'), columns of fixed-size fields in fixed-size
//! rows plus the heap that variable-length array columns (`P`, `Q`) point into; and ASCII
//! tables (XTENSION = 'TABLE'), rows of text with each field at its TBCOLn.
//!
//! Numeric column types reduce: `L` (logical, as 0/1; a zero byte is null), `B`, `I`, `J`,
//! `K` (with TSCALn/TZEROn, which covers unsigned columns, and TNULLn as missing), `E`, `D`
//! (NaN as missing); a repeat count `rT` contributes all `r` elements of every row, and `PT`/
//! `QT` all elements of every row's array. Strings (`A`), bits (`X`) and complex (`C`, `M`)
//! columns are named in an error rather than reduced.
//!
//! ASCII-table columns `Iw`, `Fw.d`, `Ew.d` and `Dw.d` reduce (with TSCALn/TZEROn); a field
//! equal to the TNULLn string, or all blank, is missing (as astropy reads it); a real field
//! without a decimal point has its last `d` digits after the point (FITS 4.0, section 7.2.5).
//! A field that is not a number is an error naming the column and row.

use crate::ComputeError;
use crate::hdu::{Hdu, HduKind};

/// The element type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Logical,
    Bit,
    U8,
    I16,
    I32,
    I64,
    Char,
    F32,
    F64,
    C64,
    C128,
    /// An ASCII table's `Iw` field: a decimal integer as text.
    TextInt,
    /// An ASCII table's `Fw.d`, `Ew.d` or `Dw.d` field: a real number as text, with
    /// `decimals` digits implied after the point when the field has none.
    TextReal {
        decimals: u32,
    },
}

impl Elem {
    fn from_code(c: char) -> Option<Self> {
        Some(match c {
            'L' => Elem::Logical,
            'X' => Elem::Bit,
            'B' => Elem::U8,
            'I' => Elem::I16,
            'J' => Elem::I32,
            'K' => Elem::I64,
            'A' => Elem::Char,
            'E' => Elem::F32,
            'D' => Elem::F64,
            'C' => Elem::C64,
            'M' => Elem::C128,
            _ => return None,
        })
    }

    pub fn width(self) -> usize {
        match self {
            // Text fields: the repeat is the field's width in characters.
            Elem::Logical
            | Elem::U8
            | Elem::Char
            | Elem::Bit
            | Elem::TextInt
            | Elem::TextReal { .. } => 1,
            Elem::I16 => 2,
            Elem::I32 | Elem::F32 => 4,
            Elem::I64 | Elem::F64 | Elem::C64 => 8,
            Elem::C128 => 16,
        }
    }

    fn numeric(self) -> bool {
        !matches!(self, Elem::Char | Elem::Bit | Elem::C64 | Elem::C128)
    }
}

/// Where a column's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `repeat` elements in the row.
    Fixed { repeat: u64 },
    /// A descriptor in the row (`P`: two 32-bit, `Q`: two 64-bit integers: count, heap offset).
    Heap { wide: bool },
}

/// One column of a binary table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub index: usize,
    pub name: String,
    pub elem: Elem,
    pub storage: Storage,
    /// Byte offset of the field within the row.
    pub offset: u64,
    pub scale: f64,
    pub zero: f64,
    pub null: Option<i64>,
    /// An ASCII table's TNULLn: the text of a missing value.
    pub null_text: Option<String>,
}

/// A field of an ASCII table that is not a number; the caller names the row and column.
#[derive(Debug)]
pub struct BadField(pub String);

impl Column {
    /// Bytes the field takes in the row.
    pub fn field_width(&self) -> u64 {
        match self.storage {
            Storage::Fixed { repeat } if self.elem == Elem::Bit => repeat.div_ceil(8),
            Storage::Fixed { repeat } => repeat * self.elem.width() as u64,
            Storage::Heap { wide: false } => 8,
            Storage::Heap { wide: true } => 16,
        }
    }

    pub fn is_numeric(&self) -> bool {
        self.elem.numeric()
    }

    /// Values in one row's field: the repeat count (one for ASCII fields).
    pub fn values_per_row(&self) -> u64 {
        match (self.storage, self.elem) {
            (_, Elem::TextInt | Elem::TextReal { .. }) => 1,
            (Storage::Fixed { repeat }, _) => repeat,
            (Storage::Heap { .. }, _) => 0,
        }
    }

    /// Calls `f` with each element in `raw` (one field of the column: elements of a binary
    /// column's type, big-endian, or an ASCII field's text) as a physical value, NaN when
    /// null. Only an ASCII field can be bad.
    #[inline]
    pub fn for_each(&self, raw: &[u8], mut f: impl FnMut(f64)) -> Result<(), BadField> {
        let (scale, zero, null) = (self.scale, self.zero, self.null);
        let phys = |v: f64| {
            if scale == 1.0 && zero == 0.0 {
                v
            } else {
                zero + scale * v
            }
        };
        macro_rules! ints {
            ($t:ty, $n:expr) => {{
                for c in raw.chunks_exact($n) {
                    let v = <$t>::from_be_bytes(c.try_into().unwrap_or([0; $n]));
                    if null == Some(v as i64) {
                        f(f64::NAN);
                    } else {
                        f(phys(v as f64));
                    }
                }
            }};
        }
        match self.elem {
            Elem::Logical => {
                for &b in raw {
                    match b {
                        b'T' => f(1.0),
                        b'F' => f(0.0),
                        _ => f(f64::NAN),
                    }
                }
            }
            Elem::U8 => ints!(u8, 1),
            Elem::I16 => ints!(i16, 2),
            Elem::I32 => ints!(i32, 4),
            Elem::I64 => ints!(i64, 8),
            Elem::F32 => {
                for c in raw.chunks_exact(4) {
                    f(phys(
                        f32::from_be_bytes(c.try_into().unwrap_or([0; 4])) as f64
                    ));
                }
            }
            Elem::F64 => {
                for c in raw.chunks_exact(8) {
                    f(phys(f64::from_be_bytes(c.try_into().unwrap_or([0; 8]))));
                }
            }
            Elem::TextInt | Elem::TextReal { .. } => f(self.text_value(raw)?),
            Elem::Char | Elem::Bit | Elem::C64 | Elem::C128 => {}
        }
        Ok(())
    }

    /// Calls `f` with the physical value of every element of this (fixed) column in `rows`,
    /// whole rows of `table`, the first being row `first_row` (0-based).
    pub fn rows_for_each(
        &self,
        table: &Table,
        rows: &[u8],
        first_row: u64,
        mut f: impl FnMut(f64),
    ) -> Result<(), ComputeError> {
        for (k, field) in fixed_fields(rows, table, self).enumerate() {
            self.for_each(field, &mut f)
                .map_err(|BadField(message)| ComputeError::Format {
                    hdu: table.hdu,
                    card: None,
                    message: format!(
                        "column `{}`, row {}: {message}",
                        self.name,
                        first_row + k as u64 + 1
                    ),
                })?;
        }
        Ok(())
    }

    /// The physical value of an ASCII field, NaN when null or blank.
    fn text_value(&self, raw: &[u8]) -> Result<f64, BadField> {
        let bad = || {
            BadField(format!(
                "'{}' is not a number",
                String::from_utf8_lossy(raw)
            ))
        };
        let text = std::str::from_utf8(raw).map_err(|_| bad())?.trim();
        if text.is_empty() || self.null_text.as_deref().is_some_and(|n| n.trim() == text) {
            return Ok(f64::NAN);
        }
        let v = match self.elem {
            Elem::TextInt => match text.parse::<i64>() {
                Ok(v) => v as f64,
                // Wider than 64 bits: still an integer, read as a real.
                Err(_)
                    if text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-') =>
                {
                    text.parse::<f64>().map_err(|_| bad())?
                }
                Err(_) => return Err(bad()),
            },
            Elem::TextReal { decimals } => parse_real(text, decimals).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok(if self.scale == 1.0 && self.zero == 0.0 {
            v
        } else {
            self.zero + self.scale * v
        })
    }
}

/// A Fortran real (`Fw.d`, `Ew.d`, `Dw.d`): sign, digits with an optional point, an optional
/// exponent (`E` or `D`, either case); without a point, the last `decimals` digits are the
/// fraction. Not `inf` or `nan`, which are not FITS.
fn parse_real(text: &str, decimals: u32) -> Option<f64> {
    let (mantissa, exponent) = match text.find(['E', 'e', 'D', 'd']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let digits = mantissa.trim_start_matches(['+', '-']);
    if digits.is_empty()
        || mantissa.len() - digits.len() > 1
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || digits.bytes().filter(|&b| b == b'.').count() > 1
        || digits == "."
    {
        return None;
    }
    let exponent: i32 = match exponent {
        Some(e) => e.trim().parse().ok()?,
        None => 0,
    };
    let implied = if digits.contains('.') {
        0
    } else {
        decimals as i32
    };
    // Parse as one decimal literal so the value is correctly rounded, as numpy's is.
    let literal = format!("{mantissa}e{}", i64::from(exponent) - i64::from(implied));
    literal.parse().ok()
}

/// A table's layout (binary or ASCII).
#[derive(Clone, Debug)]
pub struct Table {
    /// The HDU the table is (named in errors).
    pub hdu: usize,
    pub row_bytes: u64,
    pub rows: u64,
    pub columns: Vec<Column>,
    /// Offset of the heap from the start of the data.
    pub heap_offset: u64,
    /// Bytes of heap (PCOUNT).
    pub heap_bytes: u64,
}

/// Parses `rTa` (repeat, type, anything after) of a TFORMn value.
fn parse_tform(s: &str) -> Option<(u64, char, &str)> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit())?;
    let repeat = if digits == 0 {
        1
    } else {
        s[..digits].parse().ok()?
    };
    let code = s[digits..].chars().next()?;
    Some((repeat, code, &s[digits + 1..]))
}

impl Table {
    pub fn of(hdu: &Hdu) -> Result<Self, ComputeError> {
        let h = &hdu.header;
        let err = |card: Option<usize>, message: String| ComputeError::Format {
            hdu: hdu.index,
            card,
            message,
        };
        let row_bytes = h.required_int("NAXIS1", hdu.index)? as u64;
        let rows = h.required_int("NAXIS2", hdu.index)? as u64;
        let fields = h.required_int("TFIELDS", hdu.index)?;
        if !(0..=999).contains(&fields) {
            return Err(err(
                h.card_index("TFIELDS"),
                format!("TFIELDS = {fields} is outside 0..=999"),
            ));
        }
        let ascii = hdu.kind == HduKind::AsciiTable;
        let mut columns = Vec::new();
        let mut offset = 0u64;
        for i in 1..=fields as usize {
            let key = format!("TFORM{i}");
            let form = h.str(&key).ok_or_else(|| {
                err(
                    h.card_index(&key),
                    format!("{key} is missing or not a string"),
                )
            })?;
            let column = if ascii {
                ascii_column(hdu, i, form, row_bytes)?
            } else {
                let column = binary_column(hdu, i, form, offset)?;
                offset = offset
                    .checked_add(column.field_width())
                    .ok_or_else(|| err(h.card_index(&key), "the row size overflows".into()))?;
                column
            };
            columns.push(column);
        }
        if !ascii && offset != row_bytes {
            return Err(err(
                h.card_index("NAXIS1"),
                format!("NAXIS1 = {row_bytes}, but the columns take {offset} bytes per row"),
            ));
        }
        let table_bytes = row_bytes
            .checked_mul(rows)
            .ok_or_else(|| err(None, "the table size overflows".into()))?;
        let pcount = h.int("PCOUNT").unwrap_or(0).max(0) as u64;
        if ascii && pcount != 0 {
            return Err(err(
                h.card_index("PCOUNT"),
                format!("PCOUNT = {pcount}, but an ASCII table has no heap (PCOUNT = 0)"),
            ));
        }
        let data_end = table_bytes.saturating_add(pcount);
        if data_end > hdu.data_len {
            return Err(err(
                h.card_index("PCOUNT"),
                format!(
                    "NAXIS1 × NAXIS2 + PCOUNT = {data_end} bytes, more than the HDU's data \
                     ({} bytes, from BITPIX, NAXISn, PCOUNT and GCOUNT)",
                    hdu.data_len
                ),
            ));
        }
        let heap_offset = match h.int("THEAP") {
            Some(t) if t >= 0 && (t as u64) >= table_bytes && (t as u64) <= data_end => t as u64,
            Some(t) => {
                return Err(err(
                    h.card_index("THEAP"),
                    format!(
                        "THEAP = {t} is outside the heap area ({table_bytes} to {data_end} \
                         bytes into the data)"
                    ),
                ));
            }
            None => table_bytes,
        };
        // What the heap may hold: from THEAP to the end of the data area (PCOUNT counts any
        // gap between the table and the heap).
        let heap_bytes = data_end - heap_offset;
        Ok(Self {
            hdu: hdu.index,
            row_bytes,
            rows,
            columns,
            heap_offset,
            heap_bytes,
        })
    }

    /// A column by TTYPE (case-insensitive, as astropy) or 1-based number.
    pub fn column(&self, name: &str, hdu: usize) -> Result<&Column, ComputeError> {
        let found = match name.trim().parse::<usize>() {
            Ok(n) => self.columns.iter().find(|c| c.index == n),
            Err(_) => self
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name.trim())),
        };
        found.ok_or_else(|| ComputeError::NoSuchColumn {
            hdu,
            wanted: name.to_string(),
            available: self.names(),
        })
    }

    pub fn names(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A binary table's column `i` with format `form`, at `offset` bytes into the row.
fn binary_column(hdu: &Hdu, i: usize, form: &str, offset: u64) -> Result<Column, ComputeError> {
    let h = &hdu.header;
    let key = format!("TFORM{i}");
    let bad = || ComputeError::Format {
        hdu: hdu.index,
        card: h.card_index(&key),
        message: format!("{key} = '{form}' is not a valid column format"),
    };
    let (repeat, code, rest) = parse_tform(form).ok_or_else(bad)?;
    let (elem, storage) = match code {
        'P' | 'Q' => {
            let inner = rest.chars().next().ok_or_else(bad)?;
            let elem = Elem::from_code(inner).ok_or_else(bad)?;
            if repeat > 1 {
                return Err(bad());
            }
            (elem, Storage::Heap { wide: code == 'Q' })
        }
        c => (
            Elem::from_code(c).ok_or_else(bad)?,
            Storage::Fixed { repeat },
        ),
    };
    let mut column = named_column(hdu, i, elem, storage, offset);
    if !matches!(elem, Elem::F32 | Elem::F64) {
        column.null = h.int(&format!("TNULL{i}"));
    }
    Ok(column)
}

/// An ASCII table's column `i` with format `form` (`Aw`, `Iw`, `Fw.d`, `Ew.d`, `Dw.d`) at
/// TBCOLn, which must lie within the row's `row_bytes`.
fn ascii_column(hdu: &Hdu, i: usize, form: &str, row_bytes: u64) -> Result<Column, ComputeError> {
    let h = &hdu.header;
    let key = format!("TFORM{i}");
    let bad = || ComputeError::Format {
        hdu: hdu.index,
        card: h.card_index(&key),
        message: format!(
            "{key} = '{form}' is not an ASCII-table format (Aw, Iw, Fw.d, Ew.d, Dw.d)"
        ),
    };
    let form_t = form.trim();
    let code = form_t.chars().next().ok_or_else(bad)?;
    let (width, decimals) = match form_t[code.len_utf8()..].split_once('.') {
        Some((w, d)) => (w.parse::<u64>(), d.parse::<u32>().map_err(|_| bad())?),
        None => (form_t[code.len_utf8()..].parse::<u64>(), 0),
    };
    let width = width.map_err(|_| bad())?;
    let elem = match code.to_ascii_uppercase() {
        'A' => Elem::Char,
        'I' => Elem::TextInt,
        'F' | 'E' | 'D' => Elem::TextReal { decimals },
        _ => return Err(bad()),
    };
    if width == 0 || (matches!(elem, Elem::TextReal { .. }) && u64::from(decimals) >= width) {
        return Err(bad());
    }
    let tbcol = format!("TBCOL{i}");
    let start = h.int(&tbcol).ok_or_else(|| ComputeError::Format {
        hdu: hdu.index,
        card: h.card_index(&tbcol),
        message: format!("{tbcol} (where column {i} starts) is missing or not an integer"),
    })?;
    if start < 1 || (start as u64 - 1).saturating_add(width) > row_bytes {
        return Err(ComputeError::Format {
            hdu: hdu.index,
            card: h.card_index(&tbcol),
            message: format!(
                "{tbcol} = {start} with {key} = '{form}' does not fit in a row of NAXIS1 = \
                 {row_bytes} characters"
            ),
        });
    }
    let mut column = named_column(
        hdu,
        i,
        elem,
        Storage::Fixed { repeat: width },
        start as u64 - 1,
    );
    column.null_text = h.str(&format!("TNULL{i}")).map(str::to_string);
    Ok(column)
}

/// Column `i`'s name, scaling and place; no null value yet.
fn named_column(hdu: &Hdu, i: usize, elem: Elem, storage: Storage, offset: u64) -> Column {
    let h = &hdu.header;
    Column {
        index: i,
        name: h
            .str(&format!("TTYPE{i}"))
            .unwrap_or_default()
            .trim()
            .to_string(),
        elem,
        storage,
        offset,
        scale: h.real(&format!("TSCAL{i}")).unwrap_or(1.0),
        zero: h.real(&format!("TZERO{i}")).unwrap_or(0.0),
        null: None,
        null_text: None,
    }
}

/// Reads the elements of `col` in `rows` (whole rows, from the table's first byte): fixed
/// fields straight from the rows. For heap columns, the (count, offset) descriptors.
pub fn fixed_fields<'a>(
    rows: &'a [u8],
    table: &Table,
    col: &Column,
) -> impl Iterator<Item = &'a [u8]> {
    let (start, width, row) = (
        col.offset as usize,
        col.field_width() as usize,
        table.row_bytes as usize,
    );
    rows.chunks_exact(row.max(1))
        .map(move |r| &r[start..start + width])
}

/// The heap descriptors of a `P`/`Q` column in `rows`: (elements, byte offset in the heap).
pub fn descriptors(rows: &[u8], table: &Table, col: &Column) -> Vec<(u64, u64)> {
    let wide = matches!(col.storage, Storage::Heap { wide: true });
    fixed_fields(rows, table, col)
        .map(|f| {
            if wide {
                (
                    u64::from_be_bytes(f[0..8].try_into().unwrap_or([0; 8])),
                    u64::from_be_bytes(f[8..16].try_into().unwrap_or([0; 8])),
                )
            } else {
                (
                    u64::from(u32::from_be_bytes(f[0..4].try_into().unwrap_or([0; 4]))),
                    u64::from(u32::from_be_bytes(f[4..8].try_into().unwrap_or([0; 4]))),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tforms_parse() {
        assert_eq!(parse_tform("1J"), Some((1, 'J', "")));
        assert_eq!(parse_tform("J"), Some((1, 'J', "")));
        assert_eq!(parse_tform("16A"), Some((16, 'A', "")));
        assert_eq!(parse_tform("1PE(100)"), Some((1, 'P', "E(100)")));
        assert_eq!(parse_tform(""), None);
        assert_eq!(parse_tform("12"), None);
    }

    #[test]
    fn fortran_reals_parse() {
        assert_eq!(parse_real("12.5", 2), Some(12.5));
        assert_eq!(parse_real("-0.25E+02", 0), Some(-25.0));
        assert_eq!(parse_real("1.5D-3", 0), Some(0.0015));
        assert_eq!(parse_real("+.5", 0), Some(0.5));
        assert_eq!(parse_real("7.", 3), Some(7.0));
        // No point: the last d digits are the fraction (FITS 4.0, 7.2.5).
        assert_eq!(parse_real("12345", 2), Some(123.45));
        assert_eq!(parse_real("-12345E2", 2), Some(-12345.0));
        assert_eq!(parse_real("0.1", 0), Some(0.1));
        for bad in [
            "", ".", "1.2.3", "--1", "1e", "inf", "nan", "1 2", "0x10", "E5",
        ] {
            assert_eq!(parse_real(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn text_fields_read_with_nulls_blanks_and_scaling() {
        let col = |elem, null: Option<&str>, scale, zero| Column {
            index: 1,
            name: "C".into(),
            elem,
            storage: Storage::Fixed { repeat: 8 },
            offset: 0,
            scale,
            zero,
            null: None,
            null_text: null.map(str::to_string),
        };
        let all = |c: &Column, raw: &[u8]| {
            let mut out = Vec::new();
            c.for_each(raw, |x| out.push(x)).map(|()| out)
        };
        let int = col(Elem::TextInt, Some("-999"), 2.0, 1.0);
        assert_eq!(all(&int, b"    -12 ").unwrap(), vec![-23.0]);
        assert!(all(&int, b"    -999").unwrap()[0].is_nan());
        assert!(all(&int, b"        ").unwrap()[0].is_nan());
        assert!(all(&int, b"   1.5  ").is_err());
        assert_eq!(
            all(&int, b"99999999999999999999").unwrap(),
            vec![1.0 + 2.0 * 1e20]
        );
        let real = col(Elem::TextReal { decimals: 3 }, None, 1.0, 0.0);
        assert_eq!(all(&real, b"  123456").unwrap(), vec![123.456]);
        assert!(
            all(&real, b"  12,5  ")
                .unwrap_err()
                .0
                .contains("'  12,5  '")
        );
        assert_eq!(int.values_per_row(), 1);
    }
}

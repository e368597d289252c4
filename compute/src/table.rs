//! Binary tables (XTENSION = 'BINTABLE'): columns of fixed-size fields in fixed-size rows,
//! plus the heap that variable-length array columns (`P`, `Q`) point into.
//!
//! Numeric column types reduce: `L` (logical, as 0/1; a zero byte is null), `B`, `I`, `J`,
//! `K` (with TSCALn/TZEROn, which covers unsigned columns, and TNULLn as missing), `E`, `D`
//! (NaN as missing); a repeat count `rT` contributes all `r` elements of every row, and `PT`/
//! `QT` all elements of every row's array. Strings (`A`), bits (`X`) and complex (`C`, `M`)
//! columns are named in an error rather than reduced.

use crate::ComputeError;
use crate::hdu::Hdu;

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
            Elem::Logical | Elem::U8 | Elem::Char | Elem::Bit => 1,
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
}

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

    /// Calls `f` with each element in `raw` (elements of this column's type, big-endian) as a
    /// physical value, NaN when null.
    #[inline]
    pub fn for_each(&self, raw: &[u8], mut f: impl FnMut(f64)) {
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
            Elem::Char | Elem::Bit | Elem::C64 | Elem::C128 => {}
        }
    }
}

/// A binary table's layout.
#[derive(Clone, Debug)]
pub struct Table {
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
            let bad = || {
                err(
                    h.card_index(&key),
                    format!("{key} = '{form}' is not a valid column format"),
                )
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
            let mut column = Column {
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
                null: h.int(&format!("TNULL{i}")),
            };
            if matches!(elem, Elem::F32 | Elem::F64) {
                column.null = None;
            }
            offset = offset
                .checked_add(column.field_width())
                .ok_or_else(|| err(h.card_index(&key), "the row size overflows".into()))?;
            columns.push(column);
        }
        if offset != row_bytes {
            return Err(err(
                h.card_index("NAXIS1"),
                format!("NAXIS1 = {row_bytes}, but the columns take {offset} bytes per row"),
            ));
        }
        let table_bytes = row_bytes
            .checked_mul(rows)
            .ok_or_else(|| err(None, "the table size overflows".into()))?;
        let pcount = h.int("PCOUNT").unwrap_or(0).max(0) as u64;
        let data_end = table_bytes.saturating_add(pcount);
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
}

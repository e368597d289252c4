//! FITS headers: 2880-byte blocks of 80-character cards, up to `END`.
//!
//! Values follow the FITS standard (4.0, section 4.2): strings in single quotes with `''` for
//! a quote, logical `T`/`F`, integers, reals (with `E` or `D` exponents), complex numbers
//! (kept as text). Long strings continue over `CONTINUE` cards when a string ends in `&`;
//! `HIERARCH` keywords (ESO convention) carry their full dotted name. Every problem names the
//! card (1-based within the HDU) and what is wrong.

use crate::ComputeError;

/// Bytes in a FITS block.
pub const BLOCK: usize = 2880;
/// Bytes in a header card.
pub const CARD: usize = 80;

/// A header as written: each card padded to 80 characters, then `END`, then spaces to a
/// whole block. Cards are given as their text (`"NAXIS   =                    2"`).
pub fn write<S: AsRef<str>>(cards: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity((cards.len() + 1).div_ceil(BLOCK / CARD) * BLOCK);
    for card in cards.iter().map(AsRef::as_ref).chain(["END"]) {
        out.extend_from_slice(format!("{card:<80.80}").as_bytes());
    }
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, b' ');
    out
}

/// One keyword's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Logical(bool),
    Int(i64),
    Real(f64),
    /// Complex or otherwise unparsed values, as written.
    Other(String),
    /// A keyword without a value (`KEY     ` with no `= `).
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    pub keyword: String,
    pub value: Value,
    /// 1-based position in the header.
    pub index: usize,
}

/// A parsed header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub cards: Vec<Card>,
}

/// Where a header's parsing stands after some blocks.
#[derive(Debug)]
pub enum Progress {
    /// `END` found: the header, and its length in bytes (whole blocks).
    Done(Header, usize),
    /// More blocks needed.
    More,
}

impl Header {
    pub fn get(&self, keyword: &str) -> Option<&Value> {
        self.cards
            .iter()
            .find(|c| c.keyword == keyword)
            .map(|c| &c.value)
    }

    pub fn int(&self, keyword: &str) -> Option<i64> {
        match self.get(keyword)? {
            Value::Int(i) => Some(*i),
            Value::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e15 => Some(*r as i64),
            _ => None,
        }
    }

    pub fn real(&self, keyword: &str) -> Option<f64> {
        match self.get(keyword)? {
            Value::Int(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            _ => None,
        }
    }

    pub fn str(&self, keyword: &str) -> Option<&str> {
        match self.get(keyword)? {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The card of a keyword (for error messages).
    pub fn card_index(&self, keyword: &str) -> Option<usize> {
        self.cards
            .iter()
            .find(|c| c.keyword == keyword)
            .map(|c| c.index)
    }

    /// A required integer keyword, or an error naming it.
    pub fn required_int(&self, keyword: &str, hdu: usize) -> Result<i64, ComputeError> {
        match self.get(keyword) {
            None => Err(ComputeError::Format {
                hdu,
                card: None,
                message: format!("required keyword {keyword} is missing"),
            }),
            Some(_) => self.int(keyword).ok_or_else(|| ComputeError::Format {
                hdu,
                card: self.card_index(keyword),
                message: format!("{keyword} must be an integer"),
            }),
        }
    }
}

/// Parses the cards in `bytes` (whole blocks from the start of a header). `hdu` names the HDU
/// in errors.
pub fn parse(bytes: &[u8], hdu: usize) -> Result<Progress, ComputeError> {
    let mut header = Header::default();
    let mut pending: Option<(usize, String, usize)> = None; // (card position in list, text, index)
    for (i, raw) in bytes.chunks_exact(CARD).enumerate() {
        let index = i + 1;
        let err = |message: String| ComputeError::Format {
            hdu,
            card: Some(index),
            message,
        };
        if !raw.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(err(
                "header card holds bytes outside printable ASCII (not a FITS header, or \
                 corrupt)"
                    .into(),
            ));
        }
        // Printable ASCII only, so this cannot fail.
        let text = std::str::from_utf8(raw).map_err(|e| err(e.to_string()))?;
        let keyword = text[..8].trim_end();
        if keyword == "END" {
            if let Some((at, s, _)) = pending.take() {
                header.cards[at].value = Value::Str(s);
            }
            let len = (index * CARD).div_ceil(BLOCK) * BLOCK;
            return Ok(Progress::Done(header, len));
        }
        if keyword == "CONTINUE" {
            let Some((at, mut s, _)) = pending.take() else {
                // A CONTINUE without a long string before it is commentary.
                continue;
            };
            let (value, _) = parse_value(text[8..].trim_start()).map_err(err)?;
            match value {
                Value::Str(more) => {
                    s.pop(); // the '&'
                    s.push_str(&more);
                    if s.ends_with('&') {
                        pending = Some((at, s, index));
                    } else {
                        header.cards[at].value = Value::Str(s);
                    }
                }
                _ => return Err(err("CONTINUE must hold a string".into())),
            }
            continue;
        }
        if let Some((at, s, _)) = pending.take() {
            header.cards[at].value = Value::Str(s);
        }
        if keyword.is_empty() || matches!(keyword, "COMMENT" | "HISTORY") {
            continue;
        }
        let (keyword, rest) = if keyword == "HIERARCH" {
            // HIERARCH ESO DET CHIP NAME = 'value'
            match text[8..].split_once('=') {
                Some((name, rest)) => {
                    let name: Vec<&str> = name.split_whitespace().collect();
                    (name.join("."), Some(rest))
                }
                None => continue,
            }
        } else {
            let rest = (&text[8..10] == "= ").then(|| &text[10..]);
            (keyword.to_string(), rest)
        };
        if !keyword
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            return Err(err(format!("invalid keyword `{keyword}`")));
        }
        let value = match rest {
            None => Value::None,
            Some(rest) => {
                parse_value(rest.trim_start())
                    .map_err(|m| err(format!("{keyword}: {m}")))?
                    .0
            }
        };
        header.cards.push(Card {
            keyword,
            value: value.clone(),
            index,
        });
        if let Value::Str(s) = value
            && s.ends_with('&')
        {
            pending = Some((header.cards.len() - 1, s, index));
        }
    }
    Ok(Progress::More)
}

/// Parses a value field (after `= `); returns the value and any comment.
fn parse_value(field: &str) -> Result<(Value, &str), String> {
    if let Some(rest) = field.strip_prefix('\'') {
        let mut out = String::new();
        let bytes = rest.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i) {
                None => return Err("string value without its closing quote".into()),
                Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => {
                    out.push('\'');
                    i += 2;
                }
                Some(b'\'') => {
                    i += 1;
                    break;
                }
                Some(&b) => {
                    out.push(b as char);
                    i += 1;
                }
            }
        }
        // Trailing spaces are not significant; leading ones are.
        let s = out.trim_end().to_string();
        return Ok((Value::Str(s), &rest[i..]));
    }
    let (v, comment) = match field.find('/') {
        Some(i) => (field[..i].trim(), &field[i..]),
        None => (field.trim(), ""),
    };
    if v.is_empty() {
        return Ok((Value::None, comment));
    }
    if v == "T" {
        return Ok((Value::Logical(true), comment));
    }
    if v == "F" {
        return Ok((Value::Logical(false), comment));
    }
    if v.starts_with('(') {
        return Ok((Value::Other(v.to_string()), comment));
    }
    if let Ok(i) = v.parse::<i64>() {
        return Ok((Value::Int(i), comment));
    }
    let real = v.replace(['D', 'd'], "E");
    match real.parse::<f64>() {
        Ok(r) => Ok((Value::Real(r), comment)),
        Err(_) => Err(format!("cannot read the value `{v}`")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn cards(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(format!("{l:<80}").as_bytes());
        }
        while out.len() % BLOCK != 0 {
            out.push(b' ');
        }
        out
    }

    fn done(bytes: &[u8]) -> Header {
        match parse(bytes, 0).unwrap() {
            Progress::Done(h, _) => h,
            Progress::More => panic!("no END"),
        }
    }

    #[test]
    fn values_of_every_kind() {
        let h = done(&cards(&[
            "SIMPLE  =                    T / conforms",
            "BITPIX  =                  -32",
            "BSCALE  =               1.5D-1",
            "OBJECT  = 'M31 ''core'''       / quoted quote",
            "EMPTY   = ''",
            "CPLX    = (1.0, 2.0)",
            "NOVAL",
            "COMMENT anything = 'here'",
            "HIERARCH ESO DET CHIP NAME = 'CCD-44' / hierarch",
            "END",
        ]));
        assert_eq!(h.get("SIMPLE"), Some(&Value::Logical(true)));
        assert_eq!(h.int("BITPIX"), Some(-32));
        assert!((h.real("BSCALE").unwrap() - 0.15).abs() < 1e-15);
        assert_eq!(h.str("OBJECT"), Some("M31 'core'"));
        assert_eq!(h.str("EMPTY"), Some(""));
        assert!(matches!(h.get("CPLX"), Some(Value::Other(_))));
        assert_eq!(h.get("NOVAL"), Some(&Value::None));
        assert_eq!(h.str("ESO.DET.CHIP.NAME"), Some("CCD-44"));
        assert_eq!(h.get("COMMENT"), None);
    }

    #[test]
    fn long_strings_continue() {
        let h = done(&cards(&[
            "LONGSTR = 'This is a long string that &'",
            "CONTINUE  'goes on over &'",
            "CONTINUE  'three cards'",
            "AFTER   = 1",
            "END",
        ]));
        assert_eq!(
            h.str("LONGSTR"),
            Some("This is a long string that goes on over three cards")
        );
        assert_eq!(h.int("AFTER"), Some(1));
    }

    #[test]
    fn header_needs_end_and_names_bad_cards() {
        assert!(matches!(
            parse(&cards(&["SIMPLE  = T"]), 0).unwrap(),
            Progress::More
        ));
        let e = parse(
            &cards(&["SIMPLE  = T", "NAXIS   = 'unterminated", "END"]),
            2,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("HDU 2") && text.contains("card 2"), "{text}");
        let mut bad = cards(&["SIMPLE  = T", "END"]);
        bad[5] = 0xff;
        assert!(parse(&bad, 0).unwrap_err().to_string().contains("card 1"));
    }
}

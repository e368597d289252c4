//! IVOA ObsCore fields (ObsCore 1.1) derived from the headers of a FITS object, for the
//! science index: what was observed (`dataproduct_type`, `target_name`, `obs_id`,
//! `calib_level`), where on the sky (`s_ra`, `s_dec`, `s_fov`, `s_region` from the image's
//! celestial WCS: its centre and the footprint of its corners), when (`t_min`, `t_max`,
//! `t_exptime`, MJD and seconds), in which band (`em_min`, `em_max`, metres), with what
//! (`instrument_name`, `facility_name`), and the HDU list. The access fields
//! (`obs_collection`, `access_url`, `access_format`, `access_estsize`) belong to where the
//! object lives and are set by the index, not here.
//!
//! Keywords are read from the first image HDU with at least two axes (tile-compressed images
//! included), falling back to the primary header's (the INHERIT convention), then to the
//! other HDUs' (an event list keeps DATE-OBS in its table). A field that cannot be derived is
//! left out, and `notes` says why.

use serde::{Deserialize, Serialize};

use crate::hdu::{Hdu, HduKind};
use crate::header::{Header, Value};
use crate::wcs::{Wcs, separation};

/// What the index records of one object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObsCore {
    /// `image` (two axes), `cube` (three or more), `spectrum` (one).
    pub dataproduct_type: Option<String>,
    /// 0 raw, 1 instrumental, 2 calibrated, 3 enhanced (`CALIBLEV`, `CAL_LEVEL`, `CALIB_LV`).
    pub calib_level: Option<i64>,
    pub obs_id: Option<String>,
    pub target_name: Option<String>,
    /// ICRS position of the image's centre, degrees.
    pub s_ra: Option<f64>,
    pub s_dec: Option<f64>,
    /// The diameter of the footprint (twice the largest centre-to-corner distance), degrees.
    pub s_fov: Option<f64>,
    /// The footprint: the image's four outer corners, ICRS degrees, in pixel order.
    pub s_region: Option<Vec<[f64; 2]>>,
    /// Start and end of the exposure, MJD (UTC as the header gives it).
    pub t_min: Option<f64>,
    pub t_max: Option<f64>,
    /// Exposure time, seconds.
    pub t_exptime: Option<f64>,
    /// Wavelength range, metres.
    pub em_min: Option<f64>,
    pub em_max: Option<f64>,
    pub instrument_name: Option<String>,
    pub facility_name: Option<String>,
    pub hdus: Vec<HduSummary>,
    /// Why a field is missing (no WCS, no date, ...).
    pub notes: Vec<String>,
}

/// One HDU of the object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HduSummary {
    pub index: usize,
    pub name: Option<String>,
    /// `image`, `bintable`, `table`, `random-groups` or the XTENSION as written.
    pub kind: String,
    /// Axis lengths (NAXISn; ZNAXISn for a compressed image).
    pub shape: Vec<u64>,
    /// A tile-compressed image.
    pub compressed: bool,
}

/// Keywords looked up in the image HDU's header first, then the primary's.
struct Keys<'a> {
    headers: Vec<&'a Header>,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.headers.iter().find_map(|h| h.get(key))
    }

    fn text(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match self.get(k)? {
            Value::Str(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        })
    }

    fn real(&self, keys: &[&str]) -> Option<f64> {
        keys.iter().find_map(|k| match self.get(k)? {
            Value::Int(i) => Some(*i as f64),
            Value::Real(r) if r.is_finite() => Some(*r),
            _ => None,
        })
    }
}

fn is_compressed(h: &Header) -> bool {
    matches!(h.get("ZIMAGE"), Some(Value::Logical(true)))
}

/// Axis lengths: NAXISn, or ZNAXISn for a tile-compressed image.
fn shape(h: &Header) -> Vec<u64> {
    let prefix = if is_compressed(h) { "Z" } else { "" };
    let n = h.int(&format!("{prefix}NAXIS")).unwrap_or(0).clamp(0, 999);
    (1..=n)
        .map(|i| h.int(&format!("{prefix}NAXIS{i}")).unwrap_or(0).max(0) as u64)
        .collect()
}

fn summary(hdu: &Hdu) -> HduSummary {
    let compressed = is_compressed(&hdu.header);
    let kind = match &hdu.kind {
        _ if compressed => "image".to_string(),
        HduKind::Image => "image".into(),
        HduKind::BinTable => "bintable".into(),
        HduKind::AsciiTable => "table".into(),
        HduKind::RandomGroups => "random-groups".into(),
        HduKind::Other(x) => x.clone(),
    };
    HduSummary {
        index: hdu.index,
        name: hdu.name().map(|n| n.trim().to_string()),
        kind,
        shape: shape(&hdu.header),
        compressed,
    }
}

/// The ObsCore fields of an object with these HDUs (in file order, the primary first).
pub fn derive(hdus: &[Hdu]) -> ObsCore {
    let summaries: Vec<HduSummary> = hdus.iter().map(summary).collect();
    let mut out = ObsCore {
        hdus: summaries.clone(),
        ..Default::default()
    };
    let image = hdus
        .iter()
        .zip(&summaries)
        .find(|(_, s)| s.kind == "image" && s.shape.iter().filter(|n| **n > 1).count() >= 2);
    let primary = hdus.first().map(|h| &h.header);
    let mut keys = Keys {
        headers: Vec::new(),
    };
    match image {
        Some((hdu, s)) => {
            keys.headers.push(&hdu.header);
            let axes = s.shape.iter().filter(|n| **n > 1).count();
            out.dataproduct_type = Some(if axes >= 3 { "cube" } else { "image" }.into());
        }
        None => {
            out.notes
                .push("no image HDU with two or more axes: no sky footprint".into());
            if summaries
                .iter()
                .any(|s| s.kind == "image" && s.shape.len() == 1 && s.shape[0] > 1)
            {
                out.dataproduct_type = Some("spectrum".into());
            }
        }
    }
    // Then the primary header (INHERIT), then the others (an event list's DATE-OBS).
    for h in primary
        .into_iter()
        .chain(hdus.iter().skip(1).map(|h| &h.header))
    {
        if !keys.headers.iter().any(|k| std::ptr::eq(*k, h)) {
            keys.headers.push(h);
        }
    }
    out.target_name = keys.text(&["OBJECT", "TARGNAME", "TARGET"]);
    out.obs_id = keys.text(&["OBS_ID", "OBSID", "OBSERVID", "EXPID"]);
    out.instrument_name = keys.text(&["INSTRUME"]);
    out.facility_name = keys.text(&["TELESCOP", "OBSERVAT"]);
    out.calib_level = keys
        .real(&["CALIBLEV", "CAL_LEVEL", "CALIB_LV"])
        .filter(|l| (0.0..=4.0).contains(l) && l.fract() == 0.0)
        .map(|l| l as i64);
    if let Some((hdu, s)) = image {
        sky(&mut out, &hdu.header, primary, s);
    }
    time(&mut out, &keys);
    band(&mut out, &keys, image.map(|(h, _)| &h.header));
    out
}

/// Centre, footprint and field of the image, from its celestial WCS.
fn sky(out: &mut ObsCore, image: &Header, primary: Option<&Header>, s: &HduSummary) {
    // The image's own WCS, with what it lacks inherited from the primary header.
    let mut merged = image.clone();
    for card in primary.iter().flat_map(|p| &p.cards) {
        if merged.get(&card.keyword).is_none() && !card.keyword.starts_with("NAXIS") {
            merged.cards.push(card.clone());
        }
    }
    let wcs = match Wcs::from_header(&merged) {
        Ok(w) => w,
        Err(why) => {
            out.notes.push(why);
            return;
        }
    };
    let (n1, n2) = (s.shape[0] as f64, s.shape[1] as f64);
    let centre = wcs.pixel_to_world((n1 + 1.0) / 2.0, (n2 + 1.0) / 2.0);
    let corners: Option<Vec<(f64, f64)>> = [
        (0.5, 0.5),
        (n1 + 0.5, 0.5),
        (n1 + 0.5, n2 + 0.5),
        (0.5, n2 + 0.5),
    ]
    .iter()
    .map(|&(x, y)| wcs.pixel_to_world(x, y))
    .collect();
    let Some(centre) = centre else {
        out.notes
            .push("the image's centre is outside its projection's domain".into());
        return;
    };
    out.s_ra = Some(centre.0);
    out.s_dec = Some(centre.1);
    match corners {
        Some(c) => {
            let radius = c
                .iter()
                .map(|&p| separation(centre, p))
                .fold(0.0f64, f64::max);
            out.s_fov = Some(2.0 * radius);
            out.s_region = Some(c.iter().map(|&(a, d)| [a, d]).collect());
        }
        None => out
            .notes
            .push("a corner of the image is outside its projection's domain: no footprint".into()),
    }
}

/// Start, end and exposure, from MJD-OBS/DATE-OBS, MJD-END/DATE-END and EXPTIME.
fn time(out: &mut ObsCore, keys: &Keys) {
    out.t_exptime = keys
        .real(&["EXPTIME", "XPOSURE", "EXPOSURE", "TELAPSE"])
        .filter(|e| *e >= 0.0);
    let start = keys.real(&["MJD-OBS", "MJD-BEG"]).or_else(|| {
        let date = keys.text(&["DATE-OBS", "DATE-BEG"])?;
        // An old date-only DATE-OBS with the time in TIME-OBS or UT.
        let date = match (date.contains('T'), keys.text(&["TIME-OBS", "UT"])) {
            (false, Some(t)) => format!("{date}T{t}"),
            _ => date,
        };
        iso_to_mjd(&date)
    });
    let Some(start) = start else {
        let why = match keys.text(&["DATE-OBS"]) {
            Some(d) => format!("DATE-OBS '{d}' is not an ISO 8601 date: no time"),
            None => "no MJD-OBS or DATE-OBS: no time".into(),
        };
        out.notes.push(why);
        return;
    };
    out.t_min = Some(start);
    let end = keys
        .real(&["MJD-END"])
        .or_else(|| iso_to_mjd(&keys.text(&["DATE-END"])?))
        .filter(|e| *e >= start)
        .or_else(|| out.t_exptime.map(|e| start + e / 86_400.0));
    out.t_max = end.or(Some(start));
}

/// Wavelength range: ESO's WAVELMIN/WAVELMAX (nm), or a WAVE spectral axis 3 of a cube.
fn band(out: &mut ObsCore, keys: &Keys, image: Option<&Header>) {
    if let (Some(lo), Some(hi)) = (keys.real(&["WAVELMIN"]), keys.real(&["WAVELMAX"])) {
        out.em_min = Some(lo.min(hi) * 1e-9);
        out.em_max = Some(lo.max(hi) * 1e-9);
        return;
    }
    let Some(h) = image else { return };
    let Some(ctype) = h.str("CTYPE3").map(str::trim) else {
        return;
    };
    if !ctype.starts_with("WAVE") {
        return;
    }
    let unit = match h.str("CUNIT3").map(str::trim).unwrap_or("m") {
        "m" => 1.0,
        "nm" => 1e-9,
        "um" => 1e-6,
        "Angstrom" | "angstrom" | "AA" => 1e-10,
        other => {
            out.notes.push(format!(
                "CUNIT3 '{other}' is not a wavelength unit this index reads"
            ));
            return;
        }
    };
    let n = h.int("NAXIS3").or_else(|| h.int("ZNAXIS3")).unwrap_or(0) as f64;
    let (Some(crpix), Some(crval)) = (h.real("CRPIX3"), h.real("CRVAL3")) else {
        return;
    };
    let step = h.real("CD3_3").or_else(|| h.real("CDELT3")).unwrap_or(1.0);
    let at = |p: f64| (crval + (p - crpix) * step) * unit;
    let (a, b) = (at(0.5), at(n + 0.5));
    out.em_min = Some(a.min(b));
    out.em_max = Some(a.max(b));
}

/// An ISO 8601 date (`YYYY-MM-DD[Thh:mm:ss[.s]]`, optionally ending in `Z` or an offset
/// `±hh:mm`, as RFC 3339 has it) as MJD; None if it is not one.
pub fn iso_to_mjd(text: &str) -> Option<f64> {
    let text = text.trim();
    let text = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let (date, time) = text.split_once(['T', 't', ' ']).unwrap_or((text, ""));
    // An offset after the time: the time is local to it.
    let (time, offset_s) = match time.rfind(['+', '-']) {
        Some(i) if i > 0 => {
            let (t, off) = time.split_at(i);
            let sign = if off.starts_with('-') { -1.0 } else { 1.0 };
            let (h, m) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
            let (h, m): (f64, f64) = (h.parse().ok()?, m.parse().ok()?);
            (t, sign * (h * 3600.0 + m * 60.0))
        }
        _ => (time, 0.0),
    };
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(0..=9999).contains(&year) {
        return None;
    }
    let seconds = if time.is_empty() {
        0.0
    } else {
        let mut t = time.splitn(3, ':');
        let h: f64 = t.next()?.parse().ok()?;
        let m: f64 = t.next().unwrap_or("0").parse().ok()?;
        let s: f64 = t.next().unwrap_or("0").parse().ok()?;
        if !(0.0..24.0).contains(&h) || !(0.0..60.0).contains(&m) || !(0.0..61.0).contains(&s) {
            return None;
        }
        h * 3600.0 + m * 60.0 + s
    };
    // Days from 1970-01-01 (Hinnant's days_from_civil), then MJD 40587 is that day.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 + 40_587.0 + (seconds - offset_s) / 86_400.0)
}

/// An MJD as an RFC 3339 UTC time (`2026-01-01T00:00:00Z`, with milliseconds when it has
/// them); None outside years 0..=9999.
pub fn mjd_to_iso(mjd: f64) -> Option<String> {
    if !mjd.is_finite() {
        return None;
    }
    let ms_total = ((mjd - 40_587.0) * 86_400_000.0).round();
    if ms_total.abs() > 3.0e14 {
        return None;
    }
    let ms_total = ms_total as i64;
    let days = ms_total.div_euclid(86_400_000);
    let ms = ms_total.rem_euclid(86_400_000);
    // Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    Some(if milli == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::header::{Progress, parse, write};

    fn hdu(index: usize, kind: HduKind, cards: &[&str]) -> Hdu {
        let Progress::Done(header, _) = parse(&write(cards), index).unwrap() else {
            unreachable!()
        };
        Hdu {
            index,
            kind,
            header,
            data_start: 0,
            data_len: 0,
        }
    }

    #[test]
    fn dates_are_mjd() {
        assert_eq!(iso_to_mjd("1858-11-17"), Some(0.0));
        assert_eq!(iso_to_mjd("2000-01-01T12:00:00"), Some(51_544.5));
        assert_eq!(iso_to_mjd("2024-02-29T06:00:00.0Z"), Some(60_369.25));
        assert_eq!(iso_to_mjd("2024-02-29T08:30:00+02:30"), Some(60_369.25));
        assert_eq!(iso_to_mjd("2024-02-29T00:00:00-06:00"), Some(60_369.25));
        assert_eq!(
            mjd_to_iso(60_369.25).as_deref(),
            Some("2024-02-29T06:00:00Z")
        );
        assert_eq!(mjd_to_iso(0.0).as_deref(), Some("1858-11-17T00:00:00Z"));
        assert_eq!(
            mjd_to_iso(51_544.500_005_787).as_deref(),
            Some("2000-01-01T12:00:00.500Z")
        );
        for mjd in [0.0, 40_587.0, 51_544.5, 61_041.123_456] {
            let back = iso_to_mjd(&mjd_to_iso(mjd).unwrap()).unwrap();
            assert!((back - mjd).abs() < 1e-8, "{mjd} {back}");
        }
        assert_eq!(iso_to_mjd("12/03/98"), None);
        assert_eq!(iso_to_mjd("2024-13-01"), None);
    }

    #[test]
    fn an_image_with_a_wcs_and_a_date_gets_every_field() {
        let primary = hdu(
            0,
            HduKind::Image,
            &[
                "SIMPLE  = T",
                "BITPIX  = 8",
                "NAXIS   = 0",
                "TELESCOP= 'HST'",
                "INSTRUME= 'ACS'",
                "OBJECT  = 'M51'",
                "DATE-OBS= '2005-01-20T10:00:00'",
                "EXPTIME = 600.0",
                "CALIBLEV= 2",
            ],
        );
        let sci = hdu(
            1,
            HduKind::Image,
            &[
                "XTENSION= 'IMAGE'",
                "BITPIX  = -32",
                "NAXIS   = 2",
                "NAXIS1  = 100",
                "NAXIS2  = 100",
                "EXTNAME = 'SCI'",
                "CTYPE1  = 'RA---TAN'",
                "CTYPE2  = 'DEC--TAN'",
                "CRPIX1  = 50.5",
                "CRPIX2  = 50.5",
                "CRVAL1  = 202.4696",
                "CRVAL2  = 47.1953",
                "CDELT1  = -0.0001",
                "CDELT2  = 0.0001",
            ],
        );
        let o = derive(&[primary, sci]);
        assert_eq!(o.dataproduct_type.as_deref(), Some("image"));
        assert_eq!(o.target_name.as_deref(), Some("M51"));
        assert_eq!(o.facility_name.as_deref(), Some("HST"));
        assert_eq!(o.instrument_name.as_deref(), Some("ACS"));
        assert_eq!(o.calib_level, Some(2));
        assert!((o.s_ra.unwrap() - 202.4696).abs() < 1e-9);
        assert!((o.s_dec.unwrap() - 47.1953).abs() < 1e-9);
        // 100 × 0.0001° square: its diagonal.
        assert!(
            (o.s_fov.unwrap() - 0.01 * 2f64.sqrt()).abs() < 1e-6,
            "{:?}",
            o.s_fov
        );
        assert_eq!(o.s_region.as_ref().unwrap().len(), 4);
        let t0 = iso_to_mjd("2005-01-20T10:00:00").unwrap();
        assert_eq!(o.t_min, Some(t0));
        assert!((o.t_max.unwrap() - (t0 + 600.0 / 86_400.0)).abs() < 1e-12);
        assert_eq!(o.t_exptime, Some(600.0));
        assert_eq!(o.hdus.len(), 2);
        assert_eq!(o.hdus[1].name.as_deref(), Some("SCI"));
        assert_eq!(o.hdus[1].shape, vec![100, 100]);
        assert!(o.notes.is_empty(), "{:?}", o.notes);
    }

    #[test]
    fn what_cannot_be_derived_is_noted() {
        let table = hdu(
            0,
            HduKind::Image,
            &["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0"],
        );
        let bin = hdu(
            1,
            HduKind::BinTable,
            &[
                "XTENSION= 'BINTABLE'",
                "BITPIX  = 8",
                "NAXIS   = 2",
                "NAXIS1  = 8",
                "NAXIS2  = 10",
                "PCOUNT  = 0",
                "GCOUNT  = 1",
                "TFIELDS = 1",
                "DATE-OBS= '12/03/98'",
            ],
        );
        let o = derive(&[table, bin]);
        assert!(o.s_ra.is_none() && o.t_min.is_none());
        assert!(
            o.notes.iter().any(|n| n.contains("no image HDU")),
            "{:?}",
            o.notes
        );
        assert!(
            o.notes.iter().any(|n| n.contains("12/03/98")),
            "{:?}",
            o.notes
        );

        let image = hdu(
            0,
            HduKind::Image,
            &[
                "SIMPLE  = T",
                "BITPIX  = 8",
                "NAXIS   = 2",
                "NAXIS1  = 10",
                "NAXIS2  = 10",
            ],
        );
        let o = derive(&[image]);
        assert_eq!(o.dataproduct_type.as_deref(), Some("image"));
        assert!(
            o.notes.iter().any(|n| n.contains("CTYPE1")),
            "{:?}",
            o.notes
        );
    }

    #[test]
    fn a_cube_with_a_wavelength_axis_gets_its_band() {
        let cube = hdu(
            0,
            HduKind::Image,
            &[
                "SIMPLE  = T",
                "BITPIX  = -32",
                "NAXIS   = 3",
                "NAXIS1  = 20",
                "NAXIS2  = 20",
                "NAXIS3  = 100",
                "CTYPE3  = 'WAVE'",
                "CUNIT3  = 'nm'",
                "CRPIX3  = 1.0",
                "CRVAL3  = 500.0",
                "CDELT3  = 1.0",
            ],
        );
        let o = derive(&[cube]);
        assert_eq!(o.dataproduct_type.as_deref(), Some("cube"));
        assert!((o.em_min.unwrap() - 499.5e-9).abs() < 1e-15);
        assert!((o.em_max.unwrap() - 599.5e-9).abs() < 1e-15);
    }
}

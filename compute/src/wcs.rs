//! Sky positions of image pixels: the celestial world coordinate system of a FITS header
//! (Greisen & Calabretta 2002, "WCS paper I"; Calabretta & Greisen 2002, "paper II"), for the
//! science index (the centre, footprint and field of an image).
//!
//! Linear part: `CDi_j`, else `PCi_j` with `CDELTi`, else the old `CROTA2` with `CDELTi`.
//! Projections: the zenithal TAN (and its `-SIP`/`-TPV` variants, whose distortion terms are
//! ignored: the footprint is off by the distortion, a few pixels at most), SIN (without its
//! oblique parameters), ARC, STG and ZEA, and the cylindrical CAR. Frames: equatorial (ICRS,
//! FK5 — the same to 20 mas — or none said) and galactic, converted to ICRS. Anything else
//! (FK4, ecliptic, other projections, celestial axes that are not the first two) is refused
//! with the reason, which the index records.

use crate::header::Header;

/// The celestial WCS of a header's first two axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Wcs {
    crpix: [f64; 2],
    /// The linear transform from pixel offsets to intermediate world coordinates (degrees).
    cd: [[f64; 2]; 2],
    /// Which axis (0 or 1) holds the longitude.
    lon_axis: usize,
    projection: Projection,
    frame: Frame,
    /// The native longitude and latitude of the celestial pole (degrees): φp, and the
    /// celestial coordinates of the native pole αp, δp.
    phi_p: f64,
    alpha_p: f64,
    delta_p: f64,
}

/// The projections this module knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    Tan,
    Sin,
    Arc,
    Stg,
    Zea,
    Car,
}

impl Projection {
    fn parse(code: &str) -> Option<Projection> {
        Some(match code {
            "TAN" => Projection::Tan,
            "SIN" => Projection::Sin,
            "ARC" => Projection::Arc,
            "STG" => Projection::Stg,
            "ZEA" => Projection::Zea,
            "CAR" => Projection::Car,
            _ => return None,
        })
    }

    /// θ0, the native latitude of the reference point.
    fn theta0(self) -> f64 {
        match self {
            Projection::Car => 0.0,
            _ => 90.0,
        }
    }

    /// Intermediate world coordinates (x, y, degrees) to native spherical (φ, θ); None
    /// outside the projection's domain.
    fn native(self, x: f64, y: f64) -> Option<(f64, f64)> {
        if self == Projection::Car {
            return Some((x, y));
        }
        let r = x.hypot(y);
        let phi = if r == 0.0 {
            0.0
        } else {
            x.atan2(-y).to_degrees()
        };
        let rad = r.to_radians();
        let theta = match self {
            Projection::Tan => 1.0f64.atan2(rad).to_degrees(),
            Projection::Sin => {
                if rad > 1.0 {
                    return None;
                }
                rad.acos().to_degrees()
            }
            Projection::Arc => 90.0 - r,
            Projection::Stg => 90.0 - 2.0 * (rad / 2.0).atan().to_degrees(),
            Projection::Zea => {
                if rad / 2.0 > 1.0 {
                    return None;
                }
                90.0 - 2.0 * (rad / 2.0).asin().to_degrees()
            }
            Projection::Car => unreachable!(),
        };
        if !(-90.0..=90.0).contains(&theta) {
            return None;
        }
        Some((phi, theta))
    }
}

/// The celestial frame of the axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// RA/Dec in ICRS or FK5 (J2000).
    Equatorial,
    Galactic,
}

fn real(h: &Header, key: &str) -> Option<f64> {
    h.real(key).filter(|v| v.is_finite())
}

impl Wcs {
    /// The celestial WCS of `h`'s first two axes, or why there is none.
    pub fn from_header(h: &Header) -> Result<Wcs, String> {
        let ctype = |i: usize| h.str(&format!("CTYPE{i}")).map(str::trim);
        let (Some(c1), Some(c2)) = (ctype(1), ctype(2)) else {
            return Err("no celestial WCS: CTYPE1 and CTYPE2 are not both set".into());
        };
        let axis = |c: &str| -> (String, String) {
            // `RA---TAN`, `DEC--TAN-SIP`: 4 characters of coordinate, '-', the projection.
            let cut = c.char_indices().nth(4).map_or(c.len(), |(i, _)| i);
            let (coord, rest) = c.split_at(cut);
            let coord = coord.trim_end_matches('-').to_string();
            let code = rest.trim_start_matches('-');
            let code = code.split('-').next().unwrap_or("").to_string();
            (coord, code)
        };
        let (a1, p1) = axis(c1);
        let (a2, p2) = axis(c2);
        let (lon_axis, frame) = match (a1.as_str(), a2.as_str()) {
            ("RA", "DEC") => (0, Frame::Equatorial),
            ("DEC", "RA") => (1, Frame::Equatorial),
            ("GLON", "GLAT") => (0, Frame::Galactic),
            ("GLAT", "GLON") => (1, Frame::Galactic),
            _ => {
                return Err(format!(
                    "no celestial WCS on axes 1 and 2 this index reads (CTYPE1 = '{c1}', CTYPE2 = '{c2}')"
                ));
            }
        };
        if p1 != p2 {
            return Err(format!(
                "CTYPE1 and CTYPE2 name different projections ('{c1}', '{c2}')"
            ));
        }
        let projection = Projection::parse(&p1).ok_or_else(|| {
            format!("projection '{p1}' is not one this index reads (TAN, SIN, ARC, STG, ZEA, CAR)")
        })?;
        if frame == Frame::Equatorial {
            let radesys = h
                .str("RADESYS")
                .or_else(|| h.str("RADECSYS"))
                .map(str::trim);
            let equinox = real(h, "EQUINOX").or_else(|| real(h, "EPOCH"));
            match radesys {
                Some("ICRS" | "FK5") => {}
                Some(other) => {
                    return Err(format!(
                        "RADESYS '{other}' is not one this index reads (ICRS, FK5)"
                    ));
                }
                None if matches!(equinox, Some(e) if e < 1984.0) => {
                    return Err("EQUINOX before 1984 without RADESYS means FK4, which this index does not read".into());
                }
                None => {}
            }
        }
        if h.get("PV2_1").is_some() && projection == Projection::Sin {
            let (xi, eta) = (
                real(h, "PV2_1").unwrap_or(0.0),
                real(h, "PV2_2").unwrap_or(0.0),
            );
            if xi != 0.0 || eta != 0.0 {
                return Err("SIN with oblique parameters (PV2_1, PV2_2) is not read".into());
            }
        }
        let need = |key: String| real(h, &key).ok_or_else(|| format!("{key} is missing"));
        let crpix = [need("CRPIX1".into())?, need("CRPIX2".into())?];
        let crval = [need("CRVAL1".into())?, need("CRVAL2".into())?];
        let cd = linear(h)?;
        let det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
        if det == 0.0 || !det.is_finite() {
            return Err("the pixel-to-world matrix (CD or PC × CDELT) is singular".into());
        }
        let (lon0, lat0) = (crval[lon_axis], crval[1 - lon_axis]);
        if !(-90.0..=90.0).contains(&lat0) {
            return Err(format!(
                "a reference latitude of {lat0}° is not on the sphere"
            ));
        }
        let theta0 = projection.theta0();
        let phi0 = 0.0;
        let phi_p = real(h, "LONPOLE").unwrap_or(if lat0 >= theta0 { 0.0 } else { 180.0 });
        let lat_pole = real(h, "LATPOLE").unwrap_or(90.0);
        let (alpha_p, delta_p) = if theta0 == 90.0 {
            (lon0, lat0)
        } else {
            native_pole(lon0, lat0, phi0, theta0, phi_p, lat_pole)
                .ok_or("no celestial pole satisfies CRVAL, LONPOLE and LATPOLE")?
        };
        Ok(Wcs {
            crpix,
            cd,
            lon_axis,
            projection,
            frame,
            phi_p,
            alpha_p,
            delta_p,
        })
    }

    /// The projection.
    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// ICRS right ascension (0..360) and declination of the pixel (`p1`, `p2`; FITS
    /// convention: the first pixel's centre is 1.0), in degrees; None outside the projection.
    pub fn pixel_to_world(&self, p1: f64, p2: f64) -> Option<(f64, f64)> {
        let d = [p1 - self.crpix[0], p2 - self.crpix[1]];
        let xi = [
            self.cd[0][0] * d[0] + self.cd[0][1] * d[1],
            self.cd[1][0] * d[0] + self.cd[1][1] * d[1],
        ];
        let (x, y) = (xi[self.lon_axis], xi[1 - self.lon_axis]);
        let (phi, theta) = self.projection.native(x, y)?;
        let (lon, lat) = rotate(phi, theta, self.phi_p, self.alpha_p, self.delta_p);
        let (ra, dec) = match self.frame {
            Frame::Equatorial => (lon, lat),
            Frame::Galactic => galactic_to_icrs(lon, lat),
        };
        (ra.is_finite() && dec.is_finite()).then(|| (ra.rem_euclid(360.0), dec))
    }
}

/// The linear transform: CD, else PC with CDELT, else CROTA2 with CDELT.
fn linear(h: &Header) -> Result<[[f64; 2]; 2], String> {
    let key = |p: &str, i: usize, j: usize| format!("{p}{i}_{j}");
    let any = |p: &str| (1..=2).any(|i| (1..=2).any(|j| h.get(&key(p, i, j)).is_some()));
    if any("CD") {
        let mut cd = [[0.0; 2]; 2];
        for (i, row) in cd.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = real(h, &key("CD", i + 1, j + 1)).unwrap_or(0.0);
            }
        }
        return Ok(cd);
    }
    let cdelt = [
        real(h, "CDELT1").ok_or("neither CD nor CDELT1 is set")?,
        real(h, "CDELT2").ok_or("neither CD nor CDELT2 is set")?,
    ];
    let pc = if any("PC") {
        let mut pc = [[1.0, 0.0], [0.0, 1.0]];
        for (i, row) in pc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                if let Some(x) = real(h, &key("PC", i + 1, j + 1)) {
                    *v = x;
                }
            }
        }
        pc
    } else if let Some(rho) = real(h, "CROTA2").filter(|r| *r != 0.0) {
        // Paper II, section 6.1: CROTA2 turns the latitude axis.
        let (s, c) = rho.to_radians().sin_cos();
        let r = cdelt[1] / cdelt[0];
        [[c, -s * r], [s / r, c]]
    } else {
        [[1.0, 0.0], [0.0, 1.0]]
    };
    Ok([
        [cdelt[0] * pc[0][0], cdelt[0] * pc[0][1]],
        [cdelt[1] * pc[1][0], cdelt[1] * pc[1][1]],
    ])
}

/// The celestial coordinates (αp, δp) of the native pole (paper II, section 2.4).
fn native_pole(
    alpha0: f64,
    delta0: f64,
    phi0: f64,
    theta0: f64,
    phi_p: f64,
    lat_pole: f64,
) -> Option<(f64, f64)> {
    let (st0, ct0) = theta0.to_radians().sin_cos();
    let dphi = (phi_p - phi0).to_radians();
    let a = st0.atan2(ct0 * dphi.cos()).to_degrees();
    let cos_b = delta0.to_radians().sin() / (1.0 - ct0 * ct0 * dphi.sin().powi(2)).sqrt();
    if !(-1.0 - 1e-12..=1.0 + 1e-12).contains(&cos_b) {
        return None;
    }
    let b = cos_b.clamp(-1.0, 1.0).acos().to_degrees();
    let candidates = [a + b, a - b]
        .into_iter()
        .filter(|d| (-90.0 - 1e-10..=90.0 + 1e-10).contains(d));
    let delta_p = candidates
        .min_by(|x, y| (x - lat_pole).abs().total_cmp(&(y - lat_pole).abs()))?
        .clamp(-90.0, 90.0);
    let alpha_p = if (delta_p - 90.0).abs() < 1e-10 {
        alpha0 + phi_p - phi0 - 180.0
    } else if (delta_p + 90.0).abs() < 1e-10 {
        alpha0 - phi_p + phi0
    } else {
        let (sd0, cd0) = delta0.to_radians().sin_cos();
        let (sdp, cdp) = delta_p.to_radians().sin_cos();
        alpha0
            - (dphi.sin() * ct0 / cd0)
                .atan2((st0 - sdp * sd0) / (cdp * cd0))
                .to_degrees()
    };
    Some((alpha_p, delta_p))
}

/// Native (φ, θ) to celestial (α, δ) (paper II, equation 2).
fn rotate(phi: f64, theta: f64, phi_p: f64, alpha_p: f64, delta_p: f64) -> (f64, f64) {
    let (st, ct) = theta.to_radians().sin_cos();
    let (sdp, cdp) = delta_p.to_radians().sin_cos();
    let dphi = (phi - phi_p).to_radians();
    let alpha = alpha_p
        + (-ct * dphi.sin())
            .atan2(st * cdp - ct * sdp * dphi.cos())
            .to_degrees();
    let delta = (st * sdp + ct * cdp * dphi.cos())
        .clamp(-1.0, 1.0)
        .asin()
        .to_degrees();
    (alpha, delta)
}

/// Galactic (l, b) to ICRS (α, δ), degrees: the rotation of the Hipparcos catalogue
/// (ESA 1997, vol. 1, section 1.5.3), the transpose of its ICRS-to-galactic matrix.
fn galactic_to_icrs(l: f64, b: f64) -> (f64, f64) {
    const AG: [[f64; 3]; 3] = [
        [
            -0.054_875_560_416_215_4,
            -0.873_437_090_234_885,
            -0.483_835_015_548_713_2,
        ],
        [
            0.494_109_427_875_583_7,
            -0.444_829_629_960_011_2,
            0.746_982_244_497_219,
        ],
        [
            -0.867_666_149_019_004_7,
            -0.198_076_373_431_201_5,
            0.455_983_776_175_066_9,
        ],
    ];
    let (sl, cl) = l.to_radians().sin_cos();
    let (sb, cb) = b.to_radians().sin_cos();
    let g = [cb * cl, cb * sl, sb];
    let r: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| AG[j][i] * g[j]).sum())
        .collect();
    let ra = r[1].atan2(r[0]).to_degrees();
    let dec = r[2].clamp(-1.0, 1.0).asin().to_degrees();
    (ra, dec)
}

/// The great-circle distance between two sky positions, degrees.
pub fn separation((a1, d1): (f64, f64), (a2, d2): (f64, f64)) -> f64 {
    let (sd1, cd1) = d1.to_radians().sin_cos();
    let (sd2, cd2) = d2.to_radians().sin_cos();
    let da = (a2 - a1).to_radians();
    // Vincenty's formula: well-conditioned at all distances.
    let num = ((cd2 * da.sin()).powi(2) + (cd1 * sd2 - sd1 * cd2 * da.cos()).powi(2)).sqrt();
    let den = sd1 * sd2 + cd1 * cd2 * da.cos();
    num.atan2(den).to_degrees()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(cards: &[&str]) -> Header {
        match crate::header::parse(&crate::header::write(cards), 0).unwrap() {
            crate::header::Progress::Done(h, _) => h,
            crate::header::Progress::More => unreachable!(),
        }
    }

    #[test]
    fn the_reference_pixel_is_the_reference_value() {
        for proj in ["TAN", "SIN", "ARC", "STG", "ZEA", "CAR"] {
            let h = header(&[
                &format!("CTYPE1  = 'RA---{proj}'"),
                &format!("CTYPE2  = 'DEC--{proj}'"),
                "CRPIX1  = 50.5",
                "CRPIX2  = 40.0",
                "CRVAL1  = 202.4696",
                if proj == "CAR" {
                    "CRVAL2  = 0.0"
                } else {
                    "CRVAL2  = 47.1953"
                },
                "CDELT1  = -0.001",
                "CDELT2  = 0.001",
            ]);
            let w = Wcs::from_header(&h).unwrap();
            let (ra, dec) = w.pixel_to_world(50.5, 40.0).unwrap();
            assert!((ra - 202.4696).abs() < 1e-9, "{proj}: {ra}");
            let want = if proj == "CAR" { 0.0 } else { 47.1953 };
            assert!((dec - want).abs() < 1e-9, "{proj}: {dec}");
        }
    }

    #[test]
    fn a_tan_offset_matches_the_gnomonic_formula() {
        // One degree east of (0, 0) on the tangent plane: atan(tan 1°) = 1° at dec 0.
        let h = header(&[
            "CTYPE1  = 'RA---TAN'",
            "CTYPE2  = 'DEC--TAN'",
            "CRPIX1  = 0.0",
            "CRPIX2  = 0.0",
            "CRVAL1  = 0.0",
            "CRVAL2  = 0.0",
            "CD1_1   = 1.0",
            "CD2_2   = 1.0",
        ]);
        let w = Wcs::from_header(&h).unwrap();
        let x = 1f64.to_radians().tan().to_degrees();
        let (ra, dec) = w.pixel_to_world(x, 0.0).unwrap();
        assert!((ra - 1.0).abs() < 1e-9 && dec.abs() < 1e-9, "{ra} {dec}");
    }

    #[test]
    fn what_is_not_read_says_why() {
        let no = |cards: &[&str]| Wcs::from_header(&header(cards)).unwrap_err();
        assert!(no(&["NAXIS   = 2"]).contains("CTYPE1"));
        let fk4 = no(&[
            "CTYPE1  = 'RA---TAN'",
            "CTYPE2  = 'DEC--TAN'",
            "RADESYS = 'FK4'",
        ]);
        assert!(fk4.contains("FK4"), "{fk4}");
        let ait = no(&["CTYPE1  = 'RA---AIT'", "CTYPE2  = 'DEC--AIT'"]);
        assert!(ait.contains("AIT"), "{ait}");
        let missing = no(&[
            "CTYPE1  = 'RA---TAN'",
            "CTYPE2  = 'DEC--TAN'",
            "CRPIX1  = 1",
        ]);
        assert!(missing.contains("CRPIX2"), "{missing}");
    }

    #[test]
    fn separations_are_great_circle_distances() {
        assert!((separation((0.0, 0.0), (90.0, 0.0)) - 90.0).abs() < 1e-12);
        assert!((separation((10.0, 89.0), (190.0, 89.0)) - 2.0).abs() < 1e-9);
        assert!(separation((359.9999, 0.0), (0.0001, 0.0)) < 0.00021);
    }
}

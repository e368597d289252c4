//! The index's sky positions against astropy.wcs: headers as missions write them (every
//! projection the index reads, CD and PC matrices, a rotated and flipped CD, the old CROTA2,
//! axes in either order, an explicit LONPOLE, an oblique CAR, galactic axes, SIP terms that
//! are tolerated and left out), each pixel's ICRS position compared with what
//! `compute/tests/wcs_astropy.py` gets from astropy (core WCS, `wcs_pix2world`).
//!
//! Tolerance: 1 milliarcsecond (equatorial; both sides compute in float64), 0.1 arcsecond
//! for galactic axes (astropy defines the galactic frame through FK4/FK5, the index by the
//! Hipparcos rotation: they differ by a few tens of milliarcseconds).
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block

mod common;

use archway_compute::header::{Progress, parse, write};
use archway_compute::wcs::{Wcs, separation};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    cards: Vec<String>,
    /// NAXIS1, NAXIS2: the corners, the centre and a grid between them are compared.
    size: (f64, f64),
    galactic: bool,
}

fn case(name: &'static str, size: (u32, u32), cards: &[&str]) -> Case {
    let mut all = vec![
        "SIMPLE  = T".to_string(),
        "BITPIX  = -32".into(),
        "NAXIS   = 2".into(),
        format!("NAXIS1  = {}", size.0),
        format!("NAXIS2  = {}", size.1),
    ];
    all.extend(cards.iter().map(|c| c.to_string()));
    Case {
        name,
        cards: all,
        size: (size.0 as f64, size.1 as f64),
        galactic: cards.iter().any(|c| c.contains("GLON")),
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "tan-cd-rotated-flipped",
            (2048, 4096),
            &[
                "CTYPE1  = 'RA---TAN'",
                "CTYPE2  = 'DEC--TAN'",
                "CRPIX1  = 1024.5",
                "CRPIX2  = 2048.5",
                "CRVAL1  = 359.95",
                "CRVAL2  = -12.3",
                // 0.2"/px, turned 33 degrees, east to the right (a flipped x).
                "CD1_1   = 4.6588E-05",
                "CD1_2   = 3.0255E-05",
                "CD2_1   = 3.0255E-05",
                "CD2_2   = -4.6588E-05",
                "RADESYS = 'ICRS'",
            ],
        ),
        case(
            "tan-sip",
            (1000, 800),
            &[
                "CTYPE1  = 'RA---TAN-SIP'",
                "CTYPE2  = 'DEC--TAN-SIP'",
                "CRPIX1  = 500.0",
                "CRPIX2  = 400.0",
                "CRVAL1  = 150.1",
                "CRVAL2  = 2.2",
                "CD1_1   = -0.0001",
                "CD1_2   = 0.0",
                "CD2_1   = 0.0",
                "CD2_2   = 0.0001",
                "A_ORDER = 2",
                "B_ORDER = 2",
                "A_2_0   = 1.0E-6",
                "B_0_2   = -2.0E-6",
                "RADESYS = 'FK5'",
                "EQUINOX = 2000.0",
            ],
        ),
        case(
            "sin-pc-high-dec",
            (512, 512),
            &[
                "CTYPE1  = 'RA---SIN'",
                "CTYPE2  = 'DEC--SIN'",
                "CRPIX1  = 257.0",
                "CRPIX2  = 257.0",
                "CRVAL1  = 83.63",
                "CRVAL2  = 85.0",
                "CDELT1  = -0.002",
                "CDELT2  = 0.002",
                "PC1_1   = 0.8660254",
                "PC1_2   = -0.5",
                "PC2_1   = 0.5",
                "PC2_2   = 0.8660254",
            ],
        ),
        case(
            "arc-crota2",
            (300, 200),
            &[
                "CTYPE1  = 'RA---ARC'",
                "CTYPE2  = 'DEC--ARC'",
                "CRPIX1  = 150.5",
                "CRPIX2  = 100.5",
                "CRVAL1  = 10.0",
                "CRVAL2  = -60.0",
                "CDELT1  = -0.05",
                "CDELT2  = 0.04",
                "CROTA2  = 20.0",
            ],
        ),
        case(
            "stg",
            (400, 400),
            &[
                "CTYPE1  = 'RA---STG'",
                "CTYPE2  = 'DEC--STG'",
                "CRPIX1  = 200.5",
                "CRPIX2  = 200.5",
                "CRVAL1  = 266.4",
                "CRVAL2  = -28.9",
                "CDELT1  = -0.1",
                "CDELT2  = 0.1",
            ],
        ),
        case(
            "zea-south-pole",
            (600, 600),
            &[
                "CTYPE1  = 'RA---ZEA'",
                "CTYPE2  = 'DEC--ZEA'",
                "CRPIX1  = 300.5",
                "CRPIX2  = 300.5",
                "CRVAL1  = 0.0",
                "CRVAL2  = -90.0",
                "CDELT1  = -0.1",
                "CDELT2  = 0.1",
            ],
        ),
        case(
            "car-all-sky",
            (720, 360),
            &[
                "CTYPE1  = 'RA---CAR'",
                "CTYPE2  = 'DEC--CAR'",
                "CRPIX1  = 360.5",
                "CRPIX2  = 180.5",
                "CRVAL1  = 180.0",
                "CRVAL2  = 0.0",
                "CDELT1  = -0.5",
                "CDELT2  = 0.5",
            ],
        ),
        case(
            "car-oblique",
            (200, 100),
            &[
                "CTYPE1  = 'RA---CAR'",
                "CTYPE2  = 'DEC--CAR'",
                "CRPIX1  = 100.5",
                "CRPIX2  = 50.5",
                "CRVAL1  = 45.0",
                "CRVAL2  = 30.0",
                "CDELT1  = -0.1",
                "CDELT2  = 0.1",
            ],
        ),
        case(
            "dec-ra-swapped",
            (256, 128),
            &[
                "CTYPE1  = 'DEC--TAN'",
                "CTYPE2  = 'RA---TAN'",
                "CRPIX1  = 64.0",
                "CRPIX2  = 128.0",
                "CRVAL1  = 41.27",
                "CRVAL2  = 10.68",
                "CDELT1  = 0.001",
                "CDELT2  = -0.001",
            ],
        ),
        case(
            "tan-lonpole",
            (256, 256),
            &[
                "CTYPE1  = 'RA---TAN'",
                "CTYPE2  = 'DEC--TAN'",
                "CRPIX1  = 128.5",
                "CRPIX2  = 128.5",
                "CRVAL1  = 120.0",
                "CRVAL2  = 40.0",
                "CDELT1  = -0.01",
                "CDELT2  = 0.01",
                "LONPOLE = 170.0",
            ],
        ),
        case(
            "galactic-tan",
            (500, 500),
            &[
                "CTYPE1  = 'GLON-TAN'",
                "CTYPE2  = 'GLAT-TAN'",
                "CRPIX1  = 250.5",
                "CRPIX2  = 250.5",
                "CRVAL1  = 30.0",
                "CRVAL2  = 2.5",
                "CDELT1  = -0.01",
                "CDELT2  = 0.01",
            ],
        ),
        case(
            "galactic-car",
            (360, 180),
            &[
                "CTYPE1  = 'GLON-CAR'",
                "CTYPE2  = 'GLAT-CAR'",
                "CRPIX1  = 180.5",
                "CRPIX2  = 90.5",
                "CRVAL1  = 0.0",
                "CRVAL2  = 0.0",
                "CDELT1  = -1.0",
                "CDELT2  = 1.0",
            ],
        ),
    ]
}

/// The pixels compared: the image's corners (pixel edges), its centre and a 5 × 5 grid.
fn pixels((n1, n2): (f64, f64)) -> Vec<(f64, f64)> {
    let mut out = vec![
        (0.5, 0.5),
        (n1 + 0.5, 0.5),
        (n1 + 0.5, n2 + 0.5),
        (0.5, n2 + 0.5),
        ((n1 + 1.0) / 2.0, (n2 + 1.0) / 2.0),
    ];
    for i in 0..5 {
        for j in 0..5 {
            out.push((
                1.0 + (n1 - 1.0) * i as f64 / 4.0,
                1.0 + (n2 - 1.0) * j as f64 / 4.0,
            ));
        }
    }
    out
}

#[test]
fn sky_positions_agree_with_astropy() {
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            let px: Vec<[f64; 2]> = pixels(c.size).iter().map(|p| [p.0, p.1]).collect();
            json!({"name": c.name, "cards": c.cards, "pixels": px})
        })
        .collect();
    let expected = common::astropy("wcs_astropy.py", &Value::Array(input));
    let mut worst = Vec::new();
    for c in &cases {
        let bytes = write(&c.cards);
        let Progress::Done(header, _) = parse(&bytes, 0).unwrap() else {
            panic!("{}: header not complete", c.name)
        };
        let wcs = Wcs::from_header(&header).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let tolerance = if c.galactic {
            0.1 / 3600.0
        } else {
            0.001 / 3600.0
        };
        let mut max: f64 = 0.0;
        for (p, want) in pixels(c.size)
            .iter()
            .zip(expected[c.name].as_array().unwrap())
        {
            let want = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
            let got = wcs
                .pixel_to_world(p.0, p.1)
                .unwrap_or_else(|| panic!("{}: {p:?} outside the projection", c.name));
            let off = separation(got, want);
            assert!(
                off <= tolerance,
                "{} at pixel {p:?}: index {got:?}, astropy {want:?}, {:.3} mas apart",
                c.name,
                off * 3.6e6
            );
            max = max.max(off);
        }
        worst.push(format!("{} {:.3} mas", c.name, max * 3.6e6));
    }
    eprintln!("largest difference per case: {}", worst.join(", "));
}

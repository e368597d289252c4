//! Archway's reductions against astropy + numpy on stored fixtures (every BITPIX, unsigned and
//! scaled integers, BLANK and NaN, HDUs by index and EXTNAME; a binary table with every numeric
//! column type, TSCAL/TZERO, TNULL, a repeat count, logicals and a variable-length column). `fixtures/make_fixtures.py`
//! regenerates the files and `expected.json`; this test only compares.
//!
//! Tolerance: counts and histogram counts exactly; minima and maxima to the last bit (1e-15
//! relative, for the JSON round trip of expected.json); sums, means, variances and
//! standard deviations to 1e-12 relative (both sides compute in float64; numpy's pairwise sum
//! and our compensated one differ in the last bits).
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use archway_compute::{ComputeError, Engine, Op, ReduceRequest, run};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;

mod common;

use common::{DIR, fixtures as store};

fn request(case: &Value, op: Op) -> ReduceRequest {
    ReduceRequest {
        key: case["file"].as_str().unwrap().into(),
        hdu: case["hdu"].as_str().map(str::to_string),
        column: case["column"].as_str().map(str::to_string),
        bins: case["bins"].as_u64().map(|b| b as usize),
        range: case["range"]
            .as_array()
            .map(|r| [r[0].as_f64().unwrap(), r[1].as_f64().unwrap()]),
        ..common::request("", op)
    }
}

fn close(what: &str, got: f64, want: f64) {
    let scale = want.abs().max(1e-300);
    assert!(
        (got - want).abs() / scale <= 1e-12 || got == want,
        "{what}: got {got}, numpy {want}"
    );
}

#[tokio::test]
async fn reductions_agree_with_astropy_and_numpy() {
    let store = store().await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/expected.json")).unwrap())
            .unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 51);
    for case in cases {
        let name = format!(
            "{} hdu={} column={}",
            case["file"], case["hdu"], case["column"]
        );
        if let Some(columns) = case.get("expected_columns") {
            // Per-column statistics of a table, in one request.
            let r = run(store.clone(), &request(case, Op::Stats)).await.unwrap();
            let got = r.value.as_object().unwrap();
            assert_eq!(
                got.len(),
                columns.as_object().unwrap().len(),
                "{name}: {got:?}"
            );
            for (col, want) in columns.as_object().unwrap() {
                let g = &got[col];
                assert_eq!(g["count"], want["count"], "{name} {col}");
                for k in ["sum", "mean", "var", "std", "min", "max"] {
                    close(
                        &format!("{name} {col} {k}"),
                        g[k].as_f64().unwrap(),
                        want[k].as_f64().unwrap(),
                    );
                }
            }
            continue;
        }
        let want = &case["expected"];
        let stats = run(store.clone(), &request(case, Op::Stats)).await.unwrap();
        assert_eq!(
            stats.hdu as u64,
            case["resolved_hdu"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(stats.count, want["count"].as_u64().unwrap(), "{name} count");
        assert_eq!(
            stats.missing,
            want["missing"].as_u64().unwrap(),
            "{name} missing"
        );
        for k in ["min", "max"] {
            let (got, want) = (stats.value[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            // Exact, but for serde_json's float parsing (not correctly rounded by default).
            assert!(
                (got - want).abs() <= want.abs() * 1e-15,
                "{name} {k}: {got} vs {want}"
            );
        }
        for k in ["sum", "mean", "var", "std"] {
            close(
                &format!("{name} {k}"),
                stats.value[k].as_f64().unwrap(),
                want[k].as_f64().unwrap(),
            );
        }
        // The single-value ops say the same as `stats`.
        for (op, k) in [(Op::Mean, "mean"), (Op::Std, "std"), (Op::Max, "max")] {
            let r = run(store.clone(), &request(case, op)).await.unwrap();
            assert_eq!(r.value, stats.value[k], "{name} {k}");
            assert_eq!(r.engine, Engine::Cpu);
        }
        let h = run(store.clone(), &request(case, Op::Histogram))
            .await
            .unwrap();
        assert_eq!(
            h.value["counts"], want["histogram"]["counts"],
            "{name} histogram"
        );
        let edges = h.value["edges"].as_array().unwrap();
        let want_edges = want["histogram"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), want_edges.len());
        for (a, b) in edges.iter().zip(want_edges) {
            close(
                &format!("{name} edge"),
                a.as_f64().unwrap(),
                b.as_f64().unwrap(),
            );
        }
        assert!(h.bytes_read > 0);
    }
}

#[tokio::test]
async fn bad_files_and_requests_get_errors_that_name_the_problem() {
    let store = store().await;
    let good = std::fs::read(format!("{DIR}/multi.fits")).unwrap();
    // Truncated in the middle of the last HDU's data.
    let cut = good[..good.len() - 3000].to_vec();
    store
        .put(&Path::from("cut.fits"), PutPayload::from(cut))
        .await
        .unwrap();
    // Not FITS at all.
    store
        .put(&Path::from("text.fits"), PutPayload::from(vec![b'x'; 5000]))
        .await
        .unwrap();
    let req = |key: &str, hdu: Option<&str>| ReduceRequest {
        hdu: hdu.map(str::to_string),
        engine: Engine::Auto,
        ..common::request(key, Op::Sum)
    };
    let e = run(store.clone(), &req("cut.fits", Some("ERR")))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("HDU 2") && e.to_string().contains("truncated"),
        "{e}"
    );
    let e = run(store.clone(), &req("text.fits", None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HDU 0, card 1"), "{e}");
    let e = run(store.clone(), &req("multi.fits", Some("NOPE")))
        .await
        .unwrap_err();
    assert!(matches!(e, ComputeError::NoSuchHdu { .. }));
    assert!(e.to_string().contains("SCI, ERR"), "{e}");
    let e = run(store.clone(), &req("missing.fits", None))
        .await
        .unwrap_err();
    assert!(matches!(
        e.store_error(),
        Some(object_store::Error::NotFound { .. })
    ));
    let mut cuda = req("multi.fits", None);
    cuda.engine = Engine::Cuda;
    let e = run(store.clone(), &cuda).await.unwrap_err();
    assert!(e.to_string().contains("cuda"), "{e}");
    // auto runs on the CPU and says why.
    let r = run(store.clone(), &req("multi.fits", Some("SCI")))
        .await
        .unwrap();
    assert_eq!(r.engine, Engine::Cpu);
    assert!(r.engine_note.is_some());
    // Tables: a column is named, exists and holds numbers.
    let mut t = req("table.fits", Some("EVENTS"));
    let e = run(store.clone(), &t).await.unwrap_err();
    assert!(
        e.to_string().contains("name a column") && e.to_string().contains("MAG"),
        "{e}"
    );
    t.column = Some("COLOUR".into());
    let e = run(store.clone(), &t).await.unwrap_err();
    assert!(matches!(e, ComputeError::NoSuchColumn { .. }), "{e}");
    t.column = Some("name".into());
    let e = run(store.clone(), &t).await.unwrap_err();
    assert!(e.to_string().contains("do not reduce to numbers"), "{e}");
    t.column = Some("3".into());
    assert!(run(store.clone(), &t).await.is_ok(), "columns by number");
    // ASCII tables: a field that is not a number is named with its column and row; a column
    // that does not fit in the row is named with its card.
    let ascii = std::fs::read(format!("{DIR}/ascii_table.fits")).unwrap();
    // The primary header is one block; the table's header ends at its END card's block.
    let cards = ascii[2880..]
        .chunks(80)
        .position(|c| c.starts_with(b"END "))
        .unwrap();
    let data_at = 2880 + (cards + 1).div_ceil(36) * 2880;
    let header = String::from_utf8_lossy(&ascii[2880..data_at]).to_string();
    assert!(
        header.contains("XTENSION= 'TABLE   '"),
        "layout of the fixture changed"
    );
    let naxis1: usize = card_value(&header, "NAXIS1").parse().unwrap();
    let tbcol2: usize = card_value(&header, "TBCOL2").parse().unwrap();
    let mut bad_field = ascii.clone();
    let at = data_at + 41 * naxis1 + tbcol2 - 1;
    bad_field[at..at + 12].copy_from_slice(b"  12.5x7    ");
    store
        .put(&Path::from("bad_field.fits"), PutPayload::from(bad_field))
        .await
        .unwrap();
    let mut a = req("bad_field.fits", Some("CATALOG"));
    a.column = Some("FIXED".into());
    let e = run(store.clone(), &a).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("HDU 1: column `FIXED`, row 42: '  12.5x7    ' is not a number"),
        "{e}"
    );
    a.column = None;
    a.op = Op::Stats;
    let e = run(store.clone(), &a).await.unwrap_err();
    assert!(e.to_string().contains("row 42"), "{e}");
    a.column = Some("COUNTS".into());
    assert!(
        run(store.clone(), &a).await.is_ok(),
        "other columns still read"
    );
    let text = String::from_utf8_lossy(&ascii).to_string();
    let card = text.find("TBCOL6  =").unwrap();
    let mut bad_col = ascii.clone();
    bad_col[card..card + 30].copy_from_slice(format!("TBCOL6  = {:>20}", naxis1).as_bytes());
    store
        .put(&Path::from("bad_col.fits"), PutPayload::from(bad_col))
        .await
        .unwrap();
    let mut a = req("bad_col.fits", Some("1"));
    a.column = Some("COUNTS".into());
    let e = run(store.clone(), &a).await.unwrap_err();
    assert!(
        e.to_string().contains("TBCOL6") && e.to_string().contains("does not fit"),
        "{e}"
    );
    // Random groups in the primary HDU: named (501), and sized right, so the extension
    // after them is found.
    let header = archway_compute::header::write::<&str>;
    let mut groups = header(&[
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    3",
        "NAXIS1  =                    0",
        "NAXIS2  =                    3",
        "NAXIS3  =                    1",
        "GROUPS  =                    T",
        "PCOUNT  =                    2",
        "GCOUNT  =                  100",
        "EXTEND  =                    T",
    ]);
    // 100 groups of (2 parameters + 3 values) float32: 2000 bytes, one block.
    groups.extend(vec![0x7f; 2880]);
    groups.extend(header(&[
        "XTENSION= 'IMAGE   '",
        "BITPIX  =                   16",
        "NAXIS   =                    1",
        "NAXIS1  =                    4",
        "PCOUNT  =                    0",
        "GCOUNT  =                    1",
    ]));
    let mut data = [1i16, 2, 3, 10]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect::<Vec<u8>>();
    data.resize(2880, 0);
    groups.extend(data);
    store
        .put(&Path::from("groups.fits"), PutPayload::from(groups))
        .await
        .unwrap();
    let e = run(store.clone(), &req("groups.fits", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ComputeError::Unsupported { .. }) && e.to_string().contains("random groups"),
        "{e}"
    );
    let g = run(store.clone(), &req("groups.fits", Some("1")))
        .await
        .unwrap();
    assert_eq!(g.value, serde_json::json!(16.0));
    // Only the headers and the one HDU's data were read.
    assert!(
        r.bytes_read < good.len() as u64,
        "{} of {}",
        r.bytes_read,
        good.len()
    );
}

/// The value of a header card in `header` (80-character cards), trimmed.
fn card_value<'a>(header: &'a str, keyword: &str) -> &'a str {
    let at = header
        .as_bytes()
        .chunks(80)
        .position(|c| c.starts_with(format!("{keyword:<8}=").as_bytes()))
        .unwrap();
    header[at * 80 + 10..at * 80 + 80]
        .split('/')
        .next()
        .unwrap()
        .trim()
}

/// The values of an NPY file of little-endian float64 (as numpy writes them).
fn npy(path: &str) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + len]).to_string();
    assert!(header.contains("'<f8'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<u64> = shape
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

#[tokio::test]
async fn cutouts_and_binning_agree_with_numpy() {
    use archway_compute::array::ArrayFormat;
    let store = store().await;
    let mut req = ReduceRequest {
        section: Some(vec![[5, 40], [3, 20]]),
        output: ArrayFormat::Npy,
        ..common::request("f32_nan.fits", Op::Cutout)
    };
    for (op, file) in [
        (Op::Cutout, "f32_nan_cutout.npy"),
        (Op::Bin, "f32_nan_bin.npy"),
    ] {
        req.op = op;
        if op == Op::Bin {
            req.section = None;
            req.factor = Some(vec![4, 3]);
        }
        let r = run(store.clone(), &req).await.unwrap();
        let array = r.array.unwrap();
        let (shape, want) = npy(&format!("{DIR}/{file}"));
        // numpy shows the last FITS axis first.
        let mut ours = array.shape.clone();
        ours.reverse();
        assert_eq!(ours, shape, "{file}");
        assert_eq!(array.values.len(), want.len());
        for (i, (g, w)) in array.values.iter().zip(&want).enumerate() {
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= w.abs() * 1e-12,
                "{file}[{i}]: {g} vs numpy {w}"
            );
        }
        // Our NPY reads back the same.
        let encoded = array.encode(ArrayFormat::Npy, &[]);
        let tmp = std::env::temp_dir().join(format!("archway-{}-{file}", std::process::id()));
        std::fs::write(&tmp, &encoded).unwrap();
        let (s2, v2) = npy(tmp.to_str().unwrap());
        std::fs::remove_file(&tmp).unwrap();
        assert_eq!(s2, shape);
        assert_eq!(v2.len(), want.len());
    }
    // A cutout of a tile-compressed image (20 x 20 tiles, lossless) equals the same cutout of
    // the uncompressed original, and reads only the tiles it touches.
    req.op = Op::Cutout;
    req.factor = None;
    req.section = Some(vec![[25, 38], [3, 18]]);
    req.key = "u16.fits".into();
    let plain = run(store.clone(), &req).await.unwrap().array.unwrap();
    req.key = "u16_rice_tiles.fits.fz".into();
    let tiled = run(store.clone(), &req).await.unwrap();
    let size = store
        .head(&Path::from("u16_rice_tiles.fits.fz"))
        .await
        .unwrap()
        .size;
    assert!(
        tiled.bytes_read < size / 2,
        "{} of {size} bytes read for 2 of 9 tiles",
        tiled.bytes_read
    );
    assert_eq!(tiled.array.unwrap(), plain);
    // Binning a tile-compressed image (blocks straddling tiles) equals binning the original.
    for factor in [vec![4, 3], vec![7, 5]] {
        req.op = Op::Bin;
        req.section = None;
        req.factor = Some(factor.clone());
        req.key = "u16.fits".into();
        let plain = run(store.clone(), &req).await.unwrap().array.unwrap();
        req.key = "u16_rice_tiles.fits.fz".into();
        let tiled = run(store.clone(), &req).await.unwrap().array.unwrap();
        assert_eq!(tiled, plain, "factor {factor:?}");
    }
    // The same for H-compressed tiles (20 x 16, edge tiles 4 wide; 19 x 13, odd everywhere;
    // lossless) and PLIO_1.
    for (plain_key, tiled_key) in [
        ("galaxy.fits", "galaxy_hcompress_tiles.fits.fz"),
        ("galaxy.fits", "galaxy_hcompress_odd.fits.fz"),
        ("mask.fits", "mask_plio.fits.fz"),
    ] {
        for (op, section, factor) in [
            (Op::Cutout, Some(vec![[17, 63], [10, 35]]), None),
            (Op::Bin, None, Some(vec![3, 5])),
        ] {
            req.op = op;
            req.section = section;
            req.factor = factor;
            req.key = plain_key.into();
            let plain = run(store.clone(), &req).await.unwrap().array.unwrap();
            req.key = tiled_key.into();
            let tiled = run(store.clone(), &req).await.unwrap().array.unwrap();
            assert_eq!(tiled, plain, "{tiled_key} {op:?}");
        }
    }
    req.op = Op::Cutout;
    req.factor = None;
    // Across tile edges, on a quantized image: the same values as decoding every tile.
    req.key = "f32_rice_dither1.fits.fz".into();
    req.section = Some(vec![[0, 64], [0, 48]]);
    let whole = run(store.clone(), &req).await.unwrap().array.unwrap();
    let mut sreq = req.clone();
    sreq.op = Op::Stats;
    sreq.section = None;
    let stats = run(store.clone(), &sreq).await.unwrap();
    let finite: Vec<f64> = whole
        .values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    assert_eq!(finite.len() as u64, stats.count);
    assert_eq!(
        finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        stats.value["max"].as_f64().unwrap()
    );
    req.output = ArrayFormat::Npy;
    // The cutout read only the rows it covers.
    req.key = "f32_nan.fits".into();
    req.op = Op::Cutout;
    req.section = Some(vec![[5, 40], [3, 4]]);
    req.factor = None;
    let r = run(store.clone(), &req).await.unwrap();
    assert!(
        r.bytes_read < 2 * 2880 + 1024,
        "{} bytes for one row",
        r.bytes_read
    );
    // Bad sections are named.
    req.section = Some(vec![[5, 400], [3, 4]]);
    let e = run(store.clone(), &req).await.unwrap_err();
    assert!(e.to_string().contains("axis 1"), "{e}");
}

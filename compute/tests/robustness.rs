//! Property tests for the FITS reader on hostile input: random bytes, valid files cut short
//! or with bytes flipped, and random header values. Every outcome is an answer or an error,
//! never a panic, and never an allocation sized by a header's numbers (the data's size is
//! checked against the object's before anything is read).
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::sync::Arc;

use archway_compute::{ComputeError, Op, ReduceRequest, run};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;

mod common;

use common::DIR;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

/// Reduces `bytes`; a panic in any task of the reduction comes back as `ComputeError::Task`,
/// which [`clean`] refuses.
fn reduce(
    bytes: Vec<u8>,
    hdu: Option<&str>,
    column: Option<&str>,
    op: Op,
) -> Result<(), ComputeError> {
    let section = (op == Op::Cutout).then(|| vec![[3, 41], [2, 30]]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store
            .put(&Path::from("f.fits"), PutPayload::from(bytes))
            .await
            .unwrap();
        let req = ReduceRequest {
            hdu: hdu.map(str::to_string),
            column: column.map(str::to_string),
            bins: Some(8),
            section,
            ..common::request("f.fits", op)
        };
        run(store, &req).await.map(|_| ())
    })
}

/// Whether an outcome is an answer or an error about the input — not a panic (a task that
/// failed) and not a store fault.
fn clean(r: &Result<(), ComputeError>) -> bool {
    !matches!(r, Err(ComputeError::Task(_) | ComputeError::Store(_)))
}

fn card(text: &str) -> Vec<u8> {
    format!("{text:<80}").into_bytes()
}

#[test]
fn an_empty_file_is_refused_as_not_fits() {
    let r = reduce(Vec::new(), None, None, Op::Stats);
    match r {
        Err(ComputeError::Format { message, .. }) => {
            assert!(message.contains("empty"), "{message}");
        }
        other => panic!("an empty file: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..12_000)) {
        let r = reduce(bytes, None, None, Op::Stats);
        // Random bytes are not a FITS file (it begins with `SIMPLE  =`): an error naming why.
        prop_assert!(
            matches!(r, Err(ComputeError::Format { .. } | ComputeError::Truncated { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn truncated_files_are_errors(cut in 0usize..66_240, which in 0usize..7) {
        let (name, hdu, column) = [
            ("galaxy_hcompress_tiles.fits.fz", Some("1"), None),
            ("mask_plio.fits.fz", Some("1"), None),
            ("multi.fits", Some("ERR"), None),
            ("ascii_table.fits", Some("CATALOG"), Some("DBL")),
            ("table.fits", Some("EVENTS"), Some("SPECTRUM")),
            ("scaled_blank.fits", None, None),
            ("f32_rice_dither1.fits.fz", Some("1"), None),
        ][which];
        let bytes = fixture(name);
        let cut = cut.min(bytes.len().saturating_sub(1));
        let len = bytes.len();
        let r = reduce(bytes[..cut].to_vec(), hdu, column, Op::Mean);
        // Only the padding of the last block may go missing without an error.
        prop_assert!(clean(&r), "{name} cut at {cut}: {r:?}");
        prop_assert!(r.is_err() || cut > len - 2880, "{name} cut at {cut} of {len} reduced");
    }

    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((0usize..66_240, any::<u8>()), 1..20), which in 0usize..11) {
        let (name, hdu, column) = [
            ("multi.fits", Some("SCI"), None),
            ("table.fits", Some("EVENTS"), Some("SPECTRUM")),
            ("table.fits", Some("1"), None),
            ("f32_rice_dither1.fits.fz", Some("1"), None),
            ("u16_rice_tiles.fits.fz", Some("1"), None),
            ("u8_gzip2.fits.fz", Some("1"), None),
            ("ascii_table.fits", Some("CATALOG"), Some("EXPO")),
            ("ascii_table.fits", Some("1"), None),
            ("galaxy_hcompress_tiles.fits.fz", Some("1"), None),
            ("f32_hcompress_smooth.fits.fz", Some("1"), None),
            ("mask_plio.fits.fz", Some("1"), None),
        ][which];
        // which 4 and 8: cutouts across tiles of tile-compressed files.
        let mut bytes = fixture(name);
        let len = bytes.len();
        for (at, b) in flips {
            bytes[at % len] = b;
        }
        let op = match which {
            2 | 7 => Op::Stats,
            4 | 8 => Op::Cutout,
            _ => Op::Histogram,
        };
        let r = reduce(bytes, hdu, column, op);
        prop_assert!(clean(&r), "{name}: {r:?}");
    }

    #[test]
    fn any_header_numbers_are_checked(bitpix in prop_oneof![Just(8i64), Just(16), Just(-32), any::<i64>()],
                                      naxis in -2i64..5,
                                      dims in proptest::collection::vec(any::<i64>(), 4),
                                      pcount in any::<i64>(), gcount in any::<i64>()) {
        let mut h = Vec::new();
        h.extend(card("SIMPLE  =                    T"));
        h.extend(card(&format!("BITPIX  = {bitpix:>20}")));
        h.extend(card(&format!("NAXIS   = {naxis:>20}")));
        for (i, d) in dims.iter().enumerate() {
            h.extend(card(&format!("NAXIS{}  = {d:>20}", i + 1)));
        }
        h.extend(card(&format!("PCOUNT  = {pcount:>20}")));
        h.extend(card(&format!("GCOUNT  = {gcount:>20}")));
        h.extend(card("END"));
        h.resize(2880 * 2, 0);
        let r = reduce(h, Some("0"), None, Op::Sum);
        prop_assert!(clean(&r), "{r:?}");
        // A BITPIX the standard does not define, or a negative axis, is never accepted.
        let valid_bitpix = [8, 16, 32, 64, -32, -64].contains(&bitpix);
        let axes = usize::try_from(naxis).unwrap_or(0).min(dims.len());
        if !valid_bitpix || naxis < 0 || dims[..axes].iter().any(|d| *d < 0) {
            prop_assert!(r.is_err(), "bitpix {bitpix}, naxis {naxis}, dims {dims:?} accepted");
        }
    }
}

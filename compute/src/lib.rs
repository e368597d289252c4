//! Archway's compute path: decode and reduce science data where it is stored.
//!
//! Kernels are pure: they take bytes and a spec and return mergeable partial results
//! ([`reduce`]). [`run`] drives them over an object read by ranges ([`hdu::Source`], through
//! whatever cache wraps the store): it finds the HDU by reading headers only, cuts the data
//! into chunks, fetches a bounded number at a time and reduces them on all cores, merging as
//! they finish — one pass, memory bounded by `parallelism × CHUNK`, whatever the file size.
//!
//! Reads FITS headers (CONTINUE, HIERARCH), images of every BITPIX with BSCALE/BZERO and
//! BLANK/NaN, binary table columns (fixed and heap arrays), and tile-compressed images (Rice,
//! gzip, quantized floats). Computes moments, histograms, quantiles (exact or bounded), per
//! column statistics, cutouts and binning, on the CPU or (feature `cuda`) the GPU, for one
//! object or a batch over a prefix and glob. See `doc/compute.md`.

//!
//! Layout: [`request`] holds what a reduction is asked and answers, [`runner`] drives one
//! over an object (engines, chunks, merging), `cutout.rs` and `quantile.rs` the reductions
//! that read the data in more than one pass, [`batch`] the reductions over many objects.

pub mod array;
pub mod batch;
#[cfg(feature = "cuda")]
pub mod cuda;
mod cutout;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hcompress;
pub mod hdu;
pub mod header;
pub mod image;
pub mod obscore;
mod quantile;
pub mod quicklook;
pub mod reduce;
pub mod request;
pub mod runner;
pub mod table;
pub mod tiled;
pub mod wcs;

pub use batch::{BatchEvent, BatchFormat, BatchRequest, Selection};
pub use error::ComputeError;
pub use hdu::{Hdu, HduKind, HduSelector, Source};
pub use reduce::{Histogram, Moments, Op};
pub use request::{Engine, Hop, ReduceRequest, Reduction};
pub use runner::run;

/// Bytes of data fetched and reduced as one unit: a multiple of every element width and of the
/// cache's block size, small enough that `parallelism` of them in memory is nothing.
pub const CHUNK: u64 = 4 * 1024 * 1024;

//! What a reduction is asked, and what it answers.

use serde::{Deserialize, Serialize};

use crate::{Op, array};

/// Where a reduction runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The GPU when one is usable, else the CPU (saying why).
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// A reduction request, as `POST /api/v1/reduce` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceRequest {
    pub volume: String,
    pub key: String,
    pub op: Op,
    /// An HDU index (`0` is the primary) or EXTNAME; default: the first HDU with data.
    #[serde(default, deserialize_with = "hdu_field")]
    #[schema(value_type = Option<String>, example = "SCI")]
    pub hdu: Option<String>,
    /// A table column (binary tables).
    #[serde(default)]
    pub column: Option<String>,
    /// Histogram bins (default 10).
    #[serde(default)]
    pub bins: Option<usize>,
    /// Histogram range `[lo, hi]` (default: the data's min and max).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Quantiles to compute (op `quantiles`), each in [0, 1].
    #[serde(default)]
    pub q: Option<Vec<f64>>,
    /// Quantiles from one histogram pass, within a stated error bound, instead of exactly.
    #[serde(default)]
    pub approximate: bool,
    /// Cutout: one `[start, end)` per axis, axis 1 first.
    #[serde(default)]
    pub section: Option<Vec<[u64; 2]>>,
    /// Binning: one factor per axis, axis 1 first.
    #[serde(default)]
    pub factor: Option<Vec<u64>>,
    /// How array answers (cutout, bin) are encoded: fits (default) or npy.
    #[serde(default)]
    pub output: array::ArrayFormat,
    #[serde(default)]
    pub engine: Engine,
    /// Where the data lives at another site that cannot compute (a peer without a token, or
    /// one that answers it cannot), read the data from there and reduce it here. Off: such a
    /// request is refused rather than the data moved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_pull: bool,
}

impl ReduceRequest {
    /// `op` on `key` of `volume`, everything else by default (the first HDU with data, no
    /// column, 10 bins over the data's range, engine `auto`).
    pub fn new(volume: impl Into<String>, key: impl Into<String>, op: Op) -> Self {
        Self {
            volume: volume.into(),
            key: key.into(),
            op,
            hdu: None,
            column: None,
            bins: None,
            range: None,
            q: None,
            approximate: false,
            section: None,
            factor: None,
            output: Default::default(),
            engine: Engine::default(),
            allow_pull: false,
        }
    }
}

/// Accepts `"hdu": 1` as well as `"hdu": "SCI"`.
pub(crate) fn hdu_field<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IndexOrName {
        Index(u64),
        Name(String),
    }
    Ok(Option::<IndexOrName>::deserialize(d)?.map(|v| match v {
        IndexOrName::Index(i) => i.to_string(),
        IndexOrName::Name(s) => s,
    }))
}

/// The answer to a reduction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reduction {
    pub op: Op,
    /// A number, or an object (histogram, stats); null when no value was usable.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// Values used.
    pub count: u64,
    /// Values skipped as missing (BLANK, NaN).
    pub missing: u64,
    /// The HDU reduced.
    pub hdu: usize,
    pub engine: Engine,
    /// Why `auto` chose the engine it did, when it is not the obvious one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_note: Option<String>,
    /// The peer gateway that computed the answer, when the data lives at another site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The links the request travelled, from the gateway that was asked towards the one that
    /// computed: each names the gateway reached and the bytes sent to it and answered by it
    /// (empty when it was computed where it was asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<Hop>,
    /// Bytes read from the object (headers and data) for this answer, at the site holding it.
    pub bytes_read: u64,
    /// Bytes of this answer as sent (set by the front that sends it).
    pub bytes_returned: u64,
    pub elapsed_ms: f64,
    /// The array of a cutout or binning, sent as FITS or NPY rather than in the JSON.
    #[serde(skip)]
    #[schema(ignore)]
    pub array: Option<array::Array>,
}

/// One link of a forwarded reduction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hop {
    /// The gateway this link reached (as the gateway before it names it).
    pub url: String,
    /// Bytes sent over the link: the request, or 0 when the data was pulled.
    pub bytes_in: u64,
    /// Bytes that came back over the link: the answer, or the object's bytes when pulled.
    pub bytes_out: u64,
    /// The data was read over this link and reduced on this side (`allow_pull`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pulled: bool,
}

//! Reductions over many objects: every key under a prefix whose rest matches a glob.

use serde::{Deserialize, Serialize};

use crate::request::hdu_field;
use crate::{ComputeError, Engine, Op, ReduceRequest, Reduction, array};

/// A reduction over many objects: every key under `prefix` whose rest matches `glob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub volume: String,
    /// Keys beginning with this (e.g. `obs/2024/`); default: the whole volume.
    #[serde(default)]
    pub prefix: String,
    /// A pattern the rest of the key (after `prefix`) must match: `*` any run of characters
    /// but `/`, `**` any run including `/`, `?` one character. Default: everything.
    #[serde(default)]
    pub glob: Option<String>,
    pub op: Op,
    #[serde(default, deserialize_with = "hdu_field")]
    #[schema(value_type = Option<String>)]
    pub hdu: Option<String>,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub bins: Option<usize>,
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    #[serde(default)]
    pub q: Option<Vec<f64>>,
    #[serde(default)]
    pub approximate: bool,
    #[serde(default)]
    pub engine: Engine,
    /// As for one reduction: objects at a site that cannot compute are read here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_pull: bool,
    /// `ndjson` (default: one event per line as results arrive) or `csv`.
    #[serde(default)]
    pub format: BatchFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchFormat {
    #[default]
    Ndjson,
    Csv,
}

impl BatchRequest {
    /// `req` over every key under `req.key` (a prefix) that matches `glob`: the same
    /// reduction, answered as a table (arrays — cutouts, binning — are not batched).
    pub fn over(req: ReduceRequest, glob: Option<String>, format: BatchFormat) -> Self {
        Self {
            volume: req.volume,
            prefix: req.key,
            glob,
            op: req.op,
            hdu: req.hdu,
            column: req.column,
            bins: req.bins,
            range: req.range,
            q: req.q,
            approximate: req.approximate,
            engine: req.engine,
            allow_pull: req.allow_pull,
            format,
        }
    }

    /// The single-object request for `key`.
    pub fn for_key(&self, key: &str) -> ReduceRequest {
        ReduceRequest {
            volume: self.volume.clone(),
            key: key.to_string(),
            op: self.op,
            hdu: self.hdu.clone(),
            column: self.column.clone(),
            bins: self.bins,
            range: self.range,
            q: self.q.clone(),
            approximate: self.approximate,
            section: None,
            factor: None,
            output: array::ArrayFormat::Fits,
            engine: self.engine,
            allow_pull: self.allow_pull,
        }
    }

    /// What is wrong with the request before any object is read: the field and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.glob.as_ref().is_some_and(|g| g.len() > MAX_GLOB_BYTES) {
            return Some((
                "glob",
                format!("the glob is longer than {MAX_GLOB_BYTES} characters"),
            ));
        }
        if self.op.answers_array() {
            return Some((
                "op",
                "cutouts and binning answer arrays: ask for them one object at a time".into(),
            ));
        }
        if let Err(e) = self.selection() {
            return Some(("glob", e.to_string()));
        }
        None
    }

    /// Which keys the batch takes: the glob compiled once.
    pub fn selection(&self) -> Result<Selection, ComputeError> {
        let glob = match &self.glob {
            None => None,
            Some(g) => Some(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| ComputeError::InvalidRequest {
                        message: format!("invalid glob `{g}`: {}", e.kind()),
                    })?
                    .compile_matcher(),
            ),
        };
        Ok(Selection {
            prefix: self.prefix.clone(),
            glob,
        })
    }
}

/// The longest glob a batch takes.
pub const MAX_GLOB_BYTES: usize = 1024;

/// The keys a batch takes: under its prefix, the rest matching its glob (`*` any run but `/`,
/// `**` any run of whole folders, `?` one character but `/`, `[…]` a class). Matching is a
/// compiled automaton (globset), linear in the key: no pattern can make it slow.
#[derive(Clone, Debug)]
pub struct Selection {
    prefix: String,
    glob: Option<globset::GlobMatcher>,
}

impl Selection {
    /// Whether `key` is part of the batch.
    pub fn selects(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        match &self.glob {
            None => true,
            Some(g) => g.is_match(rest),
        }
    }
}

/// One line of a batch's NDJSON answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", tag = "event")]
pub enum BatchEvent {
    Result {
        key: String,
        #[serde(flatten)]
        reduction: Reduction,
    },
    /// One object failed; the batch goes on.
    Error {
        key: String,
        code: String,
        message: String,
    },
    /// The end: how many objects were reduced and how many failed.
    Done {
        objects: u64,
        failed: u64,
        bytes_read: u64,
        elapsed_ms: f64,
    },
    /// The batch itself failed (listing the volume).
    Fatal { code: String, message: String },
}

/// The CSV header of a batch's answer.
pub fn csv_header() -> &'static str {
    "key,op,value,count,missing,hdu,engine,bytes_read,error\n"
}

/// One CSV row for an event (results and per-object errors; none for the end).
pub fn csv_row(event: &BatchEvent) -> Option<Vec<u8>> {
    let fields: Vec<String> = match event {
        BatchEvent::Result { key, reduction: r } => {
            let value = match &r.value {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            vec![
                key.clone(),
                r.op.as_str().to_string(),
                value,
                r.count.to_string(),
                r.missing.to_string(),
                r.hdu.to_string(),
                match r.engine {
                    Engine::Cuda => "cuda",
                    Engine::Cpu | Engine::Auto => "cpu",
                }
                .to_string(),
                r.bytes_read.to_string(),
                String::new(),
            ]
        }
        BatchEvent::Error { key, message, .. } => {
            let mut row = vec![key.clone()];
            row.extend(std::iter::repeat_n(String::new(), 7));
            row.push(message.clone());
            row
        }
        BatchEvent::Fatal { message, .. } => {
            let mut row = vec![String::new(); 8];
            row.push(format!("the batch stopped: {message}"));
            row
        }
        BatchEvent::Done { .. } => return None,
    };
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    out.write_record(&fields).ok()?;
    out.into_inner().ok()
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_asks_each_object_what_the_request_asked() {
        let req = ReduceRequest {
            hdu: Some("SCI".into()),
            column: Some("FLUX".into()),
            bins: Some(7),
            range: Some([0.0, 1.0]),
            q: Some(vec![0.5]),
            approximate: true,
            engine: Engine::Cpu,
            ..ReduceRequest::new("demo", "obs/2024/", Op::Quantiles)
        };
        let batch = BatchRequest::over(req.clone(), Some("*.fits".into()), BatchFormat::Csv);
        assert_eq!(batch.prefix, "obs/2024/");
        let sel = batch.selection().unwrap();
        assert!(sel.selects("obs/2024/a.fits") && !sel.selects("obs/2024/a.txt"));
        assert_eq!(
            batch.for_key("obs/2024/a.fits"),
            ReduceRequest {
                key: "obs/2024/a.fits".into(),
                ..req
            }
        );
    }

    #[test]
    fn globs_match_like_a_shell() {
        let m = |p: &str, t: &str| {
            let batch = BatchRequest {
                glob: Some(p.to_string()),
                ..BatchRequest::over(ReduceRequest::new("v", "", Op::Sum), None, BatchFormat::Csv)
            };
            batch.selection().unwrap().selects(t)
        };
        assert!(m("*.fits", "a.fits"));
        assert!(!m("*.fits", "d/a.fits"));
        assert!(m("**/*.fits", "d/e/a.fits"));
        assert!(m("**/*.fits", "a.fits"));
        assert!(m("**", "anything/at/all"));
        assert!(m("img_??.fits", "img_01.fits"));
        assert!(!m("img_?.fits", "img_01.fits"));
        assert!(!m("*.fits", "a.fits.fz"));
        assert!(m("*.fits*", "a.fits.fz"));
        assert!(m("obs/**/raw_*.fits", "obs/2024/01/raw_7.fits"));
        assert!(m("obs/**/raw_*.fits", "obs/raw_7.fits"));
        assert!(!m("obs/**/raw_*.fits", "obs/2024/cal_7.fits"));
        // No backtracking blow-up.
        let long = "a".repeat(1000);
        assert!(!m("*a*a*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn csv_rows_quote_what_needs_it() {
        let e = BatchEvent::Error {
            key: "a,b.fits".into(),
            code: "InvalidFits".into(),
            message: "HDU 0, card 1: \"bad\"".into(),
        };
        assert_eq!(
            String::from_utf8(csv_row(&e).unwrap()).unwrap(),
            "\"a,b.fits\",,,,,,,,\"HDU 0, card 1: \"\"bad\"\"\"\n"
        );
    }
}

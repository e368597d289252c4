//! The compute path's errors.

/// Everything that can go wrong in a reduction, naming the HDU and card where it applies.
/// Not `#[non_exhaustive]`: the fronts of this workspace map it exhaustively, so a new
/// variant does not compile until each of them says what it means.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("HDU {hdu}{}: {message}", card.map(|c| format!(", card {c}")).unwrap_or_default())]
    Format {
        hdu: usize,
        card: Option<usize>,
        message: String,
    },
    #[error("no {wanted} in this file; it has {available}")]
    NoSuchHdu { wanted: String, available: String },
    #[error("HDU {hdu} has no column `{wanted}`; its columns are {available}")]
    NoSuchColumn {
        hdu: usize,
        wanted: String,
        available: String,
    },
    #[error(
        "truncated: the file has {size} bytes, but its headers place data at bytes {start} to {end}"
    )]
    Truncated { size: u64, start: u64, end: u64 },
    #[error("{message}")]
    InvalidRequest { message: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("{engine} engine unavailable: {reason}")]
    EngineUnavailable {
        engine: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Store(#[source] Box<object_store::Error>),
    #[error("a compute task failed: {0}")]
    Task(String),
}

impl ComputeError {
    pub(crate) fn store(e: object_store::Error) -> Self {
        ComputeError::Store(Box::new(e))
    }

    /// The store's error, when the failure came from reading.
    pub fn store_error(&self) -> Option<&object_store::Error> {
        match self {
            ComputeError::Store(e) => Some(e),
            _ => None,
        }
    }
}

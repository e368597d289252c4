//! Object keys: what a client may name, and how it maps to a store path.
//!
//! A key is UTF-8, at most 1024 bytes (S3's limit), made of `/`-separated segments. It may not
//! have empty, `.` or `..` segments or control characters, so it can never climb out of its
//! volume's prefix or mean different objects on different backends (a file tree would fold
//! `a//b` into `a/b`). Keys are kept verbatim: the store path's text is the key.

use object_store::path::Path;

use crate::DataplaneError;

pub const MAX_KEY_BYTES: usize = 1024;

/// Validates `key` and returns its store path.
pub fn parse_key(key: &str) -> Result<Path, DataplaneError> {
    let bad = |reason: &str| DataplaneError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(bad("a key may not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad("longer than 1024 bytes"));
    }
    if key.starts_with('/') {
        return Err(bad("a key may not begin with '/'"));
    }
    if key.ends_with('/') {
        return Err(bad(
            "a key may not end with '/' (folders are implied by the keys inside them)",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("a key may not contain control characters"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(bad("a key may not contain an empty segment ('//')")),
            "." | ".." => return Err(bad("a key may not contain '.' or '..' segments")),
            _ => {}
        }
    }
    let path = Path::parse(key).map_err(|e| bad(&e.to_string()))?;
    debug_assert_eq!(path.as_ref(), key);
    Ok(path)
}

/// Validates a listing prefix: like a key, but it may be empty or end with '/'.
pub fn check_prefix(prefix: &str) -> Result<(), DataplaneError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return Err(DataplaneError::InvalidKey {
            key: prefix.to_string(),
            reason: "a prefix may not begin with '/'".into(),
        });
    }
    parse_key(trimmed).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_pass_verbatim() {
        for k in [
            "a",
            "gaia/dr3/source_000.fits",
            "with space/é ü/日本.fits",
            "odd#chars~[x]{y}%20.fits",
            "a.b/..c/.d",
        ] {
            assert_eq!(parse_key(k).unwrap().as_ref(), k);
        }
    }

    #[test]
    fn escapes_and_oddities_are_refused() {
        for k in [
            "", "/abs", "a/", "a//b", "../x", "a/../b", "./a", "a/.", "a\u{0}b", "a\nb",
        ] {
            let err = parse_key(k).unwrap_err();
            assert!(matches!(err, DataplaneError::InvalidKey { .. }), "{k:?}");
        }
        assert!(parse_key(&"x".repeat(1025)).is_err());
        assert!(parse_key(&"x".repeat(1024)).is_ok());
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("a/").is_ok());
        assert!(check_prefix("a/b").is_ok());
        assert!(check_prefix("/").is_err());
        assert!(check_prefix("../").is_err());
    }
}

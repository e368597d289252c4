//! Object keys: what a client may name, and how it maps to a store path.
//!
//! A key is UTF-8, at most 1024 bytes (S3's limit), made of `/`-separated segments. It may not
//! have empty, `.` or `..` segments or control characters, so it can never climb out of its
//! volume's prefix or mean different objects on different backends (a file tree would fold
//! `a//b` into `a/b`). Keys are kept verbatim: the store path's text is the key.
//!
//! One exception: a key ending in `/` is a *folder marker* (what s3fs, the AWS console and
//! many upload tools make on mkdir). object_store paths cannot end in `/`, so a marker `a/b/`
//! is the store path `a/b/␠` — its last segment a single space, [`MARKER`]. No key may end in
//! that segment itself, and no key lies between `a/b/` and `a/b/␠` in byte order (that would
//! take a control character), so listings keep S3's key order. The file store keeps a marker
//! as a marked directory; object stores keep it as an empty object named `a/b/␠`.

use object_store::path::Path;

use crate::DataplaneError;

pub const MAX_KEY_BYTES: usize = 1024;

/// The last segment of a folder marker's store path.
pub const MARKER: &str = " ";

/// Whether `key` is a folder marker (ends in '/').
pub fn is_marker(key: &str) -> bool {
    key.ends_with('/')
}

/// Whether a store path is a folder marker's.
pub fn is_marker_path(path: &Path) -> bool {
    path.as_ref()
        .rsplit_once('/')
        .is_some_and(|(_, last)| last == MARKER)
}

/// The key a store path stands for (`a/b/␠` is the marker `a/b/`).
pub fn key_of(path: &Path) -> String {
    let text = path.as_ref();
    match text.strip_suffix(MARKER) {
        Some(folder) if folder.ends_with('/') => folder.to_string(),
        _ => text.to_string(),
    }
}

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
    if key.chars().any(char::is_control) {
        return Err(bad("a key may not contain control characters"));
    }
    let body = key.strip_suffix('/').unwrap_or(key);
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad("a key may not contain an empty segment ('//')")),
            "." | ".." => return Err(bad("a key may not contain '.' or '..' segments")),
            _ => {}
        }
    }
    if body.rsplit('/').next() == Some(MARKER) && !is_marker(key) {
        return Err(bad(
            "a key may not end in a segment that is a single space (it stands for a folder \
             marker in the store)",
        ));
    }
    if is_marker(key) {
        let path = Path::parse(format!("{key}{MARKER}")).map_err(|e| bad(&e.to_string()))?;
        debug_assert_eq!(key_of(&path), key);
        return Ok(path);
    }
    let path = Path::parse(key).map_err(|e| bad(&e.to_string()))?;
    debug_assert_eq!(path.as_ref(), key);
    Ok(path)
}

/// Validates a store path as the path of a key (an object or a folder marker).
pub fn check_path(path: &Path) -> Result<(), DataplaneError> {
    parse_key(&key_of(path)).map(|_| ())
}

/// Validates a prefix for operations that name a selection by it (batch reductions): like a
/// key, but it may be empty or end with '/'. Listings take any prefix: one that no key can
/// begin with lists nothing.
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
            "a/ /c",
            "a/  ",
        ] {
            assert_eq!(parse_key(k).unwrap().as_ref(), k);
        }
    }

    #[test]
    fn escapes_and_oddities_are_refused() {
        for k in [
            "", "/abs", "/", "a//b", "a//", "../x", "a/../b", "./a", "a/.", "../", "a\u{0}b",
            "a\nb", "a/ ", " ",
        ] {
            let err = parse_key(k).unwrap_err();
            assert!(matches!(err, DataplaneError::InvalidKey { .. }), "{k:?}");
        }
        assert!(parse_key(&"x".repeat(1025)).is_err());
        assert!(parse_key(&"x".repeat(1024)).is_ok());
    }

    #[test]
    fn folder_markers_map_to_a_space_segment_and_back() {
        for k in ["a/", "a/b/", "with space/d/", "a/ /"] {
            let p = parse_key(k).unwrap();
            assert!(is_marker_path(&p), "{k:?}");
            assert_eq!(p.as_ref(), format!("{k} "));
            assert_eq!(key_of(&p), k);
            check_path(&p).unwrap();
        }
        let plain = parse_key("a/b").unwrap();
        assert!(!is_marker_path(&plain));
        assert_eq!(key_of(&plain), "a/b");
        // No key lies between a marker and its store path: order is kept.
        let (m, p) = ("a/", parse_key("a/").unwrap());
        for k in ["a/!", "a/ x", "a/0", "a/b/c", "a.b", "a0"] {
            assert_eq!(m.cmp(k), p.as_ref().cmp(k), "{k}");
        }
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

//! How the catalogue keeps secrets.
//!
//! SigV4 is an HMAC over the request keyed by the secret access key, so the gateway must be able
//! to recover each secret: S3 secrets are sealed with AES-256-GCM under a 32-byte catalogue key
//! that lives outside the database (a file, mode 0600, in the data directory by default), with
//! the access key id as associated data so a sealed secret cannot be moved to another key id.
//! A database dump alone reveals no secret. API tokens need no recovery: only a SHA-256 of
//! their secret part is stored, and tokens are compared in constant time.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::CatalogError;

const KEY_LEN: usize = 32;

/// Seals and opens secrets with the catalogue key.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// Loads the key from `path`, creating it (mode 0600) if it does not exist yet. Blocking:
    /// call it on a blocking thread (as [`crate::Catalog::open`] does) or before serving.
    #[allow(clippy::disallowed_methods)] // blocking by contract, see above
    pub fn load_or_create(path: &Path) -> Result<Self, CatalogError> {
        let io = |source| CatalogError::Io {
            path: PathBuf::from(path),
            source,
        };
        let key = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = hex::encode(random_bytes(KEY_LEN));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                // Several replicas sharing the file may start at once: the key is written whole
                // under a name of its own, then linked into place only if no other replica's
                // key is there already. The one that loses the race uses the winner's key.
                let pending = path.with_extension(format!(
                    "{}.{}.pending",
                    std::process::id(),
                    hex::encode(random_bytes(4))
                ));
                write_private(&pending, key.as_bytes()).map_err(io)?;
                let linked = std::fs::hard_link(&pending, path);
                let _ = std::fs::remove_file(&pending);
                match linked {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created the catalogue secret key");
                        key
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_create(path);
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_key_text(&key).map_err(|message| CatalogError::SecretKey {
            path: path.into(),
            message,
        })
    }

    /// The key from a key file's text: 64 hexadecimal digits, blanks around them allowed.
    /// The refusal says what is wrong, never what the file holds.
    pub fn from_key_text(text: &str) -> Result<Self, String> {
        let digits = text.trim();
        if digits.len() != 2 * KEY_LEN || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "is not {} hexadecimal digits (it holds {} characters after trimming)",
                2 * KEY_LEN,
                digits.chars().count()
            ));
        }
        let bytes = hex::decode(digits).map_err(|_| "is not hexadecimal".to_string())?;
        Self::from_bytes(&bytes).map_err(|_| format!("holds {} bytes, not {KEY_LEN}", bytes.len()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CatalogError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CatalogError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Seals `plain`, bound to `context`; the result is base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, CatalogError> {
        let nonce_bytes = random_bytes(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| CatalogError::Crypto)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| CatalogError::Crypto)?;
        let mut out = nonce_bytes;
        out.extend_from_slice(&buf);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`SecretBox::seal`] sealed with the same context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CatalogError> {
        let raw = STANDARD.decode(sealed).map_err(|_| CatalogError::Crypto)?;
        if raw.len() < NONCE_LEN {
            return Err(CatalogError::Crypto);
        }
        let (nonce_bytes, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| CatalogError::Crypto)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| CatalogError::Crypto)?;
        Ok(plain.to_vec())
    }
}

/// Writes a file readable by its owner only. Blocking: for start-up and the CLI.
#[allow(clippy::disallowed_methods)] // blocking by contract, see above
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG failing is not recoverable and not caused by input.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    buf
}

/// A random string over `alphabet` of length `len` (rejection sampling, so no bias).
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

pub(crate) fn new_access_key_id() -> String {
    format!(
        "AK{}",
        random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 18)
    )
}

pub(crate) fn new_secret_access_key() -> String {
    random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    )
}

/// A token is `awt_<id>_<secret>`: the id finds the row, the secret's hash proves it.
pub(crate) fn new_token() -> (String, String) {
    let id = hex::encode(random_bytes(6));
    let secret = URL_SAFE_NO_PAD.encode(random_bytes(32));
    (id, secret)
}

/// A temporary key's session token: 48 random bytes, URL-safe (it may travel in a query).
pub(crate) fn new_session_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(48))
}

pub(crate) fn format_token(id: &str, secret: &str) -> String {
    format!("awt_{id}_{secret}")
}

pub(crate) fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("awt_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

pub(crate) fn hash_token_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `a` and `b` are equal, compared in constant time (for equal lengths).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_context() {
        let sb = SecretBox::from_bytes(&[7u8; 32]).unwrap();
        let sealed = sb.seal("AKID1", b"secret").unwrap();
        assert_eq!(sb.open("AKID1", &sealed).unwrap(), b"secret");
        assert!(sb.open("AKID2", &sealed).is_err());
        let other = SecretBox::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("AKID1", &sealed).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        let sealed = a.seal("x", b"y").unwrap();
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap(), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn replicas_creating_a_shared_key_file_at_once_all_get_the_same_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keys/secret.key");
            let boxes: Vec<SecretBox> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| SecretBox::load_or_create(&path).unwrap()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let sealed = boxes[0].seal("x", b"y").unwrap();
            for b in &boxes {
                assert_eq!(
                    b.open("x", &sealed).unwrap(),
                    b"y",
                    "a replica holds another key"
                );
            }
            let on_disk = SecretBox::load_or_create(&path).unwrap();
            assert_eq!(on_disk.open("x", &sealed).unwrap(), b"y");
            // Nothing is left behind but the key.
            let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("secret.key")]);
        }
    }

    #[test]
    fn tokens_split() {
        let (id, secret) = new_token();
        let token = format_token(&id, &secret);
        assert_eq!(split_token(&token), Some((id.as_str(), secret.as_str())));
        assert_eq!(split_token("awt_zz_abc"), None);
        assert_eq!(split_token("Bearer x"), None);
        assert_eq!(new_access_key_id().len(), 20);
        assert_eq!(new_secret_access_key().len(), 40);
    }
}

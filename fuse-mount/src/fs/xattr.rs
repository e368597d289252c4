//! Extended attributes: what S3 clients keep with an object, read through the mount. User
//! metadata (`x-amz-meta-<name>`, where rclone keeps modification times and s3fs modes) is
//! `user.<name>`; the content headers are `user.s3.<header>` (`user.s3.content-type`, …).
//! Read-only: objects are written whole, through the write path, and keep what their writer
//! gave them.

use archway_dataplane::ObjectAttributes;

use super::*;

/// The prefix of every name the mount answers; other namespaces (`security.`, `system.`) are
/// absent without asking the store.
pub const USER: &str = "user.";

impl Fs {
    /// The extended attributes of `ino`: none for directories and files not yet written.
    pub async fn xattrs(&self, ino: u64) -> Result<Vec<(String, Vec<u8>)>> {
        let (volume, key) = {
            let t = self.inodes();
            let n = t.get(ino)?;
            if n.kind != Kind::File || n.local || n.spool.is_some() || n.volume.is_none() {
                return Ok(Vec::new());
            }
            t.key(ino)?
        };
        let v = self.volume(volume);
        self.metrics.backend("head");
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        let r = v
            .store
            .get_opts(&path(&key)?, opts)
            .await
            .map_err(|e| FsError::store(&v.name, &key, "head", e))?;
        Ok(named(&ObjectAttributes::from_store(&r.attributes)))
    }
}

/// An object's attributes as extended attribute names and values, sorted by name.
fn named(a: &ObjectAttributes) -> Vec<(String, Vec<u8>)> {
    let headers = [
        ("content-type", &a.content_type),
        ("content-encoding", &a.content_encoding),
        ("content-disposition", &a.content_disposition),
        ("content-language", &a.content_language),
        ("cache-control", &a.cache_control),
        ("expires", &a.expires),
    ];
    let mut out: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .filter_map(|(name, v)| Some((format!("{USER}s3.{name}"), v.clone()?.into_bytes())))
        .chain(
            a.metadata
                .iter()
                .map(|(k, v)| (format!("{USER}{k}"), v.clone().into_bytes())),
        )
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_headers_are_user_attributes() {
        let a = ObjectAttributes {
            content_type: Some("application/fits".into()),
            metadata: [("mtime".to_string(), "1700000000".to_string())].into(),
            ..Default::default()
        };
        let names: Vec<_> = named(&a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["user.mtime", "user.s3.content-type"]);
        assert!(named(&ObjectAttributes::default()).is_empty());
    }
}

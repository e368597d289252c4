//! What the file store keeps with a file besides its bytes: the object's attributes and the
//! ETag S3 gives it, in one extended attribute (`user.archway`, JSON), so that an archive tree
//! stays plain files that any tool can read.
//!
//! The ETag is recorded with the size and modification time it was computed for: a file
//! changed by something other than Archway keeps its extended attribute but no longer matches,
//! and falls back to the inode-mtime-size-ctime version string. File systems without user extended
//! attributes keep no attributes, and their ETags are that version string.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use object_store::{Attribute, AttributeValue, Attributes};
use rustix::fs::{Stat, XattrFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// The extended attribute's name.
const XATTR: &str = "user.archway";

/// What is kept with a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
    /// object_store attributes by name (`content-type`, …, `meta:<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) attrs: BTreeMap<String, String>,
    /// The ETag S3 gives the object (MD5, or MD5-of-MD5s-N), and the file it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag: Option<String>,
    #[serde(default)]
    pub(super) size: u64,
    #[serde(default)]
    pub(super) mtime: (i64, u64),
    /// On a directory: it is a folder marker (the object `dir/`), made by a PUT of that key.
    /// Its ETag and modification time are the marker's, not the directory's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) marker: bool,
}

fn name_of(attr: &Attribute) -> Option<String> {
    Some(match attr {
        Attribute::ContentDisposition => "content-disposition".into(),
        Attribute::ContentEncoding => "content-encoding".into(),
        Attribute::ContentLanguage => "content-language".into(),
        Attribute::ContentType => "content-type".into(),
        Attribute::CacheControl => "cache-control".into(),
        Attribute::Metadata(k) => format!("meta:{k}"),
        _ => return None,
    })
}

fn attribute_of(name: &str) -> Option<Attribute> {
    Some(match name {
        "content-disposition" => Attribute::ContentDisposition,
        "content-encoding" => Attribute::ContentEncoding,
        "content-language" => Attribute::ContentLanguage,
        "content-type" => Attribute::ContentType,
        "cache-control" => Attribute::CacheControl,
        other => Attribute::Metadata(other.strip_prefix("meta:")?.to_string().into()),
    })
}

fn mtime(st: &Stat) -> (i64, u64) {
    (st.st_mtime, st.st_mtime_nsec)
}

impl Kept {
    pub(super) fn new(attributes: &Attributes) -> Self {
        Self {
            attrs: attributes
                .iter()
                .filter_map(|(k, v)| Some((name_of(k)?, v.as_ref().to_string())))
                .collect(),
            ..Default::default()
        }
    }

    pub(super) fn attributes(&self) -> Attributes {
        let mut out = Attributes::new();
        for (k, v) in &self.attrs {
            if let Some(attr) = attribute_of(k) {
                out.insert(attr, AttributeValue::from(v.clone()));
            }
        }
        out
    }

    /// The recorded ETag, when it is for the file as it is now.
    pub(super) fn etag_for(&self, st: &Stat) -> Option<&str> {
        let etag = self.etag.as_deref()?;
        (self.size == st.st_size.max(0) as u64 && self.mtime == mtime(st)).then_some(etag)
    }

    /// Records `etag` as the ETag of the file as it is now.
    pub(super) fn with_etag(mut self, etag: Option<String>, st: &Stat) -> Self {
        self.etag = etag;
        self.size = st.st_size.max(0) as u64;
        self.mtime = mtime(st);
        self
    }

    /// What the file holds (nothing where it has no record or its file system keeps none).
    pub(super) fn read(fd: impl AsFd) -> Self {
        let mut buf = [0u8; 4096];
        let bytes = match rustix::fs::fgetxattr(&fd, XATTR, &mut buf[..]) {
            Ok(n) => buf[..n].to_vec(),
            Err(Errno::RANGE) => {
                let Ok(size) = rustix::fs::fgetxattr_query(&fd, XATTR) else {
                    return Self::default();
                };
                let mut big = vec![0u8; size];
                match rustix::fs::fgetxattr(&fd, XATTR, &mut big[..]) {
                    Ok(n) => {
                        big.truncate(n);
                        big
                    }
                    Err(_) => return Self::default(),
                }
            }
            Err(_) => return Self::default(),
        };
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// A folder marker's record: its attributes and ETag, marked now.
    pub(super) fn marker(attrs: BTreeMap<String, String>, etag: String) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            attrs,
            etag: Some(etag),
            size: 0,
            mtime: (now.as_secs() as i64, u64::from(now.subsec_nanos())),
            marker: true,
        }
    }

    /// Marks a directory as a folder marker (only if it is none yet, with `create`). Unlike
    /// [`Kept::write`], a file system without extended attributes is an error: a marker
    /// nobody can see would be lost.
    pub(super) fn mark(&self, dir: impl AsFd, create: bool) -> rustix::io::Result<()> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        let flags = if create {
            XattrFlags::CREATE
        } else {
            XattrFlags::empty()
        };
        rustix::fs::fsetxattr(&dir, XATTR, &text, flags)
    }

    /// Takes a directory's folder marker away.
    pub(super) fn unmark(dir: impl AsFd) -> rustix::io::Result<()> {
        match rustix::fs::fremovexattr(&dir, XATTR) {
            Ok(()) | Err(Errno::NODATA) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keeps the record with the file; a file system without user extended attributes keeps
    /// nothing (logged once per process).
    pub(super) fn write(&self, fd: impl AsFd) -> rustix::io::Result<()> {
        if *self == Self::default() {
            return Ok(());
        }
        let text = serde_json::to_vec(self).unwrap_or_default();
        match rustix::fs::fsetxattr(&fd, XATTR, &text, XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "a file backend's file system keeps no user extended attributes: \
                         objects there keep no attributes and have version-string ETags"
                    )
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

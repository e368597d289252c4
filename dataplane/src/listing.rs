//! Listings: one page of keys under any prefix, grouped by any delimiter, resumable.

use std::collections::BTreeSet;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{Attributes, ListResult, ObjectStore};

use crate::key::{key_of, parse_key};
use crate::read::ObjectInfo;
use crate::{DataplaneError, Op, Result, VolumeStore};

/// One page of a listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys beginning with this string (need not end at a '/').
    pub prefix: String,
    /// Group keys that contain this after the prefix into common prefixes.
    pub delimiter: Option<String>,
    /// Return only entries after this key (exclusive): the resume point of the previous page.
    pub start_after: Option<String>,
    /// At most this many entries (objects plus common prefixes); capped by the configuration.
    pub max_keys: Option<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (exclusive), when more entries remain.
    pub next_start_after: Option<String>,
}

impl VolumeStore {
    /// One page of keys under a prefix, optionally grouped by a delimiter.
    pub async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.allow(Op::List)?;
        let volume = self.volume.id.as_str();
        let max = req
            .max_keys
            .unwrap_or(self.limits.list_max_keys)
            .min(self.limits.list_max_keys);
        if max == 0 {
            return Ok(ListPage::default());
        }
        // An empty delimiter is none (as S3 takes it).
        let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
        // object_store lists whole segments: list the folder holding the prefix, then filter.
        // A prefix no key can begin with (`/`, `a//`, `../`) lists nothing; it is not an error.
        if req.prefix.starts_with('/') || req.prefix.chars().any(char::is_control) {
            return Ok(ListPage::default());
        }
        let folder = match req.prefix.rfind('/') {
            Some(i) => match Path::parse(&req.prefix[..i]) {
                Ok(p) if p.as_ref() == &req.prefix[..i] => Some(p),
                _ => return Ok(ListPage::default()),
            },
            None => None,
        };
        let after = req.start_after.as_deref().unwrap_or("");
        let list_err = |e| DataplaneError::from_store_error(volume, &req.prefix, Op::List, e);

        if delimiter == Some("/") {
            let level = match self.file_level(folder.as_ref(), &req.prefix, after, max + 1) {
                Some(level) => level.await,
                None => ObjectStore::list_with_delimiter(self, folder.as_ref()).await,
            };
            let result = match level {
                Ok(r) => r,
                // A folder that does not exist holds nothing.
                Err(object_store::Error::NotFound { .. }) => return Ok(ListPage::default()),
                Err(e) => return Err(list_err(e)),
            };
            let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
            for meta in &result.objects {
                let key = key_of(&meta.location);
                if key.starts_with(&req.prefix) && key.as_str() > after {
                    entries.push((key, Some(ObjectInfo::new(meta, &Attributes::new()))));
                }
            }
            for p in &result.common_prefixes {
                let key = format!("{}/", p.as_ref());
                if key.starts_with(&req.prefix) && key.as_str() > after {
                    entries.push((key, None));
                }
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(page(entries, max));
        }

        // Flat listing (no delimiter, or one other than '/', grouped here).
        let offset = if after.is_empty() {
            None
        } else {
            // The store path of the resume key keeps its place in key order (markers too).
            parse_key(after).ok().or_else(|| Path::parse(after).ok())
        };
        let mut stream = match &offset {
            Some(o) => ObjectStore::list_with_offset(self, folder.as_ref(), o),
            None => ObjectStore::list(self, folder.as_ref()),
        };
        let sorted = self.backend.lists_sorted();
        let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        let mut prefixes_seen = BTreeSet::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(list_err)?;
            let key = key_of(&meta.location);
            let key = key.as_str();
            if !key.starts_with(&req.prefix) || key <= after {
                continue;
            }
            let grouped = delimiter.and_then(|d| {
                key[req.prefix.len()..]
                    .find(d)
                    .map(|i| key[..req.prefix.len() + i + d.len()].to_string())
            });
            match grouped {
                Some(cp) => {
                    if cp.as_str() > after && prefixes_seen.insert(cp.clone()) {
                        entries.push((cp, None));
                    }
                }
                None => entries.push((
                    key.to_string(),
                    Some(ObjectInfo::new(&meta, &Attributes::new())),
                )),
            }
            // A sorted backend lets us stop once the page (and the proof of a next one) is in.
            if sorted && delimiter.is_none() && entries.len() > max {
                break;
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page(entries, max))
    }
}

impl VolumeStore {
    /// A file backend pages a directory level itself ([`crate::posix::PosixStore::list_level`]):
    /// `limit` entries of `folder` from `after` on, in this volume's keys. None for other
    /// backends, which list the whole level.
    fn file_level(
        &self,
        folder: Option<&Path>,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Option<impl std::future::Future<Output = object_store::Result<ListResult>> + use<>> {
        let posix = self.backend.posix.clone()?;
        // The volume's keys lie under its prefix in the backend's tree.
        let root = Path::parse(&self.volume.prefix).ok()?;
        let in_store = |key: &str| {
            if root.as_ref().is_empty() {
                key.to_string()
            } else {
                format!("{}/{key}", root.as_ref())
            }
        };
        let dir: Path = root
            .parts()
            .chain(folder.into_iter().flat_map(|f| f.parts()))
            .collect();
        let (prefix, after) = (in_store(prefix), in_store(after));
        let depth = root.parts().count();
        let strip = move |p: &Path| -> Path { p.parts().skip(depth).collect() };
        Some(async move {
            let dir = (!dir.as_ref().is_empty()).then_some(dir);
            let mut level = posix
                .list_level(dir.as_ref(), &prefix, &after, limit)
                .await?;
            for meta in &mut level.objects {
                meta.location = strip(&meta.location);
            }
            for p in &mut level.common_prefixes {
                *p = strip(p);
            }
            Ok(level)
        })
    }
}

fn page(mut entries: Vec<(String, Option<ObjectInfo>)>, max: usize) -> ListPage {
    let truncated = entries.len() > max;
    entries.truncate(max);
    let next_start_after = if truncated {
        entries.last().map(|e| e.0.clone())
    } else {
        None
    };
    let mut out = ListPage {
        next_start_after,
        ..Default::default()
    };
    for (key, info) in entries {
        match info {
            Some(i) => out.objects.push(i),
            None => out.common_prefixes.push(key),
        }
    }
    out
}

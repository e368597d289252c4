//! Building the science index of a volume (`archway catalog volume scan`): every FITS object's
//! headers read through the volume's checked handle — so through the block cache, by ranges,
//! never whole files — the ObsCore fields derived (`archway_compute::obscore`) and stored in
//! the catalogue through the dataplane (`Dataplane::index_science`, checked like the scan). Objects unchanged since they were indexed (same ETag and size) are not read
//! again; entries of objects that are gone are dropped at the end.

use std::collections::HashMap;
use std::sync::Arc;

use archway_catalog::{Principal, ScienceObject, Timestamp};
use archway_compute::hdu::{Source, headers};
use archway_compute::obscore;
use archway_dataplane::{Dataplane, DataplaneError, ListRequest, ObjectInfo, Op};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// The most HDUs of one object whose headers are read.
const MAX_HDUS: usize = 64;
/// Objects read at once.
const CONCURRENCY: usize = 8;
/// Entries written to the catalogue per transaction.
const BATCH: usize = 200;

/// What one indexing pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScienceSummary {
    /// FITS objects in the volume (by name: .fits, .fit, .fts, .fz).
    pub fits_objects: u64,
    /// Of those, the ones whose headers were read (new or changed).
    pub read: u64,
    /// Indexed with a sky position.
    pub with_position: u64,
    /// Indexed without one, or unreadable (their notes say why).
    pub without_position: u64,
    /// Header bytes fetched from the volume.
    pub header_bytes: u64,
    /// Entries of objects no longer there, dropped.
    pub dropped: u64,
}

/// Whether a key names a FITS object by its extension.
pub fn is_fits(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    [".fits", ".fit", ".fts", ".fz", ".fits.fz"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Re-indexes every workspace (what users wrote since the last round: only new and changed
/// objects are read, gone ones dropped), on one replica at a time (the catalogue's advisory
/// lock on PostgreSQL). Every `server.science_refresh_interval`.
pub async fn refresh_workspaces(dataplane: &Dataplane) {
    let lock = match dataplane.catalog().try_science_refresh_lock().await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::debug!("another replica is refreshing the workspaces' science index");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the workspaces' science index was not refreshed");
            return;
        }
    };
    let system = Principal::gateway();
    let query = archway_catalog::VolumeQuery {
        kind: Some(archway_catalog::VolumeKind::Workspace),
        limit: Some(10_000),
        ..Default::default()
    };
    match dataplane.volumes(Some(&system), &query).await {
        Ok(workspaces) => {
            for (v, _) in workspaces {
                match index_volume(dataplane, &system, &v.id).await {
                    Ok(s) if s.read > 0 || s.dropped > 0 => tracing::info!(
                        volume = %v.id, read = s.read, dropped = s.dropped,
                        "workspace science index refreshed"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(volume = %v.id, error = %e, "workspace not re-indexed")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "workspaces not listed for the science index"),
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "the science refresh lock was not released cleanly");
    }
}

/// Scans and indexes `volume` as the gateway itself (the demo volume on first start), unless
/// it was scanned before.
pub async fn scan_if_new(dataplane: &Dataplane, volume: &str) -> Result<(), DataplaneError> {
    let system = Principal::gateway();
    let (v, _) = dataplane.volume(Some(&system), volume).await?;
    if v.last_scan.is_some() {
        return Ok(());
    }
    let scan = dataplane.scan(Some(&system), volume, |_, _| {}).await?;
    let science = index_volume(dataplane, &system, volume).await?;
    tracing::info!(
        volume,
        objects = scan.objects,
        bytes = scan.bytes,
        fits = science.fits_objects,
        with_position = science.with_position,
        "scanned and indexed"
    );
    Ok(())
}

/// Indexes every FITS object of `volume` as `who` (who must be allowed to scan it).
pub async fn index_volume(
    dataplane: &Dataplane,
    who: &Principal,
    volume: &str,
) -> Result<ScienceSummary, DataplaneError> {
    let handle = dataplane.open(Some(who), volume, Op::Scan).await?;
    let store = handle.object_store();
    let started = Timestamp::now();
    let mut summary = ScienceSummary::default();
    let mut request = ListRequest {
        max_keys: Some(1000),
        ..Default::default()
    };
    loop {
        let page = handle.list(&request).await?;
        let fits: Vec<ObjectInfo> = page
            .objects
            .into_iter()
            .filter(|o| is_fits(&o.key))
            .collect();
        summary.fits_objects += fits.len() as u64;
        // What the index holds for this page, in one query.
        let keys: Vec<String> = fits.iter().map(|o| o.key.clone()).collect();
        let mut known: HashMap<String, ScienceObject> = dataplane
            .known_science(Some(who), volume, &keys)
            .await?
            .into_iter()
            .map(|o| (o.key.clone(), o))
            .collect();
        let mut batch = Vec::with_capacity(fits.len());
        let mut entries = futures::stream::iter(fits)
            .map(|info| {
                let store = store.clone();
                let volume = volume.to_string();
                let known = known.remove(&info.key);
                async move {
                    if let Some(mut known) = known
                        && known.etag == info.etag
                        && known.size == info.size
                    {
                        known.indexed_at = Timestamp::now();
                        return (known, false, 0);
                    }
                    let (entry, bytes) = read_entry(store, &volume, &info).await;
                    (entry, true, bytes)
                }
            })
            .buffer_unordered(CONCURRENCY);
        while let Some((entry, read, bytes)) = entries.next().await {
            summary.read += u64::from(read);
            summary.header_bytes += bytes;
            if entry.s_ra.is_some() {
                summary.with_position += 1;
            } else {
                summary.without_position += 1;
            }
            batch.push(entry);
            if batch.len() >= BATCH {
                dataplane.index_science(Some(who), volume, &batch).await?;
                batch.clear();
            }
        }
        dataplane.index_science(Some(who), volume, &batch).await?;
        match page.next_start_after {
            Some(next) => request.start_after = Some(next),
            None => break,
        }
    }
    summary.dropped = dataplane.prune_science(Some(who), volume, started).await?;
    tracing::info!(
        volume,
        fits = summary.fits_objects,
        read = summary.read,
        with_position = summary.with_position,
        header_bytes = summary.header_bytes,
        "science index updated"
    );
    Ok(summary)
}

/// One object's entry from its headers; an object that cannot be read is indexed with what
/// its listing says and a note saying why. The header bytes fetched.
async fn read_entry(
    store: Arc<dyn archway_dataplane::object_store::ObjectStore>,
    volume: &str,
    info: &ObjectInfo,
) -> (ScienceObject, u64) {
    let derived = async {
        // The listing gave the size: no HEAD before the header reads.
        let src = Source::with_size(store, &info.key, info.size)?;
        let hdus = headers(&src, MAX_HDUS).await;
        let read = src.bytes_read();
        hdus.map(|h| (obscore::derive(&h), read))
    }
    .await;
    let (o, bytes) = match derived {
        Ok(found) => found,
        Err(e) => (
            obscore::ObsCore {
                notes: vec![format!("not indexed: {e}")],
                ..Default::default()
            },
            0,
        ),
    };
    let entry = ScienceObject {
        volume: volume.to_string(),
        key: info.key.clone(),
        etag: info.etag.clone(),
        size: info.size,
        indexed_at: Timestamp::now(),
        dataproduct_type: o.dataproduct_type,
        calib_level: o.calib_level,
        obs_id: o.obs_id,
        target_name: o.target_name,
        s_ra: o.s_ra,
        s_dec: o.s_dec,
        s_fov: o.s_fov,
        s_region: o.s_region,
        t_min: o.t_min,
        t_max: o.t_max,
        t_exptime: o.t_exptime,
        em_min: o.em_min,
        em_max: o.em_max,
        instrument_name: o.instrument_name,
        facility_name: o.facility_name,
        hdus: serde_json::to_value(&o.hdus).unwrap_or_default(),
        notes: o.notes,
    };
    (entry, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_objects_are_known_by_name() {
        for k in ["a.fits", "b/C.FITS", "x.fit", "y.fts", "z.fits.fz", "t.fz"] {
            assert!(is_fits(k), "{k}");
        }
        for k in ["a.fits.gz", "readme.txt", "fits", "a.fitsx"] {
            assert!(!is_fits(k), "{k}");
        }
    }
}

//! The science index: per object of a volume, the IVOA ObsCore fields derived from its FITS
//! headers (`archway_compute::obscore` derives them; the scan stores them here), with searches
//! by sky position (cone, box), time and volume.
//!
//! Sky searches read a few index ranges, not every row: an object no wider than
//! [`WIDE_FOV`] sits in a declination zone [`ZONE_HEIGHT`] high, indexed with its RA
//! (`science_objects_sky`); a search asks each zone it touches for an RA interval widened by
//! the search radius plus half of [`WIDE_FOV`], then keeps what truly overlaps. Wider objects
//! (all-sky maps, mosaics) are in zone -1, few, and always looked at.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::model::Timestamp;
use crate::{CatalogError, Result};

/// Objects wider than this (degrees, `s_fov`) are not zoned.
pub const WIDE_FOV: f64 = 1.0;
/// The height of a declination zone, degrees.
pub const ZONE_HEIGHT: f64 = 0.5;

/// One indexed object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScienceObject {
    pub volume: String,
    pub key: String,
    /// The version the fields were read from.
    pub etag: Option<String>,
    pub size: u64,
    pub indexed_at: Timestamp,
    pub dataproduct_type: Option<String>,
    pub calib_level: Option<i64>,
    pub obs_id: Option<String>,
    pub target_name: Option<String>,
    /// ICRS degrees.
    pub s_ra: Option<f64>,
    pub s_dec: Option<f64>,
    pub s_fov: Option<f64>,
    /// The footprint's corners, ICRS degrees.
    pub s_region: Option<Vec<[f64; 2]>>,
    /// MJD.
    pub t_min: Option<f64>,
    pub t_max: Option<f64>,
    /// Seconds.
    pub t_exptime: Option<f64>,
    /// Metres.
    pub em_min: Option<f64>,
    pub em_max: Option<f64>,
    pub instrument_name: Option<String>,
    pub facility_name: Option<String>,
    /// The HDU list, as the scan gives it.
    pub hdus: serde_json::Value,
    /// Why fields are missing.
    pub notes: Vec<String>,
}

/// Where on the sky to look (ICRS degrees).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SkyRegion {
    /// Objects whose field reaches within `radius` of (`ra`, `dec`).
    Cone { ra: f64, dec: f64, radius: f64 },
    /// Objects whose field reaches into the box; `ra_min > ra_max` crosses RA 0.
    Box {
        ra_min: f64,
        ra_max: f64,
        dec_min: f64,
        dec_max: f64,
    },
}

/// A search of the index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScienceQuery {
    /// Only these volumes (None: every volume).
    pub volumes: Option<Vec<String>>,
    pub sky: Option<SkyRegion>,
    /// Objects whose [t_min, t_max] meets this interval (MJD).
    pub time: Option<(f64, f64)>,
    /// At most this many, in (volume, key) order.
    pub limit: usize,
    /// Those after this (volume, key): the next page.
    pub after: Option<(String, String)>,
}

const COLUMNS: &str = "volume_id, key, etag, size, indexed_at, dataproduct_type, calib_level, \
     obs_id, target_name, s_ra, s_dec, s_fov, s_region, t_min, t_max, t_exptime, em_min, em_max, \
     instrument_name, facility_name, hdus, notes";

/// Where and when a volume's indexed objects are: the sky box `[west, south, east, north]`
/// (longitude = RA wrapped to −180..180, padded by half of each object's field; None when no
/// object has a position) and the time span (MJD).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScienceExtent {
    pub bbox: Option<[f64; 4]>,
    pub t_min: Option<f64>,
    pub t_max: Option<f64>,
    /// Indexed objects.
    pub objects: u64,
}

/// The zone of an object: -1 when it is wide, None when it has no position.
fn zone_of(dec: Option<f64>, ra: Option<f64>, fov: Option<f64>) -> Option<i64> {
    let (dec, _) = (dec?, ra?);
    if fov.is_some_and(|f| f > WIDE_FOV) {
        return Some(-1);
    }
    Some(zone(dec))
}

fn zone(dec: f64) -> i64 {
    let last = (180.0 / ZONE_HEIGHT) as i64 - 1;
    (((dec + 90.0) / ZONE_HEIGHT).floor() as i64).clamp(0, last)
}

fn opt_f64(row: &AnyRow, column: &str) -> Result<Option<f64>> {
    row.try_get::<Option<f64>, _>(column)
        .map_err(CatalogError::db("read science object"))
}

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>> {
    row.try_get::<Option<String>, _>(column)
        .map_err(CatalogError::db("read science object"))
}

fn object_of(row: &AnyRow) -> Result<ScienceObject> {
    let corrupt = |what: &str, e: serde_json::Error| CatalogError::Corrupt {
        what: format!("science object {what}"),
        message: e.to_string(),
    };
    let text = |c: &str| -> Result<String> {
        row.try_get::<String, _>(c)
            .map_err(CatalogError::db("read science object"))
    };
    let region = opt_text(row, "s_region")?
        .map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| corrupt("footprint", e))?;
    Ok(ScienceObject {
        volume: text("volume_id")?,
        key: text("key")?,
        etag: opt_text(row, "etag")?,
        size: row
            .try_get::<i64, _>("size")
            .map_err(CatalogError::db("read science object"))?
            .max(0) as u64,
        indexed_at: Timestamp(
            row.try_get::<i64, _>("indexed_at")
                .map_err(CatalogError::db("read science object"))?,
        ),
        dataproduct_type: opt_text(row, "dataproduct_type")?,
        calib_level: row
            .try_get::<Option<i64>, _>("calib_level")
            .map_err(CatalogError::db("read science object"))?,
        obs_id: opt_text(row, "obs_id")?,
        target_name: opt_text(row, "target_name")?,
        s_ra: opt_f64(row, "s_ra")?,
        s_dec: opt_f64(row, "s_dec")?,
        s_fov: opt_f64(row, "s_fov")?,
        s_region: region,
        t_min: opt_f64(row, "t_min")?,
        t_max: opt_f64(row, "t_max")?,
        t_exptime: opt_f64(row, "t_exptime")?,
        em_min: opt_f64(row, "em_min")?,
        em_max: opt_f64(row, "em_max")?,
        instrument_name: opt_text(row, "instrument_name")?,
        facility_name: opt_text(row, "facility_name")?,
        hdus: serde_json::from_str(&text("hdus")?).map_err(|e| corrupt("HDU list", e))?,
        notes: serde_json::from_str(&text("notes")?).map_err(|e| corrupt("notes", e))?,
    })
}

/// The great-circle distance between two positions, degrees.
fn separation((a1, d1): (f64, f64), (a2, d2): (f64, f64)) -> f64 {
    let (sd1, cd1) = d1.to_radians().sin_cos();
    let (sd2, cd2) = d2.to_radians().sin_cos();
    let da = (a2 - a1).to_radians();
    let num = ((cd2 * da.sin()).powi(2) + (cd1 * sd2 - sd1 * cd2 * da.cos()).powi(2)).sqrt();
    num.atan2(sd1 * sd2 + cd1 * cd2 * da.cos()).to_degrees()
}

/// The RA half-width (degrees) of a circle of `radius` whose declinations reach `dec_abs_max`;
/// None when it takes every RA (a pole inside).
fn ra_half_width(radius: f64, dec_abs_max: f64) -> Option<f64> {
    if dec_abs_max >= 90.0 - 1e-9 || radius >= 90.0 {
        return None;
    }
    let s = radius.to_radians().sin() / dec_abs_max.to_radians().cos();
    (s < 1.0).then(|| s.asin().to_degrees())
}

/// RA intervals (within 0..=360) covering [centre - half, centre + half].
fn ra_intervals(lo: f64, hi: f64) -> Vec<(f64, f64)> {
    if hi - lo >= 360.0 {
        return vec![(0.0, 360.0)];
    }
    let lo = lo.rem_euclid(360.0);
    let hi = hi.rem_euclid(360.0);
    if lo <= hi {
        vec![(lo, hi)]
    } else {
        vec![(lo, 360.0), (0.0, hi)]
    }
}

impl SkyRegion {
    fn check(&self) -> Result<()> {
        let bad = |message: String| {
            Err(CatalogError::Invalid {
                field: "sky",
                message,
            })
        };
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        match *self {
            SkyRegion::Cone { ra, dec, radius } => {
                if !finite(&[ra, dec, radius]) || !(-90.0..=90.0).contains(&dec) {
                    return bad(format!("a cone at ({ra}, {dec}) is not on the sky"));
                }
                if !(0.0..=180.0).contains(&radius) {
                    return bad(format!("a cone radius of {radius}° is not within 0..180"));
                }
            }
            SkyRegion::Box {
                ra_min,
                ra_max,
                dec_min,
                dec_max,
            } => {
                if !finite(&[ra_min, ra_max, dec_min, dec_max])
                    || !(-90.0..=90.0).contains(&dec_min)
                    || !(-90.0..=90.0).contains(&dec_max)
                    || dec_min > dec_max
                {
                    return bad(format!(
                        "a box of declinations {dec_min}..{dec_max} is not on the sky"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The declination range and RA intervals a candidate's centre must lie in, widened by
    /// `margin` degrees.
    fn bounds(&self, margin: f64) -> ((f64, f64), Vec<(f64, f64)>) {
        let (d0, d1, ra_lo, ra_hi, reach) = match *self {
            SkyRegion::Cone { ra, dec, radius } => {
                (dec - radius, dec + radius, ra, ra, radius + margin)
            }
            SkyRegion::Box {
                ra_min,
                ra_max,
                dec_min,
                dec_max,
            } => {
                let ra_max = if ra_min > ra_max {
                    ra_max + 360.0
                } else {
                    ra_max
                };
                (dec_min, dec_max, ra_min, ra_max, margin)
            }
        };
        let (dlo, dhi) = ((d0 - margin).max(-90.0), (d1 + margin).min(90.0));
        let ras = match ra_half_width(reach, dlo.abs().max(dhi.abs())) {
            Some(w) => ra_intervals(ra_lo - w, ra_hi + w),
            None => vec![(0.0, 360.0)],
        };
        ((dlo, dhi), ras)
    }

    /// Whether an object at `centre` with field `fov` reaches into the region.
    fn meets(&self, centre: (f64, f64), fov: f64) -> bool {
        let r = fov / 2.0;
        match *self {
            SkyRegion::Cone { ra, dec, radius } => separation(centre, (ra, dec)) <= radius + r,
            SkyRegion::Box {
                ra_min,
                ra_max,
                dec_min,
                dec_max,
            } => {
                if centre.1 < dec_min - r || centre.1 > dec_max + r {
                    return false;
                }
                let w = ra_half_width(r, centre.1.abs().min(89.999_999)).unwrap_or(180.0);
                let ra_max = if ra_min > ra_max {
                    ra_max + 360.0
                } else {
                    ra_max
                };
                ra_intervals(ra_min - w, ra_max + w)
                    .iter()
                    .any(|&(a, b)| (a..=b).contains(&centre.0))
            }
        }
    }
}

impl Catalog {
    /// Records (or replaces) the index entries of objects, in one transaction.
    pub async fn index_objects(&self, objects: &[ScienceObject]) -> Result<()> {
        let mut tx = self
            .inner
            .pool
            .begin()
            .await
            .map_err(CatalogError::db("begin"))?;
        for o in objects {
            let region = o
                .s_region
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| CatalogError::Corrupt {
                    what: "science object footprint".into(),
                    message: e.to_string(),
                })?;
            sqlx::query(
                "INSERT INTO science_objects (volume_id, key, etag, size, indexed_at, \
                 dataproduct_type, calib_level, obs_id, target_name, s_ra, s_dec, s_fov, \
                 s_region, t_min, t_max, t_exptime, em_min, em_max, instrument_name, \
                 facility_name, hdus, notes, zone) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
                 ON CONFLICT (volume_id, key) DO UPDATE SET etag = excluded.etag, \
                 size = excluded.size, indexed_at = excluded.indexed_at, \
                 dataproduct_type = excluded.dataproduct_type, \
                 calib_level = excluded.calib_level, obs_id = excluded.obs_id, \
                 target_name = excluded.target_name, s_ra = excluded.s_ra, \
                 s_dec = excluded.s_dec, s_fov = excluded.s_fov, s_region = excluded.s_region, \
                 t_min = excluded.t_min, t_max = excluded.t_max, \
                 t_exptime = excluded.t_exptime, em_min = excluded.em_min, \
                 em_max = excluded.em_max, instrument_name = excluded.instrument_name, \
                 facility_name = excluded.facility_name, hdus = excluded.hdus, \
                 notes = excluded.notes, zone = excluded.zone",
            )
            .bind(&o.volume)
            .bind(&o.key)
            .bind(&o.etag)
            .bind(clamp_i64(o.size))
            .bind(o.indexed_at.0)
            .bind(&o.dataproduct_type)
            .bind(o.calib_level)
            .bind(&o.obs_id)
            .bind(&o.target_name)
            .bind(o.s_ra)
            .bind(o.s_dec)
            .bind(o.s_fov)
            .bind(region)
            .bind(o.t_min)
            .bind(o.t_max)
            .bind(o.t_exptime)
            .bind(o.em_min)
            .bind(o.em_max)
            .bind(&o.instrument_name)
            .bind(&o.facility_name)
            .bind(o.hdus.to_string())
            .bind(serde_json::Value::from(o.notes.clone()).to_string())
            .bind(zone_of(o.s_dec, o.s_ra, o.s_fov))
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("index object"))?;
        }
        tx.commit().await.map_err(CatalogError::db("commit"))
    }

    /// Drops the entries of `volume` not indexed since `since` (objects a rescan no longer
    /// found); how many.
    pub async fn prune_science(&self, volume: &str, since: Timestamp) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM science_objects WHERE volume_id = $1 AND indexed_at < $2")
                .bind(volume)
                .bind(since.0)
                .execute(&self.inner.pool)
                .await
                .map_err(CatalogError::db("prune science index"))?;
        self.record_science_extent(volume).await?;
        Ok(done.rows_affected())
    }

    /// Recomputes the volume's science extent from its entries (one pass over them). The
    /// `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join's constraint.
    async fn record_science_extent(&self, volume: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO science_extents \
               (volume_id, lon_min, lat_min, lon_max, lat_max, t_min, t_max, objects, updated_at) \
             SELECT $1, MIN(lon - pad), MIN(s_dec - pad), MAX(lon + pad), MAX(s_dec + pad), \
                    MIN(t_min), MAX(t_max), COUNT(*), $2 \
             FROM (SELECT CASE WHEN s_ra > 180 THEN s_ra - 360 ELSE s_ra END AS lon, s_dec, \
                          COALESCE(s_fov, 0) / 2 AS pad, t_min, t_max \
                   FROM science_objects WHERE volume_id = $1) AS o \
             WHERE true \
             ON CONFLICT (volume_id) DO UPDATE SET lon_min = excluded.lon_min, \
               lat_min = excluded.lat_min, lon_max = excluded.lon_max, \
               lat_max = excluded.lat_max, t_min = excluded.t_min, t_max = excluded.t_max, \
               objects = excluded.objects, updated_at = excluded.updated_at",
        )
        .bind(volume)
        .bind(Timestamp::now().0)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("record science extent"))?;
        Ok(())
    }

    /// The science extents of these volumes (those indexed at least once).
    pub async fn science_extents(
        &self,
        volumes: &[String],
    ) -> Result<std::collections::HashMap<String, ScienceExtent>> {
        let rows = sqlx::query(
            "SELECT volume_id, lon_min, lat_min, lon_max, lat_max, t_min, t_max, objects \
             FROM science_extents",
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read science extents"))?;
        let mut out = std::collections::HashMap::new();
        for row in &rows {
            let id: String = get(row, "volume_id")?;
            if !volumes.contains(&id) {
                continue;
            }
            let v: [Option<f64>; 4] = [
                get(row, "lon_min")?,
                get(row, "lat_min")?,
                get(row, "lon_max")?,
                get(row, "lat_max")?,
            ];
            let bbox = match v {
                [Some(w), Some(s), Some(e), Some(n)] => Some([
                    w.clamp(-180.0, 180.0),
                    s.clamp(-90.0, 90.0),
                    e.clamp(-180.0, 180.0),
                    n.clamp(-90.0, 90.0),
                ]),
                _ => None,
            };
            let extent = ScienceExtent {
                bbox,
                t_min: get(row, "t_min")?,
                t_max: get(row, "t_max")?,
                objects: get::<i64>(row, "objects")?.max(0) as u64,
            };
            out.insert(id, extent);
        }
        Ok(out)
    }

    /// Drops the entry of one object (deleted through the gateway).
    pub async fn forget_science(&self, volume: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM science_objects WHERE volume_id = $1 AND key = $2")
            .bind(volume)
            .bind(key)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("forget science object"))?;
        Ok(())
    }

    /// The entry of one object.
    pub async fn science_object(&self, volume: &str, key: &str) -> Result<Option<ScienceObject>> {
        let sql =
            format!("SELECT {COLUMNS} FROM science_objects WHERE volume_id = $1 AND key = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(volume)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read science object"))?;
        row.as_ref().map(object_of).transpose()
    }

    /// The entries of these objects of one volume (those that have one).
    pub async fn science_objects(
        &self,
        volume: &str,
        keys: &[String],
    ) -> Result<Vec<ScienceObject>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM science_objects WHERE volume_id = $1 AND key IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(volume);
            for k in chunk {
                query = query.bind(k);
            }
            let rows = query
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("read science objects"))?;
            for row in &rows {
                out.push(object_of(row)?);
            }
        }
        Ok(out)
    }

    /// Entries matching `q`, in (volume, key) order.
    pub async fn search_science(&self, q: &ScienceQuery) -> Result<Vec<ScienceObject>> {
        let limit = q.limit.clamp(1, 100_000);
        let keep = |o: &ScienceObject| {
            if let Some(vs) = &q.volumes
                && !vs.contains(&o.volume)
            {
                return false;
            }
            if let Some((a, b)) = q.time {
                match (o.t_min, o.t_max.or(o.t_min)) {
                    (Some(t0), Some(t1)) if t0 <= b && t1 >= a => {}
                    _ => return false,
                }
            }
            if let Some((v, k)) = &q.after
                && (o.volume.as_str(), o.key.as_str()) <= (v.as_str(), k.as_str())
            {
                return false;
            }
            if let Some(sky) = &q.sky {
                let (Some(ra), Some(dec)) = (o.s_ra, o.s_dec) else {
                    return false;
                };
                return sky.meets((ra, dec), o.s_fov.unwrap_or(0.0));
            }
            true
        };
        let mut found = match &q.sky {
            Some(sky) => {
                sky.check()?;
                self.sky_candidates(sky).await?
            }
            None => self.ordered_candidates(q, limit).await?,
        };
        found.retain(keep);
        found.sort_by(|a, b| (&a.volume, &a.key).cmp(&(&b.volume, &b.key)));
        found.truncate(limit);
        Ok(found)
    }

    /// Without a sky region: one page in key order, every filter applied by the database.
    async fn ordered_candidates(
        &self,
        q: &ScienceQuery,
        limit: usize,
    ) -> Result<Vec<ScienceObject>> {
        let mut sql = format!("SELECT {COLUMNS} FROM science_objects WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let mut binds: Vec<String> = Vec::new();
        if let Some(vs) = &q.volumes {
            if vs.is_empty() {
                return Ok(Vec::new());
            }
            let marks: Vec<String> = vs.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND volume_id IN ({})", marks.join(", ")));
            binds.extend(vs.iter().cloned());
        }
        if let Some((v, k)) = &q.after {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (volume_id > {a} OR (volume_id = {b} AND key > {c}))"
            ));
            binds.extend([v.clone(), v.clone(), k.clone()]);
        }
        if let Some((a, b)) = q.time {
            if !(a.is_finite() && b.is_finite()) {
                return Err(CatalogError::Invalid {
                    field: "time",
                    message: format!("a time interval of {a}..{b} is not one"),
                });
            }
            // Numbers written as numbers: finite, so nothing but digits, '.', 'e' and '-'.
            sql.push_str(&format!(
                " AND t_min <= {b:e} AND COALESCE(t_max, t_min) >= {a:e}"
            ));
        }
        sql.push_str(&format!(" ORDER BY volume_id, key LIMIT {limit}"));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("search science index"))?;
        rows.iter().map(object_of).collect()
    }

    /// The entries whose centre lies within the region widened by the widest zoned field,
    /// read zone by zone, and every wide entry.
    async fn sky_candidates(&self, sky: &SkyRegion) -> Result<Vec<ScienceObject>> {
        let ((dlo, dhi), ras) = sky.bounds(WIDE_FOV / 2.0);
        let zones: Vec<String> = (zone(dlo)..=zone(dhi)).map(|z| z.to_string()).collect();
        let mut out = Vec::new();
        for (lo, hi) in ras {
            let sql = format!(
                "SELECT {COLUMNS} FROM science_objects WHERE zone IN ({}) AND s_ra >= $1 AND s_ra <= $2",
                zones.join(", ")
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("search science index"))?;
            for row in &rows {
                out.push(object_of(row)?);
            }
        }
        let sql = format!("SELECT {COLUMNS} FROM science_objects WHERE zone = -1");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("search science index"))?;
        for row in &rows {
            out.push(object_of(row)?);
        }
        // An RA of exactly 360 or 0 may sit in two intervals.
        out.sort_by(|a, b| (&a.volume, &a.key).cmp(&(&b.volume, &b.key)));
        out.dedup_by(|a, b| a.volume == b.volume && a.key == b.key);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_cover_the_sky() {
        assert_eq!(zone(-90.0), 0);
        assert_eq!(zone(90.0), 359);
        assert_eq!(zone(0.0), 180);
        assert_eq!(zone_of(Some(10.0), Some(5.0), Some(2.0)), Some(-1));
        assert_eq!(zone_of(None, Some(5.0), None), None);
    }

    #[test]
    fn ra_intervals_wrap() {
        assert_eq!(
            ra_intervals(350.0, 370.0),
            vec![(350.0, 360.0), (0.0, 10.0)]
        );
        assert_eq!(ra_intervals(-5.0, 5.0), vec![(355.0, 360.0), (0.0, 5.0)]);
        assert_eq!(ra_intervals(10.0, 20.0), vec![(10.0, 20.0)]);
    }

    #[test]
    fn a_cone_near_the_pole_takes_every_ra() {
        let cone = SkyRegion::Cone {
            ra: 10.0,
            dec: 89.8,
            radius: 0.3,
        };
        let (_, ras) = cone.bounds(0.5);
        assert_eq!(ras, vec![(0.0, 360.0)]);
        // Across the pole: 0.2° up to it, 0.05° down the other side.
        assert!(cone.meets((190.0, 89.95), 0.0));
        assert!(!cone.meets((190.0, 89.5), 0.0));
    }
}

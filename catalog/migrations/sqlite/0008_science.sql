-- Version 8: the science index. One row per indexed object of a volume: the IVOA ObsCore
-- fields derived from its FITS headers (NULL where the headers do not say; `notes` says
-- why), the HDU list, and the version (ETag, size) they were read from. `zone` makes cone
-- and box searches read a few index ranges instead of every row: objects no wider than a
-- degree sit in 0.5°-high declination zones, indexed with their RA; wider ones (zone -1)
-- are few and always looked at. Not watched by the in-memory view's change counter.
CREATE TABLE science_objects (
    volume_id        TEXT NOT NULL,
    key              TEXT NOT NULL,
    etag             TEXT,
    size             INTEGER NOT NULL,
    indexed_at       INTEGER NOT NULL,
    dataproduct_type TEXT,
    calib_level      INTEGER,
    obs_id           TEXT,
    target_name      TEXT,
    s_ra             REAL,
    s_dec            REAL,
    s_fov            REAL,
    s_region         TEXT,
    t_min            REAL,
    t_max            REAL,
    t_exptime        REAL,
    em_min           REAL,
    em_max           REAL,
    instrument_name  TEXT,
    facility_name    TEXT,
    hdus             TEXT NOT NULL,
    notes            TEXT NOT NULL,
    zone             INTEGER,
    PRIMARY KEY (volume_id, key)
);
CREATE INDEX science_objects_sky ON science_objects (zone, s_ra);
CREATE INDEX science_objects_time ON science_objects (t_min);

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
    size             BIGINT NOT NULL,
    indexed_at       BIGINT NOT NULL,
    dataproduct_type TEXT,
    calib_level      BIGINT,
    obs_id           TEXT,
    target_name      TEXT,
    s_ra             DOUBLE PRECISION,
    s_dec            DOUBLE PRECISION,
    s_fov            DOUBLE PRECISION,
    s_region         TEXT,
    t_min            DOUBLE PRECISION,
    t_max            DOUBLE PRECISION,
    t_exptime        DOUBLE PRECISION,
    em_min           DOUBLE PRECISION,
    em_max           DOUBLE PRECISION,
    instrument_name  TEXT,
    facility_name    TEXT,
    hdus             TEXT NOT NULL,
    notes            TEXT NOT NULL,
    zone             BIGINT,
    PRIMARY KEY (volume_id, key)
);
CREATE INDEX science_objects_sky ON science_objects (zone, s_ra);
CREATE INDEX science_objects_time ON science_objects (t_min);

-- Version 9: each volume's science extent — the sky box (longitude = RA wrapped to
-- -180..180, latitude = Dec, padded by half of each object's field) and the time span of its
-- indexed objects — recomputed at the end of every indexing pass, so the STAC collections and
-- the web pages state a volume's extent without reading its objects.
CREATE TABLE science_extents (
    volume_id  TEXT PRIMARY KEY,
    lon_min    REAL,
    lat_min    REAL,
    lon_max    REAL,
    lat_max    REAL,
    t_min      REAL,
    t_max      REAL,
    objects    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

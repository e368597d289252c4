-- Version 9: each volume's science extent — the sky box (longitude = RA wrapped to
-- -180..180, latitude = Dec, padded by half of each object's field) and the time span of its
-- indexed objects — recomputed at the end of every indexing pass, so the STAC collections and
-- the web pages state a volume's extent without reading its objects.
CREATE TABLE science_extents (
    volume_id  TEXT PRIMARY KEY,
    lon_min    DOUBLE PRECISION,
    lat_min    DOUBLE PRECISION,
    lon_max    DOUBLE PRECISION,
    lat_max    DOUBLE PRECISION,
    t_min      DOUBLE PRECISION,
    t_max      DOUBLE PRECISION,
    objects    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

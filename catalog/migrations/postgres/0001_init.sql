-- Archway catalogue, version 1 (PostgreSQL).
-- Times are milliseconds since the Unix epoch; booleans are 0/1 integers (the same in SQLite,
-- so one code path reads both).
CREATE TABLE archway_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE volumes (
    id               TEXT PRIMARY KEY,
    title            TEXT NOT NULL DEFAULT '',
    description      TEXT NOT NULL DEFAULT '',
    mission          TEXT,
    instrument       TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',
    license          TEXT,
    dataproduct_type TEXT,
    calib_level      BIGINT,
    backend          TEXT NOT NULL,
    prefix           TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,
    read_only        BIGINT NOT NULL,
    public_read      BIGINT NOT NULL,
    owner            TEXT,
    extra            TEXT NOT NULL DEFAULT '{}',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    scan_objects     BIGINT,
    scan_bytes       BIGINT,
    scanned_at       BIGINT,
    -- 'simple' (no stemming), so PostgreSQL and SQLite (unicode61) match the same words.
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(tags, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(mission, '') || ' ' || coalesce(instrument, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'C')
    ) STORED
);
CREATE INDEX volumes_search ON volumes USING GIN (search);

CREATE TABLE users (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    admin        BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL
);

CREATE TABLE access_keys (
    id            TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);
CREATE INDEX access_keys_user ON access_keys(user_name);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_name);

CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_user ON group_members(user_name);

CREATE TABLE grants (
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    volume_id    TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
    level        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject, volume_id)
);
CREATE INDEX grants_volume ON grants(volume_id);

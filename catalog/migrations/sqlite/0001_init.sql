-- Archway catalogue, version 1 (SQLite).
-- Times are milliseconds since the Unix epoch; booleans are 0/1 integers (the same in PostgreSQL,
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
    calib_level      INTEGER,
    backend          TEXT NOT NULL,
    prefix           TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,
    read_only        INTEGER NOT NULL,
    public_read      INTEGER NOT NULL,
    owner            TEXT,
    extra            TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    scan_objects     INTEGER,
    scan_bytes       INTEGER,
    scanned_at       INTEGER
);

-- Full-text index, kept in step with `volumes` by the catalogue code in the same transaction.
-- unicode61 without stemming, so SQLite and PostgreSQL ('simple') match the same words.
CREATE VIRTUAL TABLE volume_fts USING fts5(
    id UNINDEXED, title, description, tags, mission, instrument,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE users (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    admin        INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

CREATE TABLE access_keys (
    id            TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);
CREATE INDEX access_keys_user ON access_keys(user_name);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_name);

CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
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
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (subject_kind, subject, volume_id)
);
CREATE INDEX grants_volume ON grants(volume_id);

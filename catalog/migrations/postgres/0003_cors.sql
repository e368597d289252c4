-- Version 3: per-volume CORS rules (S3 PutBucketCors), a JSON list of rules.
CREATE TABLE volume_cors (
    volume_id  TEXT PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
    rules      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Version 5: scoped and expiring credentials, and temporary (STS) keys.
-- `read_only` (0/1) limits a key or token to reading; `volumes` (a JSON list of volume ids,
-- NULL for all) to those volumes; `expires_at` (ms since the epoch, NULL for never) ends a
-- key; `session_token_hash` marks a temporary key, whose requests must carry the session
-- token it was issued with (stored as a hash, like API tokens).
ALTER TABLE access_keys ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE access_keys ADD COLUMN volumes TEXT;
ALTER TABLE access_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE access_keys ADD COLUMN session_token_hash TEXT;
ALTER TABLE api_tokens ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN volumes TEXT;

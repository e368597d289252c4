-- Version 7: workspace quotas. Limits in bytes and objects on workspaces and on users (over
-- every workspace they own; NULL: none), and the usage written against them, in tables of
-- their own: usage moves with every write, and must not move the change counter the
-- in-memory view polls. Usage moves in the same transaction that checks the limits, so
-- concurrent writers never commit past them. Existing workspaces start from their last scan
-- (`archway catalog volume scan` recounts one).
ALTER TABLE volumes ADD COLUMN quota_bytes INTEGER;
ALTER TABLE volumes ADD COLUMN quota_objects INTEGER;
ALTER TABLE users ADD COLUMN quota_bytes INTEGER;
ALTER TABLE users ADD COLUMN quota_objects INTEGER;
CREATE TABLE workspace_usage (
    volume_id TEXT PRIMARY KEY,
    bytes     INTEGER NOT NULL DEFAULT 0,
    objects   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE user_usage (
    user_name TEXT PRIMARY KEY,
    bytes     INTEGER NOT NULL DEFAULT 0,
    objects   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO workspace_usage (volume_id, bytes, objects)
    SELECT id, COALESCE(scan_bytes, 0), COALESCE(scan_objects, 0) FROM volumes
    WHERE kind = 'workspace';
INSERT INTO user_usage (user_name, bytes, objects)
    SELECT v.owner, SUM(u.bytes), SUM(u.objects) FROM volumes v
    JOIN workspace_usage u ON u.volume_id = v.id
    WHERE v.owner IS NOT NULL GROUP BY v.owner;

-- Version 2: users who may create workspace volumes themselves (S3 CreateBucket).
ALTER TABLE users ADD COLUMN create_workspaces BIGINT NOT NULL DEFAULT 0;

-- Version 6: links to peer gateways (a federated catalogue). A link names the peer's URL and
-- the credentials this gateway uses there (the secret and the API token sealed, as S3 secrets
-- are); the peer's volumes those credentials may read are kept here as volumes whose backend
-- is `peer.<name>`, refreshed from the peer.
CREATE TABLE peers (
    name            TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    access_key_id   TEXT NOT NULL,
    sealed_secret   TEXT NOT NULL,
    sealed_token    TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    refreshed_at    BIGINT,
    last_error      TEXT
);

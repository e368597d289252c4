-- A change counter for the in-memory catalogue view: every change to a table the view holds
-- moves it on and notifies `archway_catalog` listeners (delivered when the change commits), so
-- every replica sees changes made by any other.
INSERT INTO archway_meta (name, value) VALUES ('generation', '0') ON CONFLICT (name) DO NOTHING;

CREATE FUNCTION archway_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    g BIGINT;
BEGIN
    UPDATE archway_meta SET value = (value::BIGINT + 1)::TEXT WHERE name = 'generation'
        RETURNING value::BIGINT INTO g;
    PERFORM pg_notify('archway_catalog', g::TEXT);
    RETURN NULL;
END
$$;
CREATE TRIGGER volumes_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON volumes
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER users_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER access_keys_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON access_keys
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER api_tokens_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER groups_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER group_members_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER grants_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();
CREATE TRIGGER volume_cors_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON volume_cors
    FOR EACH STATEMENT EXECUTE FUNCTION archway_catalog_changed();

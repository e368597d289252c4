-- A change counter for the in-memory catalogue view: every change to a table the view holds
-- moves it on, so a gateway polling it sees changes made by any other process.
INSERT INTO archway_meta (name, value) VALUES ('generation', '0') ON CONFLICT (name) DO NOTHING;
CREATE TRIGGER volumes_insert_generation AFTER INSERT ON volumes BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER volumes_update_generation AFTER UPDATE ON volumes BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER volumes_delete_generation AFTER DELETE ON volumes BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER users_insert_generation AFTER INSERT ON users BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER users_update_generation AFTER UPDATE ON users BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER users_delete_generation AFTER DELETE ON users BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER access_keys_insert_generation AFTER INSERT ON access_keys BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER access_keys_update_generation AFTER UPDATE ON access_keys BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER access_keys_delete_generation AFTER DELETE ON access_keys BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER api_tokens_insert_generation AFTER INSERT ON api_tokens BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER api_tokens_update_generation AFTER UPDATE ON api_tokens BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER api_tokens_delete_generation AFTER DELETE ON api_tokens BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER groups_insert_generation AFTER INSERT ON groups BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER groups_update_generation AFTER UPDATE ON groups BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER groups_delete_generation AFTER DELETE ON groups BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER group_members_insert_generation AFTER INSERT ON group_members BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER group_members_update_generation AFTER UPDATE ON group_members BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER group_members_delete_generation AFTER DELETE ON group_members BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER grants_insert_generation AFTER INSERT ON grants BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER grants_update_generation AFTER UPDATE ON grants BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER grants_delete_generation AFTER DELETE ON grants BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER volume_cors_insert_generation AFTER INSERT ON volume_cors BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER volume_cors_update_generation AFTER UPDATE ON volume_cors BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;
CREATE TRIGGER volume_cors_delete_generation AFTER DELETE ON volume_cors BEGIN
    UPDATE archway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE name = 'generation';
END;

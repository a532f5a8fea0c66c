-- +goose Up
-- Replacing a credential's identifiers (and the ON DELETE CASCADE from identity_credentials)
-- looks identifiers up by credential; without this index every registration scanned the whole
-- table, and registrations slowed down as identities grew (docs/BENCHMARKS.md).
CREATE INDEX identity_credential_identifiers_credential_idx ON identity_credential_identifiers (credential_id);

-- +goose Down
DROP INDEX identity_credential_identifiers_credential_idx;

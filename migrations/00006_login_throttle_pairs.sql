-- +goose Up
-- Login throttling locks per (identifier, address) pair and per address, never per identifier
-- (core/throttle.go): a lock per identifier let anyone keep an account's owner out forever by
-- failing five times every fifteen minutes. The pair counter gets its own kind; its key is a
-- SHA-256 of the address unit and the normalised identifier. Identifier rows now only slow
-- attempts down, so the locks they hold are lifted rather than left to run out.
ALTER TABLE login_throttle DROP CONSTRAINT login_throttle_kind_check;
ALTER TABLE login_throttle ADD CONSTRAINT login_throttle_kind_check
    CHECK (kind IN ('identifier', 'address', 'pair'));
UPDATE login_throttle SET locked_until = NULL WHERE kind = 'identifier' AND locked_until IS NOT NULL;

-- +goose Down
DELETE FROM login_throttle WHERE kind = 'pair';
ALTER TABLE login_throttle DROP CONSTRAINT login_throttle_kind_check;
ALTER TABLE login_throttle ADD CONSTRAINT login_throttle_kind_check
    CHECK (kind IN ('identifier', 'address'));

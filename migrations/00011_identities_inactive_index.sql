-- +goose Up
-- The admin console lists identities by state, newest first. Active ones are nearly all rows and
-- walk identities_created_at_id_idx; inactive ones are few, so a page of them would walk the
-- whole table without an index of their own. The index holds inactive rows only: registrations
-- (which insert active rows) never write to it, and it grows with deactivations alone.
CREATE INDEX identities_inactive_created_idx ON identities (created_at, id) WHERE state = 'inactive';

-- +goose Down
DROP INDEX identities_inactive_created_idx;

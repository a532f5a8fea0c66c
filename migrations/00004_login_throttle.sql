-- +goose Up
-- Login throttling (core/throttle.go): one counter row per identifier and per client address,
-- shared by every `latch serve` process. Every login attempt reserves its failure with one
-- INSERT ... ON CONFLICT DO UPDATE before the password is checked, which takes the row lock, so
-- concurrent attempts from any number of processes are counted one after the other: none is
-- lost, and a parallel burst cannot get more guesses past the check than the limit allows.
--
-- key is a SHA-256 of the normalised identifier or of the address (an IPv6 address by its /64),
-- so the table holds no typed identifiers (people type passwords into the identifier field)
-- and no addresses in clear.
CREATE TABLE login_throttle (
    kind         text        NOT NULL CHECK (kind IN ('identifier', 'address')),
    key          bytea       NOT NULL,
    failures     integer     NOT NULL,  -- failures (attempts in flight included) since window_start
    window_start timestamptz NOT NULL,  -- the count restarts once this is older than the window
    locked_until timestamptz,           -- set when failures reach the limit
    -- When the row stops mattering (window over and lock over), for the janitor. Deliberately
    -- not indexed: every login updates the row, and without an index on a changed column those
    -- updates stay HOT; the janitor's periodic scan of this small table is the cheaper side.
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);

-- +goose Down
DROP TABLE login_throttle;

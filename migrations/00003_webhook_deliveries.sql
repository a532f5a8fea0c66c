-- +goose Up
-- One row per (event, webhook): fan-out inserts it, the dispatcher attempts it until it succeeds
-- or dies, the admin API lists and replays it. The id is the Standard Webhooks webhook-id, so it
-- never changes across retries and replays. There is no foreign key to identities: an identity
-- may be deleted while its deliveries (identity.deleted among them) must stay.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    event_id        uuid        NOT NULL,
    hook_id         text        NOT NULL,
    event_type      text        NOT NULL,
    identity_id     uuid,
    url             text        NOT NULL, -- the hook's URL at fan-out, for display; attempts use the current one
    body            bytea       NOT NULL, -- the exact bytes sent and signed on every attempt
    content_type    text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('pending', 'succeeded', 'dead')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_until     timestamptz, -- set while a worker holds the delivery; expiry hands it over
    leased_by       text,
    last_status     int,
    last_error      text,
    event_time      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Fan-out's idempotency: an event delivered twice by JetStream (or published twice by the
    -- relay) makes one delivery per hook.
    UNIQUE (event_id, hook_id)
);
-- The claim loop's query: due pending deliveries of one hook, oldest due first. hook_id leads
-- so that a hook with a large backlog (a dead endpoint) costs nothing to the other hooks'
-- claims; the same index lists the hooks that have pending work (a skip scan).
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (hook_id, next_attempt_at) WHERE state = 'pending';
-- Admin listing (newest first) by state, by hook, by identity and unfiltered; bulk replay.
CREATE INDEX webhook_deliveries_state_created_idx ON webhook_deliveries (state, created_at, id);
CREATE INDEX webhook_deliveries_hook_created_idx ON webhook_deliveries (hook_id, created_at, id);
CREATE INDEX webhook_deliveries_identity_created_idx ON webhook_deliveries (identity_id, created_at, id) WHERE identity_id IS NOT NULL;
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at, id);

-- One row per attempt, so an operator can see what the endpoint answered each time.
CREATE TABLE webhook_attempts (
    delivery_id   uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       int         NOT NULL, -- 1-based, keeps counting across replays
    started_at    timestamptz NOT NULL,
    duration_ms   int         NOT NULL,
    status_code   int,                  -- NULL when no response arrived
    error_class   text,                 -- NULL on success; timeout, connection, http_status, ...
    error         text,
    response_body text,                 -- first 4 KiB, valid UTF-8
    PRIMARY KEY (delivery_id, attempt)
);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;

-- +goose Up
-- Webhook endpoints managed through the admin API (Svix-style: subscribed to event types rather
-- than to a flow's position). Endpoints declared in the configuration (webhooks.endpoints) are
-- not rows here; both kinds share webhook_health and the delivery tables, keyed by hook id (an
-- API endpoint's hook id is its uuid as text).
CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    url             text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    event_types     text[]      NOT NULL DEFAULT '{}', -- exact names or "prefix.*"; empty: every type
    headers         jsonb       NOT NULL DEFAULT '{}',
    signing_secrets jsonb       NOT NULL,              -- [{"secret": "whsec_...", "expires_at": null | timestamp}]
    rate_limit      int CHECK (rate_limit IS NULL OR rate_limit > 0), -- deliveries per second, all workers together
    ordering        text        NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'per_identity')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Health and operational state of every delivery target (flow web_hooks and endpoints of both
-- kinds), by hook id: the failure streak the circuit breaker paces on, the disabled switch (set
-- by an operator or after failing for webhooks.endpoint_disable_after), and the token bucket of
-- a rate-limited endpoint, shared by every worker.
CREATE TABLE webhook_health (
    hook_id              text PRIMARY KEY,
    consecutive_failures int         NOT NULL DEFAULT 0,
    failing_since        timestamptz,            -- first failure of the current streak
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    paced_until          timestamptz,            -- circuit breaker: no attempt before this
    disabled_at          timestamptz,            -- not NULL: nothing is attempted
    disabled_reason      text CHECK (disabled_reason IN ('manual', 'failing')),
    tokens               double precision NOT NULL DEFAULT 0,
    refilled_at          timestamptz
);

-- One row whose version every change of endpoints or of a disabled switch bumps, in the
-- changing transaction (with a NOTIFY on latch_webhooks), so every process reloads within a
-- second: at once on the NOTIFY, or at its next one-row poll when the NOTIFY was missed.
CREATE TABLE webhook_config_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO webhook_config_version (singleton, version) VALUES (true, 0);

-- The event's JetStream stream sequence: the order deliveries about one identity are attempted
-- in on an endpoint with ordering per_identity. NULL for rows made before this migration and
-- for test sends.
ALTER TABLE webhook_deliveries ADD COLUMN event_seq bigint;
-- Ordered claims ask "is there an earlier pending delivery for this identity on this endpoint?".
CREATE INDEX webhook_deliveries_ordered_idx ON webhook_deliveries (hook_id, identity_id, event_seq)
    WHERE state = 'pending' AND identity_id IS NOT NULL;

-- +goose Down
DROP INDEX webhook_deliveries_ordered_idx;
ALTER TABLE webhook_deliveries DROP COLUMN event_seq;
DROP TABLE webhook_config_version;
DROP TABLE webhook_health;
DROP TABLE webhook_endpoints;

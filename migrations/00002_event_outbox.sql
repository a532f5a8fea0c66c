-- +goose Up
-- The transactional outbox: one row per event, inserted in the same transaction as the state
-- change that caused it, so an event exists if and only if its change committed. The relay
-- publishes unpublished rows to JetStream (Nats-Msg-Id = id) and marks them; published rows are
-- kept for a retention period and then pruned, so nothing depends on the broker's fsync.
CREATE TABLE event_outbox (
    seq          bigserial PRIMARY KEY,
    id           uuid        NOT NULL UNIQUE,
    type         text        NOT NULL,
    payload      jsonb       NOT NULL, -- the whole envelope: {"id", "type", "timestamp", "data"}
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
-- The relay's claim (unpublished rows in insertion order) and Lag read only this small index.
CREATE INDEX event_outbox_unpublished_idx ON event_outbox (seq) WHERE published_at IS NULL;
-- Pruning deletes published rows older than the retention period.
CREATE INDEX event_outbox_published_at_idx ON event_outbox (published_at) WHERE published_at IS NOT NULL;

-- +goose Down
DROP TABLE event_outbox;

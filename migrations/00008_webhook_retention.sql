-- +goose Up
-- Retention and erasure of webhook deliveries (webhooks/retention.go).
--
-- Retention: final deliveries (succeeded, dead) are deleted once updated_at is older than
-- webhooks.retention, attempts with them (ON DELETE CASCADE). The index holds final rows only,
-- so fan-out's inserts (pending) never touch it; a row enters it when it becomes final.
CREATE INDEX webhook_deliveries_final_updated_idx ON webhook_deliveries (updated_at) WHERE state <> 'pending';

-- Erasure: the stored body of a delivery about a deleted identity is emptied and erased_at set;
-- its attempts lose response_body and error. Status, timing and error classes stay, so the
-- delivery log still tells what happened, without the identity's data.
ALTER TABLE webhook_deliveries ADD COLUMN erased_at timestamptz;

-- One marker per deleted identity, written by fan-out in the statement that records the
-- identity.deleted event's deliveries, before the event is acked. The erasure sweep follows
-- open markers (settled_at NULL) every few seconds: it erases the identity's final deliveries
-- and settles the marker once none is left unerased (pending ones keep it open until they
-- are final). A settled marker costs the sweep nothing; the retention pass reopens one when a
-- delivery about the identity appeared later, and deletes markers older than the retention
-- with nothing left to erase.
CREATE TABLE webhook_erasures (
    identity_id  uuid PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    settled_at   timestamptz
);
CREATE INDEX webhook_erasures_open_idx ON webhook_erasures (requested_at) WHERE settled_at IS NULL;

-- +goose Down
DROP TABLE webhook_erasures;
ALTER TABLE webhook_deliveries DROP COLUMN erased_at;
DROP INDEX webhook_deliveries_final_updated_idx;

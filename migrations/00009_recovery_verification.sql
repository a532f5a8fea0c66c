-- +goose Up
-- Recovery and verification flows live beside the others.
ALTER TABLE selfservice_flows DROP CONSTRAINT selfservice_flows_kind_check;
ALTER TABLE selfservice_flows ADD CONSTRAINT selfservice_flows_kind_check
    CHECK (kind IN ('registration', 'login', 'settings', 'recovery', 'verification'));
-- How many codes were submitted to the flow (Kratos' max_submissions counts the right one too),
-- and which address it is about (the one the user typed, verbatim as normalized).
ALTER TABLE selfservice_flows ADD COLUMN submissions int NOT NULL DEFAULT 0;
ALTER TABLE selfservice_flows ADD COLUMN address text;

-- One-time codes of recovery and verification flows. Only an HMAC of the code is stored (keyed
-- with the configured secrets), so a database dump cannot be tried offline against a 6-digit
-- space. A code belongs to one flow; asking again deletes the flow's earlier codes.
CREATE TABLE selfservice_codes (
    id          uuid PRIMARY KEY,
    flow_id     uuid        NOT NULL REFERENCES selfservice_flows (id) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('recovery', 'verification')),
    identity_id uuid        NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    address     text        NOT NULL,
    code_hmac   bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX selfservice_codes_flow_idx ON selfservice_codes (flow_id);
CREATE INDEX selfservice_codes_identity_idx ON selfservice_codes (identity_id);

-- +goose Down
DROP TABLE selfservice_codes;
ALTER TABLE selfservice_flows DROP COLUMN address;
ALTER TABLE selfservice_flows DROP COLUMN submissions;
ALTER TABLE selfservice_flows DROP CONSTRAINT selfservice_flows_kind_check;
ALTER TABLE selfservice_flows ADD CONSTRAINT selfservice_flows_kind_check
    CHECK (kind IN ('registration', 'login', 'settings'));

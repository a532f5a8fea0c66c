-- +goose Up
-- Identities: traits are validated against the identity schema before they get here.
-- Addresses live as jsonb on the row so that whoami reads one identity row, not three tables.
CREATE TABLE identities (
    id                   uuid PRIMARY KEY,
    schema_id            text        NOT NULL,
    state                text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'inactive')),
    state_changed_at     timestamptz,
    traits               jsonb       NOT NULL,
    verifiable_addresses jsonb       NOT NULL DEFAULT '[]',
    recovery_addresses   jsonb       NOT NULL DEFAULT '[]',
    metadata_public      jsonb,
    metadata_admin       jsonb,
    external_id          text UNIQUE,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identities_created_at_id_idx ON identities (created_at, id);

-- One row per credential type an identity has (password today).
CREATE TABLE identity_credentials (
    id          uuid PRIMARY KEY,
    identity_id uuid        NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    type        text        NOT NULL,
    config      jsonb       NOT NULL DEFAULT '{}',
    version     integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (identity_id, type)
);

-- Identifiers are unique per credential type: this constraint is what makes two concurrent
-- registrations of one email end in exactly one identity.
CREATE TABLE identity_credential_identifiers (
    type          text NOT NULL,
    identifier    text NOT NULL,
    identity_id   uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    credential_id uuid NOT NULL REFERENCES identity_credentials (id) ON DELETE CASCADE,
    PRIMARY KEY (type, identifier)
);
CREATE INDEX identity_credential_identifiers_identity_idx ON identity_credential_identifiers (identity_id);

-- Sessions: only a SHA-256 of the token is stored.
CREATE TABLE sessions (
    id                     uuid PRIMARY KEY,
    identity_id            uuid        NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    token_hash             bytea       NOT NULL UNIQUE,
    active                 boolean     NOT NULL DEFAULT true,
    aal                    text        NOT NULL DEFAULT 'aal1',
    authentication_methods jsonb       NOT NULL DEFAULT '[]',
    devices                jsonb       NOT NULL DEFAULT '[]',
    issued_at              timestamptz NOT NULL,
    authenticated_at       timestamptz NOT NULL,
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_identity_id_idx ON sessions (identity_id, created_at, id);
CREATE INDEX sessions_created_at_id_idx ON sessions (created_at, id);

-- Self-service flows (registration, login, settings). The UI container is stored as rendered so
-- that fetching a flow returns exactly what the last submit answered.
CREATE TABLE selfservice_flows (
    id            uuid PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('registration', 'login', 'settings')),
    type          text        NOT NULL CHECK (type IN ('api', 'browser')),
    state         text        NOT NULL,
    request_url   text        NOT NULL,
    return_to     text        NOT NULL DEFAULT '',
    identity_id   uuid REFERENCES identities (id) ON DELETE CASCADE,
    session_id    uuid REFERENCES sessions (id) ON DELETE CASCADE,
    refresh       boolean     NOT NULL DEFAULT false,
    requested_aal text        NOT NULL DEFAULT 'aal1',
    ui            jsonb       NOT NULL,
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX selfservice_flows_expires_at_idx ON selfservice_flows (expires_at);

-- +goose Down
DROP TABLE selfservice_flows;
DROP TABLE sessions;
DROP TABLE identity_credential_identifiers;
DROP TABLE identity_credentials;
DROP TABLE identities;

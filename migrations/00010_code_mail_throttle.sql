-- +goose Up
-- How many recovery and verification code mails each address got in its current window
-- (core/codes.go, selfservice.methods.code.config.max_messages_per_address). The key is a
-- SHA-256 of the normalised address, so the table holds no addresses in clear. Rows whose
-- window is over are deleted by the flow janitor; they would restart at the next mail anyway.
CREATE TABLE code_mail_throttle (
    key          bytea       PRIMARY KEY,
    sent         integer     NOT NULL,
    window_start timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

-- +goose Down
DROP TABLE code_mail_throttle;

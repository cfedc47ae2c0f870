-- Users of Bulwark. Emails are unique case-insensitively; the hash is argon2id (PHC string).
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name  TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    password_hash TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Audit events written in the same transaction as the change they record, delivered
-- to the Audit service by the kernel's relay (at least once; Audit drops duplicates).
CREATE TABLE audit_outbox (
    id           UUID PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        BYTEA NOT NULL,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX audit_outbox_pending ON audit_outbox (occurred_at) WHERE delivered_at IS NULL;

-- Service accounts: OAuth 2.0 clients that obtain access tokens with the
-- client-credentials grant. The secret is stored only as its SHA-256 (it is 32
-- random bytes, so a fast hash is enough); the roles name Authz roles whose
-- permissions the client's tokens carry, resolved when each token is issued.
-- The built-in clients of the services themselves come from configuration and
-- are not stored here.
CREATE TABLE clients (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    secret_hash BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    roles       TEXT[] NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

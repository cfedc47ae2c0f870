-- Token signing keys. Exactly one key is active (retired_at IS NULL) and signs new
-- tokens; retired keys stay published in the JWKS until `publish_until`, when the
-- last token they signed has expired. A retired key's private half is erased.
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('EdDSA', 'ES256', 'RS256')),
    private_key   BYTEA NOT NULL,
    public_jwk    JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    retired_at    TIMESTAMPTZ,
    publish_until TIMESTAMPTZ,
    CHECK ((retired_at IS NULL) = (publish_until IS NULL))
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- Opaque refresh tokens, stored only as SHA-256 hashes. A family is every token
-- descended from one login; reusing a used token revokes the whole family.
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    family_id   UUID NOT NULL,
    user_id     UUID NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    parent_id   UUID REFERENCES refresh_tokens (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE audit_outbox (
    id           UUID PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        BYTEA NOT NULL,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX audit_outbox_pending ON audit_outbox (occurred_at) WHERE delivered_at IS NULL;

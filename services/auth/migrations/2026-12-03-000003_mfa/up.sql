-- TOTP (RFC 6238) second factor: one secret per user, sealed under the key-encryption
-- key like the signing keys; pending until confirmed with a code. `last_used_step` is
-- the time step of the last accepted code, so a code is accepted once.
CREATE TABLE totp_secrets (
    user_id        UUID PRIMARY KEY,
    secret         BYTEA NOT NULL,
    kek_id         TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at   TIMESTAMPTZ,
    last_used_step BIGINT
);

-- Single-use recovery codes, stored as SHA-256 bound to the user.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL,
    code_hash BYTEA NOT NULL CHECK (octet_length(code_hash) = 32),
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

-- The second step of a login with MFA: the `mfa_token` (stored as its SHA-256),
-- valid 5 minutes for at most 5 tries, used once.
CREATE TABLE mfa_challenges (
    token_hash  BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id     UUID NOT NULL,
    -- The lockout key of the login's email, so a wrong code counts against it.
    lockout_key TEXT NOT NULL,
    audit_target TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    tries       INT NOT NULL DEFAULT 0,
    used_at     TIMESTAMPTZ
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

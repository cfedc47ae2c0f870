-- Tokens mailed for email verification (24 h) and password reset (30 min): single use,
-- stored only as the SHA-256 of what the mail carries. A newer request of the same kind
-- supersedes the older unused ones. Rows are kept (used, superseded or expired): the
-- reset rows of the last hour are what the per-address mail limit counts.
CREATE TABLE account_tokens (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('email_verification', 'password_reset')),
    token_hash    BYTEA NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    superseded_at TIMESTAMPTZ
);
CREATE INDEX account_tokens_by_user ON account_tokens (user_id, kind, created_at DESC);

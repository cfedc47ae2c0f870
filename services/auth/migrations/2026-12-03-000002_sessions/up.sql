-- A session is one login and every refresh descended from it: the refresh token family
-- of that login, with what its owner sees in the session list. Access tokens carry its
-- id as `sid`; the edge refuses the tokens of a revoked session (ListRevokedSessions
-- reads `revoked_at`, set with clock_timestamp() so it is close to the commit).
CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When its newest refresh token expires: the session cannot outlive it.
    expires_at     TIMESTAMPTZ NOT NULL,
    ip             TEXT NOT NULL DEFAULT '' CHECK (char_length(ip) <= 64),
    user_agent     TEXT NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 256),
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX sessions_live_by_user ON sessions (user_id, last_used_at DESC) WHERE revoked_at IS NULL;
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every family that exists already becomes a session, ended if none of its tokens is
-- usable any more.
INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at, revoked_reason)
SELECT family_id,
       (array_agg(user_id))[1],
       min(created_at),
       max(created_at),
       max(expires_at),
       CASE WHEN bool_and(used_at IS NOT NULL OR revoked_at IS NOT NULL)
            THEN coalesce(max(revoked_at), max(created_at)) END,
       CASE WHEN bool_and(used_at IS NOT NULL OR revoked_at IS NOT NULL)
            THEN 'migrated' END
FROM refresh_tokens
GROUP BY family_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_session FOREIGN KEY (family_id) REFERENCES sessions (id);

-- Publish before use: a rotated-in key is in the JWKS from its creation but signs only
-- from `activates_at`, once every edge has had time to fetch it. The signing key is the
-- one with the latest activates_at <= now among keys not retired by now; a rotation
-- schedules the outgoing key's retirement at its successor's activation, so at most one
-- key has no retirement set (the `signing_keys_one_active` index): the newest, active or
-- pending. Existing keys have always been active. The default keeps inserts of
-- instances still running the previous release working during a rolling upgrade.
ALTER TABLE signing_keys ADD COLUMN activates_at TIMESTAMPTZ;
UPDATE signing_keys SET activates_at = created_at;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET DEFAULT now();

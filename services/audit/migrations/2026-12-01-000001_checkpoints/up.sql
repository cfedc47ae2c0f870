-- Signed checkpoints of the chain head: (sequence, hash) of the newest event at the
-- time, signed with Audit's Ed25519 checkpoint key, which is not in this database. Kept
-- here so that every Audit instance lists the same ones; each is also written as a file
-- outside the database (audit.checkpoint_dir). A row proves nothing by itself: the
-- signature does, so a forged row is refused by VerifyChain, and a deleted one is still
-- in the files and in the copies operators keep elsewhere.
-- The runtime role needs INSERT and SELECT on this table (and USAGE on its id sequence).
CREATE TABLE checkpoints (
    id          BIGSERIAL PRIMARY KEY,
    sequence    BIGINT NOT NULL CHECK (sequence > 0),
    hash        BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    signed_at   TIMESTAMPTZ NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BYTEA NOT NULL CHECK (octet_length(signature) = 64),
    UNIQUE (sequence, hash)
);

CREATE FUNCTION checkpoints_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only';
END;
$$;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION checkpoints_are_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_are_append_only();

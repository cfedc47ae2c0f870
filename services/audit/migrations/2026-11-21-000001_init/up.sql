-- The append-only audit log. Each event is chained to its predecessor (in `seq` order)
-- by hash: hash = SHA-256(prev_hash || canonical encoding of the event), the first
-- event's prev_hash being 32 zero bytes, so an edited, inserted or removed row breaks
-- the chain from there on. The canonical encoding is documented in src/domain/chain.rs.
-- Appends take a transaction-level advisory lock, so `seq` order is chain order.
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          UUID NOT NULL UNIQUE,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    service     TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    trace_id    TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);
-- ListEvents filters, newest first by seq.
CREATE INDEX events_actor ON events (actor_id, seq);
CREATE INDEX events_action ON events (action, seq);
CREATE INDEX events_occurred ON events (occurred_at, seq);

-- No update or delete path: the table refuses both, and TRUNCATE (which row triggers
-- do not see).
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

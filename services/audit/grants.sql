-- What Audit's runtime role may do in its schema; `bulwark-audit migrate` revokes
-- everything else. Events are appended and read, never updated, deleted or truncated;
-- the role owns nothing, so it cannot ALTER TABLE ... DISABLE TRIGGER either.
GRANT SELECT, INSERT ON events TO {runtime};
GRANT USAGE ON SEQUENCE events_seq_seq TO {runtime};
-- Signed checkpoints of the chain head: appended and listed, never changed either.
GRANT SELECT, INSERT ON checkpoints TO {runtime};
GRANT USAGE ON SEQUENCE checkpoints_id_seq TO {runtime};

-- What Identity's runtime role may do in its schema; `bulwark-identity migrate` revokes
-- everything else. The role owns nothing, so it cannot ALTER, TRUNCATE or DROP.
-- Users are never deleted (deactivated instead).
GRANT SELECT, INSERT, UPDATE ON users TO {runtime};
-- The audit outbox: written with each change, marked delivered and pruned by the relay.
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_outbox TO {runtime};

-- What Authz's runtime role may do in its schema; `bulwark-authz migrate` revokes
-- everything else. The role owns nothing, so it cannot ALTER, TRUNCATE or DROP, nor
-- disable the triggers that bump policy_version.
GRANT SELECT, INSERT, UPDATE ON roles TO {runtime};
GRANT SELECT, INSERT, DELETE ON role_grants TO {runtime};
-- Read by every Check; bumped by the triggers on roles and role_grants, which run as
-- the runtime role.
GRANT SELECT, UPDATE ON policy_version TO {runtime};
-- The audit outbox: written with each change, marked delivered and pruned by the relay.
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_outbox TO {runtime};

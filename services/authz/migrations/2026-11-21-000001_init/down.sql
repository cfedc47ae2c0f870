DROP TABLE audit_outbox;
DROP TABLE role_grants;
DROP TABLE roles;
DROP TABLE policy_version;
DROP FUNCTION bump_policy_version();

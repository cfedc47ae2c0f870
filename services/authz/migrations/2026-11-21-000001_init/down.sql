DROP TABLE audit_outbox; DROP TABLE role_grants; DROP TABLE roles;

-- One role and schema per service, as the local mesh provisions them.
CREATE ROLE identity_svc LOGIN PASSWORD 'identity_svc';
CREATE ROLE auth_svc LOGIN PASSWORD 'auth_svc';
CREATE ROLE authz_svc LOGIN PASSWORD 'authz_svc';
CREATE ROLE audit_svc LOGIN PASSWORD 'audit_svc';
CREATE SCHEMA identity AUTHORIZATION identity_svc;
CREATE SCHEMA auth AUTHORIZATION auth_svc;
CREATE SCHEMA authz AUTHORIZATION authz_svc;
CREATE SCHEMA audit AUTHORIZATION audit_svc;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

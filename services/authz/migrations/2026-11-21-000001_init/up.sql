-- RBAC: roles are sets of `resource:action` permissions; grants give roles to users.
CREATE TABLE roles (
    name        TEXT PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    permissions TEXT[] NOT NULL CHECK (cardinality(permissions) BETWEEN 1 AND 100),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `user_id` is no foreign key: users live in Identity's schema, and Authz does not ask
-- Identity whether a user exists before granting (a grant to an unknown id is inert).
CREATE TABLE role_grants (
    user_id    UUID NOT NULL,
    role       TEXT NOT NULL REFERENCES roles (name),
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);
-- "Who holds admin?" (the last-admin rule) without a full scan.
CREATE INDEX role_grants_by_role ON role_grants (role, user_id);

-- One counter that every change of roles or grants bumps in its own transaction. Each
-- Check reads it (a primary-key lookup) and drops cached decisions computed under an
-- older version, so a change made through any Authz instance is seen by all of them
-- on their next Check.
CREATE TABLE policy_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT NOT NULL
);
INSERT INTO policy_version (singleton, version) VALUES (TRUE, 0);

-- A trigger rather than a bump in the service code: no write path (nor an operator's
-- manual SQL) can forget it. `search_path` is pinned to the schema the migration runs
-- in, so the trigger also works from sessions with another search_path.
CREATE FUNCTION bump_policy_version() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE policy_version SET version = version + 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER roles_bump_policy_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_version();
CREATE TRIGGER role_grants_bump_policy_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON role_grants
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_version();

CREATE TABLE audit_outbox (
    id           UUID PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        BYTEA NOT NULL,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX audit_outbox_pending ON audit_outbox (occurred_at) WHERE delivered_at IS NULL;

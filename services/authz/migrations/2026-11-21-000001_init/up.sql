-- RBAC: roles are sets of `resource:action` permissions; grants give roles to users.
CREATE TABLE roles (
    name        TEXT PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    permissions TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE role_grants (
    user_id    UUID NOT NULL,
    role       TEXT NOT NULL REFERENCES roles (name),
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE audit_outbox (
    id           UUID PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        BYTEA NOT NULL,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX audit_outbox_pending ON audit_outbox (occurred_at) WHERE delivered_at IS NULL;

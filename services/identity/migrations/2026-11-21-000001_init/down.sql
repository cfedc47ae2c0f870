DROP TABLE audit_outbox; DROP TABLE users;

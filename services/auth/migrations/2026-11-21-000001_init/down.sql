DROP TABLE audit_outbox; DROP TABLE refresh_tokens; DROP TABLE signing_keys;

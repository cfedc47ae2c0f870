-- What Auth's runtime role may do in its schema; `bulwark-auth migrate` revokes
-- everything else. The role owns nothing, so it cannot ALTER, TRUNCATE or DROP.
-- Signing keys: created, retired (UPDATE; also what LOCK TABLE ... SHARE ROW EXCLUSIVE
-- needs) and deleted once no token can carry them.
GRANT SELECT, INSERT, UPDATE, DELETE ON signing_keys TO {runtime};
-- Refresh tokens are marked used or revoked, never deleted.
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO {runtime};
-- Service accounts: created and deleted, never changed.
GRANT SELECT, INSERT, DELETE ON clients TO {runtime};
-- The audit outbox: written with each change, marked delivered and pruned by the relay.
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_outbox TO {runtime};
-- Sessions: started at login, touched at refresh, revoked; never deleted.
GRANT SELECT, INSERT, UPDATE ON sessions TO {runtime};
-- The mail outbox: written with each change that mails, claimed (SELECT ... FOR UPDATE),
-- marked sent or rescheduled by the relay, and pruned once long sent.
GRANT SELECT, INSERT, UPDATE, DELETE ON mail_outbox TO {runtime};
-- TOTP secrets: created pending, confirmed, their last step moved, deleted on disable.
GRANT SELECT, INSERT, UPDATE, DELETE ON totp_secrets TO {runtime};
-- Recovery codes: issued, marked used, deleted on disable or re-issue.
GRANT SELECT, INSERT, UPDATE, DELETE ON recovery_codes TO {runtime};
-- Second login steps: created, tried, used, and pruned once expired.
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_challenges TO {runtime};
-- Mailed account tokens: minted, then marked used or superseded; never deleted.
GRANT SELECT, INSERT, UPDATE ON account_tokens TO {runtime};

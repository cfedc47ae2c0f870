ALTER TABLE users DROP COLUMN mfa_enabled, DROP COLUMN email_verified;

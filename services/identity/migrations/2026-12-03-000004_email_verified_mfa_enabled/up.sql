-- Whether the owner proved they receive mail at the address (a mailed token came back),
-- and whether logins need a second factor. Existing accounts start unverified, without MFA.
ALTER TABLE users
    ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN mfa_enabled    BOOLEAN NOT NULL DEFAULT FALSE;

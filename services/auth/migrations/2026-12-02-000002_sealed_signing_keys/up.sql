-- Private keys are sealed (AES-256-GCM) under a key-encryption key that lives outside the
-- database; `kek_id` names it. NULL: a row written before sealing (plaintext PKCS#8),
-- sealed by Auth at its next start, or a retired key whose private half was erased.
ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;

ALTER TABLE signing_keys DROP COLUMN kek_id;

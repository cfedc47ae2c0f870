ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_session;
DROP TABLE sessions;

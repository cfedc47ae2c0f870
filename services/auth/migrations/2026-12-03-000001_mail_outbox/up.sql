-- The mail outbox: a message is written here in the same transaction as the change
-- that calls for it (a token and the mail carrying it commit together or not at all);
-- the relay sends it over SMTP, marks it sent and blanks its body, since the body
-- holds a token that is stored nowhere else in the clear. A failed send is retried
-- at `next_attempt_at`, after a back-off that doubles with each attempt.
CREATE TABLE mail_outbox (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('email_verification', 'password_reset')),
    recipient       TEXT NOT NULL CHECK (char_length(recipient) BETWEEN 3 AND 320),
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    sent_at         TIMESTAMPTZ
);
-- What the relay looks for: unsent messages that are due.
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL;

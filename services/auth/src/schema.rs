//! Diesel table definitions of the `auth` schema (see `migrations/`); the outbox
//! table is the kernel's.

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        private_key -> Bytea,
        public_jwk -> Jsonb,
        created_at -> Timestamptz,
        retired_at -> Nullable<Timestamptz>,
        publish_until -> Nullable<Timestamptz>,
        activates_at -> Timestamptz,
        kek_id -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        parent_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        ip -> Text,
        user_agent -> Text,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    clients (id) {
        id -> Uuid,
        name -> Text,
        secret_hash -> Bytea,
        roles -> Array<Text>,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    totp_secrets (user_id) {
        user_id -> Uuid,
        secret -> Bytea,
        kek_id -> Text,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        last_used_step -> Nullable<Int8>,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        lockout_key -> Text,
        audit_target -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        tries -> Int4,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(refresh_tokens -> sessions (family_id));
diesel::allow_tables_to_appear_in_same_query!(refresh_tokens, sessions);
diesel::table! {
    mail_outbox (id) {
        id -> Uuid,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        body -> Text,
        created_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    account_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        superseded_at -> Nullable<Timestamptz>,
    }
}

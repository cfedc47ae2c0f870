//! Diesel table definitions matching `migrations/` (the `audit` schema).

diesel::table! {
    events (seq) {
        seq -> BigInt,
        id -> Uuid,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
        service -> Text,
        actor_id -> Text,
        action -> Text,
        target -> Text,
        outcome -> Text,
        trace_id -> Text,
        details -> Text,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    checkpoints (id) {
        id -> BigInt,
        sequence -> BigInt,
        hash -> Bytea,
        signed_at -> Timestamptz,
        key_id -> Text,
        signature -> Bytea,
    }
}

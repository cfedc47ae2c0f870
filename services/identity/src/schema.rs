//! Diesel's view of the `identity` schema (see `migrations/`). The `audit_outbox`
//! table is the kernel's (`bulwark_kernel::outbox`).

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_verified -> Bool,
        mfa_enabled -> Bool,
    }
}

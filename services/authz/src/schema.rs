//! Diesel table definitions matching `migrations/` (the `authz` schema).

diesel::table! {
    roles (name) {
        name -> Text,
        permissions -> Array<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    role_grants (user_id, role) {
        user_id -> Uuid,
        role -> Text,
        granted_at -> Timestamptz,
    }
}

diesel::table! {
    policy_version (singleton) {
        singleton -> Bool,
        version -> BigInt,
    }
}

diesel::joinable!(role_grants -> roles (role));
diesel::allow_tables_to_appear_in_same_query!(roles, role_grants);

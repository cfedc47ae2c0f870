//! Role names and the permission lists roles are made of.

use std::fmt;

use super::Permission;
use crate::error::Error;

/// Most permissions one role may list.
pub const MAX_PERMISSIONS_PER_ROLE: usize = 100;

/// A role's name: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// The built-in role that holds every permission.
    pub fn admin() -> Self {
        Self("admin".to_owned())
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, Error> {
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !first_ok || !rest_ok || value.len() > 64 {
            return Err(Error::invalid(
                field,
                "must be 1 to 64 characters of a-z, 0-9, _ and -, starting with a letter",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_admin(&self) -> bool {
        self.0 == "admin"
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role's permissions from the API: 1 to 100 entries, each valid (the error names the
/// entry, `permissions[3]`); duplicates are dropped, keeping the first occurrence.
pub fn permission_list(field: &str, values: &[String]) -> Result<Vec<Permission>, Error> {
    if values.is_empty() {
        return Err(Error::invalid(field, "must list at least one permission"));
    }
    if values.len() > MAX_PERMISSIONS_PER_ROLE {
        return Err(Error::invalid(
            field,
            format!("must list at most {MAX_PERMISSIONS_PER_ROLE} permissions"),
        ));
    }
    let mut permissions: Vec<Permission> = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let permission = Permission::parse(&format!("{field}[{index}]"), value)?;
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    }
    Ok(permissions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_the_rule() {
        for good in ["admin", "a", "auditor-2", "ops_team", &"a".repeat(64)] {
            assert!(RoleName::parse("name", good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "Admin", "2fa", "-x", "a b", "é", &"a".repeat(65)] {
            assert!(RoleName::parse("name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn permission_lists_are_bounded_and_deduplicated() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let parsed = permission_list("permissions", &list(&["a:b", "c:d", "a:b"]))
            .unwrap_or_else(|e| panic!("refused: {e}"));
        let texts: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["a:b", "c:d"]);

        let error = permission_list("permissions", &[])
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.starts_with("permissions: ")));
        let many: Vec<String> = (0..101).map(|i| format!("r{i}:read")).collect();
        assert!(permission_list("permissions", &many).is_err());
        let error = permission_list("permissions", &list(&["a:b", "nope"]))
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("permissions[1]: ")),
            "{error:?}"
        );
    }
}

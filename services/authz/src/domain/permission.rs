//! Permissions (`resource:action`) and the effective permission set of a user.

use std::fmt;

use crate::error::Error;

/// Longest permission text (the API's limit).
const MAX_PERMISSION_BYTES: usize = 128;
/// The wildcard: as a whole resource or action it matches any value.
const ANY: &str = "*";

/// `resource:action`, each part 1 to 64 characters of `a-z`, `0-9`, `_`, `-` and `*`,
/// starting with a letter or `*`.
///
/// Only a part that is exactly `*` is a wildcard (`*:*`, `users:*`, `*:read`); a `*`
/// inside a longer part (`user*`) has no special meaning and matches only itself.
/// Wildcards take effect in the permissions a role grants; a permission being checked
/// is taken literally, so checking `users:*` asks whether the subject holds every
/// `users` action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    text: String,
    colon: usize,
}

fn is_part(part: &str) -> bool {
    let mut chars = part.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '*');
    first_ok
        && part.len() <= 64
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '*'))
}

impl Permission {
    pub fn parse(field: &str, value: &str) -> Result<Self, Error> {
        if value.len() > MAX_PERMISSION_BYTES {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_PERMISSION_BYTES} bytes"),
            ));
        }
        match value.split_once(':') {
            Some((resource, action)) if is_part(resource) && is_part(action) => Ok(Self {
                text: value.to_owned(),
                colon: resource.len(),
            }),
            _ => Err(Error::invalid(
                field,
                "must be `resource:action`, each part 1 to 64 characters of a-z, 0-9, _, - \
                 and *, starting with a letter or *",
            )),
        }
    }

    pub fn resource(&self) -> &str {
        &self.text[..self.colon]
    }

    pub fn action(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(&self, wanted: &Permission) -> bool {
        let part = |held: &str, wanted: &str| held == ANY || held == wanted;
        part(self.resource(), wanted.resource()) && part(self.action(), wanted.action())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Everything a user's roles grant together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(Vec<Permission>);

impl PermissionSet {
    pub fn new(mut permissions: Vec<Permission>) -> Self {
        permissions.sort_by(|a, b| a.text.cmp(&b.text));
        permissions.dedup();
        Self(permissions)
    }

    pub fn allows(&self, wanted: &Permission) -> bool {
        self.0.iter().any(|held| held.grants(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Permission {
        Permission::parse("permission", text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn syntax_is_resource_colon_action() {
        for good in ["users:read", "*:*", "roles:write", "a-b_c:x*", "audit:*"] {
            assert!(Permission::parse("p", good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "users",
            ":read",
            "users:",
            "Users:read",
            "users:read:x",
            "1x:read",
            "u s:r",
            "users:réad",
        ] {
            assert!(Permission::parse("p", bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}:{}", "a".repeat(64), "b".repeat(64));
        assert!(Permission::parse("p", &long).is_err(), "129 bytes accepted");
    }

    #[test]
    fn whole_part_wildcards_match_and_inner_stars_are_literal() {
        assert!(p("*:*").grants(&p("users:read")));
        assert!(p("users:*").grants(&p("users:write")));
        assert!(p("*:read").grants(&p("audit:read")));
        assert!(!p("users:*").grants(&p("roles:write")));
        assert!(!p("users:read").grants(&p("users:*")));
        assert!(!p("user*:read").grants(&p("users:read")));
        assert!(p("user*:read").grants(&p("user*:read")));
    }

    #[test]
    fn a_set_allows_what_any_member_grants() {
        let set = PermissionSet::new(vec![p("users:read"), p("audit:*")]);
        assert!(set.allows(&p("audit:read")));
        assert!(set.allows(&p("users:read")));
        assert!(!set.allows(&p("users:write")));
        assert!(!PermissionSet::default().allows(&p("users:read")));
    }
}

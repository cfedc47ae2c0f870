//! Permissions (`resource:action`) and what a set of them grants: one grammar and one
//! matching rule for Authz's roles and for the permissions a service account's token
//! carries, so the two can never disagree about what `users:*` means.

use std::fmt;

/// Longest permission text (the API's limit).
const MAX_PERMISSION_BYTES: usize = 128;
/// The wildcard: as a whole resource or action it matches any value.
const ANY: &str = "*";

/// A permission text that breaks the grammar, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPermission {
    pub field: String,
    pub reason: String,
}

/// `resource:action`, each part 1 to 64 characters of `a-z`, `0-9`, `_`, `-` and `*`,
/// starting with a letter or `*`.
///
/// Only a part that is exactly `*` is a wildcard (`*:*`, `users:*`, `*:read`); a `*`
/// inside a longer part (`user*`) has no special meaning and matches only itself.
/// Wildcards take effect in the permissions held; a permission being checked is taken
/// literally, so checking `users:*` asks whether the subject holds every `users` action.
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
    /// Parses `value`; `field` names it in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidPermission> {
        let refuse = |reason: String| InvalidPermission {
            field: field.to_owned(),
            reason,
        };
        if value.len() > MAX_PERMISSION_BYTES {
            return Err(refuse(format!(
                "must be at most {MAX_PERMISSION_BYTES} bytes"
            )));
        }
        match value.split_once(':') {
            Some((resource, action)) if is_part(resource) && is_part(action) => Ok(Self {
                text: value.to_owned(),
                colon: resource.len(),
            }),
            _ => Err(refuse(
                "must be `resource:action`, each part 1 to 64 characters of a-z, 0-9, _, - \
                 and *, starting with a letter or *"
                    .to_owned(),
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

/// Everything a subject's roles grant together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(Vec<Permission>);

impl PermissionSet {
    pub fn new(mut permissions: Vec<Permission>) -> Self {
        permissions.sort_by(|a, b| a.text.cmp(&b.text));
        permissions.dedup();
        Self(permissions)
    }

    /// The set of the valid texts among `texts`; a malformed one grants nothing (only a
    /// hand-edited row or a token from a buggy issuer can hold one) and is logged.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let permissions = texts
            .into_iter()
            .filter_map(|text| match Permission::parse("permission", text) {
                Ok(permission) => Some(permission),
                Err(_) => {
                    tracing::warn!(permission = %text, "ignoring a malformed permission");
                    None
                }
            })
            .collect();
        Self::new(permissions)
    }

    pub fn allows(&self, wanted: &Permission) -> bool {
        self.0.iter().any(|held| held.grants(wanted))
    }

    /// The permissions, sorted, without duplicates.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
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
    fn errors_name_their_field() {
        let error = Permission::parse("permissions[2]", "nope").err();
        assert_eq!(
            error.map(|e| e.field),
            Some("permissions[2]".to_owned()),
            "the field is lost"
        );
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

    #[test]
    fn malformed_texts_grant_nothing() {
        let set = PermissionSet::from_texts(["Users:read", "audit:append"]);
        assert!(set.allows(&p("audit:append")));
        assert!(!set.allows(&p("users:read")));
        assert_eq!(set.iter().count(), 1);
    }
}

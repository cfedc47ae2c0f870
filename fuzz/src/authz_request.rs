//! Authz's requests as they arrive, through the validation its handlers run: `Check`
//! (a permission and a subject), `CreateRole` (a role name and its permissions),
//! `GrantRole`, and `ResolveRoles` (the names in a token's `roles`).
//!
//! Checked: an accepted permission re-parses to itself and splits into its resource and
//! action; a held permission grants a wanted one exactly when each part is equal or the
//! held part is the whole-part wildcard `*`; a permission set allows exactly what one of
//! its valid texts grants; role names keep to their grammar, so every role Authz accepts
//! can travel in a token's `roles` claim; a permission list is deduplicated in order.
//! (`PermissionSet::from_texts` is also how the kernel reads a service token's
//! `permissions`, which may hold anything.)

use bulwark_authz::domain::{self, Permission, PermissionSet, RoleName};
use bulwark_proto::authz::v1::{
    CheckRequest, CreateRoleRequest, GrantRoleRequest, ResolveRolesRequest,
};
use prost::Message as _;

use crate::fixtures::header_safe;
use crate::framed;

/// Checks one request: the first byte picks the message, the rest is its encoding.
pub fn check(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(request) = CheckRequest::decode(message) {
                user_id(&request.subject);
                if let Some(wanted) = permission(&request.permission) {
                    check_grants(&wanted);
                }
            }
        }
        1 => {
            if let Ok(request) = CreateRoleRequest::decode(message) {
                role_name(&request.name);
                permission_list(&request.permissions);
                permission_set(&request.permissions);
            }
        }
        2 => {
            if let Ok(request) = GrantRoleRequest::decode(message) {
                user_id(&request.user_id);
                role_name(&request.role);
            }
        }
        _ => {
            if let Ok(request) = ResolveRolesRequest::decode(message) {
                for role in &request.roles {
                    role_name(role);
                }
            }
        }
    }
}

fn permission(text: &str) -> Option<Permission> {
    let permission = Permission::parse("permission", text).ok()?;
    assert_eq!(permission.as_str(), text);
    assert_eq!(
        format!("{}:{}", permission.resource(), permission.action()),
        text
    );
    assert!(!permission.resource().contains(':'), "{text:?}");
    assert!(text.len() <= 128);
    assert_eq!(
        Permission::parse("again", permission.as_str())
            .ok()
            .as_ref(),
        Some(&permission)
    );
    assert!(
        permission.grants(&permission),
        "{text:?} does not grant itself"
    );
    Some(permission)
}

fn model_grants(held: &Permission, wanted: &Permission) -> bool {
    let part = |held: &str, wanted: &str| held == "*" || held == wanted;
    part(held.resource(), wanted.resource()) && part(held.action(), wanted.action())
}

fn check_grants(wanted: &Permission) {
    let (resource, action) = (wanted.resource(), wanted.action());
    for held in [
        "*:*".to_owned(),
        format!("{resource}:*"),
        format!("*:{action}"),
        format!("{resource}*:{action}"),
        format!("{resource}:{action}*"),
    ] {
        if let Ok(held) = Permission::parse("held", &held) {
            assert_eq!(
                held.grants(wanted),
                model_grants(&held, wanted),
                "{held} / {wanted}"
            );
        }
    }
}

fn permission_set(texts: &[String]) {
    let set = PermissionSet::from_texts(texts.iter().map(String::as_str));
    let valid: Vec<Permission> = texts
        .iter()
        .filter_map(|t| Permission::parse("p", t).ok())
        .collect();
    let listed: Vec<&str> = set.iter().map(Permission::as_str).collect();
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "not sorted and unique: {listed:?}"
    );
    for wanted in &valid {
        let model = valid.iter().any(|held| model_grants(held, wanted));
        assert_eq!(set.allows(wanted), model, "{wanted} in {texts:?}");
    }
}

fn role_name(text: &str) {
    let Ok(role) = RoleName::parse("role", text) else {
        return;
    };
    assert_eq!(role.as_str(), text);
    assert!((1..=64).contains(&text.len()));
    assert!(text.starts_with(|c: char| c.is_ascii_lowercase()));
    assert!(
        header_safe(text, true),
        "role {text:?} cannot travel in a token"
    );
    assert_eq!(role.is_admin(), text == "admin");
}

fn permission_list(texts: &[String]) {
    let Ok(list) = domain::permission_list("permissions", texts) else {
        return;
    };
    assert!((1..=100).contains(&texts.len()));
    let mut expected: Vec<&str> = Vec::new();
    for text in texts {
        if !expected.contains(&text.as_str()) {
            expected.push(text);
        }
    }
    let got: Vec<&str> = list.iter().map(Permission::as_str).collect();
    assert_eq!(got, expected, "deduplicated in order");
}

fn user_id(text: &str) {
    if let Ok(id) = domain::user_id("user_id", text) {
        assert!(!text.is_empty() && text.len() <= 64);
        assert_eq!(domain::user_id("user_id", &id.to_string()).ok(), Some(id));
    }
}

/// Valid requests of each kind.
pub fn seeds() -> Vec<crate::Seed> {
    let user = "0192f0c4-7d4e-7b1a-9f00-000000000001".to_owned();
    let texts = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        (
            "check".to_owned(),
            framed(
                0,
                &CheckRequest {
                    subject: user.clone(),
                    permission: "users:read".to_owned(),
                },
            ),
        ),
        (
            "create_role".to_owned(),
            framed(
                1,
                &CreateRoleRequest {
                    name: "auditor".to_owned(),
                    permissions: texts(&[
                        "audit:read",
                        "users:*",
                        "*:read",
                        "user*:x",
                        "audit:read",
                    ]),
                },
            ),
        ),
        (
            "grant_role".to_owned(),
            framed(
                2,
                &GrantRoleRequest {
                    user_id: user,
                    role: "admin".to_owned(),
                },
            ),
        ),
        (
            "resolve_roles".to_owned(),
            framed(
                3,
                &ResolveRolesRequest {
                    roles: texts(&["admin", "auditor", "Bad Role", "a,b"]),
                },
            ),
        ),
    ]
}

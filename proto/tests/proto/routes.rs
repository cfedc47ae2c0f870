//! The HTTP bindings are exactly the REST surface of CONTRACT.md (plus the
//! documented extras), and every field the contract names exists with its
//! snake_case name.

use crate::descriptor::{self, Binding};
use prost_types::field_descriptor_proto::{Label, Type};

const IDENTITY: &str = "bulwark.identity.v1.IdentityService";
const AUTH: &str = "bulwark.auth.v1.AuthService";
const AUTHZ: &str = "bulwark.authz.v1.AuthzService";
const AUDIT: &str = "bulwark.audit.v1.AuditService";

/// A route and the RPC that serves it.
struct Route {
    verb: &'static str,
    path: &'static str,
    service: &'static str,
    method: &'static str,
    body: &'static str,
}

const fn route(
    verb: &'static str,
    path: &'static str,
    service: &'static str,
    method: &'static str,
    body: &'static str,
) -> Route {
    Route {
        verb,
        path,
        service,
        method,
        body,
    }
}

/// The routes tables of CONTRACT.md.
const CONTRACT_ROUTES: &[Route] = &[
    route("POST", "/v1/users", IDENTITY, "CreateUser", "*"),
    route("POST", "/v1/auth/login", AUTH, "Login", "*"),
    route("POST", "/v1/auth/refresh", AUTH, "Refresh", "*"),
    route("POST", "/v1/auth/logout", AUTH, "Logout", "*"),
    route("GET", "/.well-known/jwks.json", AUTH, "GetJwks", ""),
    route("GET", "/v1/users/me", IDENTITY, "GetMe", ""),
    route("GET", "/v1/users/{id}", IDENTITY, "GetUser", ""),
    route("POST", "/v1/authz/check", AUTHZ, "Check", "*"),
    route("POST", "/v1/authz/roles", AUTHZ, "CreateRole", "*"),
    route(
        "POST",
        "/v1/authz/users/{user_id}/roles",
        AUTHZ,
        "GrantRole",
        "*",
    ),
    route("GET", "/v1/audit/events", AUDIT, "ListEvents", ""),
    // "Service accounts (OAuth 2.0 client credentials)".
    route("POST", "/v1/auth/clients", AUTH, "CreateClient", "*"),
    route("POST", "/v1/oauth2/token", AUTH, "IssueToken", "*"),
    // "Accounts: verification, recovery, sessions, MFA".
    route(
        "POST",
        "/v1/users/me/verification",
        AUTH,
        "RequestEmailVerification",
        "*",
    ),
    route("POST", "/v1/users/verify-email", AUTH, "VerifyEmail", "*"),
    route(
        "POST",
        "/v1/auth/password-reset",
        AUTH,
        "RequestPasswordReset",
        "*",
    ),
    route(
        "POST",
        "/v1/auth/password-reset/confirm",
        AUTH,
        "ConfirmPasswordReset",
        "*",
    ),
    route("POST", "/v1/users/me/password", AUTH, "ChangePassword", "*"),
];

/// Routes beyond the contract, each a deliberate design decision.
const EXTRA_ROUTES: &[Route] = &[
    route(
        "PATCH",
        "/v1/users/{id}",
        IDENTITY,
        "UpdateDisplayName",
        "*",
    ),
    route(
        "DELETE",
        "/v1/authz/users/{user_id}/roles/{role}",
        AUTHZ,
        "RevokeRole",
        "",
    ),
    // The audit log's checkpoints (issue 9): listed for operators to keep them off the
    // box, and the chain verified against them, with kept checkpoints in the body.
    route("GET", "/v1/audit/checkpoints", AUDIT, "ListCheckpoints", ""),
    route("POST", "/v1/audit/chain/verify", AUDIT, "VerifyChain", "*"),
    // Accounts (issue 11): MFA.
    route("POST", "/v1/auth/login/mfa", AUTH, "LoginMfa", "*"),
    route("POST", "/v1/auth/mfa/totp", AUTH, "EnrollTotp", "*"),
    route(
        "POST",
        "/v1/auth/mfa/totp/confirm",
        AUTH,
        "ConfirmTotp",
        "*",
    ),
    route(
        "POST",
        "/v1/auth/mfa/totp/disable",
        AUTH,
        "DisableTotp",
        "*",
    ),
    // Accounts (issue 11): sessions.
    route("GET", "/v1/auth/sessions", AUTH, "ListSessions", ""),
    route(
        "DELETE",
        "/v1/auth/sessions/{id}",
        AUTH,
        "RevokeSession",
        "",
    ),
    // A service account whose secret leaked must be revocable.
    route(
        "DELETE",
        "/v1/auth/clients/{client_id}",
        AUTH,
        "DeleteClient",
        "",
    ),
];

/// RPCs with no HTTP binding: the internal ones only services call, and admin RPCs
/// reachable over gRPC alone.
const INTERNAL_RPCS: &[&str] = &[
    "bulwark.identity.v1.IdentityService/DeactivateUser",
    "bulwark.identity.v1.IdentityService/VerifyCredentials",
    "bulwark.identity.v1.IdentityService/FindUserByEmail",
    "bulwark.identity.v1.IdentityService/SetPassword",
    "bulwark.identity.v1.IdentityService/MarkEmailVerified",
    "bulwark.identity.v1.IdentityService/SetMfaEnabled",
    "bulwark.auth.v1.AuthService/RotateSigningKey",
    "bulwark.auth.v1.AuthService/ListRevokedSessions",
    "bulwark.authz.v1.AuthzService/ListUserRoles",
    "bulwark.authz.v1.AuthzService/ResolveRoles",
    "bulwark.audit.v1.AuditService/AppendEvents",
    "bulwark.ratelimit.v1.LeaseService/Lease",
];

fn describe(bindings: &[Binding]) -> String {
    bindings
        .iter()
        .map(|b| format!("{} {} -> {}/{}", b.verb, b.path, b.service, b.method))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn every_contract_route_is_annotated() {
    let (bindings, _) = descriptor::http_bindings();
    for route in CONTRACT_ROUTES {
        let matching: Vec<_> = bindings
            .iter()
            .filter(|b| b.verb == route.verb && b.path == route.path)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "contract route {} {} must be bound to exactly one RPC; bindings are: {}",
            route.verb,
            route.path,
            describe(&bindings)
        );
        let binding = matching[0];
        assert_eq!(
            (binding.service.as_str(), binding.method.as_str()),
            (route.service, route.method),
            "contract route {} {} is bound to the wrong RPC",
            route.verb,
            route.path
        );
        assert_eq!(
            binding.body, route.body,
            "contract route {} {} ({}) has body mapping {:?}, expected {:?}",
            route.verb, route.path, route.method, binding.body, route.body
        );
    }
}

#[test]
fn no_http_binding_exists_beyond_the_contract_and_documented_extras() {
    let (bindings, _) = descriptor::http_bindings();
    let allowed: Vec<_> = CONTRACT_ROUTES.iter().chain(EXTRA_ROUTES).collect();
    for binding in &bindings {
        let known = allowed.iter().any(|r| {
            r.verb == binding.verb
                && r.path == binding.path
                && r.service == binding.service
                && r.method == binding.method
                && r.body == binding.body
        });
        assert!(
            known,
            "{} {} -> {}/{} (body {:?}) is public but neither a contract route nor a \
             documented extra; add it to EXTRA_ROUTES deliberately or remove the binding",
            binding.verb, binding.path, binding.service, binding.method, binding.body
        );
    }
    assert_eq!(
        bindings.len(),
        allowed.len(),
        "expected one binding per route, got: {}",
        describe(&bindings)
    );
}

#[test]
fn internal_rpcs_have_no_http_binding() {
    let (_, unbound) = descriptor::http_bindings();
    for rpc in INTERNAL_RPCS {
        assert!(
            unbound.iter().any(|u| u == rpc),
            "{rpc} must exist and stay internal (no google.api.http option); unbound RPCs are {unbound:?}"
        );
    }
}

#[test]
fn path_variables_and_bodies_name_request_fields() {
    let schema = descriptor::schema();
    let (bindings, _) = descriptor::http_bindings();
    for binding in &bindings {
        let input = descriptor::message(&schema, &binding.input_type);
        let variables = binding
            .path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .map(|var| var.split('=').next().unwrap_or(var));
        for variable in variables {
            assert!(
                input.field.iter().any(|f| f.name() == variable),
                "{} {}: path variable `{variable}` is not a field of {}",
                binding.verb,
                binding.path,
                binding.input_type
            );
        }
        if !binding.body.is_empty() && binding.body != "*" {
            descriptor::field(&input, &binding.body);
        }
        if binding.verb == "GET" || binding.verb == "DELETE" {
            assert!(
                binding.body.is_empty(),
                "{} {} must not map a body",
                binding.verb,
                binding.path
            );
        }
    }
}

#[test]
fn list_events_accepts_the_contract_query_parameters() {
    let schema = descriptor::schema();
    let request = descriptor::message(&schema, "bulwark.audit.v1.ListEventsRequest");
    for (name, kind) in [
        ("actor_id", Type::String),
        ("action", Type::String),
        ("page_size", Type::Int32),
        ("page_token", Type::String),
    ] {
        let field = descriptor::field(&request, name);
        assert_eq!(
            field.r#type(),
            kind,
            "ListEventsRequest.{name} must be a scalar {kind:?} to bind from a query parameter"
        );
        assert_ne!(
            field.label(),
            Label::Repeated,
            "ListEventsRequest.{name} must not be repeated"
        );
    }
}

#[test]
fn contract_json_fields_exist_with_snake_case_names() {
    let schema = descriptor::schema();
    let expectations: &[(&str, &[&str])] = &[
        (
            "bulwark.identity.v1.CreateUserRequest",
            &["email", "password", "display_name"],
        ),
        (
            "bulwark.identity.v1.User",
            &["id", "email", "display_name", "created_at"],
        ),
        ("bulwark.auth.v1.LoginRequest", &["email", "password"]),
        (
            "bulwark.auth.v1.TokenPair",
            &["access_token", "refresh_token", "token_type", "expires_in"],
        ),
        ("bulwark.auth.v1.RefreshRequest", &["refresh_token"]),
        ("bulwark.auth.v1.LogoutRequest", &["refresh_token"]),
        ("bulwark.auth.v1.Jwks", &["keys"]),
        ("bulwark.auth.v1.Jwk", &["kid", "kty", "alg", "use"]),
        ("bulwark.authz.v1.CheckRequest", &["subject", "permission"]),
        ("bulwark.authz.v1.CheckResponse", &["allowed"]),
        (
            "bulwark.authz.v1.CreateRoleRequest",
            &["name", "permissions"],
        ),
        ("bulwark.authz.v1.Role", &["name", "permissions"]),
        ("bulwark.authz.v1.GrantRoleRequest", &["user_id", "role"]),
        (
            "bulwark.audit.v1.ListEventsResponse",
            &["events", "next_page_token"],
        ),
        (
            "bulwark.audit.v1.AuditEvent",
            &[
                "id",
                "occurred_at",
                "service",
                "actor_id",
                "action",
                "target",
                "outcome",
                "trace_id",
            ],
        ),
    ];
    for (message_name, fields) in expectations {
        let message = descriptor::message(&schema, message_name);
        for field in *fields {
            descriptor::field(&message, field);
        }
    }
}

#[test]
fn empty_contract_responses_have_no_fields() {
    let schema = descriptor::schema();
    for name in [
        "bulwark.auth.v1.LogoutResponse",
        "bulwark.authz.v1.GrantRoleResponse",
    ] {
        let message = descriptor::message(&schema, name);
        assert!(
            message.field.is_empty(),
            "{name} must stay empty so the route answers `{{}}`"
        );
    }
}

#[test]
fn json_numbers_and_booleans_survive_proto3_json() {
    let schema = descriptor::schema();
    let token_pair = descriptor::message(&schema, "bulwark.auth.v1.TokenPair");
    assert_eq!(
        descriptor::field(&token_pair, "expires_in").r#type(),
        Type::Int32,
        "expires_in must be int32: proto3 JSON writes int64 as a string, clients expect a number"
    );
    let check = descriptor::message(&schema, "bulwark.authz.v1.CheckResponse");
    assert!(
        descriptor::field(&check, "allowed").proto3_optional(),
        "CheckResponse.allowed must be `optional` so proto3 JSON prints `\"allowed\": false`"
    );
}

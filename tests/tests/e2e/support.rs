//! Small helpers shared by the end-to-end tests.

use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_e2e::Mesh;
use reqwest::header::HeaderMap;

/// The headers every edge response carries (CONTRACT: "Every response").
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age="),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// Panics naming each security header that is missing or wrong on `what`.
pub fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let mut problems = Vec::new();
    for (name, expected) in SECURITY_HEADERS {
        match headers.get(name).and_then(|v| v.to_str().ok()) {
            None => problems.push(format!("{name} is missing")),
            // HSTS carries a max-age of the operator's choosing; the rest are exact.
            Some(value) if name == "strict-transport-security" && value.starts_with(expected) => {}
            Some(value) if value == expected => {}
            Some(value) => problems.push(format!("{name} is {value:?}, expected {expected:?}")),
        }
    }
    assert!(
        problems.is_empty(),
        "security headers on {what}: {}; all headers: {headers:?}",
        problems.join(", ")
    );
}

/// Panics if a `server` header names the proxy (CONTRACT: no server header naming it).
pub fn assert_no_proxy_server_header(headers: &HeaderMap, what: &str) {
    if let Some(server) = headers.get("server") {
        panic!("{what} carries `server: {server:?}`; the edge must not name its proxy");
    }
}

/// A fresh W3C trace id (32 hex digits, not all zero) for this test.
pub fn new_trace_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        ^ u128::from(std::process::id());
    format!("{:032x}", mixed | 1)
}

/// How many requests Envoy has sent to one service's cluster so far.
pub async fn upstream_requests(mesh: &Mesh, cluster: &str) -> u64 {
    mesh.envoy()
        .stat(mesh.http(), &format!("cluster.{cluster}.upstream_rq_total"))
        .await
        .unwrap_or_else(|err| panic!("reading Envoy's stats for cluster {cluster}: {err:#}"))
}

/// A `CreateUser` body that every version of identity rejects as invalid, so calls
/// through the edge reach the service without creating anything.
pub const INVALID_REGISTRATION: &str =
    r#"{"email":"not-an-email","password":"short","display_name":""}"#;

/// Every rule of the rule files the Prometheus template loads
/// (`bulwark_e2e::prometheus::RULE_FILES`), with its file and group name; a file that
/// holds no rule fails the test.
pub fn shipped_rules() -> Vec<(&'static str, String, serde_json::Value)> {
    let mut rules = Vec::new();
    for file in bulwark_e2e::prometheus::RULE_FILES {
        let path = bulwark_e2e::workspace_root().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        let parsed: serde_json::Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()));
        let before = rules.len();
        for group in parsed["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                rules.push((file, group["name"].to_string(), rule.clone()));
            }
        }
        assert!(rules.len() > before, "{file} holds no rule");
    }
    rules
}

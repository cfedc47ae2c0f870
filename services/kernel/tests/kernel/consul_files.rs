//! The shipped Consul files (`consul/`) against the rules of Consul's documentation, the
//! registration the services make themselves and the calls the code makes. Consul
//! cannot run here, so each rule is checked on the files; `consul validate` on them runs
//! where a `consul` binary is on the PATH (the ignored test at the end).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bulwark_kernel::consul::{AGENT_SIDECAR_PORTS, Registration, upstreams};
use serde_json::Value;

/// Default ports of each service (gRPC, admin HTTP), as in the services' specs.
const SERVICES: [(&str, u16, u16); 5] = [
    ("identity", 50051, 9101),
    ("auth", 50052, 9102),
    ("authz", 50053, 9103),
    ("audit", 50054, 9104),
    ("ratelimit", 50055, 9105),
];

/// The Consul identity of the Envoy edge, a mesh service with its own sidecar.
const EDGE: &str = "bulwark-edge";
/// The edge's public listener and Envoy admin port (envoy/edge-mesh.yaml).
const EDGE_PORTS: [u16; 2] = [8080, 9901];

/// Where Consul's agent hands out ports by default, which upstreams must avoid: sidecar
/// public listeners (`sidecar_min_port`..`sidecar_max_port`) and exposed check paths
/// (`expose_min_port`..`expose_max_port`).
const PORTS_DOC: &str = "https://developer.hashicorp.com/consul/docs/install/ports and \
     https://developer.hashicorp.com/consul/docs/agent/config/config-files#ports";
const AGENT_EXPOSE_PORTS: std::ops::RangeInclusive<u16> = 21500..=21755;
const UPSTREAMS_DOC: &str = "https://developer.hashicorp.com/consul/docs/connect/proxies/proxy-config-reference#upstream-configuration-reference";
const INTENTIONS_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/connect/config-entries/service-intentions";
const SERVICE_DEFAULTS_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/connect/config-entries/service-defaults";
const INGRESS_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/connect/gateways/ingress-gateway";
const SIDECAR_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/connect/proxies/deploy-sidecar-services";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn consul_dir() -> PathBuf {
    root().join("consul")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read(path: PathBuf) -> Value {
    serde_json::from_str(&text(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every service with a definition in `consul/services/`: the five and the edge.
fn mesh_services() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.0).chain([EDGE]).collect()
}

fn definition(name: &str) -> Value {
    read(consul_dir().join(format!("services/{name}.json")))
}

/// `(destination_name, local_bind_port)` of each upstream of a definition.
fn upstream_ports(definition: &Value) -> Vec<(String, u16)> {
    definition["service"]["connect"]["sidecar_service"]["proxy"]["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            (
                u["destination_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                u["local_bind_port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The `Sources` of `config-entries/service-intentions-<service>.json`, in order.
fn intention_sources(service: &str) -> Vec<Value> {
    let intentions =
        read(consul_dir().join(format!("config-entries/service-intentions-{service}.json")));
    assert_eq!(
        intentions["Name"], service,
        "service-intentions-{service}.json: Name"
    );
    intentions["Sources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The gRPC paths (`/<package>.<Service>/<Method>`) of a proto file's one service.
fn proto_rpcs(relative: &str) -> Vec<String> {
    let proto = text(&root().join("proto/proto").join(relative));
    let word_after = |keyword: &str| {
        proto.lines().find_map(|line| {
            line.trim()
                .strip_prefix(keyword)
                .map(|rest| rest.trim_end_matches([';', '{', ' ']).trim().to_owned())
        })
    };
    let package = word_after("package ").unwrap_or_else(|| panic!("{relative}: no package"));
    let service = word_after("service ").unwrap_or_else(|| panic!("{relative}: no service"));
    proto
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .filter_map(|rest| rest.split_once('('))
        .map(|(method, _)| format!("/{package}.{service}/{}", method.trim()))
        .collect()
}

/// Every RPC each mesh service serves. The rate-limit service also serves Envoy's
/// `RateLimitService`, which nothing in the mesh calls (the gateway filter leases).
fn served_rpcs() -> BTreeMap<&'static str, Vec<String>> {
    BTreeMap::from([
        ("identity", proto_rpcs("bulwark/identity/v1/identity.proto")),
        ("auth", proto_rpcs("bulwark/auth/v1/auth.proto")),
        ("authz", proto_rpcs("bulwark/authz/v1/authz.proto")),
        ("audit", proto_rpcs("bulwark/audit/v1/audit.proto")),
        ("ratelimit", proto_rpcs("bulwark/ratelimit/v1/lease.proto")),
    ])
}

/// The internal RPCs: those the edge refuses from outside (its `internal_*` routes in
/// `envoy/edge.yaml`), reached inside the mesh only.
fn internal_rpcs() -> BTreeSet<String> {
    let edge = text(&root().join("envoy/edge.yaml"));
    let lines: Vec<&str> = edge.lines().map(str::trim).collect();
    let found: BTreeSet<String> = lines
        .windows(2)
        .filter(|pair| pair[0].starts_with("- name: internal_"))
        .filter_map(|pair| pair[1].strip_prefix("match: { path: "))
        .map(|rest| rest.trim_end_matches(" }").to_owned())
        .collect();
    assert!(
        found.len() >= 5,
        "envoy/edge.yaml: found only {found:?} as internal routes; the parser no longer \
         matches the file"
    );
    found
}

/// A call one mesh service makes to another, with where the code makes it: each piece
/// of evidence is a file and a text it must contain, so that a call the code drops
/// fails this table until its row (and its intention) goes.
struct Call {
    caller: &'static str,
    rpc: &'static str,
    evidence: &'static [(&'static str, &'static str)],
}

const IDENTITY: &str = "/bulwark.identity.v1.IdentityService/";
const AUTH: &str = "/bulwark.auth.v1.AuthService/";
const AUTHZ: &str = "/bulwark.authz.v1.AuthzService/";
const AUDIT: &str = "/bulwark.audit.v1.AuditService/";

/// The service token every caller with a service account obtains from Auth.
const ISSUES_TOKENS: (&str, &str) = (
    "services/kernel/src/clients/service_token.rs",
    ".issue_token(",
);
/// Auth's JWKS, fetched by every service that verifies bearer tokens itself.
const FETCHES_JWKS: (&str, &str) = ("services/kernel/src/caller.rs", "self.get_jwks()");
/// The request layer's permission question.
const ASKS_AUTHZ: (&str, &str) = ("services/kernel/src/request.rs", "self.check(user");
/// The outbox relay's delivery.
const RELAYS_AUDIT: (&str, &str) = ("services/kernel/src/outbox.rs", ".append_events(");

/// Who calls which RPC of another service inside the mesh (Auth's own service account
/// asks its own listener, not the mesh). The edge calls every RPC it publishes; the
/// rows below are the rest.
const CALLS: &[Call] = &[
    // Auth on Identity: logins, account flows, MFA.
    Call {
        caller: "auth",
        rpc: "VerifyCredentials",
        evidence: &[("services/auth/src/sessions.rs", ".verify_credentials(")],
    },
    Call {
        caller: "auth",
        rpc: "GetUser",
        evidence: &[("services/auth/src/sessions.rs", ".get_user(")],
    },
    Call {
        caller: "auth",
        rpc: "FindUserByEmail",
        evidence: &[("services/auth/src/accounts.rs", ".find_user_by_email(")],
    },
    Call {
        caller: "auth",
        rpc: "SetPassword",
        evidence: &[("services/auth/src/accounts.rs", ".set_password(")],
    },
    Call {
        caller: "auth",
        rpc: "MarkEmailVerified",
        evidence: &[("services/auth/src/accounts.rs", ".mark_email_verified(")],
    },
    Call {
        caller: "auth",
        rpc: "SetMfaEnabled",
        evidence: &[("services/auth/src/mfa.rs", ".set_mfa_enabled(")],
    },
    // Service tokens and JWKS from Auth.
    Call {
        caller: "identity",
        rpc: "IssueToken",
        evidence: &[
            ("services/identity/src/lib.rs", "kernel.clients."),
            ISSUES_TOKENS,
        ],
    },
    Call {
        caller: "authz",
        rpc: "IssueToken",
        evidence: &[
            ("services/authz/src/lib.rs", "kernel.clients."),
            ISSUES_TOKENS,
        ],
    },
    Call {
        caller: "audit",
        rpc: "IssueToken",
        evidence: &[
            ("services/audit/src/lib.rs", "kernel.clients."),
            ISSUES_TOKENS,
        ],
    },
    Call {
        caller: "identity",
        rpc: "GetJwks",
        evidence: &[
            ("services/identity/src/lib.rs", "kernel.token_verifier()"),
            FETCHES_JWKS,
        ],
    },
    Call {
        caller: "authz",
        rpc: "GetJwks",
        evidence: &[
            ("services/authz/src/lib.rs", "kernel.token_verifier()"),
            FETCHES_JWKS,
        ],
    },
    Call {
        caller: "audit",
        rpc: "GetJwks",
        evidence: &[
            ("services/audit/src/lib.rs", "kernel.token_verifier()"),
            FETCHES_JWKS,
        ],
    },
    // Permissions from Authz; Auth also puts roles into tokens.
    Call {
        caller: "identity",
        rpc: "Check",
        evidence: &[
            ("services/identity/src/lib.rs", "kernel.clients.authz()"),
            ASKS_AUTHZ,
        ],
    },
    Call {
        caller: "audit",
        rpc: "Check",
        evidence: &[
            ("services/audit/src/lib.rs", "kernel.clients.authz()"),
            ASKS_AUTHZ,
        ],
    },
    Call {
        caller: "auth",
        rpc: "Check",
        evidence: &[
            ("services/auth/src/lib.rs", "Arc::new(deps.authz)"),
            ASKS_AUTHZ,
        ],
    },
    Call {
        caller: "auth",
        rpc: "ListUserRoles",
        evidence: &[("services/auth/src/sessions.rs", ".list_user_roles(")],
    },
    Call {
        caller: "auth",
        rpc: "ResolveRoles",
        evidence: &[("services/auth/src/service_accounts.rs", ".resolve_roles(")],
    },
    // Audit events from every outbox.
    Call {
        caller: "identity",
        rpc: "AppendEvents",
        evidence: &[
            ("services/identity/src/lib.rs", "start_outbox_relay_with("),
            RELAYS_AUDIT,
        ],
    },
    Call {
        caller: "auth",
        rpc: "AppendEvents",
        evidence: &[
            ("services/auth/src/lib.rs", "start_outbox_relay_with("),
            RELAYS_AUDIT,
        ],
    },
    Call {
        caller: "authz",
        rpc: "AppendEvents",
        evidence: &[
            ("services/authz/src/lib.rs", "start_outbox_relay_with("),
            RELAYS_AUDIT,
        ],
    },
    // The edge's own callouts (gateway filter) on RPCs it refuses from outside.
    Call {
        caller: EDGE,
        rpc: "ListRevokedSessions",
        evidence: &[(
            "gateway-filter/logic/src/revocation.rs",
            "METHOD: &str = \"ListRevokedSessions\"",
        )],
    },
    Call {
        caller: EDGE,
        rpc: "Lease",
        evidence: &[(
            "gateway-filter/logic/src/lease.rs",
            "LEASE_METHOD: &str = \"Lease\"",
        )],
    },
];

/// The full gRPC path of a [`Call`]'s method, found among the RPCs the services serve.
fn full_path(served: &BTreeMap<&'static str, Vec<String>>, method: &str) -> (&'static str, String) {
    let found: Vec<(&'static str, String)> = served
        .iter()
        .flat_map(|(service, rpcs)| rpcs.iter().map(move |rpc| (*service, rpc.clone())))
        .filter(|(_, rpc)| rpc.ends_with(&format!("/{method}")))
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!("method {method} names {found:?} among the served RPCs, not exactly one"),
    }
}

/// What each source may call on each destination: `(destination, source) -> paths`.
fn expected_permissions() -> BTreeMap<(&'static str, &'static str), BTreeSet<String>> {
    let served = served_rpcs();
    let internal = internal_rpcs();
    let mut expected: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    // The edge publishes every RPC of the core services that it does not refuse.
    for (service, rpcs) in &served {
        if *service == "ratelimit" {
            continue;
        }
        expected
            .entry((*service, EDGE))
            .or_default()
            .extend(rpcs.iter().filter(|rpc| !internal.contains(*rpc)).cloned());
    }
    for call in CALLS {
        for (file, needle) in call.evidence {
            assert!(
                text(&root().join(file)).contains(needle),
                "{file} no longer contains `{needle}`, the evidence that {} calls {}: drop \
                 the row (and its intention) or update the evidence",
                call.caller,
                call.rpc
            );
        }
        let (destination, path) = full_path(&served, call.rpc);
        expected
            .entry((destination, call.caller))
            .or_default()
            .insert(path);
    }
    expected
}

/// The paths a source's permissions allow (`PathExact`, POST only), after checking that
/// the source is L7, allows nothing wider than one exact path, and ends with a deny of
/// every other path: so a path spelt any other way is denied, whatever the default
/// intention policy.
fn allowed_paths(destination: &str, source: &Value) -> BTreeSet<String> {
    let name = source["Name"].as_str().unwrap_or_default();
    assert!(
        source.get("Action").is_none(),
        "{destination}: source {name} is an L4 intention (Action), which allows every RPC; \
         use Permissions ({INTENTIONS_DOC})"
    );
    let permissions = source["Permissions"]
        .as_array()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("{destination}: source {name} has no Permissions"));
    let (last, allows) = permissions.split_last().unwrap_or_else(|| panic!());
    assert_eq!(
        last,
        &serde_json::json!({"Action": "deny", "HTTP": {"PathPrefix": "/"}}),
        "{destination}: the permissions of {name} must end with a deny of PathPrefix \"/\" \
         (the first matching permission decides: {INTENTIONS_DOC})"
    );
    allows
        .iter()
        .map(|permission| {
            let http = &permission["HTTP"];
            assert_eq!(
                (permission["Action"].as_str(), http["Methods"].clone()),
                (Some("allow"), serde_json::json!(["POST"])),
                "{destination}: {name}: {permission}: only POST allows before the final deny"
            );
            let keys: BTreeSet<&str> = http
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                keys,
                BTreeSet::from(["Methods", "PathExact"]),
                "{destination}: {name}: {permission}: an allow names one gRPC path exactly \
                 (HTTP.PathExact: {INTENTIONS_DOC})"
            );
            http["PathExact"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

#[test]
fn service_definitions_match_the_agent_registration() {
    for (name, grpc, admin) in SERVICES {
        let file = definition(name);
        let service = &file["service"];
        // The clients the service is started with: its sidecar's local ports.
        let clients: Vec<(String, String)> = upstream_ports(&file)
            .into_iter()
            .map(|(dest, port)| (dest, format!("http://127.0.0.1:{port}")))
            .chain([(name.to_owned(), format!("http://127.0.0.1:{grpc}"))])
            .collect();
        let registration = Registration::new(
            name,
            format!("127.0.0.1:{grpc}")
                .parse()
                .unwrap_or_else(|_| panic!()),
            format!("127.0.0.1:{admin}")
                .parse()
                .unwrap_or_else(|_| panic!()),
            None,
            upstreams(name, clients.iter().map(|(n, e)| (n.as_str(), e.as_str()))),
        );
        assert_eq!(service["name"], registration.name, "{name}: name");
        assert_eq!(service["port"], registration.port, "{name}: port");
        assert_eq!(service["id"], registration.id.as_str(), "{name}: id");
        assert_eq!(
            service["check"]["http"],
            registration.check.http.as_str(),
            "{name}: check"
        );
        assert_eq!(
            service["tags"],
            serde_json::json!(registration.tags),
            "{name}: tags"
        );
        assert_eq!(
            service["meta"]["admin_port"],
            registration.meta["admin_port"].as_str(),
            "{name}: meta admin_port"
        );
        // No address: the agent advertises its node's, which other nodes can reach.
        assert_eq!(
            service.get("address").and_then(Value::as_str).unwrap_or(""),
            registration.address,
            "{name}: address must be left to the agent ({SIDECAR_DOC})"
        );
        assert_eq!(registration.address, "", "{name}: registration address");
        assert_eq!(
            serde_json::to_value(&registration.connect.sidecar_service.proxy.upstreams)
                .unwrap_or_default(),
            serde_json::json!(
                service["connect"]["sidecar_service"]["proxy"]["upstreams"]
                    .as_array()
                    .map(|u| {
                        let mut u: Vec<Value> = u
                            .iter()
                            .map(|u| {
                                serde_json::json!({
                                    "DestinationName": u["destination_name"],
                                    "LocalBindAddress": u["local_bind_address"],
                                    "LocalBindPort": u["local_bind_port"],
                                })
                            })
                            .collect();
                        u.sort_by_key(|u| u["DestinationName"].to_string());
                        u
                    })
                    .unwrap_or_default()
            ),
            "{name}: the agent registration's upstreams differ from the file's"
        );
    }
}

/// Each service's sidecar has an upstream for exactly the services it calls.
#[test]
fn every_service_has_an_upstream_for_each_service_it_calls_and_no_other() {
    let expected = expected_permissions();
    for name in mesh_services() {
        let calls: BTreeSet<&str> = expected
            .keys()
            .filter(|(destination, source)| *source == name && *destination != name)
            .map(|(destination, _)| *destination)
            .collect();
        let bound: BTreeSet<String> = upstream_ports(&definition(name))
            .into_iter()
            .map(|(destination, _)| destination)
            .collect();
        assert_eq!(
            bound,
            calls.iter().map(|d| (*d).to_owned()).collect(),
            "{name}: upstreams of consul/services/{name}.json vs the services it calls \
             ({UPSTREAMS_DOC})"
        );
    }
}

#[test]
fn upstream_ports_are_unique_on_a_node_and_outside_the_agents_port_ranges() {
    let mut taken: BTreeMap<u16, String> = BTreeMap::new();
    for (name, grpc, admin) in SERVICES {
        taken.insert(grpc, format!("{name}'s gRPC listener"));
        taken.insert(admin, format!("{name}'s admin listener"));
    }
    for port in EDGE_PORTS {
        taken.insert(port, "the edge".to_owned());
    }
    let mut count = 0;
    for name in mesh_services() {
        for (destination, port) in upstream_ports(&definition(name)) {
            count += 1;
            let what = format!("{name}'s upstream {destination}");
            assert!(
                !AGENT_SIDECAR_PORTS.contains(&port) && !AGENT_EXPOSE_PORTS.contains(&port),
                "{what} binds {port}, inside a range the Consul agent hands out ({PORTS_DOC})"
            );
            assert!(port >= 1024, "{what} binds privileged port {port}");
            if let Some(other) = taken.insert(port, what.clone()) {
                panic!(
                    "{what} binds {port}, already taken by {other}: every sidecar of a node \
                     binds its upstreams on the same loopback ({UPSTREAMS_DOC})"
                );
            }
        }
    }
    assert!(
        count >= 10,
        "only {count} upstreams found: the JSON path finds nothing"
    );
}

#[test]
fn every_upstream_is_allowed_by_an_intention() {
    let mut checked = 0;
    for name in mesh_services() {
        for (target, _) in upstream_ports(&definition(name)) {
            let sources = intention_sources(&target);
            let source = sources
                .iter()
                .find(|s| s["Name"] == name)
                .unwrap_or_else(|| panic!("{name} calls {target} but no intention names it"));
            assert!(
                !allowed_paths(&target, source).is_empty(),
                "{name} calls {target} but its intention allows no RPC"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} upstreams checked: the JSON path finds nothing"
    );
}

#[test]
fn each_rpc_is_allowed_only_to_the_sources_that_call_it() {
    let expected = expected_permissions();
    let mut actual: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let destinations: Vec<&str> = SERVICES.iter().map(|s| s.0).collect();
    for destination in destinations.iter().copied() {
        let sources = intention_sources(destination);
        let (last, named) = sources
            .split_last()
            .unwrap_or_else(|| panic!("{destination}: no intentions"));
        assert_eq!(
            last,
            &serde_json::json!({"Name": "*", "Action": "deny"}),
            "{destination}: intentions must end with a default deny ({INTENTIONS_DOC})"
        );
        for source in named {
            let name = source["Name"].as_str().unwrap_or_default();
            let name = mesh_services()
                .into_iter()
                .find(|s| *s == name)
                .unwrap_or_else(|| panic!("{destination}: source {name} is no mesh service"));
            actual.insert((destination, name), allowed_paths(destination, source));
        }
    }
    // Nothing calls into the edge: only a deny.
    assert_eq!(
        intention_sources(EDGE),
        vec![serde_json::json!({"Name": "*", "Action": "deny"})],
        "service-intentions-{EDGE}.json"
    );
    for rpc in &internal_rpcs() {
        let callers: Vec<&str> = actual
            .iter()
            .filter(|(_, paths)| paths.contains(rpc))
            .map(|((_, source), _)| *source)
            .collect();
        assert!(
            !callers.is_empty(),
            "internal RPC {rpc} is allowed to no source: nothing in the mesh could call it"
        );
        let edge_calls_it = CALLS
            .iter()
            .any(|call| call.caller == EDGE && rpc.ends_with(&format!("/{}", call.rpc)));
        assert!(
            !callers.contains(&EDGE) || edge_calls_it,
            "internal RPC {rpc} is allowed to the edge, which refuses it from outside and \
             never calls it"
        );
    }
    assert_eq!(
        actual, expected,
        "intentions (left) differ from the calls the code makes (right) ({INTENTIONS_DOC})"
    );
    for ((destination, source), paths) in &actual {
        for path in paths {
            let prefix = [IDENTITY, AUTH, AUTHZ, AUDIT]
                .into_iter()
                .find(|prefix| path.starts_with(prefix));
            assert!(
                prefix.is_some() || *destination == "ratelimit",
                "{destination}: {source} is allowed {path}, no Bulwark RPC"
            );
        }
    }
}

/// A service that starts calling another must get its row in [`CALLS`] (and so its
/// intention and upstream): every method of the kernel's typed clients called from a
/// service's sources, and the calls the kernel makes for it, have one.
#[test]
fn every_call_in_the_code_has_a_row() {
    let clients = text(&root().join("services/kernel/src/clients.rs"));
    let mut methods = Vec::new();
    let mut in_api = false;
    for line in clients.lines() {
        let line = line.trim();
        if line.starts_with("pub trait ") && line.contains("Api:") {
            in_api = true;
        } else if line == "}" {
            in_api = false;
        } else if in_api && let Some(rest) = line.strip_prefix("fn ") {
            methods.push(rest.split('(').next().unwrap_or_default().to_owned());
        }
    }
    assert!(
        methods.len() >= 10,
        "clients.rs: found only the methods {methods:?}"
    );
    let has_row = |caller: &str, method: &str| {
        CALLS
            .iter()
            .any(|call| call.caller == caller && call.rpc == method)
    };
    for (service, _, _) in SERVICES {
        let sources = service_sources(service);
        for method in &methods {
            // `.check(` also names the limiter's and the lockout's; the request layer's
            // question to Authz is found by the client it builds, below.
            if method == "check" {
                continue;
            }
            let rpc: String = method
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect();
            if sources.contains(&format!(".{method}(")) {
                assert!(
                    has_row(service, &rpc),
                    "{service} calls {rpc}, which CALLS lacks"
                );
            }
        }
        for (needle, rpc) in [
            ("clients.authz()", "Check"),
            ("token_verifier()", "GetJwks"),
            ("start_outbox_relay_with(", "AppendEvents"),
            ("kernel.clients.", "IssueToken"),
        ] {
            // Auth verifies with its own keys and takes its token from its own listener.
            if service == "auth" && matches!(rpc, "GetJwks" | "IssueToken") {
                continue;
            }
            if sources.contains(needle) {
                assert!(
                    has_row(service, rpc),
                    "{service} calls {rpc} ({needle}), which CALLS lacks"
                );
            }
        }
    }
}

/// The Rust sources of one service, concatenated.
fn service_sources(service: &str) -> String {
    let mut dirs = vec![root().join(format!("services/{service}/src"))];
    let mut all = String::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                all.push_str(&text(&path));
            }
        }
    }
    assert!(!all.is_empty(), "no sources for {service}");
    all
}

#[test]
fn config_entries_are_well_formed_with_grpc_everywhere_and_no_ingress_gateway() {
    let dir = consul_dir().join("config-entries");
    let mut entries: BTreeMap<(String, String), Value> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let value = read(path.clone());
        let kind = value["Kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no Kind", path.display()))
            .to_owned();
        let name = value["Name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no Name", path.display()))
            .to_owned();
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(
                if kind == "proxy-defaults" {
                    "proxy-defaults.json".to_owned()
                } else {
                    format!("{kind}-{name}.json")
                }
                .as_str()
            ),
            "{}: named after its kind and name",
            path.display()
        );
        // Deprecated since Consul 1.16, and a Consul-built Envoy could not run the
        // gateway filter: the edge is a mesh service of its own instead.
        assert_ne!(
            kind,
            "ingress-gateway",
            "{}: no ingress gateway in place of the edge ({INGRESS_DOC})",
            path.display()
        );
        entries.insert((kind, name), value);
    }
    let protocol = |kind: &str, name: &str| {
        let entry = entries
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} entry for {name}"));
        entry["Protocol"]
            .as_str()
            .or(entry["Config"]["protocol"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        protocol("proxy-defaults", "global"),
        Some("grpc".to_owned())
    );
    // L7 intentions need an HTTP-based protocol on the destination.
    for (name, _, _) in SERVICES {
        assert_eq!(
            protocol("service-defaults", name),
            Some("grpc".to_owned()),
            "service-defaults-{name}.json ({SERVICE_DEFAULTS_DOC})"
        );
        assert!(entries.contains_key(&("service-intentions".to_owned(), name.to_owned())));
    }
    // The edge speaks HTTP/1.1 JSON and HTTP/2 gRPC to its clients.
    assert_eq!(protocol("service-defaults", EDGE), Some("http".to_owned()));
}

/// The edge is a mesh service whose sidecar reaches every service it routes to.
#[test]
fn the_edge_is_registered_with_an_upstream_for_every_service() {
    let edge = definition(EDGE);
    assert_eq!(edge["service"]["name"], EDGE);
    assert_eq!(edge["service"]["port"], EDGE_PORTS[0]);
    let bound: BTreeSet<String> = upstream_ports(&edge).into_iter().map(|(d, _)| d).collect();
    assert_eq!(
        bound,
        SERVICES.iter().map(|s| s.0.to_owned()).collect(),
        "{EDGE}'s upstreams"
    );
}

/// `consul validate` on the config entries and service definitions, where a `consul`
/// binary is on the PATH (never on the development machines, which have none):
/// `cargo test -p bulwark-kernel --test kernel consul_validate -- --ignored`.
#[test]
#[ignore = "needs consul on PATH"]
fn consul_validate_accepts_the_service_definitions() {
    let consul = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("consul"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("consul is not on the PATH: this test cannot pass without it"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The agent settings Connect needs, so that only the definitions can fail.
    let agent = serde_json::json!({
        "data_dir": dir.path().join("data"),
        "connect": {"enabled": true},
        "ports": {"grpc": 8502},
    });
    std::fs::write(dir.path().join("agent.json"), agent.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    for name in mesh_services() {
        std::fs::copy(
            consul_dir().join(format!("services/{name}.json")),
            dir.path().join(format!("{name}.json")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let output = std::process::Command::new(&consul)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", consul.display()));
    assert!(
        output.status.success(),
        "consul validate refuses consul/services: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

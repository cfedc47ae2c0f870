//! The shipped Consul files (`consul/`) agree with what the services register through
//! the agent API and with each other. Consul itself cannot run here, so the files are
//! checked against the documented shapes of service definitions and config entries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bulwark_kernel::consul::Registration;
use serde_json::Value;

/// Default ports of each service (gRPC, admin HTTP), as in the services' specs.
const SERVICES: [(&str, u16, u16); 5] = [
    ("identity", 50051, 9101),
    ("auth", 50052, 9102),
    ("authz", 50053, 9103),
    ("audit", 50054, 9104),
    ("ratelimit", 50055, 9105),
];

/// The Consul identity of the edge (the ingress gateway Envoy at the edge runs as).
const EDGE: &str = "bulwark-edge";

fn consul_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../consul")
}

fn read(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn upstreams(definition: &Value) -> Vec<&str> {
    definition["service"]["connect"]["sidecar_service"]["proxy"]["upstreams"]
        .as_array()
        .map(|u| {
            u.iter()
                .filter_map(|u| u["destination_name"].as_str())
                .collect()
        })
        .unwrap_or_default()
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

fn allows(sources: &[Value], caller: &str) -> bool {
    sources
        .iter()
        .any(|s| s["Name"] == caller && s["Action"] == "allow")
}

#[test]
fn service_definitions_match_the_agent_registration() {
    for (name, grpc, admin) in SERVICES {
        let file = read(consul_dir().join(format!("services/{name}.json")));
        let service = &file["service"];
        let registration = Registration::new(
            name,
            format!("127.0.0.1:{grpc}")
                .parse()
                .unwrap_or_else(|_| panic!()),
            format!("127.0.0.1:{admin}")
                .parse()
                .unwrap_or_else(|_| panic!()),
            None,
        );
        assert_eq!(service["name"], registration.name, "{name}: name");
        assert_eq!(service["port"], registration.port, "{name}: port");
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
        assert!(
            service["connect"]["sidecar_service"].is_object(),
            "{name}: no Connect sidecar"
        );
    }
}

#[test]
fn every_upstream_is_allowed_by_an_intention() {
    let names: BTreeSet<&str> = SERVICES.iter().map(|s| s.0).collect();
    let mut bind_ports = BTreeMap::new();
    for (name, _, _) in SERVICES {
        let definition = read(consul_dir().join(format!("services/{name}.json")));
        for upstream in definition["service"]["connect"]["sidecar_service"]["proxy"]["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let target = upstream["destination_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let port = upstream["local_bind_port"].as_u64().unwrap_or_default();
            assert!(
                names.contains(target.as_str()),
                "{name}: unknown upstream {target}"
            );
            if let Some(other) = bind_ports.insert((name, port), target.clone()) {
                panic!("{name}: local port {port} bound to both {other} and {target}");
            }
        }
        for target in upstreams(&definition) {
            assert!(
                allows(&intention_sources(target), name),
                "{name} calls {target} but no intention allows it"
            );
        }
    }
}

#[test]
fn config_entries_are_well_formed_and_the_edge_exposes_every_service() {
    let dir = consul_dir().join("config-entries");
    let mut kinds = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let value = read(path.clone());
        let kind = value["Kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no Kind", path.display()));
        assert!(value["Name"].is_string(), "{}: no Name", path.display());
        kinds.insert(kind.to_owned());
        if kind == "service-defaults" || kind == "proxy-defaults" {
            let protocol = value["Protocol"]
                .as_str()
                .or(value["Config"]["protocol"].as_str());
            assert_eq!(protocol, Some("grpc"), "{}: protocol", path.display());
        }
        if kind == "ingress-gateway" {
            assert_eq!(value["Name"], EDGE, "{}: the edge's name", path.display());
            let exposed: BTreeSet<&str> = value["Listeners"][0]["Services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["Name"].as_str())
                .collect();
            let expected: BTreeSet<&str> = SERVICES.iter().map(|s| s.0).collect();
            assert_eq!(exposed, expected, "edge does not expose every service");
        }
    }
    for kind in [
        "proxy-defaults",
        "service-defaults",
        "service-intentions",
        "ingress-gateway",
    ] {
        assert!(kinds.contains(kind), "no {kind} entry shipped");
    }
}

#[test]
fn every_service_has_defaults_and_intentions_that_admit_the_edge_and_deny_the_rest() {
    for (name, _, _) in SERVICES {
        let defaults =
            read(consul_dir().join(format!("config-entries/service-defaults-{name}.json")));
        // The protocol of every service-defaults entry is checked with the other entries.
        assert_eq!(defaults["Name"], name, "service-defaults-{name}.json: Name");
        let sources = intention_sources(name);
        assert!(
            allows(&sources, EDGE),
            "{name}: the edge reaches it through the gateway but no intention allows {EDGE}"
        );
        assert!(
            sources
                .last()
                .is_some_and(|s| s["Name"] == "*" && s["Action"] == "deny"),
            "{name}: intentions must end with a default deny"
        );
    }
}

//! The edge ready for replicas (issue 13): every service cluster of `envoy/edge.yaml` is
//! health-checked over gRPC, has outlier detection and circuit breakers, and its routes
//! retry on another replica what never reached one, and, for the methods marked
//! `idempotency_level = NO_SIDE_EFFECTS` in proto/ (exactly those), also a reset or
//! UNAVAILABLE. And the real Envoy takes a stopped service out by its health check and
//! back in once it is up again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until, workspace_root};
use prost::Message;
use prost_types::FileDescriptorSet;
use prost_types::method_options::IdempotencyLevel;
use serde_json::Value;

const EDGE: &str = "envoy/edge.yaml";
/// The clusters of the services the edge routes to or calls.
const CLUSTERS: [&str; 5] = ["identity", "auth", "authz", "audit", "ratelimit"];
/// Retried on another replica, for every call: it never reached one.
const UNSENT: &str = "connect-failure,refused-stream,reset-before-request";
/// Also retried for calls without side effects.
const READS: &str = "connect-failure,refused-stream,reset-before-request,reset,unavailable";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(15);

/// `envoy/edge.yaml` as JSON, every `{{PLACEHOLDER}}` read as 0.
fn edge_config() -> Value {
    let path = workspace_root().join(EDGE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let mut plain = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .map(|end| start + end + 2)
            .unwrap_or_else(|| panic!("{EDGE}: an unclosed placeholder"));
        plain.push_str(&rest[..start]);
        plain.push('0');
        rest = &rest[end..];
    }
    plain.push_str(rest);
    serde_yaml_ng::from_str(&plain).unwrap_or_else(|err| panic!("{EDGE} is not YAML: {err}"))
}

/// Per gRPC service (`bulwark.identity.v1.IdentityService`), its methods marked
/// `NO_SIDE_EFFECTS` in the descriptor the edge transcodes with.
fn methods_without_side_effects() -> BTreeMap<String, BTreeSet<String>> {
    let set = FileDescriptorSet::decode(bulwark_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|err| panic!("decoding the descriptor set: {err}"));
    let mut out = BTreeMap::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in &file.service {
            let name = format!("{package}.{}", service.name());
            for method in &service.method {
                let level = method
                    .options
                    .as_ref()
                    .map(prost_types::MethodOptions::idempotency_level);
                if level == Some(IdempotencyLevel::NoSideEffects) {
                    out.entry(name.clone())
                        .or_insert_with(BTreeSet::new)
                        .insert(method.name().to_owned());
                }
            }
        }
    }
    out
}

/// `/bulwark\.identity\.v1\.IdentityService/(A|B)` → (the service, {A, B}); `None` for the
/// catch-all `[A-Z][A-Za-z0-9]*`.
fn read_route(regex: &str) -> (String, Option<BTreeSet<String>>) {
    let (service, methods) = regex
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or_else(|| panic!("route regex {regex:?} is not /<service>/<method>"));
    let service = service.replace("\\.", ".");
    let listed = methods
        .strip_prefix('(')
        .and_then(|m| m.strip_suffix(')'))
        .map(|m| m.split('|').map(str::to_owned).collect());
    (service, listed)
}

#[test]
fn service_routes_retry_unsent_calls_and_exactly_the_calls_without_side_effects() {
    let config = edge_config();
    let reads = methods_without_side_effects();
    let routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{EDGE}: no routes"));
    let mut seen_reads = BTreeMap::new();
    let mut catch_alls = BTreeSet::new();
    for route in &routes {
        let Some(cluster) = route["route"]["cluster"].as_str() else {
            continue;
        };
        if !CLUSTERS.contains(&cluster) {
            continue;
        }
        let regex = route["match"]["safe_regex"]["regex"]
            .as_str()
            .unwrap_or_else(|| panic!("route to {cluster} matches no regex: {route}"));
        let policy = &route["route"]["retry_policy"];
        assert_eq!(
            policy["retry_host_predicate"][0]["name"], "envoy.retry_host_predicates.previous_hosts",
            "a retry of {regex} must go to another replica: {policy}"
        );
        assert!(
            policy["num_retries"]
                .as_u64()
                .is_some_and(|n| (1..=3).contains(&n)),
            "{regex}: retries {policy}"
        );
        let (service, listed) = read_route(regex);
        match listed {
            Some(methods) => {
                assert!(
                    !catch_alls.contains(&service),
                    "{regex} comes after {service}'s catch-all route, which would take its calls"
                );
                assert_eq!(policy["retry_on"], READS, "{regex}");
                seen_reads.insert(service, methods);
            }
            None => {
                assert_eq!(
                    policy["retry_on"], UNSENT,
                    "{regex}: a call with side effects is retried only when it reached no replica"
                );
                catch_alls.insert(service);
            }
        }
    }
    assert_eq!(
        catch_alls.len(),
        4,
        "one catch-all route per core service: {catch_alls:?}"
    );
    // The routed services' methods without side effects, and only those, are retried
    // on a reset or UNAVAILABLE.
    let expected: BTreeMap<String, BTreeSet<String>> = reads
        .into_iter()
        .filter(|(service, _)| catch_alls.contains(service))
        .collect();
    assert_eq!(
        seen_reads, expected,
        "{EDGE}'s retried reads differ from the methods marked NO_SIDE_EFFECTS in proto/"
    );
}

#[test]
fn every_service_cluster_is_health_checked_ejects_failing_replicas_and_is_bounded() {
    let config = edge_config();
    let clusters = config["static_resources"]["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for name in CLUSTERS {
        let cluster = clusters
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{EDGE}: no cluster {name}"));
        let check = &cluster["health_checks"][0];
        assert!(
            check["grpc_health_check"].is_object()
                && check["unhealthy_threshold"]
                    .as_u64()
                    .is_some_and(|n| n >= 2),
            "cluster {name}: an active grpc.health.v1 check, two failures to take a replica out: {check}"
        );
        let outlier = &cluster["outlier_detection"];
        assert!(
            outlier["consecutive_gateway_failure"].as_u64().is_some()
                && outlier["consecutive_5xx"].as_u64().is_some(),
            "cluster {name}: outlier detection {outlier}"
        );
        let limits = &cluster["circuit_breakers"]["thresholds"][0];
        for field in [
            "max_connections",
            "max_pending_requests",
            "max_requests",
            "max_retries",
        ] {
            assert!(
                limits[field].as_u64().is_some_and(|n| n > 0),
                "cluster {name}: circuit breaker {field} sized in the config: {limits}"
            );
        }
    }
}

/// Envoy's view of a cluster's hosts (`/clusters`): each host's `health_flags`.
async fn health_flags(mesh: &Mesh, cluster: &str) -> Result<Vec<String>, String> {
    mesh.envoy()
        .health_flags(mesh.http(), cluster)
        .await
        .map_err(|err| format!("{err:#}"))
}

/// Waits until identity's one host has the health flags `want`.
async fn wait_for_flags(mesh: &Mesh, want: &str, why: &str) {
    poll_until(why, HEALTH_TIMEOUT, || async move {
        let flags = health_flags(mesh, "identity").await?;
        if flags.len() == 1 && flags[0] == want {
            Ok(())
        } else {
            Err(format!("identity's hosts: {flags:?}"))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_is_taken_out_by_its_health_check_and_back_in_once_up() {
    let mut mesh = Mesh::builder()
        .service(ServiceKind::Identity)
        .envoy()
        .start()
        .await
        .expect("starting identity behind envoy");
    wait_for_flags(
        &mesh,
        "healthy",
        "identity passes Envoy's gRPC health check",
    )
    .await;

    mesh.stop_service(ServiceKind::Identity)
        .expect("stopping identity");
    wait_for_flags(
        &mesh,
        "/failed_active_hc",
        "Envoy's health check takes the stopped identity out",
    )
    .await;

    mesh.restart_service(ServiceKind::Identity)
        .await
        .expect("restarting identity");
    wait_for_flags(&mesh, "healthy", "identity is taken back in once it is up").await;
}

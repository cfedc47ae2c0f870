//! Two replicas of every service behind two Envoys act as one deployment: every Envoy
//! balances over both replicas of each service; a role grant made through one replica
//! is effective on every Authz replica on the next call; tokens signed by either Auth
//! replica verify at both Envoys and at every Identity replica, also across a key
//! rotation made on one of them; the outbox relays of both replicas of each service
//! deliver every audit event exactly once; and a user's limit holds through both Envoys
//! with two rate-limit replicas.

use std::time::{Duration, Instant};

use bulwark_e2e::soak::edge_limits;
use bulwark_e2e::traffic::{Traffic, TrafficPlan};
use bulwark_e2e::{Mesh, Service, ServiceKind, poll_until};
use bulwark_proto::audit::v1::VerifyChainRequest;
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::auth::v1::{GetJwksRequest, LoginRequest, RotateSigningKeyRequest};
use bulwark_proto::authz::v1::CheckRequest;
use bulwark_proto::authz::v1::authz_service_client::AuthzServiceClient;
use bulwark_proto::identity::v1::GetMeRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Edge, PASSWORD, generous_limits, start_replicated_mesh,
};

/// The shipped bearer limit, which the test's limits file sets beside route limits far
/// above its needs (leased by the gateway filter 20 hits at a time), and what one Envoy
/// instance may hold of it on lease.
const USER_LIMIT_PER_SECOND: u32 = 100;
const LEASE_SIZE: f64 = 20.0;

/// How long Envoy's health checks (1 s apart) may take to see every replica.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an Auth replica may sign with a key rotated out on another one: its
/// `auth.signing_key_cache_seconds` (5 s), with a margin for a loaded machine.
const KEY_SWITCH_DEADLINE: Duration = Duration::from_secs(15);

/// How long a token of a new key may take to pass everywhere: the gateway filter and
/// the services refetch the JWKS for an unknown `kid` at most every 5 s.
const NEW_KEY_DEADLINE: Duration = Duration::from_secs(20);

fn bearer(token: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}")
        .parse()
        .expect("a bearer header value")
}

fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer(token));
    request
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
        .unwrap_or_else(|err| panic!("token header is not base64url ({err}): {token}"));
    let header: Value = serde_json::from_slice(&bytes).expect("a JSON token header");
    header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("token without kid: {header}"))
        .to_owned()
}

/// The hosts of `cluster` each of the mesh's Envoys counts healthy.
async fn healthy_hosts(mesh: &Mesh, envoy: usize, cluster: &str) -> Result<usize, String> {
    let flags = mesh.envoys()[envoy]
        .health_flags(mesh.http(), cluster)
        .await
        .map_err(|err| format!("{err:#}"))?;
    Ok(flags.iter().filter(|flag| *flag == "healthy").count())
}

/// A login straight at one Auth replica (its gRPC port, no edge).
async fn login_at(replica: &Service, email: &str) -> String {
    let mut auth = AuthServiceClient::connect(replica.grpc_url())
        .await
        .unwrap_or_else(|err| panic!("connecting to {}: {err}", replica.label()));
    auth.login(LoginRequest {
        email: email.to_owned(),
        password: if email == ADMIN_EMAIL {
            ADMIN_PASSWORD
        } else {
            PASSWORD
        }
        .to_owned(),
    })
    .await
    .unwrap_or_else(|status| panic!("Login of {email} at {}: {status:?}", replica.label()))
    .into_inner()
    .access_token
    .unwrap_or_else(|| panic!("Login of {email} at {} gave no token", replica.label()))
}

/// `Check` straight at one Authz replica, as `access`.
async fn allowed_at(replica: &Service, access: &str, subject: &str, permission: &str) -> bool {
    let mut authz = AuthzServiceClient::connect(replica.grpc_url())
        .await
        .unwrap_or_else(|err| panic!("connecting to {}: {err}", replica.label()));
    let request = CheckRequest {
        subject: subject.to_owned(),
        permission: permission.to_owned(),
    };
    authz
        .check(with_bearer(request, access))
        .await
        .unwrap_or_else(|status| panic!("Check at {}: {status:?}", replica.label()))
        .into_inner()
        .allowed
        .unwrap_or_else(|| panic!("Check at {} answered no `allowed`", replica.label()))
}

/// `GetMe` straight at one Identity replica, as `access`: `Ok(id)` or the refusal.
async fn me_at(replica: &Service, access: &str) -> Result<String, String> {
    let mut identity = IdentityServiceClient::connect(replica.grpc_url())
        .await
        .map_err(|err| format!("connecting to {}: {err}", replica.label()))?;
    identity
        .get_me(with_bearer(GetMeRequest {}, access))
        .await
        .map(|user| user.into_inner().id)
        .map_err(|status| format!("GetMe at {}: {status:?}", replica.label()))
}

/// Waits until `access` passes through every Envoy and at every Identity replica.
async fn verifies_everywhere(mesh: &Mesh, access: &str, what: &str) {
    poll_until(
        &format!("{what} accepted by both Envoys and both Identity replicas"),
        NEW_KEY_DEADLINE,
        || async move {
            for envoy in 0..mesh.envoys().len() {
                let reply = Edge::through(mesh, envoy)
                    .get("/v1/users/me")
                    .bearer(access)
                    .send()
                    .await;
                if reply.status != StatusCode::OK {
                    return Err(format!("Envoy {envoy}: {} {}", reply.status, reply.text));
                }
            }
            for replica in mesh.replicas(ServiceKind::Identity) {
                me_at(replica, access).await?;
            }
            Ok(())
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

/// The sum over every replica of `service` of one counter from its `/metrics`.
async fn counter_sum(mesh: &Mesh, service: ServiceKind, name: &str) -> u64 {
    let mut sum = 0;
    for replica in mesh.replicas(service) {
        let text = mesh
            .http()
            .get(replica.admin_url("/metrics"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|err| panic!("GET /metrics of {}: {err}", replica.label()))
            .text()
            .await
            .expect("a metrics body");
        sum += text
            .lines()
            .filter(|line| line.split([' ', '{']).next() == Some(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_behind_two_envoys_act_as_one() {
    let mesh = start_replicated_mesh(2, 2, &edge_limits(USER_LIMIT_PER_SECOND)).await;
    let mesh = &*mesh;
    for kind in ServiceKind::EVERY {
        assert_eq!(mesh.replicas(kind).len(), 2, "{} replicas", kind.name());
    }

    // Both Envoys balance over both replicas of every service.
    for envoy in 0..2 {
        for kind in ServiceKind::EVERY {
            poll_until(
                &format!(
                    "Envoy {envoy} counting both {} replicas healthy",
                    kind.name()
                ),
                HEALTH_TIMEOUT,
                || async move {
                    match healthy_hosts(mesh, envoy, kind.name()).await? {
                        2 => Ok(()),
                        n => Err(format!("{n} healthy")),
                    }
                },
            )
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        }
    }

    // A grant through one Envoy is effective on every Authz replica at the next call.
    let (first, second) = (Edge::through(mesh, 0), Edge::through(mesh, 1));
    let alice = first.register("alice@replicas.example", "Alice").await;
    let alice_id = alice["id"].as_str().expect("a user id").to_owned();
    let alice_token = second.login("alice@replicas.example", PASSWORD).await;
    // Alice's logins, each of which must leave one auth.login event.
    let alice_logins = std::cell::Cell::new(1);
    let login_alice_at = |replica| {
        alice_logins.set(alice_logins.get() + 1);
        login_at(replica, "alice@replicas.example")
    };
    let admin = first.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for replica in mesh.replicas(ServiceKind::Authz) {
        assert!(
            !allowed_at(replica, &alice_token.access, &alice_id, "users:read").await,
            "{} allows users:read before any grant",
            replica.label()
        );
    }
    second
        .post(
            "/v1/authz/roles",
            json!({"name": "replica-reader", "permissions": ["users:read"]}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    first
        .post(
            &format!("/v1/authz/users/{alice_id}/roles"),
            json!({"role": "replica-reader"}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    for replica in mesh.replicas(ServiceKind::Authz) {
        assert!(
            allowed_at(replica, &alice_token.access, &alice_id, "users:read").await,
            "{} refused users:read on the first call after the grant",
            replica.label()
        );
    }

    // Tokens signed by either Auth replica verify everywhere.
    let auths = mesh.replicas(ServiceKind::Auth);
    for replica in &auths {
        let token = login_alice_at(replica).await;
        verifies_everywhere(mesh, &token, &format!("a token of {}", replica.label())).await;
    }

    // A key rotation on one Auth replica: both publish the new key at once, and the
    // tokens each signs afterwards verify everywhere.
    let admin_token = login_at(auths[0], ADMIN_EMAIL).await;
    let rotation = AuthServiceClient::connect(auths[0].grpc_url())
        .await
        .expect("connecting to auth")
        .rotate_signing_key(with_bearer(
            RotateSigningKeyRequest { immediate: true },
            &admin_token,
        ))
        .await
        .unwrap_or_else(|status| panic!("RotateSigningKey at auth: {status:?}"))
        .into_inner();
    for replica in &auths {
        let jwks = AuthServiceClient::connect(replica.grpc_url())
            .await
            .expect("connecting to auth")
            .get_jwks(GetJwksRequest {})
            .await
            .unwrap_or_else(|status| panic!("GetJwks at {}: {status:?}", replica.label()))
            .into_inner();
        let kids: Vec<&str> = jwks.keys.iter().map(|key| key.kid.as_str()).collect();
        assert!(
            kids.contains(&rotation.kid.as_str()) && kids.contains(&rotation.previous_kid.as_str()),
            "{} publishes {kids:?} right after the rotation to {} (from {})",
            replica.label(),
            rotation.kid,
            rotation.previous_kid
        );
    }
    let rotated_token = login_alice_at(auths[0]).await;
    assert_eq!(
        kid_of(&rotated_token),
        rotation.kid,
        "the rotating replica does not sign with the new key"
    );
    // The other replica rereads the active key within auth.signing_key_cache_seconds
    // (5 s): from then on it too signs with the new key only.
    for replica in &auths {
        let token = poll_until(
            &format!(
                "{} signing with the new key {}",
                replica.label(),
                rotation.kid
            ),
            KEY_SWITCH_DEADLINE,
            || async {
                let token = login_alice_at(replica).await;
                if kid_of(&token) == rotation.kid {
                    Ok(token)
                } else {
                    Err(format!("signed by {}", kid_of(&token)))
                }
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
        verifies_everywhere(
            mesh,
            &token,
            &format!("a token of {} after the rotation", replica.label()),
        )
        .await;
    }

    // Exactly once: every event the relays of both replicas of each service delivered
    // is in Audit once, and the relays together delivered no more events than Audit
    // holds from those services (a second delivery of an event would be counted by its
    // relay and dropped by Audit as a duplicate id).
    let started = Instant::now();
    let producers = [ServiceKind::Identity, ServiceKind::Auth, ServiceKind::Authz];
    let admin_edge_token = first.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let outcome = poll_until(
        "the outbox relays delivered as many events as Audit holds from their services",
        Duration::from_secs(60),
        || async {
            let events = first.audit_events(&admin_edge_token.access, &[]).await;
            let held = events
                .iter()
                .filter(|event| {
                    producers
                        .iter()
                        .any(|kind| event["service"].as_str() == Some(kind.name()))
                })
                .count() as u64;
            let mut delivered = 0;
            for kind in producers {
                delivered += counter_sum(mesh, kind, "audit_outbox_delivered_total").await;
            }
            // Stable only once every queued event is in and the count still agrees.
            if delivered == held
                && counter_sum(mesh, ServiceKind::Auth, "audit_outbox_delivered_total").await > 0
            {
                Ok((events, delivered))
            } else {
                Err(format!("{delivered} delivered, {held} held"))
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
    let (events, delivered) = outcome;
    let count = |action: &str, key: &str, value: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e[key] == value)
            .count()
    };
    assert_eq!(
        count("user.register", "actor_id", &alice_id),
        1,
        "alice's registration events"
    );
    assert_eq!(
        count("role.create", "target", "role:replica-reader"),
        1,
        "role creation events"
    );
    assert_eq!(count("role.grant", "target", &alice_id), 1, "grant events");
    assert_eq!(
        count("auth.login", "actor_id", &alice_id),
        alice_logins.get(),
        "alice's login events, one per login"
    );
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "an event id listed twice");
    let verdict = AuditServiceClient::connect(mesh.replica(ServiceKind::Audit, 1).grpc_url())
        .await
        .expect("connecting to audit")
        .verify_chain(with_bearer(
            VerifyChainRequest::default(),
            &admin_edge_token.access,
        ))
        .await
        .unwrap_or_else(|status| panic!("VerifyChain: {status:?}"))
        .into_inner();
    assert!(
        verdict.ok,
        "the chain written by two Audit replicas does not verify: {verdict:?}"
    );
    eprintln!(
        "{delivered} events delivered once each by 6 relays ({:?} to settle)",
        started.elapsed()
    );

    // One user's limit through both Envoys, with both rate-limit replicas deciding:
    // eight senders, four per Envoy, for about 1.5 s.
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for n in 0..8 {
        let edge = mesh.envoys()[n % 2].url("/v1/users/me");
        let http = mesh.http().clone();
        let header = format!("Bearer {}", alice_token.access);
        senders.spawn(async move {
            let (mut admitted, mut refused) = (0u32, 0u32);
            while started.elapsed() < Duration::from_millis(1500) {
                let reply = http
                    .get(&edge)
                    .header("authorization", &header)
                    .send()
                    .await
                    .unwrap_or_else(|err| panic!("GET {edge}: {err}"));
                match reply.status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => refused += 1,
                    other => panic!("GET {edge} over the limit answered {other}"),
                }
            }
            (admitted, refused)
        });
    }
    let counts = senders.join_all().await;
    let elapsed = started.elapsed().as_secs_f64();
    let admitted: u32 = counts.iter().map(|(a, _)| a).sum();
    let refused: u32 = counts.iter().map(|(_, r)| r).sum();
    // A full bucket's burst, the rate over the run, and a lease per Envoy instance.
    let bound = f64::from(USER_LIMIT_PER_SECOND) * (1.0 + elapsed) + 2.0 * LEASE_SIZE;
    eprintln!(
        "one user through two Envoys: {admitted} admitted, {refused} refused in {elapsed:.2} s (bound {bound:.0})"
    );
    assert!(
        f64::from(admitted) <= bound,
        "{admitted} admitted in {elapsed:.2} s through two Envoys, over the bound {bound:.0}"
    );
    assert!(
        refused > 0,
        "nothing refused: the senders never passed the limit"
    );
}

/// An Envoy gauge or counter of a cluster (`cluster.<name>.<stat>`).
async fn cluster_stat(mesh: &Mesh, cluster: &str, stat: &str) -> u64 {
    mesh.envoy()
        .stat(mesh.http(), &format!("cluster.{cluster}.{stat}"))
        .await
        .unwrap_or_else(|err| panic!("reading cluster.{cluster}.{stat}: {err:#}"))
}

/// The `bulwark_draining` gauge of one replica: `None` when its admin port does not
/// answer.
async fn draining(mesh: &Mesh, replica: &Service) -> Option<f64> {
    let text = mesh
        .http()
        .get(replica.admin_url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| line.split([' ', '{']).next() == Some("bulwark_draining"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request() {
    let mut mesh = start_replicated_mesh(2, 1, &generous_limits()).await;
    let edge = Edge::new(&mesh);
    let mut users = Vec::new();
    for n in 0..4 {
        let email = format!("rolling-{n}@example.com");
        edge.register(&email, "Rolling").await;
        users.push((email, PASSWORD.to_owned()));
    }
    let traffic = Traffic::start(
        mesh.http().clone(),
        TrafficPlan::mixed(vec![mesh.envoy().url("")], users),
    )
    .await
    .unwrap_or_else(|err| panic!("starting the traffic: {err:#}"));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Each replica in turn, as an orchestrator rolls a deployment: SIGTERM, wait for the
    // exit, start it again, wait until the edge sends to it again, then the next.
    let mut drains = Vec::new();
    for kind in ServiceKind::EVERY {
        let cluster = kind.name();
        for replica in 0..2 {
            let label = mesh.replica(kind, replica).label();
            let failed_checks = cluster_stat(&mesh, cluster, "health_check.failure").await;
            let signalled = Instant::now();
            mesh.replica(kind, replica)
                .terminate()
                .unwrap_or_else(|err| panic!("SIGTERM to {label}: {err:#}"));
            // The drain shows: the replica's own gauge, then the edge taking it out
            // while it still serves.
            let mesh_ref = &mesh;
            poll_until(
                &format!("{label} reporting bulwark_draining 1"),
                Duration::from_secs(3),
                || async move {
                    match draining(mesh_ref, mesh_ref.replica(kind, replica)).await {
                        Some(1.0) => Ok(()),
                        other => Err(format!("bulwark_draining: {other:?}")),
                    }
                },
            )
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
            poll_until(
                &format!("the edge taking {label} out"),
                Duration::from_secs(10),
                || async move {
                    match cluster_stat(mesh_ref, cluster, "membership_healthy").await {
                        1 => Ok(()),
                        n => Err(format!("{n} healthy")),
                    }
                },
            )
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
            let out_after = signalled.elapsed();
            let status = loop {
                if let Some(status) = mesh.replica_mut(kind, replica).exit_status() {
                    break status;
                }
                assert!(
                    signalled.elapsed() < Duration::from_secs(30),
                    "{label} still runs 30 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(
                status.success(),
                "{label} exited with {status} after SIGTERM"
            );
            let exited_after = signalled.elapsed();
            assert!(
                cluster_stat(&mesh, cluster, "health_check.failure").await > failed_checks,
                "Envoy's health checks of {cluster} recorded no failure while {label} drained"
            );
            mesh.restart_replica(kind, replica)
                .await
                .unwrap_or_else(|err| panic!("restarting {label}: {err:#}"));
            let mesh_ref = &mesh;
            poll_until(
                &format!("the edge sending to {label} again"),
                Duration::from_secs(10),
                || async move {
                    match cluster_stat(mesh_ref, cluster, "membership_healthy").await {
                        2 => Ok(()),
                        n => Err(format!("{n} healthy")),
                    }
                },
            )
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
            drains.push((label, out_after, exited_after, signalled.elapsed()));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = traffic.stop().await;

    for (label, out, exited, back) in &drains {
        eprintln!(
            "{label:<12} out of the edge after {:>5.2} s, exited after {:>5.2} s, back after {:>5.2} s",
            out.as_secs_f64(),
            exited.as_secs_f64(),
            back.as_secs_f64()
        );
    }
    let rate = report.outcomes.len() as f64 / report.elapsed.as_secs_f64();
    eprintln!(
        "{} requests in {:.1} s ({rate:.0}/s): {:?}",
        report.outcomes.len(),
        report.elapsed.as_secs_f64(),
        report.per_kind()
    );
    assert!(
        report.failures().is_empty(),
        "a rolling restart failed requests: {}",
        report.describe_failures(20)
    );
    assert!(
        rate > 150.0,
        "the traffic reached only {rate:.0} requests a second of its 200"
    );
    for (kind, sent, _) in report.per_kind() {
        assert!(sent > 0, "no {} request was sent", kind.name());
    }
}

//! The audit log as clients see it: one event per audited action, listed with
//! filters and pages, carrying the caller's trace id; delivered exactly once across an
//! outage of Audit; a tampered row found by `VerifyChain`, which each caller may start
//! only a few times a minute; and signed checkpoints, listed and written as files, that
//! make `VerifyChain` report a truncated log.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use bulwark_proto::audit::v1::VerifyChainRequest;
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{AUDIT_DELIVERY, Edge, PASSWORD, Tokens, exactly, start_mesh, with};
use crate::support::new_trace_id;

/// The members every audit event has (CONTRACT "An audit event has at least").
const EVENT_FIELDS: [&str; 8] = [
    "id",
    "occurred_at",
    "service",
    "actor_id",
    "action",
    "target",
    "outcome",
    "trace_id",
];

/// The schemas whose services write audit events to an outbox.
const OUTBOX_SCHEMAS: [&str; 3] = ["identity", "auth", "authz"];

const SUCCESS: &str = "OUTCOME_SUCCESS";
const FAILURE: &str = "OUTCOME_FAILURE";

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

/// Runs SQL as the superuser on the `bulwark` database.
fn psql(mesh: &Mesh, sql: &str) -> String {
    mesh.postgres()
        .expect("the mesh has postgres")
        .psql("bulwark", sql)
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// Undelivered outbox rows per schema.
fn pending(mesh: &Mesh) -> Vec<(&'static str, usize)> {
    OUTBOX_SCHEMAS
        .iter()
        .map(|schema| {
            let count = psql(
                mesh,
                &format!("SELECT count(*) FROM {schema}.audit_outbox WHERE delivered_at IS NULL"),
            );
            (
                *schema,
                count
                    .parse()
                    .unwrap_or_else(|_| panic!("count of {schema}'s outbox: {count:?}")),
            )
        })
        .collect()
}

/// Waits until every outbox row so far has been delivered to Audit.
async fn await_outboxes_drained(mesh: &Mesh) {
    poll_until("every audit outbox delivered", AUDIT_DELIVERY, || async {
        let pending = pending(mesh);
        if pending.iter().all(|(_, count)| *count == 0) {
            Ok(())
        } else {
            Err(format!("undelivered rows: {pending:?}"))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audited_action_appears_once_in_the_audit_log() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin();
    let admin_id = edge.user_id(&admin.access).await;

    // One of each audited action.
    let carol_id = id_of(&edge.register("carol@example.com", "Carol").await);
    let carol = edge.login("carol@example.com", PASSWORD).await;
    edge.post(
        "/v1/auth/login",
        json!({"email": "carol@example.com", "password": "wrong-password!"}),
    )
    .send()
    .await
    .error(StatusCode::UNAUTHORIZED, 16);
    let refreshed = Tokens::from_body(
        edge.post("/v1/auth/refresh", json!({"refresh_token": carol.refresh}))
            .send()
            .await
            .ok(),
        "refresh",
    );
    edge.post(
        "/v1/authz/roles",
        json!({"name": "reviewer", "permissions": ["users:read"]}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .ok();
    edge.post(
        &format!("/v1/authz/users/{carol_id}/roles"),
        json!({"role": "reviewer"}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .ok();

    // Reading the log needs audit:read, which reviewer does not give.
    edge.get("/v1/audit/events")
        .bearer(&refreshed.access)
        .send()
        .await
        .error(StatusCode::FORBIDDEN, 7);
    // Logging out last: it revokes the session, whose access token then answers 401 at
    // the edge within a second.
    edge.post(
        "/v1/auth/logout",
        json!({"refresh_token": refreshed.refresh}),
    )
    .bearer(&refreshed.access)
    .send()
    .await
    .ok();

    // Carol's own actions: exactly one event each, and nothing else by her.
    let carols = edge
        .await_audit(
            &admin.access,
            &[("actor_id", &carol_id)],
            "carol's register, login, refresh and logout in the audit log",
            |events| {
                exactly(events, &[("action", "user.register")], 1)?;
                exactly(events, &[("action", "auth.login")], 1)?;
                exactly(events, &[("action", "auth.refresh")], 1)?;
                exactly(events, &[("action", "auth.logout")], 1)?;
                exactly(events, &[], 4)
            },
        )
        .await;
    let admins = edge
        .await_audit(
            &admin.access,
            &[("actor_id", &admin_id)],
            "the admin's login, role creation and grant in the audit log",
            |events| {
                exactly(events, &[("action", "auth.login")], 1)?;
                exactly(
                    events,
                    &[("action", "role.create"), ("target", "role:reviewer")],
                    1,
                )?;
                exactly(
                    events,
                    &[("action", "role.grant"), ("target", &carol_id)],
                    1,
                )
            },
        )
        .await;
    let failures = edge
        .await_audit(
            &admin.access,
            &[("action", "auth.login")],
            "the failed login in the audit log",
            |events| exactly(events, &[("outcome", FAILURE)], 1),
        )
        .await;

    let failure = with(&failures, "outcome", FAILURE)[0].clone();
    let everything: Vec<Value> = carols
        .iter()
        .chain(&admins)
        .cloned()
        .chain([failure.clone()])
        .collect();
    for event in &everything {
        for field in EVENT_FIELDS {
            assert!(
                event.get(field).is_some(),
                "an audit event lacks `{field}`: {event}"
            );
        }
        let service = match event["action"].as_str().unwrap_or_default() {
            "user.register" => "identity",
            "role.create" | "role.grant" => "authz",
            _ => "auth",
        };
        assert_eq!(event["service"], service, "service of {event}");
    }
    assert_eq!(
        failure["actor_id"], "",
        "a failed login names an actor: {failure}"
    );
    for event in carols.iter().chain(&admins) {
        assert_eq!(event["outcome"], SUCCESS, "outcome of {event}");
    }

    // The action filter narrows the actor filter (AND).
    let refreshes = edge
        .audit_events(
            &admin.access,
            &[("actor_id", &carol_id), ("action", "auth.refresh")],
        )
        .await;
    assert!(
        refreshes.len() == 1 && refreshes[0]["action"] == "auth.refresh",
        "actor_id + action filter: {}",
        Value::from(refreshes)
    );

    // Pages of one: the same events, newest first, then an empty next_page_token.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut call = edge
            .get("/v1/audit/events")
            .bearer(&admin.access)
            .query("actor_id", &carol_id)
            .query("page_size", "1");
        if !token.is_empty() {
            call = call.query("page_token", &token);
        }
        let page = call.send().await.ok();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        assert!(events.len() <= 1, "page_size=1 answered {page}");
        paged.extend(events);
        token = page["next_page_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no next_page_token string in {page}"))
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    let ids = |events: &[Value]| events.iter().map(id_of).collect::<Vec<_>>();
    assert_eq!(
        ids(&paged),
        ids(&carols),
        "paging one by one does not give the events of one listing in the same order"
    );
    let times: Vec<&str> = paged
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap_or_default())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "events are not newest first: {times:?}"
    );

    // No event twice anywhere in the log.
    let all = edge.audit_events(&admin.access, &[]).await;
    let distinct: BTreeSet<String> = all.iter().map(id_of).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "the audit log lists an event twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_carry_the_callers_trace_id() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin();
    let admin_id = edge.user_id(&admin.access).await;

    // One trace per call, each to a different service.
    let base = new_trace_id();
    let trace = |n: u8| format!("{}{n:02x}", &base[..30]);
    let traceparent = |n: u8| format!("00-{}-00f067aa0ba902b7-01", trace(n));

    let dave = edge
        .post(
            "/v1/users",
            json!({"email": "dave@example.com", "password": PASSWORD, "display_name": "Dave"}),
        )
        .traceparent(&traceparent(1))
        .send()
        .await
        .ok();
    let dave_id = id_of(&dave);
    edge.post(
        "/v1/auth/login",
        json!({"email": "dave@example.com", "password": PASSWORD}),
    )
    .traceparent(&traceparent(2))
    .send()
    .await
    .ok();
    edge.post(
        "/v1/authz/roles",
        json!({"name": "traced", "permissions": ["users:read"]}),
    )
    .bearer(&admin.access)
    .traceparent(&traceparent(3))
    .send()
    .await
    .ok();
    edge.post(
        &format!("/v1/authz/users/{dave_id}/roles"),
        json!({"role": "traced"}),
    )
    .bearer(&admin.access)
    .traceparent(&traceparent(4))
    .send()
    .await
    .ok();

    edge.await_audit(
        &admin.access,
        &[("actor_id", &dave_id)],
        "dave's register and login with their trace ids",
        |events| {
            exactly(
                events,
                &[("action", "user.register"), ("trace_id", &trace(1))],
                1,
            )?;
            exactly(
                events,
                &[("action", "auth.login"), ("trace_id", &trace(2))],
                1,
            )
        },
    )
    .await;
    edge.await_audit(
        &admin.access,
        &[("actor_id", &admin_id)],
        "the admin's role creation and grant with their trace ids",
        |events| {
            exactly(
                events,
                &[("action", "role.create"), ("trace_id", &trace(3))],
                1,
            )?;
            exactly(
                events,
                &[("action", "role.grant"), ("trace_id", &trace(4))],
                1,
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_outage_loses_and_duplicates_nothing() {
    const USERS: usize = 4;
    let mut mesh = start_mesh().await;
    let admin = mesh.admin().clone();
    // What is pending once Audit is down must be exactly what the outage produced.
    await_outboxes_drained(&mesh).await;
    mesh.stop_service(ServiceKind::Audit)
        .expect("stopping audit");

    let edge = Edge::new(&mesh);
    let mut user_ids = Vec::new();
    for n in 0..USERS {
        let email = format!("outage-{n}@example.com");
        user_ids.push(id_of(&edge.register(&email, &format!("User {n}")).await));
        edge.login(&email, PASSWORD).await;
    }
    edge.post(
        "/v1/authz/roles",
        json!({"name": "outage", "permissions": ["users:read"]}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .ok();
    edge.post(
        &format!("/v1/authz/users/{}/roles", user_ids[0]),
        json!({"role": "outage"}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .ok();

    // Reading the log while Audit is away: 503 with the contract's body.
    edge.get("/v1/audit/events")
        .bearer(&admin.access)
        .send()
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, 14);

    // Every event waits in its service's outbox.
    let queued = pending(&mesh);
    assert_eq!(
        queued,
        vec![("identity", USERS), ("auth", USERS), ("authz", 2)],
        "undelivered outbox rows while audit is down (schema, rows)"
    );
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for schema in OUTBOX_SCHEMAS {
        let ids = psql(
            &mesh,
            &format!("SELECT id FROM {schema}.audit_outbox WHERE delivered_at IS NULL"),
        );
        expected.extend(ids.lines().map(str::to_owned));
    }
    assert_eq!(
        expected.len(),
        2 * USERS + 2,
        "queued event ids: {expected:?}"
    );

    mesh.restart_service(ServiceKind::Audit)
        .await
        .expect("restarting audit");
    await_outboxes_drained(&mesh).await;

    // Every queued event is in the log exactly once, and so is every action.
    let edge = Edge::new(&mesh);
    let all = edge.audit_events(&admin.access, &[]).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for event in &all {
        *seen.entry(id_of(event)).or_default() += 1;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(twice.is_empty(), "events listed more than once: {twice:?}");
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "events queued during the outage never reached the log: {missing:?}; log: {}",
        Value::from(all.clone())
    );
    for user in &user_ids {
        let mine: Vec<Value> = all
            .iter()
            .filter(|e| e["actor_id"] == *user)
            .cloned()
            .collect();
        for action in ["user.register", "auth.login"] {
            exactly(&mine, &[("action", action)], 1)
                .unwrap_or_else(|err| panic!("user {user}: {err}"));
        }
    }
    exactly(
        &all,
        &[("action", "role.create"), ("target", "role:outage")],
        1,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    exactly(
        &all,
        &[("action", "role.grant"), ("target", &user_ids[0])],
        1,
    )
    .unwrap_or_else(|err| panic!("{err}"));
}

/// `VerifyChain` through the edge's gRPC port, as `access`.
async fn verify_chain(
    mesh: &Mesh,
    access: &str,
) -> Result<bulwark_proto::audit::v1::VerifyChainResponse, tonic::Status> {
    let mut client = AuditServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting a gRPC client to the edge port");
    let mut request = tonic::Request::new(VerifyChainRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access}")
            .parse()
            .expect("a bearer token is a valid header value"),
    );
    client
        .verify_chain(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_audit_row_is_found_by_verify_chain() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin();
    for n in 0..3 {
        let email = format!("chain-{n}@example.com");
        edge.register(&email, &format!("Chain {n}")).await;
        edge.login(&email, PASSWORD).await;
    }
    await_outboxes_drained(&mesh).await;
    let stored: usize = psql(&mesh, "SELECT count(*) FROM audit.events")
        .parse()
        .expect("a count");
    assert!(stored >= 6, "only {stored} events stored");

    // Reading the chain needs audit:read.
    let user = edge.login("chain-0@example.com", PASSWORD).await;
    let status = verify_chain(&mesh, &user.access)
        .await
        .expect_err("VerifyChain answered a user without audit:read");
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "VerifyChain as a user without audit:read: {status:?}"
    );

    let intact = verify_chain(&mesh, &admin.access)
        .await
        .unwrap_or_else(|status| panic!("VerifyChain as admin: {status:?}"));
    assert!(
        intact.ok && intact.first_broken_event_id.is_empty(),
        "the untouched chain does not verify: {intact:?}"
    );
    assert!(
        usize::try_from(intact.events_checked).is_ok_and(|n| n >= stored),
        "VerifyChain checked {} of {stored} events",
        intact.events_checked
    );

    // The table refuses an ordinary update; a superuser bypassing triggers can edit.
    let victim = psql(
        &mesh,
        "SELECT id FROM audit.events ORDER BY seq OFFSET 2 LIMIT 1",
    );
    let refused = mesh.postgres().expect("the mesh has postgres").psql(
        "bulwark",
        &format!("UPDATE audit.events SET target = 'tampered' WHERE id = '{victim}'"),
    );
    assert!(
        refused.is_err(),
        "an UPDATE of an audit event was accepted without bypassing the trigger"
    );
    let changed = psql(
        &mesh,
        &format!(
            "SET session_replication_role = replica; \
             UPDATE audit.events SET actor_id = 'someone-else' WHERE id = '{victim}' RETURNING id"
        ),
    );
    assert_eq!(changed, victim, "the tampering UPDATE changed no row");

    let broken = verify_chain(&mesh, &admin.access)
        .await
        .unwrap_or_else(|status| panic!("VerifyChain after tampering: {status:?}"));
    assert!(
        !broken.ok,
        "VerifyChain missed the tampered row: {broken:?}"
    );
    assert_eq!(
        broken.first_broken_event_id, victim,
        "VerifyChain named another event than the tampered one: {broken:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_chain_over_audits_own_limit_is_429_with_retry_after() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin();
    // Audit's limit (services/audit/limits.yaml): 6 a minute per caller, far inside the
    // edge's 100 a second per user.
    for n in 1..=6 {
        let report = verify_rest(&edge, &admin.access, Vec::new()).await;
        assert_eq!(report["ok"], json!(true), "VerifyChain {n}: {report}");
    }
    let refused = edge
        .post("/v1/audit/chain/verify", json!({"checkpoints": []}))
        .bearer(&admin.access)
        .send()
        .await;
    let retry_after = refused
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|seconds| (1..=10).contains(&seconds)),
        "the 7th VerifyChain in a minute: retry-after {retry_after:?} (6 a minute lets one \
         in every 10 s); headers {:?}",
        refused.headers
    );
    // The headers are Audit's (6 a minute), not the edge's per-user limit's.
    let header = |name: &str| {
        refused
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("ratelimit-limit").as_deref(),
        Some("6"),
        "the 7th VerifyChain carries Audit's limit: headers {:?}",
        refused.headers
    );
    assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
    let message = refused.error(StatusCode::TOO_MANY_REQUESTS, 8);
    assert_eq!(message, "rate limit exceeded, retry later");

    // The limit is the admin's own: another caller is answered by the handler as before.
    edge.register("limit-other@example.com", "Other").await;
    let other = edge.login("limit-other@example.com", PASSWORD).await;
    edge.post("/v1/audit/chain/verify", json!({"checkpoints": []}))
        .bearer(&other.access)
        .send()
        .await
        .error(StatusCode::FORBIDDEN, 7);
}

/// How long Audit (checkpointing every second in the harness) may take to sign a head.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(20);

/// The newest event's sequence.
fn head_seq(mesh: &Mesh) -> i64 {
    let head = psql(mesh, "SELECT max(seq) FROM audit.events");
    head.parse()
        .unwrap_or_else(|_| panic!("head sequence: {head:?}"))
}

/// How long no event may arrive before the log counts as quiet: events of the last
/// actions can still be on their way through a service's outbox, or caused by another
/// event, after the outboxes drained once.
const QUIET: Duration = Duration::from_secs(3);

/// Waits until the log is quiet and Audit has signed its head; returns the head and
/// `GET /v1/audit/checkpoints`, whose newest checkpoint is of the head.
async fn await_quiet_checkpoint(mesh: &Mesh, edge: &Edge<'_>, access: &str) -> (i64, Value) {
    let deadline = std::time::Instant::now() + CHECKPOINT_WAIT;
    let (mut head, mut since) = (head_seq(mesh), std::time::Instant::now());
    loop {
        let listed = edge
            .get("/v1/audit/checkpoints")
            .bearer(access)
            .send()
            .await
            .ok();
        let now = head_seq(mesh);
        if now != head {
            (head, since) = (now, std::time::Instant::now());
        }
        let newest = listed["checkpoints"][0]["sequence"].clone();
        if newest == json!(head.to_string()) && since.elapsed() >= QUIET {
            return (head, listed);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no quiet log with a checkpoint of its head within {CHECKPOINT_WAIT:?}: \
             newest checkpoint {newest}, head {head} since {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /v1/audit/chain/verify` with these kept checkpoints.
async fn verify_rest(edge: &Edge<'_>, access: &str, kept: Vec<Value>) -> Value {
    edge.post("/v1/audit/chain/verify", json!({"checkpoints": kept}))
        .bearer(access)
        .send()
        .await
        .ok()
}

/// The file of the checkpoint of `sequence` in the mesh's checkpoint directory.
fn checkpoint_file(mesh: &Mesh, sequence: i64) -> Value {
    let prefix = format!("checkpoint-{sequence:020}-");
    let dir = mesh.audit_checkpoint_dir();
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let name = names
        .iter()
        .find(|name| name.starts_with(&prefix) && name.ends_with(".json"))
        .unwrap_or_else(|| panic!("no file {prefix}*.json in {}: {names:?}", dir.display()));
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|err| panic!("{err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name} is not JSON ({err}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_audit_log_is_reported_against_checkpoints_kept_off_the_box() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin();
    for n in 0..3 {
        let email = format!("checkpoint-{n}@example.com");
        edge.register(&email, &format!("Checkpoint {n}")).await;
    }
    let user = edge.login("checkpoint-0@example.com", PASSWORD).await;
    edge.get("/v1/audit/checkpoints")
        .bearer(&user.access)
        .send()
        .await
        .error(StatusCode::FORBIDDEN, 7);
    await_outboxes_drained(&mesh).await;

    // Listed at the edge with the key it verifies under, and written as a file that
    // holds the same JSON.
    let (head, listed) = await_quiet_checkpoint(&mesh, &edge, &admin.access).await;
    assert!(head >= 4, "only {head} events stored");
    let newest = listed["checkpoints"][0].clone();
    let key = &listed["keys"][0];
    assert!(
        key["current"] == json!(true)
            && key["key_id"] == newest["key_id"]
            && key["public_key"].as_str().is_some_and(|k| k.len() == 44),
        "the current key is not listed with the checkpoints: {listed}"
    );
    let file = checkpoint_file(&mesh, head);
    assert_eq!(file, newest, "the file differs from the listed checkpoint");

    let intact = verify_rest(&edge, &admin.access, vec![file.clone()]).await;
    assert!(
        intact["ok"] == json!(true) && intact["problem"] == json!("CHAIN_PROBLEM_NONE"),
        "the untouched log does not verify against its checkpoints: {intact}"
    );

    // Whoever owns the schema deletes the two newest events, and every checkpoint Audit
    // keeps (the rows and the files); the operator kept the file elsewhere.
    let cut = head - 2;
    psql(
        &mesh,
        &format!(
            "ALTER TABLE audit.events DISABLE TRIGGER events_no_update; \
             DELETE FROM audit.events WHERE seq > {cut}; \
             ALTER TABLE audit.events ENABLE TRIGGER events_no_update; \
             ALTER TABLE audit.checkpoints DISABLE TRIGGER checkpoints_no_update; \
             DELETE FROM audit.checkpoints; \
             ALTER TABLE audit.checkpoints ENABLE TRIGGER checkpoints_no_update;"
        ),
    );
    for entry in std::fs::read_dir(mesh.audit_checkpoint_dir())
        .unwrap_or_else(|err| panic!("reading the checkpoint directory: {err}"))
        .filter_map(|entry| entry.ok())
    {
        std::fs::remove_file(entry.path()).unwrap_or_else(|err| panic!("{err}"));
    }

    let report = verify_rest(&edge, &admin.access, vec![file]).await;
    assert_eq!(
        (
            &report["ok"],
            &report["problem"],
            &report["first_bad_sequence"],
            &report["head_sequence"],
        ),
        (
            &json!(false),
            &json!("CHAIN_PROBLEM_TRUNCATED"),
            &json!(head.to_string()),
            &json!(cut.to_string()),
        ),
        "the truncation was not reported against the kept checkpoint: {report}"
    );
}

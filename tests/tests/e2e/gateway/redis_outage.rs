//! Redis down: the edge answers at once, failing open on bearer routes (and on the
//! fail-open public routes) and closed on login (503); once Redis is back, limits hold
//! again without restarting anything.
//!
//! "At once" is the filter's rate-limit timeout (50 ms in `envoy/edge.yaml`): a login,
//! answered by the edge alone, must come back within 100 ms; a bearer call goes on to
//! its service, so the outage may add at most 100 ms to its median latency with Redis up,
//! and no call may take 100 ms longer than the slowest with Redis up (the service's own
//! time varies on a loaded machine).

use std::time::{Duration, Instant};

use bulwark_e2e::{Mesh, poll_until};
use reqwest::StatusCode;

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Reply, bearer, envoy_stat, get_me, login, start_mesh, write_limits,
};
use crate::support::INVALID_REGISTRATION;

/// The bound on an answer (or on the delay the outage adds to one).
const MAX_LATENCY: Duration = Duration::from_millis(100);
/// Requests per kind before measuring: the first calls after Redis goes away find
/// broken connections to clear.
const WARM_UP: usize = 3;
/// Measured requests per kind.
const MEASURED: usize = 20;
/// Per-user limit of this test's limits file: more than the baseline's requests.
const USER_LIMIT: u64 = 30;
const _: () = assert!(WARM_UP + MEASURED < USER_LIMIT as usize);

fn login_request(mesh: &Mesh) -> reqwest::RequestBuilder {
    mesh.http()
        .post(mesh.edge_url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string())
}

fn get_me_request(mesh: &Mesh, authorization: &str) -> reqwest::RequestBuilder {
    mesh.http()
        .get(mesh.edge_url("/v1/users/me"))
        .header("authorization", authorization)
}

/// Sends `WARM_UP` then `MEASURED` requests made by `request`, checks each answer with
/// `check`, and returns the measured latencies.
async fn measure(
    what: &str,
    mut request: impl FnMut() -> reqwest::RequestBuilder,
    check: impl Fn(&Reply, &str),
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..WARM_UP + MEASURED {
        let label = format!("{what} #{i}");
        let started = Instant::now();
        let reply = Reply::of(request(), &label).await;
        let elapsed = started.elapsed();
        check(&reply, &label);
        if i >= WARM_UP {
            latencies.push(elapsed);
        }
    }
    latencies
}

fn median(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn summary(latencies: &[Duration]) -> String {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let max = ms.last().copied().unwrap_or_default();
    format!(
        "median {:.1} ms, max {max:.1} ms, all {ms:.1?}",
        median(latencies).as_secs_f64() * 1000.0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_for_bearer_routes_and_closed_for_login_within_100ms() {
    let limits = tempfile::tempdir().expect("a directory for the limits file");
    let mut mesh = start_mesh(Some(&write_limits(limits.path(), USER_LIMIT as u32))).await;
    let admin = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let authorization = bearer(&admin.access_token);

    // With Redis up: the limit is in force, and GetMe's usual latency.
    let baseline = measure(
        "GetMe with Redis up",
        || get_me_request(&mesh, &authorization),
        |reply, what| {
            assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
            assert!(
                reply.header("ratelimit-remaining").is_some(),
                "{what}: the per-user limit is not in force before the outage: {reply:?}"
            );
        },
    )
    .await;
    let failures_before = envoy_stat(&mesh, "wasmcustom.bulwark_gateway.callout_failures").await;

    mesh.stop_redis().expect("stopping redis");

    let bearer_latencies = measure(
        "GetMe with Redis down",
        || get_me_request(&mesh, &authorization),
        |reply, what| {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{what}: a bearer route must fail open: {reply:?}"
            );
        },
    )
    .await;
    let login_latencies = measure(
        "login with Redis down",
        || login_request(&mesh),
        |reply, what| {
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{what}: login must fail closed: {reply:?}"
            );
            reply.assert_error_body(14, what);
            assert!(
                reply.header("retry-after").is_some(),
                "{what}: the 503 has no Retry-After: {reply:?}"
            );
        },
    )
    .await;
    // Registration is a fail-open public route: it reaches identity (which refuses the
    // invalid body) although it could not be counted.
    let registration = Reply::of(
        mesh.http()
            .post(mesh.edge_url("/v1/users"))
            .header("content-type", "application/json")
            .body(INVALID_REGISTRATION),
        "registration with Redis down",
    )
    .await;
    assert_eq!(
        registration.status,
        StatusCode::BAD_REQUEST,
        "a fail-open public route did not reach identity with Redis down: {registration:?}"
    );

    eprintln!("Redis up, GetMe: {}", summary(&baseline));
    eprintln!(
        "Redis down, GetMe (fail open): {}",
        summary(&bearer_latencies)
    );
    eprintln!(
        "Redis down, login (fail closed): {}",
        summary(&login_latencies)
    );
    let slow_logins: Vec<&Duration> = login_latencies
        .iter()
        .filter(|d| **d > MAX_LATENCY)
        .collect();
    assert!(
        slow_logins.is_empty(),
        "logins with Redis down answered later than {MAX_LATENCY:?}: {slow_logins:?} ({})",
        summary(&login_latencies)
    );
    let usual = baseline.iter().max().copied().unwrap_or_default();
    let delayed: Vec<&Duration> = bearer_latencies
        .iter()
        .filter(|d| d.saturating_sub(usual) > MAX_LATENCY)
        .collect();
    assert!(
        delayed.is_empty(),
        "GetMe with Redis down took more than {MAX_LATENCY:?} longer than the slowest \
         with Redis up ({usual:?}): {delayed:?} ({})",
        summary(&bearer_latencies)
    );
    let added = median(&bearer_latencies).saturating_sub(median(&baseline));
    assert!(
        added <= MAX_LATENCY,
        "Redis down added {added:?} to GetMe's median latency (up: {}; down: {})",
        summary(&baseline),
        summary(&bearer_latencies)
    );
    let failures_during = envoy_stat(&mesh, "wasmcustom.bulwark_gateway.callout_failures").await;
    assert!(
        failures_during >= failures_before + (2 * MEASURED) as u64,
        "the filter counted {} rate-limit call failures for {} requests with Redis down",
        failures_during - failures_before,
        2 * (WARM_UP + MEASURED)
    );

    mesh.restart_redis().await.expect("restarting redis");

    // Limits hold again: the (empty) counters come back into use and run out.
    let first = poll_until(
        "GetMe counted by the rate-limit service after Redis restarted",
        Duration::from_secs(30),
        || async {
            let reply = get_me(&mesh, Some(&authorization)).await;
            match reply.header("ratelimit-remaining") {
                Some(_) if reply.status == StatusCode::OK => Ok(reply),
                _ => Err(format!("{reply:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
    let remaining = first.number_header("ratelimit-remaining", "GetMe after Redis is back");
    assert_eq!(
        remaining,
        USER_LIMIT - 1,
        "the first counted GetMe after the restart should start a fresh budget: {first:?}"
    );
    let mut refused = None;
    for _ in 0..2 * USER_LIMIT {
        let reply = get_me(&mesh, Some(&authorization)).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(reply);
            break;
        }
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GetMe within the limit: {reply:?}"
        );
    }
    assert!(
        refused.is_some(),
        "{} GetMe calls after Redis came back, none refused: the limit is not enforced",
        2 * USER_LIMIT
    );
    let login = Reply::of(login_request(&mesh), "login after Redis is back").await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "login still fails after Redis came back: {login:?}"
    );
    assert!(
        login.header("ratelimit-remaining").is_some(),
        "login after Redis came back was not counted: {login:?}"
    );
}

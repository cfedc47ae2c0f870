//! The fault soak: mixed traffic through the edge of a replicated mesh for a set time
//! while faults come one after another (a replica SIGKILLed and restarted, Redis and
//! PostgreSQL restarted, the rate-limit service paused), then the checks that nothing
//! was lost: every login and refresh the traffic saw succeed is in Audit exactly once
//! (matched by the trace id each request carried) and the chain verifies, no refresh
//! token was redeemed twice, and no request failed with a 5xx outside a fault's window.
//! `cargo xtask soak` runs it and writes the report; an e2e test runs 2 minutes of it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::mesh::Mesh;
use crate::service::ServiceKind;
use crate::traffic::{Outcome, RequestKind, Traffic, TrafficPlan, TrafficReport};
use crate::wait::poll_until;

/// The services' bootstrap admin with its default password (`BULWARK_ADMIN_EMAIL`,
/// `BULWARK_ADMIN_PASSWORD`), who may read the audit log.
pub const BOOTSTRAP_ADMIN: (&str, &str) = ("admin@bulwark.local", "bulwark-admin-change-me");

/// Route limits far above any test's traffic, and `user_per_second` requests a second per
/// user, in the shipped file's shape so that the gateway filter still asks for every
/// request.
pub fn edge_limits(user_per_second: u32) -> String {
    format!(
        "\
domain: bulwark-edge
descriptors:
  - key: route
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: second, requests_per_unit: 100000 }}
  - key: user_id
    rate_limit: {{ unit: second, requests_per_unit: {user_per_second} }}
"
    )
}

/// Rate limits far above any test's traffic (a soak is about faults, not limits; the
/// contract tests about routes).
pub fn generous_limits() -> String {
    edge_limits(100_000)
}

/// After a fault's component is back, how long its window stays open: the edge's health
/// checks (1 s apart, one success to take a replica back) and outlier ejections (10 s)
/// settle, and the outbox relays' back-off (up to 5 s) ends.
const SETTLE: Duration = Duration::from_secs(6);

/// What a soak does.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// How long the traffic runs.
    pub duration: Duration,
    /// Replicas of every service.
    pub replicas: usize,
    /// Envoy instances (one worker each).
    pub envoys: usize,
    /// Requests per second.
    pub rate: u32,
    /// Quiet time before the first fault and between a window's end and the next fault.
    pub quiet: Duration,
    /// Users the traffic acts as.
    pub users: usize,
}

impl SoakPlan {
    /// `duration` of 100 requests a second over 8 users, through 2 Envoys in front of 2
    /// replicas of every service, a fault every ~20 s after 10 quiet seconds.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            replicas: 2,
            envoys: 2,
            rate: 100,
            quiet: Duration::from_secs(8),
            users: 8,
        }
    }
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL one replica, restart it 2 s later (as an orchestrator would).
    KillReplica(ServiceKind, usize),
    /// Stop Redis, start it again 1 s later (its counters empty).
    RestartRedis,
    /// Stop PostgreSQL (fast shutdown), start it again 1 s later.
    RestartPostgres,
    /// SIGSTOP every rate-limit replica for 3 s, then SIGCONT.
    PauseRatelimit,
}

impl Fault {
    /// A short description for the report.
    pub fn describe(self) -> String {
        match self {
            Self::KillReplica(kind, 0) => format!("SIGKILL {}", kind.name()),
            Self::KillReplica(kind, n) => format!("SIGKILL {}#{n}", kind.name()),
            Self::RestartRedis => "restart Redis".to_owned(),
            Self::RestartPostgres => "restart PostgreSQL".to_owned(),
            Self::PauseRatelimit => "pause the rate-limit service 3 s".to_owned(),
        }
    }

    /// The faults in the order a soak cycles through them.
    fn cycle(replicas: usize) -> Vec<Self> {
        let other = replicas.saturating_sub(1);
        vec![
            Self::KillReplica(ServiceKind::Auth, 0),
            Self::RestartRedis,
            Self::KillReplica(ServiceKind::Identity, other),
            Self::RestartPostgres,
            Self::KillReplica(ServiceKind::Audit, 0),
            Self::PauseRatelimit,
            Self::KillReplica(ServiceKind::Authz, other),
            Self::KillReplica(ServiceKind::Ratelimit, 0),
        ]
    }
}

/// One fault's window and what the traffic saw in it.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    pub fault: String,
    /// From the start of the traffic.
    pub start: Duration,
    /// When the component was back (restarted and ready, or resumed).
    pub back: Duration,
    /// `back` plus the settling time: requests sent before this and answered after
    /// `start` are the fault's.
    pub end: Duration,
    pub requests: usize,
    pub failed: usize,
    /// From `back` until the last failed answer of the window (0 when none failed
    /// after it): how long the mesh took to recover once the component was back.
    pub recovery: Duration,
}

impl FaultWindow {
    /// Failed requests per request sent in the window.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }
}

/// One second of the traffic.
#[derive(Debug, Clone, Default)]
pub struct Second {
    pub requests: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What the audit log holds of the traffic's logins and refreshes.
#[derive(Debug, Clone, Default)]
pub struct AuditCheck {
    /// Logins and refreshes answered 200.
    pub succeeded: usize,
    /// Of those, how many have no event (lost).
    pub lost: usize,
    /// Trace ids with more than one event of the same action (duplicated).
    pub duplicated: usize,
    /// Events of requests whose answer was not 200 (committed, answer lost on the way).
    pub committed_unanswered: usize,
    /// Whether `VerifyChain` found the chain intact.
    pub chain_ok: bool,
    /// The events of the log, all services.
    pub events: usize,
}

/// The soak's results.
#[derive(Debug)]
pub struct SoakReport {
    pub plan: SoakPlan,
    pub traffic: TrafficReport,
    pub windows: Vec<FaultWindow>,
    pub timeline: Vec<Second>,
    pub audit: AuditCheck,
    /// Refresh tokens the edge accepted twice (must be none).
    pub redeemed_twice: usize,
    /// Whether a refresh token already redeemed was refused when sent again.
    pub reuse_refused: bool,
    /// 5xx or unanswered requests sent outside every fault window (must be none).
    pub failures_outside: Vec<Outcome>,
}

impl SoakReport {
    /// Every check that failed, in words; empty when the soak passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.audit.lost > 0 {
            problems.push(format!(
                "{} of {} successful logins and refreshes have no audit event",
                self.audit.lost, self.audit.succeeded
            ));
        }
        if self.audit.duplicated > 0 {
            problems.push(format!(
                "{} requests have their audit event twice",
                self.audit.duplicated
            ));
        }
        if !self.audit.chain_ok {
            problems.push("VerifyChain does not find the audit chain intact".to_owned());
        }
        if self.redeemed_twice > 0 {
            problems.push(format!(
                "{} refresh tokens were redeemed twice",
                self.redeemed_twice
            ));
        }
        if !self.reuse_refused {
            problems.push("a redeemed refresh token was accepted again".to_owned());
        }
        if !self.failures_outside.is_empty() {
            let mut text = format!(
                "{} requests failed with a 5xx (or no answer) outside every fault window:",
                self.failures_outside.len()
            );
            for outcome in self.failures_outside.iter().take(10) {
                text.push_str(&format!(
                    "\n  at {:.3} s {} {:?}: {}",
                    outcome.sent.as_secs_f64(),
                    outcome.kind.name(),
                    outcome.status,
                    outcome.detail
                ));
            }
            problems.push(text);
        }
        problems
    }
}

/// Runs a soak: starts the mesh, the traffic and the faults, then checks. `progress`
/// gets a line for every step.
pub async fn run(plan: SoakPlan, progress: impl Fn(&str)) -> anyhow::Result<SoakReport> {
    let limits = tempfile::tempdir().context("creating a directory for the limits file")?;
    let limits_path = limits.path().join("limits.yaml");
    std::fs::write(&limits_path, generous_limits())?;
    progress(&format!(
        "starting {} replicas of every service behind {} Envoys",
        plan.replicas, plan.envoys
    ));
    let mut mesh = Mesh::builder()
        .all_services()
        .replicas(plan.replicas)
        .envoys(plan.envoys, 1)
        // Calls of the gateway filter wait for a paused limiter as long as in production.
        .service_env(
            ServiceKind::Ratelimit,
            "BULWARK_RATELIMIT__CONFIG_PATH",
            limits_path.to_str().context("a UTF-8 temporary path")?,
        )
        .start()
        .await?;
    let http = mesh.http().clone();
    let edges: Vec<String> = mesh.envoys().iter().map(|envoy| envoy.url("")).collect();

    let mut users = Vec::new();
    for n in 0..plan.users {
        let email = format!("soak-{n}@example.com");
        let password = "soak-password-long-enough".to_owned();
        register(&http, &edges[0], &email, &password).await?;
        users.push((email, password));
    }
    await_edge_accepts_tokens(&http, &edges, &users[0]).await?;

    let mut traffic_plan = TrafficPlan::mixed(edges.clone(), users);
    traffic_plan.rate = plan.rate;
    progress(&format!(
        "traffic: {} requests a second for {:?}",
        plan.rate, plan.duration
    ));
    let traffic = Traffic::start(http.clone(), traffic_plan).await?;

    let mut marks: Vec<(Fault, Duration, Duration)> = Vec::new();
    let faults = Fault::cycle(plan.replicas);
    let mut next = 0;
    tokio::time::sleep(plan.quiet).await;
    // A fault takes at most ~10 s; none starts unless its window can end in time.
    while traffic.elapsed() + Duration::from_secs(10) + SETTLE < plan.duration {
        let fault = faults[next % faults.len()];
        next += 1;
        let start = traffic.elapsed();
        progress(&format!(
            "{:>6.1} s  {}",
            start.as_secs_f64(),
            fault.describe()
        ));
        inject(&mut mesh, fault)
            .await
            .with_context(|| fault.describe())?;
        let back = traffic.elapsed();
        progress(&format!(
            "{:>6.1} s  back after {:.1} s",
            back.as_secs_f64(),
            (back - start).as_secs_f64()
        ));
        marks.push((fault, start, back));
        tokio::time::sleep(SETTLE + plan.quiet).await;
    }
    let left = plan.duration.saturating_sub(traffic.elapsed());
    tokio::time::sleep(left).await;
    progress("stopping the traffic");
    let report = traffic.stop().await;

    progress("checking the audit log and the refresh tokens");
    let admin = login(&http, &edges[0], BOOTSTRAP_ADMIN).await?;
    let audit = check_audit(&http, &edges[0], &admin, &report).await?;
    let reuse_refused = match report.redeemed.first() {
        Some(token) => {
            let status = http
                .post(format!("{}/v1/auth/refresh", edges[0]))
                .json(&json!({"refresh_token": token}))
                .send()
                .await?
                .status();
            status == reqwest::StatusCode::UNAUTHORIZED
        }
        None => anyhow::bail!("the traffic redeemed no refresh token"),
    };

    let windows = windows(&marks, &report.outcomes);
    let failures_outside = report
        .outcomes
        .iter()
        .filter(|o| o.server_failure())
        .filter(|o| !windows.iter().any(|w| in_window(o, w.start, w.end)))
        .cloned()
        .collect();
    Ok(SoakReport {
        timeline: timeline(&report.outcomes),
        redeemed_twice: report.redeemed_twice().len(),
        reuse_refused,
        windows,
        audit,
        failures_outside,
        traffic: report,
        plan,
    })
}

/// Injects one fault and returns once its component is back (ready).
async fn inject(mesh: &mut Mesh, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::KillReplica(kind, replica) => {
            mesh.kill_replica(kind, replica)?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            mesh.restart_replica(kind, replica).await
        }
        Fault::RestartRedis => {
            tokio::task::block_in_place(|| mesh.stop_redis())?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            mesh.restart_redis().await
        }
        Fault::RestartPostgres => {
            tokio::task::block_in_place(|| mesh.stop_postgres())?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            mesh.start_postgres().await
        }
        Fault::PauseRatelimit => {
            for replica in mesh.replicas(ServiceKind::Ratelimit) {
                replica.signal("STOP")?;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            for replica in mesh.replicas(ServiceKind::Ratelimit) {
                replica.signal("CONT")?;
            }
            Ok(())
        }
    }
}

/// Whether a request belongs to a fault's window: sent before the window ends and
/// answered after it starts (a request in flight when the fault hit is the fault's).
fn in_window(outcome: &Outcome, start: Duration, end: Duration) -> bool {
    outcome.sent < end && outcome.sent + outcome.latency >= start
}

fn windows(marks: &[(Fault, Duration, Duration)], outcomes: &[Outcome]) -> Vec<FaultWindow> {
    marks
        .iter()
        .map(|(fault, start, back)| {
            let end = *back + SETTLE;
            let inside: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| in_window(o, *start, end))
                .collect();
            let failed: Vec<&&Outcome> = inside.iter().filter(|o| !o.ok()).collect();
            let recovery = failed
                .iter()
                .map(|o| o.sent + o.latency)
                .max()
                .map(|last| last.saturating_sub(*back))
                .unwrap_or_default();
            FaultWindow {
                fault: fault.describe(),
                start: *start,
                back: *back,
                end,
                requests: inside.len(),
                failed: failed.len(),
                recovery,
            }
        })
        .collect()
}

fn timeline(outcomes: &[Outcome]) -> Vec<Second> {
    let seconds = outcomes
        .iter()
        .map(|o| o.sent.as_secs() as usize + 1)
        .max()
        .unwrap_or(0);
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    let mut timeline = vec![Second::default(); seconds];
    for outcome in outcomes {
        let second = outcome.sent.as_secs() as usize;
        timeline[second].requests += 1;
        timeline[second].failed += usize::from(!outcome.ok());
        latencies[second].push(outcome.latency.as_secs_f64() * 1000.0);
    }
    for (second, mut values) in timeline.iter_mut().zip(latencies) {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            values
                .get(((values.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        second.p50_ms = at(0.5);
        second.p99_ms = at(0.99);
    }
    timeline
}

/// Every successful login and refresh has one event of its action under its trace id;
/// no trace id has two of the same action. Waits for the outbox relays first (events of
/// the last requests may still be queued, or waiting for a restarted Audit).
async fn check_audit(
    http: &reqwest::Client,
    edge: &str,
    admin: &str,
    report: &TrafficReport,
) -> anyhow::Result<AuditCheck> {
    let audited = |kind: RequestKind| match kind {
        RequestKind::Login => Some("auth.login"),
        RequestKind::Refresh => Some("auth.refresh"),
        RequestKind::Me | RequestKind::Check => None,
    };
    let succeeded: Vec<(&str, &str)> = report
        .outcomes
        .iter()
        .filter(|o| o.ok())
        .filter_map(|o| Some((o.trace_id.as_str(), audited(o.kind)?)))
        .collect();
    let unanswered: HashMap<&str, &str> = report
        .outcomes
        .iter()
        .filter(|o| !o.ok())
        .filter_map(|o| Some((o.trace_id.as_str(), audited(o.kind)?)))
        .collect();
    let events = poll_until(
        "every successful login and refresh in the audit log",
        Duration::from_secs(90),
        || async {
            let events = all_events(http, edge, admin)
                .await
                .map_err(|err| format!("{err:#}"))?;
            let held = counts(&events);
            let missing = succeeded
                .iter()
                .filter(|(trace, action)| {
                    !held.contains_key(&(trace.to_string(), action.to_string()))
                })
                .count();
            if missing == 0 {
                Ok(events)
            } else {
                Err(format!("{missing} of {} not yet there", succeeded.len()))
            }
        },
    )
    .await;
    // Lost events are a finding of the soak, not an error of the run.
    let events = match events {
        Ok(events) => events,
        Err(_) => all_events(http, edge, admin).await?,
    };
    let held = counts(&events);
    let lost = succeeded
        .iter()
        .filter(|(trace, action)| !held.contains_key(&(trace.to_string(), action.to_string())))
        .count();
    let duplicated = held
        .iter()
        .filter(|((trace, _), n)| **n > 1 && !trace.is_empty())
        .count();
    let committed_unanswered = held
        .keys()
        .filter(|(trace, action)| unanswered.get(trace.as_str()) == Some(&action.as_str()))
        .count();
    let chain_ok = verify_chain(http, edge, admin).await?;
    Ok(AuditCheck {
        succeeded: succeeded.len(),
        lost,
        duplicated,
        committed_unanswered,
        chain_ok,
        events: events.len(),
    })
}

/// Events per `(trace id, action)`, of logins and refreshes.
fn counts(events: &[Value]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for event in events {
        let action = event["action"].as_str().unwrap_or_default();
        if action == "auth.login" || action == "auth.refresh" {
            let trace = event["trace_id"].as_str().unwrap_or_default();
            *counts
                .entry((trace.to_owned(), action.to_owned()))
                .or_default() += 1;
        }
    }
    counts
}

async fn all_events(http: &reqwest::Client, edge: &str, admin: &str) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let mut query = vec![("page_size", "1000".to_owned())];
        if !token.is_empty() {
            query.push(("page_token", token.clone()));
        }
        let response = http
            .get(format!("{edge}/v1/audit/events"))
            .bearer_auth(admin)
            .query(&query)
            .send()
            .await?;
        let status = response.status();
        let page: Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "GET /v1/audit/events answered {status}: {page}"
        );
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        token = page["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if token.is_empty() {
            return Ok(events);
        }
    }
}

async fn verify_chain(http: &reqwest::Client, edge: &str, admin: &str) -> anyhow::Result<bool> {
    let response = http
        .post(format!("{edge}/v1/audit/chain/verify"))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await?;
    let status = response.status();
    let verdict: Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "VerifyChain answered {status}: {verdict}"
    );
    Ok(verdict["ok"] == true)
}

async fn register(
    http: &reqwest::Client,
    edge: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("{edge}/v1/users"))
        .json(&json!({"email": email, "password": password, "display_name": "Soak"}))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "registering {email} answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

async fn login(
    http: &reqwest::Client,
    edge: &str,
    (email, password): (&str, &str),
) -> anyhow::Result<String> {
    let (access, _) =
        crate::traffic::login(http, edge, email, password, Duration::from_secs(10)).await?;
    Ok(access)
}

/// Envoy reports ready before the gateway filter has fetched the JWKS; waits until each
/// edge accepts a fresh token.
async fn await_edge_accepts_tokens(
    http: &reqwest::Client,
    edges: &[String],
    (email, password): &(String, String),
) -> anyhow::Result<()> {
    let access = login(http, &edges[0], (email, password)).await?;
    for edge in edges {
        let access = &access;
        poll_until(
            "the edge accepting a fresh token",
            Duration::from_secs(30),
            || async move {
                let status = http
                    .get(format!("{edge}/v1/users/me"))
                    .bearer_auth(access)
                    .send()
                    .await
                    .map_err(|err| err.to_string())?
                    .status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            },
        )
        .await?;
    }
    Ok(())
}

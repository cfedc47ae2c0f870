//! Mixed client traffic through the edge at a fixed rate (open loop: a slow answer does
//! not slow the senders down), each request's outcome recorded: the load of the
//! rolling-restart test and of `cargo xtask soak`.
//!
//! Every request is one of: a login, `GET /v1/users/me`, an authorization check of the
//! caller itself, or a refresh of the newest refresh token of its user (single use: the
//! traffic keeps each user's chain, and records every token it redeemed successfully).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// `POST /v1/auth/login`.
    Login,
    /// `GET /v1/users/me`.
    Me,
    /// `POST /v1/authz/check` of the caller itself.
    Check,
    /// `POST /v1/auth/refresh` with the user's newest refresh token.
    Refresh,
}

impl RequestKind {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Me => "me",
            Self::Check => "check",
            Self::Refresh => "refresh",
        }
    }
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the traffic.
    pub sent: Duration,
    /// How long its answer took (or its failure).
    pub latency: Duration,
    pub kind: RequestKind,
    /// The trace id the request carried (`traceparent`, sampled): the services record it
    /// with every audit event the request caused.
    pub trace_id: String,
    /// The HTTP status, or why there was none.
    pub status: Result<u16, String>,
    /// The body of a failed answer (its start), for the report.
    pub detail: String,
}

impl Outcome {
    /// Whether the request got the answer it should: 200.
    pub fn ok(&self) -> bool {
        self.status == Ok(200)
    }

    /// Whether the edge or a service failed it (5xx, or no answer at all).
    pub fn server_failure(&self) -> bool {
        match &self.status {
            Ok(status) => *status >= 500,
            Err(_) => true,
        }
    }
}

/// The traffic's shape.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// The edge base URLs (`http://127.0.0.1:<port>`); requests go to each in turn.
    pub edges: Vec<String>,
    /// Requests per second, all kinds together.
    pub rate: u32,
    /// Out of every 20 requests, how many of each kind (the rest are `Me`).
    pub logins_per_20: u32,
    pub checks_per_20: u32,
    pub refreshes_per_20: u32,
    /// Registered users `(email, password)` the traffic acts as, in turn.
    pub users: Vec<(String, String)>,
    /// Deadline of one request.
    pub timeout: Duration,
}

impl TrafficPlan {
    /// 200 requests a second over `edges` as `users`: per 20, 1 login, 5 checks, 1
    /// refresh and 13 `/v1/users/me`.
    pub fn mixed(edges: Vec<String>, users: Vec<(String, String)>) -> Self {
        Self {
            edges,
            rate: 200,
            logins_per_20: 1,
            checks_per_20: 5,
            refreshes_per_20: 1,
            users,
            timeout: Duration::from_secs(10),
        }
    }

    fn kind(&self, n: u64) -> RequestKind {
        let slot = (n % 20) as u32;
        if slot < self.logins_per_20 {
            RequestKind::Login
        } else if slot < self.logins_per_20 + self.checks_per_20 {
            RequestKind::Check
        } else if slot < self.logins_per_20 + self.checks_per_20 + self.refreshes_per_20 {
            RequestKind::Refresh
        } else {
            RequestKind::Me
        }
    }
}

/// A user's session as the traffic holds it.
#[derive(Debug, Default)]
struct Session {
    id: String,
    access: String,
    refresh: String,
}

#[derive(Debug, Default)]
struct Shared {
    outcomes: Vec<Outcome>,
    sessions: HashMap<usize, Session>,
    /// Every refresh token the edge accepted, in order.
    redeemed: Vec<String>,
    /// Users with a refresh in flight.
    refreshing: HashMap<usize, bool>,
}

/// Running traffic; [`Traffic::stop`] ends it and returns what happened.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    started: Instant,
    sender: tokio::task::JoinHandle<()>,
}

/// What the traffic did, once stopped.
#[derive(Debug)]
pub struct TrafficReport {
    /// Every request, in the order they were answered.
    pub outcomes: Vec<Outcome>,
    /// Every refresh token the edge accepted.
    pub redeemed: Vec<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl TrafficReport {
    /// The requests that did not get 200.
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.ok()).collect()
    }

    /// Refresh tokens the edge accepted more than once (a single-use token redeemed
    /// twice), with how often.
    pub fn redeemed_twice(&self) -> Vec<(&str, usize)> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for token in &self.redeemed {
            *counts.entry(token.as_str()).or_default() += 1;
        }
        let mut twice: Vec<(&str, usize)> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
        twice.sort_unstable();
        twice
    }

    /// Requests per kind: `(kind, sent, answered 200)`.
    pub fn per_kind(&self) -> Vec<(RequestKind, usize, usize)> {
        let mut kinds: HashMap<RequestKind, (usize, usize)> = HashMap::new();
        for outcome in &self.outcomes {
            let entry = kinds.entry(outcome.kind).or_default();
            entry.0 += 1;
            entry.1 += usize::from(outcome.ok());
        }
        let mut kinds: Vec<(RequestKind, usize, usize)> =
            kinds.into_iter().map(|(k, (s, o))| (k, s, o)).collect();
        kinds.sort_unstable();
        kinds
    }

    /// A few lines on the failures (at most `limit`), for a failing test's message.
    pub fn describe_failures(&self, limit: usize) -> String {
        let failures = self.failures();
        let mut text = format!(
            "{} of {} requests failed",
            failures.len(),
            self.outcomes.len()
        );
        for outcome in failures.iter().take(limit) {
            text.push_str(&format!(
                "\n  at {:>7.3} s {:<8} {:?} after {:?}: {}",
                outcome.sent.as_secs_f64(),
                outcome.kind.name(),
                outcome.status,
                outcome.latency,
                outcome.detail
            ));
        }
        text
    }
}

impl Traffic {
    /// Logs every user in (through the first edge), then starts sending.
    pub async fn start(http: reqwest::Client, plan: TrafficPlan) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !plan.edges.is_empty() && !plan.users.is_empty() && plan.rate > 0,
            "traffic needs an edge, a user and a rate"
        );
        let shared = Arc::new(Mutex::new(Shared::default()));
        for (index, (email, password)) in plan.users.iter().enumerate() {
            let (access, refresh) = login(&http, &plan.edges[0], email, password, plan.timeout)
                .await
                .with_context(|| format!("logging {email} in before the traffic starts"))?;
            let id = user_id(&http, &plan.edges[0], &access, plan.timeout)
                .await
                .with_context(|| format!("reading {email}'s id"))?;
            lock(&shared).sessions.insert(
                index,
                Session {
                    id,
                    access,
                    refresh,
                },
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let sender = tokio::spawn(send_all(
            http,
            Arc::new(plan),
            Arc::clone(&shared),
            Arc::clone(&stop),
            started,
        ));
        Ok(Self {
            stop,
            shared,
            started,
            sender,
        })
    }

    /// How long the traffic has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The outcomes so far (a copy).
    pub fn outcomes(&self) -> Vec<Outcome> {
        lock(&self.shared).outcomes.clone()
    }

    /// Stops sending, waits for the answers in flight (up to the request deadline),
    /// and reports.
    pub async fn stop(self) -> TrafficReport {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.sender.await;
        let elapsed = self.started.elapsed();
        let mut shared = lock(&self.shared);
        TrafficReport {
            outcomes: std::mem::take(&mut shared.outcomes),
            redeemed: std::mem::take(&mut shared.redeemed),
            elapsed,
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn send_all(
    http: reqwest::Client,
    plan: Arc<TrafficPlan>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    started: Instant,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(plan.rate));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        let kind = plan.kind(n);
        let user = (n / 20) as usize % plan.users.len();
        let edge = plan.edges[(n as usize) % plan.edges.len()].clone();
        n += 1;
        in_flight.spawn(one_request(
            http.clone(),
            Arc::clone(&plan),
            Arc::clone(&shared),
            started,
            kind,
            user,
            edge,
        ));
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn one_request(
    http: reqwest::Client,
    plan: Arc<TrafficPlan>,
    shared: Arc<Mutex<Shared>>,
    started: Instant,
    kind: RequestKind,
    user: usize,
    edge: String,
) {
    let (email, password) = &plan.users[user];
    let (kind, id, access, refresh) = {
        let mut shared = lock(&shared);
        // A client refreshes one at a time: while one is in flight, this turn is a /me.
        let kind = if kind == RequestKind::Refresh
            && shared.refreshing.get(&user).copied().unwrap_or(false)
        {
            RequestKind::Me
        } else {
            kind
        };
        if kind == RequestKind::Refresh {
            shared.refreshing.insert(user, true);
        }
        let session = shared.sessions.get(&user);
        let field = |f: fn(&Session) -> &String| session.map(f).cloned().unwrap_or_default();
        (
            kind,
            field(|s| &s.id),
            field(|s| &s.access),
            field(|s| &s.refresh),
        )
    };
    let trace_id = new_trace_id();
    let sent = started.elapsed();
    let begun = Instant::now();
    let request = match kind {
        RequestKind::Login => http
            .post(format!("{edge}/v1/auth/login"))
            .json(&json!({"email": email, "password": password})),
        RequestKind::Me => http.get(format!("{edge}/v1/users/me")).bearer_auth(&access),
        RequestKind::Check => http
            .post(format!("{edge}/v1/authz/check"))
            .bearer_auth(&access)
            .json(&json!({"subject": id, "permission": "users:read"})),
        RequestKind::Refresh => http
            .post(format!("{edge}/v1/auth/refresh"))
            .json(&json!({"refresh_token": refresh})),
    };
    let span_id = &new_trace_id()[..16];
    let answer = request
        .header("traceparent", format!("00-{trace_id}-{span_id}-01"))
        .timeout(plan.timeout)
        .send()
        .await;
    let (status, body) = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            (Ok(status), response.text().await.unwrap_or_default())
        }
        Err(err) => (Err(err.to_string()), String::new()),
    };
    let latency = begun.elapsed();
    let mut shared = lock(&shared);
    if status == Ok(200)
        && matches!(kind, RequestKind::Login | RequestKind::Refresh)
        && let Ok(pair) = serde_json::from_str::<Value>(&body)
        && let (Some(access), Some(refresh)) = (
            pair["access_token"].as_str(),
            pair["refresh_token"].as_str(),
        )
        && let Some(session) = shared.sessions.get_mut(&user)
    {
        // A login starts a new session; the traffic carries on with it.
        session.access = access.to_owned();
        session.refresh = refresh.to_owned();
    }
    if kind == RequestKind::Refresh {
        shared.refreshing.insert(user, false);
        if status == Ok(200) {
            shared.redeemed.push(refresh);
        }
    }
    let detail = if status == Ok(200) {
        String::new()
    } else {
        body.chars().take(200).collect()
    };
    shared.outcomes.push(Outcome {
        sent,
        latency,
        kind,
        trace_id,
        status,
        detail,
    });
}

/// 32 random lowercase hex digits (a W3C trace id).
fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Logs `email` in through `edge`: `(access token, refresh token)`.
pub(crate) async fn login(
    http: &reqwest::Client,
    edge: &str,
    email: &str,
    password: &str,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let response = http
        .post(format!("{edge}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .timeout(timeout)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "login answered {status}: {body}");
    let access = body["access_token"].as_str().context("no access_token")?;
    let refresh = body["refresh_token"].as_str().context("no refresh_token")?;
    Ok((access.to_owned(), refresh.to_owned()))
}

async fn user_id(
    http: &reqwest::Client,
    edge: &str,
    access: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let response = http
        .get(format!("{edge}/v1/users/me"))
        .bearer_auth(access)
        .timeout(timeout)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "GET /v1/users/me answered {status}: {body}"
    );
    Ok(body["id"].as_str().context("no id")?.to_owned())
}

//! `cargo xtask bench-services`: issue #3's benchmark. Drives a private release-built mesh
//! through the edge with an open-loop load and checks login p95 < 100 ms at 20 logins/s
//! and `GET /v1/users/me` p95 < 10 ms at 500 requests/s, each next to the edge's own
//! `GET /healthz` at the same rate; prints a table and writes `xtask/results/services.md`,
//! with `services.json` and its latency chart beside it.

mod cpu;
mod load;
pub(crate) mod release;
mod report;
mod users;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use bulwark_e2e::{Mesh, ServiceKind};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use load::{Measurement, Plan};
use report::{Row, RunNotes, Solo, Target};
use users::BenchUser;

const STEPS: usize = 7;
const WARMUP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);
/// Issue #3's figures.
const LOGIN_RATE: u32 = 20;
const LOGIN_P95: Duration = Duration::from_millis(100);
const ME_RATE: u32 = 500;
const ME_P95: Duration = Duration::from_millis(10);
/// 500 requests/s over 20 users is 25/s each, well under the 100/s per-user limit.
const USERS: usize = 20;
const BEARER_LIMIT_PER_USER: u32 = 100;
/// Requests sent one at a time before the load, for the unloaded latency.
const SOLO_REQUESTS: u64 = 200;
/// Past this a request counts as an error (`timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: cargo xtask bench-services [--no-build]

  --no-build   skip the release builds (use the binaries and filter already built)";

fn step(n: usize, what: &str) {
    eprintln!("[{n}/{STEPS}] {what}");
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut build = true;
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("bench-services: unknown argument `{other}`\n\n{USAGE}"),
        }
    }

    // Before building: the build relinks this executable (see `this_executable`).
    let release_dir = release::release_dir(&release::this_executable()?)?;
    release::build_services_and_filter(build, step)?;
    measure(&release_dir).await
}

/// Steps 3 to 7. The e2e harness finds the release services next to this executable.
async fn measure(release_dir: &Path) -> anyhow::Result<()> {
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    step(
        3,
        "starting a private mesh on free ports (Postgres, Redis, 5 services, Envoy)",
    );
    let mesh = start_mesh(release_dir).await?;

    step(
        4,
        &format!("registering {USERS} users and logging each in once"),
    );
    let (users, solo_logins) = users::register(mesh.http(), &|path| mesh.edge_url(path), USERS)
        .await
        .context("preparing the benchmark's users")?;
    let client = load_client()?;
    let edge = Edge::new(&mesh, &client, &users);
    let solo = Solo {
        healthz: load::median(&load::one_at_a_time(SOLO_REQUESTS, |i| edge.healthz(i)).await?),
        me: load::median(&load::one_at_a_time(SOLO_REQUESTS, |i| edge.me(i)).await?),
        login: load::median(&solo_logins),
    };
    eprintln!(
        "      one request at a time (median): GET /healthz {}, GET /v1/users/me {}, login {}",
        report::ms(solo.healthz),
        report::ms(solo.me),
        report::ms(solo.login)
    );
    let load_before = format!(
        "load average {}; in the second before the first window: {}",
        load_average
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        idle_machine().await
    );

    step(
        5,
        &format!(
            "login at {LOGIN_RATE}/s: GET /healthz, then POST /v1/auth/login ({}s warm-up + {}s each)",
            WARMUP.as_secs(),
            MEASURE.as_secs()
        ),
    );
    let login = target(
        "POST /v1/auth/login p95 at 20/s",
        LOGIN_P95,
        LOGIN_RATE,
        &edge,
        |i| edge.login(i),
    )
    .await?;

    step(
        6,
        &format!(
            "GET /v1/users/me at {ME_RATE}/s over {USERS} users: GET /healthz, then /v1/users/me"
        ),
    );
    let me = target(
        "GET /v1/users/me p95 at 500/s",
        ME_P95,
        ME_RATE,
        &edge,
        |i| edge.me(i),
    )
    .await?;

    step(
        7,
        "writing xtask/results/services.md, services.json and its chart; stopping the mesh",
    );
    let targets = [login, me];
    let notes = RunNotes {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: commit(),
        machine: machine(),
        load_before,
        setup: setup_notes(release_dir),
        solo,
    };
    write_results(&notes, &targets)?;
    drop(mesh);

    let missed: Vec<&str> = targets
        .iter()
        .filter(|t| !t.passed())
        .map(|t| t.what)
        .collect();
    if !missed.is_empty() {
        bail!("target missed: {}", missed.join("; "));
    }
    Ok(())
}

/// The whole mesh, with the benchmark's limits file, after checking that every service
/// runs its release build.
async fn start_mesh(release_dir: &Path) -> anyhow::Result<Mesh> {
    let limits = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bench_services/limits.yaml");
    if !limits.is_file() {
        bail!(
            "the benchmark's limits file {} is missing",
            limits.display()
        );
    }
    let mesh = Mesh::builder()
        .all_services()
        .envoy()
        .service_env(
            ServiceKind::Ratelimit,
            "BULWARK_RATELIMIT__CONFIG_PATH",
            &limits.display().to_string(),
        )
        .start()
        .await
        .context("starting the private mesh")?;
    for kind in ServiceKind::EVERY {
        release::ensure_runs_release(kind.name(), mesh.service(kind).pid(), release_dir)?;
    }
    eprintln!(
        "      edge at {}, release binaries from {}, logs in {}",
        mesh.edge_url(""),
        release_dir.display(),
        mesh.dir().join("logs").display()
    );
    Ok(mesh)
}

/// The requests the benchmark sends, built from the edge's address and the users.
#[derive(Debug)]
struct Edge<'a> {
    client: &'a reqwest::Client,
    users: &'a [BenchUser],
    healthz: String,
    login: String,
    me: String,
}

impl<'a> Edge<'a> {
    fn new(mesh: &Mesh, client: &'a reqwest::Client, users: &'a [BenchUser]) -> Self {
        Self {
            client,
            users,
            healthz: mesh.edge_url("/healthz"),
            login: mesh.edge_url("/v1/auth/login"),
            me: mesh.edge_url("/v1/users/me"),
        }
    }

    /// Request `i` of a run cycles through the users.
    fn user(&self, i: u64) -> &BenchUser {
        let n = self.users.len().max(1) as u64;
        &self.users[usize::try_from(i % n).unwrap_or(0)]
    }

    fn healthz(&self, _i: u64) -> reqwest::RequestBuilder {
        self.client.get(&self.healthz)
    }

    fn login(&self, i: u64) -> reqwest::RequestBuilder {
        self.client
            .post(&self.login)
            .header(CONTENT_TYPE, "application/json")
            .body(self.user(i).login_body.clone())
    }

    fn me(&self, i: u64) -> reqwest::RequestBuilder {
        self.client
            .get(&self.me)
            .header(AUTHORIZATION, self.user(i).authorization.clone())
    }
}

/// One target: the bare edge's `GET /healthz` at `rate`, then the measured call.
async fn target<F>(
    what: &'static str,
    limit: Duration,
    rate: u32,
    edge: &Edge<'_>,
    request: F,
) -> anyhow::Result<Target>
where
    F: FnMut(u64) -> reqwest::RequestBuilder,
{
    let reference = scenario("GET /healthz (bare edge)", rate, |i| edge.healthz(i)).await?;
    let name = what.split(" p95").next().unwrap_or(what);
    let measured = scenario(name, rate, request).await?;
    Ok(Target {
        what,
        limit,
        measured,
        reference,
    })
}

/// Writes `xtask/results/services.md`, `services.json` and the chart, and prints the table.
fn write_results(notes: &RunNotes, targets: &[Target]) -> anyhow::Result<()> {
    let rows: Vec<&Row> = targets
        .iter()
        .flat_map(|t| [&t.reference, &t.measured])
        .collect();
    let path = results_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, report::markdown(notes, &rows, targets))
        .with_context(|| format!("writing {}", path.display()))?;
    print_table(&report::table(&rows, targets));
    eprintln!("      figures written to {}", path.display());
    crate::charts::write_services(
        &crate::charts::results_dir(),
        &report::figures(notes, targets),
    )
}

/// One scenario at `rate`, with the machine's CPU use over it.
async fn scenario<F>(name: &str, rate: u32, request: F) -> anyhow::Result<Row>
where
    F: FnMut(u64) -> reqwest::RequestBuilder,
{
    let plan = Plan {
        rate,
        warmup: WARMUP,
        measure: MEASURE,
    };
    // The CPU window starts with the measured window, after the warm-up.
    let (measurement, cpu) = {
        let sampler = tokio::spawn(async {
            tokio::time::sleep(WARMUP).await;
            let before = cpu::snapshot();
            tokio::time::sleep(MEASURE).await;
            cpu::usage(&before, &cpu::snapshot(), cores())
        });
        let measurement: Measurement = load::drive(plan, request)
            .await
            .with_context(|| format!("driving {name}"))?;
        let cpu = sampler.await.context("the CPU sampler panicked")?;
        (measurement, cpu)
    };
    eprintln!(
        "      {name}: p50 {}, p95 {}, p99 {}, {} errors; cpu cores: mesh {:.2} ({}), other {:.2} ({})",
        report::ms(measurement.percentile(50.0)),
        report::ms(measurement.percentile(95.0)),
        report::ms(measurement.percentile(99.0)),
        measurement.error_count(),
        cpu.mesh,
        cpu.mesh_summary(),
        cpu.others_total(),
        cpu.others_summary(),
    );
    Ok(Row {
        name: name.to_owned(),
        measurement,
        cpu,
    })
}

/// HTTP/1.1 with keep-alive: each connection carries one request at a time and the pool
/// opens more when requests overlap, as a fleet of clients would.
fn load_client() -> anyhow::Result<reqwest::Client> {
    bulwark_e2e::http_client()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the load client")
}

/// The machine's CPU use over one second while the mesh is idle.
async fn idle_machine() -> String {
    let before = cpu::snapshot();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let usage = cpu::usage(&before, &cpu::snapshot(), cores());
    format!(
        "{:.2} cores busy, {:.2} of them by processes other than the benchmark's ({})",
        usage.busy,
        usage.others_total(),
        usage.others_summary()
    )
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{} cores (nproc), {model}", cores())
}

fn commit() -> String {
    let root = bulwark_e2e::workspace_root();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head} with uncommitted changes")
            } else {
                head
            }
        }
        None => "unknown (git unavailable)".to_owned(),
    }
}

fn setup_notes(release_dir: &Path) -> Vec<String> {
    vec![
        format!(
            "Mesh: a private one on free ports started by the e2e harness (`bulwark-e2e`): \
             PostgreSQL 15, Redis, identity, auth, authz, audit and ratelimit as release \
             builds (checked: each process runs its binary from `{}`), Envoy 1.40 with \
             `--concurrency 1` and the gateway filter built with the `wasm` profile.",
            release_dir.display()
        ),
        format!(
            "Load: open loop at a fixed rate (request i is due at i/rate whatever the earlier \
             ones did; latency counts from that due time), HTTP/1.1 keep-alive connections to \
             127.0.0.1, {} s warm-up then {} s measured per scenario; the bare edge's \
             `GET /healthz` (a direct response) at the same rate just before each scenario is \
             the reference. Generator and mesh share the machine.",
            WARMUP.as_secs(),
            MEASURE.as_secs()
        ),
        format!(
            "Rate limits: every request is checked by the rate-limit service as in \
             production, but the public auth routes' limit is raised from 10/minute per IP \
             and route to 1000/second (`xtask/src/bench_services/limits.yaml`), since all \
             logins come from 127.0.0.1. The bearer limit stays {BEARER_LIMIT_PER_USER}/s per \
             user: `/v1/users/me` is spread round-robin over {USERS} distinct users \
             ({}/s each), each registered and logged in before the measurement. Logins \
             cycle over the same users.",
            ME_RATE / USERS as u32
        ),
        "Security parameters are the shipped ones (argon2id m=19456 KiB, t=2, p=1; \
         token signing and verification unchanged)."
            .to_owned(),
    ]
}

fn results_path() -> PathBuf {
    crate::charts::results_dir().join("services.md")
}

#[expect(
    clippy::print_stdout,
    reason = "the table is the command's output; progress goes to stderr"
)]
fn print_table(table: &str) {
    println!("\n{table}");
}

//! `cargo xtask edge-costs`: what the gateway filter costs Envoy per request, counted in
//! instructions with callgrind rather than timed, so the figure does not drift with the
//! machine's load (method and results in `xtask/results/edge-costs.md`).
//!
//! Each case gets its own Envoy (`--concurrency 1`) under `valgrind --tool=callgrind`,
//! configured from the templates `cargo xtask bench-edge` uses (`xtask/bench/edge/`). After
//! a warm-up the counters are zeroed (`callgrind_control -z`), N requests go over one
//! keep-alive connection, the counters are dumped (`callgrind_control -d`), and the
//! figure is the whole process's instructions / N, less what the same process runs idle
//! over as long (the filter's timer, Envoy's stats flush), which depends on the speed
//! under callgrind rather than on the requests.
//!
//! The warm-up is long (20,000 requests) because V8 compiles Wasm functions with its
//! baseline compiler first and optimizes each only once it has run enough: a function
//! that does little per request is optimized only after thousands of requests, and one
//! optimized during the measurement counts its compilation there. The idle rate is
//! counted for 10 s before the requests (which also lets background compilation end)
//! and for 10 s after, and the lower is taken, so a burst of background work in one
//! window does not count as the timer's.
//!
//! The cases: an empty proxy-wasm filter (the floor), the gateway filter with a repeated token (d), and with rate limiting
//! decided by the service on every request (f, exact mode) or from leases (h); the
//! empty filter is measured on both routes (direct, and routed to the local responder
//! as the rate-limit cases are), so that every case has its own floor.

#![allow(
    clippy::print_stdout,
    reason = "a measurement reports its figures on stdout"
)]

mod backends;
mod callgrind;
mod client;
mod config;
mod tokens;

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use backends::{JwksServer, RateLimitService, ServiceMode};
use callgrind::CallgrindEnvoy;
use client::{Connection, admin_counters};
use config::{Filter, Route};
use tokens::Tokens;

const USAGE: &str = "usage: cargo xtask edge-costs [--cases LIST] [--requests N] [--warmup N]
                          [--users N] [--keep]

  --cases LIST    any of empty, d, empty-routed, f, h (default: all, in that order)
  --requests N    measured requests per case (default 2000; f and h: half)
  --warmup N      requests before the counters are zeroed (default 20000, and at
                  least three per user in f and h)
  --users N       users whose tokens f and h send round-robin (default 20), each under
                  its limit of 100/s
  --wasm PATH     measure this build of the gateway filter instead of building it (an
                  experiment: a build with one piece removed, to price that piece)
  --keep          keep the work directory (configurations, logs, callgrind dumps)

Needs valgrind (callgrind_control), redis-server (f, h) and Envoy ($BULWARK_ENVOY, else
.bulwark/venv/bin/envoy); builds the gateway filter, the empty filter and bulwark-ratelimit.";

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The empty filter on the direct-response route (the floor of d).
    Empty,
    /// The gateway filter, one repeated token, no rate limiting.
    D,
    /// The empty filter on the routed route with the local responder (the floor of f, h).
    EmptyRouted,
    /// The gateway filter with rate limiting, every request decided by the service.
    F,
    /// The gateway filter with rate limiting from leases.
    H,
}

const ALL_CASES: [Case; 5] = [Case::Empty, Case::D, Case::EmptyRouted, Case::F, Case::H];

impl Case {
    fn key(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::D => "d",
            Self::EmptyRouted => "empty-routed",
            Self::F => "f",
            Self::H => "h",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty Wasm filter, direct route",
            Self::D => "gateway filter, repeated token, no rate limiting",
            Self::EmptyRouted => "empty Wasm filter, routed to the local responder",
            Self::F => "gateway filter, rate limiting in exact mode (a call per request)",
            Self::H => "gateway filter, leased rate limiting",
        }
    }

    /// The empty-filter case this one is compared with.
    fn floor(self) -> Option<Self> {
        match self {
            Self::D => Some(Self::Empty),
            Self::F | Self::H => Some(Self::EmptyRouted),
            Self::Empty | Self::EmptyRouted => None,
        }
    }

    fn filter(self) -> Filter {
        match self {
            Self::Empty | Self::EmptyRouted => Filter::Empty,
            Self::D => Filter::Gateway,
            Self::F | Self::H => Filter::GatewayRateLimited,
        }
    }

    fn route(self) -> Route {
        match self {
            Self::Empty | Self::D => Route::Direct,
            Self::EmptyRouted | Self::F | Self::H => Route::Routed,
        }
    }

    fn service(self) -> Option<ServiceMode> {
        match self {
            Self::F => Some(ServiceMode::Exact),
            Self::H => Some(ServiceMode::Leased),
            _ => None,
        }
    }

    /// Whether requests rotate over the users' tokens rather than repeat one.
    fn round_robin(self) -> bool {
        matches!(self, Self::F | Self::H)
    }
}

#[derive(Debug)]
struct Options {
    cases: Vec<Case>,
    requests: Option<u64>,
    warmup: u64,
    users: usize,
    wasm: Option<std::path::PathBuf>,
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            cases: ALL_CASES.to_vec(),
            requests: None,
            warmup: 20_000,
            users: 20,
            wasm: None,
            keep: false,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--keep" {
                options.keep = true;
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let number = || -> anyhow::Result<u64> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: not a number"))
            };
            match flag.as_str() {
                "--cases" => {
                    options.cases = value
                        .split(',')
                        .map(|key| {
                            ALL_CASES
                                .into_iter()
                                .find(|c| c.key() == key.trim())
                                .with_context(|| format!("unknown case `{key}`\n\n{USAGE}"))
                        })
                        .collect::<anyhow::Result<_>>()?;
                }
                "--requests" => options.requests = Some(number()?.max(1)),
                "--warmup" => options.warmup = number()?,
                "--users" => options.users = usize::try_from(number()?.max(1))?,
                "--wasm" => options.wasm = Some(value.into()),
                _ => bail!("unknown option `{flag}`\n\n{USAGE}"),
            }
        }
        Ok(options)
    }

    fn requests(&self, case: Case) -> u64 {
        self.requests
            .unwrap_or(if case.round_robin() { 1_000 } else { 2_000 })
    }

    fn warmup(&self, case: Case) -> u64 {
        if case.round_robin() {
            self.warmup.max(3 * self.users as u64)
        } else {
            self.warmup
        }
    }
}

/// How long the idle Envoy is counted, before and after the requests: long enough for
/// two stats flushes (every 5 s); the filter's timer ticks every second or 25 ms.
const IDLE: Duration = Duration::from_secs(10);

/// What one case measured.
#[derive(Debug)]
struct Measured {
    case: Case,
    requests: u64,
    /// Everything the process ran while the requests went through.
    instructions: u64,
    seconds: f64,
    /// What the process runs per second with no request (the filter's timer, Envoy's
    /// stats flush), measured after the requests.
    idle_per_second: f64,
    counters: Vec<(String, u64)>,
}

impl Measured {
    /// Instructions per request, without what the process would have run idle meanwhile:
    /// the timer's cost per request depends on how fast requests came under callgrind,
    /// which is not the filter's doing. What requests leave for the timer (lease
    /// renewals) stays in.
    fn per_request(&self) -> f64 {
        (self.instructions as f64 - self.idle_per_second * self.seconds) / self.requests as f64
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        return Ok(());
    }
    let options = Options::parse(args)?;
    let tools = callgrind::Tools::find()?;
    let mut artefacts = config::build(options.cases.iter().any(|c| c.service().is_some()))?;
    if let Some(wasm) = &options.wasm {
        ensure!(wasm.is_file(), "--wasm {}: no such file", wasm.display());
        eprintln!(
            "[experiment] measuring {} as the gateway filter",
            wasm.display()
        );
        artefacts.gateway_wasm = wasm.clone();
    }
    let mut dir = tempfile::Builder::new()
        .prefix("bulwark-edge-costs-")
        .tempdir()?;
    let tokens = Tokens::generate(options.users)?;
    let jwks = JwksServer::start(tokens.jwks.clone()).await?;
    let mut results = Vec::new();
    for &case in &options.cases {
        eprintln!("[{}] {} ...", case.key(), case.label());
        let measured = measure(
            case,
            &options,
            &tools,
            &artefacts,
            &tokens,
            &jwks,
            dir.path(),
        )
        .await
        .with_context(|| format!("case {}", case.key()))?;
        eprintln!(
            "    {:.0} instructions/request ({} requests, {:.0} requests/s under callgrind; \
             {:.0} instructions/s idle, subtracted)",
            measured.per_request(),
            measured.requests,
            measured.per_second(),
            measured.idle_per_second
        );
        results.push(measured);
    }
    print!("{}", report(&results));
    if options.keep {
        eprintln!("[keep] work directory kept: {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    Ok(())
}

async fn measure(
    case: Case,
    options: &Options,
    tools: &callgrind::Tools,
    artefacts: &config::Artefacts,
    tokens: &Tokens,
    jwks: &JwksServer,
    dir: &std::path::Path,
) -> anyhow::Result<Measured> {
    let service = match case.service() {
        Some(mode) => Some(RateLimitService::start(&artefacts.ratelimit()?, mode, dir).await?),
        None => None,
    };
    let site = config::Site {
        listen_port: bulwark_e2e::free_port()?,
        admin_port: bulwark_e2e::free_port()?,
        jwks_port: jwks.port,
        ratelimit_port: match &service {
            Some(service) => service.grpc_port,
            None => bulwark_e2e::free_port()?,
        },
        wasm: match case.filter() {
            Filter::Empty => artefacts.empty_wasm.clone(),
            Filter::Gateway | Filter::GatewayRateLimited => artefacts.gateway_wasm.clone(),
        },
    };
    let config_path = dir.join(format!("envoy-{}.yaml", case.key()));
    std::fs::write(
        &config_path,
        config::render(case.filter(), case.route(), &site)?,
    )?;
    let envoy =
        CallgrindEnvoy::start(tools, &config_path, site.admin_port, dir, case.key()).await?;

    let mut connection = Connection::open(site.listen_port).await?;
    let probe_token = tokens.repeated.as_str();
    connection
        .wait_for_ok(probe_token, Duration::from_secs(180))
        .await
        .context("a request with a valid token never got 200 (JWKS not installed?)")?;
    if case.filter() != Filter::Empty {
        let status = connection.get(None).await?;
        if status != 401 && options.wasm.is_some() {
            // An experiment may take out the decision itself, to price what is left.
            eprintln!("    [experiment] a request without a token got {status}, not 401");
        } else {
            ensure!(
                status == 401,
                "a request without a token got {status}, not 401: the filter is not deciding"
            );
        }
    }
    let token = |i: u64| -> &str {
        if case.round_robin() {
            &tokens.users[usize::try_from(i).unwrap_or(0) % tokens.users.len()]
        } else {
            probe_token
        }
    };
    let warmup = options.warmup(case);
    for i in 0..warmup {
        connection.expect_ok(token(i)).await?;
    }
    let idle_before = envoy.idle_rate(IDLE).await?;
    let before = admin_counters(site.admin_port).await;
    envoy.zero()?;
    let requests = options.requests(case);
    let started = std::time::Instant::now();
    for i in warmup..warmup + requests {
        connection.expect_ok(token(i)).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let instructions = envoy.dump_total()?;
    let after = admin_counters(site.admin_port).await;
    let idle_per_second = idle_before.min(envoy.idle_rate(IDLE).await?);
    envoy.stop();
    if let Some(service) = service {
        service.stop();
    }
    let counters = after
        .iter()
        .filter_map(|(name, value)| {
            let old = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            (*value > old).then(|| (name.clone(), value - old))
        })
        .collect();
    Ok(Measured {
        case,
        requests,
        instructions,
        seconds,
        idle_per_second,
        counters,
    })
}

fn report(results: &[Measured]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "\n| case | instructions / request | above its empty filter | requests (req/s under callgrind) | idle instructions / s (subtracted) | filter counters during the measurement |\n|---|---:|---:|---:|---:|---|\n",
    );
    for m in results {
        let above = m
            .case
            .floor()
            .and_then(|floor| results.iter().find(|r| r.case == floor))
            .map_or("".to_owned(), |floor| {
                group(m.per_request() - floor.per_request())
            });
        let counters: Vec<String> = m
            .counters
            .iter()
            .map(|(name, value)| {
                format!(
                    "{} {value}",
                    name.trim_start_matches("wasmcustom.bulwark_gateway.")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| {}: {} | {} | {} | {} ({:.0}) | {} | {} |",
            m.case.key(),
            m.case.label(),
            group(m.per_request()),
            above,
            m.requests,
            m.per_second(),
            group(m.idle_per_second),
            counters.join(", ")
        );
    }
    out
}

/// A count with thousands separators, rounded to the nearest hundred.
fn group(value: f64) -> String {
    let rounded = (value / 100.0).round() as i64 * 100;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

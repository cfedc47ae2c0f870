//! The report: the medians over the rounds as Markdown, printed and written to
//! `xtask/results/edge.md`, with issue #4's targets checked round by round.

use std::fmt::Write as _;

use super::Bench;
use super::cases::{CASES, USERS};
use super::figures::edge_figures;
use super::hot::{self, HotResult};
use super::options::Options;
use super::ratelimit::{BEARER_LEASE, BEARER_RATE};
use super::rounds::{CaseRounds, RoundRatios};
use super::service_bench::{
    CALLERS, GRPC_CONNECTIONS, LEASE_ITEMS, Phase, SERVICE_USERS, ServiceResult,
};
use super::{BEARER_DOMAIN, RATELIMIT_DOMAIN, TOKEN_CACHE_SIZE};
use crate::charts::figures::EdgeFigures;

pub struct Report {
    pub markdown: String,
    /// The table's figures, for the charts.
    pub figures: EdgeFigures,
}

/// What a target compares, round by round.
#[derive(Debug, Clone, Copy)]
enum Metric {
    /// Requests per second.
    Throughput,
    /// wrk's 99th percentile latency.
    P99,
}

/// What a target's median ratio must be.
#[derive(Debug, Clone, Copy)]
enum Need {
    AtLeast(f64),
    AtMost(f64),
    /// Reported, no target.
    Nothing,
}

/// One of the targets: `numerator / denominator` of `metric`, as `need` says.
struct Target {
    name: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    metric: Metric,
    need: Need,
}

const TARGETS: [Target; 7] = [
    Target {
        name: "(d) ≥ 0.9 × (b): filter vs native, repeated token",
        numerator: "d",
        denominator: "b",
        metric: Metric::Throughput,
        need: Need::AtLeast(0.9),
    },
    Target {
        name: "(e) ≥ 0.75 × (c), Ed25519: filter vs native, fresh tokens",
        numerator: "e-eddsa",
        denominator: "c-eddsa",
        metric: Metric::Throughput,
        need: Need::AtLeast(0.75),
    },
    Target {
        name: "(f) ≥ (g): filter (EXACT, a call per request) vs native, with rate limiting",
        numerator: "f",
        denominator: "g",
        metric: Metric::Throughput,
        need: Need::AtLeast(1.0),
    },
    Target {
        name: "(h) ≥ 0.85 × (d-500): LEASED rate limiting vs none, 500 users",
        numerator: "h",
        denominator: "d-500",
        metric: Metric::Throughput,
        need: Need::AtLeast(0.85),
    },
    Target {
        name: "(h) ≥ 2 × (g-500): filter LEASED vs native, 100/s per user, 500 users",
        numerator: "h",
        denominator: "g-500",
        metric: Metric::Throughput,
        need: Need::AtLeast(2.0),
    },
    Target {
        name: "p99 of (h) ≤ 2 × p99 of (d-500)",
        numerator: "h",
        denominator: "d-500",
        metric: Metric::P99,
        need: Need::AtMost(2.0),
    },
    Target {
        name: "(e) / (c), RS256 (reported, no target)",
        numerator: "e-rs256",
        denominator: "c-rs256",
        metric: Metric::Throughput,
        need: Need::Nothing,
    },
];

impl Metric {
    fn per_round(self, case: &CaseRounds) -> Vec<f64> {
        match self {
            Self::Throughput => case.per_second(),
            Self::P99 => case.runs.iter().map(|r| r.measured.p99_us as f64).collect(),
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Each round's figure in round order: `41230 / 39870 / 43010`.
fn per_round(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn shell_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Report {
    pub fn new(
        bench: &Bench,
        cases: &[CaseRounds],
        skipped: &[(&str, String)],
        hot: &Result<HotResult, String>,
        service: &Result<ServiceResult, String>,
        load_at_end: f64,
        jwks_fetches: u64,
    ) -> Self {
        let mut sorted: Vec<&CaseRounds> = cases.iter().collect();
        sorted.sort_by_key(|c| c.key);
        let run = shell_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let mut md = String::new();
        let _ = writeln!(md, "# Edge benchmark (`cargo xtask bench-edge`)\n");
        intro(&mut md, &run, bench, cases, load_at_end);
        cases_table(&mut md, &sorted, skipped);
        targets_table(&mut md, cases);
        limiting_section(&mut md, &sorted);
        hot_section(&mut md, hot);
        service_section(&mut md, service, &bench.options);
        checks_section(&mut md, &sorted, jwks_fetches);
        how_section(&mut md);
        Self {
            markdown: md,
            figures: edge_figures(&run, bench.options.rounds, &sorted),
        }
    }
}

/// `cases` in the first round's order.
fn intro(md: &mut String, run: &str, bench: &Bench, cases: &[CaseRounds], load_at_end: f64) {
    let options = &bench.options;
    let order: Vec<&str> = cases.iter().map(|c| c.key).collect();
    let _ = writeln!(
        md,
        "Run {} on {} cores (`nproc`), load average {:.2} at the start and {:.2} at the end. \
         Envoy {} with `--concurrency 1` (h-hot: two Envoys of 2); wrk `-t1 -c{}`, all on \
         127.0.0.1. {} round{}; in \
         each, every case ran once with its own Envoy, {} s warm-up then {} s measured, the \
         first round in the order {} and every other round reversed. Figures are medians \
         over the rounds (of an even count the lower middle one). The machine is shared and \
         its speed drifts over minutes: read the figures as indications, and the load \
         column as how busy the machine was meanwhile.\n",
        run,
        shell_output("nproc", &[]),
        bench.load_at_start,
        load_at_end,
        bench.tools.envoy_version,
        options.connections,
        options.rounds,
        if options.rounds == 1 { "" } else { "s" },
        options.warmup,
        options.seconds,
        order.join(", "),
    );
}

fn cases_table(md: &mut String, sorted: &[&CaseRounds], skipped: &[(&str, String)]) {
    let _ = writeln!(
        md,
        "req/s is the median over the rounds; p50, p99, CPU and load are those of the round \
         that gave it; errors are summed over the rounds.\n"
    );
    let _ = writeln!(
        md,
        "| case | what | req/s | req/s per round | p50 | p99 | Envoy CPU per request | errors | load (1 min) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in sorted {
        let Some(median) = case.median_run() else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} |",
            case.key,
            case.label,
            median.measured.per_second(),
            per_round(&case.per_second(), 0),
            ms(median.measured.p50_us),
            ms(median.measured.p99_us),
            median
                .cpu_us_per_request
                .map_or("?".to_owned(), |us| format!("{us:.0} µs")),
            case.errors(),
            median.load,
        );
    }
    for (key, why) in skipped {
        let _ = writeln!(md, "| {key} | not run: {why} | | | | | | | |");
    }
}

fn targets_table(md: &mut String, cases: &[CaseRounds]) {
    let _ = writeln!(md, "\n## Targets (issues #4 and 10)\n");
    let _ = writeln!(
        md,
        "Each round's ratio compares the two runs of that round (of req/s, or of p99 where \
         the target says so); the ratio checked is the median of those.\n"
    );
    let _ = writeln!(
        md,
        "| target | ratio (median) | per round | min–max | result |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let find = |key: &str| cases.iter().find(|c| c.key == key);
    for target in &TARGETS {
        let row = match (find(target.numerator), find(target.denominator)) {
            (Some(n), Some(d)) if n.errors() == 0 && d.errors() == 0 => {
                let metric = target.metric;
                RoundRatios::new(&metric.per_round(n), &metric.per_round(d)).map_or_else(
                    || "— | — | — | not run".to_owned(),
                    |ratios| ratio_cells(&ratios, target.need),
                )
            }
            (Some(_), Some(_)) => "— | — | — | invalid: a side had errors".to_owned(),
            _ => "— | — | — | not run".to_owned(),
        };
        let _ = writeln!(md, "| {} | {row} |", target.name);
    }
}

/// The ratio, per-round, min–max and result cells of a target's row.
fn ratio_cells(ratios: &RoundRatios, need: Need) -> String {
    let verdict = match need {
        Need::AtLeast(need) if ratios.median >= need => "**PASS**",
        Need::AtMost(need) if ratios.median <= need => "**PASS**",
        Need::AtLeast(_) | Need::AtMost(_) => "**FAIL**",
        Need::Nothing => "—",
    };
    format!(
        "{:.2} | {} | {:.2}–{:.2} | {verdict}",
        ratios.median,
        per_round(&ratios.per_round, 2),
        ratios.min,
        ratios.max,
    )
}

/// How each rate-limited case's limit was served, from Envoy's and the service's
/// counters over the median round's measured run.
fn limiting_section(md: &mut String, sorted: &[&CaseRounds]) {
    let _ = writeln!(md, "\n## How the limits were served\n");
    let _ = writeln!(
        md,
        "Over the measured run of each case's median round, per second: the gateway \
         filter's background lease calls (`wasmcustom.bulwark_gateway.lease_renewals`) and \
         requests admitted from a lease without a call (`lease_spent`); the rate-limit \
         service's lease items of the case's domain by mode \
         (`ratelimit_lease_grants_total`), the hits leased (`ratelimit_leased_hits_total`) \
         and `ratelimit_decisions_total`. Per user: the case's req/s over its {USERS} users \
         (each must stay under the {BEARER_RATE}/s limit). Over limit: before measuring, one \
         other user sent well over its limit through the same Envoy.\n"
    );
    let _ = writeln!(
        md,
        "| case | per user | lease calls | from leases | leased items | exact items | leased hits | decisions | over limit |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for rounds in sorted {
        let Some(case) = CASES.iter().find(|c| c.key == rounds.key) else {
            continue;
        };
        let Some(run) = rounds.median_run() else {
            continue;
        };
        let Some(limiting) = &run.limiting else {
            continue;
        };
        let seconds = run.measured.seconds();
        let rate = |n: f64| format!("{:.0}/s", n / seconds);
        let per_user = run.per_user_rate(case).map_or("—".to_owned(), |r| {
            let verdict = if r < BEARER_RATE as f64 {
                "PASS"
            } else {
                "FAIL"
            };
            format!("{r:.1}/s {verdict}")
        });
        let _ = writeln!(
            md,
            "| {} | {per_user} | {} | {} | {} | {} | {} | {} | {} |",
            rounds.key,
            rate(limiting.renewals as f64),
            rate(limiting.spent as f64),
            rate(limiting.service.leased_grants),
            rate(limiting.service.exact_grants),
            rate(limiting.service.leased_hits),
            rate(limiting.service.decisions),
            limiting
                .over_limit
                .as_ref()
                .map_or("—".to_owned(), |c| c.describe()),
        );
    }
}

fn hot_section(md: &mut String, hot: &Result<HotResult, String>) {
    let _ = writeln!(
        md,
        "\n## h-hot: one user over its limit through two Envoys\n"
    );
    let hot = match hot {
        Ok(hot) => hot,
        Err(why) => {
            let _ = writeln!(md, "Not run: {why}");
            return;
        }
    };
    let connections: Vec<String> = hot
        .worker_connections
        .iter()
        .map(|workers| {
            workers
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    let _ = writeln!(
        md,
        "{} Envoys of {} workers each (the h configuration: LEASED, failures refused), \
         the same leasing `bulwark-ratelimit` and Redis; one user that nobody else used \
         sent {:.0} requests per second through both ({}× its limit of {BEARER_RATE}/s), \
         from paced senders that each wait for their answer; connections per worker: {}. \
         Each 1-second window (by when the answer arrived) must admit at most the \
         README's bound: exact + instances × lease_size, {BEARER_RATE} + 2 × {BEARER_LEASE} \
         = {} once the bucket is full, and the burst of {BEARER_RATE} more in the first \
         window ({}).\n",
        hot::ENVOYS,
        hot::WORKERS,
        hot.offered_per_second,
        (hot.offered_per_second / BEARER_RATE as f64).round(),
        connections.join(", "),
        hot::window_bound(1),
        hot::window_bound(0),
    );
    let _ = writeln!(
        md,
        "| second | admitted | bound | refused (429) | failed | result |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---|");
    for (index, window) in hot.windows.iter().enumerate() {
        let bound = hot::window_bound(index);
        let _ = writeln!(
            md,
            "| {} | {} | {bound} | {} | {} | {} |",
            index + 1,
            window.admitted,
            window.refused,
            window.failed,
            if window.admitted <= bound {
                "**PASS**"
            } else {
                "**FAIL**"
            }
        );
    }
    let seconds = hot.windows.len() as f64;
    let _ = writeln!(
        md,
        "\nAll windows: **{}**. Answers after the last window: {} admitted, {} refused. \
         Over the run, per second: {:.0} lease calls by the Envoys' timers, {:.0} requests \
         admitted from leases, {:.0} refused by the filters, {} failed calls in all; the \
         service: {:.0} leased items ({:.0} of them refused), {:.0} hits leased.",
        if hot::windows_pass(&hot.windows) {
            "PASS"
        } else {
            "FAIL"
        },
        hot.tail.admitted,
        hot.tail.refused,
        hot.renewals as f64 / seconds,
        hot.spent as f64 / seconds,
        hot.rate_limited as f64 / seconds,
        hot.callout_failures,
        hot.service.leased_grants / seconds,
        hot.service.refused_grants / seconds,
        hot.service.leased_hits / seconds,
    );
}

fn phase_row(md: &mut String, what: &str, unit: &str, phase: &Phase, per_call: usize) {
    let _ = writeln!(
        md,
        "| {what} | {:.0} {unit} | {:.2} ms | {:.2} ms | {} | {} | {} |",
        phase.per_second * per_call as f64,
        phase.p50_ms,
        phase.p99_ms,
        phase.ok,
        phase.refused,
        phase.errors
    );
}

fn service_section(md: &mut String, service: &Result<ServiceResult, String>, options: &Options) {
    let _ = writeln!(md, "\n## Rate-limit service alone\n");
    match service {
        Ok(s) => {
            let _ = writeln!(
                md,
                "`bulwark-ratelimit` (release build) on the Redis of the rate-limited cases, \
                 {CALLERS} concurrent callers in this process, {} s measured after {} s \
                 warm-up, once after the rounds. gRPC calls go over {GRPC_CONNECTIONS} \
                 connections and are spread over {SERVICE_USERS} users of the 10⁹/s limit \
                 (domain `{RATELIMIT_DOMAIN}`, never reached): `ShouldRateLimit` to the \
                 EXACT instance; `Lease` to the leasing instance, {LEASE_ITEMS} renewals \
                 per call (nothing held, nothing spent), each granted a lease. The raw \
                 line is the physical limit of one Redis round trip per decision: \
                 {CALLERS} connections, each running `EVALSHA` of the service's \
                 `services/limiter/src/gcra.lua` on one bucket in a tight loop (the \
                 service shares 4 multiplexed connections instead).\n",
                options.seconds, options.warmup
            );
            let _ = writeln!(
                md,
                "| what | rate | p50 | p99 | ok calls | refused | errors |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
            phase_row(
                md,
                "`ShouldRateLimit`",
                "decisions/s",
                &s.should_rate_limit,
                1,
            );
            phase_row(md, "`Lease`, calls", "calls/s", &s.lease, 1);
            phase_row(
                md,
                &format!("`Lease`, items ({LEASE_ITEMS} per call)"),
                "grants/s",
                &s.lease,
                LEASE_ITEMS,
            );
            phase_row(md, "raw `EVALSHA` gcra.lua", "decisions/s", &s.raw, 1);
            let _ = writeln!(
                md,
                "\n`ShouldRateLimit` decisions / raw `EVALSHA` decisions: {:.2}.",
                s.should_rate_limit.per_second / s.raw.per_second.max(1.0)
            );
        }
        Err(why) => {
            let _ = writeln!(md, "Not run: {why}");
        }
    }
}

fn checks_section(md: &mut String, sorted: &[&CaseRounds], jwks_fetches: u64) {
    let _ = writeln!(md, "\n## What each case checked\n");
    let _ = writeln!(
        md,
        "Before measuring, every run's Envoy answered 200 to a valid token and (with a \
         filter) 401 to no token. Tokens and counters below are those of each case's median \
         round (the one in the table), Envoy's counters over its measured run.\n"
    );
    for case in sorted {
        let Some(median) = case.median_run() else {
            continue;
        };
        let _ = writeln!(
            md,
            "- {}: {}{}",
            case.key,
            median.tokens_note,
            if median.checks.is_empty() {
                String::new()
            } else {
                format!("; {}", median.checks)
            }
        );
    }
    let _ = writeln!(md, "- JWKS documents served: {jwks_fetches}");
}

fn how_section(md: &mut String) {
    let _ = writeln!(md, "\n## How\n");
    let _ = writeln!(
        md,
        "- Rounds: every case runs once per round, each run with a new Envoy and its own \
         warm-up; the cases a target compares run next to each other, the first of a pair \
         first in one round and second in the next, so a drift in the machine's speed \
         falls on both sides. A target's ratio is taken within each round and the median \
         of those ratios is checked; a side with errors in any round makes it invalid.\n\
         - Each run starts its own Envoy (`--concurrency 1`, checked first with \
         `envoy --mode validate`) from `xtask/bench/edge/envoy.yaml` and the snippets \
         beside it; the route answers inside Envoy (`direct_response`) so only the \
         filters cost.\n\
         - Cases f, g, d-500, h and g-500 instead route to a cluster that is never \
         connected and answer from a `health_check` filter (`local_responder.yaml`): \
         Envoy's ratelimit filter does nothing on a direct-response route. They all use \
         the same route, so they compare with each other; each also costs that \
         responder (d-500 too, so that h against d-500 measures the rate limiting \
         alone).\n\
         - Keys (Ed25519, RSA-2048) are generated in the run; a JWKS server in the xtask \
         process serves them to the gateway filter (its HTTP callout) and to \
         `jwt_authn` (`remote_jwks`). Same issuer and audience in both; token caches of \
         {TOKEN_CACHE_SIZE} entries in both (b, d, f, g, and the {USERS} users' tokens \
         of d-500, h and g-500, which all fit).\n\
         - Fresh-token cases rotate through a file of pre-signed tokens with wrk's Lua \
         script (`tokens.lua`), starting after the tokens the warm-up used; every round \
         starts again at the first token, as its Envoy's caches start empty. A token \
         reused after the pool wraps still misses: the pool is larger than either cache \
         (FIFO in the filter, none in c). The same script takes the {USERS} users' \
         Ed25519 tokens (each its own `sub`) in turn, so each user gets 1/{USERS} of \
         the requests.\n\
         - Two `bulwark-ratelimit` instances share one Redis and the same limit files; \
         they differ in `BULWARK_RATELIMIT__LEASE__MIN_RATE_PER_SECOND` only. f and g \
         ask the EXACT instance (threshold 10¹⁰/s, above every limit: each lease item is \
         decided exactly, one call per request), descriptor `[(\"user_id\", sub)]` in \
         domain `{RATELIMIT_DOMAIN}` at 10⁹/s, so nothing is refused. h, g-500 and \
         h-hot ask the leasing instance (default lease settings), the same descriptor in \
         domain `{BEARER_DOMAIN}` at the contract's bearer limit, {BEARER_RATE}/s per \
         user: the gateway filter leases {BEARER_LEASE} hits at a time, renewed from \
         each worker's timer every 25 ms. Native ratelimit (g, g-500) takes the \
         descriptor from the header `jwt_authn` sets from the verified `sub` \
         (`claim_to_headers`, action `request_headers`). 500 ms deadline and failures \
         refused everywhere.\n\
         - Envoy CPU per request is the Envoy process's user + system CPU time over the \
         measured run divided by its requests; it moves less with the machine's load \
         than req/s does.",
    );
}

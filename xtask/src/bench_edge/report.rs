//! The report: the medians over the rounds as Markdown, printed and written to
//! `xtask/results/edge.md`, with issue #4's targets checked round by round.

use std::fmt::Write as _;

use super::Bench;
use super::options::Options;
use super::rounds::{CaseRounds, RoundRatios};
use super::service_bench::{SERVICE_USERS, ServiceResult};
use super::{RATELIMIT_DOMAIN, TOKEN_CACHE_SIZE};

pub struct Report {
    pub markdown: String,
}

/// One of issue #4's targets: `numerator / denominator >= need`.
struct Target {
    name: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    need: Option<f64>,
}

const TARGETS: [Target; 4] = [
    Target {
        name: "(d) ≥ 0.9 × (b): filter vs native, repeated token",
        numerator: "d",
        denominator: "b",
        need: Some(0.9),
    },
    Target {
        name: "(e) ≥ 0.75 × (c), Ed25519: filter vs native, fresh tokens",
        numerator: "e-eddsa",
        denominator: "c-eddsa",
        need: Some(0.75),
    },
    Target {
        name: "(f) ≥ (g): filter vs native, with rate limiting",
        numerator: "f",
        denominator: "g",
        need: Some(1.0),
    },
    Target {
        name: "(e) / (c), RS256 (reported, no target)",
        numerator: "e-rs256",
        denominator: "c-rs256",
        need: None,
    },
];

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
        service: &Result<ServiceResult, String>,
        load_at_end: f64,
        jwks_fetches: u64,
    ) -> Self {
        let mut sorted: Vec<&CaseRounds> = cases.iter().collect();
        sorted.sort_by_key(|c| c.key);
        let mut md = String::new();
        let _ = writeln!(md, "# Edge benchmark (`cargo xtask bench-edge`)\n");
        intro(&mut md, bench, cases, load_at_end);
        cases_table(&mut md, &sorted, skipped);
        targets_table(&mut md, cases);
        service_section(&mut md, service, &bench.options);
        checks_section(&mut md, &sorted, jwks_fetches);
        how_section(&mut md);
        Self { markdown: md }
    }
}

/// `cases` in the first round's order.
fn intro(md: &mut String, bench: &Bench, cases: &[CaseRounds], load_at_end: f64) {
    let options = &bench.options;
    let order: Vec<&str> = cases.iter().map(|c| c.key).collect();
    let _ = writeln!(
        md,
        "Run {} on {} cores (`nproc`), load average {:.2} at the start and {:.2} at the end. \
         Envoy {} with `--concurrency 1`; wrk `-t1 -c{}`, all on 127.0.0.1. {} round{}; in \
         each, every case ran once with its own Envoy, {} s warm-up then {} s measured, the \
         first round in the order {} and every other round reversed. Figures are medians \
         over the rounds (of an even count the lower middle one). The machine is shared and \
         its speed drifts over minutes: read the figures as indications, and the load \
         column as how busy the machine was meanwhile.\n",
        shell_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
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
    let _ = writeln!(md, "\n## Targets (issue #4)\n");
    let _ = writeln!(
        md,
        "Each round's ratio compares the two runs of that round; the ratio checked is the \
         median of those.\n"
    );
    let _ = writeln!(
        md,
        "| target | ratio of req/s (median) | per round | min–max | result |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let find = |key: &str| cases.iter().find(|c| c.key == key);
    for target in &TARGETS {
        let row = match (find(target.numerator), find(target.denominator)) {
            (Some(n), Some(d)) if n.errors() == 0 && d.errors() == 0 => {
                RoundRatios::new(&n.per_second(), &d.per_second()).map_or_else(
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
fn ratio_cells(ratios: &RoundRatios, need: Option<f64>) -> String {
    let verdict = match need {
        Some(need) if ratios.median >= need => "**pass**",
        Some(_) => "**FAIL**",
        None => "—",
    };
    format!(
        "{:.2} | {} | {:.2}–{:.2} | {verdict}",
        ratios.median,
        per_round(&ratios.per_round, 2),
        ratios.min,
        ratios.max,
    )
}

fn service_section(md: &mut String, service: &Result<ServiceResult, String>, options: &Options) {
    let _ = writeln!(md, "\n## Rate-limit service alone\n");
    match service {
        Ok(s) => {
            let _ = writeln!(
                md,
                "`bulwark-ratelimit` (release build) on the Redis of cases f and g, driven \
                 over gRPC `ShouldRateLimit` by {} concurrent callers on {} connections \
                 from this process, {} users, {} s measured after {} s warm-up, once after \
                 the rounds.\n",
                s.callers, s.connections, SERVICE_USERS, options.seconds, options.warmup
            );
            let _ = writeln!(
                md,
                "| decisions/s | p50 | p99 | allowed | over limit | errors |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                md,
                "| {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} |",
                s.per_second, s.p50_ms, s.p99_ms, s.allowed, s.over_limit, s.errors
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
         - Cases f and g instead route to a cluster that is never connected and answer \
         from a `health_check` filter (`local_responder.yaml`): Envoy's ratelimit filter \
         does nothing on a direct-response route. Both use the same route, so f and g \
         compare with each other; each also costs that responder.\n\
         - Keys (Ed25519, RSA-2048) are generated in the run; a JWKS server in the xtask \
         process serves them to the gateway filter (its HTTP callout) and to \
         `jwt_authn` (`remote_jwks`). Same issuer and audience in both; token caches of \
         {TOKEN_CACHE_SIZE} entries in both (b, d, f, g).\n\
         - Fresh-token cases rotate through a file of pre-signed tokens with wrk's Lua \
         script (`tokens.lua`), starting after the tokens the warm-up used; every round \
         starts again at the first token, as its Envoy's caches start empty. A token \
         reused after the pool wraps still misses: the pool is larger than either cache \
         (FIFO in the filter, none in c).\n\
         - f and g: the same `bulwark-ratelimit` and Redis, descriptor \
         `[(\"user_id\", sub)]` in domain `{RATELIMIT_DOMAIN}`, a limit of 10⁹/s so \
         nothing is refused, 500 ms deadline and failures refused in both.\n\
         - Envoy CPU per request is the Envoy process's user + system CPU time over the \
         measured run divided by its requests; it moves less with the machine's load \
         than req/s does.",
    );
}

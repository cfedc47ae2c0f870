//! The report: the figures of one run as Markdown, printed and written to
//! `xtask/results/edge.md`, with issue #4's targets checked.

use std::fmt::Write as _;

use super::Bench;
use super::run_case::CaseResult;
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
        results: &[CaseResult],
        skipped: &[(&str, String)],
        service: &Result<ServiceResult, String>,
        load_at_end: f64,
        jwks_fetches: u64,
    ) -> Self {
        let options = &bench.options;
        let mut md = String::new();
        let _ = writeln!(md, "# Edge benchmark (`cargo xtask bench-edge`)\n");
        let _ = writeln!(
            md,
            "Run {} on {} cores (`nproc`), load average {:.2} at the start and {:.2} at the end. \
             Envoy {} with `--concurrency 1`; wrk `-t1 -c{}`, {} s warm-up then {} s measured \
             per case, all on 127.0.0.1. One run, on a shared machine: read the figures as \
             indications, and the load column as how busy the machine was meanwhile.\n",
            shell_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            shell_output("nproc", &[]),
            bench.load_at_start,
            load_at_end,
            bench.tools.envoy_version,
            options.connections,
            options.warmup,
            options.seconds,
        );

        let _ = writeln!(
            md,
            "| case | what | req/s | p50 | p99 | Envoy CPU per request | errors | load (1 min) |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
        let mut sorted: Vec<&CaseResult> = results.iter().collect();
        sorted.sort_by_key(|r| r.key);
        for r in &sorted {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {:.2} |",
                r.key,
                r.label,
                r.measured.per_second(),
                ms(r.measured.p50_us),
                ms(r.measured.p99_us),
                r.cpu_us_per_request
                    .map_or("?".to_owned(), |us| format!("{us:.0} µs")),
                r.errors(),
                r.load,
            );
        }
        for (key, why) in skipped {
            let _ = writeln!(md, "| {key} | not run: {why} | | | | | | |");
        }

        let _ = writeln!(md, "\n## Targets (issue #4)\n");
        let _ = writeln!(md, "| target | ratio of req/s | result |");
        let _ = writeln!(md, "|---|---:|---|");
        let find = |key: &str| results.iter().find(|r| r.key == key);
        for target in &TARGETS {
            let (ratio, verdict) = match (find(target.numerator), find(target.denominator)) {
                (Some(n), Some(d)) if n.errors() == 0 && d.errors() == 0 => {
                    let ratio = n.measured.per_second() / d.measured.per_second().max(1.0);
                    let verdict = match target.need {
                        Some(need) if ratio >= need => "**pass**".to_owned(),
                        Some(_) => "**FAIL**".to_owned(),
                        None => "—".to_owned(),
                    };
                    (format!("{ratio:.2}"), verdict)
                }
                (Some(_), Some(_)) => ("—".to_owned(), "invalid: a side had errors".to_owned()),
                _ => ("—".to_owned(), "not run".to_owned()),
            };
            let _ = writeln!(md, "| {} | {ratio} | {verdict} |", target.name);
        }

        let _ = writeln!(md, "\n## Rate-limit service alone\n");
        match service {
            Ok(s) => {
                let _ = writeln!(
                    md,
                    "`bulwark-ratelimit` (release build) on the Redis of cases f and g, driven \
                     over gRPC `ShouldRateLimit` by {} concurrent callers on {} connections \
                     from this process, {} users, {} s measured after {} s warm-up.\n",
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

        let _ = writeln!(md, "\n## What each case checked\n");
        let _ = writeln!(
            md,
            "Before measuring, each case's Envoy answered 200 to a valid token and (with a \
             filter) 401 to no token. Counters below are Envoy's, over the measured run.\n"
        );
        for r in &sorted {
            let _ = writeln!(
                md,
                "- {}: {}{}",
                r.key,
                r.tokens_note,
                if r.checks.is_empty() {
                    String::new()
                } else {
                    format!("; {}", r.checks)
                }
            );
        }
        let _ = writeln!(md, "- JWKS documents served: {jwks_fetches}");

        let _ = writeln!(md, "\n## How\n");
        let _ = writeln!(
            md,
            "- Each case starts its own Envoy (`--concurrency 1`, checked first with \
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
             script (`tokens.lua`), starting after the tokens the warm-up used. A token \
             reused after the pool wraps still misses: the pool is larger than either cache \
             (FIFO in the filter, none in c).\n\
             - f and g: the same `bulwark-ratelimit` and Redis, descriptor \
             `[(\"user_id\", sub)]` in domain `{RATELIMIT_DOMAIN}`, a limit of 10⁹/s so \
             nothing is refused, 500 ms deadline and failures refused in both.\n\
             - Envoy CPU per request is the Envoy process's user + system CPU time over the \
             measured run divided by its requests; it moves less with the machine's load \
             than req/s does.",
        );
        Self { markdown: md }
    }
}

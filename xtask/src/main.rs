//! Developer tasks that are not tests: benchmarks that print figures and write them to
//! a file. Run with `cargo xtask <task>` (an alias for a release build of this crate).

mod bench_edge;
mod bench_services;
mod charts;
mod edge_costs;
mod fuzz;
mod soak;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench-edge       Envoy with one worker and a direct-response route: no filter, native
                   jwt_authn (cached, uncached), the gateway filter (repeated and fresh
                   tokens, Ed25519 and RS256), with rate limiting, and native jwt_authn +
                   native ratelimit; writes xtask/results/edge.md, edge.json and
                   its charts (edge-throughput.svg, edge-latency.svg)
  edge-costs       instructions per request (callgrind) of an empty Wasm filter and of the
                   gateway filter without, with exact and with leased rate limiting; see
                   xtask/results/edge-costs.md
  bench-services   the mesh through the edge: login p95 at 20 logins/s and
                   GET /v1/users/me p95 at 500 requests/s; writes xtask/results/services.md,
                   services.json and services-latency.svg
  charts           draws the benchmarks' SVG charts again from the figures they wrote
                   (xtask/results/edge.json, services.json), without running them
  soak             the fault soak: mixed traffic through two Envoys in front of two
                   replicas of every service while replicas are SIGKILLed, Redis and
                   PostgreSQL restarted and the rate-limit service paused; error rate and
                   recovery per fault, audit events lost or duplicated, refresh tokens
                   redeemed twice, 5xx outside faults (cargo xtask soak --help); writes
                   xtask/results/soak.md and soak.svg
  fuzz             the fuzz targets of fuzz/ (cargo fuzz), each for a time budget; prints
                   executions and coverage per target (cargo xtask fuzz --help)";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench-edge") => bench_edge::run(&args[1..]).await,
        Some("bench-services") => bench_services::run(&args[1..]).await,
        Some("edge-costs") => edge_costs::run(&args[1..]).await,
        Some("charts") => charts::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]).await,
        Some("-h" | "--help") => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(anyhow::anyhow!("no task given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

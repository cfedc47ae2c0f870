//! h-hot: one user driven far over its leased limit through two Envoys at once (two
//! workers each, the same rate-limit service and Redis), with what the fleet admitted in
//! every 1-second window set against the README's bound ("Rate limits at edge speed"):
//! `admitted(window) <= exact(window) + instances x lease_size`, where exact counting
//! admits the burst plus the rate in the first window (the bucket starts empty) and the
//! rate in every later one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::Mutex;

use super::Bench;
use super::cases::{CASES, Limit};
use super::envoy_stats::{
    CALLOUT_FAILURES, LEASE_RENEWALS, LEASE_SPENT, RATE_LIMITED, envoy_stats, stat_increase,
};
use super::ratelimit::{BEARER_LEASE, BEARER_RATE};
use super::run_case::STOP_WITHIN;
use super::service_metrics::ServiceCounters;

/// Envoy processes, and workers in each.
pub const ENVOYS: u64 = 2;
pub const WORKERS: u32 = 2;
/// Measured 1-second windows.
pub const WINDOWS: usize = 5;
/// Senders per Envoy, each paced at [`SEND_INTERVAL`] (and waiting for its answer):
/// 8 x 125/s x 2 Envoys offer 2,000 requests per second, 20 times the limit.
const SENDERS_PER_ENVOY: usize = 8;
const SEND_INTERVAL: Duration = Duration::from_millis(8);

/// What the fleet answered in one 1-second window (by when the answer arrived).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub admitted: u64,
    pub refused: u64,
    /// Anything else (a failed call is refused with 503 here: failures closed).
    pub failed: u64,
}

/// What h-hot measured.
#[derive(Debug)]
pub struct HotResult {
    pub windows: Vec<Window>,
    /// Answers that arrived after the last full window.
    pub tail: Window,
    pub offered_per_second: f64,
    /// Summed over both Envoys.
    pub renewals: u64,
    pub spent: u64,
    pub rate_limited: u64,
    pub callout_failures: u64,
    /// Connections each Envoy's workers accepted, per Envoy.
    pub worker_connections: Vec<Vec<u64>>,
    /// The leasing service's counters of the bearer domain over the run.
    pub service: ServiceCounters,
}

/// The most the fleet may admit in window `index` (from 0): exact counting (the burst
/// and the rate in the first window, the rate after) plus a lease per Envoy.
pub fn window_bound(index: usize) -> u64 {
    let exact = if index == 0 {
        2 * BEARER_RATE
    } else {
        BEARER_RATE
    };
    exact + ENVOYS * BEARER_LEASE
}

impl Bench {
    /// Two Envoys of the h case's configuration, one user hammered through both.
    pub async fn run_hot(&self) -> anyhow::Result<HotResult> {
        let case = CASES
            .iter()
            .find(|c| c.key == "h")
            .context("case h is not in the list")?;
        let stack = self
            .ratelimit
            .as_ref()
            .map_err(|why| anyhow::anyhow!("{why}"))?;
        let mut envoys: Vec<(bulwark_e2e::ManagedChild, u16, u16)> = Vec::new();
        for index in 0..ENVOYS {
            let site = self.site(case)?;
            let name = format!("envoy-h-hot-{}", index + 1);
            let mut envoy = self.start_envoy(case, &site, &name, WORKERS).await?;
            self.probe(case, &mut envoy, site.listen_port).await?;
            envoys.push((envoy, site.listen_port, site.admin_port));
        }
        let service_port = stack.service(Limit::Bearer).http_port;
        let domain = Limit::Bearer.domain();
        let counters_before = ServiceCounters::read(service_port, domain).await;
        let mut stats_before = Vec::new();
        for (_, _, admin) in &envoys {
            stats_before.push(envoy_stats(*admin).await);
        }

        let ports: Vec<u16> = envoys.iter().map(|(_, port, _)| *port).collect();
        let (windows, tail, sent, seconds) = hammer(&ports, &self.hot_token).await?;

        let service = ServiceCounters::read(service_port, domain)
            .await
            .since(&counters_before);
        let mut result = HotResult {
            windows,
            tail,
            offered_per_second: sent as f64 / seconds,
            renewals: 0,
            spent: 0,
            rate_limited: 0,
            callout_failures: 0,
            worker_connections: Vec::new(),
            service,
        };
        for ((mut envoy, port, admin), before) in envoys.into_iter().zip(&stats_before) {
            let after = envoy_stats(admin).await;
            result.renewals += stat_increase(before, &after, LEASE_RENEWALS);
            result.spent += stat_increase(before, &after, LEASE_SPENT);
            result.rate_limited += stat_increase(before, &after, RATE_LIMITED);
            result.callout_failures += stat_increase(before, &after, CALLOUT_FAILURES);
            result
                .worker_connections
                .push(worker_connections(&after, port));
            let _ = envoy.stop("KILL", STOP_WITHIN);
        }
        Ok(result)
    }
}

/// Each worker's accepted connections on the listener of `port`.
fn worker_connections(stats: &[(String, u64)], port: u16) -> Vec<u64> {
    (0..WORKERS)
        .map(|worker| {
            let name = format!("listener.127.0.0.1_{port}.worker_{worker}.downstream_cx_total");
            stats
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        })
        .collect()
}

/// Sends the hot user's requests to every port from [`SENDERS_PER_ENVOY`] paced senders
/// each for [`WINDOWS`] seconds; the answers by 1-second window, those after the last
/// window, the requests sent, and the seconds sending took.
async fn hammer(ports: &[u16], token: &str) -> anyhow::Result<(Vec<Window>, Window, u64, f64)> {
    let http = bulwark_e2e::http_client()
        .pool_max_idle_per_host(SENDERS_PER_ENVOY)
        .timeout(Duration::from_secs(5))
        .build()?;
    let windows = Arc::new(Mutex::new(vec![Window::default(); WINDOWS + 1]));
    let run = Duration::from_secs(WINDOWS as u64);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for port in ports {
        for _ in 0..SENDERS_PER_ENVOY {
            let (http, windows) = (http.clone(), Arc::clone(&windows));
            let url = format!("http://127.0.0.1:{port}/bench");
            let authorization = format!("Bearer {token}");
            senders.spawn(async move {
                let mut pace = tokio::time::interval(SEND_INTERVAL);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent = 0u64;
                loop {
                    pace.tick().await;
                    if started.elapsed() >= run {
                        return anyhow::Ok(sent);
                    }
                    sent += 1;
                    let status = http
                        .get(&url)
                        .header("authorization", &authorization)
                        .send()
                        .await
                        .with_context(|| format!("GET {url}"))?
                        .status()
                        .as_u16();
                    let index = (started.elapsed().as_secs() as usize).min(WINDOWS);
                    let mut windows = windows.lock().await;
                    let window = &mut windows[index];
                    match status {
                        200 => window.admitted += 1,
                        429 => window.refused += 1,
                        _ => window.failed += 1,
                    }
                }
            });
        }
    }
    let mut sent = 0;
    while let Some(sender) = senders.join_next().await {
        sent += sender??;
    }
    let seconds = run.as_secs_f64();
    let mut windows = Arc::try_unwrap(windows)
        .map_err(|_| anyhow::anyhow!("a sender outlived the run"))?
        .into_inner();
    let Some(tail) = windows.pop() else {
        bail!("no windows");
    };
    Ok((windows, tail, sent, seconds))
}

/// The windows' verdicts: each within its bound.
pub fn windows_pass(windows: &[Window]) -> bool {
    windows
        .iter()
        .enumerate()
        .all(|(index, w)| w.admitted <= window_bound(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_window_allows_the_burst_and_later_ones_the_rate_plus_two_leases() {
        assert_eq!(window_bound(0), 100 + 100 + 2 * 20);
        assert_eq!(window_bound(1), 100 + 2 * 20);
        assert_eq!(window_bound(4), 140);
    }

    #[test]
    fn one_window_over_its_bound_fails_the_run() {
        let at = |admitted| Window {
            admitted,
            refused: 1_000,
            failed: 0,
        };
        assert!(windows_pass(&[at(240), at(140), at(100)]));
        assert!(!windows_pass(&[at(240), at(141), at(100)]));
        assert!(!windows_pass(&[at(241)]));
    }
}

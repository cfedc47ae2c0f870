//! An open-loop, fixed-rate load generator: request `i` is due at `start + i / rate`
//! whatever happened to the earlier ones, and its latency counts from that due time, so
//! a slow response delays nobody's measurement and cannot hide (no coordinated omission).

use std::time::{Duration, Instant};

use anyhow::Context;

/// How hard and how long to drive one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests per second.
    pub rate: u32,
    /// Sent at the full rate but not recorded: connections open, caches fill.
    pub warmup: Duration,
    /// The recorded window.
    pub measure: Duration,
}

impl Plan {
    fn period(&self) -> Duration {
        Duration::from_secs(1) / self.rate
    }

    fn total_requests(&self) -> u64 {
        let seconds = (self.warmup + self.measure).as_secs_f64();
        (seconds * f64::from(self.rate)).round() as u64
    }
}

/// How one request ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// A response, read to its end.
    Answered(u16),
    /// No response: connection error or the client's timeout.
    Failed(String),
}

#[derive(Debug)]
struct Sample {
    due: Instant,
    /// From the due time to the end of the response body (or the failure).
    latency: Duration,
    /// From the due time to the moment the request's task started: the generator's own lag.
    start_lag: Duration,
    outcome: Outcome,
}

/// The recorded window of one scenario.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub rate: u32,
    pub requests: usize,
    /// Responses (of any status) per second over the window, up to the last completion.
    pub achieved_rate: f64,
    /// Latencies of every answered request, sorted (non-200 included).
    latencies: Vec<Duration>,
    /// Requests that did not answer 200, by reason (`status 429`, `timeout`, ...).
    pub errors: Vec<(String, usize)>,
    /// The 99th percentile of the generator's lag behind schedule.
    pub start_lag_p99: Duration,
}

impl Measurement {
    /// Nearest-rank percentile of the answered requests' latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        nearest_rank(&self.latencies, p)
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    pub fn error_count(&self) -> usize {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends `request(i)` at the plan's rate, each on its own task, and measures the window
/// after the warm-up. The client's timeout bounds every request.
///
/// The schedule is kept by this thread sleeping with the OS's high-resolution timer
/// (tens of microseconds late), not by Tokio's timer, whose millisecond wheel would add
/// about a millisecond of the generator's own lag to every figure. The thread leaves
/// the runtime's workers for that (`block_in_place`: needs the multi-threaded runtime);
/// the requests run on the workers.
pub async fn drive<F>(plan: Plan, request: F) -> anyhow::Result<Measurement>
where
    F: FnMut(u64) -> reqwest::RequestBuilder,
{
    let runtime = tokio::runtime::Handle::current();
    let tasks = tokio::task::block_in_place(|| schedule(plan, request, &runtime))?;
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        samples.push(task.await.context("a request task panicked")?);
    }
    let window_start = samples
        .first()
        .map_or_else(Instant::now, |first| first.due + plan.warmup);
    Ok(summarise(plan, window_start, &samples))
}

type Pending = tokio::task::JoinHandle<Sample>;

fn schedule<F>(
    plan: Plan,
    mut request: F,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Vec<Pending>>
where
    F: FnMut(u64) -> reqwest::RequestBuilder,
{
    let period = plan.period();
    let total = plan.total_requests();
    // The first request is due a little later, so that building it is not already late.
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let due = start + period * u32::try_from(i).context("too many requests for one run")?;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let builder = request(i);
        tasks.push(runtime.spawn(async move {
            let start_lag = due.elapsed();
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(_) => Outcome::Answered(status),
                        Err(err) => Outcome::Failed(describe(&err)),
                    }
                }
                Err(err) => Outcome::Failed(describe(&err)),
            };
            Sample {
                due,
                latency: due.elapsed(),
                start_lag,
                outcome,
            }
        }));
    }
    Ok(tasks)
}

/// Sends `count` requests one after the other (each when the previous one has answered)
/// and returns their latencies, sorted: what one request costs on an otherwise idle mesh.
pub async fn one_at_a_time<F>(count: u64, mut request: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(u64) -> reqwest::RequestBuilder,
{
    let mut latencies = Vec::new();
    for i in 0..count {
        let started = Instant::now();
        let response = request(i).send().await.context("sending a request")?;
        let status = response.status();
        response.bytes().await.context("reading a response")?;
        if status != reqwest::StatusCode::OK {
            anyhow::bail!("request {i} answered {status}");
        }
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    Ok(latencies)
}

/// The median of sorted latencies.
pub fn median(sorted: &[Duration]) -> Duration {
    nearest_rank(sorted, 50.0)
}

fn summarise(plan: Plan, window_start: Instant, samples: &[Sample]) -> Measurement {
    let window: Vec<&Sample> = samples.iter().filter(|s| s.due >= window_start).collect();
    let mut latencies = Vec::with_capacity(window.len());
    let mut lags: Vec<Duration> = window.iter().map(|s| s.start_lag).collect();
    lags.sort_unstable();
    let mut errors: Vec<(String, usize)> = Vec::new();
    let mut last_completion = window_start;
    for sample in &window {
        let reason = match &sample.outcome {
            Outcome::Answered(status) => {
                latencies.push(sample.latency);
                last_completion = last_completion.max(sample.due + sample.latency);
                (*status != 200).then(|| format!("status {status}"))
            }
            Outcome::Failed(reason) => Some(reason.clone()),
        };
        if let Some(reason) = reason {
            match errors.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, count)) => *count += 1,
                None => errors.push((reason, 1)),
            }
        }
    }
    latencies.sort_unstable();
    // Responses that trail past the window stretch it: a mesh that falls behind shows a
    // lower achieved rate instead of a queue the generator never waited for.
    let elapsed = last_completion
        .duration_since(window_start)
        .max(plan.measure)
        .as_secs_f64();
    Measurement {
        rate: plan.rate,
        requests: window.len(),
        achieved_rate: latencies.len() as f64 / elapsed,
        latencies,
        errors,
        start_lag_p99: nearest_rank(&lags, 99.0),
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connect error".to_owned()
    } else {
        format!("transport error: {err}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_covering_sample() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(nearest_rank(&sorted, 95.0), Duration::from_millis(95));
        assert_eq!(nearest_rank(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(nearest_rank(&sorted[..1], 99.0), Duration::from_millis(1));
        assert_eq!(nearest_rank(&[], 95.0), Duration::ZERO);
    }

    #[test]
    fn plan_counts_warmup_and_window() {
        let plan = Plan {
            rate: 500,
            warmup: Duration::from_secs(3),
            measure: Duration::from_secs(10),
        };
        assert_eq!(plan.total_requests(), 6_500);
        assert_eq!(plan.period(), Duration::from_millis(2));
    }
}

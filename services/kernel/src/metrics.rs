//! Prometheus metrics: one process-wide recorder, per-RPC series in autometrics' naming
//! (`function_calls_total`, `function_calls_duration_seconds`), build info, and gauges
//! that are refreshed just before each scrape.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from sub-millisecond cache hits to slow logins.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counter of calls, as autometrics names it.
pub const CALLS_TOTAL: &str = "function_calls_total";
/// Histogram of call latency, as autometrics names it.
pub const CALL_DURATION: &str = "function_calls_duration_seconds";

type ScrapeHook = Box<dyn Fn() + Send + Sync>;

/// Renders the Prometheus text exposition and runs the gauges' refresh hooks first.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    hooks: Arc<Mutex<Vec<ScrapeHook>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder once per process (later calls share it) and
    /// publishes `build_info` for `service`.
    pub fn install(service: &str) -> Self {
        let handle = HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("duration_seconds".into()),
                        LATENCY_BUCKETS,
                    )
                    .unwrap_or_else(|_| PrometheusBuilder::new());
                match builder.install_recorder() {
                    Ok(handle) => handle,
                    // Another recorder is global already: keep one of our own so
                    // rendering still works, though it sees only our registrations.
                    Err(_) => PrometheusBuilder::new().build_recorder().handle(),
                }
            })
            .clone();
        metrics::gauge!(
            "build_info",
            "service_name" => service.to_owned(),
            "version" => env!("CARGO_PKG_VERSION"),
            "commit" => option_env!("BULWARK_GIT_COMMIT").unwrap_or("unknown"),
        )
        .set(1.0);
        Self {
            handle,
            hooks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Registers a closure that refreshes gauges right before each scrape.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push(Box::new(hook));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(hooks) = self.hooks.lock() {
            for hook in hooks.iter() {
                hook();
            }
        }
        self.handle.render()
    }
}

/// Records one finished RPC: `module` is the gRPC service, `function` the method.
pub fn record_call(module: &str, function: &str, grpc_code: i32, elapsed: Duration) {
    let result = if grpc_code == 0 { "ok" } else { "error" };
    metrics::counter!(
        CALLS_TOTAL,
        "function" => function.to_owned(),
        "module" => module.to_owned(),
        "result" => result,
        "grpc_code" => grpc_code_name(grpc_code),
        "caller_function" => "",
        "caller_module" => "",
    )
    .increment(1);
    metrics::histogram!(
        CALL_DURATION,
        "function" => function.to_owned(),
        "module" => module.to_owned(),
    )
    .record(elapsed.as_secs_f64());
}

fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_show_up_as_labelled_series_with_build_info() {
        let metrics = Metrics::install("identity");
        record_call(
            "bulwark.test.v1.Svc",
            "DoThing",
            0,
            Duration::from_millis(3),
        );
        record_call(
            "bulwark.test.v1.Svc",
            "DoThing",
            13,
            Duration::from_millis(7),
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"function="DoThing""#) && text.contains(CALLS_TOTAL),
            "per-RPC counter missing:\n{text}"
        );
        assert!(
            text.contains(r#"result="error""#),
            "error series missing:\n{text}"
        );
        assert!(
            text.contains("function_calls_duration_seconds_bucket"),
            "latency histogram missing:\n{text}"
        );
        assert!(text.contains("build_info"), "build_info missing:\n{text}");
    }

    #[test]
    fn scrape_hooks_refresh_gauges_before_render() {
        let metrics = Metrics::install("identity");
        metrics.on_scrape(|| metrics::gauge!("scrape_hook_test_gauge").set(42.0));
        let text = metrics.render();
        assert!(
            text.contains("scrape_hook_test_gauge 42"),
            "gauge not refreshed:\n{text}"
        );
    }
}

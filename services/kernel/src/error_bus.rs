//! The error bus: components report errors and caught panics to one channel; a worker
//! logs each with its context and forwards it to Sentry when a DSN is configured.
//!
//! Reporting never blocks a request: when the channel is full the report is counted
//! as dropped and logged in place.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const CHANNEL_CAPACITY: usize = 1024;

/// What went wrong: a returned error or a caught panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Error,
    Panic,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Panic => "panic",
        }
    }
}

/// One report on the bus.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// Which part of the service saw it (`grpc`, `http`, `db`, `outbox`, ...).
    pub component: &'static str,
    pub kind: ErrorKind,
    pub message: String,
    /// Extra key/value context (RPC path, request id, ...).
    pub context: Vec<(String, String)>,
    pub trace_id: Option<String>,
}

impl ErrorReport {
    /// A report of `error` from `component`, tagged with the current trace id.
    pub fn error(component: &'static str, error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self {
            component,
            kind: ErrorKind::Error,
            message,
            context: Vec::new(),
            trace_id: crate::telemetry::current_trace_id(),
        }
    }

    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.push((key.into(), value.into()));
        self
    }
}

/// Where error reports go to Sentry, when configured.
#[derive(Debug, Clone)]
pub struct SentrySink {
    pub dsn: SecretString,
    pub service: String,
    pub environment: String,
    pub release: String,
}

/// Cheap to clone; every component holds one.
#[derive(Debug, Clone)]
pub struct ErrorBus {
    sender: mpsc::Sender<ErrorReport>,
}

/// The worker side; [`ErrorBusWorker::close`] drains what is queued and flushes Sentry.
pub struct ErrorBusWorker {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    sentry: Option<Arc<sentry::ClientInitGuard>>,
}

impl std::fmt::Debug for ErrorBusWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorBusWorker")
            .field("sentry", &self.sentry.is_some())
            .finish_non_exhaustive()
    }
}

impl ErrorBus {
    /// Starts the worker. With a Sentry sink, reports are forwarded to it as events.
    pub fn start(sentry_sink: Option<SentrySink>) -> (Self, ErrorBusWorker) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let guard = sentry_sink.map(|sink| Arc::new(init_sentry(&sink)));
        let forward = guard.is_some();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run_worker(receiver, stopped, forward));
        (
            Self { sender },
            ErrorBusWorker {
                task,
                stop,
                sentry: guard,
            },
        )
    }

    /// Queues a report; never waits.
    pub fn report(&self, report: ErrorReport) {
        metrics::counter!(
            "errors_reported_total",
            "component" => report.component,
            "kind" => report.kind.as_str()
        )
        .increment(1);
        if let Err(error) = self.sender.try_send(report) {
            metrics::counter!("errors_dropped_total").increment(1);
            let report = match error {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            tracing::error!(
                component = report.component,
                kind = report.kind.as_str(),
                error = %report.message,
                "error bus is full or closed; report logged here only"
            );
        }
    }

    /// Reports `error` from `component` with the current trace id.
    pub fn error(&self, component: &'static str, error: &dyn std::error::Error) {
        self.report(ErrorReport::error(component, error));
    }
}

impl ErrorBusWorker {
    /// Stops taking reports, handles every queued one (or gives up at `timeout`),
    /// then flushes Sentry. Later reports are logged in place by the sender.
    pub async fn close(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("error bus did not drain within {timeout:?}");
        }
        if let Some(guard) = self.sentry
            && let Some(client) = sentry::Hub::current().client()
        {
            client.flush(Some(timeout));
            drop(guard);
        }
    }
}

fn init_sentry(sink: &SentrySink) -> sentry::ClientInitGuard {
    crate::install_crypto_provider();
    let guard = sentry::init((sink.dsn.expose_secret(), {
        let mut options = sentry::ClientOptions::default();
        options.release = Some(sink.release.clone().into());
        options.environment = Some(sink.environment.clone().into());
        options.server_name = Some(sink.service.clone().into());
        options
    }));
    let service = sink.service.clone();
    sentry::configure_scope(|scope| scope.set_tag("service", service));
    guard
}

async fn run_worker(
    mut receiver: mpsc::Receiver<ErrorReport>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    forward: bool,
) {
    loop {
        tokio::select! {
            report = receiver.recv() => match report {
                Some(report) => handle(&report, forward),
                None => return,
            },
            _ = &mut stopped => break,
        }
    }
    // Closing keeps what is queued: recv yields it, then None.
    receiver.close();
    while let Some(report) = receiver.recv().await {
        handle(&report, forward);
    }
}

fn handle(report: &ErrorReport, forward: bool) {
    let context: serde_json::Map<String, serde_json::Value> = report
        .context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    tracing::error!(
        component = report.component,
        kind = report.kind.as_str(),
        trace_id = report.trace_id.as_deref().unwrap_or(""),
        context = %serde_json::Value::Object(context),
        error = %report.message,
        "error reported"
    );
    if forward {
        send_to_sentry(report);
    }
}

fn send_to_sentry(report: &ErrorReport) {
    sentry::with_scope(
        |scope| {
            scope.set_tag("component", report.component);
            scope.set_tag("kind", report.kind.as_str());
            if let Some(trace_id) = &report.trace_id {
                scope.set_tag("trace_id", trace_id);
            }
            for (key, value) in &report.context {
                scope.set_extra(key, value.clone().into());
            }
        },
        || sentry::capture_message(&report.message, sentry::Level::Error),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Bytes;

    use super::*;

    /// A stand-in for a Sentry server (none runs here): it accepts the SDK's envelope
    /// POSTs at `/api/<project>/envelope/` as documented and keeps their bodies.
    async fn envelope_receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stored = bodies.clone();
        let app = axum::Router::new().route(
            "/api/{project}/envelope/",
            axum::routing::post(move |body: Bytes| {
                let stored = stored.clone();
                async move {
                    if let Ok(mut bodies) = stored.lock() {
                        bodies.push(String::from_utf8_lossy(&body).into_owned());
                    }
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, bodies)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_reach_sentry_with_service_and_trace_id() {
        let (addr, bodies) = envelope_receiver().await;
        let sink = SentrySink {
            dsn: SecretString::from(format!("http://publickey@{addr}/42")),
            service: "identity".into(),
            environment: "test".into(),
            release: "bulwark@0.1.0".into(),
        };
        let (bus, worker) = ErrorBus::start(Some(sink));
        bus.report(ErrorReport {
            component: "grpc",
            kind: ErrorKind::Panic,
            message: "handler panicked: boom".into(),
            context: vec![("rpc".into(), "/x.Y/Z".into())],
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        });
        worker.close(Duration::from_secs(5)).await;
        drop(bus);

        let bodies = bodies.lock().map(|b| b.clone()).unwrap_or_default();
        let all = bodies.join("\n");
        assert!(
            all.contains("handler panicked: boom"),
            "message missing: {all}"
        );
        assert!(
            all.contains("0af7651916cd43dd8448eb211c80319c"),
            "trace id missing: {all}"
        );
        assert!(
            all.contains("\"service\":\"identity\""),
            "service tag missing: {all}"
        );
        assert!(
            all.contains("\"environment\":\"test\""),
            "environment missing: {all}"
        );
    }

    #[tokio::test]
    async fn reports_queued_without_sentry_are_each_logged_once_on_close() {
        // The worker's log lines, captured: on this current-thread runtime the worker
        // runs on this thread, under this subscriber.
        let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = CapturedWriter(captured.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let (bus, worker) = ErrorBus::start(None);
        // Queued before the worker first runs (nothing here yields): close must drain
        // every one of them rather than drop what is still in the channel.
        for n in 0..5 {
            bus.error(
                "db",
                &std::io::Error::other(format!("connection reset #{n}")),
            );
        }
        tokio::time::timeout(Duration::from_secs(2), worker.close(Duration::from_secs(1)))
            .await
            .unwrap_or_else(|_| panic!("close did not finish"));

        let text = String::from_utf8_lossy(&captured.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        for n in 0..5 {
            let message = format!("connection reset #{n}");
            assert_eq!(
                text.lines()
                    .filter(|line| line.contains("error reported") && line.contains(&message))
                    .count(),
                1,
                "`{message}` must be logged once by the worker before close returns:\n{text}"
            );
        }
        assert!(
            !text.contains("did not drain"),
            "close gave up draining:\n{text}"
        );
    }

    #[derive(Clone)]
    struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

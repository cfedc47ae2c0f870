//! Telemetry set-up: `tracing` with one JSON object per log line, OpenTelemetry spans
//! (exported over OTLP/gRPC when an endpoint is configured) and W3C trace-context
//! propagation.
//!
//! Every field recorded on a span is carried onto each log line emitted inside it, so
//! the request span's `trace_id`, `span_id` and `request_id` appear on every line of
//! that request without handlers repeating them.

mod json_lines;
mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

pub use json_lines::{JsonLines, SpanFieldsLayer};
pub use propagation::{
    HeaderExtractor, HeaderInjector, current_trace_id, extract_context, inject_current_context,
};

/// Errors while setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("telemetry.log_level: {0}")]
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs the global subscriber and propagator for this process.
    pub fn init(service: &str, config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = tracer_provider(service, config.otlp_endpoint.as_deref())?;
        let tracer = provider.tracer("bulwark");
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
            _ => EnvFilter::try_new(&config.log_level),
        }
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;

        let fmt = match config.log_format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .event_format(JsonLines::new(service))
                .boxed(),
            LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
        };
        tracing_subscriber::registry()
            .with(filter)
            .with(SpanFieldsLayer)
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(fmt)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(Self { provider })
    }

    /// Flushes and stops span export; called last in the shutdown sequence.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing spans at shutdown failed");
        }
    }
}

/// The span pipeline: a provider that names the service and, given an OTLP/gRPC
/// endpoint, batches spans to it.
pub fn tracer_provider(
    service: &str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(format!("bulwark-{service}"))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    // Without an endpoint spans are still created, so trace ids reach the logs and
    // outgoing calls; they are simply not exported.
    let Some(endpoint) = otlp_endpoint else {
        return Ok(builder.build());
    };
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

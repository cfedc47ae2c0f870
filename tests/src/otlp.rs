//! An OTLP/gRPC trace receiver for one test. No collector runs on these machines, so this
//! is a tonic server of the official OTLP `TraceService` protos (opentelemetry-proto):
//! it speaks the documented protocol, keeps every span exported to it, and lets a test
//! wait for the spans it expects. The services (opentelemetry-otlp) and Envoy (its
//! OpenTelemetry tracer) export to it exactly as they would to Jaeger or a Collector.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as AnyValueMessage, KeyValue};
use tokio::task::JoinHandle;

use crate::wait::poll_until;

use crate::accounts::hex;

/// One span as received, ids in lowercase hex (a root span has no parent id).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The exporter's `service.name` resource attribute (`bulwark-edge`, `bulwark-auth`).
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    /// The span's attributes, every value as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// One attribute's value, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Store {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| attribute_text(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: (!span.parent_span_id.iter().all(|b| *b == 0))
                            .then(|| hex(&span.parent_span_id)),
                        attributes: span
                            .attributes
                            .iter()
                            .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?)?)))
                            .collect(),
                    });
                }
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(value: &AnyValueMessage) -> Option<String> {
    Some(match value.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn attribute_text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?))
}

/// A running receiver on a free loopback port; dropping it stops the server.
pub struct OtlpReceiver {
    address: SocketAddr,
    store: Store,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Starts the receiver on `127.0.0.1:<free port>`.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the OTLP receiver")?;
        let address = listener.local_addr()?;
        let store = Store::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(store.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(async move {
            if let Err(err) = server.await {
                eprintln!("the OTLP receiver stopped: {err}");
            }
        });
        Ok(Self {
            address,
            store,
            server,
        })
    }

    /// The receiver's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The endpoint to configure (`http://127.0.0.1:<port>`), as the services'
    /// `telemetry.otlp_endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `check` accepts the spans received so far (exporters batch, Envoy
    /// every 5 s); its error, with every span received, when `timeout` passes first.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[ReceivedSpan]) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let check = &check;
        poll_until(what, timeout, || async move { check(&self.spans()) })
            .await
            .with_context(|| {
                let spans: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {:?} trace {} span {} parent {:?} {:?}",
                            s.service,
                            s.name,
                            s.trace_id,
                            s.span_id,
                            s.parent_span_id,
                            s.attributes
                        )
                    })
                    .collect();
                format!("spans received:\n  {}", spans.join("\n  "))
            })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

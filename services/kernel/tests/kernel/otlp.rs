//! Spans leave the process over OTLP/gRPC. No collector runs on these machines, so
//! the receiver here is a tonic server of the official OTLP `TraceService` protos
//! (opentelemetry-proto), speaking the documented protocol.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_kernel::telemetry::{SpanFieldsLayer, extract_context, tracer_provider};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_the_callers_trace_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let receiver = Receiver::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = tracer_provider("identity", Some(&format!("http://{addr}")))
        .unwrap_or_else(|e| panic!("provider: {e}"));
    let subscriber = tracing_subscriber::registry()
        .with(SpanFieldsLayer)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));

    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = "/bulwark.identity.v1.IdentityService/GetMe"
        );
        let _ = span.set_parent(extract_context(&headers));
        let _entered = span.enter();
        tracing::info_span!("db.query").in_scope(|| {});
    });
    let flushed = tokio::task::spawn_blocking(move || {
        let result = provider.force_flush();
        let _ = provider.shutdown();
        result
    })
    .await
    .unwrap_or_else(|e| panic!("flush task: {e}"));
    assert!(flushed.is_ok(), "flush failed: {flushed:?}");

    let mut spans = Vec::new();
    let mut service_names = Vec::new();
    for _ in 0..50 {
        spans.clear();
        service_names.clear();
        for request in receiver
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
        {
            for resource_spans in request.resource_spans {
                if let Some(resource) = &resource_spans.resource {
                    for attribute in &resource.attributes {
                        if attribute.key == "service.name" {
                            service_names.push(format!("{:?}", attribute.value));
                        }
                    }
                }
                for scope in resource_spans.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
        if spans.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request_span = spans
        .iter()
        .find(|s| s.name == "/bulwark.identity.v1.IdentityService/GetMe")
        .unwrap_or_else(|| {
            panic!(
                "request span not exported; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let trace_id: String = request_span
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        trace_id, "4bf92f3577b34da6a3ce929d0e0e4736",
        "trace not continued"
    );
    let parent: String = request_span
        .parent_span_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parent, "00f067aa0ba902b7", "remote parent lost");
    let child = spans
        .iter()
        .find(|s| s.name == "db.query")
        .unwrap_or_else(|| panic!("child span not exported"));
    assert_eq!(
        child.parent_span_id, request_span.span_id,
        "db span not under the request span"
    );
    assert!(
        service_names.iter().any(|n| n.contains("bulwark-identity")),
        "service.name missing: {service_names:?}"
    );
}

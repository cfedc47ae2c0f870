//! The per-RPC tower layer: a server span continuing the caller's W3C trace, with the
//! trace, span and request ids recorded on it for the logs, and the call's count,
//! outcome and latency recorded when its response body ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::extract_context;

/// The header in which the edge forwards the user id it verified (the gateway
/// filter's default; the edge strips any copy a client sends). Logged for
/// correlation only: services authorize on the bearer token they verify themselves.
pub const EDGE_USER_HEADER: &str = "x-bulwark-user-id";

/// Code used when the client went away before the response finished.
const CANCELLED: i32 = 1;
/// Code used when the handler failed without a gRPC status.
const UNKNOWN: i32 = 2;

#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (String::new(), trimmed.to_owned()),
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Observe<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (module, function) = split_path(&path);
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %module,
            rpc.method = %function,
            request_id = %request_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            edge_user_id = tracing::field::Empty,
            // The subject of the verified bearer token (a user id or `client:<id>`),
            // recorded by the request layer once it has checked the token.
            caller = tracing::field::Empty,
        );
        if let Some(user) = request
            .headers()
            .get(EDGE_USER_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            span.record("edge_user_id", user);
        }
        let _ = span.set_parent(extract_context(request.headers()));
        let span_context = span.context().span().span_context().clone();
        if span_context.is_valid() {
            span.record("trace_id", span_context.trace_id().to_string());
            span.record("span_id", span_context.span_id().to_string());
        }

        let started = Instant::now();
        // Take the service that poll_ready readied; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = span.in_scope(|| inner.call(request));
        Box::pin(async move {
            let result = crate::clients::REQUEST_ID
                .scope(request_id, future.instrument(span.clone()))
                .await;
            match result {
                Ok(response) => {
                    let code = grpc_status(response.headers());
                    let (parts, body) = response.into_parts();
                    let completion = Completion {
                        module,
                        function,
                        started,
                        code,
                        ended: code.is_some(),
                        span,
                    };
                    Ok(http::Response::from_parts(
                        parts,
                        ObservedBody {
                            inner: body,
                            completion,
                        },
                    ))
                }
                Err(error) => {
                    drop(Completion {
                        module,
                        function,
                        started,
                        code: Some(UNKNOWN),
                        ended: true,
                        span,
                    });
                    Err(error)
                }
            }
        })
    }
}

/// Records the call once, when the body ends or is dropped.
struct Completion {
    module: String,
    function: String,
    started: Instant,
    code: Option<i32>,
    ended: bool,
    span: tracing::Span,
}

impl Drop for Completion {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(code), _) => code,
            (None, true) => 0,
            (None, false) => CANCELLED,
        };
        let elapsed = self.started.elapsed();
        crate::metrics::record_call(&self.module, &self.function, code, elapsed);
        let _entered = self.span.enter();
        tracing::info!(
            grpc.code = code,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "rpc finished"
        );
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for the `grpc-status` trailer and its end.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        completion: Completion,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.completion.code = Some(code);
                    this.completion.ended = true;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.completion.code.get_or_insert(UNKNOWN);
                this.completion.ended = true;
            }
            Poll::Ready(None) => this.completion.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/bulwark.identity.v1.IdentityService/GetUser"),
            (
                "bulwark.identity.v1.IdentityService".to_owned(),
                "GetUser".to_owned()
            )
        );
        assert_eq!(split_path("/odd"), (String::new(), "odd".to_owned()));
    }
}

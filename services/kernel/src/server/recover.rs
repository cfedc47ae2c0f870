//! Panic recovery for gRPC handlers: a panicking call answers INTERNAL, the panic goes
//! to the error bus with the call's context, and the process keeps serving. Also the
//! fault-injection layer that panics on purpose, for testing exactly that.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::error_bus::{ErrorBus, ErrorKind, ErrorReport};

/// Best-effort text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

#[derive(Debug, Clone)]
pub struct CatchPanicLayer {
    bus: ErrorBus,
}

impl CatchPanicLayer {
    pub fn new(bus: ErrorBus) -> Self {
        Self { bus }
    }
}

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic {
            inner,
            bus: self.bus.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
    bus: ErrorBus,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CatchPanic<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let bus = self.bus.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A handler may panic while building its future as well as while running it.
        let future = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request)));
        Box::pin(async move {
            let outcome = match future {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            match outcome {
                Ok(result) => result.map(|response| response.map(tonic::body::Body::new)),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    bus.report(ErrorReport {
                        component: "grpc",
                        kind: ErrorKind::Panic,
                        message: format!("handler panicked: {message}"),
                        context: vec![("rpc".to_owned(), path)],
                        trace_id: crate::telemetry::current_trace_id(),
                    });
                    Ok(tonic::Status::internal("internal error").into_http())
                }
            }
        })
    }
}

/// Panics inside the handler stack for the configured RPC path (`faults.panic_rpc`).
#[derive(Debug, Clone)]
pub struct FaultLayer {
    panic_rpc: Option<Arc<str>>,
}

impl FaultLayer {
    pub fn new(panic_rpc: Option<&str>) -> Self {
        Self {
            panic_rpc: panic_rpc.map(Into::into),
        }
    }
}

impl<S> tower::Layer<S> for FaultLayer {
    type Service = Fault<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            panic_rpc: self.panic_rpc.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    panic_rpc: Option<Arc<str>>,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for Fault<S>
where
    S: tower::Service<http::Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[allow(clippy::panic, reason = "fault injection panics on purpose")]
    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(path) = &self.panic_rpc
            && request.uri().path() == path.as_ref()
        {
            panic!("fault injection: {path} is configured to panic (faults.panic_rpc)");
        }
        self.inner.call(request)
    }
}

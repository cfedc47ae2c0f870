//! The admin HTTP server: `GET /healthz` (liveness), `GET /ready` (readiness with a
//! real round trip to each dependency) and `GET /metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error_bus::{ErrorBus, ErrorKind, ErrorReport};
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::server::recover::panic_message;

#[derive(Clone, Debug)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
}

/// The admin routes; a panicking handler answers 500 and is reported to the bus.
pub fn router(readiness: Readiness, metrics: Metrics, bus: ErrorBus) -> axum::Router {
    let on_panic = move |payload: Box<dyn std::any::Any + Send + 'static>| {
        bus.report(ErrorReport {
            component: "http",
            kind: ErrorKind::Panic,
            message: format!(
                "admin handler panicked: {}",
                panic_message(payload.as_ref())
            ),
            context: Vec::new(),
            trace_id: None,
        });
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"code": 13, "message": "internal error"})),
        )
            .into_response()
    };
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { readiness, metrics })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(state): State<AdminState>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

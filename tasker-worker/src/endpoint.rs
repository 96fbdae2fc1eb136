//! The worker's own HTTP endpoint (`tasker worker --metrics-bind ADDR`): its Prometheus
//! metrics and the probes a service manager or orchestrator asks.
//!
//! | path            | answer                                                            |
//! |-----------------|-------------------------------------------------------------------|
//! | `/metrics`      | the metrics in Prometheus' text format                             |
//! | `/health/live`  | 200 while the process serves requests                             |
//! | `/health/ready` | 200 when the database answers within 2 s, else 503 (steps can run) |

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tasker_shared::metrics::Exporter;
use tokio::net::TcpListener;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct EndpointState {
    pool: PgPool,
    exporter: Exporter,
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    exporter: Exporter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(EndpointState { pool, exporter });
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<EndpointState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.exporter.render(&state.pool).await,
    )
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<EndpointState>) -> impl IntoResponse {
    let probe = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not ready", "reason": format!("the database does not answer: {error}")}),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not ready", "reason": format!("the database did not answer within {READY_TIMEOUT:?}")}),
            ),
        ),
    }
}

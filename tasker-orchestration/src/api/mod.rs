//! The REST API (axum): create tasks, read them, list them, wait for them, cancel them,
//! resolve or retry their steps, list templates, health.
//!
//! | method and path                      | answer                                                 |
//! |--------------------------------------|--------------------------------------------------------|
//! | `POST /v1/tasks`                     | 201 [`TaskCreated`] (200 when de-duplicated)           |
//! | `GET /v1/tasks/{id}`                 | 200 [`tasker_client::TaskDetails`]                     |
//! | `GET /v1/tasks?state=&namespace=&name=&limit=&offset=` | 200 [`tasker_client::TaskList`], newest first |
//! | `GET /v1/tasks/{id}/wait?timeout_ms=`| 200 [`tasker_client::WaitResponse`] (long poll)        |
//! | `POST /v1/tasks/{id}/cancel`         | 200 [`tasker_client::TaskDetails`]; 409 when finished  |
//! | `POST /v1/tasks/{id}/steps/{name}/resolve` | 200 `TaskDetails`; 409 unless the step can be resolved |
//! | `POST /v1/tasks/{id}/steps/{name}/retry`   | 200 `TaskDetails`; 409 unless the step is `error` |
//! | `GET /v1/templates`                  | 200 [`tasker_client::TemplateList`]                    |
//! | `GET /metrics`                       | 200 Prometheus text (404 without [`ApiConfig::metrics`]) |
//! | `GET /health`                        | 200 `{"status":"ok"}`, 503 when the database is down   |
//!
//! With a token configured ([`ApiConfig::auth_token`]), every endpoint but `/health` needs
//! `Authorization: Bearer <token>` and answers 401 `unauthorized` without it (see [`auth`]).
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with the codes of
//! [`tasker_client::error_codes`]; bad input is rejected before anything is written. The wire
//! types live in `tasker-client` (types only, without its HTTP stack) so server and client
//! share one definition.

mod actions;
mod auth;
mod error;
mod handlers;
mod queries;
mod waiters;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use sqlx::PgPool;
use tasker_client::ApiToken;
use tasker_shared::metrics::Exporter;
use tokio::net::TcpListener;
use tokio::sync::{watch, OnceCell};

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery};
pub use tasker_client::TaskCreated;
pub use waiters::{TaskWaiters, WaitOutcome, DEFAULT_LISTEN_LINGER, DEFAULT_RECHECK_INTERVAL};

use crate::orchestration::lifecycle::task_initializer::TaskInitializer;

/// The address `tasker server` binds when told nothing else: loopback only, so that a server
/// started without a token is reachable from this machine alone.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// What the handlers share: the pool, the task initializer and the long-poll registry.
/// Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<StateInner>,
}

struct StateInner {
    pool: PgPool,
    initializer: TaskInitializer,
    config: ApiConfig,
    /// Started on first use (or by [`serve`]): one LISTEN connection for all long polls.
    waiters: OnceCell<TaskWaiters>,
    /// Turns true when the server shuts down, so long polls return instead of holding the
    /// graceful shutdown for their whole timeout.
    shutdown: watch::Sender<bool>,
}

/// Tunables of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How often a long poll re-reads its task's state when no notification woke it (covers
    /// notifications lost while the LISTEN connection was down).
    pub wait_recheck: Duration,
    /// How long the task-finished LISTEN stays in effect after the last long poll has ended
    /// (see `waiters`: a listening connection is woken by every notification of the database).
    pub wait_listen_linger: Duration,
    /// When set, every endpoint but `/health` requires this bearer token.
    pub auth_token: Option<ApiToken>,
    /// When set, `GET /metrics` serves the process's metrics.
    pub metrics: Option<Exporter>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            wait_recheck: DEFAULT_RECHECK_INTERVAL,
            wait_listen_linger: DEFAULT_LISTEN_LINGER,
            auth_token: None,
            metrics: None,
        }
    }
}

impl ApiState {
    /// State over `pool`, creating tasks with `initializer` (which decides the de-duplication
    /// window).
    pub fn new(pool: PgPool, initializer: TaskInitializer) -> Self {
        Self::with_config(pool, initializer, ApiConfig::default())
    }

    /// Like [`ApiState::new`] with explicit tunables.
    pub fn with_config(pool: PgPool, initializer: TaskInitializer, config: ApiConfig) -> Self {
        Self {
            inner: Arc::new(StateInner {
                pool,
                initializer,
                config,
                waiters: OnceCell::new(),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn initializer(&self) -> &TaskInitializer {
        &self.inner.initializer
    }

    /// The metrics exporter, when the server serves `/metrics`.
    pub fn exporter(&self) -> Option<&Exporter> {
        self.inner.config.metrics.as_ref()
    }

    /// The long-poll registry, starting its listener on first use.
    pub async fn waiters(&self) -> Result<&TaskWaiters, ApiError> {
        self.inner
            .waiters
            .get_or_try_init(|| {
                TaskWaiters::start(
                    &self.inner.pool,
                    self.inner.config.wait_recheck,
                    self.inner.config.wait_listen_linger,
                )
            })
            .await
            .map_err(|e| ApiError::data(&e))
    }

    /// Makes every long poll in progress (and every later one) return at once.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

/// The API's routes over `state`. The token check, when there is a token, wraps every route
/// and both fallbacks (an unknown path says nothing to a stranger); `/health` is added after
/// it, so probes need no secret.
pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .route(
            "/v1/tasks",
            post(handlers::create_task).get(handlers::list_tasks),
        )
        .route("/v1/tasks/{id}", get(handlers::get_task))
        .route("/v1/tasks/{id}/wait", get(handlers::wait_for_task))
        .route("/v1/tasks/{id}/cancel", post(actions::cancel_task))
        .route(
            "/v1/tasks/{id}/steps/{step}/resolve",
            post(actions::resolve_step),
        )
        .route(
            "/v1/tasks/{id}/steps/{step}/retry",
            post(actions::retry_step),
        )
        .route("/v1/templates", get(handlers::list_templates))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed);
    let routes = match &state.inner.config.auth_token {
        Some(token) => routes.layer(middleware::from_fn_with_state(
            token.clone(),
            auth::require_token,
        )),
        None => routes,
    };
    routes
        .route("/health", get(handlers::health))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting connections,
/// ends the long polls in progress and waits for the other requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // open the listener's connection now, so the first long poll pays only its LISTEN; a
    // failure here is retried by the first long poll, which reports it
    if let Err(error) = state.waiters().await {
        tracing::warn!(message = %error.message, "could not start the task-finished listener yet");
    }
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?local, "API listening");
    let stopper = state.clone();
    // responses are small and written at once; Nagle's algorithm would only delay them
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopper.begin_shutdown();
        })
        .await
}

#[cfg(test)]
mod tests;

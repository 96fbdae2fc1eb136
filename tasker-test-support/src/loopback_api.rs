//! The REST API served in this process on an ephemeral 127.0.0.1 port, with a typed client for
//! it: what the end-to-end tests, the API's tests and the HTTP benchmarks all start.
//!
//! The server is passed in as a function of the listener and the shutdown signal (in practice
//! `|listener, shutdown| tasker_orchestration::api::serve(listener, state, shutdown)`), so that
//! this crate does not depend on tasker-orchestration (see the crate's header).

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use tasker_client::{ClientError, TaskerClient};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

/// Completes when the server is asked to stop ([`LoopbackApi::stop`], or the helper dropped).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why the loopback API could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("binding an ephemeral port on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("creating a client for {base_url}")]
    Client {
        base_url: String,
        #[source]
        source: ClientError,
    },
    #[error("the API at {base_url} did not answer its health check")]
    Health {
        base_url: String,
        #[source]
        source: ClientError,
    },
    #[error("the API server's task panicked or was cancelled")]
    Task(#[source] JoinError),
    #[error("the API server ended with an error")]
    Serve(#[source] std::io::Error),
}

/// A running API server on loopback and a client for it. Dropping it asks the server to stop
/// without waiting; [`Self::stop`] waits.
pub struct LoopbackApi {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub client: TaskerClient,
    // Behind mutexes so that a benchmark's fixture in a static can stop its server.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl LoopbackApi {
    /// Binds `127.0.0.1:0`, spawns `serve(listener, shutdown)` on the current runtime and
    /// waits for its health check. That first request also opens the client's keep-alive
    /// connection, so a benchmark's first measured request does not pay for it.
    pub async fn start<S, F>(serve: S) -> Result<Self, LoopbackError>
    where
        S: FnOnce(TcpListener, Shutdown) -> F,
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(LoopbackError::Bind)?;
        let address = listener.local_addr().map_err(LoopbackError::Bind)?;
        let base_url = format!("http://{address}");
        let client = TaskerClient::new(&base_url).map_err(|source| LoopbackError::Client {
            base_url: base_url.clone(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let server = tokio::spawn(serve(listener, shutdown));
        let api = Self {
            base_url,
            client,
            stop: Mutex::new(Some(stop)),
            server: Mutex::new(Some(server)),
        };
        // On failure `api` is dropped, which asks the server to stop.
        api.client
            .health()
            .await
            .map_err(|source| LoopbackError::Health {
                base_url: api.base_url.clone(),
                source,
            })?;
        Ok(api)
    }

    /// Asks the server to stop and waits until it has (the API ends its long polls and
    /// finishes the requests in flight first). Stopping again returns at once.
    pub async fn stop(&self) -> Result<(), LoopbackError> {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        let server = lock(&self.server).take();
        match server {
            Some(server) => server
                .await
                .map_err(LoopbackError::Task)?
                .map_err(LoopbackError::Serve),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

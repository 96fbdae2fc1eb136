//! Long-poll support: one PostgreSQL LISTEN connection per server, fanned out to the requests
//! waiting on particular tasks.
//!
//! The finalizer runs `pg_notify('tasker_task_finished', task_uuid)` in the transaction that
//! moves a task to a finished state ([`TASK_FINISHED_CHANNEL`]). A single [`PgListener`] owned
//! by a background task receives those notifications and wakes the waiters registered for that
//! task id through a per-task `watch` channel, so a notification costs one map lookup however
//! many requests are waiting, and a waiter costs no database connection while it waits.
//!
//! Races: a waiter registers its watch *before* it reads the task's state, and the listener is
//! listening before any waiter registers, so a task that finishes between the read and the wait
//! still wakes it. Notifications sent while the listening connection is down are lost; when the
//! listener notices the loss it wakes every waiter to re-read, and each waiter also re-reads on
//! a slow timer ([`DEFAULT_RECHECK_INTERVAL`] unless configured) as a last resort.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tasker_client::is_finished_state;
use tasker_shared::error::{DbContext, TaskerResult};
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::queries::task_state;

/// How often a waiter re-reads its task's state without being woken, by default.
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Pause after a listener error before receiving again (it reconnects on the next receive).
const LISTENER_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The task is in a finished state.
    Finished,
    /// The timeout passed first.
    TimedOut,
    /// The server is shutting down.
    ShuttingDown,
    /// No task has this id.
    NotFound,
}

/// The registry of waiting requests and the listener feeding it. Cheap to clone.
#[derive(Clone)]
pub struct TaskWaiters {
    inner: Arc<Inner>,
}

struct Inner {
    recheck: Duration,
    watchers: Mutex<HashMap<Uuid, watch::Sender<()>>>,
    /// Dropped with the registry, which stops the listener task.
    _stop: oneshot::Sender<()>,
}

impl Inner {
    fn watchers(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Sender<()>>> {
        // the map is consistent after every statement, so a poisoned lock is still usable
        self.watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self, task_uuid: Uuid) {
        if let Some(sender) = self.watchers().get(&task_uuid) {
            sender.send_replace(());
        }
    }

    fn wake_all(&self) {
        for sender in self.watchers().values() {
            sender.send_replace(());
        }
    }
}

/// A registered interest in one task; unregisters on drop.
struct Subscription {
    inner: Arc<Inner>,
    task_uuid: Uuid,
    receiver: watch::Receiver<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut watchers = self.inner.watchers();
        // our own receiver is still alive here: a count of one means nobody else waits on
        // this task. Checking and removing under the lock keeps a concurrent subscriber from
        // landing on a sender that is about to disappear.
        if watchers
            .get(&self.task_uuid)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            watchers.remove(&self.task_uuid);
        }
    }
}

impl TaskWaiters {
    /// Opens the listening connection, LISTENs, and starts the task that fans notifications
    /// out. Returns once the LISTEN is in effect. Waiters also re-read their task every
    /// `recheck`, in case a notification was lost.
    pub async fn start(pool: &PgPool, recheck: Duration) -> TaskerResult<Self> {
        let mut listener = PgListener::connect_with(pool)
            .await
            .db_context("opening the task-finished listener connection")?;
        listener
            .listen(TASK_FINISHED_CHANNEL)
            .await
            .db_context(format!("listening on {TASK_FINISHED_CHANNEL}"))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            recheck,
            watchers: Mutex::default(),
            _stop: stop_tx,
        });
        tokio::spawn(run_listener(listener, Arc::downgrade(&inner), stop_rx));
        Ok(Self { inner })
    }

    /// Waits until the task is finished, `timeout` passes, or `shutdown` turns true.
    pub async fn wait(
        &self,
        pool: &PgPool,
        task_uuid: Uuid,
        timeout: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> TaskerResult<WaitOutcome> {
        let deadline = Instant::now() + timeout;
        let mut subscription = self.subscribe(task_uuid);
        let mut notifications_alive = true;
        loop {
            match task_state(pool, task_uuid).await? {
                None => return Ok(WaitOutcome::NotFound),
                Some(state) if is_finished_state(&state) => return Ok(WaitOutcome::Finished),
                Some(_) => {}
            }
            let listening = notifications_alive;
            let woken = async {
                if listening {
                    subscription.receiver.changed().await.is_ok()
                } else {
                    std::future::pending().await
                }
            };
            // resolves to () so that no borrow of the shutdown flag lives across an await
            let stopping = async {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            tokio::select! {
                alive = woken => {
                    // the sender cannot go while we hold the registry; if it somehow does,
                    // rely on the recheck timer rather than spin on a closed channel
                    notifications_alive = alive;
                }
                () = tokio::time::sleep(self.inner.recheck) => {}
                () = tokio::time::sleep_until(deadline) => return Ok(WaitOutcome::TimedOut),
                () = stopping => return Ok(WaitOutcome::ShuttingDown),
            }
        }
    }

    fn subscribe(&self, task_uuid: Uuid) -> Subscription {
        let receiver = self
            .inner
            .watchers()
            .entry(task_uuid)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        Subscription {
            inner: self.inner.clone(),
            task_uuid,
            receiver,
        }
    }

    /// Tasks with at least one waiter (for tests and metrics).
    pub fn watched_tasks(&self) -> usize {
        self.inner.watchers().len()
    }
}

/// Receives notifications until the registry is dropped or the pool is closed.
async fn run_listener(
    mut listener: PgListener,
    inner: Weak<Inner>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let received = tokio::select! {
            _ = &mut stop => return,
            received = listener.try_recv() => received,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match received {
            Ok(Some(notification)) => match notification.payload().parse::<Uuid>() {
                Ok(task_uuid) => inner.wake(task_uuid),
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a {TASK_FINISHED_CHANNEL} notification that is not a task id"
                ),
            },
            // the connection was lost; notifications may have been missed, so every waiter
            // re-reads its task (the listener reconnects on the next receive)
            Ok(None) => {
                tracing::warn!("task-finished listener lost its connection; reconnecting");
                inner.wake_all();
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "task-finished listener failed; retrying");
                inner.wake_all();
                drop(inner);
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(LISTENER_RETRY_PAUSE) => {}
                }
            }
        }
    }
}

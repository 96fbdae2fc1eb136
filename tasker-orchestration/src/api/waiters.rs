//! Long-poll support: one PostgreSQL connection per server, LISTENing only while requests
//! wait, fanned out to the requests waiting on particular tasks.
//!
//! The finalizer runs `pg_notify('tasker_task_finished', task_uuid)` in the transaction that
//! moves a task to a finished state ([`TASK_FINISHED_CHANNEL`]). A single [`PgListener`] owned
//! by a background task receives those notifications and wakes the waiters registered for that
//! task id through a per-task `watch` channel, so a notification costs one map lookup however
//! many requests are waiting, and a waiter costs no database connection while it waits.
//!
//! Why LISTEN only while someone waits: PostgreSQL (15) signals every listening backend of the
//! database for every notification on any channel, and a committing transaction that notified
//! holds a database-wide lock until it has sent those signals. A server whose API nobody
//! long-polls would otherwise add a backend to wake for every step result and every enqueue of
//! the whole installation (measured in the sustained throughput benchmark: 2 % of the
//! server's CPU per step, 1 % of the steps per second). The
//! connection is opened at start, so the first long poll pays one LISTEN round trip, and the
//! LISTEN lingers a while after the last waiter leaves ([`DEFAULT_LISTEN_LINGER`]), so a steady
//! trickle of long polls does not LISTEN and UNLISTEN for each one.
//!
//! Races: a waiter registers its watch *before* it reads the task's state. If LISTEN is in
//! effect then, a task that finishes between the read and the wait still wakes it. If not, the
//! registration asks the listener to LISTEN, and once LISTEN is in effect the listener wakes
//! every waiter to read its task again: a task that finished before that point is seen by the
//! re-read, one that finishes after it sends a notification that arrives. Notifications sent
//! while the listening connection is down are lost; when the listener notices the loss it
//! wakes every waiter to re-read, and each waiter also re-reads on a slow timer
//! ([`DEFAULT_RECHECK_INTERVAL`] unless configured) as a last resort.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tasker_client::is_finished_state;
use tasker_shared::error::{DbContext, TaskerResult};
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::queries::task_state;

/// How often a waiter re-reads its task's state without being woken, by default.
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long the listener keeps LISTENing after the last waiter has gone, by default.
pub const DEFAULT_LISTEN_LINGER: Duration = Duration::from_secs(10);
/// Pause after a listener error before it opens a fresh connection.
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
    /// Asks the listener task to LISTEN; a registration pokes it.
    demand: Arc<Notify>,
    /// Whether LISTEN is in effect on the listener's connection.
    listening: AtomicBool,
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

    fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
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
    /// Opens the listening connection and starts the task that LISTENs while requests wait
    /// and fans notifications out; it keeps LISTENing for `linger` after the last waiter has
    /// gone. Waiters also re-read their task every `recheck`, in case a notification was lost.
    pub async fn start(pool: &PgPool, recheck: Duration, linger: Duration) -> TaskerResult<Self> {
        let listener = PgListener::connect_with(pool)
            .await
            .db_context("opening the task-finished listener connection")?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let demand = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            recheck,
            watchers: Mutex::default(),
            demand: demand.clone(),
            listening: AtomicBool::new(false),
            _stop: stop_tx,
        });
        tokio::spawn(run_listener(
            ListenerTask {
                listener,
                pool: pool.clone(),
                inner: Arc::downgrade(&inner),
                demand,
                linger,
            },
            stop_rx,
        ));
        Ok(Self { inner })
    }

    /// Whether LISTEN is in effect now (it is while requests wait, and for a while after).
    pub fn is_listening(&self) -> bool {
        self.inner.is_listening()
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
        if !self.is_listening() {
            // a stored permit if the listener is busy, so the request is never lost
            self.inner.demand.notify_one();
        }
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

/// What the listener task owns.
struct ListenerTask {
    listener: PgListener,
    /// For a fresh connection after a failure.
    pool: PgPool,
    inner: Weak<Inner>,
    demand: Arc<Notify>,
    linger: Duration,
}

impl ListenerTask {
    /// After a failure: marks LISTEN as not in effect, pauses, then replaces the listener with
    /// one on a fresh connection that listens to nothing yet, retrying until it has one (the
    /// next LISTEN wakes every waiter). Returns false when the listener should stop instead
    /// (the registry was dropped or the pool closed).
    async fn start_over(&mut self, inner: Arc<Inner>, stop: &mut oneshot::Receiver<()>) -> bool {
        inner.set_listening(false);
        // not held across the pause: dropping the registry is what stops this task
        drop(inner);
        loop {
            tokio::select! {
                _ = &mut *stop => return false,
                () = tokio::time::sleep(LISTENER_RETRY_PAUSE) => {}
            }
            match PgListener::connect_with(&self.pool).await {
                Ok(fresh) => {
                    self.listener = fresh;
                    return true;
                }
                Err(sqlx::Error::PoolClosed) => return false,
                Err(error) => {
                    tracing::warn!(%error, "task-finished listener could not reconnect; retrying");
                }
            }
        }
    }
}

/// LISTENs while requests wait and fans notifications out to them, until the registry is
/// dropped or the pool is closed.
async fn run_listener(mut task: ListenerTask, mut stop: oneshot::Receiver<()>) {
    // since when LISTEN has been in effect with nobody waiting
    let mut idle_since: Option<Instant> = None;
    loop {
        let Some(inner) = task.inner.upgrade() else {
            return;
        };
        let listening = inner.is_listening();
        let wanted = !inner.watchers().is_empty();
        if wanted || !listening {
            idle_since = None;
        } else {
            idle_since.get_or_insert_with(Instant::now);
        }
        let linger_over = idle_since.is_some_and(|since| since.elapsed() >= task.linger);
        if wanted != listening && (wanted || linger_over) {
            let changed = if wanted {
                task.listener.listen(TASK_FINISHED_CHANNEL).await
            } else {
                // cleared first: a waiter registering from now on asks for a new LISTEN
                inner.set_listening(false);
                task.listener.unlisten(TASK_FINISHED_CHANNEL).await
            };
            match changed {
                Ok(()) => {
                    inner.set_listening(wanted);
                    if wanted {
                        // a task that finished before LISTEN took effect notified nobody
                        // here, so every waiter reads its task again
                        inner.wake_all();
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "task-finished listener could not (UN)LISTEN; reconnecting");
                    if !task.start_over(inner, &mut stop).await {
                        return;
                    }
                }
            }
            // the waiters may have changed meanwhile: decide again
            continue;
        }
        drop(inner);
        if !listening {
            tokio::select! {
                _ = &mut stop => return,
                () = task.demand.notified() => continue,
            }
        }
        // listening: a notification, or time to look whether anyone still waits (try_recv is
        // cancel-safe, so the timer winning loses no notification)
        let look_again = idle_since.map_or(task.linger, |since| {
            task.linger.saturating_sub(since.elapsed())
        });
        let received = tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(look_again) => continue,
            received = task.listener.try_recv() => received,
        };
        let Some(inner) = task.inner.upgrade() else {
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
            // the connection was lost and the listener has reconnected and LISTENs again
            // (PgListener reconnects eagerly); notifications sent in between were missed, so
            // every waiter reads its task again
            Ok(None) => {
                tracing::warn!("task-finished listener lost its connection and reconnected");
                inner.wake_all();
            }
            Err(sqlx::Error::PoolClosed) => return,
            // on a fresh connection the LISTEN is made again, and it wakes every waiter
            Err(error) => {
                tracing::warn!(%error, "task-finished listener failed; reconnecting");
                if !task.start_over(inner, &mut stop).await {
                    return;
                }
            }
        }
    }
}

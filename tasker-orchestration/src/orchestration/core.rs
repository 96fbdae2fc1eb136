//! The orchestration loop: wakes on notifications (a step result was queued, a task was
//! created), not on a timer. It drains the results queue, picks up announced tasks, and sweeps
//! `get_next_ready_tasks` when a retry's backoff ends or the slow fallback poll fires (which
//! covers notifications lost while the listening connection was down).
//!
//! Any number of orchestrators can run against one database: tasks are picked up with a
//! compare-and-swap on their state, results for one task are serialised on the task's row
//! lock, and queue messages are claimed with `FOR UPDATE SKIP LOCKED`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tasker_shared::database::HeldConnection;
use tasker_shared::error::DbContext;
use tasker_shared::messaging::{Queue, RESULTS_QUEUE, TASKS_READY_CHANNEL};
use tasker_shared::sql_functions::get_next_ready_tasks;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::lifecycle::result_processor::{ProcessedMessage, ResultOutcome, ResultProcessor};
use super::lifecycle::step_enqueuer::StepEnqueuer;
use super::lifecycle::task_finalizer::FinalizeOutcome;
use crate::error::OrchestrationResult;

/// How an orchestrator behaves.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// How often to look for work when no notification arrives.
    pub fallback_poll: Duration,
    /// The longest a result whose processing failed waits before it is tried again: it comes
    /// back after 0.1 s, doubling with each failure up to this. (Results are taken off the
    /// queue and processed in one transaction, so no result is hidden while it is processed.)
    pub visibility_timeout: Duration,
    /// Result messages claimed per read.
    pub result_batch: i32,
    /// Results processed at once (results of one task still serialise on its row lock).
    pub result_concurrency: usize,
    /// Tasks taken per `get_next_ready_tasks` sweep.
    pub ready_task_batch: i32,
    /// Recorded as the processor of every transition this orchestrator makes.
    pub processor_id: String,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            fallback_poll: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(30),
            result_batch: 32,
            result_concurrency: 4,
            ready_task_batch: 32,
            processor_id: format!("orchestrator:{}:{}", hostname(), std::process::id()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Starts orchestrators.
pub struct Orchestrator;

/// A running orchestrator.
pub struct OrchestratorHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Orchestrator {
    /// Connects the listener and starts the loop in the background.
    pub async fn start(
        pool: PgPool,
        config: OrchestratorConfig,
    ) -> OrchestrationResult<OrchestratorHandle> {
        let results = Queue::new(RESULTS_QUEUE)?;
        results.create(&pool).await?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .db_context("opening the orchestrator's notification listener")?;
        listener
            .listen_all([results.channel().as_str(), TASKS_READY_CHANNEL])
            .await
            .db_context("listening for results and new tasks")?;
        let (stop, stopped) = watch::channel(false);
        let state = LoopState {
            processor: ResultProcessor::new(pool.clone(), &config.processor_id),
            enqueuer: StepEnqueuer::new(pool.clone(), &config.processor_id),
            conn: HeldConnection::new(pool, "the orchestrator loop"),
            results,
            config,
            listener,
            stopped,
            announced: BTreeSet::new(),
            results_due: true,
            timers: BinaryHeap::new(),
        };
        let task = tokio::spawn(state.run());
        Ok(OrchestratorHandle { stop, task })
    }
}

impl OrchestratorHandle {
    /// Stops the loop after the work in hand and waits for it.
    pub async fn shutdown(self) -> OrchestrationResult<()> {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "orchestrator loop ended abnormally");
        }
        Ok(())
    }
}

struct LoopState {
    /// The loop's statements run one at a time, on this connection (see [`HeldConnection`]);
    /// a backlog's extra result callers use the pool.
    conn: HeldConnection,
    results: Queue,
    processor: ResultProcessor,
    enqueuer: StepEnqueuer,
    config: OrchestratorConfig,
    listener: PgListener,
    stopped: watch::Receiver<bool>,
    /// Tasks announced as created since the last pass.
    announced: BTreeSet<Uuid>,
    /// Results may be waiting: a result was announced, or a timer, the fallback poll or a
    /// lost connection calls for a look. A wake-up for a new task alone does not, which
    /// saves a results read per task created.
    results_due: bool,
    /// When retries become due.
    timers: BinaryHeap<Reverse<Instant>>,
}

impl LoopState {
    async fn run(mut self) {
        // tasks created before we started listening are found by a first sweep
        let mut sweep = true;
        let mut next_poll = Instant::now() + self.config.fallback_poll;
        loop {
            if *self.stopped.borrow() {
                break;
            }
            if std::mem::take(&mut self.results_due) {
                self.drain_results().await;
            }
            self.pick_up_announced().await;
            if sweep {
                self.sweep_ready_tasks().await;
                sweep = false;
            }
            let deadline = self
                .timers
                .peek()
                .map(|t| t.0.min(next_poll))
                .unwrap_or(next_poll);
            tokio::select! {
                _ = self.stopped.changed() => break,
                notification = self.listener.recv() => match notification {
                    Ok(n) => {
                        tracing::trace!(channel = n.channel(), "orchestrator woke");
                        self.note(n.channel(), n.payload());
                        self.drain_buffered_notifications();
                    }
                    Err(error) => {
                        // PgListener reconnects on the next recv; sweep to cover the gap
                        tracing::warn!(%error, "orchestrator listener lost its connection");
                        sweep = true;
                        self.results_due = true;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    while self.timers.peek().is_some_and(|t| t.0 <= now) {
                        self.timers.pop();
                    }
                    if now >= next_poll {
                        next_poll = now + self.config.fallback_poll;
                    }
                    sweep = true;
                    self.results_due = true;
                }
            }
        }
        tracing::debug!("orchestrator loop stopped");
    }

    fn note(&mut self, channel: &str, payload: &str) {
        if channel == TASKS_READY_CHANNEL {
            if let Ok(task) = payload.parse() {
                self.announced.insert(task);
            }
        } else {
            // the results channel (the only other one this loop listens on)
            self.results_due = true;
        }
    }

    /// Takes every notification already received, so a burst costs one pass.
    fn drain_buffered_notifications(&mut self) {
        while let Some(n) = self.listener.next_buffered() {
            self.note(n.channel(), n.payload());
        }
    }

    /// Processes every waiting result, a batch per round trip. A full batch means a backlog:
    /// then `result_concurrency` callers drain it side by side (results of one task still
    /// serialise on its row lock; the queue hands each message to one caller).
    async fn drain_results(&mut self) {
        let limit = self.config.result_batch.max(1);
        let first = self.process_batch(limit).await;
        if first < limit as usize {
            return;
        }
        let callers = self.config.result_concurrency.max(1);
        let (processor, results, vt) = (
            &self.processor,
            &self.results,
            self.config.visibility_timeout,
        );
        let outcomes = futures::future::join_all((0..callers).map(|_| async move {
            let mut all = Vec::new();
            loop {
                match processor.process_next(results, vt, limit).await {
                    Ok(batch) => {
                        let full = batch.len() >= limit as usize;
                        all.extend(batch);
                        if !full {
                            return all;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "processing step results failed");
                        return all;
                    }
                }
            }
        }))
        .await;
        for processed in outcomes.into_iter().flatten() {
            self.after_result(processed);
        }
    }

    /// One round trip's worth of results; returns how many messages it took.
    async fn process_batch(&mut self, limit: i32) -> usize {
        let batch = match self.conn.get().await {
            Ok(conn) => {
                self.processor
                    .process_next_on(conn, &self.results, self.config.visibility_timeout, limit)
                    .await
            }
            Err(error) => Err(error.into()),
        };
        match batch {
            Ok(batch) => {
                let taken = batch.len();
                tracing::trace!(count = taken, "step results processed");
                for processed in batch {
                    self.after_result(processed);
                }
                taken
            }
            Err(error) => {
                tracing::error!(%error, "processing step results failed");
                self.conn.discard();
                // try again on the next wake-up of any kind
                self.results_due = true;
                0
            }
        }
    }

    fn after_result(&mut self, processed: ProcessedMessage) {
        processed.record_metrics();
        match processed.outcome {
            Ok(ResultOutcome::Processed { retry_at, task, .. }) => {
                let finalize_retry = match task {
                    FinalizeOutcome::WaitingForRetry { next_retry_at } => next_retry_at,
                    _ => None,
                };
                for at in [retry_at, finalize_retry].into_iter().flatten() {
                    let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                    self.timers.push(Reverse(Instant::now() + wait));
                }
            }
            Ok(ResultOutcome::Ignored { .. }) => {}
            Err(error) => {
                // the message comes back after a short wait, doubling with each failed read up
                // to the visibility timeout (tasker.process_next_results)
                tracing::error!(%error, msg_id = processed.msg_id, step = ?processed.workflow_step_uuid, "processing a step result failed");
            }
        }
    }

    async fn pick_up_announced(&mut self) {
        while let Some(task) = self.announced.pop_first() {
            let picked = match self.conn.get().await {
                Ok(conn) => self.enqueuer.enqueue_for_task_on(conn, task).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = picked {
                tracing::error!(%error, %task, "enqueueing the steps of a new task failed");
                self.conn.discard();
            }
        }
    }

    async fn sweep_ready_tasks(&mut self) {
        loop {
            let ready = match self.conn.get().await {
                Ok(conn) => get_next_ready_tasks(conn, self.config.ready_task_batch).await,
                Err(error) => Err(error),
            };
            let ready = match ready {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::error!(%error, "looking for ready tasks failed");
                    self.conn.discard();
                    return;
                }
            };
            let full_batch = ready.len() as i32 == self.config.ready_task_batch;
            let mut progressed = false;
            for task in ready {
                let picked = match self.conn.get().await {
                    Ok(conn) => {
                        self.enqueuer
                            .enqueue_for_task_on(conn, task.task_uuid)
                            .await
                    }
                    Err(error) => Err(error.into()),
                };
                match picked {
                    Ok(Some(outcome)) => progressed |= !outcome.enqueued.is_empty(),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, task = %task.task_uuid, "enqueueing ready steps failed");
                        self.conn.discard();
                    }
                }
            }
            if !(full_batch && progressed) {
                return;
            }
        }
    }
}

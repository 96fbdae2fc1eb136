//! The worker loop: claims messages from its namespaces' queues up to its concurrency limit,
//! runs each step on its own task, and sleeps on LISTEN/NOTIFY (with a slow fallback poll)
//! when the queues are empty. One round trip claims from every queue that may hold messages:
//! the ones announced since they were last read empty.
//!
//! While a handler runs, its message's visibility timeout is extended at half its length, so
//! only a worker that died (or lost its database) lets the message reappear for another one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tasker_shared::database::HeldConnection;
use tasker_shared::messaging::{namespace_queue_name, queue_namespace, Queue, QueueListener, Wake};
use tasker_shared::metrics::{STEPS_CLAIMED, STEP_DURATION};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{WorkerError, WorkerResult};
use crate::executor::{claim_next, execute, submit, ClaimedStep};
use crate::registry::HandlerRegistry;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Namespaces whose step queues this worker consumes.
    pub namespaces: Vec<String>,
    /// Steps run at once.
    pub concurrency: usize,
    /// How long a claimed message stays hidden without a heartbeat.
    pub visibility_timeout: Duration,
    /// How often to look for messages when no notification arrives.
    pub fallback_poll: Duration,
    /// Limit for one handler run when the template sets none.
    pub handler_timeout: Duration,
    /// Recorded as the processor of the transitions this worker makes.
    pub worker_id: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            concurrency: 8,
            visibility_timeout: Duration::from_secs(30),
            fallback_poll: Duration::from_secs(1),
            handler_timeout: Duration::from_secs(300),
            worker_id: format!("worker:{}", std::process::id()),
        }
    }
}

/// Starts workers.
pub struct Worker;

/// A running worker.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Creates the namespaces' queues if needed, starts listening and starts the loop.
    pub async fn start(
        pool: PgPool,
        config: WorkerConfig,
        registry: Arc<HandlerRegistry>,
    ) -> WorkerResult<WorkerHandle> {
        if config.namespaces.is_empty() {
            return Err(WorkerError::NoNamespaces);
        }
        let mut queues = Vec::new();
        for namespace in &config.namespaces {
            let queue = Queue::new(&namespace_queue_name(namespace))?;
            queue.create(&pool).await?;
            queues.push(queue);
        }
        let listener = QueueListener::connect(&pool, &queues, config.fallback_poll).await?;
        let queues_len = queues.len();
        let (stop, stopped) = watch::channel(false);
        let state = WorkerLoop {
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            claims: HeldConnection::new(pool.clone(), "the worker's claim loop"),
            pool,
            config: Arc::new(config),
            registry,
            queues,
            due: vec![true; queues_len],
            listener,
            stopped,
        };
        Ok(WorkerHandle {
            stop,
            task: tokio::spawn(state.run()),
        })
    }
}

impl WorkerHandle {
    /// Stops claiming, lets running steps finish, and waits for them.
    pub async fn shutdown(self) -> WorkerResult<()> {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "worker loop ended abnormally");
        }
        Ok(())
    }
}

struct WorkerLoop {
    pool: PgPool,
    /// Claims run one at a time, on this connection (see [`HeldConnection`]); the steps'
    /// submissions, which run side by side, use the pool.
    claims: HeldConnection,
    config: Arc<WorkerConfig>,
    registry: Arc<HandlerRegistry>,
    queues: Vec<Queue>,
    /// Per queue (same order): may hold visible messages. A queue stops being due when a
    /// read of it comes back short and becomes due again when its channel is notified, so a
    /// wake-up reads the queues that were announced, not every queue the worker serves.
    /// The fallback poll marks them all.
    due: Vec<bool>,
    listener: QueueListener,
    permits: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

impl WorkerLoop {
    async fn run(mut self) {
        while !*self.stopped.borrow() {
            let free = self.permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = self.stopped.changed() => break,
                    permit = self.permits.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            // A short batch means every queue read was empty: anything sent since notifies
            // the listener, so wait rather than ask again. A full batch may have left
            // messages anywhere, including in queues announced meanwhile (their
            // notifications wait unread while the worker is busy): read them all next time.
            let claimed = self.claim_batch(free).await;
            self.due.fill(claimed == free);
            if claimed < free {
                tokio::select! {
                    _ = self.stopped.changed() => break,
                    wake = self.listener.wait() => {
                        tracing::trace!(?wake, "worker woke");
                        match wake {
                            Ok(Wake::Notified(queue)) => self.mark_due(&queue),
                            Ok(Wake::FallbackPoll) => self.due.fill(true),
                            Err(error) => {
                                tracing::warn!(%error, "worker listener failed");
                                self.due.fill(true);
                            }
                        }
                        for queue in self.listener.drain() {
                            self.mark_due(&queue);
                        }
                    }
                }
            }
        }
        // wait for running steps: every permit back means every step finished
        let all = self.config.concurrency.max(1) as u32;
        let _ = self.permits.acquire_many(all).await;
        tracing::debug!("worker loop stopped");
    }

    fn mark_due(&mut self, queue: &str) {
        if let Some(i) = self.queues.iter().position(|q| q.name() == queue) {
            self.due[i] = true;
        }
    }

    /// Claims up to `free` steps across the due queues (read and claim of all of them in one
    /// round trip) and starts a task per step. Returns how many it started.
    async fn claim_batch(&mut self, free: usize) -> usize {
        let due: Vec<Queue> = self
            .queues
            .iter()
            .zip(&self.due)
            .filter(|(_, due)| **due)
            .map(|(queue, _)| queue.clone())
            .collect();
        if due.is_empty() {
            return 0;
        }
        let claimed = match self.claims.get().await {
            Ok(conn) => {
                claim_next(
                    conn,
                    &due,
                    self.config.visibility_timeout,
                    free as i32,
                    &self.config.worker_id,
                )
                .await
            }
            Err(error) => Err(error.into()),
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                self.claims.discard();
                // claimed messages reappear after their visibility timeout; the fallback poll
                // tries again
                tracing::error!(%error, "claiming steps failed");
                return 0;
            }
        };
        let mut started = 0;
        for step in claimed {
            // the permits were free when `free` was counted and only this loop takes them
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                tracing::error!(step = %step.context.workflow_step_uuid, "no permit for a claimed step; it reappears after its visibility timeout");
                continue;
            };
            started += 1;
            let job = StepJob {
                pool: self.pool.clone(),
                config: self.config.clone(),
                registry: self.registry.clone(),
                queue: step.queue.clone(),
            };
            tokio::spawn(async move {
                job.run(step).await;
                drop(permit);
            });
        }
        started
    }
}

struct StepJob {
    pool: PgPool,
    config: Arc<WorkerConfig>,
    registry: Arc<HandlerRegistry>,
    queue: Queue,
}

impl StepJob {
    async fn run(self, claimed: ClaimedStep) {
        let step = claimed.context.workflow_step_uuid;
        let worker_id = &self.config.worker_id;
        tracing::trace!(%step, "step claimed");
        let namespace = queue_namespace(claimed.queue.name()).to_owned();
        metrics::counter!(STEPS_CLAIMED, "namespace" => namespace.clone()).increment(1);
        let heartbeat = self.spawn_heartbeat(claimed.msg_id);
        let started = Instant::now();
        let outcome = execute(&self.registry, &claimed, self.config.handler_timeout).await;
        metrics::histogram!(
            STEP_DURATION,
            "namespace" => namespace,
            "handler" => claimed.handler.clone(),
            "outcome" => if outcome.is_ok() { "success" } else { "failure" }
        )
        .record(started.elapsed().as_secs_f64());
        heartbeat.abort();
        if let Err(error) = &outcome {
            tracing::debug!(%step, %error, "step failed");
        }
        match submit(&self.pool, &claimed, &outcome, worker_id).await {
            Ok(true) => tracing::trace!(%step, "step result submitted"),
            Ok(false) => {
                tracing::warn!(%step, "step was taken over by another worker; result dropped")
            }
            Err(error) => tracing::error!(%error, %step, "submitting a step result failed"),
        }
    }

    fn spawn_heartbeat(&self, msg_id: i64) -> JoinHandle<()> {
        let (pool, queue, vt) = (
            self.pool.clone(),
            self.queue.clone(),
            self.config.visibility_timeout,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vt / 2);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(error) = queue.extend_visibility(&pool, msg_id, vt).await {
                    tracing::warn!(%error, msg_id, "extending a message's visibility failed");
                }
            }
        })
    }
}

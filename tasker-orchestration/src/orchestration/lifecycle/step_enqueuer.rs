//! Step enqueueing: find a task's ready steps, mark them enqueued, and send one message per
//! step to the namespace's queue, all in one transaction. The transition precedes the send
//! within that transaction, so no worker can see a message for a step that is not yet
//! enqueued, and the queue's notification fires only when both are committed.
//!
//! The three phases are public functions so that benchmarks can time each one.

use std::sync::Arc;

use sqlx::{PgConnection, PgExecutor, PgPool};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::{namespace_queue_name, Queue, StepMessage};
use tasker_shared::sql_functions::{get_step_readiness_status, StepReadiness};
use tasker_shared::state::StepState;
use uuid::Uuid;

use crate::error::OrchestrationResult;

/// What one enqueueing pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOutcome {
    pub task_uuid: Uuid,
    /// Steps this pass enqueued.
    pub enqueued: Vec<Uuid>,
}

/// Enqueues ready steps.
#[derive(Clone)]
pub struct StepEnqueuer {
    pool: PgPool,
    processor: Arc<str>,
}

impl StepEnqueuer {
    pub fn new(pool: PgPool, processor: &str) -> Self {
        Self {
            pool,
            processor: processor.into(),
        }
    }

    /// Picks up a task that is waiting (pending, or waiting for dependencies or a retry) and
    /// enqueues its ready steps, with `tasker.pick_up_task` (one statement: the task row
    /// locked, enqueuing_steps, the steps moved and sent, then steps_in_process or
    /// waiting_for_dependencies). Returns `None` when the task was not in a pick-up state:
    /// another orchestrator has it, or it already moved on.
    pub async fn enqueue_for_task(
        &self,
        task_uuid: Uuid,
    ) -> OrchestrationResult<Option<EnqueueOutcome>> {
        self.enqueue_for_task_on(&self.pool, task_uuid).await
    }

    /// [`Self::enqueue_for_task`] on the caller's connection (the orchestrator loop keeps one).
    pub async fn enqueue_for_task_on<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        task_uuid: Uuid,
    ) -> OrchestrationResult<Option<EnqueueOutcome>> {
        let enqueued: Option<Vec<Uuid>> = sqlx::query_scalar("SELECT tasker.pick_up_task($1, $2)")
            .bind(task_uuid)
            .bind(&*self.processor)
            .fetch_one(executor)
            .await
            .db_context(format!("picking up task {task_uuid}"))?;
        Ok(enqueued.map(|enqueued| EnqueueOutcome {
            task_uuid,
            enqueued,
        }))
    }

    /// Enqueues those of `readiness` that are ready, on the caller's connection, with
    /// `tasker.enqueue_steps` (transition and send in one statement).
    pub async fn enqueue_steps(
        &self,
        conn: &mut PgConnection,
        task_uuid: Uuid,
        namespace: &str,
        readiness: &[StepReadiness],
    ) -> OrchestrationResult<Vec<Uuid>> {
        let ready: Vec<Uuid> = readiness
            .iter()
            .filter(|s| s.ready_for_execution)
            .map(|s| s.workflow_step_uuid)
            .collect();
        if ready.is_empty() {
            return Ok(ready);
        }
        let queue = Queue::new(&namespace_queue_name(namespace))?;
        Ok(
            sqlx::query_scalar("SELECT tasker.enqueue_steps($1, $2, $3, $4)")
                .bind(task_uuid)
                .bind(&ready)
                .bind(queue.name())
                .bind(&*self.processor)
                .fetch_one(conn)
                .await
                .db_context(format!("enqueueing the ready steps of task {task_uuid}"))?,
        )
    }
}

/// Phase 1, discovery: the readiness of every step of the task.
pub async fn discover_ready_steps(
    conn: &mut PgConnection,
    task_uuid: Uuid,
) -> OrchestrationResult<Vec<StepReadiness>> {
    Ok(get_step_readiness_status(conn, task_uuid, None).await?)
}

/// Phase 2, state transition: pending / waiting_for_retry → enqueued for every listed step
/// still in one of those states. Returns the steps moved.
pub async fn mark_enqueued(
    conn: &mut PgConnection,
    steps: &[Uuid],
    processor: &str,
) -> OrchestrationResult<Vec<Uuid>> {
    let from = [
        StepState::Pending.as_str(),
        StepState::WaitingForRetry.as_str(),
    ];
    Ok(
        sqlx::query_scalar("SELECT * FROM tasker.transition_steps_atomic($1, $2, $3, $4)")
            .bind(steps)
            .bind(&from[..])
            .bind(StepState::Enqueued.as_str())
            .bind(processor)
            .fetch_all(conn)
            .await
            .db_context("marking steps enqueued")?,
    )
}

/// Phase 3, queue send: one message per step to the namespace's queue, in one statement.
pub async fn publish(
    conn: &mut PgConnection,
    namespace: &str,
    messages: &[StepMessage],
) -> OrchestrationResult<Vec<i64>> {
    let queue = Queue::new(&namespace_queue_name(namespace))?;
    Ok(queue.send_batch(conn, messages).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::lifecycle::test_support::Harness;

    #[tokio::test]
    async fn picks_up_a_new_task_and_enqueues_only_its_root_step() {
        let h = Harness::new().await;
        let task = h.create("diamond").await;
        let enqueuer = StepEnqueuer::new(h.pool().clone(), "test");
        let outcome = enqueuer
            .enqueue_for_task(task)
            .await
            .unwrap()
            .expect("picked up");
        assert_eq!(outcome.enqueued, [h.step_uuid(task, "start").await]);
        assert_eq!(h.step_state(task, "start").await, "enqueued");
        assert_eq!(h.step_state(task, "left").await, "pending");
        assert_eq!(h.task_state(task).await, "steps_in_process");
        assert_eq!(h.queued_steps().await, ["start"]);

        // the task is no longer waiting, so a second pick-up does nothing
        assert!(enqueuer.enqueue_for_task(task).await.unwrap().is_none());
        assert_eq!(h.queued_steps().await, ["start"]);
    }

    #[tokio::test]
    async fn the_message_names_the_step_and_its_attempt() {
        let h = Harness::new().await;
        let task = h.create("linear").await;
        StepEnqueuer::new(h.pool().clone(), "test")
            .enqueue_for_task(task)
            .await
            .unwrap();
        let messages = h
            .steps
            .read::<StepMessage>(h.pool(), std::time::Duration::from_secs(1), 10)
            .await
            .unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].message,
            StepMessage {
                task_uuid: task,
                workflow_step_uuid: h.step_uuid(task, "a").await,
                attempt: 1
            }
        );
    }

    #[tokio::test]
    async fn competing_orchestrators_enqueue_each_step_once() {
        let h = Harness::new().await;
        let tasks: Vec<Uuid> = futures::future::join_all((0..5).map(|_| h.create("diamond"))).await;
        let a = StepEnqueuer::new(h.pool().clone(), "a");
        let b = StepEnqueuer::new(h.pool().clone(), "b");
        for task in &tasks {
            let (x, y) = tokio::join!(a.enqueue_for_task(*task), b.enqueue_for_task(*task));
            let picked = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
            assert_eq!(picked, 1, "exactly one orchestrator picks the task up");
        }
        assert_eq!(h.steps.depth(h.pool()).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn marking_skips_steps_that_are_no_longer_pending() {
        let h = Harness::new().await;
        let task = h.create("diamond").await;
        let start = h.step_uuid(task, "start").await;
        let left = h.step_uuid(task, "left").await;
        let mut conn = h.pool().acquire().await.unwrap();
        let first = mark_enqueued(&mut conn, &[start], "test").await.unwrap();
        assert_eq!(first, [start]);
        let second = mark_enqueued(&mut conn, &[start, left], "test")
            .await
            .unwrap();
        assert_eq!(second, [left], "start was already enqueued");
        let transitions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1",
        )
        .bind(start)
        .fetch_one(h.pool())
        .await
        .unwrap();
        assert_eq!(transitions, 2, "initial pending plus one enqueued");
    }
}

//! Task finalisation: from what the steps add up to, complete the task, block it on failures,
//! or park it until a retry's backoff ends. Reaching a finished state (complete, error,
//! blocked_by_failures) notifies `TASK_FINISHED_CHANNEL` in the same transaction, which is what
//! API waiters and benchmarks listen for.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tasker_shared::sql_functions::{get_step_readiness_status, ExecutionStatus, StepReadiness};
use tasker_shared::state::{transition_task, TaskState};
use uuid::Uuid;

use crate::error::OrchestrationResult;

/// What finalisation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalizeOutcome {
    /// Every step completed; the task is complete.
    Completed,
    /// A step failed for good and nothing else can run; the task is blocked.
    Blocked,
    /// Nothing can run until a retry's backoff ends (at the given time, if known).
    WaitingForRetry {
        next_retry_at: Option<DateTime<Utc>>,
    },
    /// Nothing can run and nothing is running or retrying; the task waits for dependencies.
    WaitingForDependencies,
    /// Steps are ready or running; the task is not finished and stays as it is.
    NotFinished,
}

/// Finalises tasks.
#[derive(Clone)]
pub struct TaskFinalizer {
    processor: Arc<str>,
}

impl TaskFinalizer {
    pub fn new(processor: &str) -> Self {
        Self {
            processor: processor.into(),
        }
    }

    /// Locks the task, reads its steps and finalises it in its own transaction.
    pub async fn evaluate(
        &self,
        pool: &PgPool,
        task_uuid: Uuid,
    ) -> OrchestrationResult<FinalizeOutcome> {
        let mut tx = pool.begin().await.db_context("starting task evaluation")?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT current_state FROM tasker.tasks WHERE task_uuid = $1 FOR UPDATE",
        )
        .bind(task_uuid)
        .fetch_optional(&mut *tx)
        .await
        .db_context(format!("locking task {task_uuid}"))?;
        let Some(state) = state else {
            return Err(tasker_shared::TaskerError::NotFound {
                kind: "task",
                id: task_uuid.to_string(),
            }
            .into());
        };
        let state: TaskState = state.parse().map_err(tasker_shared::TaskerError::from)?;
        let readiness = get_step_readiness_status(&mut *tx, task_uuid, None).await?;
        let outcome = self.finalize(&mut tx, task_uuid, state, &readiness).await?;
        tx.commit().await.db_context("committing task evaluation")?;
        Ok(outcome)
    }

    /// Finalises on the caller's connection, whose transaction holds the task row's lock and
    /// read `readiness` after taking it.
    pub async fn finalize(
        &self,
        conn: &mut PgConnection,
        task_uuid: Uuid,
        current: TaskState,
        readiness: &[StepReadiness],
    ) -> OrchestrationResult<FinalizeOutcome> {
        if current.is_terminal() {
            return Ok(FinalizeOutcome::NotFinished);
        }
        let (target, outcome) = match ExecutionStatus::from_readiness(readiness) {
            ExecutionStatus::HasReadySteps | ExecutionStatus::Processing => {
                return Ok(FinalizeOutcome::NotFinished)
            }
            ExecutionStatus::AllComplete => (TaskState::Complete, FinalizeOutcome::Completed),
            ExecutionStatus::BlockedByFailures => {
                (TaskState::BlockedByFailures, FinalizeOutcome::Blocked)
            }
            ExecutionStatus::WaitingForDependencies => {
                let next_retry_at = readiness
                    .iter()
                    .filter(|s| s.current_state == "waiting_for_retry" && s.retry_eligible)
                    .filter_map(|s| s.next_retry_at)
                    .min();
                if readiness
                    .iter()
                    .any(|s| s.current_state == "waiting_for_retry")
                {
                    (
                        TaskState::WaitingForRetry,
                        FinalizeOutcome::WaitingForRetry { next_retry_at },
                    )
                } else {
                    (
                        TaskState::WaitingForDependencies,
                        FinalizeOutcome::WaitingForDependencies,
                    )
                }
            }
        };
        if current == target {
            return Ok(outcome);
        }
        let mut from = current;
        if from != TaskState::EvaluatingResults {
            transition_task(
                &mut *conn,
                task_uuid,
                from,
                TaskState::EvaluatingResults,
                &self.processor,
                None,
            )
            .await?;
            from = TaskState::EvaluatingResults;
        }
        transition_task(&mut *conn, task_uuid, from, target, &self.processor, None).await?;
        if matches!(
            target,
            TaskState::Complete | TaskState::BlockedByFailures | TaskState::Error
        ) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(TASK_FINISHED_CHANNEL)
                .bind(task_uuid.to_string())
                .execute(&mut *conn)
                .await
                .db_context("announcing the finished task")?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tasker_worker::StepError;

    use super::*;
    use crate::orchestration::lifecycle::step_enqueuer::StepEnqueuer;
    use crate::orchestration::lifecycle::test_support::Harness;

    #[tokio::test]
    async fn a_task_with_work_in_flight_is_not_finished() {
        let h = Harness::new().await;
        let task = h.create("linear").await;
        StepEnqueuer::new(h.pool().clone(), "t")
            .enqueue_for_task(task)
            .await
            .unwrap();
        let outcome = TaskFinalizer::new("t")
            .evaluate(h.pool(), task)
            .await
            .unwrap();
        assert_eq!(outcome, FinalizeOutcome::NotFinished);
        assert_eq!(h.task_state(task).await, "steps_in_process");
    }

    #[tokio::test]
    async fn completion_moves_through_evaluating_results_and_notifies() {
        let h = Harness::new().await;
        let mut listener = sqlx::postgres::PgListener::connect_with(h.pool())
            .await
            .unwrap();
        listener.listen(TASK_FINISHED_CHANNEL).await.unwrap();
        let task = h.create("linear").await;
        StepEnqueuer::new(h.pool().clone(), "t")
            .enqueue_for_task(task)
            .await
            .unwrap();
        for step in ["a", "b", "c"] {
            h.work(step, Ok(json!({}))).await;
            h.process_results().await;
        }
        let path: Vec<String> = sqlx::query_scalar(
            "SELECT to_state FROM tasker.task_transitions WHERE task_uuid = $1 ORDER BY sort_key",
        )
        .bind(task)
        .fetch_all(h.pool())
        .await
        .unwrap();
        assert_eq!(path.last().map(String::as_str), Some("complete"));
        assert_eq!(path[path.len() - 2], "evaluating_results");
        let note = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("finished notification")
            .unwrap();
        assert_eq!(note.payload(), task.to_string());
        // evaluating a complete task again changes nothing
        assert_eq!(
            TaskFinalizer::new("t")
                .evaluate(h.pool(), task)
                .await
                .unwrap(),
            FinalizeOutcome::NotFinished
        );
    }

    #[tokio::test]
    async fn a_pending_retry_parks_the_task_until_its_backoff_ends() {
        let h = Harness::new().await;
        let task = h.create("retrying").await;
        // a long backoff this time
        sqlx::query("UPDATE tasker.workflow_steps SET backoff_base_ms = 60000, backoff_max_ms = 60000 WHERE task_uuid = $1")
            .bind(task)
            .execute(h.pool())
            .await
            .unwrap();
        StepEnqueuer::new(h.pool().clone(), "t")
            .enqueue_for_task(task)
            .await
            .unwrap();
        h.work("flaky", Err(StepError::retryable("later"))).await;
        h.process_results().await;
        assert_eq!(h.task_state(task).await, "waiting_for_retry");
        let outcome = TaskFinalizer::new("t")
            .evaluate(h.pool(), task)
            .await
            .unwrap();
        let FinalizeOutcome::WaitingForRetry {
            next_retry_at: Some(at),
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        let wait = at - chrono::Utc::now();
        assert!(wait > chrono::Duration::seconds(50), "{wait}");
    }
}

//! Task finalisation: from what the steps add up to, complete the task, block it on failures,
//! or park it until a retry's backoff ends. Reaching a finished state (complete, error,
//! blocked_by_failures) notifies `TASK_FINISHED_CHANNEL` in the same transaction, which is what
//! API waiters and benchmarks listen for.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tasker_shared::error::DbContext;
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

impl FinalizeOutcome {
    /// From `tasker.finalize_task`'s outcome column (and `process_step_result`'s, which uses
    /// the same words).
    pub(crate) fn from_sql(outcome: Option<&str>, next_retry_at: Option<DateTime<Utc>>) -> Self {
        match outcome {
            Some("completed") => Self::Completed,
            Some("blocked") => Self::Blocked,
            Some("waiting_for_retry") => Self::WaitingForRetry { next_retry_at },
            Some("waiting_for_dependencies") => Self::WaitingForDependencies,
            _ => Self::NotFinished,
        }
    }
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

    /// Locks the task, reads its steps and finalises it; one statement, so one transaction.
    pub async fn evaluate(
        &self,
        pool: &PgPool,
        task_uuid: Uuid,
    ) -> OrchestrationResult<FinalizeOutcome> {
        let mut conn = pool
            .acquire()
            .await
            .db_context("acquiring a connection for task evaluation")?;
        self.finalize(&mut conn, task_uuid).await
    }

    /// Finalises on the caller's connection (inside its transaction, if any), with
    /// `tasker.finalize_task`: the task row is locked, its steps summarised, and the task
    /// moved (through evaluating_results) to what they add up to. A task that is not there is
    /// an error; one in a state the state machine cannot finalise from is an error too.
    pub async fn finalize(
        &self,
        conn: &mut PgConnection,
        task_uuid: Uuid,
    ) -> OrchestrationResult<FinalizeOutcome> {
        let row: Option<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT * FROM tasker.finalize_task($1, $2)")
                .bind(task_uuid)
                .bind(&*self.processor)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|source| match &source {
                    sqlx::Error::Database(e) if e.code().as_deref() == Some("P0002") => {
                        tasker_shared::TaskerError::NotFound {
                            kind: "task",
                            id: task_uuid.to_string(),
                        }
                    }
                    _ => tasker_shared::TaskerError::Database {
                        action: format!("finalising task {task_uuid}"),
                        source,
                    },
                })?;
        Ok(row
            .map(|(outcome, at)| FinalizeOutcome::from_sql(Some(&outcome), at))
            .unwrap_or(FinalizeOutcome::NotFinished))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tasker_worker::StepError;

    use super::*;
    use crate::orchestration::lifecycle::step_enqueuer::StepEnqueuer;
    use crate::orchestration::lifecycle::test_support::Harness;
    use tasker_shared::messaging::TASK_FINISHED_CHANNEL;

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

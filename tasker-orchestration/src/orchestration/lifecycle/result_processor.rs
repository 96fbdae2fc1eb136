//! Result processing: a worker's step result moves the step to complete, waiting_for_retry or
//! error; the task is then re-evaluated in the same transaction: newly ready dependents are
//! enqueued, or the task is finalised.
//!
//! Results for one task are processed one at a time (the task row is locked first), so two
//! branches of a diamond finishing together cannot both conclude "the other is still running"
//! and leave the join step unenqueued. A result that does not match the step's state (a
//! duplicate or a late message) changes nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::{Queue, QueueMessage, StepOutcome, StepResultMessage};
use tasker_shared::sql_functions::{get_step_readiness_status, ExecutionStatus};
use tasker_shared::state::{transition_step, StepState, TaskState};
use tasker_shared::templates::RetryPolicy;
use uuid::Uuid;

use super::step_enqueuer::StepEnqueuer;
use super::task_finalizer::{FinalizeOutcome, TaskFinalizer};
use crate::error::OrchestrationResult;

/// What processing one result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The message did not match the step (duplicate, late, or for an unknown step).
    Ignored { reason: String },
    /// The step moved to `step_state`; `enqueued` dependents were sent to workers and the
    /// task was finalised as `task`.
    Processed {
        step_state: StepState,
        enqueued: Vec<Uuid>,
        task: FinalizeOutcome,
        /// When a retried step becomes ready, if this result scheduled one.
        retry_at: Option<DateTime<Utc>>,
    },
}

#[derive(sqlx::FromRow)]
struct StepRow {
    task_state: String,
    namespace: String,
    step_state: String,
    attempts: i32,
    max_attempts: i32,
    retryable: bool,
    backoff_base_ms: i32,
    backoff_max_ms: i32,
}

/// Processes step results.
#[derive(Clone)]
pub struct ResultProcessor {
    pool: PgPool,
    enqueuer: StepEnqueuer,
    finalizer: TaskFinalizer,
    processor: Arc<str>,
}

impl ResultProcessor {
    pub fn new(pool: PgPool, processor: &str) -> Self {
        Self {
            enqueuer: StepEnqueuer::new(pool.clone(), processor),
            finalizer: TaskFinalizer::new(processor),
            pool,
            processor: processor.into(),
        }
    }

    /// Processes a result in its own transaction.
    pub async fn process(&self, result: &StepResultMessage) -> OrchestrationResult<ResultOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .db_context("starting result processing")?;
        let outcome = self.process_in(&mut tx, result).await?;
        tx.commit()
            .await
            .db_context("committing result processing")?;
        Ok(outcome)
    }

    /// Processes a message claimed from the results queue and deletes it in the same
    /// transaction, so a crash in between leaves the message to be processed again (and a
    /// replay finds the step already moved and is ignored).
    pub async fn process_message(
        &self,
        queue: &Queue,
        message: &QueueMessage<StepResultMessage>,
    ) -> OrchestrationResult<ResultOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .db_context("starting result processing")?;
        let outcome = self.process_in(&mut tx, &message.message).await?;
        queue.delete(&mut *tx, message.msg_id).await?;
        tx.commit()
            .await
            .db_context("committing result processing")?;
        Ok(outcome)
    }

    /// Processes a result on the caller's connection (inside its transaction).
    pub async fn process_in(
        &self,
        conn: &mut PgConnection,
        result: &StepResultMessage,
    ) -> OrchestrationResult<ResultOutcome> {
        let row: Option<StepRow> = sqlx::query_as(
            "SELECT t.current_state AS task_state, ns.name AS namespace,
                    s.current_state AS step_state, s.attempts, s.max_attempts, s.retryable,
                    s.backoff_base_ms, s.backoff_max_ms
               FROM tasker.workflow_steps s
               JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
               JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
               JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
              WHERE s.workflow_step_uuid = $1 AND s.task_uuid = $2
                FOR UPDATE OF t, s",
        )
        .bind(result.workflow_step_uuid)
        .bind(result.task_uuid)
        .fetch_optional(&mut *conn)
        .await
        .db_context(format!("locking step {}", result.workflow_step_uuid))?;
        let Some(row) = row else {
            return Ok(ignored("no such step in that task"));
        };
        let step_state: StepState = row
            .step_state
            .parse()
            .map_err(tasker_shared::TaskerError::from)?;
        let task_state: TaskState = row
            .task_state
            .parse()
            .map_err(tasker_shared::TaskerError::from)?;
        if result.attempt != row.attempts {
            return Ok(ignored(&format!(
                "result of attempt {} but the step is on attempt {}",
                result.attempt, row.attempts
            )));
        }

        let mut retry_at = None;
        let target = match (result.outcome, step_state) {
            (StepOutcome::Success, StepState::EnqueuedForOrchestration) => StepState::Complete,
            (
                StepOutcome::RetryableFailure | StepOutcome::PermanentFailure,
                StepState::EnqueuedAsErrorForOrchestration,
            ) => {
                let can_retry = result.outcome == StepOutcome::RetryableFailure
                    && row.retryable
                    && row.attempts < row.max_attempts;
                if can_retry {
                    let policy = RetryPolicy {
                        retryable: true,
                        max_attempts: row.max_attempts.max(1) as u32,
                        backoff_base_ms: row.backoff_base_ms.max(0) as u32,
                        backoff_max_ms: row.backoff_max_ms.max(0) as u32,
                    };
                    let delay_ms = policy.backoff_ms(row.attempts.max(1) as u32);
                    retry_at = Some(
                        sqlx::query_scalar(
                            "UPDATE tasker.workflow_steps
                                SET next_retry_at = now() + make_interval(secs => $2)
                              WHERE workflow_step_uuid = $1
                          RETURNING next_retry_at",
                        )
                        .bind(result.workflow_step_uuid)
                        .bind(delay_ms as f64 / 1000.0)
                        .fetch_one(&mut *conn)
                        .await
                        .db_context("scheduling the retry")?,
                    );
                    StepState::WaitingForRetry
                } else {
                    StepState::Error
                }
            }
            (outcome, state) => {
                return Ok(ignored(&format!(
                    "{outcome:?} result but the step is {state}"
                )))
            }
        };
        let metadata = result
            .error
            .as_ref()
            .map(|e| serde_json::json!({ "error": e }));
        transition_step(
            &mut *conn,
            result.workflow_step_uuid,
            &[step_state],
            target,
            &self.processor,
            metadata.as_ref(),
        )
        .await?;

        let readiness = get_step_readiness_status(&mut *conn, result.task_uuid, None).await?;
        let mut enqueued = Vec::new();
        let task = match ExecutionStatus::from_readiness(&readiness) {
            ExecutionStatus::HasReadySteps if task_state == TaskState::StepsInProcess => {
                enqueued = self
                    .enqueuer
                    .enqueue_steps(&mut *conn, result.task_uuid, &row.namespace, &readiness)
                    .await?;
                FinalizeOutcome::NotFinished
            }
            // a task in any other state is not ours to enqueue for: the pick-up path owns it
            ExecutionStatus::HasReadySteps | ExecutionStatus::Processing => {
                FinalizeOutcome::NotFinished
            }
            _ => {
                self.finalizer
                    .finalize(&mut *conn, result.task_uuid, task_state, &readiness)
                    .await?
            }
        };
        Ok(ResultOutcome::Processed {
            step_state: target,
            enqueued,
            task,
            retry_at,
        })
    }
}

fn ignored(reason: &str) -> ResultOutcome {
    tracing::debug!(reason, "ignoring step result");
    ResultOutcome::Ignored {
        reason: reason.to_string(),
    }
}

/// Decodes a raw results-queue message; `None` for a message that is not a step result.
pub fn decode_result(
    queue: &Queue,
    raw: QueueMessage<Value>,
) -> Option<QueueMessage<StepResultMessage>> {
    match queue.decode(raw) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::error!(%error, "undecodable message on the results queue");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tasker_worker::StepError;

    use super::*;
    use crate::orchestration::lifecycle::step_enqueuer::StepEnqueuer;
    use crate::orchestration::lifecycle::test_support::Harness;

    async fn started(h: &Harness, template: &str) -> Uuid {
        let task = h.create(template).await;
        StepEnqueuer::new(h.pool().clone(), "test")
            .enqueue_for_task(task)
            .await
            .unwrap()
            .expect("picked up");
        task
    }

    #[tokio::test]
    async fn test_process_step_result_success() {
        let h = Harness::new().await;
        let task = started(&h, "linear").await;
        h.work("a", Ok(json!({"value": 36}))).await;
        let outcomes = h.process_results().await;
        assert!(
            matches!(
                &outcomes[..],
                [ResultOutcome::Processed { step_state: StepState::Complete, enqueued, task: FinalizeOutcome::NotFinished, .. }] if enqueued.len() == 1
            ),
            "{outcomes:?}"
        );
        assert_eq!(h.step_state(task, "a").await, "complete");
        assert_eq!(h.step_state(task, "b").await, "enqueued");
        assert_eq!(h.queued_steps().await, ["b"]);
        let results: Value = sqlx::query_scalar(
            "SELECT results FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'a'",
        )
        .bind(task)
        .fetch_one(h.pool())
        .await
        .unwrap();
        assert_eq!(results, json!({"value": 36}));
    }

    #[tokio::test]
    async fn test_result_processing_completes_the_task_after_the_last_step() {
        let h = Harness::new().await;
        let task = started(&h, "linear").await;
        for step in ["a", "b", "c"] {
            h.work(step, Ok(json!({}))).await;
            h.process_results().await;
        }
        assert_eq!(h.task_state(task).await, "complete");
        let completed_at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT completed_at FROM tasker.tasks WHERE task_uuid = $1")
                .bind(task)
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert!(completed_at.is_some());
    }

    #[tokio::test]
    async fn simultaneous_branch_results_enqueue_the_join_exactly_once() {
        let h = Harness::new().await;
        let task = started(&h, "diamond").await;
        h.work("start", Ok(json!({}))).await;
        h.process_results().await;
        h.work("left", Ok(json!({}))).await;
        h.work("right", Ok(json!({}))).await;
        let batch = h
            .results
            .read::<StepResultMessage>(h.pool(), std::time::Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!(batch.len(), 2);
        let (x, y) = tokio::join!(
            h.processor.process_message(&h.results, &batch[0]),
            h.processor.process_message(&h.results, &batch[1])
        );
        let enqueued: usize = [x.unwrap(), y.unwrap()]
            .iter()
            .map(|o| match o {
                ResultOutcome::Processed { enqueued, .. } => enqueued.len(),
                ResultOutcome::Ignored { .. } => 0,
            })
            .sum();
        assert_eq!(enqueued, 1);
        assert_eq!(h.queued_steps().await, ["end"]);
        assert_eq!(h.step_state(task, "end").await, "enqueued");
    }

    #[tokio::test]
    async fn a_retryable_failure_retries_and_exhaustion_blocks_the_task() {
        let h = Harness::new().await;
        let task = started(&h, "retrying").await;
        h.work("flaky", Err(StepError::retryable("boom"))).await;
        let outcomes = h.process_results().await;
        // backoff is zero, so the retry is enqueued straight away
        assert!(
            matches!(
                &outcomes[..],
                [ResultOutcome::Processed { step_state: StepState::WaitingForRetry, enqueued, retry_at: Some(_), .. }] if enqueued.len() == 1
            ),
            "{outcomes:?}"
        );
        assert_eq!(h.step_state(task, "flaky").await, "enqueued");

        h.work("flaky", Err(StepError::retryable("boom again")))
            .await;
        let outcomes = h.process_results().await;
        assert!(
            matches!(
                &outcomes[..],
                [ResultOutcome::Processed {
                    step_state: StepState::Error,
                    task: FinalizeOutcome::Blocked,
                    ..
                }]
            ),
            "{outcomes:?}"
        );
        assert_eq!(h.task_state(task).await, "blocked_by_failures");
        assert_eq!(h.step_state(task, "after").await, "pending");
        let last_error: Value = sqlx::query_scalar(
            "SELECT last_error FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'flaky'",
        )
        .bind(task)
        .fetch_one(h.pool())
        .await
        .unwrap();
        assert_eq!(last_error["message"], "boom again");
    }

    #[tokio::test]
    async fn a_permanent_failure_errors_the_step_without_retrying() {
        let h = Harness::new().await;
        let task = started(&h, "retrying").await;
        h.work("flaky", Err(StepError::permanent("bad input")))
            .await;
        h.process_results().await;
        assert_eq!(h.step_state(task, "flaky").await, "error");
        assert_eq!(h.task_state(task).await, "blocked_by_failures");
        assert!(h.queued_steps().await.is_empty());
    }

    #[tokio::test]
    async fn a_duplicate_result_changes_nothing() {
        let h = Harness::new().await;
        let task = started(&h, "linear").await;
        h.work("a", Ok(json!({"v": 1}))).await;
        let first = h
            .results
            .read::<StepResultMessage>(h.pool(), std::time::Duration::from_secs(30), 1)
            .await
            .unwrap()
            .remove(0);
        let copy = first.message.clone();
        h.processor
            .process_message(&h.results, &first)
            .await
            .unwrap();
        let transitions_before: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasker.workflow_step_transitions")
                .fetch_one(h.pool())
                .await
                .unwrap();

        let outcome = h.processor.process(&copy).await.unwrap();
        assert!(
            matches!(outcome, ResultOutcome::Ignored { .. }),
            "{outcome:?}"
        );
        let transitions_after: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasker.workflow_step_transitions")
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert_eq!(transitions_before, transitions_after);
        assert_eq!(h.queued_steps().await, ["b"], "b enqueued once, not twice");
        assert_eq!(h.task_state(task).await, "steps_in_process");
    }
}

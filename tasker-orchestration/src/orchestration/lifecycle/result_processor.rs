//! Result processing: a worker's step result moves the step to complete, waiting_for_retry or
//! error; the task is then re-evaluated in the same transaction: newly ready dependents are
//! enqueued, or the task is finalised.
//!
//! All of it is one call to `tasker.process_step_result`
//! (`tasker-shared/functions/50_orchestration.sql`), one round trip instead of nine. Results
//! for one task are processed one at a time (the task row is locked first), so two branches of a
//! diamond finishing together cannot both conclude "the other is still running" and leave the
//! join step unenqueued. A result that does not match the step's state (a duplicate or a late
//! message) changes nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::{Queue, QueueMessage, StepOutcome, StepResultMessage};
use tasker_shared::metrics::{STEP_FAILURES, STEP_RETRIES, TASKS_FINISHED, TASK_DURATION};
use tasker_shared::state::StepState;
use uuid::Uuid;

use super::task_finalizer::FinalizeOutcome;
use crate::error::{OrchestrationError, OrchestrationResult};

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

/// What `tasker.process_step_result` returns.
#[derive(sqlx::FromRow)]
struct ProcessedRow {
    ignored_reason: Option<String>,
    step_state: Option<String>,
    enqueued: Option<Vec<Uuid>>,
    task_outcome: Option<String>,
    next_retry_at: Option<DateTime<Utc>>,
    retry_at: Option<DateTime<Utc>>,
    namespace: Option<String>,
    task_age_seconds: Option<f64>,
}

/// Processes step results.
#[derive(Clone)]
pub struct ResultProcessor {
    pool: PgPool,
    processor: Arc<str>,
}

impl ResultProcessor {
    pub fn new(pool: PgPool, processor: &str) -> Self {
        Self {
            pool,
            processor: processor.into(),
        }
    }

    /// Processes a result; one statement, so one transaction.
    pub async fn process(&self, result: &StepResultMessage) -> OrchestrationResult<ResultOutcome> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .db_context("acquiring a connection for result processing")?;
        self.call(&mut conn, result, None).await
    }

    /// Processes a message claimed from the results queue and deletes it in the same
    /// statement, so a crash in between leaves the message to be processed again (and a
    /// replay finds the step already moved and is ignored).
    pub async fn process_message(
        &self,
        queue: &Queue,
        message: &QueueMessage<StepResultMessage>,
    ) -> OrchestrationResult<ResultOutcome> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .db_context("acquiring a connection for result processing")?;
        self.call(&mut conn, &message.message, Some((queue, message.msg_id)))
            .await
    }

    /// Processes a result on the caller's connection (inside its transaction, if any).
    pub async fn process_in(
        &self,
        conn: &mut PgConnection,
        result: &StepResultMessage,
    ) -> OrchestrationResult<ResultOutcome> {
        self.call(conn, result, None).await
    }

    async fn call(
        &self,
        conn: &mut PgConnection,
        result: &StepResultMessage,
        message: Option<(&Queue, i64)>,
    ) -> OrchestrationResult<ResultOutcome> {
        let outcome = match result.outcome {
            StepOutcome::Success => "success",
            StepOutcome::RetryableFailure => "retryable_failure",
            StepOutcome::PermanentFailure => "permanent_failure",
        };
        let row: ProcessedRow = sqlx::query_as(
            "SELECT * FROM tasker.process_step_result($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(result.task_uuid)
        .bind(result.workflow_step_uuid)
        .bind(result.attempt)
        .bind(outcome)
        .bind(result.error.as_ref())
        .bind(&*self.processor)
        .bind(message.map(|(queue, _)| queue.name()))
        .bind(message.map(|(_, msg_id)| msg_id))
        .fetch_one(&mut *conn)
        .await
        .db_context(format!(
            "processing the result of step {}",
            result.workflow_step_uuid
        ))?;
        outcome_of(row)
    }
}

/// One result of [`ResultProcessor::process_next`]: which message and step, and what
/// processing it did (an error leaves the message hidden until its visibility timeout).
#[derive(Debug)]
pub struct ProcessedMessage {
    pub msg_id: i64,
    pub workflow_step_uuid: Option<Uuid>,
    /// The namespace of the step's task (for the metrics), when the step was found.
    pub namespace: Option<String>,
    /// Seconds from the task's creation to now, when this result finished the task.
    pub task_age_seconds: Option<f64>,
    pub outcome: OrchestrationResult<ResultOutcome>,
}

impl ProcessedMessage {
    /// Counts what processing this result did: a retry scheduled, a step failed for good, a
    /// task finished (with its duration).
    pub fn record_metrics(&self) {
        let (
            Some(namespace),
            Ok(ResultOutcome::Processed {
                step_state, task, ..
            }),
        ) = (&self.namespace, &self.outcome)
        else {
            return;
        };
        match step_state {
            StepState::WaitingForRetry => {
                metrics::counter!(STEP_RETRIES, "namespace" => namespace.clone()).increment(1);
            }
            StepState::Error => {
                metrics::counter!(STEP_FAILURES, "namespace" => namespace.clone()).increment(1);
            }
            _ => {}
        }
        let finished = match task {
            FinalizeOutcome::Completed => "complete",
            FinalizeOutcome::Blocked => "blocked_by_failures",
            _ => return,
        };
        metrics::counter!(TASKS_FINISHED, "namespace" => namespace.clone(), "state" => finished)
            .increment(1);
        if let Some(age) = self.task_age_seconds {
            metrics::histogram!(TASK_DURATION, "namespace" => namespace.clone(), "state" => finished)
                .record(age);
        }
    }
}

#[derive(sqlx::FromRow)]
struct NextRow {
    msg_id: i64,
    workflow_step_uuid: Option<Uuid>,
    error: Option<String>,
    #[sqlx(flatten)]
    processed: ProcessedRow,
}

impl ResultProcessor {
    /// Claims up to `limit` messages from the results queue and processes them, in one round
    /// trip (`tasker.process_next_results`); each result is its own subtransaction there.
    pub async fn process_next(
        &self,
        queue: &Queue,
        visibility_timeout: std::time::Duration,
        limit: i32,
    ) -> OrchestrationResult<Vec<ProcessedMessage>> {
        self.process_next_on(&self.pool, queue, visibility_timeout, limit)
            .await
    }

    /// [`Self::process_next`] on the caller's connection (the orchestrator loop keeps one).
    pub async fn process_next_on<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        queue: &Queue,
        visibility_timeout: std::time::Duration,
        limit: i32,
    ) -> OrchestrationResult<Vec<ProcessedMessage>> {
        let rows: Vec<NextRow> =
            sqlx::query_as("SELECT * FROM tasker.process_next_results($1, $2, $3, $4)")
                .bind(queue.name())
                .bind(visibility_timeout.as_secs_f64())
                .bind(limit)
                .bind(&*self.processor)
                .fetch_all(executor)
                .await
                .db_context(format!("processing results from queue {}", queue.name()))?;
        Ok(rows
            .into_iter()
            .map(|row| ProcessedMessage {
                msg_id: row.msg_id,
                workflow_step_uuid: row.workflow_step_uuid,
                namespace: row.processed.namespace.clone(),
                task_age_seconds: row.processed.task_age_seconds,
                outcome: match row.error {
                    Some(reason) => Err(OrchestrationError::ResultFailed {
                        msg_id: row.msg_id,
                        queue: queue.name().to_owned(),
                        reason,
                    }),
                    None => outcome_of(row.processed),
                },
            })
            .collect())
    }
}

fn outcome_of(row: ProcessedRow) -> OrchestrationResult<ResultOutcome> {
    if let Some(reason) = row.ignored_reason {
        return Ok(ignored(&reason));
    }
    let step_state: StepState = row
        .step_state
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(tasker_shared::TaskerError::from)?;
    Ok(ResultOutcome::Processed {
        step_state,
        enqueued: row.enqueued.unwrap_or_default(),
        task: FinalizeOutcome::from_sql(row.task_outcome.as_deref(), row.next_retry_at),
        retry_at: row.retry_at,
    })
}

fn ignored(reason: &str) -> ResultOutcome {
    tracing::debug!(reason, "ignoring step result");
    ResultOutcome::Ignored {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use std::time::Duration;
    use tasker_shared::messaging::RESULTS_QUEUE;
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
    async fn test_a_failed_result_comes_back_soon_not_after_the_visibility_timeout() {
        let h = Harness::new().await;
        let task = started(&h, "linear").await;
        h.work("a", Ok(json!({"value": 36}))).await;
        // Another session holds the task row and this one gives up waiting for it: a failure
        // that succeeds when tried again.
        let mut blocker = h.pool().begin().await.unwrap();
        sqlx::query("SELECT 1 FROM tasker.tasks WHERE task_uuid = $1 FOR UPDATE")
            .bind(task)
            .execute(&mut *blocker)
            .await
            .unwrap();
        let mut conn = h.pool().acquire().await.unwrap();
        sqlx::query("SET lock_timeout = '100ms'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT msg_id, error FROM tasker.process_next_results($1, 30, 10, 'test')",
        )
        .bind(RESULTS_QUEUE)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        sqlx::query("RESET lock_timeout")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (msg_id, error) = &rows[0];
        assert!(
            error.as_deref().is_some_and(|e| e.contains("lock")),
            "{error:?}"
        );
        let hidden_for: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM vt - clock_timestamp())::float8
               FROM tasker.queue_messages WHERE msg_id = $1",
        )
        .bind(msg_id)
        .fetch_one(h.pool())
        .await
        .unwrap();
        assert!(
            hidden_for < 1.0,
            "hidden for {hidden_for} s after one failed read; the visibility timeout is 30 s"
        );
        blocker.rollback().await.unwrap();

        // Visible again a moment later, it is processed as if nothing had happened.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let processed = h
            .processor
            .process_next(
                &Queue::new(RESULTS_QUEUE).unwrap(),
                Duration::from_secs(30),
                10,
            )
            .await
            .unwrap();
        assert_eq!(processed.len(), 1);
        assert!(
            matches!(
                processed[0].outcome,
                Ok(ResultOutcome::Processed {
                    step_state: StepState::Complete,
                    ..
                })
            ),
            "{:?}",
            processed[0].outcome
        );
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

    #[tokio::test]
    async fn process_next_takes_a_batch_archives_junk_and_isolates_a_failing_result() {
        let h = Harness::new().await;
        let task = started(&h, "diamond").await;
        h.work("start", Ok(json!({"v": 1}))).await;
        h.results
            .send(h.pool(), &json!({"not": "a result"}))
            .await
            .unwrap();
        // a well-formed result whose processing fails in the database: the task is parked in
        // a state the state machine cannot finalise from, so finalising raises
        let other = started(&h, "linear").await;
        h.work("a", Err(StepError::permanent("no"))).await;
        sqlx::query("UPDATE tasker.tasks SET current_state = 'pending' WHERE task_uuid = $1")
            .bind(other)
            .execute(h.pool())
            .await
            .unwrap();

        let processed = h
            .processor
            .process_next(&h.results, std::time::Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!(processed.len(), 3, "{processed:?}");
        let junk = processed
            .iter()
            .find(|p| p.workflow_step_uuid.is_none())
            .expect("the junk message is reported");
        assert!(
            format!("{:?}", junk.outcome).contains("not a step result"),
            "{junk:?}"
        );
        let archived: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasker.queue_archive WHERE msg_id = $1")
                .bind(junk.msg_id)
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert_eq!(archived, 1);

        let failing_step = h.step_uuid(other, "a").await;
        let failing = processed
            .iter()
            .find(|p| p.workflow_step_uuid == Some(failing_step))
            .expect("the failing result is reported");
        let error = failing.outcome.as_ref().expect_err("finalising fails");
        assert!(
            error.to_string().contains("illegal task transition"),
            "{error}"
        );
        // rolled back on its own: the step is still waiting for orchestration, the message
        // still there (hidden until its visibility timeout)
        assert_eq!(
            h.step_state(other, "a").await,
            "enqueued_as_error_for_orchestration"
        );
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasker.queue_messages WHERE msg_id = $1")
                .bind(failing.msg_id)
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert_eq!(waiting, 1);

        // and the good result went through
        assert_eq!(h.step_state(task, "start").await, "complete");
        assert_eq!(h.queued_steps().await, ["left", "right"]);
    }
}

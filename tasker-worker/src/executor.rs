//! One step's cycle, in three phases that benchmarks can time separately: claim (the step
//! moves to in_progress and its inputs are loaded, one round trip; [`claim_next`] also reads
//! the messages in that round trip), execute (the handler, under
//! a timeout, with panics caught), submit (result stored, step moved on, result message sent
//! and the step message acknowledged, atomically, one round trip).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{PgExecutor, PgPool};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::{Queue, QueueMessage, StepMessage, StepOutcome, StepResultMessage};

use crate::error::WorkerResult;
use crate::handler::{StepContext, StepError};
use crate::registry::HandlerRegistry;

/// A step this worker now owns.
#[derive(Debug, Clone)]
pub struct ClaimedStep {
    pub queue: Queue,
    pub msg_id: i64,
    pub handler: String,
    /// The template's timeout for one run, if it set one.
    pub timeout: Option<Duration>,
    pub context: StepContext,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    task_uuid: uuid::Uuid,
    step_name: String,
    handler: String,
    configuration: Value,
    attempts: i32,
    timeout_ms: Option<i32>,
    task_context: Value,
    dependency_results: Value,
}

/// Claims the step a message names. A message whose step is not claimable (a duplicate, or a
/// step already finished) is deleted and `None` returned. A message seen before (`read_ct` >
/// 1) may take over a step left in progress by a worker whose visibility timeout ran out.
pub async fn claim(
    pool: &PgPool,
    queue: &Queue,
    message: &QueueMessage<StepMessage>,
    worker_id: &str,
) -> WorkerResult<Option<ClaimedStep>> {
    let step = message.message.workflow_step_uuid;
    let row: Option<ClaimRow> =
        sqlx::query_as("SELECT * FROM tasker.claim_step_for_execution($1, $2, $3)")
            .bind(step)
            .bind(worker_id)
            .bind(message.read_ct > 1)
            .fetch_optional(pool)
            .await
            .db_context(format!("claiming step {step}"))?;
    let Some(row) = row else {
        tracing::debug!(%step, "step not claimable; dropping its message");
        queue.delete(pool, message.msg_id).await?;
        return Ok(None);
    };
    Ok(Some(claimed_step(queue, message.msg_id, step, row)))
}

#[derive(sqlx::FromRow)]
struct ClaimNextRow {
    queue_name: String,
    msg_id: i64,
    workflow_step_uuid: uuid::Uuid,
    #[sqlx(flatten)]
    claim: ClaimRow,
}

/// Reads up to `limit` messages from `queues`, in that order (hidden for
/// `visibility_timeout`), and claims their steps, in one round trip
/// (`tasker.claim_next_steps`). Messages whose steps are not claimable are deleted on the way,
/// and ones that name no step archived. Fewer than `limit` steps back means every queue was
/// empty when it was read.
pub async fn claim_next<'e>(
    executor: impl PgExecutor<'e>,
    queues: &[Queue],
    visibility_timeout: Duration,
    limit: i32,
    worker_id: &str,
) -> WorkerResult<Vec<ClaimedStep>> {
    let names: Vec<&str> = queues.iter().map(Queue::name).collect();
    let rows: Vec<ClaimNextRow> =
        sqlx::query_as("SELECT * FROM tasker.claim_next_steps($1, $2, $3, $4)")
            .bind(&names)
            .bind(visibility_timeout.as_secs_f64())
            .bind(limit)
            .bind(worker_id)
            .fetch_all(executor)
            .await
            .db_context(format!("claiming steps from queues {}", names.join(", ")))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            // the function only returns names from the list it was given
            let queue = queues.iter().find(|q| q.name() == row.queue_name)?;
            Some(claimed_step(
                queue,
                row.msg_id,
                row.workflow_step_uuid,
                row.claim,
            ))
        })
        .collect())
}

fn claimed_step(queue: &Queue, msg_id: i64, step: uuid::Uuid, row: ClaimRow) -> ClaimedStep {
    let dependency_results: HashMap<String, Value> = match row.dependency_results {
        Value::Object(map) => map.into_iter().collect(),
        _ => HashMap::new(),
    };
    ClaimedStep {
        queue: queue.clone(),
        msg_id,
        handler: row.handler,
        timeout: row
            .timeout_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)),
        context: StepContext {
            task_uuid: row.task_uuid,
            workflow_step_uuid: step,
            step_name: row.step_name,
            attempt: row.attempts,
            task_context: row.task_context,
            step_config: row.configuration,
            dependency_results,
        },
    }
}

/// Runs the step's handler. A missing handler, a panic or a timeout is a failed result like
/// any other, never a dead worker.
pub async fn execute(
    registry: &HandlerRegistry,
    claimed: &ClaimedStep,
    default_timeout: Duration,
) -> Result<Value, StepError> {
    let Some(handler) = registry.get(&claimed.handler) else {
        return Err(StepError::permanent(format!(
            "no handler named `{}` is registered on this worker",
            claimed.handler
        )));
    };
    let timeout = claimed.timeout.unwrap_or(default_timeout);
    let context = Arc::new(claimed.context.clone());
    // a separate task, so a panic unwinds there and comes back as a JoinError
    let run = tokio::spawn(async move { handler.call(&context).await });
    let abort = run.abort_handle();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) if join_error.is_panic() => Err(StepError::retryable(format!(
            "handler `{}` panicked: {}",
            claimed.handler,
            panic_message(join_error.into_panic())
        ))),
        Ok(Err(join_error)) => Err(StepError::retryable(format!(
            "handler `{}` was cancelled: {join_error}",
            claimed.handler
        ))),
        Err(_elapsed) => {
            abort.abort();
            Err(StepError::retryable(format!(
                "handler `{}` did not finish within {} ms",
                claimed.handler,
                timeout.as_millis()
            )))
        }
    }
}

/// Stores the outcome and hands it to orchestration. Returns false when the step was taken
/// over by another worker in the meantime (this result is then dropped).
pub async fn submit(
    pool: &PgPool,
    claimed: &ClaimedStep,
    outcome: &Result<Value, StepError>,
    worker_id: &str,
) -> WorkerResult<bool> {
    let (success, results, error, step_outcome) = match outcome {
        Ok(value) => (true, Some(value.clone()), None, StepOutcome::Success),
        Err(e) => (
            false,
            None,
            Some(json!({ "message": e.message, "retryable": e.retryable, "details": e.details })),
            if e.retryable {
                StepOutcome::RetryableFailure
            } else {
                StepOutcome::PermanentFailure
            },
        ),
    };
    let message = StepResultMessage {
        task_uuid: claimed.context.task_uuid,
        workflow_step_uuid: claimed.context.workflow_step_uuid,
        attempt: claimed.context.attempt,
        outcome: step_outcome,
        error: error.clone(),
    };
    let message =
        serde_json::to_value(&message).map_err(|source| tasker_shared::TaskerError::Serde {
            what: "a step result message".into(),
            source,
        })?;
    let step = claimed.context.workflow_step_uuid;
    let accepted: bool =
        sqlx::query_scalar("SELECT tasker.submit_step_result($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(step)
            .bind(worker_id)
            .bind(success)
            .bind(results)
            .bind(error)
            .bind(message)
            .bind(claimed.queue.name())
            .bind(claimed.msg_id)
            .fetch_one(pool)
            .await
            .db_context(format!("submitting the result of step {step}"))?;
    Ok(accepted)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tasker_shared::messaging::namespace_queue_name;
    use tasker_shared::models::{insert_task_graph, NewTask};
    use tasker_shared::state::{transition_step, StepState};
    use tasker_shared::templates::{parse_template, register_template};
    use tasker_test_support::TestDatabase;
    use uuid::Uuid;

    use super::*;
    use crate::handler::StepHandler;

    const TEMPLATE: &str = "
namespace: executor
name: one
version: '1'
steps:
  - { name: only, handler: subject, timeout_seconds: 1 }
  - { name: child, handler: subject, depends_on: [only] }
";

    struct Fixture {
        db: TestDatabase,
        queue: Queue,
        step: Uuid,
    }

    /// A task whose first step is enqueued with its message on the queue.
    async fn fixture() -> Fixture {
        let db = TestDatabase::new().await;
        let template = parse_template(TEMPLATE, "test").unwrap();
        let registered = register_template(&db.pool, &template).await.unwrap();
        let created = insert_task_graph(
            &db.pool,
            &NewTask {
                named_task_uuid: registered.named_task_uuid,
                template: &template,
                context: &json!({"n": 3}),
                priority: 0,
                identity_hash: "x",
                initiator: None,
                source_system: None,
                reason: None,
                tags: None,
            },
            "test",
        )
        .await
        .unwrap();
        let step = created.step_uuids["only"];
        transition_step(
            &db.pool,
            step,
            &[StepState::Pending],
            StepState::Enqueued,
            "t",
            None,
        )
        .await
        .unwrap();
        let queue = Queue::new(&namespace_queue_name("executor")).unwrap();
        queue
            .send(
                &db.pool,
                &StepMessage {
                    task_uuid: created.task_uuid,
                    workflow_step_uuid: step,
                    attempt: 1,
                },
            )
            .await
            .unwrap();
        Fixture { db, queue, step }
    }

    async fn claimed(f: &Fixture) -> ClaimedStep {
        let message = f
            .queue
            .read::<StepMessage>(&f.db.pool, Duration::from_secs(30), 1)
            .await
            .unwrap()
            .remove(0);
        claim(&f.db.pool, &f.queue, &message, "w1")
            .await
            .unwrap()
            .expect("claimable")
    }

    fn registry(handler: impl StepHandler) -> HandlerRegistry {
        let mut registry = HandlerRegistry::new();
        registry.register("subject", handler);
        registry
    }

    struct Echo;
    #[async_trait::async_trait]
    impl StepHandler for Echo {
        async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
            Ok(json!({ "seen": step.task_context["n"], "attempt": step.attempt }))
        }
    }

    struct Panics;
    #[async_trait::async_trait]
    impl StepHandler for Panics {
        async fn call(&self, _: &StepContext) -> Result<Value, StepError> {
            panic!("handler bug")
        }
    }

    struct Sleeps;
    #[async_trait::async_trait]
    impl StepHandler for Sleeps {
        async fn call(&self, _: &StepContext) -> Result<Value, StepError> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!({}))
        }
    }

    #[tokio::test]
    async fn a_claim_moves_the_step_in_progress_and_loads_its_inputs() {
        let f = fixture().await;
        let claimed = claimed(&f).await;
        assert_eq!(claimed.handler, "subject");
        assert_eq!(claimed.timeout, Some(Duration::from_secs(1)));
        assert_eq!(claimed.context.attempt, 1);
        assert_eq!(claimed.context.task_context, json!({"n": 3}));
        assert!(claimed.context.dependency_results.is_empty());
        let state: String = sqlx::query_scalar(
            "SELECT current_state FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
        )
        .bind(f.step)
        .fetch_one(&f.db.pool)
        .await
        .unwrap();
        assert_eq!(state, "in_progress");
    }

    #[tokio::test]
    async fn a_second_message_for_a_claimed_step_is_dropped() {
        let f = fixture().await;
        let _first = claimed(&f).await;
        let dup = f
            .queue
            .send(
                &f.db.pool,
                &StepMessage {
                    task_uuid: _first.context.task_uuid,
                    workflow_step_uuid: f.step,
                    attempt: 1,
                },
            )
            .await
            .unwrap();
        let message = f
            .queue
            .read::<StepMessage>(&f.db.pool, Duration::from_secs(30), 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(message.msg_id, dup);
        assert!(claim(&f.db.pool, &f.queue, &message, "w2")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            f.queue.depth(&f.db.pool).await.unwrap(),
            1,
            "only the first message remains"
        );
    }

    #[tokio::test]
    async fn claim_next_fills_its_batch_across_queues_past_unclaimable_messages() {
        let f = fixture().await;
        let (task, child): (Uuid, Uuid) = sqlx::query_as(
            "SELECT task_uuid, workflow_step_uuid FROM tasker.workflow_steps
              WHERE task_uuid = (SELECT task_uuid FROM tasker.workflow_steps
                                  WHERE workflow_step_uuid = $1)
                AND name = 'child'",
        )
        .bind(f.step)
        .fetch_one(&f.db.pool)
        .await
        .unwrap();
        // behind the first step's message: a duplicate of it and a message naming no step
        let duplicate = StepMessage {
            task_uuid: task,
            workflow_step_uuid: f.step,
            attempt: 1,
        };
        f.queue.send(&f.db.pool, &duplicate).await.unwrap();
        f.queue
            .send(&f.db.pool, &json!({"not": "a step"}))
            .await
            .unwrap();
        // and the child's message on a second queue
        let other = Queue::new("other_queue").unwrap();
        other.create(&f.db.pool).await.unwrap();
        transition_step(
            &f.db.pool,
            child,
            &[StepState::Pending],
            StepState::Enqueued,
            "t",
            None,
        )
        .await
        .unwrap();
        let child_message = StepMessage {
            task_uuid: task,
            workflow_step_uuid: child,
            attempt: 1,
        };
        other.send(&f.db.pool, &child_message).await.unwrap();
        let queues = [f.queue.clone(), other.clone()];
        let vt = Duration::from_secs(30);

        let first = claim_next(&f.db.pool, &queues, vt, 1, "w1").await.unwrap();
        assert_eq!(first.len(), 1, "a full batch of one");
        assert_eq!(first[0].context.workflow_step_uuid, f.step);
        assert_eq!(first[0].queue.name(), f.queue.name());
        assert_eq!(first[0].context.attempt, 1);

        // the duplicate and the junk do not use up the batch: it goes on to the next queue
        let second = claim_next(&f.db.pool, &queues, vt, 1, "w1").await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].context.workflow_step_uuid, child);
        assert_eq!(second[0].queue.name(), "other_queue");
        assert_eq!(
            f.queue.depth(&f.db.pool).await.unwrap(),
            1,
            "only the claimed step's own message stays (hidden); the duplicate is deleted and the junk archived"
        );
        let archived: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasker.queue_archive WHERE queue_name = $1")
                .bind(f.queue.name())
                .fetch_one(&f.db.pool)
                .await
                .unwrap();
        assert_eq!(archived, 1);

        // both queues drained: a short (here empty) batch
        assert!(claim_next(&f.db.pool, &queues, vt, 4, "w1")
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn submitting_stores_the_result_acknowledges_and_reports() {
        let f = fixture().await;
        let claimed = claimed(&f).await;
        let outcome = execute(&registry(Echo), &claimed, Duration::from_secs(5)).await;
        assert_eq!(outcome, Ok(json!({"seen": 3, "attempt": 1})));
        assert!(submit(&f.db.pool, &claimed, &outcome, "w1").await.unwrap());
        let (state, results): (String, Value) = sqlx::query_as(
            "SELECT current_state, results FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
        )
        .bind(f.step)
        .fetch_one(&f.db.pool)
        .await
        .unwrap();
        assert_eq!(state, "enqueued_for_orchestration");
        assert_eq!(results, json!({"seen": 3, "attempt": 1}));
        assert_eq!(
            f.queue.depth(&f.db.pool).await.unwrap(),
            0,
            "step message acknowledged"
        );
        let results_queue = Queue::new(tasker_shared::messaging::RESULTS_QUEUE).unwrap();
        let reported = results_queue
            .read::<StepResultMessage>(&f.db.pool, Duration::from_secs(1), 10)
            .await
            .unwrap();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].message.outcome, StepOutcome::Success);
        // a second submission (a worker that lost the step) is refused
        assert!(!submit(&f.db.pool, &claimed, &outcome, "w1").await.unwrap());
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_retryable_failure() {
        let f = fixture().await;
        let claimed = claimed(&f).await;
        let err = execute(&registry(Panics), &claimed, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.retryable);
        assert!(err.message.contains("handler bug"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_handler_past_its_timeout_is_a_retryable_failure() {
        let f = fixture().await;
        let claimed = claimed(&f).await;
        // the template's 1 s timeout wins over the 60 s default
        let err = execute(&registry(Sleeps), &claimed, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(err.retryable);
        assert!(err.message.contains("1000 ms"), "{}", err.message);
    }

    #[tokio::test]
    async fn an_unregistered_handler_is_a_permanent_failure() {
        let f = fixture().await;
        let claimed = claimed(&f).await;
        let err = execute(&HandlerRegistry::new(), &claimed, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("`subject`"), "{}", err.message);
    }
}

//! One step's cycle, in three phases that benchmarks can time separately: claim (the step
//! moves to in_progress and its inputs are loaded, one round trip), execute (the handler, under
//! a timeout, with panics caught), submit (result stored, step moved on, result message sent
//! and the step message acknowledged, atomically, one round trip).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
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
    let dependency_results: HashMap<String, Value> = match row.dependency_results {
        Value::Object(map) => map.into_iter().collect(),
        _ => HashMap::new(),
    };
    Ok(Some(ClaimedStep {
        queue: queue.clone(),
        msg_id: message.msg_id,
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
    }))
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
    let message = serde_json::to_value(&message).map_err(|source| tasker_shared::TaskerError::Serde {
        what: "a step result message".into(),
        source,
    })?;
    let step = claimed.context.workflow_step_uuid;
    let accepted: bool = sqlx::query_scalar(
        "SELECT tasker.submit_step_result($1, $2, $3, $4, $5, $6, $7, $8)",
    )
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

//! Applying transitions in the database through the compare-and-swap SQL functions.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{StateError, StepState, TaskState};
use crate::error::{DbContext, TaskerError, TaskerResult};

/// Moves a task from `from` to `to`. Returns `Ok(true)` when this call made the transition and
/// `Ok(false)` when the task was no longer in `from` (a concurrent writer won); an illegal
/// pair is an error and touches nothing.
pub async fn transition_task<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
    from: TaskState,
    to: TaskState,
    processor: &str,
    metadata: Option<&Value>,
) -> TaskerResult<bool> {
    if !from.can_transition_to(to) {
        return Err(StateError::IllegalTaskTransition { from, to }.into());
    }
    sqlx::query_scalar::<_, bool>("SELECT tasker.transition_task_state_atomic($1, $2, $3, $4, $5)")
        .bind(task_uuid)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(processor)
        .bind(
            metadata
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
        )
        .fetch_one(executor)
        .await
        .db_context(format!("moving task {task_uuid} from {from} to {to}"))
}

/// Reads the task's current state, checks that `to` is legal from it, and moves it there.
/// Returns the state it left, or `None` when a concurrent writer moved it in between.
pub async fn transition_task_from_current(
    pool: &sqlx::PgPool,
    task_uuid: Uuid,
    to: TaskState,
    processor: &str,
    metadata: Option<&Value>,
) -> TaskerResult<Option<TaskState>> {
    let from = current_task_state(pool, task_uuid).await?;
    let moved = transition_task(pool, task_uuid, from, to, processor, metadata).await?;
    Ok(moved.then_some(from))
}

/// Moves a step to `to` from any of `from`. Returns the state it left, or `None` when it was in
/// none of them. Every listed starting state must allow the move, otherwise the call is
/// rejected as illegal before touching the database.
pub async fn transition_step<'e>(
    executor: impl PgExecutor<'e>,
    step_uuid: Uuid,
    from: &[StepState],
    to: StepState,
    processor: &str,
    metadata: Option<&Value>,
) -> TaskerResult<Option<StepState>> {
    if let Some(bad) = from.iter().find(|f| !f.can_transition_to(to)) {
        return Err(StateError::IllegalStepTransition { from: *bad, to }.into());
    }
    let from_names: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let previous: Option<String> =
        sqlx::query_scalar("SELECT tasker.transition_step_state_atomic($1, $2, $3, $4, $5)")
            .bind(step_uuid)
            .bind(&from_names)
            .bind(to.as_str())
            .bind(processor)
            .bind(
                metadata
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            )
            .fetch_one(executor)
            .await
            .db_context(format!("moving step {step_uuid} to {to}"))?;
    previous
        .map(|s| s.parse::<StepState>().map_err(TaskerError::from))
        .transpose()
}

/// The task's current state.
pub async fn current_task_state<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
) -> TaskerResult<TaskState> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT current_state FROM tasker.tasks WHERE task_uuid = $1")
            .bind(task_uuid)
            .fetch_optional(executor)
            .await
            .db_context(format!("reading the state of task {task_uuid}"))?;
    let state = state.ok_or_else(|| TaskerError::NotFound {
        kind: "task",
        id: task_uuid.to_string(),
    })?;
    Ok(state.parse()?)
}

/// The step's current state.
pub async fn current_step_state<'e>(
    executor: impl PgExecutor<'e>,
    step_uuid: Uuid,
) -> TaskerResult<StepState> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT current_state FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
    )
    .bind(step_uuid)
    .fetch_optional(executor)
    .await
    .db_context(format!("reading the state of step {step_uuid}"))?;
    let state = state.ok_or_else(|| TaskerError::NotFound {
        kind: "workflow step",
        id: step_uuid.to_string(),
    })?;
    Ok(state.parse()?)
}

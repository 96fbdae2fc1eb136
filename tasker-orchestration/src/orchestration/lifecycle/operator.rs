//! What an operator does to a task by hand: cancel it, resolve one of its steps with a
//! result, or retry a step that failed for good. Each is one call of a SQL function
//! (migration `20261127000013_operator_actions.sql`) in one transaction, and each records who
//! asked in the transitions it writes.

use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_shared::error::{DbContext, TaskerResult};
use tasker_shared::state::{StateError, StepState, TaskState};
use uuid::Uuid;

/// The `processor` of the transitions an operator action writes.
const PROCESSOR: &str = "operator";

/// Who asked for an action, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub initiator: Option<String>,
    pub reason: Option<String>,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Applied; the task is now in `task_state`.
    Done {
        task_state: TaskState,
    },
    /// Nothing to do: the task already is where the action would take it.
    Unchanged {
        task_state: TaskState,
    },
    NoTask,
    NoStep,
    /// The task, or the step, is in a state the action does not apply to.
    WrongState {
        task_state: TaskState,
        step_state: Option<StepState>,
    },
}

/// One row of the operator functions.
#[derive(sqlx::FromRow)]
struct ActionRow {
    outcome: String,
    task_state: Option<String>,
    step_state: Option<String>,
}

/// Cancels a task: steps not yet started never start; running steps finish and their
/// results are recorded without moving anything; the task ends `cancelled`.
pub async fn cancel_task(
    pool: &PgPool,
    task_uuid: Uuid,
    requester: &Requester,
) -> TaskerResult<ActionOutcome> {
    let row: ActionRow = sqlx::query_as(
        "SELECT outcome, task_state, NULL::text AS step_state FROM tasker.cancel_task($1, $2, $3)",
    )
    .bind(task_uuid)
    .bind(PROCESSOR)
    .bind(metadata("cancel", requester))
    .fetch_one(pool)
    .await
    .db_context(format!("cancelling task {task_uuid}"))?;
    outcome_of(row)
}

/// Resolves step `step_name` of a task with `results` as its result; its dependents go on
/// with that result.
pub async fn resolve_step(
    pool: &PgPool,
    task_uuid: Uuid,
    step_name: &str,
    results: &Value,
    requester: &Requester,
) -> TaskerResult<ActionOutcome> {
    let row: ActionRow = sqlx::query_as(
        "SELECT outcome, task_state, step_state FROM tasker.resolve_step($1, $2, $3, $4, $5)",
    )
    .bind(task_uuid)
    .bind(step_name)
    .bind(results)
    .bind(PROCESSOR)
    .bind(metadata("resolve", requester))
    .fetch_one(pool)
    .await
    .db_context(format!("resolving step {step_name} of task {task_uuid}"))?;
    outcome_of(row)
}

/// Retries step `step_name`, which failed for good, with a fresh attempt budget; a task
/// blocked by failures resumes.
pub async fn retry_step(
    pool: &PgPool,
    task_uuid: Uuid,
    step_name: &str,
    requester: &Requester,
) -> TaskerResult<ActionOutcome> {
    let row: ActionRow = sqlx::query_as(
        "SELECT outcome, task_state, step_state FROM tasker.retry_step($1, $2, $3, $4)",
    )
    .bind(task_uuid)
    .bind(step_name)
    .bind(PROCESSOR)
    .bind(metadata("retry", requester))
    .fetch_one(pool)
    .await
    .db_context(format!("retrying step {step_name} of task {task_uuid}"))?;
    outcome_of(row)
}

/// What the transitions of an action record: the action and who asked.
fn metadata(action: &str, requester: &Requester) -> Value {
    json!({
        "action": action,
        "initiator": requester.initiator,
        "reason": requester.reason,
    })
}

fn outcome_of(row: ActionRow) -> TaskerResult<ActionOutcome> {
    let task_state = row
        .task_state
        .as_deref()
        .map(str::parse::<TaskState>)
        .transpose()?;
    let step_state = row
        .step_state
        .as_deref()
        .map(str::parse::<StepState>)
        .transpose()?;
    let state = || task_state.ok_or_else(|| missing("task state with outcome", &row.outcome));
    Ok(match row.outcome.as_str() {
        "done" => ActionOutcome::Done {
            task_state: state()?,
        },
        "unchanged" => ActionOutcome::Unchanged {
            task_state: state()?,
        },
        "no_task" => ActionOutcome::NoTask,
        "no_step" => ActionOutcome::NoStep,
        "wrong_state" => ActionOutcome::WrongState {
            task_state: state()?,
            step_state,
        },
        other => return Err(missing("operator action outcome", other)),
    })
}

/// An answer the SQL functions never give: their outcome words and states are fixed.
fn missing(what: &'static str, outcome: &str) -> tasker_shared::TaskerError {
    StateError::UnknownState {
        kind: what,
        value: outcome.to_owned(),
    }
    .into()
}

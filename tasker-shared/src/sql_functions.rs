//! Typed wrappers for the orchestration SQL functions (see `tasker-shared/functions/` for
//! their semantics). Each is one round trip.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{DbContext, TaskerResult};

/// A task that needs orchestration attention.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ReadyTask {
    pub task_uuid: Uuid,
    pub task_state: String,
    pub priority: i32,
    pub namespace_name: String,
    pub task_name: String,
    pub task_version: String,
    pub ready_steps: i32,
    pub age_seconds: f64,
    pub created_at: DateTime<Utc>,
}

/// One step's readiness.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct StepReadiness {
    pub workflow_step_uuid: Uuid,
    pub task_uuid: Uuid,
    pub name: String,
    pub current_state: String,
    pub dependencies_satisfied: bool,
    pub retry_eligible: bool,
    pub ready_for_execution: bool,
    pub total_parents: i32,
    pub completed_parents: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_attempted_at: Option<DateTime<Utc>>,
}

/// What the steps of a task add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    HasReadySteps,
    Processing,
    BlockedByFailures,
    AllComplete,
    WaitingForDependencies,
}

impl ExecutionStatus {
    fn parse(s: &str) -> Self {
        match s {
            "has_ready_steps" => Self::HasReadySteps,
            "processing" => Self::Processing,
            "blocked_by_failures" => Self::BlockedByFailures,
            "all_complete" => Self::AllComplete,
            // the SQL function's only other value
            _ => Self::WaitingForDependencies,
        }
    }
}

/// The step counts and status columns of `tasker.get_task_execution_context`, for every
/// query that reads them (`#[sqlx(flatten)]` them into its row).
#[derive(Debug, Clone, FromRow)]
pub struct ExecutionContextColumns {
    pub total_steps: i32,
    pub pending_steps: i32,
    pub in_process_steps: i32,
    pub completed_steps: i32,
    pub failed_steps: i32,
    pub waiting_for_retry_steps: i32,
    pub ready_steps: i32,
    pub execution_status: String,
    pub completion_percentage: f64,
}

#[derive(Debug, FromRow)]
struct ExecutionContextRow {
    task_uuid: Uuid,
    task_state: String,
    recommended_action: String,
    #[sqlx(flatten)]
    columns: ExecutionContextColumns,
}

/// Step counts by state and the recommended next action for a task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskExecutionContext {
    pub task_uuid: Uuid,
    pub task_state: String,
    pub total_steps: i32,
    pub pending_steps: i32,
    pub in_process_steps: i32,
    pub completed_steps: i32,
    pub failed_steps: i32,
    pub waiting_for_retry_steps: i32,
    pub ready_steps: i32,
    pub execution_status: ExecutionStatus,
    pub recommended_action: String,
    pub completion_percentage: f64,
}

/// An ancestor of a step.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct StepDependency {
    pub workflow_step_uuid: Uuid,
    pub name: String,
    pub current_state: String,
    pub results: Option<Value>,
    pub processed: bool,
    pub distance: i32,
}

/// `tasker.get_next_ready_tasks(limit)`.
pub async fn get_next_ready_tasks<'e>(
    executor: impl PgExecutor<'e>,
    limit: i32,
) -> TaskerResult<Vec<ReadyTask>> {
    sqlx::query_as("SELECT * FROM tasker.get_next_ready_tasks($1)")
        .bind(limit)
        .fetch_all(executor)
        .await
        .db_context("finding ready tasks")
}

/// `tasker.get_step_readiness_status(task, steps)`; `None` means every step of the task.
pub async fn get_step_readiness_status<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
    step_uuids: Option<&[Uuid]>,
) -> TaskerResult<Vec<StepReadiness>> {
    sqlx::query_as("SELECT * FROM tasker.get_step_readiness_status($1, $2)")
        .bind(task_uuid)
        .bind(step_uuids)
        .fetch_all(executor)
        .await
        .db_context(format!("reading step readiness of task {task_uuid}"))
}

/// `tasker.transition_task_state_atomic(...)`, unchecked: prefer
/// [`crate::state::transition_task`], which rejects illegal transitions first.
pub async fn transition_task_state_atomic<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
    from_state: &str,
    to_state: &str,
    processor: &str,
    metadata: &Value,
) -> TaskerResult<bool> {
    sqlx::query_scalar("SELECT tasker.transition_task_state_atomic($1, $2, $3, $4, $5)")
        .bind(task_uuid)
        .bind(from_state)
        .bind(to_state)
        .bind(processor)
        .bind(metadata)
        .fetch_one(executor)
        .await
        .db_context(format!(
            "moving task {task_uuid} from {from_state} to {to_state}"
        ))
}

/// `tasker.get_task_execution_context(task)`; `None` when the task does not exist.
pub async fn get_task_execution_context<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
) -> TaskerResult<Option<TaskExecutionContext>> {
    let row: Option<ExecutionContextRow> =
        sqlx::query_as("SELECT * FROM tasker.get_task_execution_context($1)")
            .bind(task_uuid)
            .fetch_optional(executor)
            .await
            .db_context(format!("reading the execution context of task {task_uuid}"))?;
    Ok(row.map(|r| TaskExecutionContext {
        task_uuid: r.task_uuid,
        task_state: r.task_state,
        total_steps: r.columns.total_steps,
        pending_steps: r.columns.pending_steps,
        in_process_steps: r.columns.in_process_steps,
        completed_steps: r.columns.completed_steps,
        failed_steps: r.columns.failed_steps,
        waiting_for_retry_steps: r.columns.waiting_for_retry_steps,
        ready_steps: r.columns.ready_steps,
        execution_status: ExecutionStatus::parse(&r.columns.execution_status),
        recommended_action: r.recommended_action,
        completion_percentage: r.columns.completion_percentage,
    }))
}

/// `tasker.get_step_transitive_dependencies(step)`, nearest ancestors first.
pub async fn get_step_transitive_dependencies<'e>(
    executor: impl PgExecutor<'e>,
    step_uuid: Uuid,
) -> TaskerResult<Vec<StepDependency>> {
    sqlx::query_as("SELECT * FROM tasker.get_step_transitive_dependencies($1)")
        .bind(step_uuid)
        .fetch_all(executor)
        .await
        .db_context(format!("reading the ancestors of step {step_uuid}"))
}

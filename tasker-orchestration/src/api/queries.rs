//! The API's reads, each one statement (one round trip).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor};
use tasker_client::{StepCounts, StepDetails, TaskDetails, TaskSummary};
use tasker_shared::error::{DbContext, TaskerResult};
use tasker_shared::sql_functions::ExecutionContextColumns;
use uuid::Uuid;

#[derive(FromRow)]
struct TaskDetailsRow {
    task_uuid: Uuid,
    namespace: String,
    name: String,
    version: String,
    state: String,
    context: Value,
    priority: i32,
    initiator: Option<String>,
    source_system: Option<String>,
    reason: Option<String>,
    tags: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    execution: ExecutionContextColumns,
    steps: Json<Vec<StepDetails>>,
}

/// The task, its template's identity, the execution context (`get_task_execution_context`) and
/// every step, in template order. The steps come back as one jsonb array so that the whole
/// answer is a single statement, read from one snapshot.
pub async fn task_details<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
) -> TaskerResult<Option<TaskDetails>> {
    let row: Option<TaskDetailsRow> = sqlx::query_as(
        "SELECT t.task_uuid, ns.name AS namespace, nt.name, nt.version, t.current_state AS state,
                t.context, t.priority, t.initiator, t.source_system, t.reason, t.tags,
                t.created_at, t.updated_at, t.completed_at,
                ec.completion_percentage, ec.execution_status, ec.total_steps, ec.pending_steps,
                ec.in_process_steps, ec.completed_steps, ec.failed_steps,
                ec.waiting_for_retry_steps, ec.ready_steps,
                coalesce((
                    SELECT jsonb_agg(jsonb_build_object(
                               'workflow_step_uuid', s.workflow_step_uuid,
                               'name', s.name,
                               'handler', s.handler,
                               'state', s.current_state,
                               'attempts', s.attempts,
                               'max_attempts', s.max_attempts,
                               'retryable', s.retryable,
                               'results', s.results,
                               'last_error', s.last_error,
                               'last_attempted_at', s.last_attempted_at,
                               'processed_at', s.processed_at)
                           ORDER BY s.created_at, s.workflow_step_uuid)
                      FROM tasker.workflow_steps s
                     WHERE s.task_uuid = t.task_uuid), '[]'::jsonb) AS steps
           FROM tasker.tasks t
           JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
           JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
          CROSS JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) ec
          WHERE t.task_uuid = $1",
    )
    .bind(task_uuid)
    .fetch_optional(executor)
    .await
    .db_context(format!("reading task {task_uuid}"))?;
    Ok(row.map(|r| TaskDetails {
        task_uuid: r.task_uuid,
        namespace: r.namespace,
        name: r.name,
        version: r.version,
        state: r.state,
        context: r.context,
        priority: r.priority,
        initiator: r.initiator,
        source_system: r.source_system,
        reason: r.reason,
        tags: r.tags,
        created_at: r.created_at,
        updated_at: r.updated_at,
        completed_at: r.completed_at,
        completion_percentage: r.execution.completion_percentage,
        step_counts: StepCounts {
            total: r.execution.total_steps,
            pending: r.execution.pending_steps,
            in_process: r.execution.in_process_steps,
            completed: r.execution.completed_steps,
            failed: r.execution.failed_steps,
            waiting_for_retry: r.execution.waiting_for_retry_steps,
            ready: r.execution.ready_steps,
        },
        execution_status: r.execution.execution_status,
        steps: r.steps.0,
    }))
}

/// A task's current state, `None` when it does not exist (the long poll's cheap check).
pub async fn task_state<'e>(
    executor: impl PgExecutor<'e>,
    task_uuid: Uuid,
) -> TaskerResult<Option<String>> {
    sqlx::query_scalar("SELECT current_state FROM tasker.tasks WHERE task_uuid = $1")
        .bind(task_uuid)
        .fetch_optional(executor)
        .await
        .db_context(format!("reading the state of task {task_uuid}"))
}

/// Validated filters of the task listing.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter<'a> {
    pub state: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub limit: i64,
    pub offset: i64,
}

/// Tasks newest first. A null parameter disables its filter; `tasks_state_created_idx` serves
/// the state filter in order.
pub async fn list_tasks<'e>(
    executor: impl PgExecutor<'e>,
    filter: &TaskFilter<'_>,
) -> TaskerResult<Vec<TaskSummary>> {
    let rows: Vec<TaskSummaryRow> = sqlx::query_as(
        "SELECT t.task_uuid, ns.name AS namespace, nt.name, nt.version, t.current_state AS state,
                t.priority, t.created_at, t.updated_at, t.completed_at
           FROM tasker.tasks t
           JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
           JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
          WHERE ($1::text IS NULL OR t.current_state = $1)
            AND ($2::text IS NULL OR ns.name = $2)
            AND ($3::text IS NULL OR nt.name = $3)
          ORDER BY t.created_at DESC, t.task_uuid DESC
          LIMIT $4 OFFSET $5",
    )
    .bind(filter.state)
    .bind(filter.namespace)
    .bind(filter.name)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(executor)
    .await
    .db_context("listing tasks")?;
    Ok(rows.into_iter().map(TaskSummary::from).collect())
}

#[derive(FromRow)]
struct TaskSummaryRow {
    task_uuid: Uuid,
    namespace: String,
    name: String,
    version: String,
    state: String,
    priority: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl From<TaskSummaryRow> for TaskSummary {
    fn from(r: TaskSummaryRow) -> Self {
        Self {
            task_uuid: r.task_uuid,
            namespace: r.namespace,
            name: r.name,
            version: r.version,
            state: r.state,
            priority: r.priority,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
        }
    }
}

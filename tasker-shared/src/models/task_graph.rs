//! Writing a task with its steps, edges and initial transitions in a single statement.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{DbContext, TaskerResult};
use crate::templates::TaskTemplate;

/// What a new task is made of, besides its template.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub named_task_uuid: Uuid,
    pub template: &'a TaskTemplate,
    pub context: &'a Value,
    pub priority: i32,
    pub identity_hash: &'a str,
    pub initiator: Option<&'a str>,
    pub source_system: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub tags: Option<&'a Value>,
}

/// The ids of what [`insert_task_graph`] created.
#[derive(Debug, Clone)]
pub struct CreatedTask {
    pub task_uuid: Uuid,
    /// Step ids by step name.
    pub step_uuids: HashMap<String, Uuid>,
}

/// Inserts the task, one step per template step, the dependency edges and the initial
/// `pending` transitions. One statement (data-modifying CTEs with array parameters), so one
/// round trip whatever the size of the DAG; the foreign keys are checked at its end, when
/// every row exists.
pub async fn insert_task_graph<'e>(
    executor: impl PgExecutor<'e>,
    task: &NewTask<'_>,
    processor: &str,
) -> TaskerResult<CreatedTask> {
    let task_uuid = Uuid::now_v7();
    let steps = &task.template.steps;
    let step_uuids: Vec<Uuid> = steps.iter().map(|_| Uuid::now_v7()).collect();
    let by_name: HashMap<String, Uuid> = steps
        .iter()
        .zip(&step_uuids)
        .map(|(s, u)| (s.name.clone(), *u))
        .collect();

    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let handlers: Vec<&str> = steps.iter().map(|s| s.handler.as_str()).collect();
    let configs: Vec<&Value> = steps.iter().map(|s| &s.config).collect();
    let max_attempts: Vec<i32> = steps
        .iter()
        .map(|s| s.retry.max_attempts.min(i32::MAX as u32) as i32)
        .collect();
    let retryable: Vec<bool> = steps.iter().map(|s| s.retry.retryable).collect();
    let backoff_base: Vec<i32> = steps
        .iter()
        .map(|s| s.retry.backoff_base_ms.min(i32::MAX as u32) as i32)
        .collect();
    let backoff_max: Vec<i32> = steps
        .iter()
        .map(|s| s.retry.backoff_max_ms.min(i32::MAX as u32) as i32)
        .collect();
    let timeouts: Vec<Option<i32>> = steps
        .iter()
        .map(|s| {
            s.timeout_seconds
                .map(|t| t.saturating_mul(1000).min(i32::MAX as u32) as i32)
        })
        .collect();
    // Every parent of a new step is unfinished. Written here, the edges' recount trigger finds
    // the counts already right and leaves the rows alone instead of rewriting each child.
    let unfinished_parents: Vec<i32> = steps
        .iter()
        .map(|s| {
            s.depends_on
                .iter()
                .filter(|p| by_name.contains_key(*p))
                .count() as i32
        })
        .collect();
    // the template was validated, so every dependency names a step
    let (edge_from, edge_to): (Vec<Uuid>, Vec<Uuid>) = steps
        .iter()
        .zip(&step_uuids)
        .flat_map(|(s, child)| {
            s.depends_on
                .iter()
                .filter_map(|p| by_name.get(p).map(|parent| (*parent, *child)))
        })
        .unzip();

    sqlx::query(
        "WITH task AS (
             INSERT INTO tasker.tasks (task_uuid, named_task_uuid, context, priority, identity_hash,
                                       initiator, source_system, reason, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ), steps AS (
             INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, name, handler, configuration,
                                                max_attempts, retryable, backoff_base_ms, backoff_max_ms, timeout_ms,
                                                unfinished_parents)
             SELECT u, $1, n, h, c, m, r, bb, bm, t, p
               FROM unnest($10::uuid[], $11::text[], $12::text[], $13::jsonb[], $14::int[], $15::bool[],
                           $16::int[], $17::int[], $18::int[], $22::int[]) AS s(u, n, h, c, m, r, bb, bm, t, p)
         ), edges AS (
             INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
             SELECT f, t FROM unnest($19::uuid[], $20::uuid[]) AS e(f, t)
         ), task_transition AS (
             INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key, most_recent, processor)
             VALUES ($1, NULL, 'pending', 1, true, $21)
         )
         INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor)
         SELECT u, NULL, 'pending', 1, true, $21 FROM unnest($10::uuid[]) AS u",
    )
    .bind(task_uuid)
    .bind(task.named_task_uuid)
    .bind(task.context)
    .bind(task.priority)
    .bind(task.identity_hash)
    .bind(task.initiator)
    .bind(task.source_system)
    .bind(task.reason)
    .bind(task.tags)
    .bind(&step_uuids)
    .bind(&names)
    .bind(&handlers)
    .bind(&configs)
    .bind(&max_attempts)
    .bind(&retryable)
    .bind(&backoff_base)
    .bind(&backoff_max)
    .bind(&timeouts)
    .bind(&edge_from)
    .bind(&edge_to)
    .bind(processor)
    .bind(&unfinished_parents)
    .execute(executor)
    .await
    .db_context(format!(
        "creating a task from template {}/{} {}",
        task.template.namespace, task.template.name, task.template.version
    ))?;
    Ok(CreatedTask {
        task_uuid,
        step_uuids: by_name,
    })
}

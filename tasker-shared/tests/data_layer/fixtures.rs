//! Templates and step-driving helpers shared by the tests.

use std::collections::HashMap;

use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use tasker_shared::models::{insert_task_graph, NewTask};
use tasker_shared::state::{transition_step, StepState};
use tasker_shared::templates::{parse_template, register_template, TaskTemplate};
use uuid::Uuid;

pub const LINEAR: &str = "
namespace: tests
name: linear
version: 1.0.0
steps:
  - { name: a, handler: h }
  - { name: b, handler: h, depends_on: [a] }
  - { name: c, handler: h, depends_on: [b] }
  - { name: d, handler: h, depends_on: [c] }
";

pub const DIAMOND: &str = "
namespace: tests
name: diamond
version: 1.0.0
steps:
  - { name: start, handler: h }
  - { name: left, handler: h, depends_on: [start] }
  - { name: right, handler: h, depends_on: [start] }
  - { name: end, handler: h, depends_on: [left, right] }
";

/// Four levels with a step that has three parents across two levels.
pub const FOUR_LEVELS: &str = "
namespace: tests
name: four_levels
version: 1.0.0
steps:
  - { name: root, handler: h }
  - { name: l1a, handler: h, depends_on: [root] }
  - { name: l1b, handler: h, depends_on: [root] }
  - { name: l2, handler: h, depends_on: [l1a, l1b] }
  - { name: l3, handler: h, depends_on: [l2, l1b] }
";

pub const RETRYING: &str = "
namespace: tests
name: retrying
version: 1.0.0
steps:
  - name: flaky
    handler: h
    retry: { max_attempts: 2, backoff_base_ms: 300, backoff_max_ms: 300 }
  - { name: after, handler: h, depends_on: [flaky] }
";

/// A created task: its id and its steps by name.
pub struct Task {
    pub uuid: Uuid,
    pub steps: HashMap<String, Uuid>,
}

impl Task {
    pub fn step(&self, name: &str) -> Uuid {
        self.steps[name]
    }
}

pub fn template(yaml: &str) -> TaskTemplate {
    parse_template(yaml, "test template").expect("fixture template is valid")
}

/// Registers the template and creates one task from it.
pub async fn create_task(pool: &PgPool, yaml: &str) -> Task {
    let template = template(yaml);
    let registered = register_template(pool, &template).await.unwrap();
    let identity = Uuid::now_v7().to_string();
    insert_task(pool, registered.named_task_uuid, &template, &identity).await
}

/// Creates one task of a registered template through `executor` (a pool or a transaction).
pub async fn insert_task<'e>(
    executor: impl PgExecutor<'e>,
    named_task_uuid: Uuid,
    template: &TaskTemplate,
    identity_hash: &str,
) -> Task {
    let context = json!({"n": 1});
    let created = insert_task_graph(
        executor,
        &NewTask {
            named_task_uuid,
            template,
            context: &context,
            priority: 0,
            identity_hash,
            initiator: None,
            source_system: None,
            reason: None,
            tags: None,
        },
        "test",
    )
    .await
    .unwrap();
    Task {
        uuid: created.task_uuid,
        steps: created.step_uuids,
    }
}

/// Walks a step through enqueued and in_progress, recording one attempt.
pub async fn start_step(pool: &PgPool, step: Uuid) {
    use StepState::*;
    transition_step(
        pool,
        step,
        &[Pending, WaitingForRetry],
        Enqueued,
        "test",
        None,
    )
    .await
    .unwrap()
    .expect("step was pending");
    transition_step(pool, step, &[Enqueued], InProgress, "test", None)
        .await
        .unwrap()
        .expect("step was enqueued");
    sqlx::query(
        "UPDATE tasker.workflow_steps SET attempts = attempts + 1, last_attempted_at = now()
          WHERE workflow_step_uuid = $1",
    )
    .bind(step)
    .execute(pool)
    .await
    .unwrap();
}

/// Runs a step to completion with `results`.
pub async fn complete_step(pool: &PgPool, step: Uuid, results: serde_json::Value) {
    use StepState::*;
    start_step(pool, step).await;
    sqlx::query("UPDATE tasker.workflow_steps SET results = $2 WHERE workflow_step_uuid = $1")
        .bind(step)
        .bind(results)
        .execute(pool)
        .await
        .unwrap();
    transition_step(
        pool,
        step,
        &[InProgress],
        EnqueuedForOrchestration,
        "test",
        None,
    )
    .await
    .unwrap()
    .unwrap();
    transition_step(
        pool,
        step,
        &[EnqueuedForOrchestration],
        Complete,
        "test",
        None,
    )
    .await
    .unwrap()
    .unwrap();
}

/// Runs a step and fails it; `retry_in_ms` is the backoff (None: the failure is final).
pub async fn fail_step(pool: &PgPool, step: Uuid, retry_in_ms: Option<i64>) {
    use StepState::*;
    start_step(pool, step).await;
    transition_step(
        pool,
        step,
        &[InProgress],
        EnqueuedAsErrorForOrchestration,
        "test",
        None,
    )
    .await
    .unwrap()
    .unwrap();
    match retry_in_ms {
        Some(ms) => {
            sqlx::query(
                "UPDATE tasker.workflow_steps
                    SET next_retry_at = now() + make_interval(secs => $2::float8 / 1000)
                  WHERE workflow_step_uuid = $1",
            )
            .bind(step)
            .bind(ms as f64)
            .execute(pool)
            .await
            .unwrap();
            transition_step(
                pool,
                step,
                &[EnqueuedAsErrorForOrchestration],
                WaitingForRetry,
                "test",
                None,
            )
            .await
            .unwrap()
            .unwrap();
        }
        None => {
            transition_step(
                pool,
                step,
                &[EnqueuedAsErrorForOrchestration],
                Error,
                "test",
                None,
            )
            .await
            .unwrap()
            .unwrap();
        }
    }
}

/// Names of the steps that are ready now, sorted.
pub async fn ready_names(pool: &PgPool, task: &Task) -> Vec<String> {
    let mut names: Vec<String> =
        tasker_shared::sql_functions::get_step_readiness_status(pool, task.uuid, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.ready_for_execution)
            .map(|s| s.name)
            .collect();
    names.sort();
    names
}

//! Tasks for the component benchmarks: templates registered, tasks created the way the task
//! initializer writes them, steps moved along legal histories, and the cleanup between
//! samples.

use serde_json::Value;
use sqlx::PgPool;
use tasker_shared::models::{insert_task_graph, CreatedTask, NewTask};
use tasker_shared::state::StepState;
use tasker_shared::templates::{register_template, TaskTemplate};
use uuid::Uuid;

/// Registers `template` (and its namespace queue) and returns its named task id.
pub async fn register(pool: &PgPool, template: &TaskTemplate) -> Uuid {
    register_template(pool, template)
        .await
        .unwrap_or_else(|e| panic!("registering template {}: {e}", template.name))
        .named_task_uuid
}

/// Creates `count` fresh (pending) tasks from a registered template, the way the task
/// initializer writes them (`insert_task_graph`), several at a time over the pool.
pub async fn create_tasks(
    pool: &PgPool,
    named_task_uuid: Uuid,
    template: &TaskTemplate,
    count: usize,
    context: &Value,
) -> Vec<CreatedTask> {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|_| async move {
            let identity = Uuid::now_v7().to_string();
            insert_task_graph(
                pool,
                &NewTask {
                    named_task_uuid,
                    template,
                    context,
                    priority: 0,
                    identity_hash: &identity,
                    initiator: Some("benchmark"),
                    source_system: None,
                    reason: None,
                    tags: None,
                },
                "bench_setup",
            )
            .await
            .unwrap_or_else(|e| panic!("creating a {} task: {e}", template.name))
        })
        .buffered(8)
        .collect()
        .await
}

/// Deletes tasks; their steps, edges and transition histories go with them (ON DELETE CASCADE).
pub async fn delete_tasks(pool: &PgPool, tasks: &[Uuid]) {
    sqlx::query("DELETE FROM tasker.tasks WHERE task_uuid = ANY ($1)")
        .bind(tasks)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("deleting benchmark tasks: {e}"));
}

/// Deletes every live message of a queue.
pub async fn purge_queue(pool: &PgPool, queue_name: &str) {
    sqlx::query("DELETE FROM tasker.queue_messages WHERE queue_name = $1")
        .bind(queue_name)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("purging queue {queue_name}: {e}"));
}

/// Moves steps along `path` (each entry one batch transition of all of them) with the
/// `transition_steps_atomic` SQL function the enqueuer uses: setup for benchmarks that need
/// steps in a given state with a legal history. Steps that reach `in_progress` count an attempt.
pub async fn advance_steps(pool: &PgPool, steps: &[Uuid], path: &[StepState]) {
    let mut from = StepState::Pending;
    for to in path {
        assert!(
            from.can_transition_to(*to),
            "advance_steps: {from} -> {to} is illegal"
        );
        let moved = transition_all(pool, steps, from, *to, "advance_steps").await;
        assert_eq!(
            moved.len(),
            steps.len(),
            "advance_steps: not every step was in {from}"
        );
        if *to == StepState::InProgress {
            sqlx::query(
                "UPDATE tasker.workflow_steps SET attempts = attempts + 1, last_attempted_at = now()
                  WHERE workflow_step_uuid = ANY ($1)",
            )
            .bind(steps)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("advance_steps: counting the attempt: {e}"));
        }
        from = *to;
    }
}

/// Completes pending steps the way a successful run does (enqueued, in progress, result
/// stored, enqueued for orchestration, complete), in batches over all of them.
pub async fn complete_steps(pool: &PgPool, steps: &[Uuid]) {
    use StepState::*;
    advance_steps(pool, steps, &[Enqueued, InProgress]).await;
    sqlx::query(
        "UPDATE tasker.workflow_steps SET results = jsonb_build_object('result', 1, 'step', name)
          WHERE workflow_step_uuid = ANY ($1)",
    )
    .bind(steps)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("complete_steps: storing results: {e}"));
    let mut from = InProgress;
    for to in [EnqueuedForOrchestration, Complete] {
        let moved = transition_all(pool, steps, from, to, "complete_steps").await;
        assert_eq!(moved.len(), steps.len());
        from = to;
    }
}

/// One batch transition of `steps` from `from` to `to`; returns the steps that moved.
async fn transition_all(
    pool: &PgPool,
    steps: &[Uuid],
    from: StepState,
    to: StepState,
    caller: &str,
) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT * FROM tasker.transition_steps_atomic($1, $2, $3, 'bench_setup')")
        .bind(steps)
        .bind(&[from.as_str()][..])
        .bind(to.as_str())
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{caller} {from} -> {to}: {e}"))
}

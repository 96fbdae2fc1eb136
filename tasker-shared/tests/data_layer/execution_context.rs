//! get_task_execution_context for each execution status.

use serde_json::json;
use tasker_shared::sql_functions::{get_task_execution_context, ExecutionStatus};
use tasker_shared::state::{transition_step, StepState};
use tasker_test_support::TestDatabase;
use uuid::Uuid;

use crate::fixtures::*;

async fn status(pool: &sqlx::PgPool, task: Uuid) -> (ExecutionStatus, String, i32) {
    let ctx = get_task_execution_context(pool, task)
        .await
        .unwrap()
        .expect("task exists");
    (
        ctx.execution_status,
        ctx.recommended_action,
        ctx.ready_steps,
    )
}

#[tokio::test]
async fn every_execution_status_is_reported() {
    let db = TestDatabase::new().await;
    let pool = &db.pool;
    let task = create_task(pool, DIAMOND).await;

    assert_eq!(
        status(pool, task.uuid).await,
        (
            ExecutionStatus::HasReadySteps,
            "execute_ready_steps".into(),
            1
        )
    );

    // start is running: nothing ready, something in process
    transition_step(
        pool,
        task.step("start"),
        &[StepState::Pending],
        StepState::Enqueued,
        "t",
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        status(pool, task.uuid).await,
        (ExecutionStatus::Processing, "wait_for_completion".into(), 0)
    );
    transition_step(
        pool,
        task.step("start"),
        &[StepState::Enqueued],
        StepState::Pending,
        "t",
        None,
    )
    .await
    .unwrap()
    .unwrap();

    complete_step(pool, task.step("start"), json!({})).await;
    complete_step(pool, task.step("left"), json!({})).await;
    // right waits out a backoff: nothing ready, nothing running, nothing failed for good
    fail_step(pool, task.step("right"), Some(60_000)).await;
    assert_eq!(
        status(pool, task.uuid).await,
        (
            ExecutionStatus::WaitingForDependencies,
            "wait_for_dependencies".into(),
            0
        )
    );

    let blocked = create_task(pool, DIAMOND).await;
    complete_step(pool, blocked.step("start"), json!({})).await;
    complete_step(pool, blocked.step("left"), json!({})).await;
    fail_step(pool, blocked.step("right"), None).await;
    let ctx = get_task_execution_context(pool, blocked.uuid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.execution_status, ExecutionStatus::BlockedByFailures);
    assert_eq!(ctx.recommended_action, "handle_failures");
    assert_eq!(
        (ctx.failed_steps, ctx.completed_steps, ctx.total_steps),
        (1, 2, 4)
    );

    let done = create_task(pool, LINEAR).await;
    for step in ["a", "b", "c", "d"] {
        complete_step(pool, done.step(step), json!({})).await;
    }
    let ctx = get_task_execution_context(pool, done.uuid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.execution_status, ExecutionStatus::AllComplete);
    assert_eq!(ctx.recommended_action, "finalize_task");
    assert_eq!(ctx.completion_percentage, 100.0);
}

#[tokio::test]
async fn unknown_task_has_no_context() {
    let db = TestDatabase::new().await;
    assert!(get_task_execution_context(&db.pool, Uuid::now_v7())
        .await
        .unwrap()
        .is_none());
}

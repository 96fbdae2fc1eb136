//! get_step_readiness_status and get_next_ready_tasks as parents complete and steps fail.

use serde_json::json;
use tasker_shared::sql_functions::{get_next_ready_tasks, get_step_readiness_status};
use tasker_test_support::TestDatabase;

use crate::fixtures::*;

#[tokio::test]
async fn linear_steps_become_ready_one_at_a_time() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, LINEAR).await;
    for (done, next) in [("a", "b"), ("b", "c"), ("c", "d")] {
        assert_eq!(ready_names(&db.pool, &task).await, [done]);
        complete_step(&db.pool, task.step(done), json!({})).await;
        assert_eq!(ready_names(&db.pool, &task).await, [next]);
    }
    complete_step(&db.pool, task.step("d"), json!({})).await;
    assert!(ready_names(&db.pool, &task).await.is_empty());
}

#[tokio::test]
async fn diamond_end_waits_for_both_branches() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, DIAMOND).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["start"]);
    complete_step(&db.pool, task.step("start"), json!({})).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["left", "right"]);
    complete_step(&db.pool, task.step("left"), json!({})).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["right"]);

    let end = get_step_readiness_status(&db.pool, task.uuid, Some(&[task.step("end")]))
        .await
        .unwrap();
    assert_eq!(end.len(), 1, "the step filter returns only the asked step");
    assert_eq!((end[0].total_parents, end[0].completed_parents), (2, 1));
    assert!(!end[0].dependencies_satisfied);

    complete_step(&db.pool, task.step("right"), json!({})).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["end"]);
}

#[tokio::test]
async fn a_step_with_parents_on_two_levels_needs_all_of_them() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, FOUR_LEVELS).await;
    for step in ["root", "l1a", "l1b"] {
        complete_step(&db.pool, task.step(step), json!({})).await;
    }
    assert_eq!(ready_names(&db.pool, &task).await, ["l2"]);
    let l3 = get_step_readiness_status(&db.pool, task.uuid, Some(&[task.step("l3")]))
        .await
        .unwrap();
    assert_eq!((l3[0].total_parents, l3[0].completed_parents), (2, 1));
    complete_step(&db.pool, task.step("l2"), json!({})).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["l3"]);
}

#[tokio::test]
async fn a_failed_step_is_ready_again_only_after_its_backoff() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, RETRYING).await;
    let flaky = task.step("flaky");
    fail_step(&db.pool, flaky, Some(400)).await;

    let status = get_step_readiness_status(&db.pool, task.uuid, Some(&[flaky]))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(status.current_state, "waiting_for_retry");
    assert!(status.retry_eligible, "1 of 2 attempts used");
    assert!(status.next_retry_at.is_some());
    assert!(!status.ready_for_execution, "backoff has not passed yet");
    assert!(ready_names(&db.pool, &task).await.is_empty());

    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["flaky"]);
}

#[tokio::test]
async fn a_step_at_max_attempts_is_never_ready() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, RETRYING).await;
    let flaky = task.step("flaky");
    fail_step(&db.pool, flaky, Some(0)).await;
    assert_eq!(ready_names(&db.pool, &task).await, ["flaky"]);
    // second and last attempt fails too; even with its backoff over it stays unready
    fail_step(&db.pool, flaky, Some(0)).await;
    let status = get_step_readiness_status(&db.pool, task.uuid, Some(&[flaky]))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(status.attempts, 2);
    assert!(!status.retry_eligible);
    assert!(!status.ready_for_execution);
}

#[tokio::test]
async fn next_ready_tasks_orders_by_priority_then_age_and_skips_unready() {
    let db = TestDatabase::new().await;
    let low = create_task(&db.pool, LINEAR).await;
    let high = create_task(&db.pool, DIAMOND).await;
    let blocked = create_task(&db.pool, RETRYING).await;
    sqlx::query("UPDATE tasker.tasks SET priority = 5 WHERE task_uuid = $1")
        .bind(high.uuid)
        .execute(&db.pool)
        .await
        .unwrap();
    // the retrying task's only root step is waiting out a long backoff: nothing is ready
    fail_step(&db.pool, blocked.step("flaky"), Some(60_000)).await;

    let ready = get_next_ready_tasks(&db.pool, 10).await.unwrap();
    let order: Vec<_> = ready.iter().map(|r| r.task_uuid).collect();
    assert_eq!(order, [high.uuid, low.uuid]);
    assert_eq!(ready[0].ready_steps, 1);
    assert_eq!(ready[0].namespace_name, "tests");
    assert_eq!(ready[0].task_name, "diamond");

    let limited = get_next_ready_tasks(&db.pool, 1).await.unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].task_uuid, high.uuid);
}

/// Each step's stored count of unfinished parents beside a recount from its edges, by name.
async fn parent_counts(pool: &sqlx::PgPool, task: &Task) -> Vec<(String, i32, i64)> {
    sqlx::query_as(
        "SELECT s.name, s.unfinished_parents,
                (SELECT count(*) FROM tasker.workflow_step_edges e
                   JOIN tasker.workflow_steps p ON p.workflow_step_uuid = e.from_step_uuid
                  WHERE e.to_step_uuid = s.workflow_step_uuid
                    AND p.current_state NOT IN ('complete', 'resolved_manually'))
           FROM tasker.workflow_steps s WHERE s.task_uuid = $1 ORDER BY s.name",
    )
    .bind(task.uuid)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The stored counts, after checking every one against the recount.
async fn stored_counts(pool: &sqlx::PgPool, task: &Task) -> Vec<(String, i32)> {
    parent_counts(pool, task)
        .await
        .into_iter()
        .map(|(name, stored, recounted)| {
            assert_eq!(i64::from(stored), recounted, "{name}: stored count drifted");
            (name, stored)
        })
        .collect()
}

fn counts(expected: &[(&str, i32)]) -> Vec<(String, i32)> {
    expected.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[tokio::test]
async fn unfinished_parent_counts_follow_completion_failure_and_manual_resolution() {
    use tasker_shared::state::{transition_step, StepState};
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, FOUR_LEVELS).await;
    let mut expected = [("l1a", 1), ("l1b", 1), ("l2", 2), ("l3", 2), ("root", 0)];
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));

    complete_step(&db.pool, task.step("root"), json!({})).await;
    expected[0].1 = 0;
    expected[1].1 = 0;
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));

    // a final failure finishes nothing; resolving the step by hand does
    fail_step(&db.pool, task.step("l1a"), None).await;
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));
    transition_step(
        &db.pool,
        task.step("l1a"),
        &[StepState::Error],
        StepState::ResolvedManually,
        "test",
        None,
    )
    .await
    .unwrap()
    .expect("the step was in error");
    expected[2].1 = 1;
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));

    complete_step(&db.pool, task.step("l1b"), json!({})).await;
    expected[2].1 = 0;
    expected[3].1 = 1;
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));
    assert_eq!(ready_names(&db.pool, &task).await, ["l2"]);

    // a state written by hand back across the line is counted again
    sqlx::query(
        "UPDATE tasker.workflow_steps SET current_state = 'pending' WHERE workflow_step_uuid = $1",
    )
    .bind(task.step("l1b"))
    .execute(&db.pool)
    .await
    .unwrap();
    expected[2].1 = 1;
    expected[3].1 = 2;
    assert_eq!(stored_counts(&db.pool, &task).await, counts(&expected));
}

#[tokio::test]
async fn deleting_a_task_leaves_the_other_tasks_counts_alone() {
    let db = TestDatabase::new().await;
    let gone = create_task(&db.pool, DIAMOND).await;
    let kept = create_task(&db.pool, DIAMOND).await;
    complete_step(&db.pool, kept.step("start"), json!({})).await;
    sqlx::query("DELETE FROM tasker.tasks WHERE task_uuid = $1")
        .bind(gone.uuid)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(parent_counts(&db.pool, &gone).await.is_empty());
    assert_eq!(
        stored_counts(&db.pool, &kept).await,
        counts(&[("end", 2), ("left", 0), ("right", 0), ("start", 0)])
    );
    assert_eq!(ready_names(&db.pool, &kept).await, ["left", "right"]);
}

#[tokio::test]
async fn a_new_task_is_written_with_its_counts_and_not_rewritten_by_the_recount() {
    let db = TestDatabase::new().await;
    let template = template(FOUR_LEVELS);
    let registered = tasker_shared::templates::register_template(&db.pool, &template)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let task = insert_task(&mut *tx, registered.named_task_uuid, &template, "counts").await;
    // this transaction's own statistics: the creating statement's recount found every count
    // already right and updated no step row
    let (inserted, updated): (i64, i64) = sqlx::query_as(
        "SELECT n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables
          WHERE schemaname = 'tasker' AND relname = 'workflow_steps'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((inserted, updated), (5, 0));
    // and the counts are the recount's, parents on two levels included
    for (name, stored, recounted) in parent_counts(&db.pool, &task).await {
        assert_eq!(stored as i64, recounted, "step {name}");
    }
    assert_eq!(
        stored_counts(&db.pool, &task).await,
        counts(&[("l1a", 1), ("l1b", 1), ("l2", 2), ("l3", 2), ("root", 0)])
    );
}

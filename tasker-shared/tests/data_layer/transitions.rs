//! The state machines against the database: legal moves persist one transition row, illegal
//! ones are typed errors, and concurrent writers get exactly one winner.

use tasker_shared::state::{
    current_task_state, transition_step, transition_task, transition_task_from_current, StateError,
    StepState, TaskState,
};
use tasker_shared::TaskerError;
use tasker_test_support::TestDatabase;

use crate::fixtures::*;

#[tokio::test]
async fn a_transition_moves_the_state_and_appends_one_history_row() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, LINEAR).await;
    let moved = transition_task(
        &db.pool,
        task.uuid,
        TaskState::Pending,
        TaskState::EnqueuingSteps,
        "test",
        Some(&serde_json::json!({"why": "test"})),
    )
    .await
    .unwrap();
    assert!(moved);
    assert_eq!(
        current_task_state(&db.pool, task.uuid).await.unwrap(),
        TaskState::EnqueuingSteps
    );
    assert_eq!(
        task_history(&db.pool, task.uuid).await,
        [
            (None, "pending".to_string(), 1, false),
            (
                Some("pending".to_string()),
                "enqueuing_steps".to_string(),
                2,
                true
            ),
        ]
    );
}

#[tokio::test]
async fn illegal_transitions_are_errors_and_change_nothing() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, LINEAR).await;
    let err = transition_task_from_current(&db.pool, task.uuid, TaskState::Complete, "test", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskerError::State(StateError::IllegalTaskTransition {
                from: TaskState::Pending,
                to: TaskState::Complete
            })
        ),
        "{err}"
    );
    let step_err = transition_step(
        &db.pool,
        task.step("a"),
        &[StepState::Pending],
        StepState::Complete,
        "test",
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(
        step_err,
        TaskerError::State(StateError::IllegalStepTransition { .. })
    ));
    assert_eq!(
        current_task_state(&db.pool, task.uuid).await.unwrap(),
        TaskState::Pending
    );
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1",
    )
    .bind(task.step("a"))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows, 1, "only the initial transition");
}

#[tokio::test]
async fn concurrent_compare_and_swap_has_exactly_one_winner() {
    let db = TestDatabase::new().await;
    for _round in 0..5 {
        let task = create_task(&db.pool, LINEAR).await;
        let contenders = (0..8).map(|i| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                transition_task(
                    &pool,
                    task.uuid,
                    TaskState::Pending,
                    TaskState::EnqueuingSteps,
                    &format!("contender-{i}"),
                    None,
                )
                .await
                .unwrap()
            })
        });
        let results = futures::future::join_all(contenders).await;
        let winners = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(winners, 1);
        let (rows, current): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE most_recent) FROM tasker.task_transitions
              WHERE task_uuid = $1",
        )
        .bind(task.uuid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((rows, current), (2, 1));
    }
}

#[tokio::test]
async fn concurrent_step_claims_have_exactly_one_winner() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, LINEAR).await;
    let step = task.step("a");
    let claims = (0..8).map(|_| {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            transition_step(
                &pool,
                step,
                &[StepState::Pending],
                StepState::Enqueued,
                "w",
                None,
            )
            .await
            .unwrap()
        })
    });
    let won: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(won, [StepState::Pending]);
}

#[tokio::test]
async fn the_state_column_always_matches_the_most_recent_transition() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, DIAMOND).await;
    complete_step(&db.pool, task.step("start"), serde_json::json!({})).await;
    fail_step(&db.pool, task.step("left"), Some(10)).await;
    let mismatches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasker.workflow_steps s
           JOIN tasker.workflow_step_transitions t
             ON t.workflow_step_uuid = s.workflow_step_uuid AND t.most_recent
          WHERE s.current_state <> t.to_state",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(mismatches, 0);
}

/// The database's own vocabulary check (enum types behind the CHECK constraints) knows exactly
/// the states the Rust state machines use, and refuses anything else without writing.
#[tokio::test]
async fn the_database_refuses_states_outside_the_state_machines_and_out_of_range_limits() {
    let db = TestDatabase::new().await;
    let labels = |ty: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Vec<String>>(&format!(
                "SELECT enum_range(NULL::tasker.{ty})::text[]"
            ))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let rust_tasks: Vec<String> = TaskState::ALL.iter().map(|s| s.as_str().into()).collect();
    let rust_steps: Vec<String> = StepState::ALL.iter().map(|s| s.as_str().into()).collect();
    assert_eq!(labels("task_state").await, rust_tasks);
    assert_eq!(labels("step_state").await, rust_steps);

    let task = create_task(&db.pool, LINEAR).await;
    let err = sqlx::query_scalar::<_, bool>(
        "SELECT tasker.transition_task_state_atomic($1, 'pending', 'finished', 'test')",
    )
    .bind(task.uuid)
    .fetch_one(&db.pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid input value for enum tasker.task_state: \"finished\""),
        "{err}"
    );
    assert_eq!(
        current_task_state(&db.pool, task.uuid).await.unwrap(),
        TaskState::Pending
    );

    let step = task.step("a");
    let err = sqlx::query(
        "UPDATE tasker.workflow_steps SET current_state = 'done' WHERE workflow_step_uuid = $1",
    )
    .bind(step)
    .execute(&db.pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid input value for enum tasker.step_state: \"done\""),
        "{err}"
    );
    let history_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $1")
            .bind(task.uuid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(history_rows, 1, "the refused transition wrote no history");

    // the step limits are domains now; an update that sets one is still checked
    for (column, value, domain) in [
        ("max_attempts", 0, "attempt_limit"),
        ("backoff_base_ms", -1, "milliseconds"),
        ("backoff_max_ms", -1, "milliseconds"),
    ] {
        let err = sqlx::query(&format!(
            "UPDATE tasker.workflow_steps SET {column} = $2 WHERE workflow_step_uuid = $1"
        ))
        .bind(step)
        .bind(value)
        .execute(&db.pool)
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "value for domain tasker.{domain} violates check constraint"
            )),
            "{column}: {err}"
        );
    }
    let max_attempts: i32 = sqlx::query_scalar(
        "SELECT max_attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
    )
    .bind(step)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        max_attempts >= 1,
        "reads back as an integer: {max_attempts}"
    );
}

/// A task's history rows, oldest first: (from, to, sort_key, most_recent).
async fn task_history(
    pool: &sqlx::PgPool,
    task: uuid::Uuid,
) -> Vec<(Option<String>, String, i32, bool)> {
    sqlx::query_as(
        "SELECT from_state, to_state, sort_key, most_recent FROM tasker.task_transitions
          WHERE task_uuid = $1 ORDER BY sort_key",
    )
    .bind(task)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_move_through_several_states_records_each_of_them_in_order() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, LINEAR).await;
    let uuid = task.uuid;
    let through = |states: &'static [&'static str]| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT tasker.transition_task_state_through($1, $2, 'test')",
            )
            .bind(uuid)
            .bind(states)
            .fetch_one(&pool)
            .await
        }
    };

    // from a state the task is not in: nothing moves, nothing is recorded
    assert!(
        !through(&["steps_in_process", "evaluating_results", "complete"])
            .await
            .unwrap()
    );
    assert_eq!(task_history(&db.pool, task.uuid).await.len(), 1);

    assert!(through(&["pending", "enqueuing_steps", "steps_in_process"])
        .await
        .unwrap());
    assert_eq!(
        current_task_state(&db.pool, task.uuid).await.unwrap(),
        TaskState::StepsInProcess
    );
    let s = |v: &str| v.to_string();
    assert_eq!(
        task_history(&db.pool, task.uuid).await,
        [
            (None, s("pending"), 1, false),
            (Some(s("pending")), s("enqueuing_steps"), 2, false),
            (Some(s("enqueuing_steps")), s("steps_in_process"), 3, true),
        ]
    );

    // a list without a destination is a caller's mistake, named as such
    let err = through(&["steps_in_process"]).await.unwrap_err();
    assert!(err.to_string().contains("at least one to state"), "{err}");
}

//! The hot functions find their rows by key whatever the planner believes about table sizes.
//! A test database is what a new installation is: tables never analysed, so the planner
//! guesses their sizes, and the engine's connections keep the generic plan made from that
//! guess. None of these calls may scan a whole table, nor read the queue with a bitmap scan
//! (which neither walks the queue in order nor stops at the limit).

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::{Connection, PgConnection};
use tasker_shared::messaging::Queue;
use tasker_shared::sql_functions::get_step_readiness_status;
use tasker_test_support::TestDatabase;

use crate::fixtures::*;

/// Runs `statement` (one uuid parameter) in a transaction on `conn` and lists the tasker tables
/// it read with a sequential scan, from the transaction's own statistics.
async fn scanned_whole(conn: &mut PgConnection, statement: &str, param: uuid::Uuid) -> Vec<String> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(statement)
        .bind(param)
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let scanned = seq_scanned(&mut tx).await;
    tx.rollback().await.unwrap();
    scanned
}

async fn seq_scanned(conn: &mut PgConnection) -> Vec<String> {
    seq_scan_counts(conn)
        .await
        .into_iter()
        .filter(|(_, scans)| *scans > 0)
        .map(|(table, _)| table)
        .collect()
}

/// Sequential scans per tasker table counted so far in the current transaction of `conn`.
async fn seq_scan_counts(conn: &mut PgConnection) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables WHERE schemaname = 'tasker'",
    )
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test]
async fn readiness_and_ancestors_never_scan_whole_tables_on_a_fresh_database() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, FOUR_LEVELS).await;
    complete_step(&db.pool, task.step("root"), json!({"value": 1})).await;
    // one connection throughout, so the second run of a statement reuses the plan of the first
    let mut conn = db.pool.acquire().await.unwrap();

    for (statement, param) in [
        (
            "SELECT * FROM tasker.get_step_readiness_status($1)",
            task.uuid,
        ),
        ("SELECT * FROM tasker.task_step_summary($1)", task.uuid),
        (
            "SELECT * FROM tasker.get_task_execution_context($1)",
            task.uuid,
        ),
        (
            "SELECT * FROM tasker.get_step_transitive_dependencies($1)",
            task.step("l3"),
        ),
    ] {
        // twice: the first execution makes the connection's plan, the second reuses it
        for _ in 0..2 {
            assert_eq!(
                scanned_whole(&mut conn, statement, param).await,
                Vec::<String>::new(),
                "{statement}"
            );
        }
    }
}

#[tokio::test]
async fn the_queue_read_walks_its_index_in_order_on_a_fresh_database() {
    let db = TestDatabase::new().await;
    let queue = Queue::new("plans_queue").unwrap();
    queue.create(&db.pool).await.unwrap();
    for i in 0..5 {
        queue.send(&db.pool, &json!({"n": i})).await.unwrap();
    }

    let mut tx = db.pool.begin().await.unwrap();
    let read: Vec<i64> = sqlx::query_scalar("SELECT msg_id FROM tasker.queue_read($1, 30, 2)")
        .bind(queue.name())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(seq_scanned(&mut tx).await, Vec::<String>::new());
    // rows fetched through the index one by one: a plain index scan (a bitmap scan fetches
    // rows through the table and counts none here)
    let fetched_by_index: i64 = sqlx::query_scalar(
        "SELECT pg_stat_get_xact_tuples_fetched('tasker.queue_messages_fifo_idx'::regclass)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(
        fetched_by_index >= 2,
        "queue_read did not walk queue_messages_fifo_idx ({fetched_by_index} rows fetched through it)"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn the_ready_task_sweep_never_scans_whole_tables_on_a_fresh_database() {
    let db = TestDatabase::new().await;
    let waiting = create_task(&db.pool, FOUR_LEVELS).await;
    complete_step(&db.pool, waiting.step("root"), json!({"value": 1})).await;
    create_task(&db.pool, FOUR_LEVELS).await;
    let mut conn = db.pool.acquire().await.unwrap();

    // twice: the first execution makes the connection's plan, the second reuses it
    for _ in 0..2 {
        let mut tx = conn.begin().await.unwrap();
        let found: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT task_uuid FROM tasker.get_next_ready_tasks(10)")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert_eq!(found.len(), 2, "both tasks have a ready step");
        assert_eq!(seq_scanned(&mut tx).await, Vec::<String>::new());
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn keeping_the_parent_counts_never_scans_whole_tables_on_a_fresh_database() {
    use tasker_shared::state::{transition_step, StepState};
    use tasker_shared::templates::register_template;

    let db = TestDatabase::new().await;
    let shape = template(FOUR_LEVELS);
    let named = register_template(&db.pool, &shape).await.unwrap();
    // two tasks whose root has run and waits for the result processor
    let mut started = Vec::new();
    for _ in 0..2 {
        let task = create_task(&db.pool, FOUR_LEVELS).await;
        start_step(&db.pool, task.step("root")).await;
        transition_step(
            &db.pool,
            task.step("root"),
            &[StepState::InProgress],
            StepState::EnqueuedForOrchestration,
            "test",
            None,
        )
        .await
        .unwrap()
        .unwrap();
        started.push(task);
    }
    let mut conn = db.pool.acquire().await.unwrap();

    // twice: the first execution makes the connection's plans, the second reuses them
    for (n, task) in started.iter().enumerate() {
        let root = task.step("root");
        let mut tx = conn.begin().await.unwrap();
        // the finished crossing: root's two children lose an unfinished parent
        transition_step(
            &mut *tx,
            root,
            &[StepState::EnqueuedForOrchestration],
            StepState::Complete,
            "test",
            None,
        )
        .await
        .unwrap()
        .unwrap();
        // the edge insertion: every child of a new task is counted
        let identity = format!("plans-{n}");
        insert_task(&mut *tx, named.named_task_uuid, &shape, &identity).await;
        assert_eq!(seq_scanned(&mut tx).await, Vec::<String>::new());
        // read back through a function the test above checks, so this read scans nothing
        // either (a scan here would be counted in the next round's statistics)
        let children = get_step_readiness_status(
            &mut *tx,
            task.uuid,
            Some(&[task.step("l1a"), task.step("l1b")]),
        )
        .await
        .unwrap();
        assert!(
            children.len() == 2 && children.iter().all(|c| c.dependencies_satisfied),
            "root's children wait for nothing now"
        );
        tx.rollback().await.unwrap();
    }
}

/// The checks PostgreSQL runs for the engine's writes (the foreign-key probes of every history
/// insert, the cascades of a deletion) are planned once per connection, like any statement,
/// and kept. Planned while the statistics say a table is a page long, the probe is a whole-table
/// scan, and it stays one as the table grows until the next analyse. That is the state of every
/// installation in its first minutes, and of any table a retention job has just emptied.
#[tokio::test]
async fn history_writes_probe_by_key_after_the_tables_grow() {
    use tasker_shared::templates::register_template;

    let db = TestDatabase::new().await;
    let shape = template(LINEAR);
    let named = register_template(&db.pool, &shape).await.unwrap();
    let first = insert_task(&db.pool, named.named_task_uuid, &shape, "grow-0").await;
    sqlx::query("ANALYZE tasker.tasks, tasker.workflow_steps, tasker.workflow_step_transitions")
        .execute(&db.pool)
        .await
        .unwrap();
    // this connection makes its plans while the tables are a page long
    let mut conn = db.pool.acquire().await.unwrap();
    enqueue(&mut conn, first.step("a")).await;

    let mut tasks = Vec::new();
    for n in 1..=150 {
        let identity = format!("grow-{n}");
        tasks.push(insert_task(&db.pool, named.named_task_uuid, &shape, &identity).await);
    }

    let mut tx = conn.begin().await.unwrap();
    let before = seq_scan_counts(&mut tx).await;
    for task in &tasks[..3] {
        enqueue(&mut tx, task.step("a")).await;
    }
    sqlx::query("DELETE FROM tasker.tasks WHERE task_uuid = $1")
        .bind(tasks[149].uuid)
        .execute(&mut *tx)
        .await
        .unwrap();
    let after = seq_scan_counts(&mut tx).await;
    tx.rollback().await.unwrap();
    let scans_of = |table: &str| after.get(table).unwrap_or(&0) - before.get(table).unwrap_or(&0);
    assert_eq!(
        (
            scans_of("workflow_steps"),
            scans_of("workflow_step_transitions")
        ),
        (0, 0),
        "sequential scans of workflow_steps and of workflow_step_transitions"
    );
}

/// Moves a pending step to enqueued on `conn`.
async fn enqueue(conn: &mut PgConnection, step: uuid::Uuid) {
    use tasker_shared::state::{transition_step, StepState};
    transition_step(
        conn,
        step,
        &[StepState::Pending],
        StepState::Enqueued,
        "test",
        None,
    )
    .await
    .unwrap()
    .expect("the step was pending");
}

//! The orchestration loop and a worker together, in one process, against a real database:
//! tasks created through the initializer run to completion with no polling on the path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use tasker_client::CreateTaskRequest;
use tasker_orchestration::orchestration::core::{Orchestrator, OrchestratorConfig};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tasker_shared::templates::{parse_template, register_template};
use tasker_test_support::TestDatabase;
use tasker_worker::{HandlerRegistry, StepContext, StepError, StepHandler, Worker, WorkerConfig};
use uuid::Uuid;

const TEMPLATE: &str = "
namespace: integration
name: squares
version: '1'
steps:
  - { name: first, handler: square }
  - { name: second, handler: square, depends_on: [first] }
  - { name: third, handler: square, depends_on: [second] }
  - { name: fourth, handler: square, depends_on: [third] }
";

/// Squares the parent's value, or the context's `n` for the first step.
struct Square;

#[async_trait]
impl StepHandler for Square {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let input = step
            .dependency_results
            .values()
            .filter_map(|r| r["value"].as_i64())
            .max()
            .or_else(|| step.task_context["n"].as_i64())
            .ok_or_else(|| StepError::permanent("no input"))?;
        Ok(json!({ "value": input * input }))
    }
}

struct Engine {
    db: TestDatabase,
    init: TaskInitializer,
    orchestrator: tasker_orchestration::orchestration::core::OrchestratorHandle,
    worker: tasker_worker::WorkerHandle,
}

async fn engine() -> Engine {
    let db = TestDatabase::new().await;
    register_template(&db.pool, &parse_template(TEMPLATE, "test").unwrap())
        .await
        .unwrap();
    let orchestrator = Orchestrator::start(db.pool.clone(), OrchestratorConfig::default())
        .await
        .unwrap();
    let mut registry = HandlerRegistry::new();
    registry.register("square", Square);
    let worker = Worker::start(
        db.pool.clone(),
        WorkerConfig {
            namespaces: vec!["integration".into()],
            ..WorkerConfig::default()
        },
        Arc::new(registry),
    )
    .await
    .unwrap();
    Engine {
        init: TaskInitializer::new(db.pool.clone(), Duration::ZERO),
        db,
        orchestrator,
        worker,
    }
}

fn request(n: i64) -> CreateTaskRequest {
    CreateTaskRequest::new("integration", "squares", "1", json!({ "n": n }))
}

async fn wait_finished(listener: &mut PgListener, task: Uuid) {
    loop {
        let note = tokio::time::timeout(Duration::from_secs(20), listener.recv())
            .await
            .expect("task finished within 20 s")
            .unwrap();
        if note.payload() == task.to_string() {
            return;
        }
    }
}

#[tokio::test]
async fn test_result_processing_updates_task_state() {
    let engine = engine().await;
    let mut listener = PgListener::connect_with(&engine.db.pool).await.unwrap();
    listener.listen(TASK_FINISHED_CHANNEL).await.unwrap();

    let task = engine
        .init
        .create_task(&request(6))
        .await
        .unwrap()
        .task_uuid;
    wait_finished(&mut listener, task).await;

    let state: String =
        sqlx::query_scalar("SELECT current_state FROM tasker.tasks WHERE task_uuid = $1")
            .bind(task)
            .fetch_one(&engine.db.pool)
            .await
            .unwrap();
    assert_eq!(state, "complete");
    let last: Value = sqlx::query_scalar(
        "SELECT results FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'fourth'",
    )
    .bind(task)
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    // 6 -> 36 -> 1296 -> 1679616 -> 2821109907456
    assert_eq!(last, json!({"value": 2_821_109_907_456_i64}));
    engine.worker.shutdown().await.unwrap();
    engine.orchestrator.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_concurrent_tasks_all_complete_with_every_step_run_once() {
    let engine = engine().await;
    let requests: Vec<CreateTaskRequest> = (0..40).map(|n| request(n % 7 + 1)).collect();
    let tasks: Vec<Uuid> =
        futures::future::join_all(requests.iter().map(|r| engine.init.create_task(r)))
            .await
            .into_iter()
            .map(|r| r.unwrap().task_uuid)
            .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasker.tasks WHERE task_uuid = ANY($1) AND current_state = 'complete'",
        )
        .bind(&tasks)
        .fetch_one(&engine.db.pool)
        .await
        .unwrap();
        if complete == tasks.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {complete} of {} complete",
            tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (attempts, in_progress_transitions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(attempts) FROM tasker.workflow_steps),
                (SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state = 'in_progress')",
    )
    .fetch_one(&engine.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (attempts, in_progress_transitions),
        (160, 160),
        "each of 160 steps ran once"
    );
    engine.worker.shutdown().await.unwrap();
    engine.orchestrator.shutdown().await.unwrap();
}

//! Shared scaffolding for the lifecycle unit tests: a database with templates, and a stand-in
//! worker that claims and submits through the real worker executor functions.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_shared::messaging::{
    namespace_queue_name, Queue, StepMessage, StepResultMessage, RESULTS_QUEUE,
};
use tasker_shared::templates::{parse_template, register_template};
use tasker_test_support::TestDatabase;
use tasker_worker::executor::{claim, submit};
use tasker_worker::StepError;
use uuid::Uuid;

use super::result_processor::{ResultOutcome, ResultProcessor};
use tasker_client::CreateTaskRequest;

use super::task_initializer::TaskInitializer;

pub const NAMESPACE: &str = "lifecycle";

pub const TEMPLATES: [&str; 3] = [
    "
namespace: lifecycle
name: linear
version: '1'
steps:
  - { name: a, handler: h }
  - { name: b, handler: h, depends_on: [a] }
  - { name: c, handler: h, depends_on: [b] }
",
    "
namespace: lifecycle
name: diamond
version: '1'
steps:
  - { name: start, handler: h }
  - { name: left, handler: h, depends_on: [start] }
  - { name: right, handler: h, depends_on: [start] }
  - { name: end, handler: h, depends_on: [left, right] }
",
    "
namespace: lifecycle
name: retrying
version: '1'
steps:
  - { name: flaky, handler: h, retry: { max_attempts: 2, backoff_base_ms: 0, backoff_max_ms: 0 } }
  - { name: after, handler: h, depends_on: [flaky] }
",
];

pub struct Harness {
    pub db: TestDatabase,
    pub init: TaskInitializer,
    pub steps: Queue,
    pub results: Queue,
    pub processor: ResultProcessor,
}

impl Harness {
    pub async fn new() -> Self {
        let db = TestDatabase::new().await;
        for yaml in TEMPLATES {
            register_template(&db.pool, &parse_template(yaml, "test").unwrap())
                .await
                .unwrap();
        }
        Self {
            init: TaskInitializer::new(db.pool.clone(), Duration::ZERO),
            steps: Queue::new(&namespace_queue_name(NAMESPACE)).unwrap(),
            results: Queue::new(RESULTS_QUEUE).unwrap(),
            processor: ResultProcessor::new(db.pool.clone(), "test-orchestrator"),
            db,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub async fn create(&self, name: &str) -> Uuid {
        self.init
            .create_task(&CreateTaskRequest::new(NAMESPACE, name, "1", json!({})))
            .await
            .unwrap()
            .task_uuid
    }

    pub async fn step_uuid(&self, task: Uuid, name: &str) -> Uuid {
        sqlx::query_scalar("SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = $2")
            .bind(task)
            .bind(name)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    pub async fn step_state(&self, task: Uuid, name: &str) -> String {
        sqlx::query_scalar(
            "SELECT current_state FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = $2",
        )
        .bind(task)
        .bind(name)
        .fetch_one(self.pool())
        .await
        .unwrap()
    }

    pub async fn task_state(&self, task: Uuid) -> String {
        sqlx::query_scalar("SELECT current_state FROM tasker.tasks WHERE task_uuid = $1")
            .bind(task)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// Names of the steps whose messages wait in the namespace queue, sorted.
    pub async fn queued_steps(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT s.name FROM tasker.queue_messages q
               JOIN tasker.workflow_steps s ON s.workflow_step_uuid = (q.message->>'workflow_step_uuid')::uuid
              WHERE q.queue_name = $1 ORDER BY s.name",
        )
        .bind(self.steps.name())
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    /// Acts as a worker for the queued step named `name`: claims it and submits `outcome`.
    pub async fn work(&self, name: &str, outcome: Result<Value, StepError>) {
        let messages = self
            .steps
            .read::<StepMessage>(self.pool(), Duration::from_secs(30), 100)
            .await
            .unwrap();
        let mut found = false;
        for message in messages {
            let step_name: String = sqlx::query_scalar(
                "SELECT name FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
            )
            .bind(message.message.workflow_step_uuid)
            .fetch_one(self.pool())
            .await
            .unwrap();
            if step_name == name {
                let claimed = claim(self.pool(), &self.steps, &message, "test-worker")
                    .await
                    .unwrap()
                    .expect("claimable");
                assert!(submit(self.pool(), &claimed, &outcome, "test-worker")
                    .await
                    .unwrap());
                found = true;
            } else {
                // put it back for a later call
                self.steps
                    .extend_visibility(self.pool(), message.msg_id, Duration::ZERO)
                    .await
                    .unwrap();
            }
        }
        assert!(found, "no queued message for step {name}");
    }

    /// Processes every queued result, returning the outcomes.
    pub async fn process_results(&self) -> Vec<ResultOutcome> {
        let mut outcomes = Vec::new();
        loop {
            let batch = self
                .results
                .read::<StepResultMessage>(self.pool(), Duration::from_secs(30), 10)
                .await
                .unwrap();
            if batch.is_empty() {
                return outcomes;
            }
            for message in batch {
                outcomes.push(
                    self.processor
                        .process_message(&self.results, &message)
                        .await
                        .unwrap(),
                );
            }
        }
    }
}

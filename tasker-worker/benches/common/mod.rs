//! Handlers and setup shared by the worker benchmarks (not a benchmark itself).

#![allow(dead_code)] // each benchmark binary uses a different part

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_shared::messaging::{namespace_queue_name, Queue, StepMessage};
use tasker_shared::state::StepState;
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{advance_steps, create_tasks};
use tasker_worker::{StepContext, StepError, StepHandler};
use uuid::Uuid;

/// Does nothing and returns a constant: what is left of a step run is the framework.
pub struct NoopHandler;

#[async_trait::async_trait]
impl StepHandler for NoopHandler {
    async fn call(&self, _step: &StepContext) -> Result<Value, StepError> {
        Ok(json!({"ok": true}))
    }
}

/// Waits its duration without using the CPU, like a handler that calls another service.
pub struct IoHandler(pub Duration);

#[async_trait::async_trait]
impl StepHandler for IoHandler {
    async fn call(&self, _step: &StepContext) -> Result<Value, StepError> {
        tokio::time::sleep(self.0).await;
        Ok(json!({"ok": true}))
    }
}

/// Steps made ready for a worker: enqueued in the database (legal history), and the messages
/// that announce them, not yet sent.
pub struct Enqueued {
    pub tasks: Vec<Uuid>,
    /// One message per step, grouped by task.
    pub messages: Vec<Vec<StepMessage>>,
}

/// Creates `count` tasks of a template whose steps are all roots and moves every step to
/// `enqueued` (setup, untimed). The messages are returned for the benchmark to send.
pub async fn enqueued_tasks(
    pool: &PgPool,
    named_task_uuid: Uuid,
    template: &TaskTemplate,
    count: usize,
) -> Enqueued {
    let created = create_tasks(pool, named_task_uuid, template, count, &json!({"n": 1})).await;
    let steps: Vec<Uuid> = created
        .iter()
        .flat_map(|t| t.step_uuids.values().copied())
        .collect();
    advance_steps(pool, &steps, &[StepState::Enqueued]).await;
    Enqueued {
        tasks: created.iter().map(|t| t.task_uuid).collect(),
        messages: created
            .iter()
            .map(|t| {
                let mut ids: Vec<Uuid> = t.step_uuids.values().copied().collect();
                ids.sort();
                ids.into_iter()
                    .map(|step| StepMessage {
                        task_uuid: t.task_uuid,
                        workflow_step_uuid: step,
                        attempt: 1,
                    })
                    .collect()
            })
            .collect(),
    }
}

/// The namespace's step queue.
pub fn step_queue(template: &TaskTemplate) -> Queue {
    Queue::new(&namespace_queue_name(&template.namespace)).expect("queue name")
}

//! The messages that travel between orchestration and workers, and the queue names.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Queue that carries step results from workers back to orchestration.
pub const RESULTS_QUEUE: &str = "orchestration_step_results";

/// Channel notified (with the task's id as payload) when a task reaches a terminal state or
/// blocked_by_failures, in the transaction that moves it there.
pub const TASK_FINISHED_CHANNEL: &str = "tasker_task_finished";

/// Channel notified (with the task's id as payload) when a task may have steps ready to
/// enqueue: on creation, and when a retry's backoff is scheduled.
pub const TASKS_READY_CHANNEL: &str = "tasker_tasks_ready";

/// The queue that carries a namespace's ready steps to its workers.
pub fn namespace_queue_name(namespace: &str) -> String {
    format!("{namespace}_queue")
}

/// The namespace a step queue serves: the inverse of [`namespace_queue_name`].
pub fn queue_namespace(queue: &str) -> &str {
    queue.strip_suffix("_queue").unwrap_or(queue)
}

/// "Run this step": everything else the worker reads from the database in one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    pub task_uuid: Uuid,
    pub workflow_step_uuid: Uuid,
    /// The attempt this message asks for (1 for the first run).
    pub attempt: i32,
}

/// How a step run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Success,
    /// Failed, and may be retried if attempts remain.
    RetryableFailure,
    /// Failed for good.
    PermanentFailure,
}

/// "This step ran": the result itself is already stored on the step row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResultMessage {
    pub task_uuid: Uuid,
    pub workflow_step_uuid: Uuid,
    pub attempt: i32,
    pub outcome: StepOutcome,
    /// Handler's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

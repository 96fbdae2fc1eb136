//! The REST API's wire types: request and response bodies, query parameters and error codes.
//!
//! They live here, in the light client crate, so that the server (`tasker_orchestration::api`)
//! and the client serialise the very same structs: the server depends on this crate with
//! `default-features = false` (types only, no HTTP stack), the client adds reqwest on top. The
//! client must not drag sqlx in, which rules out the other direction.
//!
//! States travel as their database names (`"complete"`, `"blocked_by_failures"`, ...) rather
//! than as an enum: the state vocabulary is owned by `tasker-shared`, which this crate does not
//! depend on, and a string keeps an older client working when the server learns a new state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Task states after which a task no longer changes by itself. `blocked_by_failures` is
/// included: a permanently failed step stops the task until a person resolves it, so a waiter
/// should stop waiting ("finished, not successful").
pub const FINISHED_STATES: &[&str] = &[
    "complete",
    "error",
    "cancelled",
    "resolved_manually",
    "blocked_by_failures",
];

/// Whether a task in `state` is finished (see [`FINISHED_STATES`]).
pub fn is_finished_state(state: &str) -> bool {
    FINISHED_STATES.contains(&state)
}

/// Longest single long poll the server accepts (`GET /v1/tasks/{id}/wait?timeout_ms=`); longer
/// requests are capped, and [`crate::TaskerClient::wait_for_task`] polls again.
pub const MAX_WAIT_MS: u64 = 60_000;
/// The long poll's timeout when the request names none.
pub const DEFAULT_WAIT_MS: u64 = 30_000;
/// The task listing's page size when the request names none.
pub const DEFAULT_LIST_LIMIT: i64 = 50;
/// The largest page of the task listing.
pub const MAX_LIST_LIMIT: i64 = 500;

/// `POST /v1/tasks`: create a task from a registered template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// Input for the steps; must be a JSON object (default `{}`).
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
}

/// Who asks for an operator action and why, recorded in every transition it writes. The
/// body of `POST /v1/tasks/{id}/cancel` and `.../steps/{name}/retry` (optional: no body is
/// the same as `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskActionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/tasks/{id}/steps/{name}/resolve`: the step's result, set by hand (its dependents
/// receive it as they would a handler's), and who asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveStepRequest {
    pub results: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CreateTaskRequest {
    /// A request for `namespace/name` at `version` with `context` and every optional field
    /// left at its default.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        context: Value,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            version: version.into(),
            context,
            priority: 0,
            initiator: None,
            source_system: None,
            reason: None,
            tags: None,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Response of `POST /v1/tasks`: 201 Created for a new task, 200 OK when an identical recent
/// request already created it (`deduplicated`, only when the server's de-duplication window is
/// on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_uuid: Uuid,
    pub step_count: usize,
    pub deduplicated: bool,
}

/// Step counts of a task by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepCounts {
    pub total: i32,
    pub pending: i32,
    /// Enqueued, running, or handed back to orchestration.
    pub in_process: i32,
    /// Complete or resolved manually.
    pub completed: i32,
    pub failed: i32,
    pub waiting_for_retry: i32,
    /// Ready to be enqueued now.
    pub ready: i32,
}

/// One step of a task (`GET /v1/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDetails {
    pub workflow_step_uuid: Uuid,
    pub name: String,
    pub handler: String,
    pub state: String,
    /// Runs started so far (a run whose worker died counts).
    pub attempts: i32,
    pub max_attempts: i32,
    pub retryable: bool,
    /// What the handler returned, once it succeeded.
    pub results: Option<Value>,
    /// The handler's last error, when a run failed.
    pub last_error: Option<Value>,
    pub last_attempted_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// A task with its steps (`GET /v1/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetails {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: String,
    pub context: Value,
    pub priority: i32,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
    pub reason: Option<String>,
    pub tags: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Completed steps as a percentage of all steps (0 to 100).
    pub completion_percentage: f64,
    /// What the steps add up to: `has_ready_steps`, `processing`, `blocked_by_failures`,
    /// `all_complete` or `waiting_for_dependencies`.
    pub execution_status: String,
    pub step_counts: StepCounts,
    /// In template order.
    pub steps: Vec<StepDetails>,
}

impl TaskDetails {
    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepDetails> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Every step's results by step name (steps without results are left out).
    pub fn results_by_step(&self) -> BTreeMap<&str, &Value> {
        self.steps
            .iter()
            .filter_map(|s| s.results.as_ref().map(|r| (s.name.as_str(), r)))
            .collect()
    }

    /// Whether the task is finished, successfully or not (see [`FINISHED_STATES`]).
    pub fn is_finished(&self) -> bool {
        is_finished_state(&self.state)
    }

    /// Whether the task completed successfully.
    pub fn is_complete(&self) -> bool {
        self.state == "complete"
    }
}

/// A task in the listing (`GET /v1/tasks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: String,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Filters and paging of `GET /v1/tasks`; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    /// Only tasks in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only tasks of templates in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only tasks of templates with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Page size, 1 to [`MAX_LIST_LIMIT`] (default [`DEFAULT_LIST_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Tasks to skip, newest first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// Response of `GET /v1/tasks`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
    pub limit: i64,
    pub offset: i64,
}

/// Query of `GET /v1/tasks/{id}/wait`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// How long to hold the request open (default [`DEFAULT_WAIT_MS`], capped at
    /// [`MAX_WAIT_MS`]; 0 answers at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Response of `GET /v1/tasks/{id}/wait`: the task as it is when the wait ended. `finished` is
/// false when the timeout passed (or the server is shutting down) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitResponse {
    pub finished: bool,
    pub task: TaskDetails,
}

/// A step of a registered template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateStepSummary {
    pub name: String,
    pub handler: String,
    pub depends_on: Vec<String>,
}

/// A registered template (`GET /v1/templates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub steps: Vec<TemplateStepSummary>,
}

/// Response of `GET /v1/templates`, ordered by namespace, name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateList {
    pub templates: Vec<TemplateSummary>,
}

/// Response of `GET /health` when the database answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// Body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` (see [`error_codes`]) and a sentence for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The `code` values of [`ErrorDetail`]; a client can match on these.
pub mod error_codes {
    /// 400: the body is not valid JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// 415: the body was not sent as `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 422: the JSON has the wrong shape (missing field, wrong type, unknown field).
    pub const INVALID_BODY: &str = "invalid_body";
    /// 422: the request is well-formed but unacceptable (for instance a context that is not
    /// an object).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// 400: a query parameter is malformed or out of range.
    pub const INVALID_QUERY: &str = "invalid_query";
    /// 400: the task id in the path is not a UUID.
    pub const INVALID_TASK_ID: &str = "invalid_task_id";
    /// 404: no task has this id.
    pub const TASK_NOT_FOUND: &str = "task_not_found";
    /// 404: no template is registered under this namespace, name and version.
    pub const TEMPLATE_NOT_FOUND: &str = "template_not_found";
    /// 404: the task has no step of this name.
    pub const STEP_NOT_FOUND: &str = "step_not_found";
    /// 409: the task or step is not in a state the action applies to (the message names it).
    pub const INVALID_STATE: &str = "invalid_state";
    /// 404: no such endpoint.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: the endpoint exists but not for this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 401: the server wants `Authorization: Bearer <token>` and the request had none, or
    /// another token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 503: the database does not answer.
    pub const DATABASE_UNAVAILABLE: &str = "database_unavailable";
    /// 500: anything else; the server log has the details.
    pub const INTERNAL: &str = "internal_error";
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_create_request_needs_only_the_template_and_defaults_the_rest() {
        let request: CreateTaskRequest =
            serde_json::from_value(json!({"namespace": "n", "name": "t", "version": "1"})).unwrap();
        assert_eq!(request, CreateTaskRequest::new("n", "t", "1", json!({})));
        // optional fields that are unset are not sent
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"namespace": "n", "name": "t", "version": "1", "context": {}, "priority": 0})
        );
    }

    #[test]
    fn a_misspelt_field_is_rejected_rather_than_ignored() {
        let err = serde_json::from_value::<CreateTaskRequest>(
            json!({"namespace": "n", "name": "t", "version": "1", "contxt": {}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("contxt"), "{err}");
    }

    #[test]
    fn blocked_by_failures_counts_as_finished_and_running_states_do_not() {
        assert!(is_finished_state("complete"));
        assert!(is_finished_state("blocked_by_failures"));
        assert!(!is_finished_state("steps_in_process"));
        assert!(!is_finished_state("pending"));
    }
}

//! The operator's endpoints: cancel a task, resolve or retry one of its steps. Each answers
//! with the task as it is afterwards, 404 for an unknown task or step, and 409 naming the
//! state when the action does not apply to it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use tasker_client::{error_codes, ResolveStepRequest, TaskActionRequest, TaskDetails};
use tasker_shared::metrics::TASKS_FINISHED;
use uuid::Uuid;

use super::error::{ApiError, ApiJson, ApiPath};
use super::handlers::parse_task_id;
use super::queries;
use super::ApiState;
use crate::orchestration::lifecycle::operator::{self, ActionOutcome, Requester};

/// `POST /v1/tasks/{id}/cancel` (body optional: `{"initiator", "reason"}`).
pub async fn cancel_task(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<TaskDetails>, ApiError> {
    let task_uuid = parse_task_id(&id)?;
    let request: TaskActionRequest = optional_body(&body)?;
    let outcome = operator::cancel_task(state.pool(), task_uuid, &requester(request)).await?;
    let cancelled_now = matches!(outcome, ActionOutcome::Done { .. });
    let task = answer(&state, task_uuid, Action::Cancel, outcome).await?;
    if cancelled_now {
        metrics::counter!(TASKS_FINISHED, "namespace" => task.namespace.clone(), "state" => "cancelled")
            .increment(1);
    }
    Ok(task)
}

/// `POST /v1/tasks/{id}/steps/{name}/resolve` with `{"results", "initiator", "reason"}`.
pub async fn resolve_step(
    State(state): State<ApiState>,
    ApiPath((id, step)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ResolveStepRequest>,
) -> Result<Json<TaskDetails>, ApiError> {
    let task_uuid = parse_task_id(&id)?;
    let requester = Requester {
        initiator: body.initiator,
        reason: body.reason,
    };
    let outcome =
        operator::resolve_step(state.pool(), task_uuid, &step, &body.results, &requester).await?;
    answer(&state, task_uuid, Action::Resolve(&step), outcome).await
}

/// `POST /v1/tasks/{id}/steps/{name}/retry` (body optional: `{"initiator", "reason"}`).
pub async fn retry_step(
    State(state): State<ApiState>,
    ApiPath((id, step)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<Json<TaskDetails>, ApiError> {
    let task_uuid = parse_task_id(&id)?;
    let request: TaskActionRequest = optional_body(&body)?;
    let outcome = operator::retry_step(state.pool(), task_uuid, &step, &requester(request)).await?;
    answer(&state, task_uuid, Action::Retry(&step), outcome).await
}

/// Which action, for the error messages.
#[derive(Clone, Copy)]
enum Action<'a> {
    Cancel,
    Resolve(&'a str),
    Retry(&'a str),
}

impl Action<'_> {
    /// Why the action does not apply, given the states it found.
    fn refusal(self, task_uuid: Uuid, outcome: &ActionOutcome) -> String {
        let ActionOutcome::WrongState {
            task_state,
            step_state,
        } = outcome
        else {
            return String::new();
        };
        match (self, step_state) {
            (Action::Cancel, _) => format!(
                "task {task_uuid} is {task_state}: only an unfinished task can be cancelled"
            ),
            (Action::Resolve(step) | Action::Retry(step), _) if task_state.is_terminal() => {
                format!(
                    "task {task_uuid} is {task_state}: the steps of a finished task stay as they are (step {step})"
                )
            }
            (Action::Resolve(step), Some(state)) => format!(
                "step {step} is {state}: only a pending, enqueued, waiting or failed step can be resolved (a running step finishes first)"
            ),
            (Action::Retry(step), Some(state)) => format!(
                "step {step} is {state}: only a step that failed for good (error) can be retried"
            ),
            (Action::Resolve(step) | Action::Retry(step), None) => {
                format!("step {step} cannot be changed now")
            }
        }
    }
}

async fn answer(
    state: &ApiState,
    task_uuid: Uuid,
    action: Action<'_>,
    outcome: ActionOutcome,
) -> Result<Json<TaskDetails>, ApiError> {
    match outcome {
        ActionOutcome::Done { .. } | ActionOutcome::Unchanged { .. } => {
            queries::task_details(state.pool(), task_uuid)
                .await?
                .map(Json)
                .ok_or_else(|| ApiError::task_not_found(task_uuid))
        }
        ActionOutcome::NoTask => Err(ApiError::task_not_found(task_uuid)),
        ActionOutcome::NoStep => {
            let (Action::Resolve(step) | Action::Retry(step)) = action else {
                return Err(ApiError::task_not_found(task_uuid));
            };
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                error_codes::STEP_NOT_FOUND,
                format!("task {task_uuid} has no step named {step:?}"),
            ))
        }
        wrong @ ActionOutcome::WrongState { .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            error_codes::INVALID_STATE,
            action.refusal(task_uuid, &wrong),
        )),
    }
}

fn requester(request: TaskActionRequest) -> Requester {
    Requester {
        initiator: request.initiator,
        reason: request.reason,
    }
}

/// A JSON body that may be left out (`curl -X POST` with nothing): empty is the default.
fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                error_codes::INVALID_BODY,
                format!("the body does not fit: {e}"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                error_codes::MALFORMED_JSON,
                format!("the body is not valid JSON: {e}"),
            )
        }
    })
}

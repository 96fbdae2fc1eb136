//! The endpoint handlers: validate input, call the task initializer or one query, answer.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tasker_client::{
    error_codes, CreateTaskRequest, Health, TaskCreated, TaskDetails, TaskList, TaskListQuery,
    TemplateList, TemplateStepSummary, TemplateSummary, WaitQuery, WaitResponse,
    DEFAULT_LIST_LIMIT, DEFAULT_WAIT_MS, MAX_LIST_LIMIT, MAX_WAIT_MS,
};
use tasker_shared::state::TaskState;
use tasker_shared::templates::list_templates as registered_templates;
use uuid::Uuid;

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::queries::{self, TaskFilter};
use super::waiters::WaitOutcome;
use super::ApiState;

/// How long the health check waits for the database before calling it unavailable (the pool's
/// own acquire timeout is much longer).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `POST /v1/tasks`.
pub async fn create_task(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<CreateTaskRequest>,
) -> Result<(StatusCode, Json<TaskCreated>), ApiError> {
    let created = state.initializer().create_task(&request).await?;
    let status = if created.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created)))
}

/// `GET /v1/tasks/{id}`.
pub async fn get_task(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TaskDetails>, ApiError> {
    let task_uuid = parse_task_id(&id)?;
    queries::task_details(state.pool(), task_uuid)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::task_not_found(task_uuid))
}

/// `GET /v1/tasks`.
pub async fn list_tasks(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    if let Some(wanted) = query.state.as_deref() {
        wanted.parse::<TaskState>().map_err(|_| {
            let known: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid_query(format!(
                "unknown task state {wanted:?}; expected one of {}",
                known.join(", ")
            ))
        })?;
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_query(format!(
            "offset must not be negative, got {offset}"
        )));
    }
    let filter = TaskFilter {
        state: query.state.as_deref(),
        namespace: query.namespace.as_deref(),
        name: query.name.as_deref(),
        limit,
        offset,
    };
    let tasks = queries::list_tasks(state.pool(), &filter).await?;
    Ok(Json(TaskList {
        tasks,
        limit,
        offset,
    }))
}

/// `GET /v1/tasks/{id}/wait?timeout_ms=N`: answers when the task is finished (complete, error,
/// cancelled, resolved manually or blocked by failures), when the timeout passes, or when the
/// server shuts down, with the task as it is then.
pub async fn wait_for_task(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Json<WaitResponse>, ApiError> {
    let task_uuid = parse_task_id(&id)?;
    let timeout =
        Duration::from_millis(query.timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
    let outcome = state
        .waiters()
        .await?
        .wait(state.pool(), task_uuid, timeout, state.shutdown_signal())
        .await?;
    if outcome == WaitOutcome::NotFound {
        return Err(ApiError::task_not_found(task_uuid));
    }
    let task = queries::task_details(state.pool(), task_uuid)
        .await?
        .ok_or_else(|| ApiError::task_not_found(task_uuid))?;
    // judged on the state actually returned, so `finished` and `task.state` always agree
    Ok(Json(WaitResponse {
        finished: task.is_finished(),
        task,
    }))
}

/// `GET /v1/templates`.
pub async fn list_templates(State(state): State<ApiState>) -> Result<Json<TemplateList>, ApiError> {
    let templates = registered_templates(state.pool())
        .await?
        .into_iter()
        .map(|(_, template)| TemplateSummary {
            namespace: template.namespace,
            name: template.name,
            version: template.version,
            description: template.description,
            steps: template
                .steps
                .into_iter()
                .map(|step| TemplateStepSummary {
                    name: step.name,
                    handler: step.handler,
                    depends_on: step.depends_on,
                })
                .collect(),
        })
        .collect();
    Ok(Json(TemplateList { templates }))
}

/// `GET /health`: 200 when the database answers a query, 503 otherwise.
pub async fn health(State(state): State<ApiState>) -> Result<Json<Health>, ApiError> {
    let probe = sqlx::query("SELECT 1").execute(state.pool());
    match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Ok(Err(error)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_codes::DATABASE_UNAVAILABLE,
            format!("the database does not answer: {error}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_codes::DATABASE_UNAVAILABLE,
            format!("the database did not answer within {HEALTH_TIMEOUT:?}"),
        )),
    }
}

/// `GET /metrics`: the process's metrics in Prometheus' text format.
pub async fn metrics(State(state): State<ApiState>, method: Method, uri: Uri) -> Response {
    match state.exporter() {
        Some(exporter) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            exporter.render(state.pool()).await,
        )
            .into_response(),
        None => no_route(method, uri).await.into_response(),
    }
}

/// Any path the router does not know.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        error_codes::NOT_FOUND,
        format!("no endpoint {method} {}", uri.path()),
    )
}

/// A known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        error_codes::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

pub(super) fn parse_task_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_TASK_ID,
            format!("task id {id:?} is not a UUID"),
        )
    })
}

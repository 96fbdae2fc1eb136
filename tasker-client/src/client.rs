//! [`TaskerClient`]: one method per REST endpoint over a shared reqwest connection pool.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ClientError, ClientResult};
use crate::token::ApiToken;
use crate::types::{
    CreateTaskRequest, ErrorBody, Health, ResolveStepRequest, TaskActionRequest, TaskCreated,
    TaskDetails, TaskList, TaskListQuery, TemplateList, TemplateSummary, WaitQuery, WaitResponse,
    MAX_WAIT_MS,
};

/// How long an ordinary request may take, connection included.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take; a server that is down refuses at once, so this only bounds
/// an unreachable host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Headroom on top of a long poll's own timeout before the client gives up on the request.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);
/// How much of an unexpected body goes into an error message.
const BODY_EXCERPT: usize = 512;

/// A client of one Tasker API server. Cheap to clone: clones share the connection pool, so
/// create one and reuse it rather than one per request.
#[derive(Debug, Clone)]
pub struct TaskerClient {
    http: reqwest::Client,
    /// Always ends with `/`, so relative joins append rather than replace the last segment.
    base: Url,
    tasks_url: Url,
    request_timeout: Duration,
    /// Sent as `Authorization: Bearer` with every request, when the server wants one.
    token: Option<ApiToken>,
}

impl TaskerClient {
    /// A client for the API at `base_url` (for instance `http://127.0.0.1:8080`; a path prefix
    /// is kept).
    pub fn new(base_url: &str) -> ClientResult<Self> {
        Self::with_timeout(base_url, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`TaskerClient::new`] with a different timeout for ordinary requests (long polls
    /// size their own).
    pub fn with_timeout(base_url: &str, request_timeout: Duration) -> ClientResult<Self> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// URL".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let tasks_url = base.join("v1/tasks").map_err(|e| invalid(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // small JSON requests: Nagle's algorithm would only add latency
            .tcp_nodelay(true)
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            tasks_url,
            request_timeout,
            token: None,
        })
    }

    /// The same client, sending `token` with every request (a server started with
    /// `--auth-token-file` answers 401 to requests without it, `/health` aside).
    pub fn with_token(mut self, token: ApiToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The API's base URL (with a trailing `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `POST /v1/tasks`: creates a task (or returns the identical recent one, see
    /// [`TaskCreated::deduplicated`]).
    pub async fn create_task(&self, request: &CreateTaskRequest) -> ClientResult<TaskCreated> {
        self.send(
            self.http.post(self.tasks_url.clone()).json(request),
            &self.tasks_url,
        )
        .await
    }

    /// `GET /v1/tasks/{id}`: the task with its steps.
    pub async fn get_task(&self, task_uuid: Uuid) -> ClientResult<TaskDetails> {
        let url = self.url(&format!("v1/tasks/{task_uuid}"))?;
        self.send(self.http.get(url.clone()), &url).await
    }

    /// `GET /v1/tasks`: tasks newest first, filtered and paged by `query`.
    pub async fn list_tasks(&self, query: &TaskListQuery) -> ClientResult<TaskList> {
        self.send(
            self.http.get(self.tasks_url.clone()).query(query),
            &self.tasks_url,
        )
        .await
    }

    /// `GET /v1/templates`: every registered template.
    pub async fn templates(&self) -> ClientResult<Vec<TemplateSummary>> {
        let url = self.url("v1/templates")?;
        let list: TemplateList = self.send(self.http.get(url.clone()), &url).await?;
        Ok(list.templates)
    }

    /// `GET /health`: Ok when the server and its database answer; an [`ClientError::Api`] with
    /// code `database_unavailable` when only the server does.
    pub async fn health(&self) -> ClientResult<Health> {
        let url = self.url("health")?;
        self.send(self.http.get(url.clone()), &url).await
    }

    /// `GET /v1/tasks/{id}/wait`: one long poll of at most `timeout` (the server caps it at
    /// [`MAX_WAIT_MS`]).
    pub async fn wait_once(
        &self,
        task_uuid: Uuid,
        timeout: Duration,
    ) -> ClientResult<WaitResponse> {
        let url = self.url(&format!("v1/tasks/{task_uuid}/wait"))?;
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_WAIT_MS);
        let request = self
            .http
            .get(url.clone())
            .query(&WaitQuery {
                timeout_ms: Some(timeout_ms),
            })
            .timeout(Duration::from_millis(timeout_ms) + LONG_POLL_MARGIN);
        self.send_with_timeout(request, &url, false).await
    }

    /// Waits until the task is finished (complete, or stopped without success: error,
    /// cancelled, resolved manually, blocked by failures) and returns it; long polls the
    /// server, so the wait costs no requests while nothing happens. Fails with
    /// [`ClientError::WaitTimedOut`] when `timeout` passes first.
    pub async fn wait_for_task(
        &self,
        task_uuid: Uuid,
        timeout: Duration,
    ) -> ClientResult<TaskDetails> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let response = self.wait_once(task_uuid, remaining).await?;
            if response.finished {
                return Ok(response.task);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::WaitTimedOut {
                    task_uuid,
                    state: response.task.state,
                    waited: timeout,
                });
            }
        }
    }

    /// `POST /v1/tasks/{id}/cancel`: cancels the task (steps not yet started never start;
    /// running ones finish, their results recorded and ignored) and returns it. Cancelling a
    /// cancelled task returns it unchanged; a finished one is an [`ClientError::Api`] with
    /// code `invalid_state`.
    pub async fn cancel_task(
        &self,
        task_uuid: Uuid,
        request: &TaskActionRequest,
    ) -> ClientResult<TaskDetails> {
        let url = self.url(&format!("v1/tasks/{task_uuid}/cancel"))?;
        self.send(self.http.post(url.clone()).json(request), &url)
            .await
    }

    /// `POST /v1/tasks/{id}/steps/{step}/resolve`: the step becomes `resolved_manually` with
    /// `request.results` as its result, and its dependents go on with it.
    pub async fn resolve_step(
        &self,
        task_uuid: Uuid,
        step: &str,
        request: &ResolveStepRequest,
    ) -> ClientResult<TaskDetails> {
        let url = self.step_url(task_uuid, step, "resolve")?;
        self.send(self.http.post(url.clone()).json(request), &url)
            .await
    }

    /// `POST /v1/tasks/{id}/steps/{step}/retry`: a step that failed for good runs again with
    /// a fresh attempt budget; a task blocked by failures resumes.
    pub async fn retry_step(
        &self,
        task_uuid: Uuid,
        step: &str,
        request: &TaskActionRequest,
    ) -> ClientResult<TaskDetails> {
        let url = self.step_url(task_uuid, step, "retry")?;
        self.send(self.http.post(url.clone()).json(request), &url)
            .await
    }

    /// `v1/tasks/{id}/steps/{step}/{action}`, the step's name percent-encoded as one segment.
    fn step_url(&self, task_uuid: Uuid, step: &str, action: &str) -> ClientResult<Url> {
        let mut url = self.url(&format!("v1/tasks/{task_uuid}/steps"))?;
        // the base was checked to be a base URL when the client was made
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(step).push(action);
        }
        Ok(url)
    }

    fn url(&self, path: &str) -> ClientResult<Url> {
        self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> ClientResult<T> {
        self.send_with_timeout(request, url, true).await
    }

    async fn send_with_timeout<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        default_timeout: bool,
    ) -> ClientResult<T> {
        let request = if default_timeout {
            request.timeout(self.request_timeout)
        } else {
            request
        };
        // reqwest marks a bearer header sensitive, so it stays out of its debug output
        let request = match &self.token {
            Some(token) => request.bearer_auth(token.secret()),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(url, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(url, e))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
                url: url.to_string(),
                source,
            });
        }
        Err(error_from_body(url, status, &body))
    }
}

/// Turns an error response into [`ClientError::Api`] when it has the API's error body.
fn error_from_body(url: &Url, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
            ClientError::UnexpectedResponse {
                url: url.to_string(),
                status,
                body: excerpt,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_keeps_its_path_prefix_and_gains_a_trailing_slash() {
        let client = TaskerClient::new("http://127.0.0.1:8080/tasker").unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:8080/tasker/");
        assert_eq!(
            client.tasks_url.as_str(),
            "http://127.0.0.1:8080/tasker/v1/tasks"
        );
        let plain = TaskerClient::new("http://localhost:1").unwrap();
        assert_eq!(plain.tasks_url.as_str(), "http://localhost:1/v1/tasks");
    }

    #[test]
    fn urls_that_are_not_http_are_rejected_with_the_reason() {
        for bad in ["localhost:8080", "ftp://host/", "not a url"] {
            let err = TaskerClient::new(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl { ref url, .. } if url == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn error_bodies_become_api_errors_and_other_bodies_are_quoted() {
        let url = Url::parse("http://h/v1/tasks").unwrap();
        let err = error_from_body(
            &url,
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"task_not_found","message":"no task x"}}"#,
        );
        assert_eq!(err.code(), Some("task_not_found"));
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "no task x (task_not_found, HTTP 404 Not Found)"
        );

        let err = error_from_body(&url, StatusCode::BAD_GATEWAY, b"upstream down");
        assert!(
            matches!(err, ClientError::UnexpectedResponse { ref body, .. } if body == "upstream down"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_reported_as_unreachable_with_its_url() {
        // bind and drop a listener: the port is then (almost certainly) closed
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = TaskerClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}

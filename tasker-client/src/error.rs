//! The client's error type: every failure says which URL it concerned and, for errors the API
//! reported, carries the API's error code and message.

use std::time::Duration;

use reqwest::StatusCode;
use uuid::Uuid;

/// Result alias for client calls.
pub type ClientResult<T> = Result<T, ClientError>;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid Tasker API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Nothing answered at the address (connection refused, unresolvable host, ...).
    #[error("cannot reach the Tasker API at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the Tasker API at {url} did not answer in time")]
    Timeout {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The API answered with an error status but not with an error body.
    #[error("unexpected HTTP {status} from {url}: {body}")]
    UnexpectedResponse {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("cannot decode the response of {url}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// [`crate::TaskerClient::wait_for_task`] ran out of time before the task finished.
    #[error("task {task_uuid} did not finish within {waited:?}; it is {state}")]
    WaitTimedOut {
        task_uuid: Uuid,
        state: String,
        waited: Duration,
    },
}

impl ClientError {
    /// The API's error code, when the API reported the error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the API said the resource (task, template) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    pub(crate) fn from_reqwest(url: &reqwest::Url, source: reqwest::Error) -> Self {
        let url = url.to_string();
        if source.is_connect() {
            Self::Unreachable { url, source }
        } else if source.is_timeout() {
            Self::Timeout { url, source }
        } else {
            Self::Http { url, source }
        }
    }
}

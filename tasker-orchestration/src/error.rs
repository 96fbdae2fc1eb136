//! Orchestration errors.

use tasker_shared::TaskerError;

/// Result alias for orchestration operations.
pub type OrchestrationResult<T> = Result<T, OrchestrationError>;

/// What orchestration can fail with. The variants a caller can act on (an unknown template, a
/// bad request) are separate from data-layer failures.
#[derive(Debug, thiserror::Error)]
pub enum OrchestrationError {
    #[error("no template {namespace}/{name} version {version} is registered")]
    UnknownTemplate {
        namespace: String,
        name: String,
        version: String,
    },
    #[error("invalid task request: {0}")]
    InvalidRequest(String),
    #[error(
        "processing result message {msg_id} of queue {queue} failed in the database: {reason}"
    )]
    ResultFailed {
        msg_id: i64,
        queue: String,
        reason: String,
    },
    #[error(transparent)]
    Data(#[from] TaskerError),
}

impl From<sqlx::Error> for OrchestrationError {
    fn from(source: sqlx::Error) -> Self {
        Self::Data(TaskerError::Database {
            action: "running an orchestration query".into(),
            source,
        })
    }
}

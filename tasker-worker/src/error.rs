//! Worker errors.

/// Result alias for worker operations.
pub type WorkerResult<T> = Result<T, WorkerError>;

/// What the worker machinery can fail with (handler failures are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Data(#[from] tasker_shared::TaskerError),
    #[error("the worker has no namespaces to consume; pass at least one")]
    NoNamespaces,
}

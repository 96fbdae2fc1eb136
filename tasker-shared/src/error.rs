//! The data layer's error type.

use crate::state::StateError;
use crate::templates::TemplateError;

/// Result alias for data-layer operations.
pub type TaskerResult<T> = Result<T, TaskerError>;

/// Everything the data layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TaskerError {
    #[error("database error while {action}")]
    Database {
        action: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not apply the schema migrations")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },
    #[error("cannot encode or decode {what}")]
    Serde {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid queue name {0:?}: use 1 to 48 characters from a-z, 0-9 and _")]
    InvalidQueueName(String),
    #[error(
        "the database was migrated with the schema history Tasker replaced by one folded schema (it has migration {version}), and there is no released data to carry over: for the local cluster run `tasker db destroy` and then `tasker db start`; for another database drop its `tasker` schema and `public._sqlx_migrations` table, then migrate again"
    )]
    OldSchemaHistory { version: i64 },
}

/// Attaches what the code was doing to a `sqlx::Error`.
pub trait DbContext<T> {
    fn db_context(self, action: impl Into<String>) -> TaskerResult<T>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn db_context(self, action: impl Into<String>) -> TaskerResult<T> {
        self.map_err(|source| TaskerError::Database {
            action: action.into(),
            source,
        })
    }
}

/// An error and its causes on one line (`outer: cause: root cause`), for places that report
/// an error as text rather than through `anyhow`.
pub fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // some libraries repeat their cause in their own message
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

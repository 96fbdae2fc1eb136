//! Typed HTTP client for the Tasker REST API, and the API's wire types.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tasker_client::ClientError> {
//! use std::time::Duration;
//! use tasker_client::{CreateTaskRequest, TaskerClient};
//!
//! let client = TaskerClient::new("http://127.0.0.1:8080")?;
//! let created = client
//!     .create_task(&CreateTaskRequest::new(
//!         "linear_workflow",
//!         "mathematical_sequence",
//!         "1.0.0",
//!         serde_json::json!({"even_number": 6}),
//!     ))
//!     .await?;
//! let task = client.wait_for_task(created.task_uuid, Duration::from_secs(30)).await?;
//! assert!(task.is_complete());
//! # Ok(())
//! # }
//! ```
//!
//! With `default-features = false` the crate is only [`types`] (serde structs), which is how
//! the server shares them without pulling in an HTTP client.

pub mod token;
pub mod types;

#[cfg(feature = "http")]
mod client;
#[cfg(feature = "http")]
mod error;

#[cfg(feature = "http")]
pub use client::TaskerClient;
#[cfg(feature = "http")]
pub use error::{ClientError, ClientResult};
pub use token::{ApiToken, TokenFileError};
pub use types::*;

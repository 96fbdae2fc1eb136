//! Tasker orchestration: the task lifecycle (initialise, enqueue ready steps, process step
//! results, finalise), the notification-driven orchestration loop, and the REST API.

pub mod api;
pub mod error;
pub mod orchestration;

pub use error::{OrchestrationError, OrchestrationResult};

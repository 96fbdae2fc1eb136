//! Tasker worker: claims step messages from its namespaces' queues, runs the registered step
//! handler with the task's context and its parents' results, and hands the result back to
//! orchestration.

pub mod endpoint;
pub mod error;
pub mod examples;
pub mod executor;
pub mod handler;
pub mod registry;
pub mod worker;

pub use error::{WorkerError, WorkerResult};
pub use handler::{StepContext, StepError, StepHandler};
pub use registry::HandlerRegistry;
pub use worker::{Worker, WorkerConfig, WorkerHandle};

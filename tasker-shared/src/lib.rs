//! Tasker's data layer: the PostgreSQL schema and its SQL functions, task and step state
//! machines, durable queues with LISTEN/NOTIFY wake-ups, task templates, the engine's metrics,
//! and a throwaway local PostgreSQL for development, tests and benchmarks.

pub mod database;
pub mod error;
pub mod local_postgres;
pub mod messaging;
pub mod metrics;
pub mod models;
pub mod schema;
pub mod sql_functions;
pub mod state;
pub mod templates;

pub use error::{TaskerError, TaskerResult};

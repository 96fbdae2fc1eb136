//! Tasker's data layer: the PostgreSQL schema and its SQL functions, task and step state
//! machines, durable queues with LISTEN/NOTIFY wake-ups, task templates, the engine's metrics,
//! and a throwaway local PostgreSQL for development, tests and benchmarks.

#[cfg(feature = "benchmarks")]
pub mod bench_cpu;
#[cfg(feature = "benchmarks")]
pub mod bench_db_stats;
#[cfg(feature = "benchmarks")]
pub mod bench_support;
#[cfg(all(feature = "benchmarks", unix))]
pub mod bench_turns;
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
pub mod test_support;

pub use error::{TaskerError, TaskerResult};

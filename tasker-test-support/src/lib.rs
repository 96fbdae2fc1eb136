//! Development-only support for Tasker's tests and benchmarks: fresh test databases, the
//! benchmarks' runtime, executor and deterministic data set, the counting, CPU and turn-taking
//! hooks the `cargo xtask` profiling runs drive, one loopback API helper and one criterion
//! configuration. The product crates have it as a dev-dependency only, so none of it ships in
//! `tasker`.
//!
//! The loopback API helper takes the server as a function of its listener and shutdown signal
//! instead of naming tasker-orchestration's `serve`, so this crate depends on nothing above
//! tasker-shared and tasker-client, and the unit tests of tasker-orchestration and
//! tasker-worker can use it without linking a second copy of their own crate (tasker-shared's
//! database tests are integration tests for the same reason).

pub mod bench_args;
pub mod bench_cpu;
pub mod bench_database;
pub mod bench_db_stats;
#[cfg(unix)]
pub mod bench_turns;
pub mod criterion_setup;
pub mod dataset;
pub mod determinism;
pub mod executor;
pub mod fixtures;
pub mod loopback_api;
pub mod percentiles;
pub mod server_context;
pub mod tasks;
pub mod test_database;

// What the bench files and tests import, in one place.
pub use bench_args::{BenchArgs, BenchMode};
pub use bench_database::{teardown, BenchDatabase};
pub use bench_db_stats::{counted, each};
pub use criterion_setup::{bench_main, criterion_config};
pub use dataset::{seed_dataset, DatasetSpec, Scenario, SeededDataset, SeededStep, SeededTask};
pub use executor::{runtime, timed, Timed};
pub use fixtures::{
    fixture_template, fixture_templates, fixtures_dir, step_depths, wide_template, DAG, DIAMOND,
    LINEAR, TREE,
};
pub use loopback_api::{LoopbackApi, LoopbackError};
pub use percentiles::{criterion_home, LatencyLog, Percentiles};
pub use server_context::server_context;
pub use tasks::{advance_steps, complete_steps, create_tasks, delete_tasks, purge_queue, register};
pub use test_database::{TestDatabase, TestDatabaseError};

//! Suites driving Rust-native step handlers (`tasker_worker::examples`).

mod api_error_tests;
mod cli_tests;
mod failure_tests;
mod operator_tests;
mod resilience_tests;
mod simple_integration_tests;

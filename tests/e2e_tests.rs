//! End-to-end tests: the real API server on an ephemeral loopback port, real orchestrators and
//! workers (in-process, and the `tasker` binary where a process must die), one throwaway
//! PostgreSQL database per test. Tasks go in through `tasker-client` and are awaited with the
//! API's long poll.
//!
//! ```text
//! cargo test --test e2e_tests
//! cargo test --test e2e_tests e2e::rust::simple_integration_tests::test_linear_workflow
//! ```

mod e2e;

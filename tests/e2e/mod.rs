//! End-to-end test suites and their shared harness.

pub mod harness;
pub mod ruby;
pub mod rust;

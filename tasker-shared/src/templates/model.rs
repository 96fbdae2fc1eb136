//! The template format.
//!
//! ```yaml
//! namespace: rust_samples
//! name: mathematical_sequence
//! version: 1.0.0
//! description: squares a number four times
//! steps:
//!   - name: linear_step_1
//!     handler: linear_step_1
//!     retry: { max_attempts: 3, backoff_base_ms: 100, backoff_max_ms: 2000 }
//!     timeout_seconds: 30
//!   - name: linear_step_2
//!     handler: linear_step_2
//!     depends_on: [linear_step_1]
//!     config: { factor: 2 }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A DAG of steps under a namespace, name and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    pub namespace: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub steps: Vec<StepTemplate>,
}

/// One step of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    pub name: String,
    /// The handler name a worker's registry resolves.
    pub handler: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps that must complete before this one is ready.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How long one run of the handler may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// The step's own configuration, handed to its handler.
    #[serde(default = "empty_object")]
    pub config: Value,
}

/// How a failed step is retried: after `min(backoff_base_ms * 2^(attempt-1), backoff_max_ms)`,
/// up to `max_attempts` runs in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub retryable: bool,
    pub max_attempts: u32,
    pub backoff_base_ms: u32,
    pub backoff_max_ms: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retryable: true,
            max_attempts: 3,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failed run (1-based).
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        (u64::from(self.backoff_base_ms) << exponent).min(u64::from(self.backoff_max_ms))
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[cfg(test)]
mod tests {
    use super::RetryPolicy;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            ..RetryPolicy::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| policy.backoff_ms(a)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }
}

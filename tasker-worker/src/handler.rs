//! The step handler contract: what a handler receives and how it reports failure.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Everything a handler needs to run one step.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub task_uuid: Uuid,
    pub workflow_step_uuid: Uuid,
    pub step_name: String,
    /// 1 for the first run.
    pub attempt: i32,
    /// The task's context, as submitted.
    pub task_context: Value,
    /// The step's own configuration from the template.
    pub step_config: Value,
    /// Every ancestor's results, by step name.
    pub dependency_results: HashMap<String, Value>,
}

impl StepContext {
    /// The results of the named ancestor.
    pub fn dependency_result(&self, step_name: &str) -> Option<&Value> {
        self.dependency_results.get(step_name)
    }
}

/// A failed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    pub message: String,
    /// Whether another attempt may succeed (subject to the step's retry policy).
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl StepError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            details: None,
        }
    }

    /// A failure no retry will fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

/// A step implementation, looked up by the template's handler name.
#[async_trait::async_trait]
pub trait StepHandler: Send + Sync + 'static {
    /// Runs the step; the returned JSON becomes the step's results.
    async fn call(&self, step: &StepContext) -> Result<Value, StepError>;
}

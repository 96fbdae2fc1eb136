//! Example step handlers for the fixture templates in `tests/fixtures/task_templates/`, used by
//! `tasker worker`, the end-to-end tests and the benchmarks.
//!
//! Every computing handler does exact integer arithmetic on `i64` and returns
//! `{"value": N}`; a step reads its parents' `value`s. With `n` the task context's
//! `even_number`:
//!
//! | template (namespace)                      | steps and values                                            |
//! |-------------------------------------------|-------------------------------------------------------------|
//! | `mathematical_sequence` (linear_workflow) | step_1 = n², step_k = step_(k-1)² → step_4 = n¹⁶            |
//! | `diamond_pattern` (diamond_workflow)      | start = n², b = c = start², end = (b·c)² = n¹⁶              |
//! | `complex_dag` (mixed_dag_workflow)        | init = n², left = right = init², validate = left·right, transform = left², analyze = right², finalize = validate·transform·analyze = n²⁴ |
//! | `hierarchical_tree` (tree_workflow)       | root = n², branches = root², leaves = branch², convergence = product of the four leaves = n³² |
//!
//! So n = 6 gives 2,821,109,907,456 for the linear and diamond workflows, n = 2 gives
//! 16,777,216 for the DAG and 4,294,967,296 for the tree. Overflow is checked: a value that
//! does not fit in `i64` fails the step permanently (the DAG fits up to n = 6, the tree up to
//! n = 3), as does a missing, non-integer or odd `even_number`.
//!
//! Test handlers: `fail_twice_then_succeed` (retryable failure on attempts 1 and 2),
//! `always_fail_permanently`, and `slow_step` (sleeps `sleep_ms` from the task context, else
//! from its step config).

use std::time::Duration;

use serde_json::{json, Value};

use crate::handler::{StepContext, StepError, StepHandler};
use crate::registry::HandlerRegistry;

/// The namespaces of the templates these handlers serve (`tasker worker`'s default).
pub const EXAMPLE_NAMESPACES: &[&str] = &[
    "linear_workflow",
    "diamond_workflow",
    "mixed_dag_workflow",
    "tree_workflow",
    "retry_workflow",
    "failure_workflow",
    "slow_workflow",
];

/// How long `slow_step` sleeps when neither the context nor the step config says.
pub const DEFAULT_SLOW_STEP_MS: u64 = 1_000;

/// Registers every example handler under the handler names the fixture templates use.
pub fn register_examples(registry: &mut HandlerRegistry) {
    // linear: each step squares the previous one
    registry.register("linear_step_1", Square(Input::EvenNumber));
    registry.register("linear_step_2", Square(Input::Step("linear_step_1")));
    registry.register("linear_step_3", Square(Input::Step("linear_step_2")));
    registry.register("linear_step_4", Square(Input::Step("linear_step_3")));

    // diamond
    registry.register("diamond_start", Square(Input::EvenNumber));
    registry.register("diamond_branch_b", Square(Input::Step("diamond_start")));
    registry.register("diamond_branch_c", Square(Input::Step("diamond_start")));
    registry.register(
        "diamond_end",
        Product {
            parents: &["diamond_branch_b", "diamond_branch_c"],
            then_square: true,
        },
    );

    // mixed DAG
    registry.register("dag_init", Square(Input::EvenNumber));
    registry.register("dag_process_left", Square(Input::Step("dag_init")));
    registry.register("dag_process_right", Square(Input::Step("dag_init")));
    registry.register(
        "dag_validate",
        Product {
            parents: &["dag_process_left", "dag_process_right"],
            then_square: false,
        },
    );
    registry.register("dag_transform", Square(Input::Step("dag_process_left")));
    registry.register("dag_analyze", Square(Input::Step("dag_process_right")));
    registry.register(
        "dag_finalize",
        Product {
            parents: &["dag_validate", "dag_transform", "dag_analyze"],
            then_square: false,
        },
    );

    // tree
    registry.register("tree_root", Square(Input::EvenNumber));
    registry.register("tree_branch_left", Square(Input::Step("tree_root")));
    registry.register("tree_branch_right", Square(Input::Step("tree_root")));
    registry.register("tree_leaf_d", Square(Input::Step("tree_branch_left")));
    registry.register("tree_leaf_e", Square(Input::Step("tree_branch_left")));
    registry.register("tree_leaf_f", Square(Input::Step("tree_branch_right")));
    registry.register("tree_leaf_g", Square(Input::Step("tree_branch_right")));
    registry.register(
        "tree_final_convergence",
        Product {
            parents: &["tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"],
            then_square: false,
        },
    );

    // retry_workflow/flaky_task
    registry.register("fail_twice_then_succeed", FailTwiceThenSucceed);
    registry.register("flaky_followup", Square(Input::Step("flaky_step")));

    // failure_workflow/permanent_failure
    registry.register("always_fail_permanently", AlwaysFailPermanently);
    registry.register("independent_step", Square(Input::EvenNumber));
    registry.register("never_runs", Square(Input::Step("doomed_step")));

    // slow_workflow/slow_task
    registry.register("slow_step", SlowStep);
}

/// Where a squaring step takes its number from.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// The task context's `even_number`.
    EvenNumber,
    /// The `value` of an ancestor's results.
    Step(&'static str),
}

impl Input {
    fn read(self, step: &StepContext) -> Result<i64, StepError> {
        match self {
            Input::EvenNumber => even_number(&step.task_context),
            Input::Step(parent) => parent_value(step, parent),
        }
    }
}

/// `value = input²`.
struct Square(Input);

#[async_trait::async_trait]
impl StepHandler for Square {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let input = self.0.read(step)?;
        Ok(json!({ "value": checked_product(&step.step_name, &[input, input])? }))
    }
}

/// `value = product of the parents' values`, squared when `then_square`.
struct Product {
    parents: &'static [&'static str],
    then_square: bool,
}

#[async_trait::async_trait]
impl StepHandler for Product {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let inputs = self
            .parents
            .iter()
            .map(|parent| parent_value(step, parent))
            .collect::<Result<Vec<i64>, StepError>>()?;
        let product = checked_product(&step.step_name, &inputs)?;
        let value = if self.then_square {
            checked_product(&step.step_name, &[product, product])?
        } else {
            product
        };
        Ok(json!({ "value": value }))
    }
}

/// Fails with a retryable error on attempts 1 and 2 and succeeds on attempt 3 with
/// `even_number²` (the retry path end to end).
struct FailTwiceThenSucceed;

#[async_trait::async_trait]
impl StepHandler for FailTwiceThenSucceed {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        if step.attempt < 3 {
            return Err(StepError::retryable(format!(
                "planned failure on attempt {} of 3",
                step.attempt
            ))
            .with_details(json!({ "attempt": step.attempt })));
        }
        let n = even_number(&step.task_context)?;
        Ok(json!({
            "value": checked_product(&step.step_name, &[n, n])?,
            "succeeded_on_attempt": step.attempt,
        }))
    }
}

/// Always fails with a permanent error, whatever attempts remain.
struct AlwaysFailPermanently;

#[async_trait::async_trait]
impl StepHandler for AlwaysFailPermanently {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        Err(StepError::permanent(format!(
            "{} always fails (attempt {})",
            step.step_name, step.attempt
        )))
    }
}

/// Sleeps `sleep_ms` (task context first, then step config, else
/// [`DEFAULT_SLOW_STEP_MS`]) and reports the attempt that finished.
struct SlowStep;

#[async_trait::async_trait]
impl StepHandler for SlowStep {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let sleep_ms = match step
            .task_context
            .get("sleep_ms")
            .or_else(|| step.step_config.get("sleep_ms"))
        {
            None => DEFAULT_SLOW_STEP_MS,
            Some(value) => value.as_u64().ok_or_else(|| {
                StepError::permanent(format!(
                    "sleep_ms must be a non-negative integer of milliseconds, got {value}"
                ))
            })?,
        };
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        Ok(json!({ "slept_ms": sleep_ms, "attempt": step.attempt }))
    }
}

/// The context's `even_number`: present, an integer, even.
fn even_number(context: &Value) -> Result<i64, StepError> {
    let value = context
        .get("even_number")
        .ok_or_else(|| StepError::permanent("the task context has no even_number"))?;
    let n = value.as_i64().ok_or_else(|| {
        StepError::permanent(format!("even_number must be an integer, got {value}"))
    })?;
    if n % 2 != 0 {
        return Err(StepError::permanent(format!(
            "even_number must be even, got {n}"
        )));
    }
    Ok(n)
}

/// The integer `value` of an ancestor's results.
fn parent_value(step: &StepContext, parent: &str) -> Result<i64, StepError> {
    let results = step.dependency_result(parent).ok_or_else(|| {
        // the orchestrator only runs a step after its parents complete; a missing result is
        // a bug or a template that does not match the handler, which retrying will not fix
        StepError::permanent(format!(
            "{} needs the results of {parent}, which are missing",
            step.step_name
        ))
    })?;
    results.get("value").and_then(Value::as_i64).ok_or_else(|| {
        StepError::permanent(format!(
            "{}: the results of {parent} have no integer value: {results}",
            step.step_name
        ))
    })
}

fn checked_product(step_name: &str, factors: &[i64]) -> Result<i64, StepError> {
    factors
        .iter()
        .try_fold(1i64, |acc, factor| acc.checked_mul(*factor))
        .ok_or_else(|| {
            StepError::permanent(format!(
                "{step_name}: the product of {factors:?} overflows a 64-bit integer; use a smaller even_number"
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use uuid::Uuid;

    use super::*;

    fn context(step_name: &str, task_context: Value, parents: &[(&str, i64)]) -> StepContext {
        StepContext {
            task_uuid: Uuid::now_v7(),
            workflow_step_uuid: Uuid::now_v7(),
            step_name: step_name.into(),
            attempt: 1,
            task_context,
            step_config: json!({}),
            dependency_results: parents
                .iter()
                .map(|(name, value)| (name.to_string(), json!({ "value": value })))
                .collect::<HashMap<_, _>>(),
        }
    }

    async fn run(registry: &HandlerRegistry, step: &StepContext) -> Result<Value, StepError> {
        registry
            .get(&step.step_name)
            .expect("registered")
            .call(step)
            .await
    }

    #[tokio::test]
    async fn the_linear_chain_squares_six_four_times() {
        let mut registry = HandlerRegistry::new();
        register_examples(&mut registry);
        let mut previous: Option<(&str, i64)> = None;
        let mut values = Vec::new();
        for name in [
            "linear_step_1",
            "linear_step_2",
            "linear_step_3",
            "linear_step_4",
        ] {
            let parents: Vec<(&str, i64)> = previous.into_iter().collect();
            let out = run(
                &registry,
                &context(name, json!({"even_number": 6}), &parents),
            )
            .await
            .unwrap();
            let value = out["value"].as_i64().unwrap();
            values.push(value);
            previous = Some((name, value));
        }
        assert_eq!(values, [36, 1_296, 1_679_616, 2_821_109_907_456]);
    }

    #[tokio::test]
    async fn joins_multiply_their_parents() {
        let mut registry = HandlerRegistry::new();
        register_examples(&mut registry);
        let end = context(
            "diamond_end",
            json!({}),
            &[("diamond_branch_b", 1_296), ("diamond_branch_c", 1_296)],
        );
        assert_eq!(
            run(&registry, &end).await.unwrap()["value"],
            2_821_109_907_456i64
        );
        let finalize = context(
            "dag_finalize",
            json!({}),
            &[
                ("dag_validate", 256),
                ("dag_transform", 256),
                ("dag_analyze", 256),
            ],
        );
        assert_eq!(
            run(&registry, &finalize).await.unwrap()["value"],
            16_777_216
        );
    }

    #[tokio::test]
    async fn overflow_and_bad_input_fail_permanently_with_a_reason() {
        let mut registry = HandlerRegistry::new();
        register_examples(&mut registry);
        let overflow = context(
            "tree_final_convergence",
            json!({}),
            &[
                ("tree_leaf_d", 65_536),
                ("tree_leaf_e", 65_536),
                ("tree_leaf_f", 65_536),
                ("tree_leaf_g", 65_536),
            ],
        );
        let err = run(&registry, &overflow).await.unwrap_err();
        assert!(!err.retryable && err.message.contains("overflows"), "{err}");

        for (input, needle) in [
            (json!({}), "no even_number"),
            (json!({"even_number": "6"}), "must be an integer"),
            (json!({"even_number": 7}), "must be even"),
        ] {
            let err = run(&registry, &context("linear_step_1", input, &[]))
                .await
                .unwrap_err();
            assert!(!err.retryable && err.message.contains(needle), "{err}");
        }
    }

    #[tokio::test]
    async fn the_flaky_handler_fails_retryably_twice_then_succeeds() {
        let mut registry = HandlerRegistry::new();
        register_examples(&mut registry);
        let mut step = context("flaky_step", json!({"even_number": 4}), &[]);
        let handler = registry.get("fail_twice_then_succeed").unwrap();
        for attempt in 1..=2 {
            step.attempt = attempt;
            let err = handler.call(&step).await.unwrap_err();
            assert!(err.retryable, "attempt {attempt}: {err}");
        }
        step.attempt = 3;
        let out = handler.call(&step).await.unwrap();
        assert_eq!(out, json!({"value": 16, "succeeded_on_attempt": 3}));
    }
}

//! Ruby handlers end to end: the Ruby examples run the fixture workflows to the same values
//! as the Rust ones, failures raised in Ruby reach the step's error (message and backtrace),
//! and `tasker worker --ruby-handlers` runs them as a process, stops on SIGTERM, and refuses
//! a file that does not load, naming it.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::json;
use tasker_worker::examples::register_examples;
use tasker_worker::HandlerRegistry;
use tokio::process::Command;

use crate::e2e::harness::{
    assert_diamond_values, assert_linear_values, terminate, worker_config, Harness, DIAMOND,
    FAILING, LINEAR, WORKFLOW_TIMEOUT,
};

const TASKER: &str = env!("CARGO_BIN_EXE_tasker");

/// The Rust examples with the handlers of `dir` (Ruby) in place of those of the same name.
async fn registry_with_ruby(dir: &Path) -> Arc<HandlerRegistry> {
    let mut registry = HandlerRegistry::new();
    register_examples(&mut registry);
    tasker_ruby::load(dir)
        .await
        .expect("the Ruby handlers load")
        .register_into(&mut registry);
    Arc::new(registry)
}

async fn harness_with_ruby(dir: &Path) -> Harness {
    let mut harness = Harness::api_only().await;
    harness.start_orchestrator("orchestrator-1").await;
    harness
        .start_worker(worker_config("ruby-worker"), registry_with_ruby(dir).await)
        .await;
    harness
}

#[tokio::test]
async fn test_ruby_examples_run_linear_and_diamond_to_the_rust_values() {
    let harness = harness_with_ruby(&tasker_ruby::examples_dir()).await;
    assert_linear_values(&harness.run_fixture(LINEAR).await);
    assert_diamond_values(&harness.run_fixture(DIAMOND).await);
    harness.shutdown().await;
}

const FAILING_HANDLERS: &str = r#"
class Doomed < Tasker::StepHandler
  def call(step)
    raise Tasker::PermanentError, "order #{step.task_context["even_number"]} was cancelled upstream"
  end
end

class Flaky < Tasker::StepHandler
  def call(step)
    raise IOError, "socket closed" if step.attempt < 3

    { "value" => step.task_context["even_number"]**2, "succeeded_on_attempt" => step.attempt }
  end
end

Tasker.register_handler("always_fail_permanently", Doomed)
Tasker.register_handler("fail_twice_then_succeed", Flaky)
"#;

#[tokio::test]
async fn test_ruby_failures_reach_the_step_with_message_and_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("failing.rb"), FAILING_HANDLERS).unwrap();
    let harness = harness_with_ruby(dir.path()).await;

    let blocked = harness.run_fixture(FAILING).await;
    assert_eq!(blocked.state, "blocked_by_failures", "{blocked:#?}");
    let doomed = blocked.step("doomed_step").unwrap();
    assert_eq!(
        (doomed.state.as_str(), doomed.attempts),
        ("error", 1),
        "not retried"
    );
    let error = doomed.last_error.as_ref().expect("the error is recorded");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["message"], "order 6 was cancelled upstream");
    assert!(
        error["details"]["backtrace"][0]
            .as_str()
            .unwrap()
            .contains("failing.rb:4:in `call'"),
        "{error}"
    );

    let retried = harness
        .run("retry_workflow", "flaky_task", json!({"even_number": 4}))
        .await;
    assert_eq!(retried.state, "complete", "{retried:#?}");
    let flaky = retried.step("flaky_step").unwrap();
    assert_eq!(
        flaky.attempts, 3,
        "two retryable Ruby failures, then success"
    );
    assert_eq!(
        flaky.results,
        Some(json!({"value": 16, "succeeded_on_attempt": 3}))
    );
    let states = harness.step_transitions(flaky.workflow_step_uuid).await;
    let errors: Vec<String> = states
        .iter()
        .filter(|(state, _)| state == "enqueued_as_error_for_orchestration")
        .map(|(state, _)| state.clone())
        .collect();
    assert_eq!(errors.len(), 2, "{states:?}");
    harness.shutdown().await;
}

#[tokio::test]
async fn test_tasker_worker_runs_ruby_handlers_and_stops_on_sigterm() {
    let mut harness = Harness::api_only().await;
    harness.start_orchestrator("orchestrator-1").await;
    let worker = Command::new(TASKER)
        .args([
            "worker",
            "--namespaces",
            "linear_workflow",
            "--fallback-poll",
            "250ms",
        ])
        .arg("--ruby-handlers")
        .arg(tasker_ruby::examples_dir())
        .env("DATABASE_URL", &harness.db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker worker --ruby-handlers`");
    assert_linear_values(&harness.run_fixture(LINEAR).await);
    terminate(worker, "tasker worker --ruby-handlers").await;
    harness.shutdown().await;
}

#[tokio::test]
async fn test_tasker_worker_refuses_a_ruby_file_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.rb"),
        "class Broken < Tasker::StepHandler\n  def call(step\nend\n",
    )
    .unwrap();
    let output = tokio::time::timeout(
        WORKFLOW_TIMEOUT,
        Command::new(TASKER)
            .args(["worker", "--ruby-handlers"])
            .arg(dir.path())
            .env("DATABASE_URL", "postgres://127.0.0.1:1/unused")
            .env("RUST_LOG", "error")
            .output(),
    )
    .await
    .expect("the worker gave up in time")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.rb:") && stderr.contains("SyntaxError"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
}

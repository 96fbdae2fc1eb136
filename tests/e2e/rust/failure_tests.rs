//! Failures end to end: a retryable failure is retried until it succeeds, a permanent one
//! blocks the task and its dependents never run.

use serde_json::json;

use crate::e2e::harness::{value_of, Harness, FAILING};

#[tokio::test]
async fn test_step_that_fails_twice_then_succeeds() {
    let harness = Harness::start().await;
    let task = harness
        .run("retry_workflow", "flaky_task", json!({"even_number": 4}))
        .await;
    assert_eq!(task.state, "complete", "{task:#?}");

    let flaky = task.step("flaky_step").unwrap();
    assert_eq!((flaky.state.as_str(), flaky.attempts), ("complete", 3));
    assert_eq!(
        flaky.results,
        Some(json!({"value": 16, "succeeded_on_attempt": 3}))
    );
    let states: Vec<String> = harness
        .step_transitions(flaky.workflow_step_uuid)
        .await
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    let count = |wanted: &str| states.iter().filter(|s| *s == wanted).count();
    assert_eq!(count("in_progress"), 3, "{states:?}");
    assert_eq!(
        count("enqueued_as_error_for_orchestration"),
        2,
        "{states:?}"
    );
    assert_eq!(count("waiting_for_retry"), 2, "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("complete"));

    // the dependent ran once, after the success, on its result
    let followup = task.step("flaky_followup").unwrap();
    assert_eq!(followup.attempts, 1);
    assert_eq!(value_of(&task, "flaky_followup"), 256);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_permanent_failure_blocks_the_task() {
    let harness = Harness::start().await;
    let task = harness.run_fixture(FAILING).await;
    assert_eq!(task.state, "blocked_by_failures", "{task:#?}");
    assert!(task.is_finished() && !task.is_complete());
    assert_eq!(task.step_counts.failed, 1);

    // a permanent error is not retried although the policy allows 3 attempts
    let doomed = task.step("doomed_step").unwrap();
    assert_eq!((doomed.state.as_str(), doomed.attempts), ("error", 1));
    let error = doomed.last_error.as_ref().expect("the error is recorded");
    assert_eq!(error["retryable"], false);
    assert!(
        error["message"].as_str().unwrap().contains("always fails"),
        "{error}"
    );

    // the dependent was never enqueued, let alone run
    let never = task.step("never_runs").unwrap();
    assert_eq!(
        (never.state.as_str(), never.attempts, &never.results),
        ("pending", 0, &None)
    );
    let never_states = harness.step_transitions(never.workflow_step_uuid).await;
    assert_eq!(
        never_states.len(),
        1,
        "only the initial pending: {never_states:?}"
    );

    // the independent branch still completed before the task gave up
    assert_eq!(value_of(&task, "independent_step"), 36);
    assert_eq!(task.step("independent_step").unwrap().state, "complete");
    harness.shutdown().await;
}

//! An operator's actions end to end, through plain HTTP: cancel a task while a step runs,
//! resolve a step that failed for good, retry one once its cause is fixed, and each action
//! refused (409) where it does not apply.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tasker_client::TaskDetails;
use tasker_shared::templates::{parse_template, register_template};
use tasker_worker::{HandlerRegistry, StepContext, StepError, StepHandler};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::e2e::harness::{wait_until, worker_config, Harness, FAILING, WORKFLOW_TIMEOUT};

/// `gate` runs until the test opens it; `after_gate` depends on it; `fixable` fails for good
/// until the test fixes its cause.
const TEMPLATE: &str = r"
namespace: operator_tests
name: gated
version: 1.0.0
steps:
  - name: gate
    handler: gate
  - name: after_gate
    handler: after_gate
    depends_on: [gate]
  - name: fixable
    handler: fixable
    retry: { retryable: false, max_attempts: 1 }
";

/// What the test handlers saw, and the switches the test turns.
#[derive(Default)]
struct Switches {
    gate_started: AtomicBool,
    gate_open: Notify,
    after_gate_runs: AtomicUsize,
    fixed: AtomicBool,
}

struct Gate(Arc<Switches>);
struct AfterGate(Arc<Switches>);
struct Fixable(Arc<Switches>);

#[async_trait::async_trait]
impl StepHandler for Gate {
    async fn call(&self, _: &StepContext) -> Result<Value, StepError> {
        self.0.gate_started.store(true, Ordering::SeqCst);
        self.0.gate_open.notified().await;
        Ok(json!({"value": 1}))
    }
}

#[async_trait::async_trait]
impl StepHandler for AfterGate {
    async fn call(&self, _: &StepContext) -> Result<Value, StepError> {
        self.0.after_gate_runs.fetch_add(1, Ordering::SeqCst);
        Ok(json!({"value": 2}))
    }
}

#[async_trait::async_trait]
impl StepHandler for Fixable {
    async fn call(&self, _: &StepContext) -> Result<Value, StepError> {
        if self.0.fixed.load(Ordering::SeqCst) {
            Ok(json!({"value": 3}))
        } else {
            Err(StepError::permanent(
                "the upstream service rejected the input",
            ))
        }
    }
}

/// The engine with the example handlers and the test's own, serving both namespaces.
async fn start(switches: &Arc<Switches>) -> Harness {
    let mut harness = Harness::api_only().await;
    let template = parse_template(TEMPLATE, "operator_tests").unwrap();
    register_template(&harness.db.pool, &template)
        .await
        .unwrap();
    let mut registry = HandlerRegistry::new();
    tasker_worker::examples::register_examples(&mut registry);
    registry.register("gate", Gate(switches.clone()));
    registry.register("after_gate", AfterGate(switches.clone()));
    registry.register("fixable", Fixable(switches.clone()));
    let mut config = worker_config("worker-1");
    config.namespaces.push("operator_tests".into());
    harness.start_orchestrator("orchestrator-1").await;
    harness.start_worker(config, Arc::new(registry)).await;
    harness
}

/// `POST path` with `body` (none: an empty body), answering the status and the JSON.
async fn post(harness: &Harness, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = reqwest::Client::new().post(format!("{}{path}", harness.api.base_url));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn task_of(body: Value) -> TaskDetails {
    serde_json::from_value(body).unwrap()
}

/// Waits until the `gate` step's handler has started.
async fn gate_started(switches: &Arc<Switches>) {
    wait_until("the gate step to run", WORKFLOW_TIMEOUT, || {
        let switches = switches.clone();
        async move { switches.gate_started.load(Ordering::SeqCst) }
    })
    .await;
}

async fn task(harness: &Harness, task_uuid: Uuid) -> TaskDetails {
    harness.api.client.get_task(task_uuid).await.unwrap()
}

#[tokio::test]
async fn test_cancel_while_a_step_runs_records_its_result_and_runs_nothing_more() {
    let switches = Arc::new(Switches::default());
    switches.fixed.store(true, Ordering::SeqCst);
    let harness = start(&switches).await;
    let task_uuid = harness.create("operator_tests", "gated", json!({})).await;
    gate_started(&switches).await;

    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{task_uuid}/cancel"),
        Some(json!({"initiator": "ops@example.com", "reason": "wrong input"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cancelled = task_of(body);
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!(cancelled.step("after_gate").unwrap().state, "cancelled");
    assert_eq!(cancelled.step("gate").unwrap().state, "in_progress");

    // the running step finishes; its result is recorded and moves nothing
    switches.gate_open.notify_one();
    let gate_uuid = cancelled.step("gate").unwrap().workflow_step_uuid;
    wait_until(
        "the gate's result to be recorded",
        WORKFLOW_TIMEOUT,
        || async { task(&harness, task_uuid).await.step("gate").unwrap().state == "cancelled" },
    )
    .await;
    let after = task(&harness, task_uuid).await;
    assert_eq!(after.state, "cancelled");
    assert_eq!(
        after.step("gate").unwrap().results,
        Some(json!({"value": 1}))
    );
    let after_gate = after.step("after_gate").unwrap();
    assert_eq!(
        (after_gate.state.as_str(), after_gate.attempts),
        ("cancelled", 0)
    );
    assert_eq!(switches.after_gate_runs.load(Ordering::SeqCst), 0);
    let (metadata,): (Value,) = sqlx::query_as(
        "SELECT metadata FROM tasker.workflow_step_transitions
          WHERE workflow_step_uuid = $1 AND most_recent",
    )
    .bind(gate_uuid)
    .fetch_one(&harness.db.pool)
    .await
    .unwrap();
    assert_eq!(metadata["task_cancelled"], true, "{metadata}");
    assert_eq!(metadata["outcome"], "success", "{metadata}");

    // who asked is in the task's history
    let (who,): (Value,) = sqlx::query_as(
        "SELECT metadata FROM tasker.task_transitions WHERE task_uuid = $1 AND most_recent",
    )
    .bind(task_uuid)
    .fetch_one(&harness.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (&who["action"], &who["initiator"], &who["reason"]),
        (
            &json!("cancel"),
            &json!("ops@example.com"),
            &json!("wrong input")
        )
    );

    // idempotent: cancelling again (with no body at all) answers the same task
    let (status, body) = post(&harness, &format!("/v1/tasks/{task_uuid}/cancel"), None).await;
    assert_eq!((status, task_of(body).state.as_str()), (200, "cancelled"));
    // and nothing is left in any queue for it
    let (left,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM tasker.queue_messages WHERE message ->> 'task_uuid' = $1",
    )
    .bind(task_uuid.to_string())
    .fetch_one(&harness.db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_resolving_a_failed_step_lets_its_dependents_finish_the_task() {
    let switches = Arc::new(Switches::default());
    let harness = start(&switches).await;
    let task = harness.run_fixture(FAILING).await;
    assert_eq!(task.state, "blocked_by_failures", "{task:#?}");

    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{}/steps/doomed_step/resolve", task.task_uuid),
        Some(json!({"results": {"value": 7}, "initiator": "ops", "reason": "computed by hand"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        task_of(body).step("doomed_step").unwrap().state,
        "resolved_manually"
    );

    let done = harness.wait(task.task_uuid).await;
    assert_eq!(done.state, "complete", "{done:#?}");
    assert_eq!(
        done.step("doomed_step").unwrap().results,
        Some(json!({"value": 7}))
    );
    // the dependent ran on the resolved value: 7 squared
    assert_eq!(
        done.step("never_runs").unwrap().results.as_ref().unwrap()["value"],
        49
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn test_retrying_a_step_after_its_cause_is_fixed_completes_the_task() {
    let switches = Arc::new(Switches::default());
    let harness = start(&switches).await;
    let task_uuid = harness.create("operator_tests", "gated", json!({})).await;
    switches.gate_open.notify_one();
    let blocked = harness.wait(task_uuid).await;
    assert_eq!(blocked.state, "blocked_by_failures", "{blocked:#?}");
    let fixable = blocked.step("fixable").unwrap();
    assert_eq!((fixable.state.as_str(), fixable.attempts), ("error", 1));

    switches.fixed.store(true, Ordering::SeqCst);
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{task_uuid}/steps/fixable/retry"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let done = harness.wait(task_uuid).await;
    assert_eq!(done.state, "complete", "{done:#?}");
    let fixable = done.step("fixable").unwrap();
    assert_eq!(fixable.results, Some(json!({"value": 3})));
    assert_eq!(
        fixable.attempts, 1,
        "a fresh budget: the retry is attempt 1 again"
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn test_actions_on_the_wrong_state_are_refused_with_409_and_change_nothing() {
    let switches = Arc::new(Switches::default());
    switches.fixed.store(true, Ordering::SeqCst);
    let harness = start(&switches).await;
    let complete = harness
        .run(
            "linear_workflow",
            "mathematical_sequence",
            json!({"even_number": 2}),
        )
        .await;
    assert_eq!(complete.state, "complete");
    let id = complete.task_uuid;

    let refusals = [
        (format!("/v1/tasks/{id}/cancel"), None, "complete"),
        (
            format!("/v1/tasks/{id}/steps/linear_step_1/resolve"),
            Some(json!({"results": {"value": 1}})),
            "complete",
        ),
        (
            format!("/v1/tasks/{id}/steps/linear_step_1/retry"),
            None,
            "complete",
        ),
    ];
    for (path, body, state) in refusals {
        let (status, body) = post(&harness, &path, body).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_state", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(state), "{path}: {message}");
    }
    assert_eq!(
        task(&harness, id).await,
        complete,
        "a refused action changes nothing"
    );

    // a step that has not failed cannot be retried; an unknown step or task is a 404
    let running = harness.create("operator_tests", "gated", json!({})).await;
    gate_started(&switches).await;
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{running}/steps/gate/retry"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("step gate is in_progress"));
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{running}/steps/gate/resolve"),
        Some(json!({"results": {}})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{running}/steps/no_such_step/retry"),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("step_not_found"))
    );
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{}/cancel", Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("task_not_found"))
    );
    let (status, body) = post(
        &harness,
        &format!("/v1/tasks/{running}/cancel"),
        Some(json!({"initiator": 5})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_body"))
    );
    switches.gate_open.notify_one();
    harness.shutdown().await;
}

//! Crashes, scale-out and duplicates: a worker process killed mid-step loses nothing, two
//! workers and two orchestrators on one database run every step exactly once, and a duplicate
//! result message changes nothing.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use serde_json::{json, Value};
use tasker_shared::messaging::{Queue, StepOutcome, StepResultMessage, RESULTS_QUEUE};
use tasker_worker::{HandlerRegistry, StepContext, StepError, StepHandler, WorkerConfig};
use uuid::Uuid;

use crate::e2e::harness::{
    assert_completed_once, example_registry, value_of, wait_until, worker_config, Harness, LINEAR,
    WORKFLOW_TIMEOUT,
};

#[tokio::test]
async fn test_killed_worker_step_is_reclaimed_after_the_visibility_timeout() {
    let mut harness = Harness::api_only().await;
    harness.start_orchestrator("orchestrator-1").await;

    // a real worker process, so that it can really die: SIGKILL, no cleanup, no goodbye
    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args([
            "worker",
            "--namespaces",
            "slow_workflow",
            "--visibility-timeout",
            "1s",
            "--fallback-poll",
            "200ms",
            "--worker-id",
            "doomed-worker",
        ])
        .env("DATABASE_URL", &harness.db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker worker`");

    let task_uuid = harness
        .create("slow_workflow", "slow_task", json!({"sleep_ms": 2500}))
        .await;
    let step_uuid =
        harness.api.client.get_task(task_uuid).await.unwrap().steps[0].workflow_step_uuid;
    let pool = harness.db.pool.clone();
    wait_until(
        "the worker process to start the slow step",
        WORKFLOW_TIMEOUT,
        || {
            let pool = pool.clone();
            async move {
                let state: String = sqlx::query_scalar(
                    "SELECT current_state FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
                )
                .bind(step_uuid)
                .fetch_one(&pool)
                .await
                .unwrap();
                state == "in_progress"
            }
        },
    )
    .await;
    doomed.start_kill().expect("sending SIGKILL");
    let status = doomed.wait().await.unwrap();
    assert!(!status.success(), "the worker was killed: {status:?}");

    // the step is stranded in progress with the dead worker's claim
    let stranded = harness.api.client.get_task(task_uuid).await.unwrap();
    assert_eq!(stranded.steps[0].state, "in_progress");
    assert_eq!(stranded.steps[0].attempts, 1);

    harness
        .start_worker(
            WorkerConfig {
                namespaces: vec!["slow_workflow".into()],
                ..worker_config("rescuer-worker")
            },
            example_registry(),
        )
        .await;
    let task = harness.wait(task_uuid).await;
    assert_eq!(task.state, "complete", "{task:#?}");
    let step = &task.steps[0];
    assert_eq!(step.attempts, 2, "the re-claim counts as an attempt");
    assert_eq!(step.results, Some(json!({"slept_ms": 2500, "attempt": 2})));

    let claims: Vec<Option<String>> = harness
        .step_transitions(step_uuid)
        .await
        .into_iter()
        .filter(|(state, _)| state == "in_progress")
        .map(|(_, processor)| processor)
        .collect();
    assert_eq!(
        claims,
        [
            Some("doomed-worker".to_string()),
            Some("rescuer-worker".to_string())
        ],
        "claimed by the dead worker, then re-claimed by the rescuer"
    );
    harness.shutdown().await;
}

/// Wraps a handler and counts its runs per step.
struct Counting {
    inner: Arc<dyn StepHandler>,
    runs: Arc<Mutex<HashMap<Uuid, u32>>>,
}

#[async_trait::async_trait]
impl StepHandler for Counting {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(step.workflow_step_uuid)
            .or_default() += 1;
        self.inner.call(step).await
    }
}

fn counting_registry(runs: &Arc<Mutex<HashMap<Uuid, u32>>>) -> Arc<HandlerRegistry> {
    let examples = example_registry();
    let mut registry = HandlerRegistry::new();
    for name in examples.names() {
        registry.register(
            &name,
            Counting {
                inner: examples.get(&name).unwrap(),
                runs: runs.clone(),
            },
        );
    }
    Arc::new(registry)
}

#[tokio::test]
async fn test_two_workers_and_two_orchestrators_run_every_step_exactly_once() {
    let mut harness = Harness::api_only().await;
    harness.start_orchestrator("orchestrator-a").await;
    harness.start_orchestrator("orchestrator-b").await;
    let runs = Arc::new(Mutex::new(HashMap::new()));
    harness
        .start_worker(worker_config("worker-a"), counting_registry(&runs))
        .await;
    harness
        .start_worker(worker_config("worker-b"), counting_registry(&runs))
        .await;

    // (namespace, template, n, final step, expected final value)
    let mut plan: Vec<(&str, &str, i64, &str, i64)> = Vec::new();
    for n in [2i64, 4, 6, 8, 10, 12] {
        plan.push((
            "linear_workflow",
            "mathematical_sequence",
            n,
            "linear_step_4",
            n.pow(16),
        ));
        plan.push((
            "diamond_workflow",
            "diamond_pattern",
            n,
            "diamond_end",
            n.pow(16),
        ));
    }
    for n in [2i64, 4, 6] {
        plan.push((
            "mixed_dag_workflow",
            "complex_dag",
            n,
            "dag_finalize",
            n.pow(24),
        ));
    }
    plan.push((
        "tree_workflow",
        "hierarchical_tree",
        2,
        "tree_final_convergence",
        1i64 << 32,
    ));

    let tasks = join_all(plan.iter().map(|(namespace, name, n, _, _)| {
        harness.run(namespace, name, json!({ "even_number": n }))
    }))
    .await;

    let mut steps = 0;
    for (task, (_, name, n, last, expected)) in tasks.iter().zip(&plan) {
        assert_completed_once(task);
        assert_eq!(value_of(task, last), *expected, "{name} with n = {n}");
        steps += task.steps.len();
    }
    let runs: HashMap<Uuid, u32> = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), steps, "every step ran");
    let repeated: Vec<(&Uuid, &u32)> = runs.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        repeated.is_empty(),
        "steps run more than once: {repeated:?}"
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn test_duplicate_result_message_changes_nothing() {
    let harness = Harness::start().await;
    let task = harness.run_fixture(LINEAR).await;
    assert_completed_once(&task);
    let before = snapshot(&harness, task.task_uuid).await;

    // a late copy of step 4's success, and a contradicting failure for step 2
    let results = Queue::new(RESULTS_QUEUE).unwrap();
    for (step, outcome) in [
        ("linear_step_4", StepOutcome::Success),
        ("linear_step_2", StepOutcome::RetryableFailure),
    ] {
        let message = StepResultMessage {
            task_uuid: task.task_uuid,
            workflow_step_uuid: task.step(step).unwrap().workflow_step_uuid,
            attempt: 1,
            outcome,
            error: (outcome != StepOutcome::Success).then(|| json!({"message": "late duplicate"})),
        };
        results.send(&harness.db.pool, &message).await.unwrap();
    }
    // the orchestrator consumes (deletes) the duplicates: wait until it has, so the
    // comparison below is after their processing, not before it
    let pool = harness.db.pool.clone();
    let queue = results.clone();
    wait_until(
        "the orchestrator to consume the duplicates",
        WORKFLOW_TIMEOUT,
        || {
            let (pool, queue) = (pool.clone(), queue.clone());
            async move { queue.depth(&pool).await.unwrap() == 0 }
        },
    )
    .await;

    let after = snapshot(&harness, task.task_uuid).await;
    assert_eq!(before, after);
    let reread = harness.api.client.get_task(task.task_uuid).await.unwrap();
    assert_eq!(reread.state, "complete");
    assert_eq!(value_of(&reread, "linear_step_4"), 2_821_109_907_456);
    harness.shutdown().await;
}

/// Everything a result could change: the task's state and transitions, and per step its state,
/// attempts, results, error and transitions.
async fn snapshot(harness: &Harness, task_uuid: Uuid) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
                  'task', (SELECT to_jsonb(t) FROM tasker.tasks t WHERE task_uuid = $1),
                  'task_transitions', (SELECT jsonb_agg(to_jsonb(tt) ORDER BY sort_key)
                                         FROM tasker.task_transitions tt WHERE task_uuid = $1),
                  'steps', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.name)
                              FROM tasker.workflow_steps s WHERE task_uuid = $1),
                  'step_transitions', (SELECT jsonb_agg(to_jsonb(st) ORDER BY s.name, st.sort_key)
                                         FROM tasker.workflow_step_transitions st
                                         JOIN tasker.workflow_steps s USING (workflow_step_uuid)
                                        WHERE s.task_uuid = $1))",
    )
    .bind(task_uuid)
    .fetch_one(&harness.db.pool)
    .await
    .unwrap()
}

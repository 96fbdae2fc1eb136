//! The end-to-end harness: a fresh database with the fixture templates registered, the REST API
//! served on `127.0.0.1:0`, and any number of orchestrators and workers running in this
//! process, each on its own connection pool as separate processes would be.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tasker_client::{CreateTaskRequest, TaskDetails};
use tasker_orchestration::api::{serve, ApiState};
use tasker_orchestration::orchestration::core::{
    Orchestrator, OrchestratorConfig, OrchestratorHandle,
};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::templates::{load_dir, register_template};
use tasker_test_support::{fixtures_dir, LoopbackApi, TestDatabase};
use tasker_worker::examples::{register_examples, EXAMPLE_NAMESPACES};
use tasker_worker::{HandlerRegistry, Worker, WorkerConfig, WorkerHandle};
use uuid::Uuid;

/// How long a test waits for a workflow before calling it stuck. Generous: a slow CI machine
/// must not fail a correct engine (waits return as soon as the task finishes).
pub const WORKFLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// How often components look for work without a notification; short so that a lost
/// notification costs a test little.
const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// The example handlers, as `tasker worker` registers them.
pub fn example_registry() -> Arc<HandlerRegistry> {
    let mut registry = HandlerRegistry::new();
    register_examples(&mut registry);
    Arc::new(registry)
}

/// A worker configuration for tests: every example namespace, a short fallback poll.
pub fn worker_config(worker_id: &str) -> WorkerConfig {
    WorkerConfig {
        namespaces: EXAMPLE_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        fallback_poll: FALLBACK_POLL,
        worker_id: worker_id.to_string(),
        ..WorkerConfig::default()
    }
}

/// A running engine on a private database.
pub struct Harness {
    pub db: TestDatabase,
    /// The REST API and a client for it.
    pub api: LoopbackApi,
    orchestrators: Vec<OrchestratorHandle>,
    workers: Vec<WorkerHandle>,
    pools: Vec<PgPool>,
}

impl Harness {
    /// API, one orchestrator and one worker with the example handlers.
    pub async fn start() -> Self {
        let mut harness = Self::api_only().await;
        harness.start_orchestrator("orchestrator-1").await;
        harness
            .start_worker(worker_config("worker-1"), example_registry())
            .await;
        harness
    }

    /// The API alone: tasks are created but nothing runs them.
    pub async fn api_only() -> Self {
        // The engine's warnings and errors (a step result that failed to process, a lost
        // connection) go to the test's captured output, printed when the test fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .try_init();
        let db = TestDatabase::new().await;
        for (path, template) in load_dir(&fixtures_dir()).expect("the fixture templates load") {
            register_template(&db.pool, &template)
                .await
                .unwrap_or_else(|e| panic!("registering {}: {e}", path.display()));
        }
        let api_pool = pool(&db, 10).await;
        let state = ApiState::new(
            api_pool.clone(),
            // de-duplication off: tests submit identical requests on purpose
            TaskInitializer::new(api_pool.clone(), Duration::ZERO),
        );
        let api = LoopbackApi::start(|listener, shutdown| serve(listener, state, shutdown))
            .await
            .expect("starting the API on 127.0.0.1");
        Self {
            db,
            api,
            orchestrators: Vec::new(),
            workers: Vec::new(),
            pools: vec![api_pool],
        }
    }

    /// Starts another orchestrator on its own pool.
    pub async fn start_orchestrator(&mut self, processor_id: &str) {
        let pool = pool(&self.db, 6).await;
        let handle = Orchestrator::start(
            pool.clone(),
            OrchestratorConfig {
                fallback_poll: FALLBACK_POLL,
                processor_id: processor_id.to_string(),
                ..OrchestratorConfig::default()
            },
        )
        .await
        .expect("starting an orchestrator");
        self.orchestrators.push(handle);
        self.pools.push(pool);
    }

    /// Starts another worker on its own pool.
    pub async fn start_worker(&mut self, config: WorkerConfig, registry: Arc<HandlerRegistry>) {
        let connections = u32::try_from(config.concurrency).unwrap_or(8) + 2;
        let pool = pool(&self.db, connections).await;
        let handle = Worker::start(pool.clone(), config, registry)
            .await
            .expect("starting a worker");
        self.workers.push(handle);
        self.pools.push(pool);
    }

    /// Creates a task through the API.
    pub async fn create(&self, namespace: &str, name: &str, context: Value) -> Uuid {
        self.api
            .client
            .create_task(&CreateTaskRequest::new(namespace, name, "1.0.0", context))
            .await
            .unwrap_or_else(|e| panic!("creating {namespace}/{name}: {e}"))
            .task_uuid
    }

    /// Waits (long poll) until the task is finished and returns it.
    pub async fn wait(&self, task_uuid: Uuid) -> TaskDetails {
        match self
            .api
            .client
            .wait_for_task(task_uuid, WORKFLOW_TIMEOUT)
            .await
        {
            Ok(task) => task,
            Err(error) => {
                let now = self.api.client.get_task(task_uuid).await.ok();
                panic!("task {task_uuid} did not finish: {error}\nit is now: {now:#?}")
            }
        }
    }

    /// Creates a task and waits for it.
    pub async fn run(&self, namespace: &str, name: &str, context: Value) -> TaskDetails {
        let task_uuid = self.create(namespace, name, context).await;
        self.wait(task_uuid).await
    }

    /// Runs one of the fixture workflows (`LINEAR`, `DIAMOND`, `FAILING`) on its usual
    /// input, `even_number` 6, and waits for it.
    pub async fn run_fixture(&self, (namespace, name): (&str, &str)) -> TaskDetails {
        self.run(namespace, name, serde_json::json!({"even_number": 6}))
            .await
    }

    /// The states a step went through, oldest first, with the processor of each transition.
    pub async fn step_transitions(&self, step_uuid: Uuid) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT to_state, processor FROM tasker.workflow_step_transitions
              WHERE workflow_step_uuid = $1 ORDER BY sort_key",
        )
        .bind(step_uuid)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    /// Stops workers, orchestrators and the server, in that order.
    pub async fn shutdown(mut self) {
        for worker in self.workers.drain(..) {
            worker.shutdown().await.expect("stopping a worker");
        }
        for orchestrator in self.orchestrators.drain(..) {
            orchestrator
                .shutdown()
                .await
                .expect("stopping an orchestrator");
        }
        self.api
            .stop()
            .await
            .expect("the API server stopped cleanly");
        for pool in self.pools.drain(..) {
            pool.close().await;
        }
    }
}

async fn pool(db: &TestDatabase, connections: u32) -> PgPool {
    tasker_shared::database::connect(&db.url, connections)
        .await
        .expect("connecting to the test database")
}

/// Polls `condition` every few milliseconds until it holds, failing the test after `timeout`
/// with `what`. For conditions no notification announces (a step reaching in_progress, a
/// queue draining); returns as soon as the condition holds.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The linear fixture workflow: four steps, each squaring its parent's value.
pub const LINEAR: (&str, &str) = ("linear_workflow", "mathematical_sequence");
/// The diamond fixture workflow: a start, two branches, and a join multiplying them.
pub const DIAMOND: (&str, &str) = ("diamond_workflow", "diamond_pattern");
/// The fixture workflow whose `doomed_step` fails for good.
pub const FAILING: (&str, &str) = ("failure_workflow", "permanent_failure");

/// Asserts the linear workflow run on 6 completed, every step once, with 6², then each
/// value squared: a step run before its parent, or on another's result, fails it.
pub fn assert_linear_values(task: &TaskDetails) {
    assert_completed_once(task);
    let values: Vec<i64> = (1..=4)
        .map(|k| value_of(task, &format!("linear_step_{k}")))
        .collect();
    assert_eq!(values, [36, 1_296, 1_679_616, 2_821_109_907_456]);
}

/// Asserts the diamond workflow run on 6 completed, every step once, and its join saw both
/// branches: (1,296 × 1,296)².
pub fn assert_diamond_values(task: &TaskDetails) {
    assert_completed_once(task);
    assert_eq!(value_of(task, "diamond_start"), 36);
    assert_eq!(value_of(task, "diamond_branch_b"), 1_296);
    assert_eq!(value_of(task, "diamond_branch_c"), 1_296);
    assert_eq!(value_of(task, "diamond_end"), 2_821_109_907_456);
}

/// The integer `value` of a step's results.
pub fn value_of(task: &TaskDetails, step: &str) -> i64 {
    let details = task
        .step(step)
        .unwrap_or_else(|| panic!("task has no step {step}"));
    details
        .results
        .as_ref()
        .and_then(|r| r.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("step {step} has no integer value: {details:#?}"))
}

/// Asserts the task completed with every step run exactly once.
pub fn assert_completed_once(task: &TaskDetails) {
    assert_eq!(task.state, "complete", "{task:#?}");
    assert_eq!(task.completion_percentage, 100.0);
    assert!(task.completed_at.is_some());
    for step in &task.steps {
        assert_eq!(
            (step.state.as_str(), step.attempts),
            ("complete", 1),
            "step {}",
            step.name
        );
    }
}

/// Sends SIGTERM and expects a clean exit (graceful shutdown).
pub async fn terminate(mut child: tokio::process::Child, what: &str) {
    let pid = child.id().expect("the process is running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("sending SIGTERM");
    let status = tokio::time::timeout(WORKFLOW_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop on SIGTERM"))
        .unwrap();
    assert!(status.success(), "{what} exited with {status:?}");
}

//! The in-process deployment the end-to-end benchmarks drive (not a benchmark itself): a fresh
//! database, the REST API on 127.0.0.1 (ephemeral port), one orchestrator and one worker with
//! the Rust example handlers (or, after [`Deployment::serve_with`], the Ruby ones), each
//! component on its own connection pool as separate processes would be, and a LISTEN
//! connection on `tasker_task_finished` that tells when a task is done.

#![allow(dead_code)] // each benchmark binary uses a different part

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use tasker_client::CreateTaskRequest;
use tasker_orchestration::api::{serve, ApiState};
use tasker_orchestration::orchestration::core::{
    Orchestrator, OrchestratorConfig, OrchestratorHandle,
};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::error::display_chain;
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{
    delete_tasks, fixture_templates, register, BenchDatabase, LoopbackApi, DAG, DIAMOND, LINEAR,
    TREE,
};
use tasker_worker::{
    HandlerRegistry, StepContext, StepError, StepHandler, Worker, WorkerConfig, WorkerHandle,
};
use uuid::Uuid;

/// The workflows, by the short name the benchmarks use.
pub const WORKFLOWS: [(&str, &str); 4] = [
    ("linear", LINEAR),
    ("diamond", DIAMOND),
    ("dag", DAG),
    ("tree", TREE),
];

/// For steps the example handlers do not cover: the sum of the parents' `result`s plus one, so
/// every step still reads its inputs and writes a result.
struct SumHandler;

#[async_trait::async_trait]
impl StepHandler for SumHandler {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let sum: i64 = step
            .dependency_results
            .values()
            .filter_map(|v| v.get("result").and_then(Value::as_i64))
            .sum();
        Ok(json!({"result": sum + 1}))
    }
}

/// Which example handlers the deployment's worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handlers {
    /// `tasker_worker::examples`, in Rust.
    Rust,
    /// `tasker-ruby/ruby/examples/*.rb` in the embedded Ruby VM (linear and diamond), the
    /// Rust ones for the rest.
    Ruby,
}

/// A running deployment.
pub struct Deployment {
    pub db: BenchDatabase,
    /// The REST API and a client for it.
    pub api: LoopbackApi,
    pub templates: HashMap<String, TaskTemplate>,
    /// LISTEN on `tasker_task_finished`; one benchmark at a time uses it.
    pub finished: tokio::sync::Mutex<PgListener>,
    orchestrator: Mutex<Option<OrchestratorHandle>>,
    worker: Mutex<Option<WorkerHandle>>,
    worker_concurrency: usize,
    handlers: tokio::sync::Mutex<Handlers>,
}

/// The handlers the worker runs: the crate's Rust examples, plus [`SumHandler`] for any
/// fixture step they do not name.
pub fn registry(templates: &HashMap<String, TaskTemplate>) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    tasker_worker::examples::register_examples(&mut registry);
    for template in templates.values() {
        for step in &template.steps {
            if registry.get(&step.handler).is_none() {
                registry.register(&step.handler, SumHandler);
            }
        }
    }
    registry
}

impl Deployment {
    /// Starts everything; call inside the benchmark runtime.
    pub async fn start(worker_concurrency: usize) -> Self {
        let db = BenchDatabase::create(4).await;
        let templates = fixture_templates();
        for (_, name) in WORKFLOWS {
            register(&db.pool, &templates[name]).await;
        }

        let api_pool = db.new_pool(10).await;
        let state = ApiState::new(
            api_pool.clone(),
            TaskInitializer::new(api_pool, Duration::ZERO),
        );
        let api = LoopbackApi::start(|listener, shutdown| serve(listener, state, shutdown))
            .await
            .expect("starting the API on 127.0.0.1");

        let orchestrator = Orchestrator::start(
            db.new_pool(10).await,
            OrchestratorConfig {
                processor_id: "bench_orchestrator".into(),
                ..OrchestratorConfig::default()
            },
        )
        .await
        .expect("starting the orchestrator");
        let worker = start_worker(&db, &templates, worker_concurrency, registry(&templates)).await;

        let mut finished = PgListener::connect_with(&db.pool)
            .await
            .expect("connecting the task-finished listener");
        finished
            .listen(TASK_FINISHED_CHANNEL)
            .await
            .expect("LISTEN tasker_task_finished");

        Self {
            db,
            api,
            templates,
            finished: tokio::sync::Mutex::new(finished),
            orchestrator: Mutex::new(Some(orchestrator)),
            worker: Mutex::new(Some(worker)),
            worker_concurrency,
            handlers: tokio::sync::Mutex::new(Handlers::Rust),
        }
    }

    /// Makes the worker run `handlers`, replacing it when it runs the others (untimed: call
    /// before the clock starts).
    pub async fn serve_with(&self, handlers: Handlers) {
        let mut current = self.handlers.lock().await;
        if *current == handlers {
            return;
        }
        let mut registry = registry(&self.templates);
        if handlers == Handlers::Ruby {
            tasker_ruby::load(&tasker_ruby::examples_dir())
                .await
                .expect("loading the Ruby example handlers")
                .register_into(&mut registry);
        }
        let old = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(old) = old {
            old.shutdown().await.expect("stopping the worker");
        }
        let worker =
            start_worker(&self.db, &self.templates, self.worker_concurrency, registry).await;
        *self.worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(worker);
        *current = handlers;
    }

    /// A creation request for a workflow; `nonce` makes the context unique.
    pub fn request(&self, workflow: &str, nonce: u64) -> CreateTaskRequest {
        let t = &self.templates[workflow];
        // the example handlers compute n^16 (linear, diamond), n^24 (DAG) and n^32 (tree) in
        // i64: 6 is their documented input, 2 keeps the tree from overflowing
        let even_number = if workflow == TREE || workflow == DAG {
            2
        } else {
            6
        };
        CreateTaskRequest::new(
            t.namespace.clone(),
            t.name.clone(),
            t.version.clone(),
            json!({"even_number": even_number, "nonce": nonce}),
        )
    }

    /// Fails loudly if any of the tasks did not complete (a broken handler would otherwise
    /// show up as a fast benchmark).
    pub async fn assert_complete(&self, tasks: &[Uuid]) {
        let not_complete: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT task_uuid, current_state FROM tasker.tasks
              WHERE task_uuid = ANY ($1) AND current_state <> 'complete'",
        )
        .bind(tasks)
        .fetch_all(&self.db.pool)
        .await
        .expect("checking task states");
        assert!(
            not_complete.is_empty(),
            "tasks did not complete: {not_complete:?}"
        );
    }

    /// Deletes finished tasks (untimed cleanup).
    pub async fn delete(&self, tasks: &[Uuid]) {
        delete_tasks(&self.db.pool, tasks).await;
    }

    /// Stops the API, the orchestrator and the worker.
    pub async fn shutdown(&self) {
        if let Err(e) = self.api.stop().await {
            eprintln!("{}", display_chain(&e));
        }
        let orchestrator = self
            .orchestrator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(orchestrator) = orchestrator {
            let _ = orchestrator.shutdown().await;
        }
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            let _ = worker.shutdown().await;
        }
    }
}

/// A worker for every fixture workflow's namespace, on a pool of its own.
async fn start_worker(
    db: &BenchDatabase,
    templates: &HashMap<String, TaskTemplate>,
    concurrency: usize,
    registry: HandlerRegistry,
) -> WorkerHandle {
    Worker::start(
        db.new_pool(concurrency as u32 + 4).await,
        WorkerConfig {
            namespaces: WORKFLOWS
                .iter()
                .map(|(_, name)| templates[*name].namespace.clone())
                .collect(),
            concurrency,
            worker_id: "bench_worker".into(),
            ..WorkerConfig::default()
        },
        Arc::new(registry),
    )
    .await
    .expect("starting the worker")
}

/// Waits until every task in `pending` has been announced on `tasker_task_finished`; other
/// tasks' notifications are ignored. Panics after `limit` (a stuck deployment).
pub async fn wait_finished(
    listener: &mut PgListener,
    pending: &mut std::collections::HashSet<Uuid>,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !pending.is_empty() {
        let notification = tokio::time::timeout_at(deadline, listener.recv())
            .await
            .unwrap_or_else(|_| panic!("{} tasks unfinished after {limit:?}", pending.len()))
            .expect("task-finished listener");
        if let Ok(task) = notification.payload().parse::<Uuid>() {
            pending.remove(&task);
        }
    }
}

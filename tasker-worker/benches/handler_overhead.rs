//! The worker framework's cost around a handler: the same no-op handler called directly, via
//! the executor, and through a running worker, so the framework's share is a number.
//!
//! Benchmarks (`handler_overhead/<path>`):
//!
//! - `direct_call`: `handler.call(&context)` on a context built once: the floor;
//! - `ruby_direct_call`: the same call to the Ruby twin of the no-op handler
//!   (`benches/ruby/noop.rb`) in the embedded Ruby VM: the context converted to Ruby hashes,
//!   queued to the VM's thread, the result converted back and the caller woken.
//!   `ruby_direct_call - direct_call` is the FFI cost per call;
//! - `executor_execute`: `executor::execute` (registry lookup, the context cloned into the
//!   handler's task, `tokio::spawn`, timeout, join): the in-process framework;
//! - `worker_round_trip`: a step message sent to a running `Worker` (concurrency 1) until its
//!   result message is announced on the results queue's channel: wake-up, read, claim,
//!   execute (with the visibility heartbeat), submit, notification; the framework with its
//!   database round trips.
//!
//! `executor_execute - direct_call` is the in-process overhead per step;
//! `worker_round_trip - direct_call` is what the worker adds to a handler end to end.
//!
//! Setup outside the timed region: the worker is started and the results listener connected
//! once; each sample's steps are created and moved to enqueued before the clock starts (only
//! their messages are sent inside it), and deleted with all queue messages afterwards.
//!
//! Run: `cargo bench --package tasker-worker --features benchmarks --bench handler_overhead`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{enqueued_tasks, step_queue, NoopHandler};
use criterion::Criterion;
use serde_json::json;
use tasker_shared::messaging::{Queue, QueueListener, Wake, RESULTS_QUEUE};
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{
    bench_main, counted, criterion_config, delete_tasks, each, purge_queue, register, runtime,
    timed, wide_template, BenchDatabase,
};
use tasker_worker::executor::{execute, ClaimedStep};
use tasker_worker::{
    HandlerRegistry, StepContext, StepHandler, Worker, WorkerConfig, WorkerHandle,
};
use uuid::Uuid;

struct Fixture {
    db: BenchDatabase,
    template: TaskTemplate,
    named_task_uuid: Uuid,
    results_listener: tokio::sync::Mutex<QueueListener>,
    worker: Mutex<Option<WorkerHandle>>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry.register("noop", NoopHandler);
    registry
}

fn context() -> StepContext {
    StepContext {
        task_uuid: Uuid::now_v7(),
        workflow_step_uuid: Uuid::now_v7(),
        step_name: "step_000".into(),
        attempt: 1,
        task_context: json!({"n": 1}),
        step_config: json!({}),
        dependency_results: HashMap::from([("parent".to_string(), json!({"result": 36}))]),
    }
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let db = BenchDatabase::create(10).await;
            let template = wide_template("bench_handler_overhead", 1, false);
            let named_task_uuid = register(&db.pool, &template).await;
            let results = Queue::new(RESULTS_QUEUE).expect("results queue name");
            results.create(&db.pool).await.expect("results queue");
            let results_listener =
                QueueListener::connect(&db.pool, &[results], Duration::from_secs(30))
                    .await
                    .expect("results listener");
            let worker = Worker::start(
                db.pool.clone(),
                WorkerConfig {
                    namespaces: vec![template.namespace.clone()],
                    concurrency: 1,
                    worker_id: "bench_handler_overhead".into(),
                    ..WorkerConfig::default()
                },
                Arc::new(registry()),
            )
            .await
            .expect("starting the worker");
            Fixture {
                db,
                template,
                named_task_uuid,
                results_listener: tokio::sync::Mutex::new(results_listener),
                worker: Mutex::new(Some(worker)),
            }
        })
    })
}

fn bench_handler_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("handler_overhead");

    group.bench_function("direct_call", |b| {
        let handler = NoopHandler;
        let ctx = context();
        let (handler, ctx) = (&handler, &ctx);
        b.to_async(timed()).iter(each(|| async move {
            handler.call(ctx).await.expect("no-op succeeds")
        }));
    });

    group.bench_function("ruby_direct_call", |b| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ruby");
        let mut registry = HandlerRegistry::new();
        runtime()
            .block_on(tasker_ruby::load(&dir))
            .expect("loading benches/ruby")
            .register_into(&mut registry);
        let handler = registry.get("noop").expect("the Ruby no-op is registered");
        let ctx = context();
        let (handler, ctx) = (&handler, &ctx);
        b.to_async(timed()).iter(each(|| async move {
            handler.call(ctx).await.expect("no-op succeeds")
        }));
    });

    group.bench_function("executor_execute", |b| {
        let registry = registry();
        let claimed = ClaimedStep {
            queue: Queue::new("bench_handler_overhead_queue").expect("queue name"),
            msg_id: 1,
            handler: "noop".into(),
            timeout: None,
            context: context(),
        };
        let (registry, claimed) = (&registry, &claimed);
        b.to_async(timed()).iter(each(|| async move {
            execute(registry, claimed, Duration::from_secs(30))
                .await
                .expect("no-op succeeds")
        }));
    });

    group.bench_function("worker_round_trip", |b| {
        let fx = fixture();
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let pool = &fx.db.pool;
            let prepared =
                enqueued_tasks(pool, fx.named_task_uuid, &fx.template, iters as usize).await;
            let queue = step_queue(&fx.template);
            let mut listener = fx.results_listener.lock().await;
            listener.drain();
            let mut total = Duration::ZERO;
            for messages in &prepared.messages {
                let start = Instant::now();
                queue
                    .send(pool, &messages[0])
                    .await
                    .expect("sending the step message");
                match listener.wait().await.expect("waiting for the result") {
                    Wake::Notified(_) => {}
                    Wake::FallbackPoll => panic!("no result within 30 s: is the worker running?"),
                }
                total += start.elapsed();
            }
            delete_tasks(pool, &prepared.tasks).await;
            purge_queue(pool, queue.name()).await;
            purge_queue(pool, RESULTS_QUEUE).await;
            total
        }));
    });
    group.finish();
}

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(2), 20),
        &[bench_handler_overhead],
        || {
            if let Some(fx) = FIXTURE.get() {
                let worker = fx.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(worker) = worker {
                    runtime()
                        .block_on(worker.shutdown())
                        .expect("stopping the worker");
                }
            }
        },
    );
}

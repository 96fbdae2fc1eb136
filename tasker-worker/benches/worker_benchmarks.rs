//! Worker throughput: steps per second through one worker with N concurrent handlers.
//!
//! Each iteration sends the messages of 64 enqueued steps (one task of 64 independent steps)
//! to the namespace queue of a running `Worker` and waits until all 64 results are announced
//! on the results queue's channel; criterion reports the rate in steps per second.
//!
//! Benchmarks (`worker_throughput/<handler>/<concurrency>`):
//!
//! - `noop/{1,4,16}`: a no-op handler: the framework and the database are the whole cost, so
//!   concurrency shows how far parallel claims and submissions go on this machine;
//! - `io_1ms/{1,4,16}`: a handler that awaits a 1 ms timer, like one calling another service:
//!   concurrency overlaps the waits.
//!
//! Setup outside the timed region: one worker per case (own namespace) is started once; each
//! sample's tasks are created with every step enqueued before the clock starts (only the
//! messages are sent inside it); tasks and queue messages are deleted after it stops.
//!
//! Run: `cargo bench --package tasker-worker --features benchmarks --bench worker_benchmarks`.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{enqueued_tasks, step_queue, IoHandler, NoopHandler};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tasker_shared::messaging::{Queue, QueueListener, Wake, RESULTS_QUEUE};
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{
    bench_main, counted, criterion_config, delete_tasks, purge_queue, register, runtime, timed,
    wide_template, BenchDatabase,
};
use tasker_worker::{HandlerRegistry, Worker, WorkerConfig, WorkerHandle};
use uuid::Uuid;

const STEPS_PER_ITERATION: usize = 64;
const CONCURRENCY: [usize; 3] = [1, 4, 16];
const HANDLERS: [&str; 2] = ["noop", "io_1ms"];

/// (handler, concurrency)
type CaseKey = (&'static str, usize);

struct Case {
    template: TaskTemplate,
    named_task_uuid: Uuid,
}

struct Fixture {
    db: BenchDatabase,
    results_listener: tokio::sync::Mutex<QueueListener>,
    /// Cases started so far, by (handler, concurrency).
    cases: tokio::sync::Mutex<Vec<(CaseKey, Arc<Case>)>>,
    workers: Mutex<Vec<WorkerHandle>>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            // 16 concurrent steps plus listeners and the benchmark's own queries
            let db = BenchDatabase::create(40).await;
            let results = Queue::new(RESULTS_QUEUE).expect("results queue name");
            results.create(&db.pool).await.expect("results queue");
            let results_listener =
                QueueListener::connect(&db.pool, &[results], Duration::from_secs(30))
                    .await
                    .expect("results listener");
            Fixture {
                db,
                results_listener: tokio::sync::Mutex::new(results_listener),
                cases: tokio::sync::Mutex::new(Vec::new()),
                workers: Mutex::new(Vec::new()),
            }
        })
    })
}

/// The case's template and a worker consuming its namespace, started on first use.
async fn case(fx: &'static Fixture, handler: &'static str, concurrency: usize) -> Arc<Case> {
    let mut cases = fx.cases.lock().await;
    if let Some((_, case)) = cases.iter().find(|(key, _)| *key == (handler, concurrency)) {
        return case.clone();
    }
    let mut template = wide_template(
        &format!("bench_throughput_{handler}_c{concurrency}"),
        STEPS_PER_ITERATION,
        false,
    );
    for step in &mut template.steps {
        step.handler = handler.to_string();
    }
    let named_task_uuid = register(&fx.db.pool, &template).await;
    let mut registry = HandlerRegistry::new();
    match handler {
        "noop" => registry.register(handler, NoopHandler),
        _ => registry.register(handler, IoHandler(Duration::from_millis(1))),
    }
    let worker = Worker::start(
        fx.db.pool.clone(),
        WorkerConfig {
            namespaces: vec![template.namespace.clone()],
            concurrency,
            worker_id: format!("bench_throughput_{handler}_c{concurrency}"),
            ..WorkerConfig::default()
        },
        Arc::new(registry),
    )
    .await
    .expect("starting the worker");
    fx.workers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(worker);
    let case = Arc::new(Case {
        template,
        named_task_uuid,
    });
    cases.push(((handler, concurrency), case.clone()));
    case
}

async fn run(
    fx: &'static Fixture,
    handler: &'static str,
    concurrency: usize,
    iters: u64,
) -> Duration {
    let case = case(fx, handler, concurrency).await;
    let pool = &fx.db.pool;
    let prepared = enqueued_tasks(pool, case.named_task_uuid, &case.template, iters as usize).await;
    let queue = step_queue(&case.template);
    let mut listener = fx.results_listener.lock().await;
    listener.drain();
    let mut total = Duration::ZERO;
    for messages in &prepared.messages {
        let start = Instant::now();
        queue
            .send_batch(pool, messages)
            .await
            .expect("sending step messages");
        let mut done = 0;
        while done < messages.len() {
            match listener.wait().await.expect("waiting for results") {
                Wake::Notified(_) => done += 1,
                Wake::FallbackPoll => panic!(
                    "{done} of {} results after 30 s: is the worker running?",
                    messages.len()
                ),
            }
        }
        total += start.elapsed();
    }
    delete_tasks(pool, &prepared.tasks).await;
    purge_queue(pool, queue.name()).await;
    purge_queue(pool, RESULTS_QUEUE).await;
    total
}

fn bench_worker_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker_throughput");
    // an iteration is tens of milliseconds: flat sampling keeps the iteration count small
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(STEPS_PER_ITERATION as u64));
    for handler in HANDLERS {
        for concurrency in CONCURRENCY {
            group.bench_function(BenchmarkId::new(handler, concurrency), |b| {
                let fx = fixture();
                b.to_async(timed())
                    .iter_custom(counted(|iters| run(fx, handler, concurrency, iters)));
            });
        }
    }
    group.finish();
}

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(3), 10),
        &[bench_worker_throughput],
        || {
            if let Some(fx) = FIXTURE.get() {
                let workers =
                    std::mem::take(&mut *fx.workers.lock().unwrap_or_else(|p| p.into_inner()));
                for worker in workers {
                    runtime()
                        .block_on(worker.shutdown())
                        .expect("stopping a worker");
                }
            }
        },
    );
}

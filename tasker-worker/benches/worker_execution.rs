//! The worker's processing cycle for one step, phase by phase and whole.
//!
//! Benchmarks (`worker_execution/<phase>`), each on a single-step task whose step is enqueued
//! and announced on its namespace queue, with a no-op handler:
//!
//! - `claim`: read the step message (visibility timeout) and claim the step in one round trip,
//!   as the worker loop does (`executor::claim_next`: in_progress, one more attempt, context and
//!   parents' results loaded);
//! - `execute`: `executor::execute` (registry lookup, handler on its own task under a timeout);
//! - `submit`: `executor::submit` (result stored, step moved to enqueued_for_orchestration,
//!   result message sent, step message deleted, one transaction);
//! - `cycle`: the three together, as a worker runs them for each message.
//!
//! Setup outside the timed region (`iter_custom`): each sample's tasks are created and their
//! steps moved to enqueued with their messages sent (and, for `submit`, claimed) before the
//! clock starts; tasks and queue messages are deleted after it stops.
//!
//! Run: `cargo bench --package tasker-worker --features benchmarks --bench worker_execution`.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{enqueued_tasks, step_queue, NoopHandler};
use criterion::Criterion;
use serde_json::{json, Value};
use tasker_shared::messaging::{Queue, StepMessage, RESULTS_QUEUE};
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{
    bench_main, counted, criterion_config, delete_tasks, each, purge_queue, register, runtime,
    timed, wide_template, BenchDatabase,
};
use tasker_worker::executor::{claim_next, execute, submit, ClaimedStep};
use tasker_worker::{HandlerRegistry, StepError};
use uuid::Uuid;

const WORKER_ID: &str = "bench_worker";
const VT: Duration = Duration::from_secs(30);
const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

struct Fixture {
    db: BenchDatabase,
    template: TaskTemplate,
    named_task_uuid: Uuid,
    queue: Queue,
    registry: HandlerRegistry,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let db = BenchDatabase::create(10).await;
            let template = wide_template("bench_worker_execution", 1, false);
            let named_task_uuid = register(&db.pool, &template).await;
            let mut registry = HandlerRegistry::new();
            registry.register("noop", NoopHandler);
            Fixture {
                queue: common::step_queue(&template),
                db,
                template,
                named_task_uuid,
                registry,
            }
        })
    })
}

/// `count` enqueued steps with their messages on the queue (untimed).
async fn announced(fx: &Fixture, count: usize) -> Vec<Uuid> {
    let ready = enqueued_tasks(&fx.db.pool, fx.named_task_uuid, &fx.template, count).await;
    let messages: Vec<StepMessage> = ready.messages.into_iter().flatten().collect();
    step_queue(&fx.template)
        .send_batch(&fx.db.pool, &messages)
        .await
        .expect("sending step messages");
    ready.tasks
}

async fn read_and_claim(fx: &Fixture) -> ClaimedStep {
    claim_next(
        &fx.db.pool,
        std::slice::from_ref(&fx.queue),
        VT,
        1,
        WORKER_ID,
    )
    .await
    .expect("claim_next")
    .pop()
    .expect("a claimable step per prepared message")
}

async fn cleanup(fx: &Fixture, tasks: &[Uuid]) {
    delete_tasks(&fx.db.pool, tasks).await;
    purge_queue(&fx.db.pool, fx.queue.name()).await;
    purge_queue(&fx.db.pool, RESULTS_QUEUE).await;
}

fn ok_result() -> Result<Value, StepError> {
    Ok(json!({"ok": true}))
}

fn bench_worker_execution(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker_execution");

    group.bench_function("claim", |b| {
        let fx = fixture();
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let tasks = announced(fx, iters as usize).await;
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(read_and_claim(fx).await);
            }
            let elapsed = start.elapsed();
            cleanup(fx, &tasks).await;
            elapsed
        }));
    });

    group.bench_function("execute", |b| {
        let fx = fixture();
        // one claimed step serves every iteration: execute does not touch the database
        let (tasks, claimed) = runtime().block_on(async {
            let tasks = announced(fx, 1).await;
            (tasks, read_and_claim(fx).await)
        });
        let claimed = &claimed;
        b.to_async(timed()).iter(each(|| async move {
            execute(&fx.registry, claimed, HANDLER_TIMEOUT)
                .await
                .expect("the no-op handler succeeds")
        }));
        runtime().block_on(cleanup(fx, &tasks));
    });

    group.bench_function("submit", |b| {
        let fx = fixture();
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let tasks = announced(fx, iters as usize).await;
            let mut claimed = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                claimed.push(read_and_claim(fx).await);
            }
            let outcome = ok_result();
            let start = Instant::now();
            for step in &claimed {
                let accepted = submit(&fx.db.pool, step, &outcome, WORKER_ID)
                    .await
                    .expect("submit");
                assert!(accepted);
            }
            let elapsed = start.elapsed();
            cleanup(fx, &tasks).await;
            elapsed
        }));
    });

    group.bench_function("cycle", |b| {
        let fx = fixture();
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let tasks = announced(fx, iters as usize).await;
            let start = Instant::now();
            for _ in 0..iters {
                let claimed = read_and_claim(fx).await;
                let outcome = execute(&fx.registry, &claimed, HANDLER_TIMEOUT).await;
                let accepted = submit(&fx.db.pool, &claimed, &outcome, WORKER_ID)
                    .await
                    .expect("submit");
                assert!(accepted);
            }
            let elapsed = start.elapsed();
            cleanup(fx, &tasks).await;
            elapsed
        }));
    });
    group.finish();
}

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(2), 20),
        &[bench_worker_execution],
        || {},
    );
}

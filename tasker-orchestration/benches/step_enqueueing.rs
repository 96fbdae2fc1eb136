//! Step enqueueing: how long the orchestrator takes to hand 3, 10 and 50 ready steps to the
//! workers, in total and per phase.
//!
//! Shapes: 3 ready steps is the fixture DAG (`complex_dag`) with `dag_init`, `dag_process_left`
//! and `dag_process_right` complete (so `dag_validate`, `dag_transform` and `dag_analyze` are
//! ready); 10 and 50 are `tasker_test_support::wide_template`s, that many independent steps.
//!
//! Benchmarks (`step_enqueueing/<phase>/<ready steps>`, throughput in steps):
//!
//! - `discovery`: `step_enqueuer::discover_ready_steps` (the readiness function) on a task with
//!   that many ready steps (read-only, the same task every iteration);
//! - `transition`: `step_enqueuer::mark_enqueued` (pending -> enqueued for every ready step, one
//!   batch call) on a fresh task each iteration;
//! - `queue_send`: `step_enqueuer::publish` (one message per step, one statement);
//! - `enqueue_for_task`: the whole `StepEnqueuer::enqueue_for_task` (lock the task, pick it up,
//!   the three phases, move the task on, commit) on a fresh task each iteration.
//!
//! The phases run here in autocommit; inside `enqueue_for_task` they share one transaction,
//! so their sum plus the task lock and two task transitions is the total.
//!
//! Setup outside the timed region (`iter_custom`): the fresh tasks of each sample are created
//! before the clock starts (as the task initializer writes them) and deleted, with their queue
//! messages, after it stops.
//!
//! Run: `cargo bench --package tasker-orchestration --features benchmarks --bench step_enqueueing`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tasker_orchestration::orchestration::lifecycle::step_enqueuer::{
    discover_ready_steps, mark_enqueued, publish, StepEnqueuer,
};
use tasker_shared::messaging::{namespace_queue_name, StepMessage};
use tasker_shared::templates::TaskTemplate;
use tasker_test_support::{
    bench_main, complete_steps, counted, create_tasks, criterion_config, delete_tasks,
    fixture_template, purge_queue, register, runtime, timed, wide_template, BenchDatabase, DAG,
};
use uuid::Uuid;

const SIZES: [usize; 3] = [3, 10, 50];
const PROCESSOR: &str = "bench_step_enqueuer";

/// A template whose fresh tasks have `size` ready steps once `precomplete` steps are done.
struct Shape {
    size: usize,
    template: TaskTemplate,
    named_task_uuid: Uuid,
    precomplete: Vec<&'static str>,
    /// A task kept at `size` ready steps for the read-only discovery benchmark.
    discovery_task: Uuid,
}

impl Shape {
    fn namespace(&self) -> &str {
        &self.template.namespace
    }
}

struct Fixture {
    db: BenchDatabase,
    enqueuer: StepEnqueuer,
    shapes: Vec<Shape>,
}

/// A fresh task and its ready steps.
struct Prepared {
    task: Uuid,
    ready: Vec<Uuid>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| runtime().block_on(create_fixture()))
}

async fn create_fixture() -> Fixture {
    let db = BenchDatabase::create(10).await;
    let mut shapes = Vec::new();
    for size in SIZES {
        let (template, precomplete) = if size == 3 {
            (
                fixture_template(DAG),
                vec!["dag_init", "dag_process_left", "dag_process_right"],
            )
        } else {
            (wide_template("bench_enqueue", size, false), Vec::new())
        };
        let named_task_uuid = register(&db.pool, &template).await;
        let mut shape = Shape {
            size,
            template,
            named_task_uuid,
            precomplete,
            discovery_task: Uuid::nil(),
        };
        shape.discovery_task = prepare(&db, &shape, 1).await[0].task;
        shapes.push(shape);
    }
    Fixture {
        enqueuer: StepEnqueuer::new(db.pool.clone(), PROCESSOR),
        db,
        shapes,
    }
}

/// `count` fresh tasks of the shape with their ready steps (setup, untimed).
async fn prepare(db: &BenchDatabase, shape: &Shape, count: usize) -> Vec<Prepared> {
    let created = create_tasks(
        &db.pool,
        shape.named_task_uuid,
        &shape.template,
        count,
        &json!({"even_number": 6}),
    )
    .await;
    let done: Vec<Uuid> = created
        .iter()
        .flat_map(|t| shape.precomplete.iter().map(|n| t.step_uuids[*n]))
        .collect();
    if !done.is_empty() {
        complete_steps(&db.pool, &done).await;
    }
    created
        .into_iter()
        .map(|t| {
            let mut ready: Vec<Uuid> = t
                .step_uuids
                .iter()
                .filter(|(name, _)| !shape.precomplete.contains(&name.as_str()))
                .filter(|(name, _)| {
                    // ready: every parent is among the completed steps
                    let step = shape
                        .template
                        .steps
                        .iter()
                        .find(|s| &s.name == *name)
                        .expect("step of the template");
                    step.depends_on
                        .iter()
                        .all(|p| shape.precomplete.contains(&p.as_str()))
                })
                .map(|(_, uuid)| *uuid)
                .collect();
            ready.sort();
            assert_eq!(
                ready.len(),
                shape.size,
                "shape does not have {} ready steps",
                shape.size
            );
            Prepared {
                task: t.task_uuid,
                ready,
            }
        })
        .collect()
}

/// Deletes the sample's tasks and the messages they produced (untimed).
async fn cleanup(fx: &Fixture, shape: &Shape, prepared: &[Prepared]) {
    let tasks: Vec<Uuid> = prepared.iter().map(|p| p.task).collect();
    delete_tasks(&fx.db.pool, &tasks).await;
    purge_queue(&fx.db.pool, &namespace_queue_name(shape.namespace())).await;
}

fn bench_step_enqueueing(c: &mut Criterion) {
    let mut group = c.benchmark_group("step_enqueueing");
    for (index, size) in SIZES.iter().copied().enumerate() {
        group.throughput(Throughput::Elements(size as u64));

        group.bench_function(BenchmarkId::new("discovery", size), |b| {
            let fx = fixture();
            let shape = &fx.shapes[index];
            b.to_async(timed()).iter_custom(counted(|iters| async move {
                let mut conn = fx.db.pool.acquire().await.expect("connection");
                let start = Instant::now();
                for _ in 0..iters {
                    let readiness = discover_ready_steps(&mut conn, shape.discovery_task)
                        .await
                        .expect("discovery");
                    debug_assert_eq!(
                        readiness.iter().filter(|r| r.ready_for_execution).count(),
                        shape.size
                    );
                }
                start.elapsed()
            }));
        });

        group.bench_function(BenchmarkId::new("transition", size), |b| {
            let fx = fixture();
            let shape = &fx.shapes[index];
            b.to_async(timed()).iter_custom(counted(|iters| async move {
                let prepared = prepare(&fx.db, shape, iters as usize).await;
                let mut conn = fx.db.pool.acquire().await.expect("connection");
                let start = Instant::now();
                for p in &prepared {
                    let moved = mark_enqueued(&mut conn, &p.ready, PROCESSOR)
                        .await
                        .expect("mark_enqueued");
                    assert_eq!(moved.len(), shape.size);
                }
                let elapsed = start.elapsed();
                drop(conn);
                cleanup(fx, shape, &prepared).await;
                elapsed
            }));
        });

        group.bench_function(BenchmarkId::new("queue_send", size), |b| {
            let fx = fixture();
            let shape = &fx.shapes[index];
            let messages: Vec<StepMessage> = (0..size)
                .map(|_| StepMessage {
                    task_uuid: shape.discovery_task,
                    workflow_step_uuid: Uuid::now_v7(),
                    attempt: 1,
                })
                .collect();
            let messages = &messages;
            b.to_async(timed()).iter_custom(counted(|iters| async move {
                let mut conn = fx.db.pool.acquire().await.expect("connection");
                let start = Instant::now();
                for _ in 0..iters {
                    let ids = publish(&mut conn, shape.namespace(), messages)
                        .await
                        .expect("publish");
                    assert_eq!(ids.len(), shape.size);
                }
                let elapsed = start.elapsed();
                drop(conn);
                purge_queue(&fx.db.pool, &namespace_queue_name(shape.namespace())).await;
                elapsed
            }));
        });

        group.bench_function(BenchmarkId::new("enqueue_for_task", size), |b| {
            let fx = fixture();
            let shape = &fx.shapes[index];
            b.to_async(timed()).iter_custom(counted(|iters| async move {
                let prepared = prepare(&fx.db, shape, iters as usize).await;
                let start = Instant::now();
                for p in &prepared {
                    let outcome = fx
                        .enqueuer
                        .enqueue_for_task(p.task)
                        .await
                        .expect("enqueue_for_task")
                        .expect("the fresh task was in a pick-up state");
                    assert_eq!(outcome.enqueued.len(), shape.size);
                }
                let elapsed = start.elapsed();
                cleanup(fx, shape, &prepared).await;
                elapsed
            }));
        });
    }
    group.finish();
}

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(2), 20),
        &[bench_step_enqueueing],
        || {},
    );
}

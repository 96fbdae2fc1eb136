//! One orchestration coordination cycle: a step result comes in, the dependents go out.
//!
//! Each iteration claims one step-result message from the results queue and runs
//! `ResultProcessor::process_message` on it: lock the task and step, move the step to
//! complete, re-read the task's readiness, enqueue the newly ready dependents (transition plus
//! queue send) or finalise the task, delete the result message, commit. That is what the
//! orchestration loop does per result, minus the wake-up (see `event_propagation`).
//!
//! Benchmarks (`coordination_cycle/<case>`):
//!
//! - `linear_enqueue_1`: `linear_step_1`'s result, `linear_step_2` enqueued;
//! - `diamond_enqueue_2`: `diamond_start`'s result, both branches enqueued;
//! - `fanout_enqueue_10`: a root's result, ten children enqueued;
//! - `single_step_finalize`: the only step's result, the task completed (finaliser path).
//!
//! Setup outside the timed region (`iter_custom`): each sample's tasks are created, picked up
//! by the real `StepEnqueuer`, and their root steps claimed and submitted with the worker's SQL
//! functions (`claim_step_for_execution`, `submit_step_result`), which put one result message
//! per task on the results queue. Afterwards the tasks and all queue messages are deleted.
//!
//! Run: `cargo bench --package tasker-orchestration --features benchmarks --bench orchestration_benchmarks`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use tasker_orchestration::orchestration::lifecycle::result_processor::{
    ResultOutcome, ResultProcessor,
};
use tasker_orchestration::orchestration::lifecycle::step_enqueuer::StepEnqueuer;
use tasker_orchestration::orchestration::lifecycle::task_finalizer::FinalizeOutcome;
use tasker_shared::messaging::{
    namespace_queue_name, Queue, StepOutcome, StepResultMessage, RESULTS_QUEUE,
};
use tasker_shared::templates::{StepTemplate, TaskTemplate};
use tasker_test_support::{
    bench_main, counted, create_tasks, criterion_config, delete_tasks, fixture_template,
    purge_queue, register, runtime, timed, wide_template, BenchDatabase, DIAMOND, LINEAR,
};
use uuid::Uuid;

const PROCESSOR: &str = "bench_orchestrator";

struct Case {
    id: &'static str,
    template: TaskTemplate,
    named_task_uuid: Uuid,
    root: String,
    /// Dependents a result enqueues; 0 means the task is finalised instead.
    expect_enqueued: usize,
}

struct Fixture {
    db: BenchDatabase,
    enqueuer: StepEnqueuer,
    processor: ResultProcessor,
    results: Queue,
    cases: Vec<Case>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| runtime().block_on(create_fixture()))
}

/// A root with `width` children.
fn fanout(width: usize) -> TaskTemplate {
    let mut template = wide_template("bench_coordination", 1, false);
    template.name = format!("fanout_{width}");
    template.steps[0].name = "root".into();
    for i in 0..width {
        template.steps.push(StepTemplate {
            name: format!("child_{i:02}"),
            depends_on: vec!["root".into()],
            ..template.steps[0].clone()
        });
    }
    template
}

async fn create_fixture() -> Fixture {
    let db = BenchDatabase::create(10).await;
    let mut single = wide_template("bench_coordination", 1, false);
    single.name = "single_step".into();
    let specs = [
        (
            "linear_enqueue_1",
            fixture_template(LINEAR),
            "linear_step_1",
            1,
        ),
        (
            "diamond_enqueue_2",
            fixture_template(DIAMOND),
            "diamond_start",
            2,
        ),
        ("fanout_enqueue_10", fanout(10), "root", 10),
        ("single_step_finalize", single, "step_000", 0),
    ];
    let mut cases = Vec::new();
    for (id, template, root, expect_enqueued) in specs {
        let named_task_uuid = register(&db.pool, &template).await;
        cases.push(Case {
            id,
            template,
            named_task_uuid,
            root: root.to_string(),
            expect_enqueued,
        });
    }
    Fixture {
        enqueuer: StepEnqueuer::new(db.pool.clone(), PROCESSOR),
        processor: ResultProcessor::new(db.pool.clone(), PROCESSOR),
        results: Queue::new(RESULTS_QUEUE).expect("results queue name"),
        db,
        cases,
    }
}

/// Creates `count` tasks whose root step has run: its result message waits on the results
/// queue (setup, untimed). Returns the task ids.
async fn prepare(fx: &Fixture, case: &Case, count: usize) -> Vec<Uuid> {
    let pool = &fx.db.pool;
    let created = create_tasks(
        pool,
        case.named_task_uuid,
        &case.template,
        count,
        &json!({"even_number": 6}),
    )
    .await;
    for task in &created {
        fx.enqueuer
            .enqueue_for_task(task.task_uuid)
            .await
            .expect("enqueue_for_task")
            .expect("fresh task picked up");
        let step = task.step_uuids[&case.root];
        let claimed: Option<Uuid> = sqlx::query_scalar(
            "SELECT task_uuid FROM tasker.claim_step_for_execution($1, 'bench_worker', false)",
        )
        .bind(step)
        .fetch_optional(pool)
        .await
        .expect("claim_step_for_execution");
        assert!(claimed.is_some(), "the root step was not claimable");
        let message = serde_json::to_value(StepResultMessage {
            task_uuid: task.task_uuid,
            workflow_step_uuid: step,
            attempt: 1,
            outcome: StepOutcome::Success,
            error: None,
        })
        .expect("result message");
        // the step's own queue message is purged in bulk afterwards, so msg_id 0 (none)
        let accepted: bool = sqlx::query_scalar(
            "SELECT tasker.submit_step_result($1, 'bench_worker', true, $2, NULL, $3, $4, 0)",
        )
        .bind(step)
        .bind(json!({"result": 36}))
        .bind(message)
        .bind(namespace_queue_name(&case.template.namespace))
        .fetch_one(pool)
        .await
        .expect("submit_step_result");
        assert!(accepted);
    }
    purge_queue(pool, &namespace_queue_name(&case.template.namespace)).await;
    created.into_iter().map(|t| t.task_uuid).collect()
}

async fn cycle(fx: &Fixture, case: &Case, iters: u64) -> Duration {
    let tasks = prepare(fx, case, iters as usize).await;
    let pool = &fx.db.pool;
    let start = Instant::now();
    for _ in 0..iters {
        let mut batch = fx
            .results
            .read::<StepResultMessage>(pool, Duration::from_secs(30), 1)
            .await
            .expect("reading a result");
        let message = batch.pop().expect("a result message per prepared task");
        let outcome = fx
            .processor
            .process_message(&fx.results, &message)
            .await
            .expect("process_message");
        match outcome {
            ResultOutcome::Processed { enqueued, task, .. } => {
                assert_eq!(enqueued.len(), case.expect_enqueued, "{}", case.id);
                if case.expect_enqueued == 0 {
                    assert_eq!(task, FinalizeOutcome::Completed, "{}", case.id);
                }
            }
            ResultOutcome::Ignored { reason } => panic!("{}: result ignored: {reason}", case.id),
        }
    }
    let elapsed = start.elapsed();
    delete_tasks(pool, &tasks).await;
    purge_queue(pool, &namespace_queue_name(&case.template.namespace)).await;
    purge_queue(pool, RESULTS_QUEUE).await;
    elapsed
}

fn bench_coordination_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("coordination_cycle");
    for (index, id) in CASE_IDS.iter().copied().enumerate() {
        group.bench_function(id, |b| {
            let fx = fixture();
            let case = &fx.cases[index];
            assert_eq!(case.id, id);
            b.to_async(timed())
                .iter_custom(counted(|iters| cycle(fx, case, iters)));
        });
    }
    group.finish();
}

/// Benchmark ids, known without a database (for `--list`).
const CASE_IDS: [&str; 4] = [
    "linear_enqueue_1",
    "diamond_enqueue_2",
    "fanout_enqueue_10",
    "single_step_finalize",
];

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(2), 20),
        &[bench_coordination_cycle],
        || {},
    );
}

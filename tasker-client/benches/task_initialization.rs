//! Task creation over HTTP: `TaskerClient::create_task` against the real API server.
//!
//! The server (`tasker_orchestration::api::serve` with a `TaskInitializer`) runs in this process
//! on 127.0.0.1 with an ephemeral port, on the same tokio multi-thread runtime as the client;
//! requests travel over real loopback TCP with keep-alive connections. No orchestrator runs,
//! so what is measured is the request: JSON encode, HTTP round trip, validation, template
//! lookup (cached), de-duplication check, the task graph insert and its notification, commit,
//! response.
//!
//! Benchmarks (`task_initialization/<template>`):
//!
//! - `linear`: the 4-step `mathematical_sequence` fixture;
//! - `diamond`: the 4-step `diamond_pattern` fixture;
//! - `linear_no_dedup`: `linear` with the de-duplication window off (no advisory lock and no
//!   identity lookup), to show what de-duplication costs.
//!
//! Every request carries a unique context, so each creates a task (none is de-duplicated).
//! Outside the timed region: server start, template registration, and deleting each sample's
//! tasks after it. Per-request P50/P95/P99 go to
//! `<criterion home>/task_initialization/percentiles.json`.
//!
//! Run: `cargo bench --package tasker-client --features benchmarks task_initialization`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use tasker_client::CreateTaskRequest;
use tasker_orchestration::api::{serve, ApiState};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::error::display_chain;
use tasker_test_support::{
    bench_main, counted, criterion_config, delete_tasks, fixture_template, register, runtime,
    server_context, timed, BenchArgs, BenchDatabase, BenchMode, LatencyLog, LoopbackApi, DIAMOND,
    LINEAR,
};
use uuid::Uuid;

/// The de-duplication window of the `linear` and `diamond` cases: identical requests within it
/// resolve to one task (the check runs on every request, whether or not it matches).
const DEDUP_WINDOW: Duration = Duration::from_secs(60);

static LOG: LatencyLog = LatencyLog::new();
static REQUEST: AtomicU64 = AtomicU64::new(0);

struct Fixture {
    db: BenchDatabase,
    with_dedup: LoopbackApi,
    without_dedup: LoopbackApi,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

async fn start_server(db: &BenchDatabase, dedup_window: Duration) -> LoopbackApi {
    let state = ApiState::new(
        db.pool.clone(),
        TaskInitializer::new(db.pool.clone(), dedup_window),
    );
    LoopbackApi::start(|listener, shutdown| serve(listener, state, shutdown))
        .await
        .expect("starting the API on 127.0.0.1")
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let db = BenchDatabase::create(10).await;
            for name in [LINEAR, DIAMOND] {
                register(&db.pool, &fixture_template(name)).await;
            }
            Fixture {
                with_dedup: start_server(&db, DEDUP_WINDOW).await,
                without_dedup: start_server(&db, Duration::ZERO).await,
                db,
            }
        })
    })
}

async fn create_tasks(fx: &Fixture, case: &'static str, iters: u64) -> Duration {
    let (server, template) = match case {
        "linear" => (&fx.with_dedup, LINEAR),
        "diamond" => (&fx.with_dedup, DIAMOND),
        _ => (&fx.without_dedup, LINEAR),
    };
    let t = fixture_template(template);
    let requests: Vec<CreateTaskRequest> = (0..iters)
        .map(|_| {
            let n = REQUEST.fetch_add(1, Ordering::Relaxed);
            CreateTaskRequest::new(
                t.namespace.clone(),
                t.name.clone(),
                t.version.clone(),
                json!({"even_number": 6, "request": n}),
            )
        })
        .collect();
    LOG.batch(case, iters);
    let mut created: Vec<Uuid> = Vec::with_capacity(requests.len());
    let mut total = Duration::ZERO;
    for request in &requests {
        let start = Instant::now();
        let response = server
            .client
            .create_task(request)
            .await
            .expect("POST /v1/tasks");
        let elapsed = start.elapsed();
        total += elapsed;
        LOG.record(case, elapsed);
        assert!(!response.deduplicated, "a unique request was de-duplicated");
        created.push(response.task_uuid);
    }
    delete_tasks(&fx.db.pool, &created).await;
    total
}

fn bench_task_initialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("task_initialization");
    for case in ["linear", "diamond", "linear_no_dedup"] {
        group.bench_function(case, |b| {
            let fx = fixture();
            b.to_async(timed())
                .iter_custom(counted(|iters| create_tasks(fx, case, iters)));
        });
    }
    group.finish();
}

fn main() {
    let args = BenchArgs::from_env();
    bench_main(
        criterion_config(Duration::from_secs(3), 30),
        &[bench_task_initialization],
        || {
            if let Some(fx) = FIXTURE.get() {
                if args.mode == BenchMode::Benchmark {
                    let mut context = runtime().block_on(server_context(&fx.db.pool));
                    context["dedup_window_seconds"] = json!(DEDUP_WINDOW.as_secs());
                    LOG.write("task_initialization", context);
                }
                for server in [&fx.with_dedup, &fx.without_dedup] {
                    if let Err(e) = runtime().block_on(server.stop()) {
                        eprintln!("task_initialization: {}", display_chain(&e));
                    }
                }
            }
        },
    );
}

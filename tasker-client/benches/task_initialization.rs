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
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use serde_json::json;
use tasker_client::{CreateTaskRequest, TaskerClient};
use tasker_orchestration::api::{serve, ApiState};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::bench_support::{
    counted, criterion_config, delete_tasks, fixture_template, register, runtime, server_context,
    teardown, timed, BenchArgs, BenchDatabase, BenchMode, LatencyLog, DIAMOND, LINEAR,
};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The de-duplication window of the `linear` and `diamond` cases: identical requests within it
/// resolve to one task (the check runs on every request, whether or not it matches).
const DEDUP_WINDOW: Duration = Duration::from_secs(60);

static LOG: LatencyLog = LatencyLog::new();
static REQUEST: AtomicU64 = AtomicU64::new(0);

/// One server and a client for it.
struct Server {
    client: TaskerClient,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

struct Fixture {
    db: BenchDatabase,
    with_dedup: Server,
    without_dedup: Server,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

async fn start_server(db: &BenchDatabase, dedup_window: Duration) -> Server {
    let state = ApiState::new(
        db.pool.clone(),
        TaskInitializer::new(db.pool.clone(), dedup_window),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding an ephemeral port on 127.0.0.1");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = TaskerClient::new(&format!("http://{address}")).expect("client");
    // the first request opens the keep-alive connection; the benchmark measures the rest
    client
        .health()
        .await
        .expect("the API answers its health check");
    Server {
        client,
        stop: Mutex::new(Some(stop)),
        task: Mutex::new(Some(task)),
    }
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

fn config() -> Criterion {
    criterion_config(Duration::from_secs(3), 30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_task_initialization
}

fn main() {
    let args = BenchArgs::from_env();
    benches();
    if let Some(fx) = FIXTURE.get() {
        if args.mode == BenchMode::Benchmark {
            let mut context = runtime().block_on(server_context(&fx.db.pool));
            context["dedup_window_seconds"] = json!(DEDUP_WINDOW.as_secs());
            LOG.write("task_initialization", context);
        }
        for server in [&fx.with_dedup, &fx.without_dedup] {
            if let Some(stop) = server.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = stop.send(());
            }
            let task = server.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                if let Ok(Err(e)) = runtime().block_on(task) {
                    eprintln!("task_initialization: the API server ended with {e}");
                }
            }
        }
    }
    Criterion::default().configure_from_args().final_summary();
    teardown();
}

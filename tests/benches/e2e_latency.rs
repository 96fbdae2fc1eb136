//! End-to-end workflow latency: from `POST /v1/tasks` until the task is complete.
//!
//! The whole engine runs in this process on one tokio multi-thread runtime, each component on
//! its own connection pool as separate processes would be: the REST API on 127.0.0.1
//! (ephemeral port), an orchestrator and a worker with the Rust example handlers
//! (`tasker_worker::examples::register_examples`). Each iteration creates one task through
//! `TaskerClient::create_task` and stops the clock when `tasker_task_finished` announces it
//! (the finaliser notifies in the transaction that completes the task), so no poll interval
//! quantises the figure. Every task is checked to have completed, outside the timed region.
//!
//! Benchmarks (`e2e_latency/<workflow>_<handlers>`):
//!
//! - `linear_rust`: `mathematical_sequence`, 4 steps in a line;
//! - `diamond_rust`: `diamond_pattern`, 4 steps, two in parallel;
//! - `dag_rust`: `complex_dag`, 7 steps with fan-out and a three-parent join;
//! - `tree_rust`: `hierarchical_tree`, 8 steps, four leaves converging;
//! - `linear_ruby`, `diamond_ruby`: the first two with the worker running the Ruby example
//!   handlers (`tasker-ruby/ruby/examples`) through the embedded Ruby VM, same results.
//!
//! Besides criterion's estimates, every iteration's latency is recorded and P50/P95/P99 are
//! written to `<criterion home>/e2e_latency/percentiles.json` (criterion home: `$CRITERION_HOME`,
//! else `$CARGO_TARGET_DIR/criterion`, else `target/criterion`).
//!
//! Outside the timed region: starting the deployment, the completion check, deleting each
//! sample's tasks.
//!
//! Run: `cargo bench --bench e2e_latency`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{wait_finished, Deployment, Handlers, WORKFLOWS};
use criterion::{Criterion, SamplingMode};
use serde_json::json;
use tasker_test_support::{
    bench_main, counted, criterion_config, runtime, server_context, timed, BenchArgs, BenchMode,
    LatencyLog,
};

/// The worker's step concurrency (the service default).
const WORKER_CONCURRENCY: usize = 8;

static DEPLOYMENT: OnceLock<Deployment> = OnceLock::new();
static LOG: LatencyLog = LatencyLog::new();
static NONCE: AtomicU64 = AtomicU64::new(0);

fn deployment() -> &'static Deployment {
    DEPLOYMENT.get_or_init(|| runtime().block_on(Deployment::start(WORKER_CONCURRENCY)))
}

async fn run(
    d: &Deployment,
    handlers: Handlers,
    workflow: &'static str,
    id: &'static str,
    iters: u64,
) -> Duration {
    d.serve_with(handlers).await;
    let mut listener = d.finished.lock().await;
    LOG.batch(id, iters);
    let mut total = Duration::ZERO;
    let mut created = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let request = d.request(workflow, NONCE.fetch_add(1, Ordering::Relaxed));
        let start = Instant::now();
        let task = d
            .api
            .client
            .create_task(&request)
            .await
            .expect("POST /v1/tasks")
            .task_uuid;
        let mut pending = HashSet::from([task]);
        wait_finished(&mut listener, &mut pending, Duration::from_secs(30)).await;
        let elapsed = start.elapsed();
        total += elapsed;
        LOG.record(id, elapsed);
        created.push(task);
    }
    d.assert_complete(&created).await;
    d.delete(&created).await;
    total
}

fn bench_e2e_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2e_latency");
    // iterations take milliseconds to tenths of a second: flat sampling bounds their number
    group.sampling_mode(SamplingMode::Flat);
    let ruby = [
        ("linear_ruby", WORKFLOWS[0].1),
        ("diamond_ruby", WORKFLOWS[1].1),
    ];
    let rust = WORKFLOWS.map(|(short, workflow)| {
        let id: &'static str = match short {
            "linear" => "linear_rust",
            "diamond" => "diamond_rust",
            "dag" => "dag_rust",
            _ => "tree_rust",
        };
        (id, workflow)
    });
    let all = rust
        .iter()
        .map(|&(id, w)| (Handlers::Rust, id, w))
        .chain(ruby.iter().map(|&(id, w)| (Handlers::Ruby, id, w)));
    for (handlers, id, workflow) in all {
        group.bench_function(id, |b| {
            let d = deployment();
            b.to_async(timed())
                .iter_custom(counted(|iters| run(d, handlers, workflow, id, iters)));
        });
    }
    group.finish();
}

fn main() {
    let args = BenchArgs::from_env();
    bench_main(
        criterion_config(Duration::from_secs(5), 20),
        &[bench_e2e_latency],
        || {
            if let Some(d) = DEPLOYMENT.get() {
                if args.mode == BenchMode::Benchmark {
                    let mut context = runtime().block_on(server_context(&d.db.pool));
                    context["worker_concurrency"] = json!(WORKER_CONCURRENCY);
                    context["handlers"] = json!(
                        "tasker_worker::examples (Rust native); *_ruby: tasker-ruby/ruby/examples (embedded Ruby VM)"
                    );
                    LOG.write("e2e_latency", context);
                }
                runtime().block_on(d.shutdown());
            }
        },
    );
}

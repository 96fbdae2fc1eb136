//! Sustained end-to-end throughput: many linear workflows at once, in steps per second.
//!
//! The same in-process deployment as `e2e_latency` (REST API on 127.0.0.1, an orchestrator, a
//! worker with the Rust example handlers, separate pools). Each iteration submits a burst of
//! 50 linear (4-step) tasks through the HTTP client, 8 requests in flight at a time, and stops
//! the clock when `tasker_task_finished` has announced all 50. Criterion reports the rate in
//! steps per second (`Throughput::Elements(200)`), the target being at least 1,000 steps/s.
//!
//! Benchmarks (`e2e_throughput/linear_x50/<worker concurrency>`): worker step concurrency 8 (the
//! default) and 16.
//!
//! Outside the timed region: starting the deployments, the completion check, deleting each
//! sample's tasks.
//!
//! Run: `cargo bench --bench e2e_throughput`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{wait_finished, Deployment};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::StreamExt;
use tasker_test_support::{bench_main, counted, criterion_config, runtime, timed, LINEAR};
use uuid::Uuid;

const TASKS_PER_ITERATION: usize = 50;
const STEPS_PER_TASK: usize = 4;
const REQUESTS_IN_FLIGHT: usize = 8;
const CONCURRENCY: [usize; 2] = [8, 16];

/// One deployment per worker concurrency, started on first use and kept for the run.
static DEPLOYMENTS: OnceLock<Mutex<Vec<(usize, &'static Deployment)>>> = OnceLock::new();
static NONCE: AtomicU64 = AtomicU64::new(0);

fn deployment(concurrency: usize) -> &'static Deployment {
    let all = DEPLOYMENTS.get_or_init(|| Mutex::new(Vec::new()));
    let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, d)) = all.iter().find(|(c, _)| *c == concurrency) {
        return d;
    }
    let d: &'static Deployment =
        Box::leak(Box::new(runtime().block_on(Deployment::start(concurrency))));
    all.push((concurrency, d));
    d
}

async fn burst(d: &Deployment, iters: u64) -> Duration {
    let mut listener = d.finished.lock().await;
    let mut total = Duration::ZERO;
    let mut all = Vec::new();
    for _ in 0..iters {
        let requests: Vec<_> = (0..TASKS_PER_ITERATION)
            .map(|_| d.request(LINEAR, NONCE.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let start = Instant::now();
        let created: Vec<Uuid> = futures::stream::iter(&requests)
            .map(|r| async move {
                d.api
                    .client
                    .create_task(r)
                    .await
                    .expect("POST /v1/tasks")
                    .task_uuid
            })
            .buffer_unordered(REQUESTS_IN_FLIGHT)
            .collect()
            .await;
        let mut pending: HashSet<Uuid> = created.iter().copied().collect();
        wait_finished(&mut listener, &mut pending, Duration::from_secs(60)).await;
        total += start.elapsed();
        all.extend(created);
    }
    d.assert_complete(&all).await;
    d.delete(&all).await;
    total
}

fn bench_e2e_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2e_throughput");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(
        (TASKS_PER_ITERATION * STEPS_PER_TASK) as u64,
    ));
    for concurrency in CONCURRENCY {
        group.bench_function(BenchmarkId::new("linear_x50", concurrency), |b| {
            let d = deployment(concurrency);
            b.to_async(timed())
                .iter_custom(counted(|iters| burst(d, iters)));
        });
    }
    group.finish();
}

fn main() {
    bench_main(
        criterion_config(Duration::from_secs(8), 10).warm_up_time(Duration::from_secs(2)),
        &[bench_e2e_throughput],
        || {
            if let Some(all) = DEPLOYMENTS.get() {
                let all = std::mem::take(&mut *all.lock().unwrap_or_else(|p| p.into_inner()));
                for (_, d) in all {
                    runtime().block_on(d.shutdown());
                }
            }
        },
    );
}

//! The engine's metrics: every name in one place with what it measures, and the Prometheus
//! exporter a process installs once and renders on `GET /metrics`.
//!
//! The engine records through the `metrics` crate's macros, which cost nothing until a
//! recorder is installed: the libraries record, the binaries decide to export
//! ([`Exporter::install`]).

use std::sync::Mutex;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

/// Counter `{namespace}`: tasks created (a de-duplicated request creates none).
pub const TASKS_CREATED: &str = "tasker_tasks_created_total";
/// Counter `{namespace, state}`: tasks that finished, by the state they ended in (`complete`,
/// `blocked_by_failures`, `cancelled`).
pub const TASKS_FINISHED: &str = "tasker_tasks_finished_total";
/// Histogram `{namespace, state}`: seconds from a task's creation to its end.
pub const TASK_DURATION: &str = "tasker_task_duration_seconds";
/// Counter `{namespace}`: steps a worker claimed to run.
pub const STEPS_CLAIMED: &str = "tasker_steps_claimed_total";
/// Histogram `{namespace, handler, outcome}`: seconds a handler ran (`outcome`: `success`
/// or `failure`).
pub const STEP_DURATION: &str = "tasker_step_duration_seconds";
/// Counter `{namespace}`: failed runs scheduled for another attempt.
pub const STEP_RETRIES: &str = "tasker_step_retries_total";
/// Counter `{namespace}`: steps that failed for good.
pub const STEP_FAILURES: &str = "tasker_step_failures_total";
/// Gauge `{queue}`: messages in the queue, read when scraped.
pub const QUEUE_DEPTH: &str = "tasker_queue_depth";
/// Gauge `{queue}`: seconds the oldest message has waited (0 for an empty queue).
pub const QUEUE_OLDEST_AGE: &str = "tasker_queue_oldest_message_age_seconds";
/// Gauge `{state}`: this process's database connections (`in_use`, `idle`, `max`).
pub const DB_POOL_CONNECTIONS: &str = "tasker_db_pool_connections";

/// Histogram buckets in seconds, a millisecond to ten minutes: steps and tasks alike.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus metrics recorder: {0}")]
pub struct MetricsError(#[from] BuildError);

/// The process's Prometheus exporter. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// The process's exporter: installed as the global recorder on the first call, the same
    /// one after (a process has one recorder; tests start many servers in one process).
    pub fn install() -> Result<Self, MetricsError> {
        static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = installed.as_ref() {
            return Ok(Self {
                handle: handle.clone(),
            });
        }
        let handle = PrometheusBuilder::new()
            .set_buckets(BUCKETS)?
            .install_recorder()?;
        describe();
        *installed = Some(handle.clone());
        Ok(Self { handle })
    }

    /// The metrics in Prometheus' text format, with the gauges read at scrape time (queues,
    /// `pool`'s connections) brought up to date first. A database that does not answer
    /// leaves the queue gauges as they were, and says so in the log.
    pub async fn render(&self, pool: &PgPool) -> String {
        record_pool(pool);
        if let Err(error) = record_queues(pool).await {
            tracing::warn!(%error, "reading the queues for /metrics failed");
        }
        self.handle.render()
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter(Prometheus)")
    }
}

/// What each metric measures, for the `# HELP` lines.
fn describe() {
    describe_counter!(TASKS_CREATED, "Tasks created");
    describe_counter!(TASKS_FINISHED, "Tasks finished, by the state they ended in");
    describe_histogram!(
        TASK_DURATION,
        Unit::Seconds,
        "Time from a task's creation to its end"
    );
    describe_counter!(STEPS_CLAIMED, "Steps claimed by a worker");
    describe_histogram!(STEP_DURATION, Unit::Seconds, "Time a step handler ran");
    describe_counter!(
        STEP_RETRIES,
        "Failed step runs scheduled for another attempt"
    );
    describe_counter!(STEP_FAILURES, "Steps that failed for good");
    describe_gauge!(QUEUE_DEPTH, "Messages in a queue");
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest message of a queue has waited"
    );
    describe_gauge!(DB_POOL_CONNECTIONS, "Database connections of this process");
}

fn record_pool(pool: &PgPool) {
    let size = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set((size - idle).max(0.0));
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle);
    gauge!(DB_POOL_CONNECTIONS, "state" => "max")
        .set(f64::from(pool.options().get_max_connections()));
}

/// Every known queue's depth and oldest message, empty queues included (so a drained queue
/// reads 0, not its last backlog).
async fn record_queues(pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT q.queue_name, count(m.msg_id),
                coalesce(extract(epoch FROM now() - min(m.enqueued_at)), 0)::float8
           FROM tasker.queues q
           LEFT JOIN tasker.queue_messages m ON m.queue_name = q.queue_name
          GROUP BY q.queue_name",
    )
    .fetch_all(pool)
    .await?;
    for (queue, depth, oldest) in rows {
        gauge!(QUEUE_DEPTH, "queue" => queue.clone()).set(depth as f64);
        gauge!(QUEUE_OLDEST_AGE, "queue" => queue).set(oldest.max(0.0));
    }
    Ok(())
}

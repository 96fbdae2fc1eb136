//! Support shared by the criterion benchmarks of every crate (enabled by the `benchmarks`
//! feature): the runtime they run on, their databases, the fixture templates, a deterministic
//! data set for the SQL benchmarks, criterion command-line awareness and latency percentiles.
//!
//! Nothing here times anything; the benchmarks do. What lives here is what several benches
//! need to agree on, so that "the same data" and "the same output directory" mean the same
//! thing in `tasker-shared`, `tasker-orchestration`, `tasker-worker`, `tasker-client` and the
//! end-to-end benches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::error::{DbContext, TaskerResult};
use crate::state::{StepState, TaskState};
use crate::templates::{load_dir, register_template, StepTemplate, TaskTemplate};
use crate::test_support::TestDatabase;

// ---------------------------------------------------------------------------------------------
// Runtime and databases
// ---------------------------------------------------------------------------------------------

/// The runtime every benchmark runs its async code on: tokio's multi-thread scheduler, the
/// flavour the services run on, so scheduling costs are the service's, not a test harness's.
///
/// One per process: sqlx connections are bound to the runtime that opened them, so pools,
/// listeners and the throwaway cluster must all live on this one.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-rt")
            .build()
            .expect("building the benchmark tokio runtime")
    })
}

/// The executor benchmarks hand criterion (`b.to_async(timed())`): [`runtime`], with each
/// criterion sample taken in turn with a partner process when `cargo xtask profile-post
/// --against` asks for it (see [`crate::bench_turns`]).
pub fn timed() -> Timed {
    Timed
}

pub struct Timed;

pub use crate::bench_db_stats::{counted, each};

/// The criterion configuration every bench starts from: one second of warm-up, a 5 % noise
/// threshold (a shared machine), the given measurement time and sample count, and the
/// profiler hook through which the counting pass reads each benchmark's database counts
/// ([`crate::bench_db_stats`]).
pub fn criterion_config(measurement: Duration, sample_size: usize) -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
        .sample_size(sample_size)
        .noise_threshold(0.05)
        .with_profiler(crate::bench_db_stats::DbStats)
}

impl criterion::async_executor::AsyncExecutor for Timed {
    fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        #[cfg(unix)]
        crate::bench_turns::take();
        let output = crate::bench_db_stats::around_sample(|| runtime().block_on(future));
        #[cfg(unix)]
        crate::bench_turns::pass();
        output
    }
}

/// Databases this process created on a `DATABASE_URL` server, dropped by [`teardown`].
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A fresh, migrated database for one benchmark binary.
#[derive(Debug, Clone)]
pub struct BenchDatabase {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl BenchDatabase {
    /// Creates a database (on the throwaway cluster when `DATABASE_URL` is unset) with a pool
    /// of `max_connections`. Must be called from inside [`runtime`].
    pub async fn create(max_connections: u32) -> Self {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|reason| panic!("benchmark database: {reason}"))
            .keep();
        crate::bench_db_stats::register_database(&db.name, &db.url);
        if crate::database::database_url_from_env().is_some() {
            CREATED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(db.name.clone());
        }
        // Connections opened before statement tracking is switched on would never count.
        let counting = crate::bench_db_stats::track_statements(&db.pool, &db.name).await;
        let pool = if max_connections == 10 && !counting {
            db.pool
        } else {
            db.pool.close().await;
            pool(&db.url, max_connections).await
        };
        Self {
            pool,
            url: db.url,
            name: db.name,
        }
    }

    /// Another pool on the same database (for a component that owns its pool).
    pub async fn new_pool(&self, max_connections: u32) -> PgPool {
        pool(&self.url, max_connections).await
    }
}

/// A pool configured as the services configure theirs (`database::connect`: no ping before
/// each acquire, generic plans), so the benchmarks measure what the engine runs.
async fn pool(url: &str, max_connections: u32) -> PgPool {
    crate::database::connect(url, max_connections)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the benchmark database {}: {}",
                crate::database::redact_url(url),
                crate::error::display_chain(&e)
            )
        })
}

/// Drops the databases this process created on a `DATABASE_URL` server. On the throwaway
/// cluster there is nothing to do: the cluster and its data directory disappear when the
/// process exits. Errors are reported, not fatal: the measurements are already written.
/// `TASKER_BENCH_KEEP_DATABASE=1` keeps them (their names are printed), to inspect the data
/// or replay a statement against it with `pgbench` or `EXPLAIN` after the run.
pub fn teardown() {
    let names: Vec<String> =
        std::mem::take(&mut *CREATED.lock().unwrap_or_else(|p| p.into_inner()));
    if std::env::var_os("TASKER_BENCH_KEEP_DATABASE").is_some_and(|v| v == "1") {
        for name in &names {
            eprintln!(
                "teardown: kept the benchmark database {name} (TASKER_BENCH_KEEP_DATABASE=1)"
            );
        }
        return;
    }
    let Some(admin_url) = crate::database::database_url_from_env() else {
        return;
    };
    if names.is_empty() {
        return;
    }
    runtime().block_on(async {
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("teardown: cannot connect to drop the benchmark databases: {e}");
                return;
            }
        };
        for name in names {
            if let Err(reason) = crate::test_support::drop_database(&mut admin, &name).await {
                eprintln!("teardown: {reason}");
            }
        }
        let _ = admin.close().await;
    });
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// `tests/fixtures/task_templates` of the workspace.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("task_templates")
}

/// The fixture templates by template name (`mathematical_sequence`, `diamond_pattern`,
/// `complex_dag`, `hierarchical_tree`).
pub fn fixture_templates() -> HashMap<String, TaskTemplate> {
    let dir = fixtures_dir();
    load_dir(&dir)
        .unwrap_or_else(|e| panic!("loading the fixture templates from {}: {e}", dir.display()))
        .into_iter()
        .map(|(_, t)| (t.name.clone(), t))
        .collect()
}

/// One fixture template by name.
pub fn fixture_template(name: &str) -> TaskTemplate {
    fixture_templates().remove(name).unwrap_or_else(|| {
        panic!(
            "no fixture template named {name} in {}",
            fixtures_dir().display()
        )
    })
}

/// Template names of the four fixture shapes.
pub const LINEAR: &str = "mathematical_sequence";
pub const DIAMOND: &str = "diamond_pattern";
pub const DAG: &str = "complex_dag";
pub const TREE: &str = "hierarchical_tree";

/// A template with `width` independent steps (`step_000`, `step_001`, ...), all ready the
/// moment the task exists: the fan-out the step-enqueueing benchmarks need at sizes the
/// fixtures do not have. With `joined`, a final step depends on every one of them.
pub fn wide_template(namespace: &str, width: usize, joined: bool) -> TaskTemplate {
    let mut steps: Vec<StepTemplate> = (0..width)
        .map(|i| step(&format!("step_{i:03}"), "noop", Vec::new()))
        .collect();
    if joined {
        let parents = steps.iter().map(|s| s.name.clone()).collect();
        steps.push(step("join", "noop", parents));
    }
    TaskTemplate {
        namespace: namespace.to_string(),
        name: format!("wide_{width}{}", if joined { "_joined" } else { "" }),
        version: "1.0.0".to_string(),
        description: Some(format!("{width} independent steps (benchmark fan-out)")),
        steps,
    }
}

fn step(name: &str, handler: &str, depends_on: Vec<String>) -> StepTemplate {
    StepTemplate {
        name: name.to_string(),
        handler: handler.to_string(),
        description: None,
        depends_on,
        retry: Default::default(),
        timeout_seconds: None,
        config: json!({}),
    }
}

/// Each step's depth: 0 for roots, otherwise one more than its deepest parent.
pub fn step_depths(template: &TaskTemplate) -> HashMap<String, usize> {
    fn depth_of(
        name: &str,
        by_name: &HashMap<&str, &StepTemplate>,
        memo: &mut HashMap<String, usize>,
    ) -> usize {
        if let Some(d) = memo.get(name) {
            return *d;
        }
        let d = by_name[name]
            .depends_on
            .iter()
            .map(|p| depth_of(p, by_name, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(name.to_string(), d);
        d
    }
    let by_name: HashMap<&str, &StepTemplate> = template
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut memo = HashMap::new();
    for s in &template.steps {
        depth_of(&s.name, &by_name, &mut memo);
    }
    memo
}

// ---------------------------------------------------------------------------------------------
// Tasks for the component benchmarks
// ---------------------------------------------------------------------------------------------

/// Registers `template` (and its namespace queue) and returns its named task id.
pub async fn register(pool: &PgPool, template: &TaskTemplate) -> Uuid {
    register_template(pool, template)
        .await
        .unwrap_or_else(|e| panic!("registering template {}: {e}", template.name))
        .named_task_uuid
}

/// Creates `count` fresh (pending) tasks from a registered template, the way the task
/// initializer writes them (`insert_task_graph`), several at a time over the pool.
pub async fn create_tasks(
    pool: &PgPool,
    named_task_uuid: Uuid,
    template: &TaskTemplate,
    count: usize,
    context: &Value,
) -> Vec<crate::models::CreatedTask> {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|_| async move {
            let identity = Uuid::now_v7().to_string();
            crate::models::insert_task_graph(
                pool,
                &crate::models::NewTask {
                    named_task_uuid,
                    template,
                    context,
                    priority: 0,
                    identity_hash: &identity,
                    initiator: Some("benchmark"),
                    source_system: None,
                    reason: None,
                    tags: None,
                },
                "bench_setup",
            )
            .await
            .unwrap_or_else(|e| panic!("creating a {} task: {e}", template.name))
        })
        .buffered(8)
        .collect()
        .await
}

/// Deletes tasks; their steps, edges and transition histories go with them (ON DELETE CASCADE).
pub async fn delete_tasks(pool: &PgPool, tasks: &[Uuid]) {
    sqlx::query("DELETE FROM tasker.tasks WHERE task_uuid = ANY ($1)")
        .bind(tasks)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("deleting benchmark tasks: {e}"));
}

/// Deletes every live message of a queue.
pub async fn purge_queue(pool: &PgPool, queue_name: &str) {
    sqlx::query("DELETE FROM tasker.queue_messages WHERE queue_name = $1")
        .bind(queue_name)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("purging queue {queue_name}: {e}"));
}

/// Moves steps along `path` (each entry one batch transition of all of them) with the
/// `transition_steps_atomic` SQL function the enqueuer uses: setup for benchmarks that need
/// steps in a given state with a legal history. Steps that reach `in_progress` count an attempt.
pub async fn advance_steps(pool: &PgPool, steps: &[Uuid], path: &[StepState]) {
    let mut from = StepState::Pending;
    for to in path {
        assert!(
            from.can_transition_to(*to),
            "advance_steps: {from} -> {to} is illegal"
        );
        let moved: Vec<Uuid> = sqlx::query_scalar(
            "SELECT * FROM tasker.transition_steps_atomic($1, $2, $3, 'bench_setup')",
        )
        .bind(steps)
        .bind(&[from.as_str()][..])
        .bind(to.as_str())
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("advance_steps {from} -> {to}: {e}"));
        assert_eq!(
            moved.len(),
            steps.len(),
            "advance_steps: not every step was in {from}"
        );
        if *to == StepState::InProgress {
            sqlx::query(
                "UPDATE tasker.workflow_steps SET attempts = attempts + 1, last_attempted_at = now()
                  WHERE workflow_step_uuid = ANY ($1)",
            )
            .bind(steps)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("advance_steps: counting the attempt: {e}"));
        }
        from = *to;
    }
}

/// Completes pending steps the way a successful run does (enqueued, in progress, result
/// stored, enqueued for orchestration, complete), in batches over all of them.
pub async fn complete_steps(pool: &PgPool, steps: &[Uuid]) {
    use StepState::*;
    advance_steps(pool, steps, &[Enqueued, InProgress]).await;
    sqlx::query(
        "UPDATE tasker.workflow_steps SET results = jsonb_build_object('result', 1, 'step', name)
          WHERE workflow_step_uuid = ANY ($1)",
    )
    .bind(steps)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("complete_steps: storing results: {e}"));
    let mut from = InProgress;
    for to in [EnqueuedForOrchestration, Complete] {
        let moved: Vec<Uuid> = sqlx::query_scalar(
            "SELECT * FROM tasker.transition_steps_atomic($1, $2, $3, 'bench_setup')",
        )
        .bind(steps)
        .bind(&[from.as_str()][..])
        .bind(to.as_str())
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("complete_steps {from} -> {to}: {e}"));
        assert_eq!(moved.len(), steps.len());
        from = to;
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a tiny, fast, well-distributed generator; the data set only needs "the same
/// every run", not cryptographic quality, and this keeps `rand` out of the dependencies.
#[derive(Debug, Clone)]
pub struct DeterministicRng(u64);

impl DeterministicRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Picks an index by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if roll < u64::from(*w) {
                return i;
            }
            roll -= u64::from(*w);
        }
        weights.len() - 1
    }
}

/// Version-7 UUIDs from a fixed epoch and a counter: time-ordered like the service's own ids
/// (so index locality is realistic) and identical on every run.
#[derive(Debug, Clone)]
pub struct UuidSequence {
    base_ms: u64,
    seq: u64,
    rng: DeterministicRng,
}

impl UuidSequence {
    /// 2026-01-01T00:00:00Z.
    const EPOCH_MS: u64 = 1_767_225_600_000;

    pub fn new(seed: u64) -> Self {
        Self {
            base_ms: Self::EPOCH_MS,
            seq: 0,
            rng: DeterministicRng::new(seed ^ 0x5EED_0000_0000_0007),
        }
    }

    pub fn next_uuid(&mut self) -> Uuid {
        // 4,096 ids per millisecond in the 12 counter bits after the version nibble
        let ms = self.base_ms + self.seq / 4096;
        let counter = (self.seq % 4096) as u16;
        self.seq += 1;
        let mut bytes = [0u8; 10];
        bytes[..2].copy_from_slice(&counter.to_be_bytes());
        bytes[2..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
    }
}

// ---------------------------------------------------------------------------------------------
// The SQL benchmark data set
// ---------------------------------------------------------------------------------------------

/// Where a seeded task is in its life. Each maps to a legal task-state path and step states
/// (see [`seed_dataset`]); "frontier" below is the depth of the steps being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Just created: task and steps pending; roots ready.
    Pending,
    /// Steps above the frontier complete, frontier steps enqueued or in progress; task
    /// `steps_in_process` (not a get_next_ready_tasks candidate).
    Running,
    /// Steps above the frontier complete, the rest pending; task `waiting_for_dependencies`
    /// with ready steps.
    WaitingReady,
    /// One frontier step still in progress, its siblings complete; task
    /// `waiting_for_dependencies`, usually nothing ready (a candidate the query must reject).
    WaitingOnSibling,
    /// One frontier step failed once and waits out its backoff (an hour); task
    /// `waiting_for_retry`, not ready.
    RetryBackoff,
    /// As RetryBackoff, but the backoff ended 30 s ago: ready again.
    RetryDue,
    /// One frontier step failed every attempt; task `blocked_by_failures`.
    Blocked,
    /// Every step complete; task `complete`.
    Complete,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Pending,
        Scenario::Running,
        Scenario::WaitingReady,
        Scenario::WaitingOnSibling,
        Scenario::RetryBackoff,
        Scenario::RetryDue,
        Scenario::Blocked,
        Scenario::Complete,
    ];
    /// Share of tasks in each scenario, in [`Scenario::ALL`] order (percent).
    pub const WEIGHTS: [u32; 8] = [15, 15, 10, 10, 8, 7, 10, 25];
}

/// Share of tasks per fixture template (percent): mostly the 4-step shapes, so that 5,000
/// tasks carry about 20,000 steps.
pub const TEMPLATE_MIX: [(&str, u32); 4] = [(LINEAR, 45), (DIAMOND, 45), (DAG, 5), (TREE, 5)];

/// How big the data set is and which pseudo-random stream lays it out.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    pub tasks: usize,
    pub seed: u64,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self {
            tasks: 5_000,
            seed: 0x7A5C_E2B0_0000_0001,
        }
    }
}

/// One seeded step.
#[derive(Debug, Clone)]
pub struct SeededStep {
    pub uuid: Uuid,
    pub name: String,
    pub depth: usize,
    pub state: StepState,
}

/// One seeded task.
#[derive(Debug, Clone)]
pub struct SeededTask {
    pub uuid: Uuid,
    pub template: String,
    pub scenario: Scenario,
    pub state: TaskState,
    /// Depth of the steps being worked on (0 for pending, the template's depth + 1 for complete).
    pub frontier: usize,
    pub priority: i32,
    pub steps: Vec<SeededStep>,
}

impl SeededTask {
    pub fn step(&self, name: &str) -> &SeededStep {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("seeded task {} has no step {name}", self.uuid))
    }
}

/// What [`seed_dataset`] created.
#[derive(Debug, Clone)]
pub struct SeededDataset {
    pub tasks: Vec<SeededTask>,
    pub step_count: usize,
    pub edge_count: usize,
    pub task_transition_count: usize,
    pub step_transition_count: usize,
    pub seconds: f64,
}

impl SeededDataset {
    /// The first task (in creation order) of `template` in `scenario`, skipping `skip` matches.
    pub fn find(&self, template: &str, scenario: Scenario, skip: usize) -> &SeededTask {
        self.tasks
            .iter()
            .filter(|t| t.template == template && t.scenario == scenario)
            .nth(skip)
            .unwrap_or_else(|| {
                panic!("the data set has no {template} task in {scenario:?} (skip {skip})")
            })
    }

    /// As [`Self::find`], additionally requiring a frontier depth.
    pub fn find_at(&self, template: &str, scenario: Scenario, frontier: usize) -> &SeededTask {
        self.tasks
            .iter()
            .find(|t| t.template == template && t.scenario == scenario && t.frontier == frontier)
            .unwrap_or_else(|| {
                panic!("the data set has no {template} task in {scenario:?} at depth {frontier}")
            })
    }

    /// Tasks per scenario, for the benchmark's log line.
    pub fn summary(&self) -> String {
        let mut counts: Vec<String> = Scenario::ALL
            .iter()
            .map(|s| {
                let n = self.tasks.iter().filter(|t| t.scenario == *s).count();
                format!("{s:?}={n}")
            })
            .collect();
        counts.sort();
        format!(
            "{} tasks, {} steps, {} edges, {} task transitions, {} step transitions in {:.1}s ({})",
            self.tasks.len(),
            self.step_count,
            self.edge_count,
            self.task_transition_count,
            self.step_transition_count,
            self.seconds,
            counts.join(" ")
        )
    }
}

/// Column buffers for the bulk inserts (one `INSERT ... SELECT FROM unnest(...)` per table).
#[derive(Default)]
struct Columns {
    t_uuid: Vec<Uuid>,
    t_named: Vec<Uuid>,
    t_state: Vec<String>,
    t_context: Vec<Value>,
    t_priority: Vec<i32>,
    t_identity: Vec<String>,
    t_created: Vec<DateTime<Utc>>,
    t_updated: Vec<DateTime<Utc>>,
    t_completed: Vec<Option<DateTime<Utc>>>,

    s_uuid: Vec<Uuid>,
    s_task: Vec<Uuid>,
    s_name: Vec<String>,
    s_handler: Vec<String>,
    s_state: Vec<String>,
    s_attempts: Vec<i32>,
    s_max_attempts: Vec<i32>,
    s_retryable: Vec<bool>,
    s_backoff_base: Vec<i32>,
    s_backoff_max: Vec<i32>,
    s_in_process: Vec<bool>,
    s_processed: Vec<bool>,
    s_results: Vec<Option<Value>>,
    s_last_error: Vec<Option<Value>>,
    s_last_attempted: Vec<Option<DateTime<Utc>>>,
    s_next_retry: Vec<Option<DateTime<Utc>>>,
    s_processed_at: Vec<Option<DateTime<Utc>>>,
    s_created: Vec<DateTime<Utc>>,

    e_from: Vec<Uuid>,
    e_to: Vec<Uuid>,

    tt: Transitions,
    st: Transitions,
}

#[derive(Default)]
struct Transitions {
    uuid: Vec<Uuid>,
    owner: Vec<Uuid>,
    from: Vec<Option<String>>,
    to: Vec<String>,
    sort_key: Vec<i32>,
    most_recent: Vec<bool>,
    created: Vec<DateTime<Utc>>,
}

impl Transitions {
    /// Appends a history: `path[0]` is the initial state (from NULL), each later entry one
    /// transition; the last is most_recent.
    fn push_path(
        &mut self,
        ids: &mut UuidSequence,
        owner: Uuid,
        path: &[&str],
        start: DateTime<Utc>,
    ) {
        for (i, to) in path.iter().enumerate() {
            self.uuid.push(ids.next_uuid());
            self.owner.push(owner);
            self.from
                .push(i.checked_sub(1).map(|p| path[p].to_string()));
            self.to.push((*to).to_string());
            self.sort_key.push(i as i32 + 1);
            self.most_recent.push(i + 1 == path.len());
            self.created
                .push(start + chrono::Duration::milliseconds(50 * i as i64));
        }
    }
}

/// The legal step history that ends in `state` (from `pending`); `max_attempts` failures for
/// `error`.
fn step_path(state: StepState, max_attempts: i32) -> Vec<StepState> {
    use StepState::*;
    let mut path = vec![Pending];
    match state {
        Pending => {}
        Enqueued => path.push(Enqueued),
        InProgress => path.extend([Enqueued, InProgress]),
        Complete => path.extend([Enqueued, InProgress, EnqueuedForOrchestration, Complete]),
        WaitingForRetry => path.extend([
            Enqueued,
            InProgress,
            EnqueuedAsErrorForOrchestration,
            WaitingForRetry,
        ]),
        Error => {
            for attempt in 1..=max_attempts {
                path.extend([Enqueued, InProgress, EnqueuedAsErrorForOrchestration]);
                path.push(if attempt < max_attempts {
                    WaitingForRetry
                } else {
                    Error
                });
            }
        }
        other => panic!("the data set does not seed steps in {other}"),
    }
    path
}

/// The task history for a scenario: one enqueue/process/evaluate round per completed depth.
fn task_path(scenario: Scenario, frontier: usize) -> Vec<TaskState> {
    use TaskState::*;
    let mut path = vec![Pending];
    let round = [EnqueuingSteps, StepsInProcess, EvaluatingResults];
    match scenario {
        Scenario::Pending => {}
        Scenario::Running => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.extend([EnqueuingSteps, StepsInProcess]);
        }
        Scenario::WaitingReady => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.push(WaitingForDependencies);
        }
        Scenario::WaitingOnSibling
        | Scenario::RetryBackoff
        | Scenario::RetryDue
        | Scenario::Blocked => {
            for _ in 0..=frontier {
                path.extend(round);
            }
            path.push(match scenario {
                Scenario::WaitingOnSibling => WaitingForDependencies,
                Scenario::Blocked => BlockedByFailures,
                _ => WaitingForRetry,
            });
        }
        Scenario::Complete => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.push(Complete);
        }
    }
    path
}

fn check_legal<S: Copy + std::fmt::Display>(path: &[S], legal: impl Fn(S, S) -> bool) {
    for pair in path.windows(2) {
        assert!(
            legal(pair[0], pair[1]),
            "seed bug: illegal transition {} -> {}",
            pair[0],
            pair[1]
        );
    }
}

/// Seeds the SQL benchmark data set: the four fixture templates registered, `spec.tasks`
/// tasks over them ([`TEMPLATE_MIX`]) in mixed states ([`Scenario::WEIGHTS`]), every state
/// reached through a legal transition history whose most recent row matches the
/// `current_state` column. Written with a handful of bulk statements in one transaction, then
/// `VACUUM ANALYZE`d so the planner sees the statistics a running system has.
///
/// Deterministic: the same spec produces the same shapes, states and ids on every run (times
/// are relative to now, because readiness compares backoffs with `now()`).
pub async fn seed_dataset(pool: &PgPool, spec: DatasetSpec) -> TaskerResult<SeededDataset> {
    let started = std::time::Instant::now();
    let templates = fixture_templates();
    let mut registered: Vec<(TaskTemplate, Uuid, HashMap<String, usize>, usize)> = Vec::new();
    for (name, _) in TEMPLATE_MIX {
        let template = templates
            .get(name)
            .unwrap_or_else(|| panic!("fixture template {name} is missing"))
            .clone();
        let reg = register_template(pool, &template).await?;
        let depths = step_depths(&template);
        let max_depth = depths.values().copied().max().unwrap_or(0);
        registered.push((template, reg.named_task_uuid, depths, max_depth));
    }
    let template_weights: Vec<u32> = TEMPLATE_MIX.iter().map(|(_, w)| *w).collect();

    let mut rng = DeterministicRng::new(spec.seed);
    let mut ids = UuidSequence::new(spec.seed);
    let now = Utc::now();
    let mut cols = Columns::default();
    let mut tasks = Vec::with_capacity(spec.tasks);

    for i in 0..spec.tasks {
        let (template, named_task_uuid, depths, max_depth) =
            &registered[rng.weighted(&template_weights)];
        let scenario = Scenario::ALL[rng.weighted(&Scenario::WEIGHTS)];
        let max_depth = *max_depth as u64;
        let frontier = match scenario {
            Scenario::Pending => 0,
            Scenario::Complete => max_depth as usize + 1,
            Scenario::WaitingReady => 1 + rng.below(max_depth) as usize,
            _ => rng.below(max_depth + 1) as usize,
        };
        let priority = if rng.below(10) == 0 {
            1 + rng.below(3) as i32
        } else {
            0
        };
        // one task every two seconds, the newest a minute old
        let created = now - chrono::Duration::seconds(60 + 2 * (spec.tasks - i) as i64);
        let task_uuid = ids.next_uuid();

        let tpath = task_path(scenario, frontier);
        check_legal(&tpath, TaskState::can_transition_to);
        let state = *tpath.last().expect("a path has a state");
        let last_transition = created + chrono::Duration::milliseconds(50 * tpath.len() as i64);
        cols.t_uuid.push(task_uuid);
        cols.t_named.push(*named_task_uuid);
        cols.t_state.push(state.as_str().to_string());
        cols.t_context
            .push(json!({"even_number": 2 * (1 + i % 10), "bench_index": i}));
        cols.t_priority.push(priority);
        cols.t_identity.push(format!("bench-dataset-{i}"));
        cols.t_created.push(created);
        cols.t_updated.push(last_transition);
        cols.t_completed
            .push((state == TaskState::Complete).then_some(last_transition));
        let names: Vec<&str> = tpath.iter().map(|s| s.as_str()).collect();
        cols.tt.push_path(&mut ids, task_uuid, &names, created);

        // the first frontier step (template order) is the odd one out in the sibling,
        // retry and blocked scenarios
        let first_at_frontier = template
            .steps
            .iter()
            .find(|s| depths[&s.name] == frontier)
            .map(|s| s.name.clone());
        let mut steps = Vec::with_capacity(template.steps.len());
        let mut step_ids = HashMap::new();
        for s in &template.steps {
            let depth = depths[&s.name];
            let odd_one = first_at_frontier.as_deref() == Some(s.name.as_str());
            let step_state = if depth < frontier {
                StepState::Complete
            } else if depth > frontier {
                StepState::Pending
            } else {
                match scenario {
                    Scenario::Pending | Scenario::WaitingReady => StepState::Pending,
                    Scenario::Running if rng.below(3) == 0 => StepState::Enqueued,
                    Scenario::Running => StepState::InProgress,
                    Scenario::WaitingOnSibling if odd_one => StepState::InProgress,
                    Scenario::RetryBackoff | Scenario::RetryDue if odd_one => {
                        StepState::WaitingForRetry
                    }
                    Scenario::Blocked if odd_one => StepState::Error,
                    _ => StepState::Complete,
                }
            };
            let max_attempts = s.retry.max_attempts.min(i32::MAX as u32) as i32;
            let spath = step_path(step_state, max_attempts);
            check_legal(&spath, StepState::can_transition_to);
            let attempts = spath
                .iter()
                .filter(|s| **s == StepState::InProgress)
                .count() as i32;
            let attempted = attempts > 0;
            let finished = created + chrono::Duration::milliseconds(50 * spath.len() as i64);
            let step_uuid = ids.next_uuid();
            step_ids.insert(s.name.clone(), step_uuid);
            cols.s_uuid.push(step_uuid);
            cols.s_task.push(task_uuid);
            cols.s_name.push(s.name.clone());
            cols.s_handler.push(s.handler.clone());
            cols.s_state.push(step_state.as_str().to_string());
            cols.s_attempts.push(attempts);
            cols.s_max_attempts.push(max_attempts);
            cols.s_retryable.push(s.retry.retryable);
            cols.s_backoff_base
                .push(s.retry.backoff_base_ms.min(i32::MAX as u32) as i32);
            cols.s_backoff_max
                .push(s.retry.backoff_max_ms.min(i32::MAX as u32) as i32);
            cols.s_in_process.push(matches!(
                step_state,
                StepState::Enqueued | StepState::InProgress
            ));
            cols.s_processed.push(step_state == StepState::Complete);
            cols.s_results.push(
                (step_state == StepState::Complete).then(
                    || json!({"result": (i as u64 + 1) * (depth as u64 + 2), "step": s.name}),
                ),
            );
            cols.s_last_error.push(
                matches!(step_state, StepState::WaitingForRetry | StepState::Error).then(|| {
                    json!({"message": "simulated handler failure", "kind": "retryable", "attempt": attempts})
                }),
            );
            cols.s_last_attempted.push(attempted.then_some(finished));
            cols.s_next_retry.push(match (step_state, scenario) {
                (StepState::WaitingForRetry, Scenario::RetryBackoff) => {
                    Some(now + chrono::Duration::hours(1))
                }
                (StepState::WaitingForRetry, _) => Some(now - chrono::Duration::seconds(30)),
                _ => None,
            });
            cols.s_processed_at
                .push((step_state == StepState::Complete).then_some(finished));
            cols.s_created.push(created);
            let names: Vec<&str> = spath.iter().map(|s| s.as_str()).collect();
            cols.st.push_path(&mut ids, step_uuid, &names, created);
            steps.push(SeededStep {
                uuid: step_uuid,
                name: s.name.clone(),
                depth,
                state: step_state,
            });
        }
        for s in &template.steps {
            for parent in &s.depends_on {
                cols.e_from.push(step_ids[parent]);
                cols.e_to.push(step_ids[&s.name]);
            }
        }
        tasks.push(SeededTask {
            uuid: task_uuid,
            template: template.name.clone(),
            scenario,
            state,
            frontier,
            priority,
            steps,
        });
    }

    write_columns(pool, &cols).await?;

    // A running system's autovacuum keeps statistics and the visibility map current; without
    // them the planner guesses row counts and index-only scans visit the heap.
    for table in [
        "tasker.tasks",
        "tasker.workflow_steps",
        "tasker.workflow_step_edges",
        "tasker.task_transitions",
        "tasker.workflow_step_transitions",
    ] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await
            .db_context(format!("vacuum analyze {table}"))?;
    }

    let dataset = SeededDataset {
        step_count: cols.s_uuid.len(),
        edge_count: cols.e_from.len(),
        task_transition_count: cols.tt.uuid.len(),
        step_transition_count: cols.st.uuid.len(),
        tasks,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mismatches = state_mismatches(pool).await?;
    assert_eq!(
        mismatches, 0,
        "seed bug: {mismatches} rows whose current_state differs from their most recent transition"
    );
    Ok(dataset)
}

/// Tasks and steps whose `current_state` is not their most recent transition's `to_state`
/// (or that have no most recent transition): the invariant the schema promises.
pub async fn state_mismatches(pool: &PgPool) -> TaskerResult<i64> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tasker.tasks t
                   LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
                  WHERE tt.to_state IS DISTINCT FROM t.current_state)
              + (SELECT count(*) FROM tasker.workflow_steps s
                   LEFT JOIN tasker.workflow_step_transitions st
                          ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent
                  WHERE st.to_state IS DISTINCT FROM s.current_state)",
    )
    .fetch_one(pool)
    .await
    .db_context("checking current_state against the transition history")
}

async fn write_columns(pool: &PgPool, c: &Columns) -> TaskerResult<()> {
    let mut tx = pool
        .begin()
        .await
        .db_context("starting the seed transaction")?;
    sqlx::query(
        "INSERT INTO tasker.tasks (task_uuid, named_task_uuid, current_state, context, priority,
                                   identity_hash, created_at, updated_at, completed_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::int[],
                              $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])",
    )
    .bind(&c.t_uuid)
    .bind(&c.t_named)
    .bind(&c.t_state)
    .bind(&c.t_context)
    .bind(&c.t_priority)
    .bind(&c.t_identity)
    .bind(&c.t_created)
    .bind(&c.t_updated)
    .bind(&c.t_completed)
    .execute(&mut *tx)
    .await
    .db_context("seeding tasks")?;
    sqlx::query(
        "INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, name, handler, current_state,
                    attempts, max_attempts, retryable, backoff_base_ms, backoff_max_ms, in_process,
                    processed, results, last_error, last_attempted_at, next_retry_at, processed_at,
                    created_at, updated_at)
         SELECT u, t, n, h, st, a, m, r, bb, bm, ip, p, res, err, la, nr, pa, c, c
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int[],
                       $7::int[], $8::bool[], $9::int[], $10::int[], $11::bool[], $12::bool[],
                       $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[],
                       $17::timestamptz[], $18::timestamptz[])
                AS s(u, t, n, h, st, a, m, r, bb, bm, ip, p, res, err, la, nr, pa, c)",
    )
    .bind(&c.s_uuid)
    .bind(&c.s_task)
    .bind(&c.s_name)
    .bind(&c.s_handler)
    .bind(&c.s_state)
    .bind(&c.s_attempts)
    .bind(&c.s_max_attempts)
    .bind(&c.s_retryable)
    .bind(&c.s_backoff_base)
    .bind(&c.s_backoff_max)
    .bind(&c.s_in_process)
    .bind(&c.s_processed)
    .bind(&c.s_results)
    .bind(&c.s_last_error)
    .bind(&c.s_last_attempted)
    .bind(&c.s_next_retry)
    .bind(&c.s_processed_at)
    .bind(&c.s_created)
    .execute(&mut *tx)
    .await
    .db_context("seeding workflow steps")?;
    sqlx::query(
        "INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
         SELECT * FROM unnest($1::uuid[], $2::uuid[])",
    )
    .bind(&c.e_from)
    .bind(&c.e_to)
    .execute(&mut *tx)
    .await
    .db_context("seeding step edges")?;
    for (table, owner, t) in [
        (
            "tasker.task_transitions",
            "task_transition_uuid, task_uuid",
            &c.tt,
        ),
        (
            "tasker.workflow_step_transitions",
            "workflow_step_transition_uuid, workflow_step_uuid",
            &c.st,
        ),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} ({owner}, from_state, to_state, sort_key, most_recent, processor, created_at)
             SELECT u, o, f, t, k, m, 'bench_seed', c
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bool[],
                           $7::timestamptz[]) AS x(u, o, f, t, k, m, c)"
        ))
        .bind(&t.uuid)
        .bind(&t.owner)
        .bind(&t.from)
        .bind(&t.to)
        .bind(&t.sort_key)
        .bind(&t.most_recent)
        .bind(&t.created)
        .execute(&mut *tx)
        .await
        .db_context(format!("seeding {table}"))?;
    }
    tx.commit().await.db_context("committing the seed")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Criterion's command line
// ---------------------------------------------------------------------------------------------

/// How criterion will run this process, read from the same arguments criterion parses (its
/// `Criterion` keeps the mode private). Used to skip work that only makes sense in one mode,
/// such as the EXPLAIN pass, which neither `--list` nor `--profile-time` should pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// `--bench`: measure.
    Benchmark,
    /// `--bench --profile-time N`: iterate for N seconds, no analysis.
    Profile,
    /// No `--bench` (`cargo test --benches`): each benchmark runs once.
    Test,
    /// `--list`.
    List,
}

/// The parsed arguments.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub mode: BenchMode,
    /// Criterion's positional FILTER (a regular expression over benchmark ids).
    pub filter: Option<String>,
}

impl BenchArgs {
    /// Criterion's options that take a value (so that value is not mistaken for the filter).
    const VALUED: &'static [&'static str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];

    pub fn from_env() -> Self {
        Self::parse(std::env::args().skip(1))
    }

    pub fn parse(args: impl IntoIterator<Item = String>) -> Self {
        let (mut bench, mut test, mut list, mut profile) = (false, false, false, false);
        let mut filter = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let name = arg.split('=').next().unwrap_or_default();
            match name {
                "--bench" => bench = true,
                "--test" => test = true,
                "--list" => list = true,
                "--profile-time" => profile = true,
                _ => {}
            }
            if Self::VALUED.contains(&name) {
                if !arg.contains('=') {
                    args.next();
                }
            } else if !arg.starts_with('-') && filter.is_none() {
                filter = Some(arg);
            }
        }
        let mode = if list {
            BenchMode::List
        } else if !bench || test {
            BenchMode::Test
        } else if profile {
            BenchMode::Profile
        } else {
            BenchMode::Benchmark
        };
        Self { mode, filter }
    }

    /// Whether a pass named `name` that is not a criterion benchmark should run: in benchmark
    /// and test mode, when there is no filter or the filter mentions it.
    pub fn runs_extra_pass(&self, name: &str) -> bool {
        matches!(self.mode, BenchMode::Benchmark | BenchMode::Test)
            && self
                .filter
                .as_deref()
                .is_none_or(|f| name.contains(f) || f.contains(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Criterion's output directory, found the way criterion finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the target directory `cargo metadata` reports (when run
/// by cargo), else `target/criterion`.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output();
        if let Ok(output) = output {
            if let Ok(meta) = serde_json::from_slice::<Value>(&output.stdout) {
                if let Some(dir) = meta.get("target_directory").and_then(Value::as_str) {
                    return PathBuf::from(dir).join("criterion");
                }
            }
        }
    }
    PathBuf::from("target").join("criterion")
}

/// What the figures depend on besides the code: the server version and the settings that
/// change commit latency. Recorded next to every percentile file (the local throwaway cluster
/// runs with `synchronous_commit = off`, see `local_postgres/cluster.rs`).
pub async fn server_context(pool: &PgPool) -> Value {
    let setting = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    json!({
        "server_version": setting("server_version").await,
        "synchronous_commit": setting("synchronous_commit").await,
        "fsync": setting("fsync").await,
        "shared_buffers": setting("shared_buffers").await,
        "database": if crate::database::database_url_from_env().is_some() { "DATABASE_URL" } else { "throwaway cluster" },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}

/// Latency distribution of one benchmark, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn from_samples(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let idx = ((p / 100.0) * us.len() as f64).ceil() as usize;
            us[idx.clamp(1, us.len()) - 1]
        };
        Some(Self {
            samples: us.len(),
            min_us: us[0],
            p50_us: rank(50.0),
            p95_us: rank(95.0),
            p99_us: rank(99.0),
            max_us: us[us.len() - 1],
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        })
    }
}

/// Per-iteration latencies recorded by benchmarks that report percentiles (criterion only
/// reports the distribution of per-sample means).
#[derive(Debug, Default)]
pub struct LatencyLog {
    entries: Mutex<Vec<LogEntry>>,
}

#[derive(Debug)]
struct LogEntry {
    id: String,
    samples: Vec<Duration>,
    last_iters: u64,
}

impl LatencyLog {
    pub const fn new() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }

    fn with_entry<R>(&self, id: &str, f: impl FnOnce(&mut LogEntry) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let index = match entries.iter().position(|e| e.id == id) {
            Some(i) => i,
            None => {
                entries.push(LogEntry {
                    id: id.to_string(),
                    samples: Vec::new(),
                    last_iters: 0,
                });
                entries.len() - 1
            }
        };
        f(&mut entries[index])
    }

    /// Call at the start of each `iter_custom` batch. Criterion's warm-up doubles the
    /// iteration count until its time is up; its measurement then starts again from a smaller
    /// count. The first drop in `iters` therefore marks the end of the warm-up, whose
    /// iterations are discarded so the percentiles describe the measured ones.
    pub fn batch(&self, id: &str, iters: u64) {
        self.with_entry(id, |e| {
            if iters < e.last_iters {
                e.samples.clear();
            }
            e.last_iters = iters;
        });
    }

    /// Records one iteration of benchmark `id`.
    pub fn record(&self, id: &str, latency: Duration) {
        self.with_entry(id, |e| e.samples.push(latency));
    }

    /// Samples recorded for `id` so far.
    pub fn samples(&self, id: &str) -> Vec<Duration> {
        self.with_entry(id, |e| e.samples.clone())
    }

    /// Writes `<criterion home>/<group>/percentiles.json` and prints one line per benchmark.
    /// Nothing is written when nothing was recorded (a filtered or `--list` run).
    pub fn write(&self, group: &str, context: Value) -> Option<PathBuf> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut results = serde_json::Map::new();
        for LogEntry { id, samples, .. } in entries.iter() {
            if let Some(p) = Percentiles::from_samples(samples) {
                println!(
                    "{group}/{id}: n={} p50={:.1}us p95={:.1}us p99={:.1}us max={:.1}us",
                    p.samples, p.p50_us, p.p95_us, p.p99_us, p.max_us
                );
                results.insert(id.clone(), serde_json::to_value(&p).unwrap_or(Value::Null));
            }
        }
        if results.is_empty() {
            return None;
        }
        let dir = criterion_home().join(group);
        let path = dir.join("percentiles.json");
        let doc = json!({
            "group": group,
            "generated_at": Utc::now().to_rfc3339(),
            "unit": "microseconds",
            "context": context,
            "benchmarks": results,
        });
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default())
        });
        match written {
            Ok(()) => {
                println!("{group}: percentiles written to {}", path.display());
                Some(path)
            }
            Err(e) => {
                eprintln!("{group}: could not write {}: {e}", path.display());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> BenchArgs {
        BenchArgs::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn modes_follow_criterion() {
        assert_eq!(args(&[]).mode, BenchMode::Test);
        assert_eq!(args(&["--bench"]).mode, BenchMode::Benchmark);
        assert_eq!(
            args(&["--bench", "--profile-time", "5"]).mode,
            BenchMode::Profile
        );
        assert_eq!(args(&["--bench", "--list"]).mode, BenchMode::List);
        let a = args(&["--bench", "--profile-time", "5", "get_next"]);
        assert_eq!(a.filter.as_deref(), Some("get_next"));
        let a = args(&["--bench", "--save-baseline", "base", "--sample-size=10"]);
        assert_eq!(a.filter, None);
        assert!(a.runs_extra_pass("explain_analyze"));
        assert!(!args(&["--bench", "get_next"]).runs_extra_pass("explain_analyze"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let p = Percentiles::from_samples(&samples).unwrap();
        assert_eq!((p.p50_us, p.p95_us, p.p99_us), (50.0, 95.0, 99.0));
    }

    #[test]
    fn uuid_sequence_is_ordered_and_repeatable() {
        let (mut a, mut b) = (UuidSequence::new(1), UuidSequence::new(1));
        let xs: Vec<Uuid> = (0..10_000).map(|_| a.next_uuid()).collect();
        let ys: Vec<Uuid> = (0..10_000).map(|_| b.next_uuid()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn seeded_paths_are_legal() {
        for s in Scenario::ALL {
            // the seed gives these a frontier of at least 1 (something completed)
            let first = usize::from(matches!(s, Scenario::WaitingReady | Scenario::Complete));
            for frontier in first..4 {
                check_legal(&task_path(s, frontier), TaskState::can_transition_to);
            }
        }
        for st in [
            StepState::Pending,
            StepState::Enqueued,
            StepState::InProgress,
            StepState::Complete,
            StepState::WaitingForRetry,
            StepState::Error,
        ] {
            check_legal(&step_path(st, 3), StepState::can_transition_to);
        }
    }
}

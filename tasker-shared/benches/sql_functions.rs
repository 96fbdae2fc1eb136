//! The orchestration SQL functions on a realistic data set.
//!
//! What is measured: one call of each hot-path function through its typed wrapper in
//! `tasker_shared::sql_functions` (a prepared statement, one round trip), as the orchestrator
//! and workers make it: the calls of a sample run on one connection checked out before the
//! clock starts, as the engine's loops keep theirs (`tasker_shared::database::HeldConnection`):
//!
//! - `get_next_ready_tasks`: batch sizes 1, 10, 50 and 100;
//! - `get_step_readiness_status`: five tasks of different shapes and states;
//! - `transition_task_state_atomic`: five dedicated tasks, each flipping between two legal,
//!   non-candidate states (`steps_in_process` and `evaluating_results` or `enqueuing_steps`),
//!   so the data set does not drift; the history rows the flips add are pruned between
//!   samples, outside the timed region;
//! - `get_task_execution_context`: five tasks of different shapes and states;
//! - `get_step_transitive_dependencies`: ten steps at depths 0 to 3;
//! - `pool_checkout`: `SELECT 1` and a task transition, each through the pool (a checkout per
//!   call) and on a held connection, so what a checkout per call would add is a number: for a
//!   statement that works the server it is more than the checkout, because the pool hands out
//!   the connection idle longest and consecutive calls rotate over cold server processes.
//!
//! The data: once per run, the first benchmark that runs seeds a fresh database (the
//! throwaway PostgreSQL cluster when `DATABASE_URL` is unset) with
//! `tasker_test_support::seed_dataset`: 5,000 tasks and about 21,700 steps over the
//! four fixture templates (linear, diamond, DAG, tree) in mixed states (pending, running,
//! partly complete, waiting for a retry backoff, retry due, blocked, complete), every state
//! reached through a legal transition history, then `VACUUM ANALYZE`. Deterministic: the same
//! shapes, states and ids on every run.
//!
//! The EXPLAIN pass: after the benchmarks (in benchmark and test mode, when no filter
//! excludes `explain_analyze`), each function's plan is captured once with `auto_explain`
//! (ANALYZE, BUFFERS, JSON, nested statements; the plpgsql transition function's inner
//! statements are invisible to a plain EXPLAIN) after warming the prepared statement past
//! PostgreSQL's five custom plans, so the plan shown is the one the benchmark ran. Sequential
//! scans over tables of 1,000 rows or more are reported as warnings. With
//! `TASKER_EXPLAIN_OUT=dir` the plans are written there as JSON, one file per function.
//!
//! Run: `cargo bench --package tasker-shared --features benchmarks --bench sql_functions`
//! (`-- get_next_ready_tasks` to filter, `-- --profile-time 10` to profile).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tasker_shared::sql_functions;
use tasker_shared::state::TaskState;
use tasker_test_support::{
    bench_main, counted, criterion_config, each, runtime, seed_dataset, timed, BenchArgs,
    BenchDatabase, DatasetSpec, Scenario, SeededDataset, DAG, DIAMOND, LINEAR, TREE,
};
use uuid::Uuid;

/// A task whose state the transition benchmark flips between `a` and `b`.
struct FlipTask {
    label: String,
    task: Uuid,
    a: TaskState,
    b: TaskState,
    /// True while the task is in `b`.
    at_b: AtomicBool,
    /// Transitions the seed gave it; rows above this are the benchmark's and are pruned.
    seeded_transitions: i32,
}

/// The database, the data set and the samples each benchmark uses.
struct Fixture {
    db: BenchDatabase,
    data: SeededDataset,
    readiness: Vec<(String, Uuid)>,
    contexts: Vec<(String, Uuid)>,
    flips: Vec<FlipTask>,
    ancestors: Vec<(String, Uuid)>,
}

fn short(template: &str) -> &'static str {
    match template {
        LINEAR => "linear",
        DIAMOND => "diamond",
        DAG => "dag",
        TREE => "tree",
        _ => "other",
    }
}

fn scenario_name(s: Scenario) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{s:?}"))
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Seeds on first use, so `--list` and filtered runs that select no SQL benchmark never
/// start a database.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let fx = runtime().block_on(create_fixture());
        check_labels(&fx);
        fx
    })
}

async fn create_fixture() -> Fixture {
    let db = BenchDatabase::create(10).await;
    let data = seed_dataset(&db.pool, DatasetSpec::default())
        .await
        .expect("seeding the SQL benchmark data set");
    println!("sql_functions data set: {}", data.summary());

    let pick = |template: &str, scenario: Scenario, skip: usize| {
        let t = data.find(template, scenario, skip);
        (
            format!("{}_{}", short(template), scenario_name(scenario)),
            t.uuid,
        )
    };
    let readiness = vec![
        pick(LINEAR, Scenario::Pending, 0),
        pick(DIAMOND, Scenario::WaitingReady, 0),
        pick(DAG, Scenario::RetryDue, 0),
        pick(TREE, Scenario::Running, 0),
        pick(TREE, Scenario::Complete, 0),
    ];
    let contexts = vec![
        pick(LINEAR, Scenario::Running, 0),
        pick(DIAMOND, Scenario::Blocked, 0),
        pick(DAG, Scenario::WaitingOnSibling, 0),
        pick(TREE, Scenario::RetryBackoff, 0),
        pick(DIAMOND, Scenario::Complete, 0),
    ];

    // Running tasks not sampled above: steps_in_process, and both partner states are outside
    // get_next_ready_tasks' candidate states, so a flip never changes another benchmark's data.
    use TaskState::{EnqueuingSteps, EvaluatingResults, StepsInProcess};
    let mut flips = Vec::new();
    for (template, skip, partner) in [
        (LINEAR, 1, EvaluatingResults),
        (DIAMOND, 1, EnqueuingSteps),
        (DAG, 1, EvaluatingResults),
        (TREE, 1, EnqueuingSteps),
        (LINEAR, 2, EnqueuingSteps),
    ] {
        let t = data.find(template, Scenario::Running, skip);
        assert_eq!(t.state, StepsInProcess);
        let seeded: i32 = sqlx::query_scalar(
            "SELECT max(sort_key) FROM tasker.task_transitions WHERE task_uuid = $1",
        )
        .bind(t.uuid)
        .fetch_one(&db.pool)
        .await
        .expect("reading the seeded history length");
        flips.push(FlipTask {
            label: format!(
                "{}{}_{}_{}",
                short(template),
                if skip > 1 { "_b" } else { "" },
                StepsInProcess.as_str(),
                partner.as_str()
            ),
            task: t.uuid,
            a: StepsInProcess,
            b: partner,
            at_b: AtomicBool::new(false),
            seeded_transitions: seeded,
        });
    }

    let mut ancestors = Vec::new();
    for (template, steps) in [
        (
            LINEAR,
            &["linear_step_1", "linear_step_2", "linear_step_4"][..],
        ),
        (DIAMOND, &["diamond_branch_b", "diamond_end"][..]),
        (DAG, &["dag_validate", "dag_finalize"][..]),
        (
            TREE,
            &["tree_branch_left", "tree_leaf_d", "tree_final_convergence"][..],
        ),
    ] {
        let t = data.find(template, Scenario::Complete, 0);
        for name in steps {
            let s = t.step(name);
            ancestors.push((format!("{name}_depth{}", s.depth), s.uuid));
        }
    }

    Fixture {
        db,
        data,
        readiness,
        contexts,
        flips,
        ancestors,
    }
}

fn bench_next_ready_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_next_ready_tasks");
    for batch in [1, 10, 50, 100] {
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            let pool = &fixture().db.pool;
            b.to_async(timed()).iter_custom(counted(|iters| {
                on_one_connection(pool, iters, move |conn| {
                    Box::pin(async move {
                        sql_functions::get_next_ready_tasks(conn, batch)
                            .await
                            .expect("get_next_ready_tasks")
                            .len()
                    })
                })
            }));
        });
    }
    group.finish();
}

fn bench_step_readiness(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_step_readiness_status");
    for i in 0..5 {
        // the label is only known once the data set exists; the index keeps ids stable
        let id = SAMPLE_LABELS.readiness[i];
        group.bench_function(id, |b| {
            let fx = fixture();
            let task = fx.readiness[i].1;
            b.to_async(timed()).iter_custom(counted(|iters| {
                on_one_connection(&fx.db.pool, iters, move |conn| {
                    Box::pin(async move {
                        sql_functions::get_step_readiness_status(conn, task, None)
                            .await
                            .expect("get_step_readiness_status")
                            .len()
                    })
                })
            }));
        });
    }
    group.finish();
}

fn bench_transition(c: &mut Criterion) {
    let mut group = c.benchmark_group("transition_task_state_atomic");
    for i in 0..5 {
        group.bench_function(SAMPLE_LABELS.flips[i], |b| {
            let fx = fixture();
            let flip = &fx.flips[i];
            b.to_async(timed()).iter_custom(counted(|iters| async move {
                let elapsed =
                    on_one_connection(&fx.db.pool, iters, move |conn| Box::pin(flip.flip(conn)))
                        .await;
                prune_history(flip).await;
                elapsed
            }));
        });
    }
    group.finish();
}

impl FlipTask {
    /// One transition, to whichever of the two states the task is not in.
    async fn flip<'e>(&self, executor: impl sqlx::PgExecutor<'e>) {
        let at_b = self.at_b.load(Ordering::Relaxed);
        let (from, to) = if at_b {
            (self.b, self.a)
        } else {
            (self.a, self.b)
        };
        let moved = sql_functions::transition_task_state_atomic(
            executor,
            self.task,
            from.as_str(),
            to.as_str(),
            "bench",
            &json!({"source": "sql_functions benchmark"}),
        )
        .await
        .expect("transition_task_state_atomic");
        assert!(moved, "{}: {from} -> {to} did not apply", self.label);
        self.at_b.store(!at_b, Ordering::Relaxed);
    }
}

/// Times `iters` calls of `call` on one connection, checked out before the clock starts and
/// returned after it stops. The engine's loops keep their connection
/// (`tasker_shared::database::HeldConnection`), so this is how they call the functions; what a
/// checkout per call adds is measured apart, in `pool_checkout`.
///
/// Takes the pool rather than reaching for the fixture: the fixture seeds the database with
/// `block_on` on first use, which cannot happen inside the benchmark's runtime.
async fn on_one_connection<F, T>(pool: &sqlx::PgPool, iters: u64, mut call: F) -> Duration
where
    F: for<'c> FnMut(&'c mut PgConnection) -> futures::future::BoxFuture<'c, T>,
{
    let mut conn = pool
        .acquire()
        .await
        .expect("checking out a connection for the sample");
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(call(&mut conn).await);
    }
    start.elapsed()
}

/// Removes the history rows the benchmark added (all but the most recent), so the
/// transitions table keeps its seeded size however long the benchmark runs.
async fn prune_history(flip: &FlipTask) {
    sqlx::query(
        "DELETE FROM tasker.task_transitions
          WHERE task_uuid = $1 AND NOT most_recent AND sort_key > $2",
    )
    .bind(flip.task)
    .bind(flip.seeded_transitions)
    .execute(&fixture().db.pool)
    .await
    .expect("pruning the benchmark's transition rows");
}

fn bench_execution_context(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_task_execution_context");
    for i in 0..5 {
        group.bench_function(SAMPLE_LABELS.contexts[i], |b| {
            let fx = fixture();
            let task = fx.contexts[i].1;
            b.to_async(timed()).iter_custom(counted(|iters| {
                on_one_connection(&fx.db.pool, iters, move |conn| {
                    Box::pin(async move {
                        sql_functions::get_task_execution_context(conn, task)
                            .await
                            .expect("get_task_execution_context")
                            .expect("the sampled task exists")
                            .total_steps as usize
                    })
                })
            }));
        });
    }
    group.finish();
}

fn bench_transitive_dependencies(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_step_transitive_dependencies");
    for i in 0..10 {
        group.bench_function(SAMPLE_LABELS.ancestors[i], |b| {
            let fx = fixture();
            let step = fx.ancestors[i].1;
            b.to_async(timed()).iter_custom(counted(|iters| {
                on_one_connection(&fx.db.pool, iters, move |conn| {
                    Box::pin(async move {
                        sql_functions::get_step_transitive_dependencies(conn, step)
                            .await
                            .expect("get_step_transitive_dependencies")
                            .len()
                    })
                })
            }));
        });
    }
    group.finish();
}

/// What a checkout per call would add to the calls above, which run on a held connection:
/// a trivial statement and a task transition, each checked out of the pool and returned on
/// every call (as the services' concurrent callers do, the API handlers and the workers'
/// result submissions) and on one connection held for the sample.
fn bench_pool_checkout(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_checkout");
    group.bench_function("select_1_pooled", |b| {
        let pool = &fixture().db.pool;
        b.to_async(timed()).iter(each(|| async move {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(pool)
                .await
                .expect("SELECT 1 through the pool")
        }));
    });
    group.bench_function("select_1_held", |b| {
        let pool = &fixture().db.pool;
        b.to_async(timed()).iter_custom(counted(|iters| {
            on_one_connection(pool, iters, |conn| {
                Box::pin(async move {
                    sqlx::query_scalar::<_, i32>("SELECT 1")
                        .fetch_one(conn)
                        .await
                        .expect("SELECT 1 on a held connection")
                })
            })
        }));
    });
    // A statement that works the server: each checkout hands out the idle connection
    // returned longest ago, so consecutive calls rotate over the pool's server processes.
    group.bench_function("transition_pooled", |b| {
        let fx = fixture();
        let flip = &fx.flips[0];
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let pool = &fx.db.pool;
            let start = Instant::now();
            for _ in 0..iters {
                flip.flip(pool).await;
            }
            let elapsed = start.elapsed();
            prune_history(flip).await;
            elapsed
        }));
    });
    group.bench_function("transition_held", |b| {
        let fx = fixture();
        let flip = &fx.flips[0];
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let elapsed =
                on_one_connection(&fx.db.pool, iters, move |conn| Box::pin(flip.flip(conn))).await;
            prune_history(flip).await;
            elapsed
        }));
    });
    group.finish();
}

/// Benchmark ids, fixed in code so that `--list` needs no database; `create_fixture` builds
/// the same labels from the data set and `check_labels` keeps the two in step.
struct Labels {
    readiness: [&'static str; 5],
    contexts: [&'static str; 5],
    flips: [&'static str; 5],
    ancestors: [&'static str; 10],
}

const SAMPLE_LABELS: Labels = Labels {
    readiness: [
        "linear_pending",
        "diamond_waiting_ready",
        "dag_retry_due",
        "tree_running",
        "tree_complete",
    ],
    contexts: [
        "linear_running",
        "diamond_blocked",
        "dag_waiting_on_sibling",
        "tree_retry_backoff",
        "diamond_complete",
    ],
    flips: [
        "linear_steps_in_process_evaluating_results",
        "diamond_steps_in_process_enqueuing_steps",
        "dag_steps_in_process_evaluating_results",
        "tree_steps_in_process_enqueuing_steps",
        "linear_b_steps_in_process_enqueuing_steps",
    ],
    ancestors: [
        "linear_step_1_depth0",
        "linear_step_2_depth1",
        "linear_step_4_depth3",
        "diamond_branch_b_depth1",
        "diamond_end_depth2",
        "dag_validate_depth2",
        "dag_finalize_depth3",
        "tree_branch_left_depth1",
        "tree_leaf_d_depth2",
        "tree_final_convergence_depth3",
    ],
};

fn check_labels(fx: &Fixture) {
    let same = |a: &[&str], b: &[(String, Uuid)]| a.iter().zip(b).all(|(x, (y, _))| *x == y);
    assert!(
        same(&SAMPLE_LABELS.readiness, &fx.readiness),
        "readiness labels drifted"
    );
    assert!(
        same(&SAMPLE_LABELS.contexts, &fx.contexts),
        "context labels drifted"
    );
    assert!(
        same(&SAMPLE_LABELS.ancestors, &fx.ancestors),
        "ancestor labels drifted"
    );
    assert!(
        SAMPLE_LABELS
            .flips
            .iter()
            .zip(&fx.flips)
            .all(|(x, f)| *x == f.label),
        "transition labels drifted"
    );
}

// ---------------------------------------------------------------------------------------------
// EXPLAIN pass
// ---------------------------------------------------------------------------------------------

/// One function call whose plan is captured.
enum Call {
    NextReady(i32),
    Readiness(Uuid),
    Context(Uuid),
    Transition(Uuid, TaskState, TaskState),
    Ancestors(Uuid),
}

impl Call {
    fn function(&self) -> &'static str {
        match self {
            Call::NextReady(_) => "get_next_ready_tasks",
            Call::Readiness(_) => "get_step_readiness_status",
            Call::Context(_) => "get_task_execution_context",
            Call::Transition(..) => "transition_task_state_atomic",
            Call::Ancestors(_) => "get_step_transitive_dependencies",
        }
    }

    /// Runs the call exactly as the benchmark does (same wrapper, same statement text).
    async fn run(&self, conn: &mut PgConnection) {
        match self {
            Call::NextReady(n) => {
                sql_functions::get_next_ready_tasks(&mut *conn, *n)
                    .await
                    .expect("get_next_ready_tasks");
            }
            Call::Readiness(t) => {
                sql_functions::get_step_readiness_status(&mut *conn, *t, None)
                    .await
                    .expect("get_step_readiness_status");
            }
            Call::Context(t) => {
                sql_functions::get_task_execution_context(&mut *conn, *t)
                    .await
                    .expect("get_task_execution_context");
            }
            Call::Transition(t, from, to) => {
                // inside a transaction that is rolled back: the data set must not move
                let mut tx = conn.begin().await.expect("begin");
                let moved = sql_functions::transition_task_state_atomic(
                    &mut *tx,
                    *t,
                    from.as_str(),
                    to.as_str(),
                    "explain",
                    &json!({}),
                )
                .await
                .expect("transition_task_state_atomic");
                assert!(moved, "explain: the flip task was not in {from}");
                tx.rollback().await.expect("rollback");
            }
            Call::Ancestors(s) => {
                sql_functions::get_step_transitive_dependencies(&mut *conn, *s)
                    .await
                    .expect("get_step_transitive_dependencies");
            }
        }
    }

    /// The plain `EXPLAIN` of the wrapper's statement, used when auto_explain cannot be loaded
    /// (a non-superuser `DATABASE_URL`): SQL functions are inlined and show their body; the
    /// plpgsql function shows only its call.
    async fn explain(&self, conn: &mut PgConnection) -> Value {
        const E: &str = "EXPLAIN (ANALYZE, BUFFERS, SUMMARY, FORMAT JSON) ";
        let mut tx = conn.begin().await.expect("begin");
        let plan = match self {
            Call::NextReady(n) => {
                let sql = format!("{E}SELECT * FROM tasker.get_next_ready_tasks($1)");
                sqlx::query_scalar(&sql).bind(*n).fetch_one(&mut *tx).await
            }
            Call::Readiness(t) => {
                let sql = format!("{E}SELECT * FROM tasker.get_step_readiness_status($1, NULL)");
                sqlx::query_scalar(&sql).bind(*t).fetch_one(&mut *tx).await
            }
            Call::Context(t) => {
                let sql = format!("{E}SELECT * FROM tasker.get_task_execution_context($1)");
                sqlx::query_scalar(&sql).bind(*t).fetch_one(&mut *tx).await
            }
            Call::Ancestors(s) => {
                let sql = format!("{E}SELECT * FROM tasker.get_step_transitive_dependencies($1)");
                sqlx::query_scalar(&sql).bind(*s).fetch_one(&mut *tx).await
            }
            Call::Transition(t, from, to) => {
                let sql = format!(
                    "{E}SELECT tasker.transition_task_state_atomic($1, $2, $3, 'explain', '{{}}')"
                );
                sqlx::query_scalar(&sql)
                    .bind(*t)
                    .bind(from.as_str())
                    .bind(to.as_str())
                    .fetch_one(&mut *tx)
                    .await
            }
        };
        // rolled back: EXPLAIN ANALYZE executes, and the transition must not stick
        tx.rollback().await.expect("rollback");
        plan.unwrap_or_else(|e| panic!("EXPLAIN of {}: {e}", self.function()))
    }
}

/// Collects PostgreSQL notices, which is where auto_explain at `log_level = notice` puts its
/// plans: sqlx turns each notice into a tracing event with target `sqlx::postgres::notice`.
#[derive(Clone, Default)]
struct NoticeCapture(Arc<Mutex<Vec<String>>>);

struct MessageField<'a>(&'a mut String);

impl tracing::field::Visit for MessageField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for NoticeCapture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::postgres::notice"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = String::new();
        event.record(&mut MessageField(&mut message));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl NoticeCapture {
    /// The auto_explain plans among the captured notices ("duration: ... plan:\n{json}").
    fn take_plans(&self) -> Vec<Value> {
        let notices = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        notices
            .iter()
            .filter_map(|n| n.split_once("plan:").map(|(_, json)| json.trim()))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .collect()
    }
}

fn explain_pass(fx: &'static Fixture) {
    let capture = NoticeCapture::default();
    let dispatch = tracing::Dispatch::new(capture.clone());
    // sqlx's connection is polled by the future that runs the query, i.e. on this thread
    // inside block_on, where the scoped dispatcher sees the notice events.
    tracing::dispatcher::with_default(&dispatch, || {
        runtime().block_on(explain_all(fx, &capture));
    });
}

async fn explain_all(fx: &Fixture, capture: &NoticeCapture) {
    // the session settings the engine's pools use (database::connect_options), so the plan
    // captured is the plan the benchmarks run
    let options = tasker_shared::database::connect_options(&fx.db.url)
        .expect("parsing the benchmark database URL");
    let mut conn = PgConnection::connect_with(&options)
        .await
        .expect("connecting for the EXPLAIN pass");
    let auto_explain = sqlx::query("LOAD 'auto_explain'").execute(&mut conn).await;
    let auto_explain = match auto_explain {
        Ok(_) => {
            for setting in [
                "SET auto_explain.log_min_duration = -1",
                "SET auto_explain.log_analyze = on",
                "SET auto_explain.log_buffers = on",
                "SET auto_explain.log_timing = on",
                "SET auto_explain.log_format = 'json'",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_level = 'notice'",
                "SET client_min_messages = 'notice'",
            ] {
                sqlx::query(setting)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{setting}: {e}"));
            }
            true
        }
        Err(e) => {
            eprintln!(
                "explain_analyze: auto_explain unavailable ({e}); falling back to EXPLAIN, \
                 which cannot show the statements inside plpgsql functions"
            );
            false
        }
    };
    let big_tables: HashMap<String, f64> = sqlx::query_as::<_, (String, f32)>(
        "SELECT c.relname::text, c.reltuples FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'tasker' AND c.relkind = 'r' AND c.reltuples >= 1000",
    )
    .fetch_all(&mut conn)
    .await
    .expect("reading table sizes")
    .into_iter()
    .map(|(name, rows)| (name, f64::from(rows)))
    .collect();

    let flip = &fx.flips[0];
    let (from, to) = if flip.at_b.load(Ordering::Relaxed) {
        (flip.b, flip.a)
    } else {
        (flip.a, flip.b)
    };
    let calls = vec![
        ("batch_10".to_string(), Call::NextReady(10)),
        ("batch_100".to_string(), Call::NextReady(100)),
        (
            fx.readiness[1].0.clone(),
            Call::Readiness(fx.readiness[1].1),
        ),
        (fx.contexts[2].0.clone(), Call::Context(fx.contexts[2].1)),
        (flip.label.clone(), Call::Transition(flip.task, from, to)),
        (
            fx.ancestors[9].0.clone(),
            Call::Ancestors(fx.ancestors[9].1),
        ),
    ];
    let out_dir = std::env::var_os("TASKER_EXPLAIN_OUT").map(PathBuf::from);
    let mut by_function: HashMap<&str, Vec<Value>> = HashMap::new();
    for (label, call) in &calls {
        let plans = if auto_explain {
            // past the five custom plans, so a cached generic plan shows if PostgreSQL picks one
            for _ in 0..6 {
                call.run(&mut conn).await;
            }
            capture.take_plans();
            sqlx::query("SET auto_explain.log_min_duration = 0")
                .execute(&mut conn)
                .await
                .expect("enable auto_explain");
            call.run(&mut conn).await;
            sqlx::query("SET auto_explain.log_min_duration = -1")
                .execute(&mut conn)
                .await
                .expect("disable auto_explain");
            capture.take_plans()
        } else {
            vec![call.explain(&mut conn).await]
        };
        println!("explain_analyze/{}/{label}:", call.function());
        for plan in &plans {
            report_plan(plan, &big_tables);
        }
        // planning is invisible to auto_explain; a plain EXPLAIN's summary shows it
        let summary = call.explain(&mut conn).await;
        let planning = summary.pointer("/0/Planning Time").and_then(Value::as_f64);
        let execution = summary.pointer("/0/Execution Time").and_then(Value::as_f64);
        // the custom plan is what the first five calls on every connection run
        let mut custom_seq_scans = Vec::new();
        if let Some(root) = summary.pointer("/0/Plan") {
            seq_scans(root, &big_tables, &mut custom_seq_scans);
        }
        for scan in &custom_seq_scans {
            eprintln!("  WARNING: the custom plan (a fresh connection's first five calls) {scan}");
        }
        let cache = plan_cache_timings(&mut conn, call).await;
        println!(
            "  EXPLAIN summary: planning {} ms, execution {} ms (custom plan, with instrumentation)",
            planning.map_or("?".into(), |p| format!("{p:.3}")),
            execution.map_or("?".into(), |e| format!("{e:.3}")),
        );
        println!(
            "  per call over one connection: {}",
            cache
                .iter()
                .map(|(mode, us)| format!("{mode} {us:.0} us"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        by_function.entry(call.function()).or_default().push(json!({
            "sample": label,
            "method": if auto_explain { "auto_explain" } else { "explain" },
            "plans": plans,
            "explain_summary": summary,
            "planning_ms": planning,
            "execution_ms": execution,
            "custom_plan_seq_scans": custom_seq_scans,
            "per_call_us_by_plan_cache_mode": cache.iter().map(|(m, us)| (m.to_string(), json!(us))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    let _ = conn.close().await;

    if let Some(dir) = out_dir {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("explain_analyze: cannot create {}: {e}", dir.display());
            return;
        }
        for (function, samples) in by_function {
            let path = dir.join(format!("{function}.json"));
            let doc =
                json!({"function": function, "samples": samples, "data_set": fx.data.summary()});
            match std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default()) {
                Ok(()) => println!("explain_analyze: wrote {}", path.display()),
                Err(e) => eprintln!("explain_analyze: cannot write {}: {e}", path.display()),
            }
        }
    }
}

/// Mean wall time per call on one connection under each `plan_cache_mode`: whether
/// PostgreSQL's default (`auto`) would reuse the prepared statement's generic plan (close to
/// `force_generic_plan`, what the engine's connections set) or plan every call again (close to
/// `force_custom_plan`), and what planning costs.
async fn plan_cache_timings(conn: &mut PgConnection, call: &Call) -> Vec<(&'static str, f64)> {
    const CALLS: u32 = 100;
    let mut timings = Vec::new();
    for mode in ["auto", "force_custom_plan", "force_generic_plan"] {
        sqlx::query(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut *conn)
            .await
            .expect("set plan_cache_mode");
        // past the five custom plans the plan cache always tries first
        for _ in 0..6 {
            call.run(&mut *conn).await;
        }
        let start = Instant::now();
        for _ in 0..CALLS {
            call.run(&mut *conn).await;
        }
        timings.push((mode, start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS)));
    }
    sqlx::query("RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .expect("reset plan_cache_mode");
    timings
}

/// Sequential scans over large tables anywhere in a plan, described.
fn seq_scans(node: &Value, big_tables: &HashMap<String, f64>, out: &mut Vec<String>) {
    let relation = node
        .get("Relation Name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        if let Some(rows) = big_tables.get(relation) {
            let loops = node
                .get("Actual Loops")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            out.push(format!(
                "scans all of {relation} ({rows:.0} rows) x {loops} loops"
            ));
        }
    }
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        seq_scans(child, big_tables, out);
    }
}

/// Prints a plan as an indented tree (node, relation, index, rows x loops, time, buffers) and
/// warns about sequential scans over large tables.
fn report_plan(plan: &Value, big_tables: &HashMap<String, f64>) {
    // EXPLAIN returns [ {...} ]; auto_explain returns {...}
    let plan = plan.get(0).unwrap_or(plan);
    let query = plan
        .get("Query Text")
        .and_then(Value::as_str)
        .map(|q| q.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let total = plan
        .get("Execution Time")
        .and_then(Value::as_f64)
        .or_else(|| {
            plan.pointer("/Plan/Actual Total Time")
                .and_then(Value::as_f64)
        })
        .unwrap_or(f64::NAN);
    let shown: String = query.chars().take(110).collect();
    println!("  [{total:.3} ms] {shown}");
    if let Some(root) = plan.get("Plan") {
        walk(root, 2, big_tables);
    }
}

fn walk(node: &Value, indent: usize, big_tables: &HashMap<String, f64>) {
    let s = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or("");
    let f = |k: &str| node.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut line = format!("{:indent$}-> {}", "", s("Node Type"));
    if !s("Relation Name").is_empty() {
        line.push_str(&format!(" on {}", s("Relation Name")));
    }
    if !s("Index Name").is_empty() {
        line.push_str(&format!(" using {}", s("Index Name")));
    }
    if !s("Function Name").is_empty() {
        line.push_str(&format!(" fn {}", s("Function Name")));
    }
    line.push_str(&format!(
        "  rows={} loops={} time={:.3}ms hit={}",
        f("Actual Rows"),
        f("Actual Loops"),
        f("Actual Total Time") * f("Actual Loops").max(1.0),
        f("Shared Hit Blocks")
    ));
    if f("Rows Removed by Filter") > 0.0 {
        line.push_str(&format!(" removed={}", f("Rows Removed by Filter")));
    }
    println!("{line}");
    if s("Node Type") == "Seq Scan" {
        if let Some(rows) = big_tables.get(s("Relation Name")) {
            eprintln!(
                "  WARNING: sequential scan over {} ({rows:.0} rows) x {} loops",
                s("Relation Name"),
                f("Actual Loops")
            );
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            walk(child, indent + 2, big_tables);
        }
    }
}

fn main() {
    let args = BenchArgs::from_env();
    // Each call is sub-millisecond: two seconds give thousands of iterations per sample set,
    // and 29 benchmarks stay near two minutes. The noise threshold reflects a shared machine.
    bench_main(
        criterion_config(Duration::from_secs(2), 50),
        &[
            bench_next_ready_tasks,
            bench_step_readiness,
            bench_transition,
            bench_execution_context,
            bench_transitive_dependencies,
            bench_pool_checkout,
        ],
        || {
            if args.runs_extra_pass("explain_analyze") {
                explain_pass(fixture());
            }
        },
    );
}

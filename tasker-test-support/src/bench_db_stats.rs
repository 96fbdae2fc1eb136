//! What one iteration of a benchmark costs PostgreSQL, counted exactly: statements (issued by
//! the program, and run inside SQL functions), rows, shared buffers, WAL, writing
//! transactions, and the CPU time of the program and of the server.
//!
//! The counting pass of `cargo xtask profile-baseline` runs a bench executable with
//! `--profile-time` and [`STATS_ENV`] naming a file. Criterion opens and closes a window per
//! benchmark through the profiler hook [`DbStats`]; inside it, [`crate::executor::timed`]
//! reads the counters before and after every sample (outside the routine's clock), and the
//! routines say how many iterations they ran through [`counted`] or [`each`]. What a bench
//! closure does before its samples (starting a deployment, seeding data) is not counted; what
//! a routine does untimed inside a sample (preparing or checking its tasks) is. One JSON line
//! per benchmark is appended to the file. Without the variable nothing is read or written.
//!
//! The counters are `pg_stat_statements` (the cluster loads it with tracking off; the
//! counting process switches it on for the databases it creates, while its own reading
//! connection keeps it off), the next transaction id (only transactions
//! that write get one, and only those flush WAL at commit on a durable server), and
//! the CPU time of the program and of the server's processes ([`crate::bench_cpu`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};

use crate::bench_cpu::{self, CpuReading};
use crate::executor::runtime;

/// The environment variable naming the file the counts are appended to.
pub const STATS_ENV: &str = "TASKER_BENCH_DB_STATS";

static COUNTING: AtomicBool = AtomicBool::new(false);
static ITERATIONS: AtomicU64 = AtomicU64::new(0);
/// The databases this process created (name, URL); the first URL is used to read counters.
static DATABASES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static WINDOW: Mutex<Option<Window>> = Mutex::new(None);

/// Wraps an `iter_custom` routine so that the iterations it runs are counted:
/// `b.to_async(timed()).iter_custom(counted(|iters| async move { … }))`.
pub fn counted<R, F>(mut routine: R) -> impl FnMut(u64) -> F
where
    R: FnMut(u64) -> F,
{
    move |iters| {
        note_iterations(iters);
        routine(iters)
    }
}

/// Wraps an `iter` routine (one call per iteration) the same way:
/// `b.to_async(timed()).iter(each(|| async move { … }))`. Outside the counting pass this is
/// one relaxed load per iteration.
pub fn each<R, F>(mut routine: R) -> impl FnMut() -> F
where
    R: FnMut() -> F,
{
    move || {
        note_iterations(1);
        routine()
    }
}

fn note_iterations(n: u64) {
    if COUNTING.load(Ordering::Relaxed) {
        ITERATIONS.fetch_add(n, Ordering::Relaxed);
    }
}

/// In the counting pass, switches statement tracking on for every session that connects to
/// database `name` from now on (the cluster loads `pg_stat_statements` with tracking off, so
/// that timings elsewhere do not pay for it). Returns whether it did; a server that refuses
/// is reported by the counting window, which then finds nothing to read.
pub(crate) async fn track_statements(pool: &sqlx::PgPool, name: &str) -> bool {
    if output_file().is_none() {
        return false;
    }
    let statement = format!("ALTER DATABASE \"{name}\" SET pg_stat_statements.track = 'all'");
    match sqlx::query(&statement).execute(pool).await {
        Ok(_) => true,
        Err(e) => {
            eprintln!("warning: `{statement}` failed ({e}); {UNAVAILABLE_HINT}");
            false
        }
    }
}

/// Called by [`crate::bench_database::BenchDatabase::create`]: the counters are read for the
/// databases this process works in.
pub(crate) fn register_database(name: &str, url: &str) {
    lock(&DATABASES).push((name.to_owned(), url.to_owned()));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn output_file() -> Option<PathBuf> {
    std::env::var_os(STATS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The profiler hook the benches' criterion configuration installs
/// ([`crate::criterion_setup::criterion_config`]).
#[derive(Default)]
pub struct DbStats;

impl criterion::profiler::Profiler for DbStats {
    fn start_profiling(&mut self, benchmark_id: &str, _dir: &Path) {
        if output_file().is_none() {
            return;
        }
        let _ = benchmark_id; // named again when the window closes
        *lock(&WINDOW) = Some(Window::new());
    }

    fn stop_profiling(&mut self, benchmark_id: &str, _dir: &Path) {
        let Some(path) = output_file() else { return };
        let Some(window) = lock(&WINDOW).take() else {
            return;
        };
        let record = runtime().block_on(window.finish(benchmark_id));
        if let Err(e) = append(&path, &record) {
            eprintln!(
                "warning: could not write database counts to {}: {e}",
                path.display()
            );
        }
    }
}

fn append(path: &Path, record: &BenchmarkCounts) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Runs one sample (`sample` calls `block_on` on the runtime), counting around it when a
/// window is open. The counters are read outside the sample, so its clock does not see them.
pub(crate) fn around_sample<T>(sample: impl FnOnce() -> T) -> T {
    let open = lock(&WINDOW).is_some();
    if !open {
        return if bench_cpu::splitting() {
            bench_cpu::split_sample(first_url().as_deref(), sample)
        } else {
            sample()
        };
    }
    let postmaster = bench_cpu::postmaster(first_url().as_deref());
    let before = runtime().block_on(Reading::take());
    ITERATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let cpu_before = CpuReading::now(postmaster);
    let started = Instant::now();
    let output = sample();
    let wall = started.elapsed();
    let cpu_after = CpuReading::now(postmaster);
    COUNTING.store(false, Ordering::Relaxed);
    let iterations = ITERATIONS.load(Ordering::Relaxed);
    let after = runtime().block_on(Reading::take());
    if let Some(window) = lock(&WINDOW).as_mut() {
        window.add(iterations, wall, &cpu_before, &cpu_after, before, after);
    }
    output
}

/// One benchmark's counts, as appended to the file: totals over all samples of its window.
#[derive(Debug, Serialize)]
pub struct BenchmarkCounts {
    pub benchmark: String,
    /// Why nothing was counted (no `pg_stat_statements`, no database), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub samples: u64,
    pub iterations: u64,
    pub wall_ns: u64,
    pub program_cpu_ns: u64,
    /// `None` when the server's processes cannot be read (another machine).
    pub server_cpu_ns: Option<u64>,
    pub writing_transactions: u64,
    /// `pg_stat_statements` evicted entries during the window: the counts are a lower bound.
    pub evicted: bool,
    pub statements: Vec<StatementCounts>,
}

/// One normalised statement's totals over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatementCounts {
    pub query: String,
    /// Issued by a client (true) or run inside a function (false).
    pub toplevel: bool,
    pub calls: u64,
    pub rows: u64,
    pub shared_blks_hit: u64,
    pub shared_blks_read: u64,
    pub exec_ns: u64,
    pub wal_bytes: u64,
}

struct Window {
    samples: u64,
    iterations: u64,
    wall: Duration,
    program_cpu: Duration,
    server_cpu: Option<Duration>,
    writing_transactions: u64,
    evicted: bool,
    /// By (queryid, toplevel).
    statements: HashMap<(i64, bool), StatementCounts>,
    error: Option<String>,
}

impl Window {
    fn new() -> Window {
        Window {
            samples: 0,
            iterations: 0,
            wall: Duration::ZERO,
            program_cpu: Duration::ZERO,
            server_cpu: Some(Duration::ZERO),
            writing_transactions: 0,
            evicted: false,
            statements: HashMap::new(),
            error: None,
        }
    }

    fn add(
        &mut self,
        iterations: u64,
        wall: Duration,
        cpu_before: &CpuReading,
        cpu_after: &CpuReading,
        before: Result<Reading, String>,
        after: Result<Reading, String>,
    ) {
        let (before, after) = match (before, after) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        self.samples += 1;
        self.iterations += iterations;
        self.wall += wall;
        self.program_cpu += cpu_after.program_since(cpu_before);
        self.server_cpu = match (self.server_cpu, cpu_after.server_since(cpu_before)) {
            (Some(total), Some(d)) => Some(total + d),
            _ => None,
        };
        self.writing_transactions += after.next_xid.saturating_sub(before.next_xid);
        self.evicted |= after.evictions != before.evictions;
        for (key, end) in &after.statements {
            let start = before.statements.get(key);
            // An entry evicted and created again starts from zero: no negative counts.
            let delta = |f: fn(&Cumulative) -> u64| f(end).saturating_sub(start.map_or(0, f));
            let calls = delta(|c| c.calls);
            if calls == 0 {
                continue;
            }
            let sum = self.statements.entry(*key).or_default();
            sum.toplevel = key.1;
            sum.calls += calls;
            sum.rows += delta(|c| c.rows);
            sum.shared_blks_hit += delta(|c| c.hit);
            sum.shared_blks_read += delta(|c| c.read);
            sum.exec_ns += ((end.exec_ms - start.map_or(0.0, |s| s.exec_ms)).max(0.0) * 1e6) as u64;
            sum.wal_bytes += delta(|c| c.wal_bytes);
        }
    }

    async fn finish(mut self, benchmark: &str) -> BenchmarkCounts {
        if self.error.is_none() && !self.statements.is_empty() {
            match query_texts(self.statements.keys().map(|k| k.0).collect()).await {
                Ok(texts) => {
                    for ((id, _), s) in self.statements.iter_mut() {
                        s.query = texts.get(id).cloned().unwrap_or_default();
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
        if self.error.is_none() && self.samples == 0 {
            self.error = Some(
                "no sample ran on `tasker_test_support::timed`, so nothing was counted".to_owned(),
            );
        }
        let mut statements: Vec<StatementCounts> = self.statements.into_values().collect();
        statements.sort_by(|a, b| b.exec_ns.cmp(&a.exec_ns).then(a.query.cmp(&b.query)));
        BenchmarkCounts {
            benchmark: benchmark.to_owned(),
            unavailable: self.error,
            samples: self.samples,
            iterations: self.iterations,
            wall_ns: self.wall.as_nanos() as u64,
            program_cpu_ns: self.program_cpu.as_nanos() as u64,
            server_cpu_ns: self.server_cpu.map(|d| d.as_nanos() as u64),
            writing_transactions: self.writing_transactions,
            evicted: self.evicted,
            statements,
        }
    }
}

/// A statement's cumulative counters at one moment.
#[derive(Default)]
struct Cumulative {
    calls: u64,
    rows: u64,
    hit: u64,
    read: u64,
    exec_ms: f64,
    wal_bytes: u64,
}

/// The server's counters at one moment.
struct Reading {
    statements: HashMap<(i64, bool), Cumulative>,
    next_xid: u64,
    evictions: i64,
}

/// This process's connection for reading counters, with tracking off for its own statements.
static READER: tokio::sync::Mutex<Option<PgConnection>> = tokio::sync::Mutex::const_new(None);

const UNAVAILABLE_HINT: &str = "the server must load pg_stat_statements \
     (shared_preload_libraries; the throwaway cluster does) and the user must be a superuser";

async fn reader() -> Result<tokio::sync::MutexGuard<'static, Option<PgConnection>>, String> {
    let mut guard = READER.lock().await;
    if guard.is_none() {
        let url =
            first_url().ok_or("the benchmark created no database, so there is nothing to count")?;
        let mut conn = PgConnection::connect(&url)
            .await
            .map_err(|e| format!("connecting to read statement statistics: {e}"))?;
        for statement in [
            "SET pg_stat_statements.track = 'none'",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("`{statement}` failed ({e}); {UNAVAILABLE_HINT}"))?;
        }
        *guard = Some(conn);
    }
    Ok(guard)
}

/// The URL of the first database this process created, through which counters are read.
fn first_url() -> Option<String> {
    lock(&DATABASES).first().map(|(_, url)| url.clone())
}

fn database_names() -> Vec<String> {
    lock(&DATABASES).iter().map(|(n, _)| n.clone()).collect()
}

impl Reading {
    async fn take() -> Result<Reading, String> {
        let mut guard = reader().await?;
        let conn = guard.as_mut().expect("reader() connects");
        let rows = sqlx::query(
            "SELECT s.queryid, s.toplevel, s.calls, s.rows, s.shared_blks_hit, s.shared_blks_read,
                    s.total_exec_time, s.wal_bytes::bigint AS wal_bytes
               FROM pg_stat_statements(false) s
               JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = ANY($1)",
        )
        .bind(database_names())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("reading pg_stat_statements failed ({e}); {UNAVAILABLE_HINT}"))?;
        // A statement has a row per database: the process's databases are summed (a bench
        // with two deployments runs the same statements in both).
        let mut statements: HashMap<(i64, bool), Cumulative> = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: (i64, bool) = (row.get("queryid"), row.get("toplevel"));
            let sum = statements.entry(key).or_default();
            sum.calls += row.get::<i64, _>("calls") as u64;
            sum.rows += row.get::<i64, _>("rows") as u64;
            sum.hit += row.get::<i64, _>("shared_blks_hit") as u64;
            sum.read += row.get::<i64, _>("shared_blks_read") as u64;
            sum.exec_ms += row.get::<f64, _>("total_exec_time");
            sum.wal_bytes += row.get::<i64, _>("wal_bytes") as u64;
        }
        let state = sqlx::query(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
                    (SELECT dealloc FROM pg_stat_statements_info) AS evictions",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("reading the server's transaction counter failed: {e}"))?;
        Ok(Reading {
            statements,
            next_xid: state.get::<i64, _>("next_xid") as u64,
            evictions: state.get("evictions"),
        })
    }
}

async fn query_texts(ids: Vec<i64>) -> Result<HashMap<i64, String>, String> {
    let mut guard = reader().await?;
    let conn = guard.as_mut().expect("reader() connects");
    let rows = sqlx::query(
        "SELECT DISTINCT ON (s.queryid) s.queryid, s.query
           FROM pg_stat_statements(true) s
           JOIN pg_database d ON d.oid = s.dbid
          WHERE d.datname = ANY($1) AND s.queryid = ANY($2)",
    )
    .bind(database_names())
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("reading statement texts failed: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get("queryid"), one_line(r.get::<String, _>("query"))))
        .collect())
}

/// Statement text on one line with runs of whitespace collapsed, as reports show it.
fn one_line(text: String) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

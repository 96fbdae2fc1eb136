//! The counting pass: each bench executable run once more with `--profile-time` and
//! `TASKER_BENCH_DB_STATS` naming a file, so that the benches' criterion hook
//! (`tasker_test_support::bench_db_stats`) appends what every benchmark cost PostgreSQL, and
//! read back per iteration: statements, writing transactions, rows, buffers, WAL, and the wall
//! time split into the program's CPU, the server's CPU and waiting. Kept in `database.json`.
//!
//! It is a pass of its own so that neither the timings nor the profiles carry the cost of
//! reading the counters around every sample.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use super::RunEnv;
use crate::plan::Target;

/// The run directory's file of database counts.
pub const DATABASE_FILE: &str = "database.json";
/// The variable the benches read (`tasker_test_support::bench_db_stats::STATS_ENV`).
const STATS_ENV: &str = "TASKER_BENCH_DB_STATS";
/// Seconds each benchmark is counted for: criterion's one-second warm-up, then one batch.
pub const COUNT_SECS: f64 = 2.0;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatabaseFile {
    pub schema_version: u32,
    pub targets: Vec<TargetCounts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCounts {
    pub name: String,
    pub benchmarks: Vec<BenchmarkCost>,
}

/// What one iteration of a benchmark cost, from every iteration of its counting window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchmarkCost {
    pub benchmark: String,
    /// Why nothing was counted, if so (the other fields are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub iterations: u64,
    /// Statistics entries were evicted during the window: the counts are a lower bound.
    pub evicted: bool,
    pub per_iteration: PerIteration,
    /// Every statement it ran, per iteration, costliest (total execution time) first.
    pub statements: Vec<StatementCost>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerIteration {
    /// Statements the program sent (round trips, `BEGIN`/`COMMIT` included).
    pub statements: f64,
    /// Statements run inside SQL functions and triggers (foreign-key checks included).
    pub nested_statements: f64,
    /// Transactions that wrote (each flushes WAL at commit on a durable server).
    pub writing_transactions: f64,
    pub rows: f64,
    pub shared_blocks_hit: f64,
    pub shared_blocks_read: f64,
    pub wal_bytes: f64,
    /// Execution time of the program's statements inside the server, µs.
    pub server_exec_us: f64,
    /// Wall time of the counted samples, µs (what the routine does untimed included).
    pub wall_us: f64,
    pub program_cpu_us: f64,
    /// `None` when the server's processes are not on this machine.
    pub server_cpu_us: Option<f64>,
    /// Wall time neither the program nor the server was on a CPU (never below zero: on
    /// several cores the two overlap).
    pub waiting_us: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementCost {
    /// Normalised text (`$n` for constants), on one line.
    pub query: String,
    /// Sent by the program (true) or run inside a function or trigger.
    pub toplevel: bool,
    pub calls: f64,
    pub rows: f64,
    pub mean_exec_us: f64,
    pub total_exec_us: f64,
}

/// One line of the benches' file (`tasker_test_support::bench_db_stats::BenchmarkCounts`).
#[derive(Debug, Deserialize)]
struct RawCounts {
    benchmark: String,
    #[serde(default)]
    unavailable: Option<String>,
    iterations: u64,
    wall_ns: u64,
    program_cpu_ns: u64,
    server_cpu_ns: Option<u64>,
    writing_transactions: u64,
    evicted: bool,
    statements: Vec<RawStatement>,
}

#[derive(Debug, Deserialize)]
struct RawStatement {
    query: String,
    toplevel: bool,
    calls: u64,
    rows: u64,
    shared_blks_hit: u64,
    shared_blks_read: u64,
    exec_ns: u64,
    wal_bytes: u64,
}

pub struct CountingPass<'a> {
    pub sh: &'a Shell,
    pub env: &'a RunEnv,
    pub exe: &'a Path,
    pub target: &'a Target,
    /// The side's directory: the raw counts and the log go under `logs/<target>/`.
    pub out: &'a Path,
    /// Criterion's home for this pass (its profile mode writes nothing worth keeping).
    pub criterion_home: &'a Path,
}

impl CountingPass<'_> {
    pub fn run(&self) -> Result<TargetCounts> {
        let t = self.target;
        let logs = self.out.join("logs").join(&t.name);
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let raw = logs.join("database-counts.jsonl");
        let _ = std::fs::remove_file(&raw);
        let exe = self.exe;
        let secs = COUNT_SECS.to_string();
        let filter = t.filter.as_slice();
        let command = cmd!(self.sh, "{exe} --bench --profile-time {secs} {filter...}");
        let text = command.to_string();
        let started = Instant::now();
        let output = self
            .env
            .apply(command)
            .env(STATS_ENV, &raw)
            .env("CRITERION_HOME", self.criterion_home)
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running `{text}`"))?;
        self.env.log(&logs.join("count.log"), &text, &output)?;
        if !output.status.success() {
            bail!(
                "counting the database statements of `{}` failed ({}); see {} ({:.0} s)",
                t.name,
                output.status,
                logs.join("count.log").display(),
                started.elapsed().as_secs_f64()
            );
        }
        let lines = std::fs::read_to_string(&raw).unwrap_or_default();
        let benchmarks = parse(&lines).with_context(|| format!("reading {}", raw.display()))?;
        Ok(TargetCounts {
            name: t.name.clone(),
            benchmarks,
        })
    }
}

/// The benches' JSON lines, per iteration.
fn parse(lines: &str) -> Result<Vec<BenchmarkCost>> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let raw: RawCounts = serde_json::from_str(line)
                .with_context(|| format!("line {} is not a benchmark's counts", n + 1))?;
            Ok(per_iteration(raw))
        })
        .collect()
}

fn per_iteration(raw: RawCounts) -> BenchmarkCost {
    let n = raw.iterations.max(1) as f64;
    let sum = |f: &dyn Fn(&RawStatement) -> u64, toplevel: Option<bool>| {
        raw.statements
            .iter()
            .filter(|s| toplevel.is_none_or(|t| s.toplevel == t))
            .map(|s| f(s) as f64)
            .sum::<f64>()
            / n
    };
    let us = |ns: u64| ns as f64 / n / 1e3;
    let wall_us = us(raw.wall_ns);
    let program_cpu_us = us(raw.program_cpu_ns);
    let server_cpu_us = raw.server_cpu_ns.map(us);
    let per_iteration = PerIteration {
        statements: sum(&|s| s.calls, Some(true)),
        nested_statements: sum(&|s| s.calls, Some(false)),
        writing_transactions: raw.writing_transactions as f64 / n,
        rows: sum(&|s| s.rows, Some(true)),
        shared_blocks_hit: sum(&|s| s.shared_blks_hit, Some(true)),
        shared_blocks_read: sum(&|s| s.shared_blks_read, Some(true)),
        wal_bytes: sum(&|s| s.wal_bytes, Some(true)),
        server_exec_us: sum(&|s| s.exec_ns, Some(true)) / 1e3,
        wall_us,
        program_cpu_us,
        server_cpu_us,
        waiting_us: server_cpu_us.map(|s| (wall_us - program_cpu_us - s).max(0.0)),
    };
    let mut statements: Vec<StatementCost> = raw
        .statements
        .iter()
        .map(|s| StatementCost {
            query: s.query.clone(),
            toplevel: s.toplevel,
            calls: s.calls as f64 / n,
            rows: s.rows as f64 / n,
            mean_exec_us: s.exec_ns as f64 / s.calls.max(1) as f64 / 1e3,
            total_exec_us: s.exec_ns as f64 / n / 1e3,
        })
        .collect();
    statements.sort_by(|a, b| b.total_exec_us.total_cmp(&a.total_exec_us));
    BenchmarkCost {
        benchmark: raw.benchmark,
        unavailable: raw.unavailable,
        iterations: raw.iterations,
        evicted: raw.evicted,
        per_iteration,
        statements,
    }
}

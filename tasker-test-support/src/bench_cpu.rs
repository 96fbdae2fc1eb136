//! CPU time around a benchmark's samples: the benchmark process's own (all its threads) and the
//! local PostgreSQL server's (the postmaster and every process it started), so that a sample's
//! wall time splits into the program's CPU, the server's CPU and waiting.
//!
//! Two readers: the counting pass ([`crate::bench_db_stats`]) adds the split to each
//! benchmark's counts, and the timing runs of `cargo xtask` set [`SPLIT_ENV`], under which
//! every sample's split is written to stderr as one [`SAMPLE_MARKER`] line. Criterion writes
//! its phases to the same stream from the same thread, so the xtask knows which benchmark and
//! which phase each line belongs to without the benchmark naming itself.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, Row};

use crate::executor::runtime;

/// Set (to anything) by the timing runs: write every sample's CPU split to stderr.
pub const SPLIT_ENV: &str = "TASKER_BENCH_CPU_SPLIT";
/// The first word of a sample's line: `tasker-bench-sample wall_ns=… program_cpu_ns=…
/// server_cpu_ns=…` (`-` where the server is not on this machine).
pub const SAMPLE_MARKER: &str = "tasker-bench-sample";

/// CPU time used so far by this process and by each process of the local server.
pub(crate) struct CpuReading {
    program: Duration,
    /// Per server process; `None` when the server's processes cannot be read here.
    server: Option<HashMap<u32, Duration>>,
}

impl CpuReading {
    pub(crate) fn now(postmaster: Option<u32>) -> CpuReading {
        CpuReading {
            program: program_cpu(),
            server: postmaster.and_then(server_cpu),
        }
    }

    pub(crate) fn program_since(&self, earlier: &CpuReading) -> Duration {
        self.program.saturating_sub(earlier.program)
    }

    /// The server's CPU since `earlier`, over the processes alive at both moments (a backend
    /// that exits in between loses what it used since the first; benchmarks hold their
    /// connections, so that is rare and small).
    pub(crate) fn server_since(&self, earlier: &CpuReading) -> Option<Duration> {
        let (before, after) = (earlier.server.as_ref()?, self.server.as_ref()?);
        Some(
            before
                .iter()
                .filter_map(|(pid, t)| after.get(pid).map(|a| a.saturating_sub(*t)))
                .sum(),
        )
    }
}

/// The postmaster of the server at `url`, when it runs on this machine: the parent of the
/// backend serving a fresh connection. Found once per process; `None` for a remote server.
/// A connection that fails is tried again at the next call rather than remembered, so one
/// refused connection (the previous run's backends still exiting) does not cost a whole
/// run its server CPU.
pub(crate) fn postmaster(url: Option<&str>) -> Option<u32> {
    static POSTMASTER: OnceLock<Option<u32>> = OnceLock::new();
    if let Some(known) = POSTMASTER.get() {
        return *known;
    }
    let url = url?;
    let backend = runtime().block_on(async {
        let mut conn = PgConnection::connect(url).await.ok()?;
        let pid: i32 = sqlx::query("SELECT pg_backend_pid() AS pid")
            .fetch_one(&mut conn)
            .await
            .ok()?
            .get("pid");
        let _ = conn.close().await;
        Some(pid as u32)
    })?;
    *POSTMASTER.get_or_init(|| parent_postgres(backend))
}

/// Runs one sample under [`SPLIT_ENV`] and writes its split to stderr, outside the sample's
/// clock.
pub(crate) fn split_sample<T>(url: Option<&str>, sample: impl FnOnce() -> T) -> T {
    let postmaster = postmaster(url);
    let before = CpuReading::now(postmaster);
    let started = Instant::now();
    let output = sample();
    let wall = started.elapsed();
    let after = CpuReading::now(postmaster);
    let server = after
        .server_since(&before)
        .map_or("-".to_owned(), |d| d.as_nanos().to_string());
    eprintln!(
        "{SAMPLE_MARKER} wall_ns={} program_cpu_ns={} server_cpu_ns={server}",
        wall.as_nanos(),
        after.program_since(&before).as_nanos(),
    );
    output
}

/// Whether this process writes the split of every sample (read once).
pub(crate) fn splitting() -> bool {
    static SPLITTING: OnceLock<bool> = OnceLock::new();
    *SPLITTING.get_or_init(|| std::env::var_os(SPLIT_ENV).is_some_and(|v| !v.is_empty()))
}

fn program_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000)
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

/// The postmaster and its children (`/proc/<pid>/task/<pid>/children`), each with its CPU
/// time so far.
fn server_cpu(postmaster: u32) -> Option<HashMap<u32, Duration>> {
    let children =
        std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).ok()?;
    let pids = std::iter::once(postmaster).chain(
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok()),
    );
    Some(pids.filter_map(|pid| Some((pid, on_cpu(pid)?))).collect())
}

/// Time a process has spent on a CPU (`/proc/<pid>/schedstat`, nanoseconds).
fn on_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The parent of `pid` when both are PostgreSQL processes of this machine.
fn parent_postgres(pid: u32) -> Option<u32> {
    let is_postgres = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("postgres"))
    };
    if !is_postgres(pid) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: the command may hold spaces, so read after its `)`.
    let ppid: u32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    is_postgres(ppid).then_some(ppid)
}

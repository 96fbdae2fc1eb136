//! The files a run leaves in its output directory, as stable JSON with a schema version:
//! `manifest.json` (what ran, where, how it went), `timings.json` (criterion estimates per
//! run and their spread) and `analysis.json` (hot paths). A comparison reads only these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::schedstat::RunUsage;
use crate::analysis::Analysis;
use crate::criterion::Estimates;
use crate::host::{Git, Host, Toolchain};
use crate::interference::Report;
use crate::plan::{Category, Kind, Thresholds};
use crate::profiler_choice::ProfilerChoice;

/// Bumped whenever a field changes meaning or disappears; additions keep the version.
pub const SCHEMA_VERSION: u32 = 1;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const TIMINGS_FILE: &str = "timings.json";
pub const ANALYSIS_FILE: &str = "analysis.json";
pub const SUMMARY_FILE: &str = "summary.md";
pub const PLAN_FILE: &str = "plan.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// The output directory's role, e.g. `pre-refactor`.
    pub label: String,
    pub started_at: String,
    pub finished_at: String,
    pub command_line: Vec<String>,
    pub options: OptionsRecord,
    pub git: Git,
    pub toolchain: Toolchain,
    pub host: Host,
    pub interference: Report,
    /// Tool name to `--version` output.
    pub tools: BTreeMap<String, String>,
    pub database: Option<DatabaseRecord>,
    pub build: BuildRecord,
    /// Path of the plan used; a copy is in `plan.toml`.
    pub plan_source: String,
    pub targets: Vec<TargetRecord>,
    pub total_secs: f64,
    /// Set when this run is one side of a paired measurement (`profile-post --against`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<Pairing>,
}

/// How a run was paired with another measured in the same session: run `k` of one side and
/// run `k` of the other make pair `k`, measured one right after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    /// The same for both sides of one session, and for no other run.
    pub session: String,
    pub pairs: u32,
    pub side: PairSide,
    /// The other side's directory name (a sibling of this one).
    pub partner: String,
    /// The revision the working tree was measured against.
    pub revision: crate::revision::Revision,
    /// Which side ran first in each pair (`against,post` or `post,against`).
    pub order: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairSide {
    /// The revision given to `--against`: the baseline of the comparison.
    Against,
    /// The working tree.
    Post,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptionsRecord {
    pub quick: bool,
    pub runs: u32,
    pub profiler: ProfilerChoice,
    pub sample_frequency_hz: u32,
    pub profile_time_override_secs: Option<f64>,
    pub only: Vec<String>,
    pub clean: bool,
    pub allow_interference: bool,
    /// Extra arguments given to every criterion timing run.
    pub criterion_args: Vec<String>,
    /// What idle CPUs did during the measurements (absent from older manifests).
    #[serde(default)]
    pub cpu_idle: crate::cpu_idle::IdleRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRecord {
    /// `DATABASE_URL` from the environment, or `tasker db` started by the run.
    pub source: String,
    /// The URL with any password removed.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    pub cargo_profile: String,
    pub rustflags: String,
    pub clean_command: Option<String>,
    pub clean_secs: f64,
    pub build_secs: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetStatus {
    Ok,
    /// Timing runs disagree by more than the target's noise threshold.
    Noisy,
    Failed,
    /// Not measured (a placeholder bench).
    Skipped,
}

impl TargetStatus {
    pub fn name(self) -> &'static str {
        match self {
            TargetStatus::Ok => "ok",
            TargetStatus::Noisy => "noisy",
            TargetStatus::Failed => "failed",
            TargetStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRecord {
    pub name: String,
    pub package: String,
    pub kind: Kind,
    pub binary: String,
    pub category: Category,
    pub features: Vec<String>,
    pub all_features: bool,
    pub filter: Option<String>,
    pub needs_database: bool,
    pub thresholds: Thresholds,
    pub profile_time_secs: f64,
    /// What a human would type to run the same thing with cargo.
    pub cargo_command: String,
    pub status: TargetStatus,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub executable: Option<String>,
    pub build_command: Option<Vec<String>>,
    pub build_secs: Option<f64>,
    pub timing: Option<TimingRecord>,
    pub profile: Option<ProfileRecord>,
    pub analysis_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimingRecord {
    pub command: Vec<String>,
    pub runs: u32,
    pub duration_secs: f64,
    pub benchmarks: usize,
    /// Largest spread across runs of any of the target's benchmarks, in percent.
    pub spread_pct: Option<f64>,
    pub noisy: bool,
    /// Paired runs only: whether each pair's two executables ran at the same time, taking
    /// turns sample by sample (see `pipeline::referee`), rather than one after the other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub turns: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub command: Vec<String>,
    pub duration_secs: f64,
    /// How many times a test executable ran under the profiler to fill the profile time.
    #[serde(default)]
    pub repetitions: Option<u32>,
    /// Paths relative to the output directory.
    pub raw: String,
    pub folded: Option<String>,
    pub flamegraph: Option<String>,
    pub samples: Option<u64>,
    /// The function with the most self time and its share, e.g. for the final table.
    pub top_self: Option<TopFunction>,
    /// PostgreSQL's processes in the same whole-machine recording, folded on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerProfile>,
    /// Where the program's threads blocked, from the scheduler's switches in the same
    /// recording (perf, whole machine, root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offcpu: Option<OffCpuProfile>,
}

/// The program's off-CPU time: each blocking switch-out's stack weighed by how long its
/// thread stayed off a CPU, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OffCpuProfile {
    /// Paths relative to the output directory.
    pub folded: String,
    pub flamegraph: Option<String>,
    /// Blocking switch-outs that were switched back in while recorded.
    pub switches: u64,
    pub blocked_secs: f64,
    /// The program's functions where the most time was spent blocked (kernel and library
    /// frames charged to their callers), as shares of all blocked time.
    pub top_self: Vec<TopFunction>,
}

/// The database server's side of a whole-machine profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerProfile {
    /// Paths relative to the output directory.
    pub folded: String,
    pub flamegraph: Option<String>,
    pub samples: u64,
    /// The server's functions with the most self time (kernel time charged to its callers).
    pub top_self: Vec<TopFunction>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopFunction {
    pub function: String,
    pub self_pct: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub schema_version: u32,
    pub targets: Vec<TargetTimings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetTimings {
    pub name: String,
    pub category: Category,
    pub noise_pct: f64,
    pub spread_pct: Option<f64>,
    pub noisy: bool,
    pub benchmarks: Vec<BenchmarkTimings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchmarkTimings {
    /// criterion's `full_id`.
    pub id: String,
    /// criterion's sanitised directory; the copies are under
    /// `criterion/<target>/<directory>/run-<n>/` (criterion's layout, the run as baseline).
    pub directory: String,
    pub runs: Vec<RunEstimates>,
    /// Which estimate `typical_ns` uses: `slope` when criterion sampled linearly, else `mean`.
    pub typical_statistic: String,
    /// Median over runs of the typical estimate, ns per iteration.
    pub typical_ns: f64,
    pub spread_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEstimates {
    pub run: u32,
    pub typical_ns: f64,
    pub estimates: Estimates,
    /// The bench process's CPU time and waiting for a CPU while criterion measured this
    /// benchmark (or over the whole run, see `measurement_phase`), so a comparison can take
    /// machine contention out; absent where it cannot be measured and in runs recorded
    /// before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RunUsage>,
    /// One iteration's wall time split into the program's CPU, the server's CPU and
    /// waiting, over criterion's measurement samples (benchmarks that need the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_split: Option<super::cpu_split::CpuSplit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisFile {
    pub schema_version: u32,
    pub targets: Vec<TargetAnalysis>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetAnalysis {
    pub name: String,
    pub category: Category,
    pub analysis: Analysis,
}

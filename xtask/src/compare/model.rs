//! The comparison as data: what `comparison.json` holds (schema version 1) and what the
//! Markdown and HTML reports are rendered from.

use serde::{Deserialize, Serialize};

use super::comparability::Comparability;
use super::profiles::{BlockedMove, Mover, Signal};
use super::verdict::{Judgement, Side, Verdict};
use crate::plan::Category;
use crate::profiler_choice::ProfilerChoice;

/// Bumped whenever a field changes meaning or disappears; additions keep the version.
pub const SCHEMA_VERSION: u32 = 1;

pub const MARKDOWN_FILE: &str = "comparison.md";
pub const JSON_FILE: &str = "comparison.json";
pub const HTML_FILE: &str = "index.html";
/// Directory (in the output directory) of the per-target flamegraphs of the comparison.
pub const GRAPHS_DIR: &str = "comparison";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub generated_at: String,
    pub command_line: Vec<String>,
    pub baseline: RunSummary,
    pub post: RunSummary,
    pub comparability: Comparability,
    /// How the two sides were measured.
    pub measurement: Measurement,
    pub timings: Vec<TimingRow>,
    /// Benchmarks or targets measured only in the baseline (disappeared).
    pub only_in_baseline: Vec<Unmatched>,
    /// Benchmarks or targets measured only in the post run (appeared).
    pub only_in_post: Vec<Unmatched>,
    /// Targets in both runs that could not be compared (failed, skipped, no data).
    pub not_compared: Vec<Unmatched>,
    /// Every regression signal evaluated, fired or not.
    pub signals: Vec<Signal>,
    /// Statements per iteration of every benchmark counted in both runs.
    #[serde(default)]
    pub statements: Vec<super::statements::StatementRow>,
    pub profiles: Vec<ProfileComparison>,
    pub outcome: Outcome,
}

/// How the two sides were measured: paired in one session (`profile-post --against`), or
/// in two sessions (a saved baseline and a later post run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub paired: bool,
    pub pairs: Option<u32>,
    /// The revision the working tree was measured against, when paired.
    pub revision: Option<String>,
    /// One sentence for the reports.
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub dir: String,
    pub label: String,
    pub revision: Option<String>,
    pub dirty: Option<bool>,
    pub branch: Option<String>,
    pub started_at: String,
    pub hostname: Option<String>,
    pub cpu_model: String,
    pub quick: bool,
    pub runs: u32,
    pub profiler: ProfilerChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// criterion's typical time per iteration (slope or mean), ns.
    CriterionTime,
    /// CPU time of a test target's profiled run (samples / frequency), s.
    TestCpuTime,
    /// The PostgreSQL server's CPU time per iteration in criterion's measurement, ns.
    ServerCpu,
    /// The bench process's CPU time per iteration (all its threads), ns.
    ProgramCpu,
}

impl Metric {
    /// What a row of this metric measures, where the benchmark's name alone does not say.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Metric::CriterionTime | Metric::TestCpuTime => None,
            Metric::ServerCpu => Some("server CPU"),
            Metric::ProgramCpu => Some("program CPU"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The category's allowed change (`max_change_pct`).
    MaxChange,
    /// "Unchanged": the category's noise band (`noise_pct`), for SQL.
    NoiseBand,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimingRow {
    pub target: String,
    pub benchmark: String,
    pub category: Category,
    pub metric: Metric,
    /// The compared values: medians over runs, corrected for CPU contention when
    /// `contention_corrected` (ns for criterion times, s for test CPU time).
    pub baseline: f64,
    pub post: f64,
    /// Medians as measured, before any correction.
    pub baseline_raw: f64,
    pub post_raw: f64,
    pub contention_corrected: bool,
    /// Median share of the runs' time not spent waiting for a CPU (1 = no contention).
    pub baseline_cpu_availability: Option<f64>,
    pub post_cpu_availability: Option<f64>,
    pub limit_kind: LimitKind,
    pub baseline_side: Side,
    pub post_side: Side,
    /// Paired sessions: `ln(post / baseline)` of each pair of runs, in pair order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair_log_ratios: Vec<f64>,
    #[serde(flatten)]
    pub judgement: Judgement,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unmatched {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileComparison {
    pub target: String,
    pub baseline_samples: u64,
    pub post_samples: u64,
    pub movers: Vec<Mover>,
    /// Time per lifecycle module and per kind of work (recomputed from both runs' folded stacks).
    #[serde(default)]
    pub shares: Vec<ShareChange>,
    /// Paths relative to the output directory.
    pub files: ProfileFiles,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Where the threads' blocked time moved most, when both runs have off-CPU profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_movers: Vec<BlockedMove>,
}

/// A share of samples in both runs: a lifecycle module or a kind of work on the stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareChange {
    /// `lifecycle module` or `kind of work`.
    pub group: String,
    pub name: String,
    pub before_pct: f64,
    pub after_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileFiles {
    pub before: Option<String>,
    pub after: Option<String>,
    /// Red: more of the post run's samples than the baseline's; blue: fewer.
    pub differential: Option<String>,
    /// The baseline's shape, blue where code shrank or disappeared.
    pub differential_negated: Option<String>,
    /// inferno's two-count folded lines the differential graphs are drawn from.
    pub differential_folded: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Regression,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: u8,
    pub passes: usize,
    pub improvements: usize,
    pub inconclusive: usize,
    pub regressions: usize,
    pub signals_fired: usize,
    pub message: String,
}

impl Comparison {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.timings
            .iter()
            .filter(|r| r.judgement.verdict == verdict)
            .count()
    }
}

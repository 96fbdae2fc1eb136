//! The command line: every command and flag of `cargo xtask`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Benchmark and profiling automation for Tasker"
)]
pub struct Cli {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which workspace to act on. The defaults find the workspace this xtask belongs to; tests
/// point them at the fixture workspace instead.
#[derive(Debug, Args, Clone)]
pub struct WorkspaceArgs {
    /// Root directory of the workspace to profile [default: the workspace of this xtask].
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Profile plan to use [default: <workspace>/xtask/profile-plan.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install and verify the profilers (perf, samply, cargo-flamegraph) at pinned versions.
    InstallTools(InstallToolsArgs),
    /// Phase 1 and 2 of the plan: clean build, timing runs, profiles, hot-path analysis.
    ProfileBaseline(ProfileBaselineArgs),
    /// Check the machine for interference (battery, load, busy processes, CPU scaling, perf limits).
    CheckEnv(CheckEnvArgs),
    /// The benchmark inventory: every bench target, whether it is implemented and in the plan.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct InstallToolsArgs {
    /// Install nothing; exit non-zero listing what is missing or at the wrong version.
    #[arg(long)]
    pub check: bool,
    /// Set `kernel.perf_event_paranoid` to this value for the running kernel (needs root;
    /// not persisted across reboots). samply needs 1 or lower.
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub set_perf_paranoid: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfilerChoice {
    Perf,
    Samply,
    None,
}

impl ProfilerChoice {
    /// perf on Linux, samply on macOS: the plan's primary tool on each platform.
    pub fn platform_default() -> Self {
        if cfg!(target_os = "macos") {
            ProfilerChoice::Samply
        } else {
            ProfilerChoice::Perf
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProfilerChoice::Perf => "perf",
            ProfilerChoice::Samply => "samply",
            ProfilerChoice::None => "none",
        }
    }
}

#[derive(Debug, Args)]
pub struct ProfileBaselineArgs {
    /// Output directory [default: <workspace>/profiles/pre-refactor].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an existing baseline in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Skip `cargo clean` before the build.
    #[arg(long)]
    pub no_clean: bool,
    /// Timing runs per bench target; the spread across them decides whether it is noisy.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Profiler [default: perf on Linux, samply on macOS].
    #[arg(long, value_enum)]
    pub profiler: Option<ProfilerChoice>,
    /// Run only this target of the plan (repeatable).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Short warm-up, measurement and profile times: a smoke run, not a baseline to trust.
    #[arg(long)]
    pub quick: bool,
    /// Seconds each benchmark is iterated under the profiler (overrides the plan).
    #[arg(long, value_name = "SECS")]
    pub profile_time: Option<f64>,
    /// Go on even when the interference check fails (the report still goes into the manifest).
    #[arg(long)]
    pub allow_interference: bool,
    /// Cargo target directory for the build [default: the workspace's].
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Where to write the baseline document
    /// [default: <workspace>/docs/observability/lifecycle-performance-baseline.md].
    #[arg(long, value_name = "FILE")]
    pub baseline_doc: Option<PathBuf>,
    /// Do not write the baseline document.
    #[arg(long, conflicts_with = "baseline_doc")]
    pub no_baseline_doc: bool,
    /// Keep the temporary directory of a failed run for inspection.
    #[arg(long)]
    pub keep_failed: bool,
    /// Sampling frequency of the profiler, in Hz.
    #[arg(long, default_value_t = 999)]
    pub frequency: u32,
}

#[derive(Debug, Args)]
pub struct CheckEnvArgs {
    /// The profiler the run will use, so its limits are checked [default: platform's].
    #[arg(long, value_enum)]
    pub profiler: Option<ProfilerChoice>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Exit non-zero when an implemented bench is missing from the plan or the plan names a
    /// bench that does not exist.
    #[arg(long)]
    pub check: bool,
}

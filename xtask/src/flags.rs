//! The command line: every command and flag of `cargo xtask`.

use std::path::PathBuf;

pub use crate::profiler_choice::ProfilerChoice;
use clap::{Args, Parser, Subcommand};

/// The profiler's default sampling rate. Its cost was measured on the 2-core build machine
/// (`cargo xtask profiler-overhead`: bench means with and without perf, alternating runs):
/// sampling the program's threads at 999 Hz made `event_propagation/send_notify_wake` 17-29 %
/// slower, at 249 Hz a few percent, the rest being a per-context-switch cost that
/// whole-machine sampling avoids (see `pipeline::profiler`). Short test targets still get
/// enough samples at this rate because the profiling pass repeats a test executable until its
/// profile time has passed.
pub const DEFAULT_SAMPLE_FREQUENCY: u32 = 249;

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
    /// Phase 3 of the plan: the baseline's measurement again into profiles/post-refactor/,
    /// then the verdict against profiles/pre-refactor/ (exit 0 pass, 1 regression, 2 unusable).
    ProfilePost(ProfilePostArgs),
    /// Judge two saved runs without measuring (exit 0 pass, 1 regression, 2 unusable);
    /// with the global --plan FILE, that plan's thresholds replace the recorded ones.
    Compare(CompareArgs),
    /// What attaching the profiler costs: one bench target's means with and without perf,
    /// in alternating pairs, against a limit (exit 0 under it or inconclusive, 1 over, 2 error).
    ProfilerOverhead(ProfilerOverheadArgs),
    /// What CI runs: `profile-post` with --force --allow-interference on one machine class,
    /// plus the step summary and annotations (or, with --save-baseline, the baseline).
    ProfileGate(ProfileGateArgs),
}

#[derive(Debug, Args)]
pub struct InstallToolsArgs {
    /// Install nothing; exit non-zero listing what is missing or at the wrong version.
    #[arg(long)]
    pub check: bool,
    /// Set `kernel.perf_event_paranoid` to this value for the running kernel (needs root;
    /// not persisted across reboots unless --persist). samply needs 1 or lower.
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub set_perf_paranoid: Option<i32>,
    /// With --set-perf-paranoid: also keep the value across reboots, in a file of its own
    /// under /etc/sysctl.d/ (delete the file to undo).
    #[arg(long, requires = "set_perf_paranoid")]
    pub persist: bool,
}

/// The measurement flags shared by `profile-baseline` and `profile-post` (and
/// `profile-gate`): the post run is the same measurement as the baseline.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Replace an existing run in the output directory.
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
    /// When the interference check fails on the load average alone, read it again every 10 s
    /// for up to this many seconds before giving up (a build just before the run, such as
    /// cargo compiling this xtask on a fresh clone, reads as a saturated machine for about a
    /// minute); 0 gives up at once.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub settle: u64,
    /// What idle CPUs do while the benchmarks run: `poll` holds a 0 µs latency request
    /// (`/dev/cpu_dma_latency`, needs root) so a round trip does not wait for a halted CPU to
    /// wake; `system` leaves the machine's idle policy. Recorded in the manifest; a baseline
    /// and a post run measured differently are flagged.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::cpu_idle::CpuIdle::Poll)]
    pub cpu_idle: crate::cpu_idle::CpuIdle,
    /// Cargo target directory for the build [default: the workspace's].
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Keep the temporary directory of a failed run for inspection.
    #[arg(long)]
    pub keep_failed: bool,
    /// Sampling frequency of the profiler, in Hz.
    #[arg(long, default_value_t = DEFAULT_SAMPLE_FREQUENCY)]
    pub frequency: u32,
    /// Record no off-CPU profile (perf records the scheduler's switches with call stacks
    /// next to its samples where it may: see docs/observability/profiling-workflow.md).
    #[arg(long)]
    pub no_off_cpu: bool,
    /// Have perf sample only the program's threads (no `-a`), as it must without root: the
    /// way samply records on Linux, so the two profilers can be compared like for like.
    #[arg(long)]
    pub perf_per_thread: bool,
    /// Have perf unwind call stacks from the binaries' unwind tables (`--call-graph dwarf`)
    /// instead of frame pointers: bigger recordings and slower folding, but a function that
    /// called a frameless one (libc's `syscall`, the vDSO's clock) keeps its place, as under
    /// samply.
    #[arg(long)]
    pub perf_dwarf: bool,
}

#[derive(Debug, Args)]
pub struct ProfileBaselineArgs {
    /// Output directory [default: <workspace>/profiles/pre-refactor].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Where to write the baseline document [default:
    /// <workspace>/docs/observability/lifecycle-performance-baseline.md, full runs only: a
    /// `--quick` or `--only` run writes it only to a FILE given here].
    #[arg(long, value_name = "FILE")]
    pub baseline_doc: Option<PathBuf>,
    /// Do not write the baseline document.
    #[arg(long, conflicts_with = "baseline_doc")]
    pub no_baseline_doc: bool,
    /// Record the baseline of this git revision instead of the working tree (any name git
    /// resolves: a branch, a tag, `HEAD~3`, a commit), checked out into a worktree under the
    /// target directory and built the same way; the plan is the working tree's.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// How the two runs are judged; shared by `profile-post`, `compare` and `profile-gate`.
#[derive(Debug, Args, Clone)]
pub struct JudgeArgs {
    /// Judge timings even when the runs were measured on different hosts (reported at the
    /// top of the verdict either way).
    #[arg(long)]
    pub allow_different_host: bool,
}

#[derive(Debug, Args)]
pub struct ProfilePostArgs {
    /// Output directory of the post run and its verdict
    /// [default: <workspace>/profiles/post-refactor].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The baseline to judge against [default: <workspace>/profiles/pre-refactor].
    #[arg(long, value_name = "DIR", conflicts_with = "against")]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub against: AgainstArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub judge: JudgeArgs,
}

/// A paired Phase 3: the working tree against another revision in one session; shared by
/// `profile-post` and `profile-gate`.
#[derive(Debug, Args, Clone)]
pub struct AgainstArgs {
    /// Measure this git revision too, in the same session, and judge the working tree
    /// (uncommitted changes included) against it: both built with the same flags, their
    /// timing runs alternating in pairs. Its run directory is kept beside --out, named
    /// `<out>-against`.
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
    /// Pairs of timing runs per target with --against (one run of each side per pair), for
    /// every target [default: the target's `pairs` in the plan, else 8; see
    /// docs/observability/profiling-workflow.md for why].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    pub pairs: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A saved baseline run (e.g. profiles/pre-refactor).
    #[arg(value_name = "BASELINE_DIR")]
    pub baseline: PathBuf,
    /// A saved post run (e.g. profiles/post-refactor).
    #[arg(value_name = "POST_DIR")]
    pub post: PathBuf,
    /// Where to write comparison.md, comparison.json and index.html [default: POST_DIR].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub judge: JudgeArgs,
}

#[derive(Debug, Args)]
pub struct ProfileGateArgs {
    /// Record the baseline instead (what CI does on the main branch): `profile-baseline`
    /// into the baseline directory, replacing it, without the baseline document.
    #[arg(long)]
    pub save_baseline: bool,
    /// The baseline directory [default: <workspace>/profiles/pre-refactor].
    #[arg(long, value_name = "DIR", conflicts_with = "against")]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub against: AgainstArgs,
    /// Output directory of the post run [default: <workspace>/profiles/post-refactor].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Append comparison.md to this file [default: $GITHUB_STEP_SUMMARY when set].
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub judge: JudgeArgs,
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

#[derive(Debug, Args)]
pub struct ProfilerOverheadArgs {
    /// The plan target to measure (a bench target, e.g. event-propagation).
    #[arg(long, value_name = "NAME")]
    pub target: String,
    /// Criterion filter choosing its benchmarks [default: the target's filter in the plan, or
    /// all of them].
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Pairs of runs (one without and one with perf each); six or more give a 95 % interval.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairs: u32,
    /// Criterion's measurement time per benchmark and run, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub measurement_time: f64,
    /// Criterion's warm-up time per benchmark and run, in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub warm_up_time: f64,
    /// Sampling frequency of perf, in Hz (the profiling pass's default unless given).
    #[arg(long, default_value_t = DEFAULT_SAMPLE_FREQUENCY)]
    pub frequency: u32,
    /// The slow-down the profiler may cost, in percent.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    pub limit: f64,
    /// Measure perf as the profiling pass runs it with the off-CPU profile: the scheduler's
    /// switches recorded with call stacks next to the samples.
    #[arg(long)]
    pub off_cpu: bool,
    /// What idle CPUs do while the benchmarks run: `poll` holds a 0 µs latency request
    /// (`/dev/cpu_dma_latency`, needs root) so a round trip does not wait for a halted CPU to
    /// wake; `system` leaves the machine's idle policy. Recorded in the manifest; a baseline
    /// and a post run measured differently are flagged.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::cpu_idle::CpuIdle::Poll)]
    pub cpu_idle: crate::cpu_idle::CpuIdle,
    /// Cargo target directory for the build [default: the workspace's].
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Write every pair and the verdicts as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

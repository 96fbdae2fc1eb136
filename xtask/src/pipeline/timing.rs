//! The timing pass: the criterion bench executable run directly, without a profiler,
//! several times, each run with its own `CRITERION_HOME` so runs never mix. Estimates are
//! copied into the output directory and the spread across runs decides "noisy". With each
//! benchmark's estimate goes its process's CPU time and waiting for a CPU during
//! criterion's measurement of it (`schedstat`), and, for a benchmark that needs the
//! database, where each iteration's time went (`cpu_split`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::cpu_split::{self, CpuSplit};
use super::manifest::{BenchmarkTimings, RunEstimates, TargetTimings, TimingRecord};
use super::referee;
use super::schedstat::{self, RunUsage};
use super::RunEnv;
use crate::criterion;
use crate::plan::Target;

/// Criterion arguments for each pair of a paired run (`--against`): shorter runs, more of
/// them. Two sides taking turns agree so closely that the pairs' number, not each run's
/// length, sets the interval.
pub const PAIRED_ARGS: [&str; 4] = ["--warm-up-time", "0.5", "--measurement-time", "1"];

/// Criterion arguments for `--quick`: enough samples for an estimate, not for a verdict.
pub const QUICK_ARGS: [&str; 6] = [
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "1",
    "--sample-size",
    "10",
];

pub struct TimingPass<'a> {
    pub sh: &'a Shell,
    pub env: &'a RunEnv,
    pub exe: &'a Path,
    pub target: &'a Target,
    /// Output directory of the run (the staging directory).
    pub out: &'a Path,
    /// Scratch space for criterion's own files.
    pub scratch: &'a Path,
    pub criterion_args: &'a [String],
    /// The run directory's name: with the run's number, criterion's baseline name
    /// (`pre-refactor-3`), so that the baselines of two run directories never collide.
    pub label: &'a str,
}

/// Criterion's baseline name for run `run` of the run directory called `label`.
pub fn baseline_name(label: &str, run: u32) -> String {
    format!("{label}-{run}")
}

/// What one timing run measured: criterion's results and, per benchmark, what the bench
/// process cost while criterion measured it.
pub struct RunResult {
    results: Vec<criterion::BenchResult>,
    usage: BTreeMap<String, RunUsage>,
    /// Where each benchmark's iteration went: the program's CPU, the server's, waiting.
    split: BTreeMap<String, CpuSplit>,
}

impl TimingPass<'_> {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--bench".into(),
            "--noplot".into(),
            "--color".into(),
            "never".into(),
        ];
        args.extend(self.criterion_args.iter().cloned());
        if let Some(filter) = &self.target.filter {
            args.push(filter.clone());
        }
        args
    }

    /// Timing run number `run`: the executable under criterion with its own home, its files
    /// copied into the run directory in criterion's layout with the run directory's name and
    /// the run's number as the baseline name
    /// (`criterion/<target>/<group>/<bench>/<label>-<n>/`), so `critcmp` reads them.
    pub fn run_once(&self, run: u32) -> Result<RunResult> {
        let prepared = self.prepare(run)?;
        // Run while sampling its threads, so the comparison can tell a slower program
        // from a busier machine.
        let measured = schedstat::run(self.command(&prepared))
            .with_context(|| format!("running {}", self.exe.display()))?;
        let (results, split) = self.collect(run, &prepared, &measured.output)?;
        // Each benchmark's contention over criterion's measurement of it, where its
        // progress lines show when that was; else over the whole run.
        let windows = criterion::measurement_windows(&measured.stderr_lines);
        let whole = measured.series.total(measured.wall_secs);
        let usage: BTreeMap<String, RunUsage> = results
            .iter()
            .filter_map(|r| {
                windows
                    .get(&r.id)
                    .and_then(|(from, to)| measured.series.between(*from, *to))
                    .or_else(|| whole.clone())
                    .map(|u| (r.id.clone(), u))
            })
            .collect();
        Ok(RunResult {
            results,
            usage,
            split,
        })
    }

    /// Whether the executable takes turns with a partner when asked (its benchmarks run on
    /// `tasker_test_support::timed`): an executable that reads the variable holds its name.
    pub fn takes_turns(&self) -> bool {
        std::fs::read(self.exe).is_ok_and(|bytes| {
            bytes
                .windows(referee::TURNS_ENV.len())
                .any(|w| w == referee::TURNS_ENV.as_bytes())
        })
    }

    /// Run number `run` of this pass and of `other` at the same time, taking turns sample
    /// by sample (see [`referee`]); `other_first` gives `other` the first turn.
    pub fn run_interleaved(
        &self,
        other: &TimingPass<'_>,
        run: u32,
        other_first: bool,
        sockets: &Path,
    ) -> Result<(RunResult, RunResult)> {
        let mine = self.prepare(run)?;
        let theirs = other.prepare(run)?;
        let [a, b] = referee::run_pair(
            [self.command(&mine), other.command(&theirs)],
            usize::from(other_first),
            sockets,
        )?;
        let (mine, my_split) = self.collect(run, &mine, &a)?;
        let (theirs, their_split) = other.collect(run, &theirs, &b)?;
        Ok((
            RunResult {
                results: mine,
                usage: BTreeMap::new(),
                split: my_split,
            },
            RunResult {
                results: theirs,
                usage: BTreeMap::new(),
                split: their_split,
            },
        ))
    }

    /// A fresh criterion home for run `run`.
    fn prepare(&self, run: u32) -> Result<PathBuf> {
        let home = self
            .scratch
            .join(&self.target.name)
            .join(format!("run-{run}"));
        if home.exists() {
            std::fs::remove_dir_all(&home)
                .with_context(|| format!("clearing {}", home.display()))?;
        }
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        Ok(home)
    }

    fn command(&self, home: &Path) -> std::process::Command {
        let exe = self.exe;
        let args = self.args();
        let command = self
            .env
            .apply(cmd!(self.sh, "{exe} {args...}"))
            .env("CRITERION_HOME", home);
        // Where a benchmark's time goes is worth knowing where a server shares the work.
        if self.target.needs_database {
            command.env(cpu_split::SPLIT_ENV, "1").into()
        } else {
            command.into()
        }
    }

    /// Logs run `run`, checks it, copies criterion's files out of its home, and reads each
    /// benchmark's CPU split from its stderr.
    fn collect(
        &self,
        run: u32,
        home: &Path,
        output: &std::process::Output,
    ) -> Result<(Vec<criterion::BenchResult>, BTreeMap<String, CpuSplit>)> {
        let split_stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let output = &std::process::Output {
            status: output.status,
            stdout: output.stdout.clone(),
            stderr: cpu_split::without_samples(&output.stderr),
        };
        let t = self.target;
        let log = self
            .out
            .join("logs")
            .join(&t.name)
            .join(format!("timing-run-{run}.log"));
        self.env.log(
            &log,
            &format!("{} {}", self.exe.display(), self.args().join(" ")),
            output,
        )?;
        if !output.status.success() {
            bail!(
                "timing run {run} of `{}` failed ({}); see {}:\n{}",
                t.name,
                output.status,
                log.display(),
                self.env
                    .scrub(&super::tail(&String::from_utf8_lossy(&output.stderr), 20))
            );
        }
        let results = criterion::read_home(home)?;
        if results.is_empty() {
            bail!(
                "timing run {run} of `{}` wrote no criterion results under {}; is it a criterion bench, and does the filter match?",
                t.name,
                home.display()
            );
        }
        let target_dir = self.out.join("criterion").join(&t.name);
        let baseline_name = baseline_name(self.label, run);
        // Copy criterion's own files verbatim: the comparison may want more than we parse.
        for r in &results {
            let dest = target_dir.join(&r.directory).join(&baseline_name);
            std::fs::create_dir_all(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            for file in r.files.iter().flatten() {
                let name = file.file_name().unwrap_or_default();
                std::fs::copy(file, dest.join(name))
                    .with_context(|| format!("copying {}", file.display()))?;
            }
        }
        copy_percentiles(home, &target_dir, &baseline_name)?;
        let split = cpu_split::read(&split_stderr, home, &results);
        Ok((results, split))
    }
}

/// Groups the runs' results by benchmark id and measures how far the runs disagree.
/// `usages[i]` holds what each benchmark of run `i + 1` cost (see `schedstat`), where it
/// could be measured.
pub fn summarise(
    target: &Target,
    per_run: &[Vec<criterion::BenchResult>],
    usages: &[BTreeMap<String, RunUsage>],
    splits: &[BTreeMap<String, CpuSplit>],
) -> TargetTimings {
    let mut ids: Vec<&str> = per_run.iter().flatten().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let benchmarks: Vec<BenchmarkTimings> = ids
        .into_iter()
        .map(|id| {
            let runs: Vec<RunEstimates> = per_run
                .iter()
                .enumerate()
                .filter_map(|(i, results)| {
                    results.iter().find(|r| r.id == id).map(|r| RunEstimates {
                        run: i as u32 + 1,
                        typical_ns: r.estimates.typical().point_estimate,
                        estimates: r.estimates.clone(),
                        usage: usages.get(i).and_then(|u| u.get(id)).cloned(),
                        cpu_split: splits.get(i).and_then(|u| u.get(id)).cloned(),
                    })
                })
                .collect();
            let values: Vec<f64> = runs.iter().map(|r| r.typical_ns).collect();
            let directory = per_run
                .iter()
                .flatten()
                .find(|r| r.id == id)
                .map(|r| r.directory.display().to_string())
                .unwrap_or_default();
            BenchmarkTimings {
                id: id.to_owned(),
                directory,
                typical_statistic: if runs.iter().all(|r| r.estimates.slope.is_some()) {
                    "slope".to_owned()
                } else {
                    "mean".to_owned()
                },
                typical_ns: criterion::median(&values).unwrap_or(0.0),
                spread_pct: criterion::spread_pct(&values),
                runs,
            }
        })
        .collect();
    let spread = benchmarks
        .iter()
        .filter_map(|b| b.spread_pct)
        .fold(None, |acc: Option<f64>, s| {
            Some(acc.map_or(s, |a| a.max(s)))
        });
    TargetTimings {
        name: target.name.clone(),
        category: target.category,
        noise_pct: target.thresholds.noise_pct,
        spread_pct: spread,
        noisy: spread.is_some_and(|s| s > target.thresholds.noise_pct),
        benchmarks,
    }
}

/// Copies the percentile files some benches write next to criterion's output
/// (`<home>/<group>/percentiles.json`, P50/P95/P99 of every measured iteration) to
/// `<dest>/<group>/percentiles-<run>.json`, so the run directory keeps the tail latencies
/// criterion's estimates leave out.
fn copy_percentiles(home: &Path, dest: &Path, run: &str) -> Result<()> {
    let Ok(groups) = std::fs::read_dir(home) else {
        return Ok(());
    };
    for group in groups.flatten() {
        let file = group.path().join("percentiles.json");
        if file.is_file() {
            let to = dest.join(group.file_name());
            std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
            std::fs::copy(&file, to.join(format!("percentiles-{run}.json")))
                .with_context(|| format!("copying {}", file.display()))?;
        }
    }
    Ok(())
}

/// The id of a test target's one timing figure in `timings.json`.
pub const TEST_CPU_ID: &str = "cpu time per test run";

/// How long one timing run of a test target repeats the executable (at least once): the
/// lifecycle tests take about a second, too short for one run to mean much on its own.
pub const TEST_RUN_SECS: f64 = 3.0;
pub const QUICK_TEST_RUN_SECS: f64 = 1.0;

/// The timing pass of a test target: its executable (with the plan's filter) run again and
/// again for `secs`, the CPU time of each run read from the kernel's accounting of reaped
/// children (`getrusage(RUSAGE_CHILDREN)`, so threads that came and went count too). The
/// figure is CPU time, not wall time: the tests mostly wait on PostgreSQL, and their wall
/// time follows the server's load more than the code under test.
pub struct TestTimingPass<'a> {
    pub sh: &'a Shell,
    pub env: &'a RunEnv,
    pub exe: &'a Path,
    pub target: &'a Target,
    pub out: &'a Path,
    pub secs: f64,
}

impl TestTimingPass<'_> {
    fn args(&self) -> Vec<String> {
        self.target.filter.iter().cloned().collect()
    }

    /// Timing run number `run`, as a one-benchmark result (ns of CPU per test run).
    pub fn run_once(&self, run: u32) -> Result<RunResult> {
        let t = self.target;
        let exe = self.exe;
        let args = self.args();
        let log = self
            .out
            .join("logs")
            .join(&t.name)
            .join(format!("timing-run-{run}.log"));
        let started = Instant::now();
        let mut cpu = Vec::new();
        while cpu.is_empty() || started.elapsed().as_secs_f64() < self.secs {
            let before = children_cpu_secs();
            let command = self.env.apply({
                let args = &args;
                cmd!(self.sh, "{exe} {args...}")
            });
            let output = std::process::Command::from(command)
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("running {}", exe.display()))?;
            let used = children_cpu_secs() - before;
            if !output.status.success() {
                self.env.log(
                    &log,
                    &format!("{} {}", exe.display(), args.join(" ")),
                    &output,
                )?;
                bail!(
                    "timing run {run} of `{}` failed ({}); see {}",
                    t.name,
                    output.status,
                    log.display()
                );
            }
            cpu.push(used * 1e9);
        }
        let wall = started.elapsed().as_secs_f64();
        std::fs::create_dir_all(log.parent().unwrap_or(self.out))
            .with_context(|| format!("creating {}", log.display()))?;
        std::fs::write(
            &log,
            format!(
                "$ {} {}  (repeated for {:.1} s)\nCPU ns per run: {cpu:?}\n",
                exe.display(),
                args.join(" "),
                wall
            ),
        )
        .with_context(|| format!("writing {}", log.display()))?;
        let result = criterion::BenchResult::from_samples(TEST_CPU_ID, &cpu);
        let usage = RunUsage {
            wall_secs: wall,
            cpu_secs: cpu.iter().sum::<f64>() / 1e9,
            run_delay_secs: 0.0,
            threads: 0,
            measurement_phase: false,
            // CPU time is what is judged here, and stolen time is not in it.
            steal_share: 0.0,
        };
        Ok(RunResult {
            results: vec![result],
            usage: BTreeMap::from([(TEST_CPU_ID.to_owned(), usage)]),
            split: BTreeMap::new(),
        })
    }
}

/// The summary of a target's timing runs and the record of how they were made.
fn finish(
    target: &Target,
    exe: &Path,
    args: Vec<String>,
    runs: Vec<RunResult>,
    duration_secs: f64,
) -> (TimingRecord, TargetTimings) {
    let mut per_run = Vec::new();
    let mut usages = Vec::new();
    let mut splits = Vec::new();
    for r in runs {
        per_run.push(r.results);
        usages.push(r.usage);
        splits.push(r.split);
    }
    let timings = summarise(target, &per_run, &usages, &splits);
    let mut command = vec![exe.display().to_string()];
    command.extend(args);
    let record = TimingRecord {
        command,
        runs: per_run.len() as u32,
        duration_secs,
        benchmarks: timings.benchmarks.len(),
        spread_pct: timings.spread_pct,
        noisy: timings.noisy,
        turns: false,
    };
    (record, timings)
}

/// CPU seconds (user + system) of every child this process has reaped so far.
fn children_cpu_secs() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}

/// The timing runs of one target on one side, one run at a time, so that two sides can
/// take turns: criterion for a bench, CPU time for a test.
pub enum Timer<'a> {
    Bench(TimingPass<'a>),
    Test(TestTimingPass<'a>),
}

impl<'a> Timer<'a> {
    /// The timer of the pass's target: criterion for a bench, CPU time for a test.
    pub fn new(pass: TimingPass<'a>, quick: bool) -> Timer<'a> {
        match pass.target.kind {
            crate::plan::Kind::Bench => Timer::Bench(pass),
            crate::plan::Kind::Test => Timer::Test(TestTimingPass {
                sh: pass.sh,
                env: pass.env,
                exe: pass.exe,
                target: pass.target,
                out: pass.out,
                secs: if quick {
                    QUICK_TEST_RUN_SECS
                } else {
                    TEST_RUN_SECS
                },
            }),
        }
    }

    pub fn run_once(&self, run: u32) -> Result<RunResult> {
        match self {
            Timer::Bench(p) => p.run_once(run),
            Timer::Test(p) => p.run_once(run),
        }
    }

    /// The criterion pass, if this is a bench target that takes turns with a partner.
    pub fn turn_taker(&self) -> Option<&TimingPass<'a>> {
        match self {
            Timer::Bench(p) if p.takes_turns() => Some(p),
            _ => None,
        }
    }

    /// The runs' summary, in run order; `duration_secs` is the time they took.
    pub fn finish(
        &self,
        runs: Vec<RunResult>,
        duration_secs: f64,
    ) -> (TimingRecord, TargetTimings) {
        let (target, exe, args) = match self {
            Timer::Bench(p) => (p.target, p.exe, p.args()),
            Timer::Test(p) => (p.target, p.exe, p.args()),
        };
        finish(target, exe, args, runs, duration_secs)
    }
}

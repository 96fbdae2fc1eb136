//! `cargo xtask profiler-overhead`: what attaching the profiler costs the code it measures.
//!
//! One bench target of the plan is built as the profiling pass builds it, then its criterion
//! executable runs in pairs: once as it is and once under `perf record` with the profiling
//! pass's own arguments (event, rate, call stacks). The order inside a pair alternates, so a
//! drift in the machine's load falls on both sides alike. For each benchmark the verdict rests
//! on the paired slow-downs (mean with perf over mean without, minus one): their median, with
//! a distribution-free 95 % confidence interval, against a limit (5 % by default). A shared
//! machine's noise is bursty and far from normal, which is why the median of pairs and the
//! sign-test interval are used rather than a mean and a t interval.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::flags::{ProfilerOverheadArgs, WorkspaceArgs};
use crate::pipeline::build::{self, Cargo};
use crate::pipeline::database;
use crate::pipeline::{self, profiler, RunEnv};
use crate::plan::{Kind, Plan, Target};
use crate::{criterion, host, run_options, stats, workspace};

/// Confidence of the interval the verdict rests on.
const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole interval lies below the limit.
    Under,
    /// The whole interval lies above the limit.
    Over,
    /// The interval straddles the limit, or there are too few pairs for one.
    Inconclusive,
}

#[derive(Debug, Serialize)]
struct Pair {
    pair: u32,
    /// Whether the profiled run went first in this pair.
    profiled_first: bool,
    /// Mean time per iteration in ns, by benchmark id.
    without: BTreeMap<String, f64>,
    with: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
struct BenchmarkOverhead {
    id: String,
    pairs: usize,
    median_without_ns: f64,
    median_with_ns: f64,
    /// Median of the paired slow-downs, in percent.
    median_overhead_pct: f64,
    /// The 95 % interval of that median, in percent (absent with fewer than six pairs).
    ci_pct: Option<(f64, f64)>,
    verdict: Verdict,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    executable: String,
    profiler_command: Vec<String>,
    frequency_hz: u32,
    measurement_time_secs: f64,
    limit_pct: f64,
    confidence: f64,
    git_revision: Option<String>,
    pairs: Vec<Pair>,
    benchmarks: Vec<BenchmarkOverhead>,
}

/// The verdict on paired slow-downs (percent) against a limit (percent).
pub fn judge(slowdowns_pct: &[f64], limit_pct: f64) -> (f64, Option<(f64, f64)>, Verdict) {
    let median = criterion::median(slowdowns_pct).unwrap_or(f64::NAN);
    let ci = stats::median_ci(slowdowns_pct, CONFIDENCE);
    let verdict = match ci {
        Some((_, hi)) if hi < limit_pct => Verdict::Under,
        Some((lo, _)) if lo > limit_pct => Verdict::Over,
        _ => Verdict::Inconclusive,
    };
    (median, ci, verdict)
}

/// Whether pair `pair` (from 1) runs the profiled side first: every other pair.
fn profiled_first(pair: u32) -> bool {
    crate::pipeline::second_first(pair)
}

pub fn run(ws: &WorkspaceArgs, args: &ProfilerOverheadArgs) -> std::process::ExitCode {
    exit_code(overhead(ws, args))
}

/// Builds the target, runs its pairs with and without perf, and prints and saves the verdicts.
fn overhead(ws: &WorkspaceArgs, args: &ProfilerOverheadArgs) -> Result<Verdict> {
    check_times(args)?;
    let root = run_options::root(ws)?;
    let target = bench_target(ws, &root, args)?;
    let sh = Shell::new().context("creating a shell")?;
    sh.change_dir(&root);
    if host::tool_version(&sh, "perf").is_none() {
        bail!("perf is not installed; run `cargo xtask install-tools`");
    }
    let perf = profiler::PerfSetup::for_this_user(args.off_cpu);
    if args.off_cpu && !perf.off_cpu {
        bail!("--off-cpu needs root (or kernel.perf_event_paranoid -1) to record the scheduler's switches of the whole machine");
    }
    pipeline::probe_perf(&sh, &perf)?;

    let metadata = workspace::metadata(&sh, &root)?;
    let target_dir = args
        .target_dir
        .as_deref()
        .map_or_else(|| metadata.target_directory.clone(), run_options::absolute);
    let work = target_dir.join("xtask-overhead").join(&target.name);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let cargo = Cargo::for_workspace(&root, target_dir.clone());
    eprintln!(
        "building {} with the `{}` profile",
        target.name,
        build::CARGO_PROFILE
    );
    let exe = cargo
        .build_target(&sh, &target, &work.join("build.log"))?
        .executable;
    let mut env = RunEnv::empty();
    let _db = provide_database(&sh, &cargo, &target, &target_dir, &work, &mut env)?;

    let bench_args = criterion_args(args, &target);
    // A first run fills the database's caches and the bench's own fixtures; left uncounted,
    // as it would otherwise make the first pair's "without" side look slow.
    eprintln!("warming up: one uncounted run");
    measure(
        &sh,
        &env,
        &exe.display().to_string(),
        &bench_args,
        &work.join("warm-up"),
    )?;
    let runner = PairRunner {
        sh: &sh,
        env: &env,
        exe: &exe,
        bench_args: &bench_args,
        perf: &perf,
        work: &work,
    };
    let (pairs, profiler_command) = runner.run(args)?;

    let benchmarks = overheads(&pairs, args.limit);
    if benchmarks.is_empty() {
        bail!(
            "no benchmark of `{}` was measured on both sides; does the filter match?",
            target.name
        );
    }
    print!("{}", render(&benchmarks, args));
    let report = Report {
        target: target.name.clone(),
        executable: exe.display().to_string(),
        profiler_command,
        frequency_hz: args.frequency,
        measurement_time_secs: args.measurement_time,
        limit_pct: args.limit,
        confidence: CONFIDENCE,
        git_revision: host::git(&sh, &root).revision,
        pairs,
        benchmarks,
    };
    if let Some(path) = &args.json {
        let path = run_options::absolute(path);
        pipeline::write_json(&path, &report)?;
        eprintln!("pairs and verdicts written to {}", path.display());
    }
    Ok(worst(&report.benchmarks))
}

fn check_times(args: &ProfilerOverheadArgs) -> Result<()> {
    if !(args.measurement_time.is_finite() && args.measurement_time > 0.0) {
        bail!(
            "--measurement-time must be a positive number of seconds, got {}",
            args.measurement_time
        );
    }
    if !(args.warm_up_time.is_finite() && args.warm_up_time > 0.0) {
        bail!(
            "--warm-up-time must be a positive number of seconds, got {}",
            args.warm_up_time
        );
    }
    Ok(())
}

/// The plan's bench target `--target` names.
fn bench_target(ws: &WorkspaceArgs, root: &Path, args: &ProfilerOverheadArgs) -> Result<Target> {
    let plan = Plan::load(&run_options::plan_path(ws, root))?;
    let Some(target) = plan.targets.iter().find(|t| t.name == args.target).cloned() else {
        let known: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "unknown target `{}` (--target); {} defines: {}",
            args.target,
            plan.path.display(),
            known.join(", ")
        );
    };
    if target.kind != Kind::Bench {
        bail!(
            "target `{}` in {} is a test target; the overhead is measured on a criterion bench (kind = \"bench\")",
            target.name,
            plan.path.display()
        );
    }
    Ok(target)
}

/// The database a target that needs one runs against, its URL added to `env`; the guard
/// stops a throwaway cluster when dropped.
fn provide_database(
    sh: &Shell,
    cargo: &Cargo,
    target: &Target,
    target_dir: &Path,
    work: &Path,
    env: &mut RunEnv,
) -> Result<Option<database::Database>> {
    if !target.needs_database {
        return Ok(None);
    }
    let tasker = if database::needs_throwaway() {
        Some(database::build_tasker(
            sh,
            cargo,
            &work.join("tasker-build.log"),
        )?)
    } else {
        None
    };
    let provided = database::provide(sh, tasker.as_deref(), target_dir)?;
    env.add_database_url(provided.url);
    Ok(provided.guard)
}

/// Criterion's arguments for every run of both sides.
fn criterion_args(args: &ProfilerOverheadArgs, target: &Target) -> Vec<String> {
    let filter = args.filter.clone().or_else(|| target.filter.clone());
    let mut bench_args: Vec<String> = vec![
        "--bench".into(),
        "--noplot".into(),
        "--color".into(),
        "never".into(),
        "--warm-up-time".into(),
        args.warm_up_time.to_string(),
        "--measurement-time".into(),
        args.measurement_time.to_string(),
    ];
    bench_args.extend(filter);
    bench_args
}

/// What the pairs of runs need: the bench and its arguments, perf's setup, and where each
/// run's criterion home goes.
struct PairRunner<'a> {
    sh: &'a Shell,
    env: &'a RunEnv,
    exe: &'a Path,
    bench_args: &'a [String],
    perf: &'a profiler::PerfSetup,
    work: &'a Path,
}

impl PairRunner<'_> {
    /// `--pairs` pairs, each one run with perf and one without, in alternating order; with
    /// the perf command line used.
    fn run(&self, args: &ProfilerOverheadArgs) -> Result<(Vec<Pair>, Vec<String>)> {
        let started = Instant::now();
        let mut pairs = Vec::new();
        let mut profiler_command = Vec::new();
        for pair in 1..=args.pairs {
            let first = profiled_first(pair);
            let mut means: [BTreeMap<String, f64>; 2] = Default::default();
            for profiled in [first, !first] {
                let (program, argv) = self.command(pair, profiled, args.frequency);
                if profiled && profiler_command.is_empty() {
                    profiler_command = std::iter::once(program.clone())
                        .chain(argv.iter().cloned())
                        .collect();
                }
                let home = self.home(pair, profiled)?;
                means[usize::from(profiled)] = measure(self.sh, self.env, &program, &argv, &home)?;
                // The profile itself is not needed; perf.data of a long run is large.
                let _ = std::fs::remove_file(home.join("perf.data"));
            }
            let [without, with] = means;
            eprintln!(
                "pair {pair}/{} ({}, {:.0} s): {}",
                args.pairs,
                if first {
                    "with perf first"
                } else {
                    "without perf first"
                },
                started.elapsed().as_secs_f64(),
                summary_line(&without, &with)
            );
            pairs.push(Pair {
                pair,
                profiled_first: first,
                without,
                with,
            });
        }
        Ok((pairs, profiler_command))
    }

    /// The criterion home of one side of pair `pair`, created.
    fn home(&self, pair: u32, profiled: bool) -> Result<PathBuf> {
        let side = if profiled { "with" } else { "without" };
        let home = self.work.join(format!("pair-{pair}-{side}"));
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        Ok(home)
    }

    /// The program and arguments of one side: the bench itself, or perf running it.
    fn command(&self, pair: u32, profiled: bool, frequency: u32) -> (String, Vec<String>) {
        let mut argv: Vec<String> = Vec::new();
        let program = if profiled {
            let side = self.work.join(format!("pair-{pair}-with"));
            argv.extend(profiler::perf_record_args(
                self.perf,
                frequency,
                &side.join("perf.data"),
            ));
            argv.push("-q".into());
            argv.push("--".into());
            argv.push(self.exe.display().to_string());
            "perf".to_owned()
        } else {
            self.exe.display().to_string()
        };
        argv.extend(self.bench_args.iter().cloned());
        (program, argv)
    }
}

/// One run of the bench executable (directly or under perf) with its own criterion home;
/// returns each benchmark's mean in ns.
fn measure(
    sh: &Shell,
    env: &RunEnv,
    program: &str,
    argv: &[String],
    home: &Path,
) -> Result<BTreeMap<String, f64>> {
    let text = format!("{program} {}", argv.join(" "));
    let output = env
        .apply(cmd!(sh, "{program} {argv...}"))
        .env("CRITERION_HOME", home)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running `{text}`"))?;
    let log = home.join("run.log");
    env.log(&log, &text, &output)?;
    if !output.status.success() {
        bail!(
            "`{text}` failed ({}); see {}:\n{}",
            output.status,
            log.display(),
            env.scrub(&pipeline::tail(
                &String::from_utf8_lossy(&output.stderr),
                20
            ))
        );
    }
    let results = criterion::read_home(home)?;
    if results.is_empty() {
        bail!(
            "`{text}` wrote no criterion results under {}; does the filter match a benchmark?",
            home.display()
        );
    }
    Ok(results
        .into_iter()
        .map(|r| (r.id, r.estimates.mean.point_estimate))
        .collect())
}

fn slowdown_pct(without: f64, with: f64) -> f64 {
    (with / without - 1.0) * 100.0
}

fn summary_line(without: &BTreeMap<String, f64>, with: &BTreeMap<String, f64>) -> String {
    without
        .iter()
        .filter_map(|(id, w)| {
            with.get(id).map(|p| {
                format!(
                    "{id} {} without, {} with ({:+.1} %)",
                    pipeline::report::ns(*w),
                    pipeline::report::ns(*p),
                    slowdown_pct(*w, *p)
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn overheads(pairs: &[Pair], limit_pct: f64) -> Vec<BenchmarkOverhead> {
    let ids: std::collections::BTreeSet<&String> =
        pairs.iter().flat_map(|p| p.without.keys()).collect();
    ids.into_iter()
        .filter_map(|id| {
            let both: Vec<(f64, f64)> = pairs
                .iter()
                .filter_map(|p| Some((*p.without.get(id)?, *p.with.get(id)?)))
                .collect();
            if both.is_empty() {
                return None;
            }
            let slowdowns: Vec<f64> = both.iter().map(|(w, p)| slowdown_pct(*w, *p)).collect();
            let (median, ci, verdict) = judge(&slowdowns, limit_pct);
            let withouts: Vec<f64> = both.iter().map(|b| b.0).collect();
            let withs: Vec<f64> = both.iter().map(|b| b.1).collect();
            Some(BenchmarkOverhead {
                id: id.clone(),
                pairs: both.len(),
                median_without_ns: criterion::median(&withouts).unwrap_or(f64::NAN),
                median_with_ns: criterion::median(&withs).unwrap_or(f64::NAN),
                median_overhead_pct: median,
                ci_pct: ci,
                verdict,
            })
        })
        .collect()
}

/// The exit code CI can gate on, and the last line saying why: 0 under the limit (an
/// inconclusive verdict warns but passes, as in `compare`), 1 over it, 2 when nothing could
/// be measured.
fn exit_code(result: Result<Verdict>) -> std::process::ExitCode {
    match result {
        Ok(Verdict::Under) => {
            eprintln!("profiler overhead: under the limit (exit 0)");
            std::process::ExitCode::SUCCESS
        }
        Ok(Verdict::Inconclusive) => {
            eprintln!("warning: profiler overhead: inconclusive, the noise is wider than the limit (exit 0)");
            std::process::ExitCode::SUCCESS
        }
        Ok(Verdict::Over) => {
            eprintln!("profiler overhead: OVER the limit; lower --frequency (exit 1)");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            eprintln!("profiler overhead: not measured (exit 2)");
            std::process::ExitCode::from(2)
        }
    }
}

fn worst(benchmarks: &[BenchmarkOverhead]) -> Verdict {
    if benchmarks.iter().any(|b| b.verdict == Verdict::Over) {
        Verdict::Over
    } else if benchmarks
        .iter()
        .any(|b| b.verdict == Verdict::Inconclusive)
    {
        Verdict::Inconclusive
    } else {
        Verdict::Under
    }
}

fn render(benchmarks: &[BenchmarkOverhead], args: &ProfilerOverheadArgs) -> String {
    let mut s = format!(
        "\nProfiler overhead of perf at {} Hz on `{}`: mean per iteration without and with perf attached, {} alternating pairs; limit {} %\n\n",
        args.frequency, args.target, args.pairs, args.limit
    );
    s.push_str("| Benchmark | Without (median) | With (median) | Paired slow-down (median) | 95 % interval | Verdict |\n");
    s.push_str("|---|---:|---:|---:|---|---|\n");
    for b in benchmarks {
        let ci = b.ci_pct.map_or_else(
            || "too few pairs".to_owned(),
            |(lo, hi)| format!("{lo:+.1} % … {hi:+.1} %"),
        );
        s.push_str(&format!(
            "| `{}` | {} | {} | {:+.1} % | {ci} | {} |\n",
            b.id,
            pipeline::report::ns(b.median_without_ns),
            pipeline::report::ns(b.median_with_ns),
            b.median_overhead_pct,
            match b.verdict {
                Verdict::Under => "under the limit",
                Verdict::Over => "OVER the limit",
                Verdict::Inconclusive => "inconclusive",
            }
        ));
    }
    if benchmarks
        .iter()
        .any(|b| b.verdict == Verdict::Inconclusive)
    {
        s.push_str(&format!(
            "\nAn inconclusive verdict means the interval reaches across {} % (or there were fewer than six pairs): the machine's noise is wider than the difference; run more pairs (--pairs) or on a quieter machine.\n",
            args.limit
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_alternates_from_pair_to_pair() {
        let firsts: Vec<bool> = (1..=4).map(profiled_first).collect();
        assert_eq!(firsts, [false, true, false, true]);
    }

    #[test]
    fn verdicts_follow_the_interval() {
        // Twenty pairs around 1 %: the interval (6th to 15th value) stays below 5 %.
        let small: Vec<f64> = (0..20).map(|i| 1.0 + f64::from(i % 5) * 0.5).collect();
        let (median, ci, verdict) = judge(&small, 5.0);
        assert_eq!(verdict, Verdict::Under, "{median} {ci:?}");
        // Around 12 %: above.
        let large: Vec<f64> = small.iter().map(|v| v + 11.0).collect();
        assert_eq!(judge(&large, 5.0).2, Verdict::Over);
        // Spread from −10 % to +20 %: the interval holds 5 %.
        let noisy: Vec<f64> = (0..20).map(|i| -10.0 + f64::from(i) * 1.5).collect();
        assert_eq!(judge(&noisy, 5.0).2, Verdict::Inconclusive);
        // Five pairs are too few for a 95 % interval.
        let (_, ci, verdict) = judge(&[1.0, 1.0, 1.0, 1.0, 1.0], 5.0);
        assert_eq!((ci, verdict), (None, Verdict::Inconclusive));
    }

    #[test]
    fn overheads_pair_each_benchmark_with_itself() {
        let pair = |n: u32, without: f64, with: f64| Pair {
            pair: n,
            profiled_first: profiled_first(n),
            without: BTreeMap::from([("a".to_owned(), without), ("b".to_owned(), 10.0)]),
            with: BTreeMap::from([("a".to_owned(), with)]),
        };
        let pairs: Vec<Pair> = (1..=6).map(|n| pair(n, 100.0, 102.0)).collect();
        let result = overheads(&pairs, 5.0);
        // `b` was never measured with perf, so it has no verdict.
        assert_eq!(result.len(), 1);
        let a = &result[0];
        assert_eq!((a.id.as_str(), a.pairs), ("a", 6));
        assert!((a.median_overhead_pct - 2.0).abs() < 1e-9);
        assert_eq!(a.verdict, Verdict::Under);
        assert_eq!(worst(&result), Verdict::Under);
    }
}

//! The timing pass: the criterion bench executable run directly, without a profiler,
//! several times, each run with its own `CRITERION_HOME` so runs never mix. Estimates are
//! copied into the output directory and the spread across runs decides "noisy". With each
//! benchmark's estimate goes its process's CPU time and waiting for a CPU during
//! criterion's measurement of it (`schedstat`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::manifest::{BenchmarkTimings, RunEstimates, TargetTimings, TimingRecord};
use super::schedstat::{self, RunUsage};
use super::RunEnv;
use crate::criterion;
use crate::plan::Target;

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
    pub runs: u32,
}

impl TimingPass<'_> {
    pub fn run(&self, mut on_run: impl FnMut(u32)) -> Result<(TimingRecord, TargetTimings)> {
        let t = self.target;
        let mut args: Vec<String> = vec![
            "--bench".into(),
            "--noplot".into(),
            "--color".into(),
            "never".into(),
        ];
        args.extend(self.criterion_args.iter().cloned());
        if let Some(filter) = &t.filter {
            args.push(filter.clone());
        }
        let started = Instant::now();
        let mut per_run = Vec::new();
        let mut usages = Vec::new();
        for run in 1..=self.runs {
            on_run(run);
            let home = self.scratch.join(&t.name).join(format!("run-{run}"));
            if home.exists() {
                std::fs::remove_dir_all(&home)
                    .with_context(|| format!("clearing {}", home.display()))?;
            }
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            let exe = self.exe;
            let command = self
                .env
                .apply({
                    let args = &args;
                    cmd!(self.sh, "{exe} {args...}")
                })
                .env("CRITERION_HOME", &home);
            let log = self
                .out
                .join("logs")
                .join(&t.name)
                .join(format!("timing-run-{run}.log"));
            // Run while sampling its threads, so the comparison can tell a slower program
            // from a busier machine.
            let measured = schedstat::run(command.into())
                .with_context(|| format!("running {}", exe.display()))?;
            let output = &measured.output;
            self.env.log(
                &log,
                &format!("{} {}", exe.display(), args.join(" ")),
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
            let results = criterion::read_home(&home)?;
            if results.is_empty() {
                bail!(
                    "timing run {run} of `{}` wrote no criterion results under {}; is it a criterion bench, and does the filter match?",
                    t.name,
                    home.display()
                );
            }
            // Copy criterion's own files verbatim: the comparison may want more than we parse.
            for r in &results {
                let dest = self
                    .out
                    .join("criterion")
                    .join(&t.name)
                    .join(format!("run-{run}"))
                    .join(&r.directory);
                std::fs::create_dir_all(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                std::fs::copy(&r.estimates_file, dest.join("estimates.json"))
                    .with_context(|| format!("copying {}", r.estimates_file.display()))?;
                std::fs::copy(&r.benchmark_file, dest.join("benchmark.json"))
                    .with_context(|| format!("copying {}", r.benchmark_file.display()))?;
            }
            copy_percentiles(
                &home,
                &self
                    .out
                    .join("criterion")
                    .join(&t.name)
                    .join(format!("run-{run}")),
            )?;
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
            per_run.push(results);
            usages.push(usage);
        }
        let timings = summarise(t, &per_run, &usages);
        let mut command = vec![self.exe.display().to_string()];
        command.extend(args);
        let record = TimingRecord {
            command,
            runs: self.runs,
            duration_secs: started.elapsed().as_secs_f64(),
            benchmarks: timings.benchmarks.len(),
            spread_pct: timings.spread_pct,
            noisy: timings.noisy,
        };
        Ok((record, timings))
    }
}

/// Groups the runs' results by benchmark id and measures how far the runs disagree.
/// `usages[i]` holds what each benchmark of run `i + 1` cost (see `schedstat`), where it
/// could be measured.
pub fn summarise(
    target: &Target,
    per_run: &[Vec<criterion::BenchResult>],
    usages: &[BTreeMap<String, RunUsage>],
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
/// (`<home>/<group>/percentiles.json`, P50/P95/P99 of every measured iteration), so the run
/// directory keeps the tail latencies criterion's estimates leave out.
fn copy_percentiles(home: &Path, dest: &Path) -> Result<()> {
    let Ok(groups) = std::fs::read_dir(home) else {
        return Ok(());
    };
    for group in groups.flatten() {
        let file = group.path().join("percentiles.json");
        if file.is_file() {
            let to = dest.join(group.file_name());
            std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
            std::fs::copy(&file, to.join("percentiles.json"))
                .with_context(|| format!("copying {}", file.display()))?;
        }
    }
    Ok(())
}

//! Reads criterion's results (`<home>/<bench dir>/new/estimates.json` and `benchmark.json`)
//! and computes the spread of a benchmark across repeated runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

/// One statistic, in nanoseconds per iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub point_estimate: f64,
    pub standard_error: f64,
    pub confidence_interval: ConfidenceInterval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    pub mean: Estimate,
    pub median: Estimate,
    pub std_dev: Estimate,
    pub median_abs_dev: Estimate,
    /// Only present when criterion sampled linearly (the default for fast routines).
    #[serde(default)]
    pub slope: Option<Estimate>,
}

impl Estimates {
    /// The figure criterion itself reports as "time": the slope when it exists, else the mean.
    pub fn typical(&self) -> &Estimate {
        self.slope.as_ref().unwrap_or(&self.mean)
    }

    /// Confidence interval of the typical figure, (lower, upper) in ns.
    pub fn typical_ci(&self) -> (f64, f64) {
        let ci = &self.typical().confidence_interval;
        (ci.lower_bound, ci.upper_bound)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct BenchmarkId {
    full_id: String,
}

/// One benchmark's result from one run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// The real benchmark id (`group/function/value`), from `benchmark.json`.
    pub id: String,
    /// The sanitised directory criterion stored it in, relative to its home.
    pub directory: PathBuf,
    pub estimates: Estimates,
    /// The files read (`estimates.json`, `benchmark.json`), copied verbatim into the
    /// output; `None` for a figure the xtask measured itself.
    pub files: Option<[PathBuf; 2]>,
}

impl BenchResult {
    /// A figure the xtask measured itself (a test run's CPU time), from its samples in ns:
    /// the mean with its 95 % interval, the median, the standard deviation and the median
    /// absolute deviation, shaped like criterion's estimates so everything downstream reads
    /// both alike.
    pub fn from_samples(id: &str, samples: &[f64]) -> BenchResult {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let sd = crate::stats::variance(samples).unwrap_or(0.0).sqrt();
        let se = sd / n.sqrt();
        let centre = median(samples).unwrap_or(mean);
        let mad = crate::stats::mad_sigma(samples).unwrap_or(0.0) / 1.4826;
        let estimate = |point: f64, se: f64| Estimate {
            point_estimate: point,
            standard_error: se,
            confidence_interval: ConfidenceInterval {
                confidence_level: 0.95,
                lower_bound: point - 1.96 * se,
                upper_bound: point + 1.96 * se,
            },
        };
        BenchResult {
            id: id.to_owned(),
            directory: PathBuf::from(id.replace(' ', "-")),
            estimates: Estimates {
                mean: estimate(mean, se),
                median: estimate(centre, se),
                std_dev: estimate(sd, 0.0),
                median_abs_dev: estimate(mad, 0.0),
                slope: None,
            },
            files: None,
        }
    }
}

pub fn parse_estimates(text: &str) -> Result<Estimates> {
    serde_json::from_str(text).context("parsing criterion estimates.json")
}

/// Every benchmark result under a criterion home directory, sorted by id.
pub fn read_home(home: &Path) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    if home.exists() {
        visit(home, home, &mut results)?;
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(results)
}

fn visit(home: &Path, dir: &Path, out: &mut Vec<BenchResult>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if !path.is_dir() {
            continue;
        }
        // Only `new/` holds this run; `base/` and named baselines are older copies.
        if path.file_name().is_some_and(|n| n == "new") {
            let estimates_file = path.join("estimates.json");
            let benchmark_file = path.join("benchmark.json");
            if !estimates_file.is_file() || !benchmark_file.is_file() {
                continue;
            }
            let estimates = parse_estimates(
                &std::fs::read_to_string(&estimates_file)
                    .with_context(|| format!("reading {}", estimates_file.display()))?,
            )
            .with_context(|| format!("in {}", estimates_file.display()))?;
            let id: BenchmarkId = serde_json::from_str(
                &std::fs::read_to_string(&benchmark_file)
                    .with_context(|| format!("reading {}", benchmark_file.display()))?,
            )
            .with_context(|| format!("parsing {}", benchmark_file.display()))?;
            let bench_dir = path.parent().unwrap_or(&path);
            out.push(BenchResult {
                id: id.full_id,
                directory: bench_dir.strip_prefix(home).unwrap_or(bench_dir).to_owned(),
                estimates,
                files: Some([estimates_file, benchmark_file]),
            });
        } else if path.file_name().is_some_and(|n| n != "report") {
            visit(home, &path, out)?;
        }
    }
    Ok(())
}

/// When criterion measured each benchmark, from the progress lines it writes to stderr
/// (`Benchmarking ID: Collecting …` starts the samples, `Benchmarking ID: Analyzing` ends
/// them), as (start, end) in the lines' own time unit, keyed by benchmark id.
pub fn measurement_windows(lines: &[(f64, String)]) -> BTreeMap<String, (f64, f64)> {
    let mut started: BTreeMap<String, f64> = BTreeMap::new();
    let mut windows = BTreeMap::new();
    for (t, line) in lines {
        let Some((id, phase)) = progress_line(line) else {
            continue;
        };
        if phase.starts_with("Collecting") {
            started.insert(id.to_owned(), *t);
        } else if phase == "Analyzing" {
            if let Some(start) = started.remove(id) {
                windows.insert(id.to_owned(), (start, *t));
            }
        }
    }
    windows
}

/// A progress line of criterion's (`Benchmarking ID: PHASE`) as (ID, PHASE).
pub fn progress_line(line: &str) -> Option<(&str, &str)> {
    line.trim()
        .strip_prefix("Benchmarking ")
        .and_then(|rest| rest.rsplit_once(": "))
}

/// How far apart repeated runs are: (max - min) / median, in percent.
pub fn spread_pct(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = median_of_sorted(&sorted);
    if median <= 0.0 {
        return None;
    }
    Some((sorted[sorted.len() - 1] - sorted[0]) / median * 100.0)
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(median_of_sorted(&sorted))
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(point: f64) -> String {
        format!(
            r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}},"point_estimate":{point},"standard_error":1.5}}"#,
            point - 2.0,
            point + 2.0
        )
    }

    fn estimates_json(mean: f64, slope: Option<f64>) -> String {
        format!(
            r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":{},"std_dev":{}}}"#,
            estimate(mean),
            estimate(mean - 1.0),
            estimate(0.5),
            slope.map(estimate).unwrap_or_else(|| "null".to_owned()),
            estimate(3.0)
        )
    }

    #[test]
    fn reads_estimates_with_and_without_slope() {
        let with = parse_estimates(&estimates_json(100.0, Some(98.0))).expect("valid");
        assert_eq!(with.mean.point_estimate, 100.0);
        assert_eq!(with.mean.confidence_interval.lower_bound, 98.0);
        assert_eq!(with.typical().point_estimate, 98.0, "slope preferred");
        let without = parse_estimates(&estimates_json(100.0, None)).expect("valid");
        assert!(without.slope.is_none());
        assert_eq!(
            without.typical().point_estimate,
            100.0,
            "mean when no slope"
        );
    }

    #[test]
    fn rejects_truncated_estimates() {
        let err = parse_estimates(r#"{"mean":{"point_estimate":1.0}}"#).unwrap_err();
        assert!(format!("{err:#}").contains("estimates.json"), "{err:#}");
    }

    #[test]
    fn reads_a_criterion_home_using_full_ids() {
        let home = tempfile::tempdir().expect("tempdir");
        let write = |dir: &str, full_id: &str, mean: f64| {
            let new = home.path().join(dir).join("new");
            std::fs::create_dir_all(&new).expect("mkdir");
            std::fs::write(new.join("estimates.json"), estimates_json(mean, None)).expect("write");
            std::fs::write(
                new.join("benchmark.json"),
                format!(r#"{{"group_id":"g","function_id":null,"value_str":null,"throughput":null,"full_id":"{full_id}","directory_name":"{dir}","title":"{full_id}"}}"#),
            )
            .expect("write");
            // An older baseline next to it must be ignored.
            let base = home.path().join(dir).join("base");
            std::fs::create_dir_all(&base).expect("mkdir");
            std::fs::write(base.join("estimates.json"), estimates_json(1.0, None)).expect("write");
        };
        write(
            "get_next_ready_tasks/batch_10",
            "get_next_ready_tasks/batch 10",
            50.0,
        );
        write("workload", "workload", 20.0);
        std::fs::create_dir_all(home.path().join("report")).expect("mkdir");
        let results = read_home(home.path()).expect("readable");
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].id, "get_next_ready_tasks/batch 10");
        assert_eq!(
            results[0].directory,
            PathBuf::from("get_next_ready_tasks/batch_10")
        );
        assert_eq!(results[0].estimates.mean.point_estimate, 50.0);
        assert_eq!(results[1].id, "workload");
    }

    #[test]
    fn measurement_windows_come_from_the_progress_lines() {
        let lines: Vec<(f64, String)> = [
            (0.0, "Benchmarking fixture/workload"),
            (0.01, "Benchmarking fixture/workload: Warming up for 500.00 ms"),
            (0.51, "Benchmarking fixture/workload: Collecting 10 samples in estimated 1.0041 s (13k iterations)"),
            (1.52, "Benchmarking fixture/workload: Analyzing"),
            (1.60, "Benchmarking a: b/c: Collecting 10 samples in estimated 1 s"),
            (2.70, "Benchmarking a: b/c: Analyzing"),
            (2.80, "Benchmarking never/finished: Collecting 10 samples"),
            (2.90, "Gnuplot not found, using plotters backend"),
        ]
        .into_iter()
        .map(|(t, l)| (t, l.to_owned()))
        .collect();
        let windows = measurement_windows(&lines);
        assert_eq!(windows.len(), 2, "{windows:?}");
        assert_eq!(windows["fixture/workload"], (0.51, 1.52));
        assert_eq!(windows["a: b/c"], (1.60, 2.70), "ids may hold \": \"");
    }

    #[test]
    fn spread_is_range_over_median() {
        assert_eq!(
            spread_pct(&[100.0, 110.0, 105.0]),
            Some(10.0 / 105.0 * 100.0)
        );
        assert_eq!(spread_pct(&[100.0]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), Some(2.5));
    }
}

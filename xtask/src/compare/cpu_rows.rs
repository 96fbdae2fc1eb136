//! Where a benchmark's iterations spent their time, compared like its timing: the server's
//! CPU and the program's CPU per iteration (`pipeline::cpu_split`, measured in every timing
//! run of a benchmark that uses the database), each judged against the benchmark's own limit.
//! Paired sessions judge each pair's ratio; two sessions judge each side's spread across its
//! runs with the plan's drift between sessions, as timings are.

use super::judge::{block, limit_of, uncorrected_row, RowContext};
use super::model::{Metric, TimingRow};
use super::verdict::{self, Side};
use crate::pipeline::cpu_split::CpuSplit;
use crate::pipeline::manifest::{BenchmarkTimings, TargetRecord};
use crate::plan::Thresholds;

/// Runs a side needs for an interval from its own spread (two sessions).
const MIN_RUNS: usize = 3;

/// The CPU rows of one benchmark in both runs: none where a run lacks the split.
pub fn rows(
    record: &TargetRecord,
    t: &Thresholds,
    base: &BenchmarkTimings,
    post: &BenchmarkTimings,
    context: &RowContext<'_>,
) -> Vec<TimingRow> {
    [
        (Metric::ServerCpu, server as fn(&CpuSplit) -> Option<f64>),
        (Metric::ProgramCpu, program),
    ]
    .into_iter()
    .filter_map(|(metric, of)| {
        let (b, p) = (per_run(base, of)?, per_run(post, of)?);
        row(record, t, &post.id, metric, &b, &p, context)
    })
    .collect()
}

fn server(s: &CpuSplit) -> Option<f64> {
    s.server_cpu_us.map(|us| us * 1e3)
}

fn program(s: &CpuSplit) -> Option<f64> {
    Some(s.program_cpu_us * 1e3)
}

/// (run, ns per iteration) of the runs that measured it (one run that could not read the
/// server leaves only itself, or its pair, out), `None` when none did.
fn per_run(b: &BenchmarkTimings, of: fn(&CpuSplit) -> Option<f64>) -> Option<Vec<(u32, f64)>> {
    let runs: Vec<(u32, f64)> = b
        .runs
        .iter()
        .filter_map(|r| {
            let v = r.cpu_split.as_ref().and_then(of)?;
            (v > 0.0).then_some((r.run, v))
        })
        .collect();
    (!runs.is_empty()).then_some(runs)
}

fn row(
    record: &TargetRecord,
    t: &Thresholds,
    benchmark: &str,
    metric: Metric,
    base: &[(u32, f64)],
    post: &[(u32, f64)],
    context: &RowContext<'_>,
) -> Option<TimingRow> {
    // Paired, each side's figure comes from the pairs judged, so both describe the same runs.
    let in_pairs = |runs: &[(u32, f64)], other: &[(u32, f64)]| -> Vec<(u32, f64)> {
        runs.iter()
            .copied()
            .filter(|(run, _)| !context.paired || other.iter().any(|(r, _)| r == run))
            .collect()
    };
    let (base, post) = (&in_pairs(base, post)[..], &in_pairs(post, base)[..]);
    let values = |runs: &[(u32, f64)]| runs.iter().map(|&(_, v)| v).collect::<Vec<_>>();
    let (limit, limit_kind) = limit_of(t);
    let mut base_side = Side::from_runs(&values(base), &[])?;
    let mut post_side = Side::from_runs(&values(post), &[])?;
    let ratios = if context.paired {
        pair_log_ratios(base, post)
    } else {
        Vec::new()
    };
    let mut judgement = if context.paired {
        if ratios.len() < 2 {
            return None;
        }
        verdict::judge_paired(&ratios, limit)
    } else {
        if base.len() < MIN_RUNS || post.len() < MIN_RUNS {
            return None;
        }
        base_side = base_side.with_session_noise(t.session_drift_pct);
        post_side = post_side.with_session_noise(t.session_drift_pct);
        if context.busy {
            base_side = base_side.with_session_noise(t.noise_pct);
            post_side = post_side.with_session_noise(t.noise_pct);
        }
        verdict::judge(&base_side, &post_side, limit)
    };
    block(&mut judgement, context.blocked);
    Some(uncorrected_row(
        record,
        benchmark,
        metric,
        (base_side, post_side),
        limit_kind,
        ratios,
        judgement,
    ))
}

/// `ln(post / base)` of the runs with the same number (pair `k` is run `k` of each side).
pub fn pair_log_ratios(base: &[(u32, f64)], post: &[(u32, f64)]) -> Vec<f64> {
    post.iter()
        .filter_map(|&(run, p)| {
            let &(_, b) = base.iter().find(|&&(r, _)| r == run)?;
            (b > 0.0 && p > 0.0).then(|| (p / b).ln())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::model::LimitKind;
    use crate::compare::testdata::{benchmark, manifest};
    use crate::compare::verdict::Verdict;

    /// A benchmark of four runs whose split is `server`/`program` µs per iteration.
    fn timings(splits: &[(Option<f64>, f64)]) -> BenchmarkTimings {
        let mut b = benchmark("g/b", &vec![(1000.0, None); splits.len()]);
        for (run, &(server, program)) in b.runs.iter_mut().zip(splits) {
            run.cpu_split = Some(CpuSplit {
                iterations: 100,
                wall_us: 1000.0,
                program_cpu_us: program,
                server_cpu_us: server,
                waiting_us: server.map(|s| 1000.0 - s - program),
            });
        }
        b
    }

    fn context(paired: bool) -> RowContext<'static> {
        RowContext {
            blocked: None,
            profiles_blocked: None,
            busy: false,
            paired,
        }
    }

    /// The server doing half as much again per iteration in every pair is a regression
    /// against the benchmark's 20 % limit even though its wall time did not move; the
    /// program's unchanged CPU passes.
    #[test]
    fn more_server_cpu_per_iteration_is_a_regression_when_paired() {
        let m = manifest();
        let record = &m.targets[0];
        let base = timings(&[(Some(100.0), 50.0), (Some(102.0), 51.0), (Some(98.0), 49.0)]);
        let post = timings(&[
            (Some(150.0), 50.0),
            (Some(154.0), 51.5),
            (Some(146.0), 49.0),
        ]);
        let rows = rows(record, &record.thresholds, &base, &post, &context(true));
        let of = |metric| rows.iter().find(|r| r.metric == metric).expect("row");
        let server = of(Metric::ServerCpu);
        assert_eq!(server.judgement.verdict, Verdict::Regression, "{server:?}");
        assert!((server.judgement.change_pct - 50.0).abs() < 1.0);
        assert_eq!(server.limit_kind, LimitKind::MaxChange);
        assert_eq!(server.pair_log_ratios.len(), 3);
        assert_eq!(of(Metric::ProgramCpu).judgement.verdict, Verdict::Pass);
    }

    /// A run whose process could not read the server leaves its pair out of the server's
    /// row, not the row out of the comparison.
    #[test]
    fn a_run_without_the_servers_cpu_leaves_only_its_pair_out() {
        let m = manifest();
        let record = &m.targets[0];
        let base = timings(&[
            (Some(100.0), 50.0),
            (Some(102.0), 51.0),
            (Some(98.0), 49.0),
            (Some(101.0), 50.0),
        ]);
        let post = timings(&[
            (Some(150.0), 50.0),
            (None, 51.5),
            (Some(146.0), 49.0),
            (Some(152.0), 50.0),
        ]);
        let rows = rows(record, &record.thresholds, &base, &post, &context(true));
        let server = rows
            .iter()
            .find(|r| r.metric == Metric::ServerCpu)
            .expect("the server's row");
        assert_eq!(server.pair_log_ratios.len(), 3, "{server:?}");
        // the baseline's figure from the same three runs: 100, 98 and 101, not 102
        assert_eq!(server.baseline, 100_000.0, "{server:?}");
        assert_eq!(server.judgement.verdict, Verdict::Regression, "{server:?}");
    }

    /// Two sessions of two runs each give no interval of their own: nothing is judged. A
    /// server on another machine leaves only the program's row.
    #[test]
    fn too_few_runs_or_a_remote_server_leave_rows_out() {
        let m = manifest();
        let record = &m.targets[0];
        let two = timings(&[(Some(100.0), 50.0), (Some(100.0), 50.0)]);
        assert!(rows(record, &record.thresholds, &two, &two, &context(false)).is_empty());
        let remote = timings(&[(None, 50.0), (None, 51.0), (None, 49.0)]);
        let rows = rows(
            record,
            &record.thresholds,
            &remote,
            &remote,
            &context(false),
        );
        assert_eq!(
            rows.iter().map(|r| r.metric).collect::<Vec<_>>(),
            [Metric::ProgramCpu]
        );
        assert_eq!(rows[0].judgement.verdict, Verdict::Pass);
    }
}

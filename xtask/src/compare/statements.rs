//! Statements per iteration, compared between the two runs: counts, not timings, so host noise
//! neither hides nor fakes a change. A benchmark that issues more statements per iteration
//! than its baseline fires a regression signal naming the statements that appeared or grew;
//! fewer is reported as an improvement. Rows, buffers, writing transactions and the CPU split
//! are shown beside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::profiles::{Signal, SignalKind};
use crate::pipeline::counting::{BenchmarkCost, DatabaseFile, PerIteration};
use crate::pipeline::database_report::{count, shorten};

/// The smallest change in statements per iteration that counts: half a statement. Whole
/// statements are the unit; what moves by less is background work (the fallback polls) or
/// batching that differs from run to run, spread over thousands of iterations.
pub const STATEMENT_STEP: f64 = 0.5;

/// …and at least this fraction of the benchmark's statements per iteration. A benchmark of
/// thousands of statements per iteration that polls (a burst of 50 tasks, a worker draining
/// its queue) moves by a few statements with the timing of its polls: an unchanged tree
/// measured +0.1 … +0.5 % (2026-12-07); one extra statement per step of a 4-step task is +2.6 %.
pub const STATEMENT_SHARE: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Unchanged,
    More,
    Fewer,
}

/// One benchmark counted in both runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementRow {
    pub target: String,
    pub benchmark: String,
    pub baseline: PerIteration,
    pub post: PerIteration,
    /// Statements whose calls per iteration moved by at least [`STATEMENT_STEP`].
    pub changed: Vec<StatementChange>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementChange {
    pub query: String,
    pub toplevel: bool,
    /// Calls per iteration.
    pub before: f64,
    pub after: f64,
}

impl StatementRow {
    /// Statements per iteration, the program's and nested ones together.
    fn total(p: &PerIteration) -> f64 {
        p.statements + p.nested_statements
    }
}

/// The rows of every benchmark counted in both runs, and one signal per row.
pub fn compare(base: &DatabaseFile, post: &DatabaseFile) -> (Vec<StatementRow>, Vec<Signal>) {
    let mut rows = Vec::new();
    for t in &post.targets {
        let Some(bt) = base.targets.iter().find(|b| b.name == t.name) else {
            continue;
        };
        for p in t.benchmarks.iter().filter(|b| b.unavailable.is_none()) {
            let found = bt
                .benchmarks
                .iter()
                .find(|b| b.benchmark == p.benchmark && b.unavailable.is_none());
            if let Some(b) = found {
                rows.push(row(&t.name, b, p));
            }
        }
    }
    let signals = rows.iter().map(signal).collect();
    (rows, signals)
}

fn row(target: &str, base: &BenchmarkCost, post: &BenchmarkCost) -> StatementRow {
    let calls = |b: &BenchmarkCost| -> BTreeMap<(String, bool), f64> {
        b.statements
            .iter()
            .map(|s| ((s.query.clone(), s.toplevel), s.calls))
            .collect()
    };
    let (before, after) = (calls(base), calls(post));
    let mut changed: Vec<StatementChange> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|key| StatementChange {
            query: key.0.clone(),
            toplevel: key.1,
            before: before.get(key).copied().unwrap_or(0.0),
            after: after.get(key).copied().unwrap_or(0.0),
        })
        .filter(|c| (c.after - c.before).abs() >= STATEMENT_STEP)
        .collect();
    changed.sort_by(|a, b| (b.after - b.before).total_cmp(&(a.after - a.before)));
    let before_total = StatementRow::total(&base.per_iteration);
    let delta = StatementRow::total(&post.per_iteration) - before_total;
    let step = STATEMENT_STEP.max(STATEMENT_SHARE * before_total);
    let change = if delta >= step {
        Change::More
    } else if delta <= -step {
        Change::Fewer
    } else {
        Change::Unchanged
    };
    StatementRow {
        target: target.to_owned(),
        benchmark: post.benchmark.clone(),
        baseline: base.per_iteration.clone(),
        post: post.per_iteration.clone(),
        changed,
        change,
    }
}

fn signal(r: &StatementRow) -> Signal {
    let (b, p) = (
        StatementRow::total(&r.baseline),
        StatementRow::total(&r.post),
    );
    let mut summary = format!(
        "{} → {} statements per iteration ({:+.2})",
        count(b),
        count(p),
        p - b
    );
    let grown: Vec<String> = r
        .changed
        .iter()
        .filter(|c| c.after > c.before)
        .take(3)
        .map(|c| {
            format!(
                "{}`{}` {} → {}",
                if c.before == 0.0 { "new " } else { "" },
                shorten(&c.query),
                count(c.before),
                count(c.after)
            )
        })
        .collect();
    if r.change == Change::More && !grown.is_empty() {
        summary.push_str(": ");
        summary.push_str(&grown.join("; "));
    }
    Signal {
        kind: SignalKind::MoreStatements,
        target: r.target.clone(),
        benchmark: Some(r.benchmark.clone()),
        fired: r.change == Change::More,
        summary,
        evidence: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::counting::{StatementCost, TargetCounts};

    fn bench(name: &str, statements: &[(&str, f64)]) -> BenchmarkCost {
        BenchmarkCost {
            benchmark: name.to_owned(),
            unavailable: None,
            iterations: 100,
            evicted: false,
            per_iteration: PerIteration {
                statements: statements.iter().map(|s| s.1).sum(),
                ..PerIteration::default()
            },
            statements: statements
                .iter()
                .map(|(q, calls)| StatementCost {
                    query: (*q).to_owned(),
                    toplevel: true,
                    calls: *calls,
                    rows: 0.0,
                    mean_exec_us: 1.0,
                    total_exec_us: 1.0,
                })
                .collect(),
        }
    }

    fn file(benchmarks: Vec<BenchmarkCost>) -> DatabaseFile {
        DatabaseFile {
            schema_version: 1,
            targets: vec![TargetCounts {
                name: "e2e-latency".to_owned(),
                benchmarks,
            }],
        }
    }

    #[test]
    fn one_more_statement_per_step_fires_and_names_it() {
        let base = file(vec![bench(
            "e2e/linear",
            &[("SELECT a", 4.0), ("poll", 0.02)],
        )]);
        let post = file(vec![bench(
            "e2e/linear",
            &[("SELECT a", 4.0), ("SELECT extra", 4.0), ("poll", 0.03)],
        )]);
        let (rows, signals) = compare(&base, &post);
        assert_eq!(rows[0].change, Change::More);
        assert_eq!(rows[0].changed.len(), 1, "only the new statement moved");
        assert!(signals[0].fired);
        assert!(
            signals[0].summary.contains("new `SELECT extra` 0 → 4"),
            "{}",
            signals[0].summary
        );
    }

    #[test]
    fn background_drift_below_half_a_statement_is_unchanged_and_fewer_is_an_improvement() {
        let base = file(vec![
            bench("a", &[("SELECT a", 4.0), ("poll", 0.02)]),
            bench("b", &[("SELECT a", 2.0), ("SELECT b", 1.0)]),
        ]);
        let post = file(vec![
            bench("a", &[("SELECT a", 4.0), ("poll", 0.31)]),
            bench("b", &[("SELECT a", 2.0)]),
        ]);
        let (rows, signals) = compare(&base, &post);
        assert_eq!(rows[0].change, Change::Unchanged);
        assert_eq!(rows[1].change, Change::Fewer);
        assert!(signals.iter().all(|s| !s.fired));
    }

    #[test]
    fn a_polling_benchmark_moving_by_a_fraction_of_a_percent_is_unchanged() {
        // e2e_throughput's burst of 50 tasks: a few more polls with the timing, nothing else
        let base = file(vec![bench("burst", &[("work", 7000.0), ("poll", 196.6)])]);
        let post = file(vec![bench("burst", &[("work", 7000.0), ("poll", 203.9)])]);
        let (rows, signals) = compare(&base, &post);
        assert_eq!(rows[0].change, Change::Unchanged);
        assert!(signals.iter().all(|s| !s.fired));
        // while a statement more per task of the same burst fires
        let post = file(vec![bench(
            "burst",
            &[("work", 7000.0), ("poll", 196.6), ("extra", 200.0)],
        )]);
        assert!(compare(&base, &post).1[0].fired);
    }
}

//! The judgement of a post run against a baseline: comparability first, then one timing
//! verdict per benchmark present in both, the regression signals, and the profiles side by
//! side. Produces the `Comparison` the reports are rendered from; writes nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::comparability::{self, HostPolicy};
use super::cpu_rows;
use super::model::{
    Comparison, LimitKind, Measurement, Metric, Outcome, ProfileComparison, ProfileFiles,
    RunSummary, ShareChange, Status, TimingRow, Unmatched, SCHEMA_VERSION,
};
use super::profiles::{self, Counts, Signal, SignalKind};
use super::run_dir::RunDir;
use super::verdict::{self, Side, Verdict};
use crate::criterion::{self, Estimates};
use crate::pipeline::manifest::{BenchmarkTimings, TargetRecord, TargetStatus};
use crate::plan::{Kind, Plan, Thresholds};
use crate::stats;

#[derive(Debug, Clone)]
pub struct Options {
    pub host_policy: HostPolicy,
    /// Judge with this plan's thresholds instead of those recorded in the post run.
    pub plan: Option<Plan>,
    pub command_line: Vec<String>,
    /// Where the report goes: the runs' directories are named as seen from it.
    pub report_dir: PathBuf,
}

/// The inputs of one target's differential flamegraphs.
pub struct GraphJob {
    pub target: String,
    pub before_folded: String,
    pub after_folded: String,
    pub before_svg: Option<PathBuf>,
    pub after_svg: Option<PathBuf>,
    pub title: String,
}

pub struct Judged {
    pub comparison: Comparison,
    pub graphs: Vec<GraphJob>,
}

fn summary(run: &RunDir, report_dir: &Path) -> RunSummary {
    let m = &run.manifest;
    RunSummary {
        dir: seen_from(&run.dir, report_dir),
        label: m.label.clone(),
        revision: m.git.revision.clone(),
        dirty: m.git.dirty,
        branch: m.git.branch.clone(),
        started_at: m.started_at.clone(),
        hostname: m.host.hostname.clone(),
        cpu_model: m.host.cpu_model.clone(),
        quick: m.options.quick,
        runs: m.options.runs,
        profiler: m.options.profiler,
    }
}

/// criterion's confidence interval of the typical estimate as a relative standard error.
fn relative_se(e: &Estimates) -> f64 {
    let typical = e.typical();
    let ci = &typical.confidence_interval;
    let z = stats::normal_quantile(0.5 + ci.confidence_level.clamp(0.5, 0.999) / 2.0);
    if typical.point_estimate > 0.0 && z > 0.0 {
        (ci.upper_bound - ci.lower_bound).abs() / (2.0 * z) / typical.point_estimate
    } else {
        0.0
    }
}

pub(super) fn limit_of(t: &Thresholds) -> (f64, LimitKind) {
    match t.max_change_pct {
        Some(p) => (p, LimitKind::MaxChange),
        None => (t.noise_pct, LimitKind::NoiseBand),
    }
}

/// `dir` as seen from `from` when it is `from`, inside it or beside it (`.`, `sub`,
/// `../name`), else as it is: a report names its runs without a machine's absolute paths.
fn seen_from(dir: &Path, from: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (dir, from) = (absolute(dir), absolute(from));
    if dir == from {
        return ".".to_owned();
    }
    if let Ok(inside) = dir.strip_prefix(&from) {
        return inside.display().to_string();
    }
    match (dir.parent(), from.parent(), dir.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => format!("../{}", name.to_string_lossy()),
        _ => dir.display().to_string(),
    }
}

/// What applies to every row of a comparison.
pub(super) struct RowContext<'a> {
    /// Why timings cannot be judged (different hosts), if so.
    pub(super) blocked: Option<&'a str>,
    /// Why the profiles cannot be judged function by function (recorded differently), if so.
    pub(super) profiles_blocked: Option<&'a str>,
    /// Whether either run was measured under a failed interference check.
    pub(super) busy: bool,
    /// Whether the two runs are the two sides of one paired session, run `k` of one
    /// measured right next to run `k` of the other.
    pub(super) paired: bool,
}

/// How the two runs were measured, for the report: paired in one session, or two sessions.
pub fn measurement(base: &RunDir, post: &RunDir) -> Measurement {
    match &post.manifest.pairing {
        Some(p) if comparability::paired(&base.manifest, &post.manifest) => Measurement {
            paired: true,
            pairs: Some(p.pairs),
            revision: Some(p.revision.describe()),
            description: format!(
                "paired in one session: {} of {} and the working tree, judged on each pair's ratio; {}",
                pairs_per_target(post),
                p.revision.describe(),
                pairing_kind(post)
            ),
        },
        _ => Measurement {
            paired: false,
            pairs: None,
            revision: None,
            description: format!(
                "two sessions: the baseline started {}, the post run {}; judged on each side's spread across its own runs",
                base.manifest.started_at, post.manifest.started_at
            ),
        },
    }
}

/// How many pairs each target got: "8 pairs of timing runs per target", and the targets
/// the plan gave a number of their own.
fn pairs_per_target(post: &RunDir) -> String {
    let runs: Vec<(&str, u32)> = post
        .manifest
        .targets
        .iter()
        .filter_map(|t| t.timing.as_ref().map(|r| (t.name.as_str(), r.runs)))
        .collect();
    let mut counts: Vec<u32> = runs.iter().map(|&(_, n)| n).collect();
    counts.sort_unstable();
    // The most common count is the session's; the others are named.
    let common = counts
        .chunk_by(|a, b| a == b)
        .max_by_key(|c| c.len())
        .map_or(0, |c| c[0]);
    let others: Vec<String> = runs
        .iter()
        .filter(|&&(_, n)| n != common)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    let mut text = format!("{common} pairs of timing runs per target");
    if !others.is_empty() {
        text.push_str(&format!(" ({})", others.join(", ")));
    }
    text
}

struct Lists {
    rows: Vec<TimingRow>,
    only_in_baseline: Vec<Unmatched>,
    only_in_post: Vec<Unmatched>,
    not_compared: Vec<Unmatched>,
}

fn unmatched(target: &str, benchmark: Option<&str>, reason: impl Into<String>) -> Unmatched {
    Unmatched {
        target: target.to_owned(),
        benchmark: benchmark.map(str::to_owned),
        reason: reason.into(),
    }
}

/// One benchmark in both runs: contention-corrected when every run on both sides has its
/// CPU usage recorded (otherwise both sides raw, so they stay comparable) and the target
/// does not talk to a database server on the machine: that server's work is part of the
/// benchmark and competes for the same CPUs, so the bench process's waiting for a CPU is
/// partly the workload itself (measured: 5 threads runnable-but-waiting 36 s of 57 s in
/// `sql_functions`, a "correction" to a third of the time).
fn bench_row(
    record: &TargetRecord,
    t: &Thresholds,
    base: &BenchmarkTimings,
    post: &BenchmarkTimings,
    context: &RowContext<'_>,
) -> Option<TimingRow> {
    if context.paired {
        return paired_row(record, t, base, post);
    }
    let corrected = !record.needs_database
        && base
            .runs
            .iter()
            .chain(&post.runs)
            .all(|r| r.usage.is_some());
    let values = |b: &BenchmarkTimings| -> Vec<f64> {
        b.runs
            .iter()
            .map(|r| {
                let factor = match (&r.usage, corrected) {
                    (Some(u), true) => u.contention_factor(),
                    _ => 1.0,
                };
                r.typical_ns * factor
            })
            .collect()
    };
    let availability = |b: &BenchmarkTimings| {
        let factors: Vec<f64> = b
            .runs
            .iter()
            .filter_map(|r| r.usage.as_ref().map(|u| u.contention_factor()))
            .collect();
        criterion::median(&factors)
    };
    let raw = |b: &BenchmarkTimings| {
        criterion::median(&b.runs.iter().map(|r| r.typical_ns).collect::<Vec<_>>())
    };
    let se = |b: &BenchmarkTimings| -> Vec<f64> {
        b.runs.iter().map(|r| relative_se(&r.estimates)).collect()
    };
    let mut base_side =
        Side::from_runs(&values(base), &se(base))?.with_session_noise(t.session_drift_pct);
    let mut post_side =
        Side::from_runs(&values(post), &se(post))?.with_session_noise(t.session_drift_pct);
    if context.busy {
        // Sessions on a busy machine differ by more than their own runs show.
        base_side = base_side.with_session_noise(t.noise_pct);
        post_side = post_side.with_session_noise(t.noise_pct);
    }
    let (limit, limit_kind) = limit_of(t);
    let mut judgement = verdict::judge(&base_side, &post_side, limit);
    block(&mut judgement, context.blocked);
    Some(TimingRow {
        target: record.name.clone(),
        benchmark: post.id.clone(),
        category: record.category,
        metric: metric_of(record),
        baseline: base_side.center,
        post: post_side.center,
        baseline_raw: raw(base)?,
        post_raw: raw(post)?,
        contention_corrected: corrected,
        baseline_cpu_availability: availability(base),
        post_cpu_availability: availability(post),
        limit_kind,
        baseline_side: base_side,
        post_side,
        pair_log_ratios: Vec::new(),
        judgement,
    })
}

/// How the pairs were run: sample by sample in turn (targets whose executables take turns),
/// or one whole run after the other (A B, B A, ...).
fn pairing_kind(post: &RunDir) -> String {
    let timed: Vec<&TargetRecord> = post
        .manifest
        .targets
        .iter()
        .filter(|t| t.timing.is_some())
        .collect();
    let turns: Vec<&str> = timed
        .iter()
        .filter(|t| t.timing.as_ref().is_some_and(|r| r.turns))
        .map(|t| t.name.as_str())
        .collect();
    match (turns.len(), timed.len()) {
        (0, _) => "the two runs of a pair one after the other (A B, B A, ...)".to_owned(),
        (n, m) if n == m => "the two runs of a pair at the same time, taking turns sample by sample".to_owned(),
        _ => format!(
            "the two runs of a pair at the same time, taking turns sample by sample, for {}; one after the other (A B, B A, ...) for the rest",
            turns.join(", ")
        ),
    }
}

fn metric_of(record: &TargetRecord) -> Metric {
    match record.kind {
        Kind::Bench => Metric::CriterionTime,
        Kind::Test => Metric::TestCpuTime,
    }
}

/// A row's values in its metric's unit: timings.json holds ns, a test's CPU time is
/// reported in seconds.
fn in_unit(mut row: TimingRow) -> TimingRow {
    if row.metric == Metric::TestCpuTime {
        for v in [
            &mut row.baseline,
            &mut row.post,
            &mut row.baseline_raw,
            &mut row.post_raw,
        ] {
            *v /= 1e9;
        }
    }
    row
}

/// One benchmark of a paired session: run `k` of each side form pair `k`, and the verdict
/// comes from the pairs' log ratios alone (see `verdict::judge_paired`). Nothing is
/// corrected for contention: whatever the machine did, it did to both runs of a pair.
fn paired_row(
    record: &TargetRecord,
    t: &Thresholds,
    base: &BenchmarkTimings,
    post: &BenchmarkTimings,
) -> Option<TimingRow> {
    let typical = |b: &BenchmarkTimings| -> Vec<(u32, f64)> {
        b.runs.iter().map(|r| (r.run, r.typical_ns)).collect()
    };
    let ratios = cpu_rows::pair_log_ratios(&typical(base), &typical(post));
    if ratios.is_empty() {
        return None;
    }
    let values = |b: &BenchmarkTimings| b.runs.iter().map(|r| r.typical_ns).collect::<Vec<_>>();
    let se = |b: &BenchmarkTimings| -> Vec<f64> {
        b.runs.iter().map(|r| relative_se(&r.estimates)).collect()
    };
    let base_side = Side::from_runs(&values(base), &se(base))?;
    let post_side = Side::from_runs(&values(post), &se(post))?;
    let (limit, limit_kind) = limit_of(t);
    let judgement = verdict::judge_paired(&ratios, limit);
    Some(uncorrected_row(
        record,
        &post.id,
        metric_of(record),
        (base_side, post_side),
        limit_kind,
        ratios,
        judgement,
    ))
}

/// A row compared as measured (no contention correction): the sides' centres are the values.
pub(super) fn uncorrected_row(
    record: &TargetRecord,
    benchmark: &str,
    metric: Metric,
    (baseline_side, post_side): (Side, Side),
    limit_kind: LimitKind,
    pair_log_ratios: Vec<f64>,
    judgement: verdict::Judgement,
) -> TimingRow {
    TimingRow {
        target: record.name.clone(),
        benchmark: benchmark.to_owned(),
        category: record.category,
        metric,
        baseline: baseline_side.center,
        post: post_side.center,
        baseline_raw: baseline_side.center,
        post_raw: post_side.center,
        contention_corrected: false,
        baseline_cpu_availability: None,
        post_cpu_availability: None,
        limit_kind,
        baseline_side,
        post_side,
        pair_log_ratios,
        judgement,
    }
}

/// A different host (when not allowed) leaves the numbers for information only.
pub(super) fn block(judgement: &mut verdict::Judgement, blocked: Option<&str>) {
    if let Some(reason) = blocked {
        judgement.verdict = Verdict::Inconclusive;
        judgement.reason = reason.to_owned();
        judgement.runs_needed = None;
    }
}

/// A test target has no criterion timing; its profiled run's CPU time stands in, with the
/// category's noise limit as its assumed noise (one run per side, nothing to measure it by).
fn test_row(
    base_run: &RunDir,
    post_run: &RunDir,
    b: &TargetRecord,
    p: &TargetRecord,
    t: &Thresholds,
    blocked: Option<&str>,
) -> Option<TimingRow> {
    let cpu = |run: &RunDir, r: &TargetRecord| {
        let samples = r.profile.as_ref()?.samples?;
        let hz = f64::from(run.manifest.options.sample_frequency_hz.max(1));
        Some((samples as f64 / hz, samples))
    };
    let (bv, bn) = cpu(base_run, b)?;
    let (pv, pn) = cpu(post_run, p)?;
    let base_side = Side::single(bv, t.noise_pct, bn)?.with_session_noise(t.session_drift_pct);
    let post_side = Side::single(pv, t.noise_pct, pn)?.with_session_noise(t.session_drift_pct);
    let (limit, limit_kind) = limit_of(t);
    let mut judgement = verdict::judge(&base_side, &post_side, limit);
    block(&mut judgement, blocked);
    Some(TimingRow {
        target: p.name.clone(),
        benchmark: "CPU time of the test run".to_owned(),
        category: p.category,
        metric: Metric::TestCpuTime,
        baseline: bv,
        post: pv,
        baseline_raw: bv,
        post_raw: pv,
        contention_corrected: false,
        baseline_cpu_availability: None,
        post_cpu_availability: None,
        limit_kind,
        baseline_side: base_side,
        post_side,
        pair_log_ratios: Vec::new(),
        judgement,
    })
}

/// Lifecycle modules and kinds of work, where either run has some, computed from both runs'
/// folded stacks with today's rules, so a change in how frames are classified never shows
/// up as a change in the code measured (each run's analysis.json keeps what its own version
/// of the rules said).
fn shares(fb: &str, fp: &str, hot_path_pct: f64) -> Result<Vec<ShareChange>> {
    let opts = crate::analysis::Options {
        hot_path_pct,
        first_frame_is_process: true,
    };
    let (b, p) = (
        crate::analysis::analyse(fb, opts)?,
        crate::analysis::analyse(fp, opts)?,
    );
    let mut out = Vec::new();
    for (group, before, after) in [
        (
            "lifecycle module",
            &b.lifecycle_modules,
            &p.lifecycle_modules,
        ),
        ("kind of work", &b.categories, &p.categories),
    ] {
        for a in after {
            let before_pct = before
                .iter()
                .find(|s| s.name == a.name)
                .map_or(0.0, |s| s.pct);
            if before_pct > 0.0 || a.pct > 0.0 {
                out.push(ShareChange {
                    group: group.to_owned(),
                    name: a.name.replace('_', " "),
                    before_pct,
                    after_pct: a.pct,
                });
            }
        }
    }
    Ok(out)
}

fn status_reason(role: &str, r: &TargetRecord) -> Option<String> {
    match r.status {
        TargetStatus::Failed => Some(format!(
            "failed in the {role}: {}",
            r.error.as_deref().unwrap_or("no error recorded")
        )),
        TargetStatus::Skipped => Some(format!(
            "skipped in the {role}: {}",
            r.notes.first().map_or("no reason recorded", String::as_str)
        )),
        TargetStatus::Ok | TargetStatus::Noisy => None,
    }
}

fn thresholds_for<'a>(opts: &'a Options, p: &'a TargetRecord) -> &'a Thresholds {
    opts.plan
        .as_ref()
        .and_then(|plan| plan.targets.iter().find(|t| t.name == p.name))
        .map_or(&p.thresholds, |t| &t.thresholds)
}

/// `--plan` given to re-threshold must describe the same targets the runs measured.
fn check_plan(plan: &Plan, post: &RunDir) -> Result<()> {
    for t in &plan.targets {
        if let Some(r) = post.target(&t.name) {
            if r.package != t.package
                || r.kind != t.kind
                || r.binary != t.binary
                || r.filter != t.filter
                || r.category != t.category
            {
                bail!(
                    "{}: target `{}` is defined differently from the one the post run measured ({}); pass the plan the runs used, or none to use the recorded thresholds",
                    plan.path.display(),
                    t.name,
                    r.cargo_command
                );
            }
        }
    }
    Ok(())
}

/// Everything the per-target steps add to.
struct Collected {
    lists: Lists,
    signals: Vec<Signal>,
    profiles: Vec<ProfileComparison>,
    graphs: Vec<GraphJob>,
}

pub fn judge(base: &RunDir, post: &RunDir, opts: &Options) -> Result<Judged> {
    let mut comparability = comparability::check(&base.manifest, &post.manifest, opts.host_policy)?;
    if let Some(plan) = &opts.plan {
        check_plan(plan, post)?;
    }
    let measured = measurement(base, post);
    let context = RowContext {
        blocked: comparability.timings_blocked.as_deref(),
        profiles_blocked: comparability.profiles_blocked.as_deref(),
        // A busy machine shifts a whole session; the two sides of a paired one alike.
        busy: !measured.paired
            && [&base.manifest, &post.manifest]
                .iter()
                .any(|m| m.interference.worst == crate::interference::Status::Fail),
        paired: measured.paired,
    };
    let mut out = Collected {
        lists: Lists {
            rows: Vec::new(),
            only_in_baseline: Vec::new(),
            only_in_post: Vec::new(),
            not_compared: Vec::new(),
        },
        signals: Vec::new(),
        profiles: Vec::new(),
        graphs: Vec::new(),
    };
    for p in &post.manifest.targets {
        judge_target(base, post, p, opts, &context, &mut out)?;
    }
    for b in &base.manifest.targets {
        if post.target(&b.name).is_none() {
            out.lists.only_in_baseline.push(unmatched(
                &b.name,
                None,
                "target not in the post run (--only, or removed from the plan)",
            ));
        }
    }
    let latency = latency_signals(&out.lists.rows, post, opts, context.blocked);
    out.signals.extend(latency);
    let (statements, statement_signals) = match (&base.database, &post.database) {
        (Some(b), Some(p)) => super::statements::compare(b, p),
        _ => (Vec::new(), Vec::new()),
    };
    out.signals.extend(statement_signals);
    if let Some(finding) = contention_finding(base, post).filter(|_| !measured.paired) {
        comparability.findings.push(finding);
    }

    let mut comparison = Comparison {
        schema_version: SCHEMA_VERSION,
        generated_at: crate::clock::now_rfc3339(),
        command_line: opts.command_line.clone(),
        baseline: summary(base, &opts.report_dir),
        post: summary(post, &opts.report_dir),
        comparability,
        measurement: measured,
        timings: out.lists.rows,
        only_in_baseline: out.lists.only_in_baseline,
        only_in_post: out.lists.only_in_post,
        not_compared: out.lists.not_compared,
        signals: out.signals,
        statements,
        profiles: out.profiles,
        outcome: Outcome {
            status: Status::Pass,
            exit_code: 0,
            passes: 0,
            improvements: 0,
            inconclusive: 0,
            regressions: 0,
            signals_fired: 0,
            message: String::new(),
        },
    };
    comparison.outcome = outcome(&comparison);
    Ok(Judged {
        comparison,
        graphs: out.graphs,
    })
}

/// One target of the post run against the baseline: its timing rows (or why none), and its
/// profiles side by side.
fn judge_target(
    base: &RunDir,
    post: &RunDir,
    p: &TargetRecord,
    opts: &Options,
    context: &RowContext<'_>,
    out: &mut Collected,
) -> Result<()> {
    let Some(b) = base.target(&p.name) else {
        out.lists
            .only_in_post
            .push(unmatched(&p.name, None, "target not in the baseline"));
        return Ok(());
    };
    if let Some(reason) = status_reason("baseline", b).or_else(|| status_reason("post run", p)) {
        out.lists
            .not_compared
            .push(unmatched(&p.name, None, reason));
        return Ok(());
    }
    let t = thresholds_for(opts, p);
    match p.kind {
        Kind::Bench => bench_rows(base, post, p, t, context, &mut out.lists),
        // Test targets timed by the timing pass (CPU time per run) are judged like
        // benchmarks; runs recorded before that by their profiles' sample counts.
        Kind::Test if has_timings(base, post, &p.name) => {
            bench_rows(base, post, p, t, context, &mut out.lists)
        }
        Kind::Test => match test_row(base, post, b, p, t, context.blocked) {
            Some(row) => out.lists.rows.push(row),
            None => out.lists.not_compared.push(unmatched(
                &p.name,
                None,
                "no profile sample counts to compare (profiler samply or none)",
            )),
        },
    }
    let first_signal = out.signals.len();
    compare_profiles(base, post, b, p, t, out)?;
    if context.profiles_blocked.is_some() {
        profiles::not_judged(&mut out.signals[first_signal..]);
    }
    Ok(())
}

fn has_timings(base: &RunDir, post: &RunDir, name: &str) -> bool {
    [base, post]
        .iter()
        .all(|run| run.timings.targets.iter().any(|t| t.name == name))
}

/// The rows of a bench target: one per benchmark in both runs; the others are listed as
/// appeared or disappeared.
fn bench_rows(
    base: &RunDir,
    post: &RunDir,
    p: &TargetRecord,
    t: &Thresholds,
    context: &RowContext<'_>,
    lists: &mut Lists,
) {
    let tb = base.timings.targets.iter().find(|x| x.name == p.name);
    let tp = post.timings.targets.iter().find(|x| x.name == p.name);
    let (Some(tb), Some(tp)) = (tb, tp) else {
        lists.not_compared.push(unmatched(
            &p.name,
            None,
            format!(
                "no timings in the {}",
                if tb.is_none() { "baseline" } else { "post run" }
            ),
        ));
        return;
    };
    for bb in &tb.benchmarks {
        match tp.benchmarks.iter().find(|x| x.id == bb.id) {
            Some(pb) => {
                match bench_row(p, t, bb, pb, context) {
                    Some(row) => lists.rows.push(in_unit(row)),
                    None => lists.not_compared.push(unmatched(
                        &p.name,
                        Some(&bb.id),
                        "no usable estimates (zero or missing)",
                    )),
                }
                lists.rows.extend(cpu_rows::rows(p, t, bb, pb, context));
            }
            None => lists.only_in_baseline.push(unmatched(
                &p.name,
                Some(&bb.id),
                "benchmark not measured in the post run (removed or renamed?)",
            )),
        }
    }
    for pb in &tp.benchmarks {
        if !tb.benchmarks.iter().any(|x| x.id == pb.id) {
            lists.only_in_post.push(unmatched(
                &p.name,
                Some(&pb.id),
                "new benchmark, not in the baseline",
            ));
        }
    }
}

/// A target's profiles side by side: movers, shares, signals and the graphs to draw.
fn compare_profiles(
    base: &RunDir,
    post: &RunDir,
    b: &TargetRecord,
    p: &TargetRecord,
    t: &Thresholds,
    out: &mut Collected,
) -> Result<()> {
    let (fb, fp) = match (base.folded(b)?, post.folded(p)?) {
        (Some(fb), Some(fp)) => (fb, fp),
        (fb, _) => {
            let missing = if fb.is_some() { "post run" } else { "baseline" };
            out.profiles.push(ProfileComparison {
                target: p.name.clone(),
                baseline_samples: 0,
                post_samples: 0,
                movers: Vec::new(),
                shares: Vec::new(),
                files: ProfileFiles::default(),
                blocked_movers: Vec::new(),
                notes: vec![format!(
                    "profiles not compared: no folded stacks in the {missing} (profilers: {} and {}); profile signals not evaluated",
                    base.manifest.options.profiler.name(),
                    post.manifest.options.profiler.name()
                )],
            });
            return Ok(());
        }
    };
    let parse = |text: &str, run: &RunDir| {
        Counts::parse(text).with_context(|| {
            format!(
                "the folded stacks of `{}` in {} are damaged",
                p.name,
                run.dir.display()
            )
        })
    };
    let (cb, cp) = (parse(&fb, base)?, parse(&fp, post)?);
    out.signals.extend(profiles::signals(&p.name, &cb, &cp, t));
    let mut notes = Vec::new();
    let mut blocked_movers = Vec::new();
    match (base.offcpu_folded(b)?, post.offcpu_folded(p)?) {
        (Some((fb, wb)), Some((fp, wp))) => {
            let parse = |text: &str, wall: f64, run: &RunDir| {
                profiles::Blocked::parse(text, wall).with_context(|| {
                    format!(
                        "the off-CPU stacks of `{}` in {} are damaged",
                        p.name,
                        run.dir.display()
                    )
                })
            };
            let (ob, op) = (parse(&fb, wb, base)?, parse(&fp, wp, post)?);
            out.signals
                .push(profiles::lock_wait_growth(&p.name, &ob, &op));
            blocked_movers = profiles::blocked_movers(&ob, &op, profiles::MOVERS);
        }
        (None, None) => {}
        (ob, _) => notes.push(format!(
            "blocked time not compared: no off-CPU profile in the {}",
            if ob.is_some() { "post run" } else { "baseline" }
        )),
    }
    out.profiles.push(ProfileComparison {
        target: p.name.clone(),
        baseline_samples: cb.samples,
        post_samples: cp.samples,
        movers: profiles::movers(&cb, &cp, profiles::MOVERS),
        shares: shares(&fb, &fp, t.hot_path_pct)?,
        files: ProfileFiles::default(),
        notes,
        blocked_movers,
    });
    out.graphs.push(GraphJob {
        target: p.name.clone(),
        before_folded: fb,
        after_folded: fp,
        before_svg: base.file(b.profile.as_ref().and_then(|x| x.flamegraph.as_ref())),
        after_svg: post.file(p.profile.as_ref().and_then(|x| x.flamegraph.as_ref())),
        title: format!(
            "{}: {} → {}",
            p.name, base.manifest.label, post.manifest.label
        ),
    });
    Ok(())
}

/// The plan's "E2E latency > 20 % slower", for every target that has such a limit.
fn latency_signals(
    rows: &[TimingRow],
    post: &RunDir,
    opts: &Options,
    blocked: Option<&str>,
) -> Vec<Signal> {
    let mut signals = Vec::new();
    for row in rows.iter().filter(|r| r.metric == Metric::CriterionTime) {
        let Some(p) = post.target(&row.target) else {
            continue;
        };
        let Some(limit) = thresholds_for(opts, p).regression_pct else {
            continue;
        };
        let judged = blocked.is_none();
        let fired = judged && row.judgement.low_pct > limit;
        signals.push(Signal {
            kind: SignalKind::E2eSlower,
            target: row.target.clone(),
            benchmark: Some(row.benchmark.clone()),
            fired,
            summary: if !judged {
                "not judged: the timings are not comparable (see comparability)".to_owned()
            } else if fired {
                format!(
                    "{:+.1}% (at least {:+.1}%) is more than the {limit:.0}% regression limit",
                    row.judgement.change_pct, row.judgement.low_pct
                )
            } else {
                format!(
                    "{:+.1}% (at least {:+.1}%): not beyond the {limit:.0}% regression limit",
                    row.judgement.change_pct, row.judgement.low_pct
                )
            },
            evidence: Vec::new(),
        });
    }
    signals
}

/// Says so when a run lacks the CPU usage the contention correction needs.
fn contention_finding(base: &RunDir, post: &RunDir) -> Option<comparability::Finding> {
    let recorded = |run: &RunDir| {
        run.timings
            .targets
            .iter()
            .flat_map(|t| &t.benchmarks)
            .flat_map(|b| &b.runs)
            .all(|r| r.usage.is_some())
    };
    let (b, p) = (recorded(base), recorded(post));
    let name = |yes: bool| if yes { "recorded" } else { "not recorded" }.to_owned();
    (!b || !p).then(|| comparability::Finding {
        aspect: "CPU contention data".to_owned(),
        baseline: name(b),
        post: name(p),
        effect: "timings compared as measured, without taking out waiting for a CPU".to_owned(),
    })
}

/// Exit 1 when any benchmark regressed or any signal fired, else 0; the message is the
/// line printed last.
pub fn outcome(c: &Comparison) -> Outcome {
    let regressions: Vec<String> = c
        .timings
        .iter()
        .filter(|r| r.judgement.verdict == Verdict::Regression)
        .map(|r| {
            format!(
                "{} `{}` {:+.1}% (limit +{:.0}%)",
                r.target, r.benchmark, r.judgement.change_pct, r.judgement.limit_pct
            )
        })
        .collect();
    let fired: Vec<String> = c
        .signals
        .iter()
        .filter(|s| s.fired)
        .map(|s| match &s.benchmark {
            Some(b) => format!("{} in {} `{b}`", s.kind.label(), s.target),
            None => format!("{} in {}", s.kind.label(), s.target),
        })
        .collect();
    let counts = format!(
        "{} pass, {} improvement, {} inconclusive, {} regression",
        c.count(Verdict::Pass),
        c.count(Verdict::Improvement),
        c.count(Verdict::Inconclusive),
        c.count(Verdict::Regression)
    );
    let failed = !regressions.is_empty() || !fired.is_empty();
    let message = if failed {
        let mut parts = regressions;
        if !fired.is_empty() {
            parts.push(format!("signal fired: {}", fired.join("; ")));
        }
        format!("{} ({counts})", parts.join("; "))
    } else {
        format!(
            "no regression and no regression signal ({counts}{})",
            if c.count(Verdict::Inconclusive) > 0 {
                "; inconclusive verdicts are warnings, see above"
            } else {
                ""
            }
        )
    };
    Outcome {
        status: if failed {
            Status::Regression
        } else {
            Status::Pass
        },
        exit_code: u8::from(failed),
        passes: c.count(Verdict::Pass),
        improvements: c.count(Verdict::Improvement),
        inconclusive: c.count(Verdict::Inconclusive),
        regressions: c.count(Verdict::Regression),
        signals_fired: fired.len(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::run_dir::Role;
    use crate::compare::testdata::{benchmark, manifest, run};

    fn options() -> Options {
        Options {
            host_policy: HostPolicy::SameHost,
            plan: None,
            command_line: Vec::new(),
            report_dir: PathBuf::from("/runs/post"),
        }
    }

    #[test]
    fn run_directories_are_named_as_seen_from_the_report() {
        let report = Path::new("/runs/post");
        assert_eq!(seen_from(Path::new("/runs/post"), report), ".");
        assert_eq!(
            seen_from(Path::new("/runs/post-against"), report),
            "../post-against"
        );
        assert_eq!(seen_from(Path::new("/runs/post/sub"), report), "sub");
        assert_eq!(seen_from(Path::new("/elsewhere/x"), report), "/elsewhere/x");
    }

    #[test]
    fn benchmarks_in_one_run_only_are_listed() {
        let base = run(
            Role::Baseline,
            manifest(),
            vec![
                benchmark("kept", &[(100.0, None), (101.0, None), (99.0, None)]),
                benchmark("removed", &[(50.0, None), (50.0, None), (50.0, None)]),
            ],
        );
        let mut post_manifest = manifest();
        let mut extra = post_manifest.targets[0].clone();
        extra.name = "new-target".to_owned();
        post_manifest.targets.push(extra);
        let post = run(
            Role::Post,
            post_manifest,
            vec![
                benchmark("kept", &[(100.0, None), (100.0, None), (100.5, None)]),
                benchmark("added", &[(10.0, None), (10.0, None), (10.0, None)]),
            ],
        );
        let c = judge(&base, &post, &options()).expect("judged").comparison;
        let rows: Vec<&str> = c.timings.iter().map(|r| r.benchmark.as_str()).collect();
        assert_eq!(rows, ["kept"]);
        assert_eq!(c.timings[0].judgement.verdict, Verdict::Pass);
        assert_eq!(c.only_in_baseline.len(), 1);
        assert_eq!(c.only_in_baseline[0].benchmark.as_deref(), Some("removed"));
        let appeared: Vec<(&str, Option<&str>)> = c
            .only_in_post
            .iter()
            .map(|u| (u.target.as_str(), u.benchmark.as_deref()))
            .collect();
        assert_eq!(appeared, [("bench", Some("added")), ("new-target", None)]);
        assert_eq!(c.outcome.exit_code, 0);
    }

    #[test]
    fn contention_is_taken_out_when_both_runs_measured_it() {
        // The post run waited half its time for a CPU: twice the wall time, same work.
        let base = run(
            Role::Baseline,
            manifest(),
            vec![benchmark(
                "b",
                &[(100.0, Some(1.0)), (101.0, Some(1.0)), (99.0, Some(1.0))],
            )],
        );
        let post = run(
            Role::Post,
            manifest(),
            vec![benchmark(
                "b",
                &[(200.0, Some(0.5)), (202.0, Some(0.5)), (198.0, Some(0.5))],
            )],
        );
        let c = judge(&base, &post, &options()).expect("judged").comparison;
        let row = &c.timings[0];
        assert!(row.contention_corrected);
        assert!((row.post - 100.0).abs() < 1e-6, "{row:?}");
        assert_eq!(row.judgement.verdict, Verdict::Pass, "{row:?}");
        assert_eq!(c.outcome.exit_code, 0);

        // Without the baseline's data both sides stay raw, and the doubling is a regression.
        let raw_base = run(
            Role::Baseline,
            manifest(),
            vec![benchmark(
                "b",
                &[(100.0, None), (101.0, None), (99.0, None)],
            )],
        );
        let c = judge(&raw_base, &post, &options())
            .expect("judged")
            .comparison;
        assert!(!c.timings[0].contention_corrected);
        assert!(
            c.comparability
                .findings
                .iter()
                .any(|f| f.aspect == "CPU contention data" && f.baseline == "not recorded"),
            "{:?}",
            c.comparability.findings
        );
        assert_eq!(c.timings[0].judgement.verdict, Verdict::Regression);
        assert_eq!(c.outcome.exit_code, 1);
        assert!(
            c.outcome.message.contains("bench `b`"),
            "{}",
            c.outcome.message
        );
    }

    #[test]
    fn a_database_bench_is_not_corrected() {
        let with_db = || {
            let mut m = manifest();
            m.targets[0].needs_database = true;
            m
        };
        let base = run(
            Role::Baseline,
            with_db(),
            vec![benchmark(
                "b",
                &[(100.0, Some(1.0)), (101.0, Some(1.0)), (99.0, Some(1.0))],
            )],
        );
        let post = run(
            Role::Post,
            with_db(),
            vec![benchmark(
                "b",
                &[(100.0, Some(0.4)), (101.0, Some(0.4)), (99.0, Some(0.4))],
            )],
        );
        let c = judge(&base, &post, &options()).expect("judged").comparison;
        let row = &c.timings[0];
        assert!(!row.contention_corrected, "{row:?}");
        assert!((row.post - 100.0).abs() < 1e-6);
        assert_eq!(row.judgement.verdict, Verdict::Pass);
        assert!(
            c.comparability.findings.is_empty(),
            "the data was recorded: {:?}",
            c.comparability.findings
        );
    }

    #[test]
    fn a_different_host_leaves_timings_inconclusive() {
        let base = run(
            Role::Baseline,
            manifest(),
            vec![benchmark(
                "b",
                &[(100.0, None), (101.0, None), (99.0, None)],
            )],
        );
        let mut m = manifest();
        m.host.hostname = Some("elsewhere".to_owned());
        let post = run(
            Role::Post,
            m,
            vec![benchmark(
                "b",
                &[(300.0, None), (301.0, None), (299.0, None)],
            )],
        );
        let c = judge(&base, &post, &options()).expect("judged").comparison;
        assert_eq!(c.timings[0].judgement.verdict, Verdict::Inconclusive);
        assert_eq!(c.outcome.exit_code, 0, "not judged, so not failed");
        let allowed = Options {
            host_policy: HostPolicy::Any,
            ..options()
        };
        let c = judge(&base, &post, &allowed).expect("judged").comparison;
        assert_eq!(c.timings[0].judgement.verdict, Verdict::Regression);
    }

    #[test]
    fn a_busy_machine_widens_the_interval() {
        let runs = |ns: f64| {
            vec![benchmark(
                "b",
                &[(ns, None), (ns * 1.01, None), (ns * 0.99, None)],
            )]
        };
        let quiet = judge(
            &run(Role::Baseline, manifest(), runs(100.0)),
            &run(Role::Post, manifest(), runs(125.0)),
            &options(),
        )
        .expect("judged")
        .comparison;
        assert_eq!(quiet.timings[0].judgement.verdict, Verdict::Regression);
        let mut busy = manifest();
        busy.interference.worst = crate::interference::Status::Fail;
        let c = judge(
            &run(Role::Baseline, manifest(), runs(100.0)),
            &run(Role::Post, busy, runs(125.0)),
            &options(),
        )
        .expect("judged")
        .comparison;
        let j = &c.timings[0].judgement;
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(j.noise_pct > quiet.timings[0].judgement.noise_pct);
    }

    #[test]
    fn the_plans_session_drift_widens_two_sessions() {
        let runs = |ns: f64| {
            vec![benchmark(
                "b",
                &[(ns, None), (ns * 1.01, None), (ns * 0.99, None)],
            )]
        };
        let judged = |drift: f64| {
            let mut post = manifest();
            post.targets[0].thresholds.session_drift_pct = drift;
            judge(
                &run(Role::Baseline, manifest(), runs(100.0)),
                &run(Role::Post, post, runs(140.0)),
                &options(),
            )
            .expect("judged")
            .comparison
            .timings[0]
                .judgement
                .clone()
        };
        // Without a drift, runs that agree within each session make 40 % a regression.
        assert_eq!(judged(0.0).verdict, Verdict::Regression);
        // Unchanged code that lands 40 % slower in another session is what this host does.
        let j = judged(45.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert_eq!(j.runs_needed, Some(verdict::RunsNeeded::OneSession));
        assert!(j.low_pct < 0.0, "the interval covers no change: {j:?}");
    }
}

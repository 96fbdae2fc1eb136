//! Human-readable output of a run, all derived from the measured data: `summary.md` in the
//! output directory, the final table on stdout, and the plan's Phase 2 document
//! `docs/observability/lifecycle-performance-baseline.md`.

use std::fmt::Write as _;
use std::path::Path;

use super::counting::DatabaseFile;
use super::manifest::{AnalysisFile, Manifest, TargetStatus, Timings};
use crate::analysis::{Analysis, FunctionShare};
use crate::plan::Kind;

/// Rows shown in the summary's function tables.
const ROWS: usize = 10;

pub fn ns(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.3} s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.3} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.3} µs", v / 1e3)
    } else {
        format!("{v:.1} ns")
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |p| format!("{p:.1}%"))
}

/// Function names can hold `|` and `<…>`; keep Markdown tables intact.
fn code(name: &str) -> String {
    format!("`{}`", name.replace('`', "'").replace('|', "\\|"))
}

fn revision(m: &Manifest) -> String {
    match (&m.git.revision, m.git.dirty) {
        (Some(rev), Some(true)) => format!("{rev} (dirty)"),
        (Some(rev), _) => rev.clone(),
        (None, _) => "not a git checkout".to_owned(),
    }
}

fn header(out: &mut String, m: &Manifest) {
    let _ = writeln!(out, "- Revision: {}", revision(m));
    let _ = writeln!(out, "- Recorded: {} → {}", m.started_at, m.finished_at);
    let _ = writeln!(
        out,
        "- Toolchain: {} ({})",
        m.toolchain.rustc, m.toolchain.host_triple
    );
    let _ = writeln!(
        out,
        "- Host: {} {}, {}, {} logical / {} physical cores, {} MiB",
        m.host.os,
        m.host.os_version.as_deref().unwrap_or(""),
        m.host.cpu_model,
        m.host.logical_cores,
        m.host
            .physical_cores
            .map_or_else(|| "?".to_owned(), |c| c.to_string()),
        m.host.memory_bytes >> 20
    );
    let _ = writeln!(
        out,
        "- Profiler: {} at {} Hz; {} timing run(s) per bench; build profile `{}` with `{}`",
        m.options.profiler.name(),
        m.options.sample_frequency_hz,
        m.options.runs,
        m.build.cargo_profile,
        m.build.rustflags
    );
    let _ = writeln!(out, "- CPU idle: {}", m.options.cpu_idle.describe());
    if m.options.quick {
        let _ = writeln!(out, "- **Quick run** (`--quick`): short measurements, a smoke test rather than a baseline to judge against");
    }
    if m.interference.worst != crate::interference::Status::Ok {
        let _ = writeln!(
            out,
            "- Interference check: **{}**{}",
            m.interference.worst.name(),
            if m.options.allow_interference {
                " (run allowed with --allow-interference)"
            } else {
                ""
            }
        );
    }
}

fn function_table(out: &mut String, rows: &[FunctionShare], hot_pct: f64) {
    let _ = writeln!(out, "| # | Function | Self | Total |\n|---|---|---:|---:|");
    for (i, f) in rows.iter().take(ROWS).enumerate() {
        let mark = |p: f64| {
            if p >= hot_pct {
                format!("**{p:.1}%**")
            } else {
                format!("{p:.1}%")
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            i + 1,
            code(&f.function),
            mark(f.self_pct),
            mark(f.total_pct)
        );
    }
    out.push('\n');
}

fn analysis_section(out: &mut String, a: &Analysis, frequency: u32) {
    let _ = writeln!(
        out,
        "{} samples (≈ {:.2} s of CPU at {frequency} Hz), deepest stack {} frames.\n",
        a.total_samples,
        a.total_samples as f64 / f64::from(frequency.max(1)),
        a.max_stack_depth
    );
    let _ = writeln!(
        out,
        "Top functions by self time (bold: at or above {:.0}%; the {:.1}% of samples taken in the kernel or a shared library such as libc are charged to the program's function that called it):\n",
        a.hot_path_pct, a.outside_program_pct
    );
    function_table(out, &a.top_self, a.hot_path_pct);
    let _ = writeln!(out, "Top functions by total time:\n");
    function_table(out, &a.top_total, a.hot_path_pct);
    if a.hot_functions.is_empty() {
        let _ = writeln!(
            out,
            "No function reaches {:.0}% self time.\n",
            a.hot_path_pct
        );
    } else {
        let list: Vec<String> = a
            .hot_functions
            .iter()
            .map(|f| format!("{} {:.1}%", code(&f.function), f.self_pct))
            .collect();
        let _ = writeln!(
            out,
            "Called out (self time ≥ {:.0}%): {}.\n",
            a.hot_path_pct,
            list.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "| Lifecycle module | Share | | Kind of work | Share |\n|---|---:|---|---|---:|"
    );
    let rows = a.lifecycle_modules.len().max(a.categories.len());
    for i in 0..rows {
        let m = a.lifecycle_modules.get(i);
        let c = a.categories.get(i);
        let _ = writeln!(
            out,
            "| {} | {} | | {} | {} |",
            m.map_or(String::new(), |m| format!("`{}`", m.name)),
            m.map_or(String::new(), |m| format!("{:.1}%", m.pct)),
            c.map_or(String::new(), |c| c.name.replace('_', " ")),
            c.map_or(String::new(), |c| format!("{:.1}%", c.pct)),
        );
    }
    out.push('\n');
    if let Some(path) = a.hot_paths.first() {
        let _ = writeln!(
            out,
            "Hottest call path ({:.1}% of samples, leaf last):\n",
            path.pct
        );
        let _ = writeln!(out, "```\n{}\n```\n", path.frames.join("\n  → "));
    }
    if let Some(r) = a.recursion.first() {
        let _ = writeln!(
            out,
            "Recursion: {} appears up to {} times on one stack ({} samples).\n",
            code(&r.function),
            r.max_depth,
            r.samples
        );
    }
}

pub fn summary(
    m: &Manifest,
    timings: &Timings,
    analyses: &AnalysisFile,
    database: &DatabaseFile,
) -> String {
    let mut out = format!("# Profile summary: {}\n\n", m.label);
    header(&mut out, m);
    out.push_str("\n## Interference check\n\n| Status | Check | Reason |\n|---|---|---|\n");
    for f in &m.interference.findings {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            f.status.name(),
            f.check,
            f.reason.replace('|', "\\|")
        );
    }
    out.push_str("\n## Targets\n\n");
    out.push_str(&final_table(m));
    out.push_str("\n## Timings\n\nTypical time per iteration (criterion's slope, or mean), median over runs.\n\n");
    out.push_str("| Target | Benchmark | Typical | Per run | Spread | Noise limit |\n|---|---|---:|---|---:|---:|\n");
    for t in &timings.targets {
        for b in &t.benchmarks {
            let runs: Vec<String> = b.runs.iter().map(|r| ns(r.typical_ns)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0}% |",
                t.name,
                code(&b.id),
                ns(b.typical_ns),
                runs.join(", "),
                opt_pct(b.spread_pct),
                t.noise_pct
            );
        }
    }
    out.push_str("\n## Hot paths\n\n");
    for t in &analyses.targets {
        let _ = writeln!(out, "### {}\n", t.name);
        if let Some(r) = m.targets.iter().find(|r| r.name == t.name) {
            if let Some(svg) = r.profile.as_ref().and_then(|p| p.flamegraph.as_ref()) {
                let _ = writeln!(out, "Flamegraph: [{svg}]({svg})\n");
            }
        }
        analysis_section(&mut out, &t.analysis, m.options.sample_frequency_hz);
    }
    super::offcpu_report::section(&mut out, m);
    super::database_report::section(&mut out, database, m);
    out
}

/// One row per target: status and the key figures.
pub fn final_table(m: &Manifest) -> String {
    let mut out = String::from(
        "| Target | Category | Status | Build | Timing | Spread | Profile | Samples | Top self |\n",
    );
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in &m.targets {
        let secs = |s: Option<f64>| s.map_or_else(|| "–".to_owned(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.category.name(),
            r.status.name(),
            secs(r.build_secs),
            secs(r.timing.as_ref().map(|t| t.duration_secs)),
            opt_pct(r.timing.as_ref().and_then(|t| t.spread_pct)),
            secs(r.profile.as_ref().map(|p| p.duration_secs)),
            r.profile
                .as_ref()
                .and_then(|p| p.samples)
                .map_or_else(|| "–".to_owned(), |s| s.to_string()),
            match (
                &r.error,
                r.profile.as_ref().and_then(|p| p.top_self.as_ref())
            ) {
                (Some(e), _) => format!("error: {}", e.lines().next().unwrap_or_default()),
                (None, Some(top)) => format!("{} ({:.1}%)", code(&top.function), top.self_pct),
                (None, None) => r.notes.first().cloned().unwrap_or_default(),
            }
        );
    }
    out
}

/// The plan's `lifecycle-performance-baseline.md`: hot paths sorted by time, expected
/// ranges, and the figures the post-refactor run will be held to.
pub fn baseline_doc(
    m: &Manifest,
    timings: &Timings,
    analyses: &AnalysisFile,
    database: &DatabaseFile,
    dir: &Path,
) -> String {
    let mut out = String::from("# Lifecycle performance baseline\n\n");
    let _ = writeln!(
        out,
        "Generated by `cargo xtask profile-baseline` from the measurements in `{}` (manifest, criterion estimates, \
         folded stacks and flamegraphs are there). Do not edit by hand: re-run the command to refresh it.\n",
        dir.display()
    );
    header(&mut out, m);
    hot_paths(&mut out, analyses);
    super::offcpu_report::section(&mut out, m);
    super::database_report::section(&mut out, database, m);
    lifecycle_shares(&mut out, analyses);
    expected_ranges(&mut out, m, timings);
    post_refactor_targets(&mut out, m, timings);
    post_refactor_signals(&mut out, m, analyses);
    noisy_targets(&mut out, m);
    observations(&mut out, m, analyses);
    out
}

/// Functions at or above their target's hot-path threshold, hottest first.
fn hot_paths(out: &mut String, analyses: &AnalysisFile) {
    out.push_str("\n## Hot paths, sorted by time\n\nFunctions at or above their target's hot-path threshold by self time.\n\n");
    out.push_str("| Function | Target | Self | Total |\n|---|---|---:|---:|\n");
    let mut hot: Vec<(&str, &FunctionShare)> = analyses
        .targets
        .iter()
        .flat_map(|t| {
            t.analysis
                .hot_functions
                .iter()
                .map(move |f| (t.name.as_str(), f))
        })
        .collect();
    hot.sort_by(|a, b| b.1.self_pct.total_cmp(&a.1.self_pct));
    for (target, f) in &hot {
        let _ = writeln!(
            out,
            "| {} | {target} | {:.1}% | {:.1}% |",
            code(&f.function),
            f.self_pct,
            f.total_pct
        );
    }
    if hot.is_empty() {
        out.push_str("| (none above the threshold) | | | |\n");
    }
}

/// Each target's share of samples per lifecycle module and kind of work.
fn lifecycle_shares(out: &mut String, analyses: &AnalysisFile) {
    out.push_str("\n## Time per lifecycle module and kind of work\n\nShare of each target's samples with the module or kind of work on the stack.\n\n");
    let mut head = String::from("| Target |");
    let mut rule = String::from("|---|");
    if let Some(first) = analyses.targets.first() {
        for s in first
            .analysis
            .lifecycle_modules
            .iter()
            .chain(&first.analysis.categories)
        {
            let _ = write!(head, " {} |", s.name.replace('_', " "));
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for t in &analyses.targets {
        let cells: Vec<String> = t
            .analysis
            .lifecycle_modules
            .iter()
            .chain(&t.analysis.categories)
            .map(|s| format!("{:.1}%", s.pct))
            .collect();
        let _ = writeln!(out, "| {} | {} |", t.name, cells.join(" | "));
    }
}

/// Per benchmark the median typical time and the range of the runs' intervals; a test
/// target's CPU time under the profiler.
fn expected_ranges(out: &mut String, m: &Manifest, timings: &Timings) {
    out.push_str("\n## Expected ranges\n\nPer benchmark: median typical time over the runs and the range the runs' 95% confidence intervals span.\n\n");
    out.push_str("| Target | Benchmark | Typical | Expected range | Spread across runs |\n|---|---|---:|---|---:|\n");
    for t in &timings.targets {
        for b in &t.benchmarks {
            let lo = b
                .runs
                .iter()
                .map(|r| r.estimates.typical_ci().0)
                .fold(f64::INFINITY, f64::min);
            let hi = b
                .runs
                .iter()
                .map(|r| r.estimates.typical_ci().1)
                .fold(f64::NEG_INFINITY, f64::max);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} – {} | {} |",
                t.name,
                code(&b.id),
                ns(b.typical_ns),
                ns(lo),
                ns(hi),
                opt_pct(b.spread_pct)
            );
        }
    }
    for r in m.targets.iter().filter(|r| r.kind == Kind::Test) {
        if let Some(p) = &r.profile {
            let _ = writeln!(
                out,
                "\n`{}` is a test target (not timed by criterion): {} samples ≈ {:.2} s of CPU under the profiler, {:.1} s wall time.",
                r.name,
                p.samples.unwrap_or(0),
                p.samples.unwrap_or(0) as f64 / f64::from(m.options.sample_frequency_hz.max(1)),
                p.duration_secs
            );
        }
    }
}

/// The limits the post-refactor run is judged by, per benchmark.
fn post_refactor_targets(out: &mut String, m: &Manifest, timings: &Timings) {
    out.push_str("\n## Targets for the post-refactor run\n\n");
    out.push_str("| Target | Benchmark | Baseline | Success: at most | Regression above |\n|---|---|---:|---:|---:|\n");
    for t in &timings.targets {
        let Some(r) = m.targets.iter().find(|r| r.name == t.name) else {
            continue;
        };
        for b in &t.benchmarks {
            let (limit, how) = match r.thresholds.max_change_pct {
                Some(p) => (b.typical_ns * (1.0 + p / 100.0), format!("+{p:.0}%")),
                // "Unchanged": allowed to move within the noise measured across runs.
                None => {
                    let noise = b.spread_pct.unwrap_or(0.0).max(1.0);
                    (
                        b.typical_ns * (1.0 + noise / 100.0),
                        format!("within noise, +{noise:.1}%"),
                    )
                }
            };
            let regression = r.thresholds.regression_pct.map_or_else(
                || "–".to_owned(),
                |p| format!("{} (+{p:.0}%)", ns(b.typical_ns * (1.0 + p / 100.0))),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} ({how}) | {regression} |",
                t.name,
                code(&b.id),
                ns(b.typical_ns),
                ns(limit)
            );
        }
    }
}

/// The profile limits the post-refactor run is judged by, per target.
fn post_refactor_signals(out: &mut String, m: &Manifest, analyses: &AnalysisFile) {
    out.push('\n');
    for t in &analyses.targets {
        let Some(r) = m.targets.iter().find(|r| r.name == t.name) else {
            continue;
        };
        let mp = t
            .analysis
            .categories
            .iter()
            .find(|c| c.name == "message_passing")
            .map_or(0.0, |c| c.pct);
        let lifecycle: f64 = t
            .analysis
            .lifecycle_modules
            .iter()
            .map(|s| s.pct)
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "- `{}`: message passing {mp:.1}% now, at most {:.0}% after; no new function above {:.0}% self time{}{}.",
            t.name,
            r.thresholds.message_passing_max_pct,
            r.thresholds.hot_path_pct,
            if r.kind == Kind::Test {
                format!(
                    "; lifecycle CPU time within {}% of {:.2} s",
                    r.thresholds.max_change_pct.unwrap_or(0.0),
                    t.analysis.total_samples as f64 / f64::from(m.options.sample_frequency_hz.max(1))
                )
            } else {
                String::new()
            },
            if lifecycle > 0.0 {
                format!("; largest lifecycle module share {lifecycle:.1}%")
            } else {
                String::new()
            }
        );
    }
}

fn noisy_targets(out: &mut String, m: &Manifest) {
    let noisy: Vec<&str> = m
        .targets
        .iter()
        .filter(|r| r.status == TargetStatus::Noisy)
        .map(|r| r.name.as_str())
        .collect();
    if !noisy.is_empty() {
        let _ = writeln!(
            out,
            "\nNoisy targets (runs disagree by more than their noise limit; judge them with care): {}.",
            noisy.join(", ")
        );
    }
}

/// Kinds of work above their call-out threshold, and recursion.
fn observations(out: &mut String, m: &Manifest, analyses: &AnalysisFile) {
    out.push_str("\n## Observations from the data\n\n");
    let mut any = false;
    for t in &analyses.targets {
        for c in &t.analysis.categories {
            let limit = if c.name == "message_passing" {
                m.targets
                    .iter()
                    .find(|r| r.name == t.name)
                    .map_or(5.0, |r| r.thresholds.message_passing_max_pct)
            } else {
                t.analysis.hot_path_pct
            };
            if c.pct >= limit {
                any = true;
                let _ = writeln!(
                    out,
                    "- `{}`: {} code is on the stack in {:.1}% of samples.",
                    t.name,
                    c.name.replace('_', " "),
                    c.pct
                );
            }
        }
        if let Some(r) = t.analysis.recursion.first() {
            any = true;
            let _ = writeln!(
                out,
                "- `{}`: recursion in {} (up to {} deep).",
                t.name,
                code(&r.function),
                r.max_depth
            );
        }
    }
    if !any {
        out.push_str(
            "- No kind of work reaches its call-out threshold and no recursion was seen.\n",
        );
    }
}

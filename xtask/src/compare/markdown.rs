//! `comparison.md`, the verdict a person reads in a pull request: the verdict table
//! (benchmark, before, after, change, verdict), then the regression signals, then the
//! profiles with links to the differential flamegraphs. Also the shorter text printed on
//! the terminal.

use std::fmt::Write as _;

use super::model::{
    Comparison, LimitKind, Metric, ProfileComparison, RunSummary, TimingRow, Unmatched,
};
use super::profiles::Move;
use super::statements::{Change, StatementRow};
use super::verdict::Verdict;
use crate::pipeline::database_report::{count, micros, shorten};
use crate::pipeline::report::ns;

/// Function names hold `|`, `<…>` and backticks; keep Markdown tables intact.
pub fn code(name: &str) -> String {
    format!("`{}`", name.replace('`', "'").replace('|', "\\|"))
}

pub fn value(row: &TimingRow, v: f64) -> String {
    match row.metric {
        Metric::CriterionTime => ns(v),
        Metric::TestCpuTime => format!("{v:.2} s CPU"),
        Metric::ServerCpu | Metric::ProgramCpu => ns(v),
    }
}

/// The benchmark's name, with what a CPU row measures.
pub fn benchmark(row: &TimingRow) -> String {
    match row.metric.label() {
        Some(label) => format!("{} ({label})", row.benchmark),
        None => row.benchmark.clone(),
    }
}

pub fn change(row: &TimingRow) -> String {
    let j = &row.judgement;
    format!(
        "{:+.1}% ({:+.1} … {:+.1})",
        j.change_pct, j.low_pct, j.high_pct
    )
}

pub fn limit(row: &TimingRow) -> String {
    match row.limit_kind {
        LimitKind::MaxChange => format!("+{:.0}%", row.judgement.limit_pct),
        LimitKind::NoiseBand => format!("±{:.0}% (unchanged)", row.judgement.limit_pct),
    }
}

pub fn verdict(v: Verdict) -> String {
    match v {
        Verdict::Regression => "**regression**".to_owned(),
        Verdict::Inconclusive => "inconclusive ⚠".to_owned(),
        other => other.name().to_owned(),
    }
}

fn raw_change(row: &TimingRow) -> String {
    if row.contention_corrected {
        format!("{:+.1}%", (row.post_raw / row.baseline_raw - 1.0) * 100.0)
    } else {
        "–".to_owned()
    }
}

fn revision(r: &RunSummary) -> String {
    match (&r.revision, r.dirty) {
        (Some(rev), Some(true)) => format!("`{}` (dirty)", &rev[..rev.len().min(12)]),
        (Some(rev), _) => format!("`{}`", &rev[..rev.len().min(12)]),
        (None, _) => "not a git checkout".to_owned(),
    }
}

/// Why an inconclusive verdict is one, and what would settle it.
pub fn inconclusive_note(row: &TimingRow) -> String {
    let j = &row.judgement;
    let mut note = format!(
        "{} `{}`: {:+.1}% ({:+.1} … {:+.1}): {}",
        row.target,
        benchmark(row),
        j.change_pct,
        j.low_pct,
        j.high_pct,
        j.reason
    );
    if let Some(needed) = &j.runs_needed {
        let _ = write!(note, "; {}", needed.describe());
    }
    note
}

fn unmatched_list(out: &mut String, title: &str, items: &[Unmatched]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "**{title}:**\n");
    for u in items {
        let _ = writeln!(
            out,
            "- {}{}: {}",
            u.target,
            u.benchmark
                .as_deref()
                .map_or_else(String::new, |b| format!(" {}", code(b))),
            u.reason
        );
    }
    out.push('\n');
}

pub fn timing_table(c: &Comparison) -> String {
    let mut out = String::from(
        "| Target | Benchmark | Before | After | Change (95% interval) | Raw change | Limit | Verdict |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for row in &c.timings {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.target,
            code(&benchmark(row)),
            value(row, row.baseline),
            value(row, row.post),
            change(row),
            raw_change(row),
            limit(row),
            verdict(row.judgement.verdict)
        );
    }
    if c.timings.is_empty() {
        out.push_str("| (no benchmark in both runs) | | | | | | | |\n");
    }
    out
}

pub fn render(c: &Comparison) -> String {
    let mut out = heading(c);
    comparability_section(&mut out, c);
    timings_section(&mut out, c);
    signals_section(&mut out, c);
    statements_section(&mut out, &c.statements);
    out.push_str("## Profiles\n\n");
    for p in &c.profiles {
        profile_section(&mut out, p);
    }
    out.push_str(
        "Open `index.html` next to this file for every flamegraph inline. Produced by `cargo xtask compare`.\n",
    );
    out
}

/// The title, the verdict, how the sides were measured, and the two runs side by side.
fn heading(c: &Comparison) -> String {
    let mut out = format!(
        "# Performance comparison: {} → {}\n\n",
        c.baseline.label, c.post.label
    );
    let _ = writeln!(
        out,
        "**Verdict: {}** (exit {}): {}\n",
        match c.outcome.exit_code {
            0 => "pass",
            _ => "REGRESSION",
        },
        c.outcome.exit_code,
        c.outcome.message
    );
    let _ = writeln!(out, "**Measured:** {}.\n", c.measurement.description);
    out.push_str("| | Baseline | Post |\n|---|---|---|\n");
    let row = |out: &mut String, name: &str, f: &dyn Fn(&RunSummary) -> String| {
        let _ = writeln!(out, "| {name} | {} | {} |", f(&c.baseline), f(&c.post));
    };
    row(&mut out, "Directory", &|r| format!("`{}`", r.dir));
    row(&mut out, "Revision", &revision);
    row(&mut out, "Recorded", &|r| r.started_at.clone());
    row(&mut out, "Host", &|r| {
        format!("{} ({})", r.hostname.as_deref().unwrap_or("?"), r.cpu_model)
    });
    row(&mut out, "Runs", &|r| {
        format!(
            "{} timing run(s){}, profiler {}",
            r.runs,
            if r.quick { ", quick" } else { "" },
            r.profiler.name()
        )
    });
    out
}

fn comparability_section(out: &mut String, c: &Comparison) {
    out.push_str("\n## Comparability\n\n");
    if let Some(reason) = &c.comparability.timings_blocked {
        let _ = writeln!(out, "**Timing verdicts are inconclusive:** {reason}.\n");
    }
    if let Some(reason) = &c.comparability.profiles_blocked {
        let _ = writeln!(out, "**Profile signals are not judged:** {reason}.\n");
    }
    if c.comparability.findings.is_empty() {
        out.push_str("Same host, hardware, toolchain, profiler, build and options.\n\n");
    } else {
        out.push_str("| Aspect | Baseline | Post | Effect |\n|---|---|---|---|\n");
        for f in &c.comparability.findings {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                f.aspect,
                f.baseline.replace('|', "\\|"),
                f.post.replace('|', "\\|"),
                f.effect
            );
        }
        out.push('\n');
    }
}

/// The verdict table, the inconclusive rows' reasons, and the benchmarks not compared.
fn timings_section(out: &mut String, c: &Comparison) {
    out.push_str("## Timings\n\n");
    out.push_str(
        "Median over the timing runs, post against baseline, with the 95% interval from the spread \
         between runs and criterion's confidence intervals. Where both runs recorded it, times are \
         corrected for waiting for a CPU (other work on the machine); *Raw change* is the uncorrected \
         figure. Test targets compare the CPU time of their profiled run. A benchmark that uses \
         the database also compares where its iterations' time went, each against the benchmark's \
         own limit: the server's CPU and the program's CPU per iteration over criterion's \
         measurement (rows marked *server CPU* and *program CPU*).\n\n",
    );
    out.push_str(&timing_table(c));
    out.push('\n');
    let inconclusive: Vec<&TimingRow> = c
        .timings
        .iter()
        .filter(|r| r.judgement.verdict == Verdict::Inconclusive)
        .collect();
    if !inconclusive.is_empty() {
        out.push_str("Inconclusive:\n\n");
        for row in inconclusive {
            let _ = writeln!(out, "- {}", inconclusive_note(row));
        }
        out.push('\n');
    }
    unmatched_list(out, "Appeared (only in the post run)", &c.only_in_post);
    unmatched_list(
        out,
        "Disappeared (only in the baseline)",
        &c.only_in_baseline,
    );
    unmatched_list(out, "Not compared", &c.not_compared);
}

fn signals_section(out: &mut String, c: &Comparison) {
    out.push_str("## Regression signals\n\n");
    if c.signals.is_empty() {
        out.push_str("No signal could be evaluated (no profiles or latency limits in common).\n\n");
    } else {
        out.push_str("| Signal | Target | Result | Detail |\n|---|---|---|---|\n");
        for s in &c.signals {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} |",
                s.kind.label(),
                s.target,
                s.benchmark
                    .as_deref()
                    .map_or_else(String::new, |b| format!(" {}", code(b))),
                if s.fired { "**fired**" } else { "ok" },
                s.summary.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
}

/// One target's profiles: notes, flamegraph links, shares, and the functions that moved.
fn profile_section(out: &mut String, p: &ProfileComparison) {
    let _ = writeln!(out, "### {}\n", p.target);
    for note in &p.notes {
        let _ = writeln!(out, "{note}\n");
    }
    if p.movers.is_empty() {
        return;
    }
    let links: Vec<String> = [
        ("before", &p.files.before),
        ("after", &p.files.after),
        (
            "differential (red: grew, blue: shrank)",
            &p.files.differential,
        ),
        (
            "differential in the baseline's shape",
            &p.files.differential_negated,
        ),
    ]
    .iter()
    .filter_map(|(name, path)| path.as_ref().map(|p| format!("[{name}]({p})")))
    .collect();
    let _ = writeln!(
        out,
        "{} → {} samples. Flamegraphs: {}\n",
        p.baseline_samples,
        p.post_samples,
        if links.is_empty() {
            "none".to_owned()
        } else {
            links.join(" · ")
        }
    );
    if !p.shares.is_empty() {
        out.push_str("| Share of samples | Before | After |\n|---|---:|---:|\n");
        for s in &p.shares {
            let _ = writeln!(
                out,
                "| {}: {} | {:.1}% | {:.1}% |",
                s.group, s.name, s.before_pct, s.after_pct
            );
        }
        out.push('\n');
    }
    out.push_str("Functions whose share moved most (self = in the function itself, total = with its callees):\n\n");
    out.push_str("| Function | Self | Total | Move |\n|---|---:|---:|---|\n");
    for m in &p.movers {
        let _ = writeln!(
            out,
            "| {} | {:.1}% → {:.1}% | {:.1}% → {:.1}% | {} |",
            code(&m.function),
            m.before_self_pct,
            m.after_self_pct,
            m.before_total_pct,
            m.after_total_pct,
            match m.change {
                Move::Grown => format!("▲ grown {:+.1} pts", m.delta_pts),
                Move::Shrunk => format!("▼ shrunk {:+.1} pts", m.delta_pts),
                Move::WithinNoise => format!("within noise ({:+.1} pts)", m.delta_pts),
            }
        );
    }
    out.push('\n');
    blocked_section(out, p);
}

/// Where the threads' blocked time moved most (off-CPU profiles).
fn blocked_section(out: &mut String, p: &ProfileComparison) {
    if p.blocked_movers.is_empty() {
        return;
    }
    out.push_str("Where the threads waited longer or shorter (off-CPU: time blocked in the function, as a share of the profile's wall time summed over threads):\n\n");
    out.push_str("| Function | Before | After | Move |\n|---|---:|---:|---:|\n");
    for m in &p.blocked_movers {
        let _ = writeln!(
            out,
            "| {} | {:.1}% | {:.1}% | {:+.1} pts |",
            code(&m.function),
            m.before_pct,
            m.after_pct,
            m.after_pct - m.before_pct
        );
    }
    out.push('\n');
}

/// What the terminal shows: the verdict table and the fired signals (stdout).
pub fn terminal(c: &Comparison) -> String {
    let mut out = format!("measured: {}\n\n", c.measurement.description);
    out.push_str(&timing_table(c));
    let fired: Vec<String> = c
        .signals
        .iter()
        .filter(|s| s.fired)
        .map(|s| {
            format!(
                "signal fired: {} in {}: {}",
                s.kind.label(),
                s.target,
                s.summary
            )
        })
        .collect();
    if !fired.is_empty() {
        out.push('\n');
        out.push_str(&fired.join("\n"));
        out.push('\n');
    }
    out
}

/// Statements per iteration in both runs, and the statements that moved.
fn statements_section(out: &mut String, rows: &[StatementRow]) {
    if rows.is_empty() {
        return;
    }
    out.push_str("## Statements per iteration\n\n");
    out.push_str(
        "Counted exactly in each run's counting pass; a change of half a statement per \
         iteration or more counts. Server CPU is PostgreSQL's CPU time per iteration.\n\n\
         | Target | Benchmark | Statements | Nested | Writing tx | Rows | Buffers | Server CPU | Result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let moved = |b: f64, a: f64| format!("{} → {}", count(b), count(a));
    for r in rows {
        let (b, p) = (&r.baseline, &r.post);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            code(&r.benchmark),
            moved(b.statements, p.statements),
            moved(b.nested_statements, p.nested_statements),
            moved(b.writing_transactions, p.writing_transactions),
            moved(b.rows, p.rows),
            moved(
                b.shared_blocks_hit + b.shared_blocks_read,
                p.shared_blocks_hit + p.shared_blocks_read
            ),
            match (b.server_cpu_us, p.server_cpu_us) {
                (Some(x), Some(y)) => format!("{} → {}", micros(x), micros(y)),
                _ => "–".to_owned(),
            },
            match r.change {
                Change::More => "**more**",
                Change::Fewer => "fewer (improvement)",
                Change::Unchanged => "unchanged",
            }
        );
    }
    for r in rows.iter().filter(|r| !r.changed.is_empty()) {
        let _ = writeln!(out, "\n{} {}:\n", r.target, code(&r.benchmark));
        for c in &r.changed {
            let _ = writeln!(
                out,
                "- {} {} → {} per iteration{}",
                code(&shorten(&c.query)),
                count(c.before),
                count(c.after),
                if c.toplevel {
                    ""
                } else {
                    " (inside a function)"
                }
            );
        }
    }
    out.push('\n');
}

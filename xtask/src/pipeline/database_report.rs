//! "Where the database time goes": the Markdown section that `summary.md` and the baseline
//! document give the counting pass's figures (`database.json`).

use std::fmt::Write as _;

use super::counting::{BenchmarkCost, DatabaseFile, PerIteration};
use super::manifest::{Manifest, ServerProfile, TopFunction};

/// Statements listed per target.
const TOP_STATEMENTS: usize = 5;
/// Characters of a statement's text shown.
const QUERY_CHARS: usize = 90;

pub fn section(out: &mut String, db: &DatabaseFile, m: &Manifest) {
    out.push_str("\n## Where the database time goes\n\n");
    if db.targets.is_empty() {
        out.push_str("Nothing was counted (no bench target talks to the database, or the run had no database).\n");
        return;
    }
    out.push_str(
        "Per iteration of each benchmark, from a counting pass of its own (criterion's \
         `--profile-time`, every iteration of the window counted): statements the program sent \
         and those run inside SQL functions and triggers, transactions that wrote (each one a \
         WAL flush at commit on a durable server), rows returned, shared buffers touched \
         (hit + read), and the wall time split into the program's CPU, PostgreSQL's CPU and \
         neither (waiting). Wall time here includes what a routine does untimed (preparing and \
         checking its tasks), so it is longer than criterion's time.\n\n",
    );
    out.push_str(
        "| Target | Benchmark | Statements | Nested | Writing tx | Rows | Buffers | Wall | Program CPU | Server CPU | Waiting |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in &db.targets {
        for b in &t.benchmarks {
            split_row(out, &t.name, b);
        }
    }
    for t in &db.targets {
        top_statements(out, &t.name, &t.benchmarks);
        let server = m
            .targets
            .iter()
            .find(|r| r.name == t.name)
            .and_then(|r| r.profile.as_ref())
            .and_then(|p| p.server.as_ref());
        if let Some(server) = server {
            server_functions(out, &t.name, server);
        }
    }
}

/// The server's own hot functions, from its processes in the whole-machine profile.
fn server_functions(out: &mut String, target: &str, server: &ServerProfile) {
    let _ = writeln!(
        out,
        "\n### {target}: PostgreSQL's hot functions\n\n{} samples of the server's processes{}.\n\n| Function | Self |\n|---|---:|",
        server.samples,
        flamegraph_link(server.flamegraph.as_deref())
    );
    function_rows(out, &server.top_self, TOP_STATEMENTS);
}

/// `; flamegraph: [path](path)` when there is one.
pub fn flamegraph_link(svg: Option<&str>) -> String {
    svg.map_or_else(String::new, |svg| format!("; flamegraph: [{svg}]({svg})"))
}

/// The first `n` functions as Markdown table rows, `| `function` | share |`.
pub fn function_rows(out: &mut String, functions: &[TopFunction], n: usize) {
    for f in functions.iter().take(n) {
        let _ = writeln!(
            out,
            "| `{}` | {:.1}% |",
            f.function.replace('|', "\\|").replace('`', "'"),
            f.self_pct
        );
    }
}

fn split_row(out: &mut String, target: &str, b: &BenchmarkCost) {
    if let Some(why) = &b.unavailable {
        let _ = writeln!(
            out,
            "| {target} | `{}` | not counted: {why} |||||||||",
            b.benchmark
        );
        return;
    }
    let p: &PerIteration = &b.per_iteration;
    let share = |us: f64| {
        if p.wall_us > 0.0 {
            format!("{} ({:.0}%)", micros(us), 100.0 * us / p.wall_us)
        } else {
            micros(us)
        }
    };
    let _ = writeln!(
        out,
        "| {target} | `{}`{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        b.benchmark,
        if b.evicted { " (lower bound)" } else { "" },
        count(p.statements),
        count(p.nested_statements),
        count(p.writing_transactions),
        count(p.rows),
        count(p.shared_blocks_hit + p.shared_blocks_read),
        micros(p.wall_us),
        share(p.program_cpu_us),
        p.server_cpu_us.map_or("not local".to_owned(), share),
        p.waiting_us.map_or("–".to_owned(), share),
    );
}

/// The target's costliest statements by execution time per iteration, over its benchmarks.
fn top_statements(out: &mut String, target: &str, benchmarks: &[BenchmarkCost]) {
    let mut rows: Vec<(&str, &super::counting::StatementCost)> = benchmarks
        .iter()
        .flat_map(|b| b.statements.iter().map(move |s| (b.benchmark.as_str(), s)))
        .filter(|(_, s)| s.toplevel)
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| b.1.total_exec_us.total_cmp(&a.1.total_exec_us));
    let _ = writeln!(
        out,
        "\n### {target}: top statements by time\n\n| Benchmark | Statement | Calls | Mean | Time | Rows |\n|---|---|---:|---:|---:|---:|"
    );
    for (bench, s) in rows.iter().take(TOP_STATEMENTS) {
        let _ = writeln!(
            out,
            "| `{bench}` | `{}` | {} | {} | {} | {} |",
            shorten(&s.query).replace('|', "\\|").replace('`', "'"),
            count(s.calls),
            micros(s.mean_exec_us),
            micros(s.total_exec_us),
            count(s.rows)
        );
    }
}

/// A per-iteration count: whole numbers as such, fractions to two places.
pub fn count(v: f64) -> String {
    if (v - v.round()).abs() < 0.005 {
        format!("{:.0}", v.round())
    } else {
        format!("{v:.2}")
    }
}

pub fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

pub fn shorten(query: &str) -> String {
    if query.chars().count() <= QUERY_CHARS {
        query.to_owned()
    } else {
        let cut: String = query.chars().take(QUERY_CHARS).collect();
        format!("{cut}…")
    }
}

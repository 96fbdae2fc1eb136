//! `index.html`: one page a reviewer opens to see the verdict table, the signals and every
//! flamegraph and differential flamegraph inline. It has no network dependencies: styles
//! are inline and each SVG is embedded as a `data:` URI in an `<iframe>`, where inferno's own
//! script (zoom, search) keeps working and cannot clash with the other graphs' scripts.

use std::fmt::Write as _;
use std::path::Path;

use super::markdown::{benchmark, change, inconclusive_note, limit, value};
use super::model::{Comparison, ProfileComparison};
use super::profiles::Move;
use super::verdict::Verdict;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.regression{background:#fdd;font-weight:bold}.inconclusive{background:#ffe9b3}\
.improvement{background:#dfd}.pass{background:#eef7ee}.fired{background:#fdd;font-weight:bold}\
.verdict{font-size:1.3em;padding:.5em;border-radius:4px}\
iframe{width:100%;border:1px solid #ccc;margin:.3em 0 1em}code{font-size:.9em}";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The height inferno gave the SVG, so the frame shows all of it.
fn svg_height(svg: &str) -> u32 {
    svg.find("<svg")
        .and_then(|start| {
            let tag = &svg[start..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            let h = tag.find(" height=\"")? + 9;
            tag[h..]
                .split('"')
                .next()
                .and_then(|v| v.trim_end_matches("px").parse::<f64>().ok())
        })
        .map_or(600, |h| h.ceil() as u32 + 20)
}

fn graph(out: &mut String, dir: &Path, rel: Option<&String>, caption: &str) {
    let Some(rel) = rel else {
        return;
    };
    let Ok(svg) = std::fs::read_to_string(dir.join(rel)) else {
        let _ = writeln!(out, "<p>{} missing: {}</p>", escape(caption), escape(rel));
        return;
    };
    let _ = writeln!(
        out,
        "<h4>{}</h4>\n<iframe title=\"{}\" height=\"{}\" src=\"data:image/svg+xml;base64,{}\"></iframe>",
        escape(caption),
        escape(caption),
        svg_height(&svg),
        base64(svg.as_bytes())
    );
}

/// Renders the page; `dir` is where the comparison's graphs were written.
pub fn render(c: &Comparison, dir: &Path) -> String {
    let mut out = heading(c);
    comparability_section(&mut out, c);
    timings_section(&mut out, c);
    signals_section(&mut out, c);
    out.push_str("<h2>Profiles</h2>\n");
    for p in &c.profiles {
        profile_section(&mut out, p, dir);
    }
    out.push_str("</body></html>\n");
    out
}

/// The page's head, the verdict, how the sides were measured and which runs they are.
fn heading(c: &Comparison) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = writeln!(
        out,
        "<title>{} → {}: {}</title><style>{STYLE}</style></head><body>",
        escape(&c.baseline.label),
        escape(&c.post.label),
        if c.outcome.exit_code == 0 {
            "pass"
        } else {
            "regression"
        }
    );
    let _ = writeln!(
        out,
        "<h1>Performance comparison: {} → {}</h1>\n<p class=\"verdict {}\">Verdict: <b>{}</b> (exit {}): {}</p>",
        escape(&c.baseline.label),
        escape(&c.post.label),
        if c.outcome.exit_code == 0 { "pass" } else { "regression" },
        if c.outcome.exit_code == 0 { "pass" } else { "REGRESSION" },
        c.outcome.exit_code,
        escape(&c.outcome.message)
    );
    let _ = writeln!(
        out,
        "<p>Measured: {}.</p>",
        escape(&c.measurement.description)
    );
    let _ = writeln!(
        out,
        "<p>Baseline <code>{}</code> ({}) · post <code>{}</code> ({})</p>",
        escape(&c.baseline.dir),
        escape(c.baseline.revision.as_deref().unwrap_or("no revision")),
        escape(&c.post.dir),
        escape(c.post.revision.as_deref().unwrap_or("no revision"))
    );
    out
}

fn comparability_section(out: &mut String, c: &Comparison) {
    out.push_str("<h2>Comparability</h2>\n");
    if let Some(reason) = &c.comparability.timings_blocked {
        let _ = writeln!(
            out,
            "<p class=\"inconclusive\">Timing verdicts are inconclusive: {}</p>",
            escape(reason)
        );
    }
    if let Some(reason) = &c.comparability.profiles_blocked {
        let _ = writeln!(
            out,
            "<p class=\"inconclusive\">Profile signals are not judged: {}</p>",
            escape(reason)
        );
    }
    if c.comparability.findings.is_empty() {
        out.push_str("<p>Same host, hardware, toolchain, profiler, build and options.</p>\n");
    } else {
        out.push_str(
            "<table><tr><th>Aspect</th><th>Baseline</th><th>Post</th><th>Effect</th></tr>\n",
        );
        for f in &c.comparability.findings {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.aspect),
                escape(&f.baseline),
                escape(&f.post),
                escape(&f.effect)
            );
        }
        out.push_str("</table>\n");
    }
}

/// The verdict table, the inconclusive rows' reasons, and the benchmarks not compared.
fn timings_section(out: &mut String, c: &Comparison) {
    out.push_str("<h2>Timings</h2>\n<table><tr><th>Target</th><th>Benchmark</th><th>Before</th><th>After</th><th>Change (95% interval)</th><th>Limit</th><th>Verdict</th></tr>\n");
    for row in &c.timings {
        let v = row.judgement.verdict;
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            v.name(),
            escape(&row.target),
            escape(&benchmark(row)),
            escape(&value(row, row.baseline)),
            escape(&value(row, row.post)),
            escape(&change(row)),
            escape(&limit(row)),
            v.name()
        );
    }
    out.push_str("</table>\n");
    let notes: Vec<String> = c
        .timings
        .iter()
        .filter(|r| r.judgement.verdict == Verdict::Inconclusive)
        .map(|r| format!("<li>{}</li>", escape(&inconclusive_note(r))))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "<p>Inconclusive:</p><ul>{}</ul>", notes.join(""));
    }
    for (title, list) in [
        ("Appeared (only in the post run)", &c.only_in_post),
        ("Disappeared (only in the baseline)", &c.only_in_baseline),
        ("Not compared", &c.not_compared),
    ] {
        if list.is_empty() {
            continue;
        }
        let items: Vec<String> = list
            .iter()
            .map(|u| {
                format!(
                    "<li>{}{}: {}</li>",
                    escape(&u.target),
                    u.benchmark
                        .as_deref()
                        .map_or_else(String::new, |b| format!(" <code>{}</code>", escape(b))),
                    escape(&u.reason)
                )
            })
            .collect();
        let _ = writeln!(out, "<p>{title}:</p><ul>{}</ul>", items.join(""));
    }
}

fn signals_section(out: &mut String, c: &Comparison) {
    out.push_str("<h2>Regression signals</h2>\n<table><tr><th>Signal</th><th>Target</th><th>Result</th><th>Detail</th></tr>\n");
    for s in &c.signals {
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            if s.fired { "fired" } else { "" },
            escape(s.kind.label()),
            escape(&s.target),
            s.benchmark
                .as_deref()
                .map_or_else(String::new, |b| format!(" <code>{}</code>", escape(b))),
            if s.fired { "fired" } else { "ok" },
            escape(&s.summary)
        );
    }
    out.push_str("</table>\n");
}

/// One target's notes, the functions that moved, and its four flamegraphs inline.
fn profile_section(out: &mut String, p: &ProfileComparison, dir: &Path) {
    let _ = writeln!(out, "<h3>{}</h3>", escape(&p.target));
    for note in &p.notes {
        let _ = writeln!(out, "<p>{}</p>", escape(note));
    }
    if !p.movers.is_empty() {
        let _ = writeln!(
            out,
            "<p>{} → {} samples.</p><table><tr><th>Function</th><th>Self</th><th>Total</th><th>Move</th></tr>",
            p.baseline_samples, p.post_samples
        );
        for m in &p.movers {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"num\">{:.1}% → {:.1}%</td><td class=\"num\">{:.1}% → {:.1}%</td><td>{}</td></tr>",
                escape(&m.function),
                m.before_self_pct,
                m.after_self_pct,
                m.before_total_pct,
                m.after_total_pct,
                match m.change {
                    Move::Grown => format!("grown {:+.1} pts", m.delta_pts),
                    Move::Shrunk => format!("shrunk {:+.1} pts", m.delta_pts),
                    Move::WithinNoise => format!("within noise ({:+.1} pts)", m.delta_pts),
                }
            );
        }
        out.push_str("</table>\n");
    }
    if !p.blocked_movers.is_empty() {
        out.push_str("<p>Where the threads waited longer or shorter (off-CPU, share of the wall time):</p><table><tr><th>Function</th><th>Before</th><th>After</th><th>Move</th></tr>\n");
        for m in &p.blocked_movers {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"num\">{:.1}%</td><td class=\"num\">{:.1}%</td><td class=\"num\">{:+.1} pts</td></tr>",
                escape(&m.function),
                m.before_pct,
                m.after_pct,
                m.after_pct - m.before_pct
            );
        }
        out.push_str("</table>\n");
    }
    graph(
        out,
        dir,
        p.files.differential.as_ref(),
        "Differential (post shape; red: grew, blue: shrank)",
    );
    graph(
        out,
        dir,
        p.files.differential_negated.as_ref(),
        "Differential (baseline shape; blue: shrank or disappeared)",
    );
    graph(out, dir, p.files.before.as_ref(), "Baseline flamegraph");
    graph(out, dir, p.files.after.as_ref(), "Post flamegraph");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn reads_the_svg_height() {
        assert_eq!(
            svg_height(
                "<?xml?><svg version=\"1.1\" width=\"1200\" height=\"390\" onload=\"init(evt)\">"
            ),
            410
        );
        assert_eq!(svg_height("<svg>"), 600);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

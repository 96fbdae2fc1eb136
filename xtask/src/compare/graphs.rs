//! Differential flamegraphs of one target with inferno: the two runs' folded stacks are
//! merged with `inferno::differential` (the baseline scaled to the post run's sample count,
//! so colour shows a change of share, not of profile length) and drawn twice: in the post
//! run's shape (red where it grew) and in the baseline's shape (blue where code shrank or
//! disappeared), as inferno's authors recommend. The runs' own flamegraphs are copied
//! alongside so the directory stands alone.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};

use super::judge::GraphJob;
use super::model::{ProfileFiles, GRAPHS_DIR};
use crate::analysis::normalise;

/// Frames made comparable across builds: legacy symbol hashes dropped, and the process name
/// (perf's 15-character `comm`, often ending in part of cargo's binary hash) cut at a
/// trailing `-<hex>`.
pub fn normalise_folded(folded: &str) -> String {
    let mut out = String::with_capacity(folded.len());
    for line in folded.lines() {
        let Some((stack, count)) = line.trim_end().rsplit_once(' ') else {
            continue;
        };
        let mut frames = stack.split(';').map(normalise);
        if let Some(root) = frames.next() {
            out.push_str(strip_hex_suffix(root));
        }
        for frame in frames {
            out.push(';');
            out.push_str(frame);
        }
        out.push(' ');
        out.push_str(count);
        out.push('\n');
    }
    out
}

fn strip_hex_suffix(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, tail))
            if !head.is_empty()
                && !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            head
        }
        _ => name,
    }
}

/// inferno's two-count lines (`stack before after`), sorted so the file is stable.
pub fn differential(before: &str, after: &str) -> Result<String> {
    let mut merged = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: true,
            strip_hex: true,
        },
        before.as_bytes(),
        after.as_bytes(),
        &mut merged,
    )
    .context("merging folded stacks")?;
    let text = String::from_utf8(merged).context("merged stacks are not UTF-8")?;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    Ok(lines.join("\n") + "\n")
}

fn render(lines: &str, svg: &Path, title: &str, subtitle: &str, negate: bool) -> Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.subtitle = Some(subtitle.to_owned());
    options.count_name = "samples".to_owned();
    options.negate_differentials = negate;
    let file = File::create(svg).with_context(|| format!("creating {}", svg.display()))?;
    inferno::flamegraph::from_lines(&mut options, lines.lines(), BufWriter::new(file))
        .with_context(|| format!("rendering {}", svg.display()))
}

/// Writes the graphs of one target into `<out>/comparison/<target>/` and returns their
/// paths relative to `out`.
pub fn write(job: &GraphJob, out: &Path) -> Result<ProfileFiles> {
    let rel_dir = Path::new(GRAPHS_DIR).join(&job.target);
    let dir = out.join(&rel_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rel = |name: &str| rel_dir.join(name).display().to_string();
    let mut files = ProfileFiles::default();
    for (source, name, slot) in [
        (&job.before_svg, "before.svg", &mut files.before),
        (&job.after_svg, "after.svg", &mut files.after),
    ] {
        if let Some(source) = source {
            std::fs::copy(source, dir.join(name))
                .with_context(|| format!("copying {}", source.display()))?;
            *slot = Some(rel(name));
        }
    }
    let before = normalise_folded(&job.before_folded);
    let after = normalise_folded(&job.after_folded);
    if before.trim().is_empty() || after.trim().is_empty() {
        // inferno refuses to draw nothing; the report says the profile was empty.
        return Ok(files);
    }
    let forward = differential(&before, &after)?;
    std::fs::write(dir.join("differential.folded"), &forward)
        .context("writing differential.folded")?;
    files.differential_folded = Some(rel("differential.folded"));
    render(
        &forward,
        &dir.join("differential.svg"),
        &format!("{} (differential)", job.title),
        "shape of the post run; red: larger share than in the baseline, blue: smaller",
        false,
    )?;
    files.differential = Some(rel("differential.svg"));
    let backward = differential(&after, &before)?;
    render(
        &backward,
        &dir.join("differential-negated.svg"),
        &format!("{} (differential, baseline shape)", job.title),
        "shape of the baseline; blue: code whose share shrank or that disappeared",
        true,
    )?;
    files.differential_negated = Some(rel("differential-negated.svg"));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_normalised() {
        let folded =
            "fixture_bench-9;main;core::fmt::write::h0123456789abcdef 3\ntokio-runtime-w;poll 2\n";
        assert_eq!(
            normalise_folded(folded),
            "fixture_bench;main;core::fmt::write 3\ntokio-runtime-w;poll 2\n"
        );
    }

    #[test]
    fn differential_lines_hold_both_counts_scaled() {
        // The baseline has half the samples; normalised, its counts double.
        let merged = differential("p;a 5\np;b 5\n", "p;a 15\np;b 5\n").expect("merge");
        assert_eq!(merged, "p;a 10 15\np;b 10 5\n");
    }

    #[test]
    fn writes_both_graphs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = GraphJob {
            target: "t".to_owned(),
            before_folded: "p;main;hot 75\np;main;cold 25\n".to_owned(),
            after_folded: "p;main;hot 86\np;main;cold 14\n".to_owned(),
            before_svg: None,
            after_svg: None,
            title: "t".to_owned(),
        };
        let files = write(&job, dir.path()).expect("graphs");
        let svg = std::fs::read_to_string(dir.path().join(files.differential.expect("svg")))
            .expect("read svg");
        assert!(svg.contains("<svg") && svg.contains("hot ("), "{svg}");
        assert!(files.differential_negated.is_some());
        assert!(files.before.is_none(), "nothing to copy");
    }
}

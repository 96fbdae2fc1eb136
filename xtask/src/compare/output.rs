//! Writes a comparison's files into an output directory all together or not at all:
//! everything is rendered into a hidden staging directory first and moved into place only
//! when complete, so a failure never leaves a half-written report in place of a good one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::judge::Judged;
use super::model::{Comparison, GRAPHS_DIR, HTML_FILE, JSON_FILE, MARKDOWN_FILE};
use super::{graphs, html, markdown};

/// Removes the staging directory unless the write completed.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders and writes `comparison.md`, `comparison.json`, `index.html` and
/// `comparison/<target>/*.svg` into `out`; returns the comparison with the graph paths filled in.
pub fn write(out: &Path, judged: Judged) -> Result<Comparison> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let staging = Staging(out.join(format!(".tmp-comparison-{}", std::process::id())));
    if staging.0.exists() {
        std::fs::remove_dir_all(&staging.0)
            .with_context(|| format!("removing stale {}", staging.0.display()))?;
    }
    std::fs::create_dir_all(&staging.0)
        .with_context(|| format!("creating {}", staging.0.display()))?;

    let Judged {
        mut comparison,
        graphs: jobs,
    } = judged;
    for job in &jobs {
        let files = graphs::write(job, &staging.0)
            .with_context(|| format!("drawing the flamegraphs of `{}`", job.target))?;
        if let Some(p) = comparison
            .profiles
            .iter_mut()
            .find(|p| p.target == job.target)
        {
            p.files = files;
        }
    }
    let markdown = markdown::render(&comparison);
    let html = html::render(&comparison, &staging.0);
    let json = serde_json::to_string_pretty(&comparison).context("serialising the comparison")?;
    for (name, text) in [
        (MARKDOWN_FILE, markdown),
        (HTML_FILE, html),
        (JSON_FILE, json + "\n"),
    ] {
        let path = staging.0.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    commit(&staging.0, out)?;
    Ok(comparison)
}

/// Moves the staged files into `out`: the graphs directory by one rename (the old one put
/// back if that fails), then each report file by an atomic rename over the old one.
fn commit(staging: &Path, out: &Path) -> Result<()> {
    let graphs = out.join(GRAPHS_DIR);
    let aside = out.join(format!(".tmp-old-comparison-{}", std::process::id()));
    if graphs.exists() {
        std::fs::rename(&graphs, &aside)
            .with_context(|| format!("moving the old {} aside", graphs.display()))?;
    }
    let staged_graphs = staging.join(GRAPHS_DIR);
    if staged_graphs.exists() {
        if let Err(e) = std::fs::rename(&staged_graphs, &graphs) {
            if aside.exists() {
                let _ = std::fs::rename(&aside, &graphs);
            }
            return Err(e).with_context(|| format!("moving the graphs into {}", graphs.display()));
        }
    }
    for name in [MARKDOWN_FILE, HTML_FILE, JSON_FILE] {
        let target = out.join(name);
        std::fs::rename(staging.join(name), &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
    }
    if aside.exists() {
        std::fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    Ok(())
}

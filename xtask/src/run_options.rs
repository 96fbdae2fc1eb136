//! The command-line flags shared by the measuring commands (`profile-baseline`,
//! `profile-post`, `profile-gate`) turned into run-pipeline options, so every phase is the
//! same measurement.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::flags::{RunArgs, WorkspaceArgs};
use crate::pipeline;
use crate::profiler_choice::ProfilerChoice;
use crate::workspace;

/// The workspace root, canonical.
pub fn root(ws: &WorkspaceArgs) -> Result<PathBuf> {
    let root = ws.workspace.clone().unwrap_or_else(workspace::default_root);
    std::fs::canonicalize(&root).with_context(|| format!("workspace {}", root.display()))
}

/// A path from the command line, relative to the current directory.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p))
    }
}

/// `flag` if given (relative to the current directory), else `default` under the workspace.
pub fn dir_or(root: &Path, flag: Option<&Path>, default: &str) -> PathBuf {
    flag.map_or_else(|| root.join(default), absolute)
}

/// The plan: `--plan` if given, else `<workspace>/xtask/profile-plan.toml`.
pub fn plan_path(ws: &WorkspaceArgs, root: &Path) -> PathBuf {
    ws.plan
        .as_deref()
        .map_or_else(|| root.join("xtask/profile-plan.toml"), absolute)
}

pub fn options(
    ws: &WorkspaceArgs,
    root: &Path,
    run: &RunArgs,
    out: PathBuf,
    baseline_doc: Option<PathBuf>,
) -> Result<pipeline::Options> {
    if let Some(t) = run.profile_time {
        if !(t.is_finite() && t > 0.0) {
            anyhow::bail!("--profile-time must be a positive number of seconds, got {t}");
        }
    }
    Ok(pipeline::Options {
        plan: plan_path(ws, root),
        label: out.file_name().map_or_else(
            || "baseline".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        ),
        out,
        force: run.force,
        clean: !run.no_clean,
        runs: run.runs,
        profiler: run
            .profiler
            .unwrap_or_else(ProfilerChoice::platform_default),
        only: run.only.clone(),
        quick: run.quick,
        profile_time: run.profile_time,
        allow_interference: run.allow_interference,
        settle: std::time::Duration::from_secs(run.settle),
        cpu_idle: run.cpu_idle,
        target_dir: run.target_dir.as_deref().map(absolute),
        baseline_doc,
        keep_failed: run.keep_failed,
        frequency: run.frequency,
        off_cpu: !run.no_off_cpu,
        perf_per_thread: run.perf_per_thread,
        perf_dwarf: run.perf_dwarf,
        command_line: std::env::args().collect(),
        workspace: root.to_owned(),
        measured: None,
    })
}

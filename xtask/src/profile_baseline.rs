//! `cargo xtask profile-baseline`: Phases 1 and 2 of the plan into `profiles/pre-refactor/`,
//! through the shared run pipeline.

use anyhow::{Context, Result};

use crate::flags::{ProfileBaselineArgs, ProfilerChoice, WorkspaceArgs};
use crate::pipeline;
use crate::workspace;

pub const DEFAULT_OUT: &str = "profiles/pre-refactor";
pub const BASELINE_DOC: &str = "docs/observability/lifecycle-performance-baseline.md";

pub fn run(ws: &WorkspaceArgs, args: &ProfileBaselineArgs) -> Result<()> {
    let root = ws.workspace.clone().unwrap_or_else(workspace::default_root);
    let root =
        std::fs::canonicalize(&root).with_context(|| format!("workspace {}", root.display()))?;
    let absolute = |p: &std::path::Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p))
        }
    };
    let out = args
        .out
        .as_deref()
        .map_or_else(|| root.join(DEFAULT_OUT), absolute);
    let opts = pipeline::Options {
        plan: ws
            .plan
            .as_deref()
            .map_or_else(|| root.join("xtask/profile-plan.toml"), absolute),
        label: out.file_name().map_or_else(
            || "baseline".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        ),
        out,
        force: args.force,
        clean: !args.no_clean,
        runs: args.runs,
        profiler: args
            .profiler
            .unwrap_or_else(ProfilerChoice::platform_default),
        only: args.only.clone(),
        quick: args.quick,
        profile_time: args.profile_time,
        allow_interference: args.allow_interference,
        target_dir: args.target_dir.as_deref().map(absolute),
        baseline_doc: if args.no_baseline_doc {
            None
        } else {
            Some(
                args.baseline_doc
                    .as_deref()
                    .map_or_else(|| root.join(BASELINE_DOC), absolute),
            )
        },
        keep_failed: args.keep_failed,
        frequency: args.frequency,
        command_line: std::env::args().collect(),
        workspace: root,
    };
    if let Some(t) = opts.profile_time {
        if !(t.is_finite() && t > 0.0) {
            anyhow::bail!("--profile-time must be a positive number of seconds, got {t}");
        }
    }
    let outcome = pipeline::run(&opts)?;
    let noisy = outcome
        .manifest
        .targets
        .iter()
        .filter(|t| t.status == pipeline::manifest::TargetStatus::Noisy)
        .count();
    eprintln!(
        "baseline of {} target(s) written to {}{}",
        outcome.manifest.targets.len(),
        outcome.out.display(),
        if noisy > 0 {
            format!(" ({noisy} noisy)")
        } else {
            String::new()
        }
    );
    Ok(())
}

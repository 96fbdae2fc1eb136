//! `cargo xtask profile-baseline`: Phases 1 and 2 of the plan into `profiles/pre-refactor/`,
//! through the shared run pipeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::flags::{ProfileBaselineArgs, WorkspaceArgs};
use crate::pipeline;
use crate::revision::Repository;
use crate::run_options;

pub const DEFAULT_OUT: &str = "profiles/pre-refactor";
pub const BASELINE_DOC: &str = "docs/observability/lifecycle-performance-baseline.md";

pub fn run(ws: &WorkspaceArgs, args: &ProfileBaselineArgs) -> ExitCode {
    super::finish(profile_baseline(ws, args))
}

fn profile_baseline(ws: &WorkspaceArgs, args: &ProfileBaselineArgs) -> Result<()> {
    let root = run_options::root(ws)?;
    let out = run_options::dir_or(&root, args.out.as_deref(), DEFAULT_OUT);
    // The committed document describes a full run; a smoke or subset run writes it only when
    // asked to by name.
    let partial = args.run.quick || !args.run.only.is_empty();
    let doc = if args.no_baseline_doc || (partial && args.baseline_doc.is_none()) {
        if !args.no_baseline_doc {
            eprintln!(
                "note: a --quick or --only run leaves {BASELINE_DOC} alone; pass --baseline-doc FILE to write one"
            );
        }
        None
    } else {
        Some(run_options::dir_or(
            &root,
            args.baseline_doc.as_deref(),
            BASELINE_DOC,
        ))
    };
    let mut opts = run_options::options(ws, &root, &args.run, out, doc)?;
    if let Some(spec) = &args.rev {
        let (workspace, target_dir) = check_out_revision(&root, &opts, spec)?;
        opts.measured = Some(workspace);
        opts.target_dir = Some(target_dir);
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

/// `--rev REV`: the revision checked out into the worktree under the target directory;
/// returns the workspace to measure there and the target directory to build it in (the
/// revision's own: cargo would otherwise take its artifacts for the working tree's). The
/// output directory must be free first, so a refused run costs no checkout.
fn check_out_revision(
    root: &Path,
    opts: &pipeline::Options,
    spec: &str,
) -> Result<(PathBuf, PathBuf)> {
    crate::pipeline::outdir::check_target(&opts.out, opts.force)?;
    let sh = Shell::new().context("creating a shell")?;
    let repo = Repository::of(&sh, root)?;
    let rev = repo.resolve(&sh, spec)?;
    repo.check_plan_exists(&sh, &rev, &opts.plan)?;
    let target_dir = pipeline::target_dir(&sh, opts)?;
    eprintln!(
        "checking out {} into a worktree under {}",
        rev.describe(),
        target_dir.display()
    );
    let workspace = repo.checkout(&sh, &rev, &target_dir)?;
    Ok((workspace, crate::revision::target_dir(&target_dir)))
}

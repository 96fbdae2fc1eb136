//! `cargo xtask profile-baseline`: Phases 1 and 2 of the plan into `profiles/pre-refactor/`,
//! through the shared run pipeline.

use anyhow::Result;

use crate::flags::{ProfileBaselineArgs, WorkspaceArgs};
use crate::pipeline;
use crate::run_options;

pub const DEFAULT_OUT: &str = "profiles/pre-refactor";
pub const BASELINE_DOC: &str = "docs/observability/lifecycle-performance-baseline.md";

pub fn run(ws: &WorkspaceArgs, args: &ProfileBaselineArgs) -> Result<()> {
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
    let opts = run_options::options(ws, &root, &args.run, out, doc)?;
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

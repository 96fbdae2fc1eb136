//! `cargo xtask profile-post --against REV`: Phase 3 in one session. REV is checked out
//! into a worktree under the target directory, both it and the working tree are built with
//! the same profile and flags, and the pipeline measures them in alternating pairs against
//! one database (`pipeline::run_paired`). The verdict is the paired one (see
//! `compare::verdict::judge_paired`); the revision's side is kept as an ordinary run
//! directory, `<out>-against`, so `cargo xtask compare` can judge the two again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::Shell;

use super::DEFAULT_OUT;
use crate::compare::{self, model::Comparison, HostPolicy, Role, RunDir};
use crate::flags::{RunArgs, WorkspaceArgs};
use crate::pipeline::{self, Against};
use crate::revision::Repository;
use crate::run_options;

/// Measures both sides and judges; returns the output directory and the comparison (an
/// error means the revision, the build or the run was unusable: exit 2).
pub fn measure_and_judge(
    ws: &WorkspaceArgs,
    run: &RunArgs,
    out: Option<&Path>,
    spec: &str,
    pairs: Option<u32>,
) -> (PathBuf, Result<Comparison>) {
    let root = match run_options::root(ws) {
        Ok(root) => root,
        Err(e) => return (PathBuf::from(DEFAULT_OUT), Err(e)),
    };
    let out = run_options::dir_or(&root, out, DEFAULT_OUT);
    let result = measure(ws, &root, run, spec, pairs, &out);
    (out, result)
}

/// Where the revision's side goes: beside the post run, `<out>-against`.
pub fn against_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "post".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!("{name}-against"))
}

fn measure(
    ws: &WorkspaceArgs,
    root: &Path,
    run: &RunArgs,
    spec: &str,
    pairs: Option<u32>,
    out: &Path,
) -> Result<Comparison> {
    let mut opts = run_options::options(ws, root, run, out.to_owned(), None)?;
    // Both sides build incrementally into one target directory: a clean build would throw
    // away the revision's build, which is reused while its tree is unchanged.
    opts.clean = false;
    let against_out = against_dir(out);
    // Refused before the checkout, so a run that could not write costs nothing.
    pipeline::outdir::check_target(out, opts.force)?;
    pipeline::outdir::check_target(&against_out, opts.force)?;

    let sh = Shell::new().context("creating a shell")?;
    let repo = Repository::of(&sh, root)?;
    let revision = repo.resolve(&sh, spec)?;
    repo.check_plan_exists(&sh, &revision, &opts.plan)?;
    let target_dir = pipeline::target_dir(&sh, &opts)?;
    eprintln!(
        "checking out {} into a worktree under {}",
        revision.describe(),
        target_dir.display()
    );
    let workspace = repo.checkout(&sh, &revision, &target_dir)?;

    let outcome = pipeline::run_paired(
        &opts,
        &Against {
            revision,
            workspace,
            out: against_out,
            pairs,
        },
    )
    .context("the paired run failed")?;
    let baseline = RunDir::load(&outcome.against.out, Role::Baseline)?;
    let post = RunDir::load(&outcome.post.out, Role::Post)?;
    compare::judge_and_write(compare::Request {
        baseline,
        post,
        out: outcome.post.out,
        host_policy: HostPolicy::SameHost,
        plan: None,
    })
}

//! `cargo xtask profile-post`: Phase 3 of the plan. With `--against REV`, both revisions
//! measured in pairs in one session (see [`against`]). Without it, the baseline's
//! measurement again (same plan, same flags, same pipeline) into `profiles/post-refactor/`,
//! then the verdict against `profiles/pre-refactor/` written next to it. The baseline is checked before anything is
//! built, so a missing or damaged one costs seconds, not a build. The baseline document
//! (`lifecycle-performance-baseline.md`) belongs to the baseline and is left alone.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

pub mod against;

use super::profile_baseline;
use crate::compare::recording::{self, Recording};
use crate::compare::{self, model::Comparison, HostPolicy, Role, RunDir};
use crate::flags::{ProfilePostArgs, RunArgs, WorkspaceArgs};
use crate::pipeline;
use crate::plan::Plan;
use crate::run_options;

pub const DEFAULT_OUT: &str = "profiles/post-refactor";

/// A post run to measure and judge; `profile-gate` builds one with its CI settings.
pub struct Spec<'a> {
    pub run: &'a RunArgs,
    pub baseline: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub host_policy: HostPolicy,
}

pub fn run(ws: &WorkspaceArgs, args: &ProfilePostArgs) -> ExitCode {
    if let Some(rev) = &args.against.against {
        let (out, result) =
            against::measure_and_judge(ws, &args.run, args.out.as_deref(), rev, args.against.pairs);
        return compare::conclude("profile-post", &out, &result);
    }
    let spec = Spec {
        run: &args.run,
        baseline: args.baseline.clone(),
        out: args.out.clone(),
        host_policy: if args.judge.allow_different_host {
            HostPolicy::Any
        } else {
            HostPolicy::SameHost
        },
    };
    let (out, result) = measure_and_judge(ws, &spec);
    compare::conclude("profile-post", &out, &result)
}

/// Measures and judges; returns the output directory and the comparison (an error means
/// the run or its inputs were unusable).
pub fn measure_and_judge(ws: &WorkspaceArgs, spec: &Spec<'_>) -> (PathBuf, Result<Comparison>) {
    let root = match run_options::root(ws) {
        Ok(root) => root,
        Err(e) => return (PathBuf::from(DEFAULT_OUT), Err(e)),
    };
    let out = run_options::dir_or(&root, spec.out.as_deref(), DEFAULT_OUT);
    let result = measure(ws, &root, spec, &out);
    (out, result)
}

fn measure(
    ws: &WorkspaceArgs,
    root: &std::path::Path,
    spec: &Spec<'_>,
    out: &std::path::Path,
) -> Result<Comparison> {
    let baseline_dir = run_options::dir_or(
        root,
        spec.baseline.as_deref(),
        profile_baseline::DEFAULT_OUT,
    );
    let same = |a: &std::path::Path, b: &std::path::Path| {
        std::fs::canonicalize(a)
            .ok()
            .is_some_and(|a| Some(a) == std::fs::canonicalize(b).ok())
    };
    if same(out, &baseline_dir) {
        bail!(
            "the output directory {} is the baseline itself; pass a different --out",
            out.display()
        );
    }
    let baseline = RunDir::load(&baseline_dir, Role::Baseline)?;
    check_plan_against_baseline(ws, root, spec.run, &baseline)?;

    let opts = run_options::options(ws, root, spec.run, out.to_owned(), None)?;
    warn_if_recorded_differently(&baseline, &opts);
    let outcome = pipeline::run(&opts).context("the post run failed")?;
    let post = RunDir::load(&outcome.out, Role::Post)?;
    compare::judge_and_write(compare::Request {
        baseline,
        post,
        out: outcome.out,
        host_policy: spec.host_policy,
        plan: None,
    })
}

/// Says before measuring when this run will profile differently from the baseline (as root
/// then and not now, say): its timings are judged, its profile signals will not be.
fn warn_if_recorded_differently(baseline: &RunDir, opts: &pipeline::Options) {
    let planned = Recording::planned(opts.profiler, &pipeline::perf_setup(opts));
    let why = Recording::of(&baseline.manifest)
        .zip(planned)
        .and_then(|(b, p)| recording::recorded_differently(&b, &p));
    if let Some(why) = why {
        eprintln!("warning: {why}; the profile signals will not be judged");
    }
}

/// Before building: the plan must measure the baseline's targets the same way, and share
/// at least one target with it, or the post run could not be judged.
fn check_plan_against_baseline(
    ws: &WorkspaceArgs,
    root: &std::path::Path,
    run: &RunArgs,
    baseline: &RunDir,
) -> Result<()> {
    let plan = Plan::load(&run_options::plan_path(ws, root))?;
    let targets = plan.select(&run.only)?;
    let mut common = 0;
    for t in &targets {
        let Some(b) = baseline.target(&t.name) else {
            continue;
        };
        common += 1;
        if b.package != t.package
            || b.kind != t.kind
            || b.binary != t.binary
            || b.features != t.features
            || b.all_features != t.all_features
            || b.filter != t.filter
            || b.category != t.category
        {
            bail!(
                "the plan {} measures target `{}` differently from the baseline in {} (baseline: `{}`, now: `{}`); re-record the baseline with this plan (`cargo xtask profile-baseline --force`)",
                plan.path.display(),
                t.name,
                baseline.dir.display(),
                b.cargo_command,
                t.cargo_command()
            );
        }
    }
    if common == 0 {
        bail!(
            "none of the selected targets is in the baseline in {}; nothing could be compared",
            baseline.dir.display()
        );
    }
    Ok(())
}

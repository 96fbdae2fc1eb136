//! `cargo xtask compare BASELINE_DIR POST_DIR`: judges two saved runs without measuring
//! anything (see [`crate::compare`]), so a verdict can be re-read, re-thresholded (`--plan`)
//! or produced in CI from artifacts.

use std::process::ExitCode;

use crate::compare::{conclude, judge_and_write, HostPolicy, Request, Role, RunDir};
use crate::flags::{CompareArgs, WorkspaceArgs};
use crate::plan::Plan;
use crate::run_options;

pub fn run(ws: &WorkspaceArgs, args: &CompareArgs) -> ExitCode {
    let out = run_options::absolute(args.out.as_deref().unwrap_or(&args.post));
    let result = (|| {
        let baseline = RunDir::load(&run_options::absolute(&args.baseline), Role::Baseline)?;
        let post = RunDir::load(&run_options::absolute(&args.post), Role::Post)?;
        // Only a plan given explicitly re-thresholds; otherwise the recorded thresholds.
        let plan = ws
            .plan
            .as_deref()
            .map(|p| Plan::load(&run_options::absolute(p)))
            .transpose()?;
        judge_and_write(Request {
            baseline,
            post,
            out: out.clone(),
            host_policy: if args.judge.allow_different_host {
                HostPolicy::Any
            } else {
                HostPolicy::SameHost
            },
            plan,
        })
    })();
    conclude("compare", &out, &result)
}

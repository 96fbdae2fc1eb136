//! `cargo xtask profile-gate`: the steps of `.github/workflows/profile-benchmarks.yml` that
//! are not GitHub plumbing, so they run and are tested the same way on a laptop.
//!
//! - On the main branch (`--save-baseline`): `profile-baseline` into the baseline directory,
//!   replacing it, without the baseline document (CI keeps the run as an artifact).
//! - On a pull request with `--against REV` (what the workflow runs, REV being the merge
//!   base): `profile-post --against REV`, both sides measured on the one runner, paired.
//! - On a pull request without it: `profile-post` against a restored baseline, with `--force` (the
//!   post directory is scratch) and `--allow-interference` (a CI runner is never quiet; the
//!   check is still recorded), judging timings when the baseline came from another runner of
//!   the same hardware (every CI job gets a fresh VM; `--allow-different-host` accepts any).
//!   comparison.md is appended to `--summary` or `$GITHUB_STEP_SUMMARY`, and under GitHub
//!   Actions regressions and inconclusive verdicts become annotations.
//!
//! Exit codes are `profile-post`'s: 0 pass, 1 regression, 2 unusable.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{profile_baseline, profile_post};
use crate::compare::{self, model::Comparison, HostPolicy, Verdict, EXIT_UNUSABLE};
use crate::flags::{ProfileGateArgs, WorkspaceArgs};
use crate::pipeline;
use crate::run_options;

pub fn run(ws: &WorkspaceArgs, args: &ProfileGateArgs) -> ExitCode {
    let mut run = args.run.clone();
    run.force = true;
    run.allow_interference = true;
    if args.save_baseline {
        return save_baseline(ws, args, &run);
    }
    let (out, result) = match &args.against.against {
        Some(rev) => profile_post::against::measure_and_judge(
            ws,
            &run,
            args.out.as_deref(),
            rev,
            args.against.pairs,
        ),
        None => profile_post::measure_and_judge(
            ws,
            &profile_post::Spec {
                run: &run,
                baseline: args.baseline.clone(),
                out: args.out.clone(),
                host_policy: if args.judge.allow_different_host {
                    HostPolicy::Any
                } else {
                    HostPolicy::SameHardware
                },
            },
        ),
    };
    let summary = args
        .summary
        .clone()
        .or_else(|| std::env::var_os("GITHUB_STEP_SUMMARY").map(PathBuf::from));
    if let Some(file) = &summary {
        if let Err(e) = append_summary(file, &out, &result) {
            eprintln!("warning: could not write the step summary: {e:#}");
        }
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        if let Ok(c) = &result {
            print!("{}", annotations(c));
        }
    }
    compare::conclude("profile-gate", &out, &result)
}

fn save_baseline(
    ws: &WorkspaceArgs,
    args: &ProfileGateArgs,
    run: &crate::flags::RunArgs,
) -> ExitCode {
    let result = (|| {
        let root = run_options::root(ws)?;
        let out = run_options::dir_or(
            &root,
            args.baseline.as_deref(),
            profile_baseline::DEFAULT_OUT,
        );
        let opts = run_options::options(ws, &root, run, out, None)?;
        pipeline::run(&opts).context("the baseline run failed")
    })();
    match result {
        Ok(outcome) => {
            eprintln!(
                "profile-gate: baseline saved (exit 0): {} target(s) in {}",
                outcome.manifest.targets.len(),
                outcome.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("profile-gate: unusable (exit {EXIT_UNUSABLE}): {e:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

fn append_summary(file: &Path, out: &Path, result: &Result<Comparison>) -> Result<()> {
    let text = match result {
        Ok(_) => {
            let report = out.join(compare::model::MARKDOWN_FILE);
            std::fs::read_to_string(&report)
                .with_context(|| format!("reading {}", report.display()))?
        }
        Err(e) => format!(
            "# Performance comparison: unusable\n\nThe profile gate could not judge this change (exit {EXIT_UNUSABLE}):\n\n```\n{e:#}\n```\n"
        ),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .with_context(|| format!("writing {}", file.display()))
}

/// GitHub's workflow commands; `%`, CR and LF must be escaped in the message.
fn escape(message: &str) -> String {
    message
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// One `::error::` per regression and fired signal, one `::warning::` per inconclusive verdict.
pub fn annotations(c: &Comparison) -> String {
    use compare::model::TimingRow;
    let mut out = String::new();
    let describe = |r: &TimingRow| {
        format!(
            "{} {}: {:+.1}% ({:+.1} … {:+.1}), limit +{:.0}%: {}",
            r.target,
            r.benchmark,
            r.judgement.change_pct,
            r.judgement.low_pct,
            r.judgement.high_pct,
            r.judgement.limit_pct,
            r.judgement.reason
        )
    };
    for r in &c.timings {
        let (level, title) = match r.judgement.verdict {
            Verdict::Regression => ("error", "Performance regression"),
            Verdict::Inconclusive => ("warning", "Inconclusive timing"),
            Verdict::Pass | Verdict::Improvement => continue,
        };
        let mut message = describe(r);
        if let Some(needed) = &r.judgement.runs_needed {
            message.push_str("; ");
            message.push_str(&needed.describe());
        }
        out.push_str(&format!("::{level} title={title}::{}\n", escape(&message)));
    }
    for s in c.signals.iter().filter(|s| s.fired) {
        out.push_str(&format!(
            "::error title=Regression signal::{}\n",
            escape(&format!(
                "{} in {}: {}",
                s.kind.label(),
                s.target,
                s.summary
            ))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn workflow_command_messages_are_escaped() {
        // GitHub would end the message at a newline and read `%0A` in the text as one.
        assert_eq!(escape("+5% (a\nb)\r"), "+5%25 (a%0Ab)%0D");
    }
}

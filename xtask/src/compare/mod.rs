//! Judging two saved runs: the step that ends `compare`, `profile-post` and `profile-gate`.
//!
//! Exit codes: 0 when no benchmark regressed and no regression signal fired (inconclusive
//! verdicts are printed as warnings), 1 when any did, 2 when the inputs were unusable. The
//! last line printed says which and why.

mod comparability;
mod cpu_rows;
mod graphs;
mod html;
mod judge;
mod markdown;
pub mod model;
mod output;
mod profiles;
pub mod recording;
mod run_dir;
pub mod statements;
#[cfg(test)]
mod testdata;
mod verdict;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

pub use comparability::HostPolicy;
pub use run_dir::{Role, RunDir};
pub use verdict::Verdict;

use crate::plan::Plan;
use model::{Comparison, MARKDOWN_FILE};

/// Exit code for unusable inputs (missing or damaged runs, different plans, a failed run).
pub const EXIT_UNUSABLE: u8 = 2;

pub struct Request {
    pub baseline: RunDir,
    pub post: RunDir,
    pub out: PathBuf,
    pub host_policy: HostPolicy,
    /// Thresholds from this plan instead of the recorded ones.
    pub plan: Option<Plan>,
}

/// Judges and writes the report files into `req.out`. An error means the inputs were
/// unusable (exit 2).
pub fn judge_and_write(req: Request) -> Result<Comparison> {
    let judged = judge::judge(
        &req.baseline,
        &req.post,
        &judge::Options {
            host_policy: req.host_policy,
            plan: req.plan,
            command_line: std::env::args().collect(),
            report_dir: req.out.clone(),
        },
    )?;
    output::write(&req.out, judged)
}

/// Prints the verdict table (stdout), the warnings and the final line (stderr), and turns
/// the result into the exit code.
pub fn conclude(command: &str, out: &Path, result: &Result<Comparison>) -> ExitCode {
    match result {
        Ok(c) => {
            print!("{}", markdown::terminal(c));
            let _ = std::io::stdout().flush();
            for reason in [
                &c.comparability.timings_blocked,
                &c.comparability.profiles_blocked,
            ]
            .into_iter()
            .flatten()
            {
                eprintln!("warning: {reason}");
            }
            for f in &c.comparability.findings {
                eprintln!(
                    "note: {}: baseline {}, post {} ({})",
                    f.aspect, f.baseline, f.post, f.effect
                );
            }
            for row in c
                .timings
                .iter()
                .filter(|r| r.judgement.verdict == Verdict::Inconclusive)
            {
                eprintln!(
                    "warning: inconclusive: {}",
                    markdown::inconclusive_note(row)
                );
            }
            eprintln!(
                "{command}: {} (exit {}): {}; report: {}",
                if c.outcome.exit_code == 0 {
                    "pass"
                } else {
                    "regression"
                },
                c.outcome.exit_code,
                c.outcome.message,
                out.join(MARKDOWN_FILE).display()
            );
            ExitCode::from(c.outcome.exit_code)
        }
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("{command}: unusable (exit {EXIT_UNUSABLE}): {e:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

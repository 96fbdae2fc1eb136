//! One module per `cargo xtask` command, each with a `run` that returns the process's exit
//! code. The judging commands (`profile-post`, `compare`, `profile-gate`,
//! `profiler-overhead`) have three outcomes and print their own last line; the others
//! succeed or fail with one sentence ([`finish`]).

pub mod audit;
pub mod check_env;
pub mod compare;
pub mod install_tools;
pub mod profile_baseline;
pub mod profile_gate;
pub mod profile_post;
pub mod profiler_overhead;

use std::process::ExitCode;

use crate::flags::{Cli, Command};

/// Runs the command `cli` names.
pub fn run(cli: &Cli) -> ExitCode {
    let ws = &cli.workspace;
    match &cli.command {
        Command::InstallTools(args) => install_tools::run(args),
        Command::ProfileBaseline(args) => profile_baseline::run(ws, args),
        Command::CheckEnv(args) => check_env::run(args),
        Command::Audit(args) => audit::run(ws, args),
        Command::ProfilePost(args) => profile_post::run(ws, args),
        Command::Compare(args) => compare::run(ws, args),
        Command::ProfileGate(args) => profile_gate::run(ws, args),
        Command::ProfilerOverhead(args) => profiler_overhead::run(ws, args),
    }
}

/// The exit code of a command that succeeds or fails. The error is printed here rather than
/// returned from `main`, so a RUST_BACKTRACE set for other reasons does not bury the message
/// (which says how to fix the problem) in a backtrace.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

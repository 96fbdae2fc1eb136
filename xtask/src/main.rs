//! Build and profiling automation for the Tasker workspace (`cargo xtask --help`).
//!
//! `main` only parses the command line and hands over to one module per command, the layout
//! rust-analyzer's xtask uses.

mod analysis;
mod audit;
mod check_env;
mod clock;
mod compare;
mod cpu_idle;
mod criterion;
mod flags;
mod host;
mod install_tools;
mod interference;
mod pipeline;
mod plan;
mod probe;
mod profile_baseline;
mod profile_gate;
mod profile_post;
mod profiler_overhead;
mod redact;
mod revision;
mod ruby_build;
mod run_options;
mod stats;
mod workspace;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flags::Cli::parse();
    let ws = &cli.workspace;
    match &cli.command {
        flags::Command::InstallTools(args) => exit(install_tools::run(args)),
        flags::Command::ProfileBaseline(args) => exit(profile_baseline::run(ws, args)),
        flags::Command::CheckEnv(args) => exit(check_env::run(args)),
        flags::Command::Audit(args) => exit(audit::run(ws, args)),
        // The judging commands have three outcomes (0 pass, 1 regression, 2 unusable) and
        // print their own last line.
        flags::Command::ProfilePost(args) => profile_post::run(ws, args),
        flags::Command::Compare(args) => compare::run(ws, args),
        flags::Command::ProfileGate(args) => profile_gate::run(ws, args),
        flags::Command::ProfilerOverhead(args) => {
            profiler_overhead::exit_code(profiler_overhead::run(ws, args))
        }
    }
}

/// Printed here rather than by returning the error, so a RUST_BACKTRACE set for other
/// reasons does not bury the message (which says how to fix the problem) in a backtrace.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

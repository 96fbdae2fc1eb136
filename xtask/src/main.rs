//! Build and profiling automation for the Tasker workspace (`cargo xtask --help`).
//!
//! `main` only parses the command line and hands over to one module per command, the layout
//! rust-analyzer's xtask uses.

mod analysis;
mod audit;
mod check_env;
mod clock;
mod criterion;
mod flags;
mod host;
mod install_tools;
mod interference;
mod pipeline;
mod plan;
mod probe;
mod profile_baseline;
mod redact;
mod workspace;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Printed here rather than by returning the error, so a RUST_BACKTRACE set for other
    // reasons does not bury the message (which says how to fix the problem) in a backtrace.
    match run(flags::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: flags::Cli) -> anyhow::Result<()> {
    match cli.command {
        flags::Command::InstallTools(args) => install_tools::run(&args),
        flags::Command::ProfileBaseline(args) => profile_baseline::run(&cli.workspace, &args),
        flags::Command::CheckEnv(args) => check_env::run(&args),
        flags::Command::Audit(args) => audit::run(&cli.workspace, &args),
    }
}

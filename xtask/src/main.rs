//! Build and profiling automation for the Tasker workspace (`cargo xtask --help`).
//!
//! `main` only parses the command line and hands over to [`commands`], one module per
//! command, the layout rust-analyzer's xtask uses; the modules beside it are the library the
//! commands share (the measuring pipeline, the judging, the plan, the machine probes).

mod analysis;
mod clock;
mod commands;
mod compare;
mod cpu_idle;
mod criterion;
mod flags;
mod host;
mod interference;
mod inventory;
mod machine_check;
mod pipeline;
mod plan;
mod probe;
mod profiler_choice;
mod redact;
mod revision;
mod ruby_build;
mod run_options;
mod stats;
mod workspace;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    commands::run(&flags::Cli::parse())
}

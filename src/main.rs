//! The `tasker` command: run the engine's processes and manage its database.

mod commands;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    commands::init_tracing();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

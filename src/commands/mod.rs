//! Command-line parsing and dispatch.

mod db;
mod migrate;
mod server;
mod task;
mod worker;

use clap::{Parser, Subcommand};

/// Tasker: a workflow orchestration engine on PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "tasker", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local development PostgreSQL under target/ (no installation or configuration needed
    /// beyond the PostgreSQL server binaries).
    Db(db::DbArgs),
    /// Apply the schema migrations to the database named by --database-url / DATABASE_URL.
    Migrate(migrate::MigrateArgs),
    /// Run the REST API and an orchestrator in one process (Ctrl-C or SIGTERM stops it).
    Server(server::ServerArgs),
    /// Run a worker that executes the example step handlers for its namespaces' steps.
    Worker(worker::WorkerArgs),
    /// Create, inspect, list and wait for tasks, and cancel, resolve or retry them, through a
    /// running server's API.
    Task(task::TaskArgs),
}

/// Logs go to stderr, filtered by RUST_LOG (default: info for tasker's crates).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tasker=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Db(args) => db::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Server(args) => server::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Task(args) => task::run(args).await,
    }
}

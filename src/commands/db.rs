//! `tasker db start | stop | status | url | destroy`: a local development cluster.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tasker_shared::local_postgres::LocalCluster;

/// Database created (and migrated) on the local cluster.
const DATABASE: &str = "tasker";

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    action: DbAction,
    /// Directory holding the cluster (its description, and its data unless the PostgreSQL
    /// user cannot reach it).
    #[arg(long, global = true, default_value = "target/tasker-db")]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DbAction {
    /// Initialise the cluster if needed, start it, and create and migrate the `tasker` database.
    Start,
    /// Stop the cluster (its data is kept).
    Stop,
    /// Exit 0 and print the URL when the cluster runs, exit 1 when it does not.
    Status,
    /// Print the connection URL of the `tasker` database.
    Url,
    /// Stop the cluster and delete it with all its data.
    Destroy,
}

pub async fn run(args: DbArgs) -> anyhow::Result<()> {
    match args.action {
        DbAction::Start => start(args.dir).await,
        DbAction::Stop => {
            let cluster = LocalCluster::open(&args.dir)?;
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
            println!("stopped the cluster in {}", args.dir.display());
            Ok(())
        }
        DbAction::Status => {
            let cluster = LocalCluster::open(&args.dir)?;
            if cluster.is_running() {
                println!("running: {}", cluster.url(DATABASE));
                Ok(())
            } else {
                anyhow::bail!(
                    "the cluster in {} is not running; start it with `tasker db start`",
                    args.dir.display()
                )
            }
        }
        DbAction::Destroy => {
            let cluster = LocalCluster::open(&args.dir)?;
            tokio::task::spawn_blocking(move || cluster.destroy()).await??;
            println!("deleted the cluster in {}", args.dir.display());
            Ok(())
        }
        DbAction::Url => {
            let cluster = LocalCluster::open(&args.dir)?;
            println!("{}", cluster.url(DATABASE));
            Ok(())
        }
    }
}

async fn start(dir: PathBuf) -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(move || -> anyhow::Result<LocalCluster> {
        let mut cluster = LocalCluster::init_or_open(&dir)?;
        cluster.start()?;
        Ok(cluster)
    })
    .await??;
    cluster.ensure_database(DATABASE).await?;
    let url = cluster.url(DATABASE);
    let pool = tasker_shared::database::connect(&url, 2).await?;
    tasker_shared::schema::migrate(&pool)
        .await
        .context("migrating the local database")?;
    pool.close().await;
    eprintln!(
        "cluster running in {} (log: {})",
        cluster.dir().display(),
        cluster.info().log_file.display()
    );
    println!("{url}");
    Ok(())
}

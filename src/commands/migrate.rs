//! `tasker migrate`: apply the schema migrations.

use anyhow::Context;
use clap::Args;
use tasker_shared::database::{connect, migrate, redact_url, MIGRATOR};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let pool = connect(&args.database_url, 2).await?;
    migrate(&pool)
        .await
        .with_context(|| format!("migrating {}", redact_url(&args.database_url)))?;
    println!(
        "schema is at migration {} on {}",
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default(),
        redact_url(&args.database_url)
    );
    Ok(())
}

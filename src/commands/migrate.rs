//! `tasker migrate`: apply the schema migrations and the changed SQL function files.

use anyhow::Context;
use clap::Args;
use tasker_shared::database::{connect, redact_url};
use tasker_shared::schema::{migrate, FUNCTION_FILES, MIGRATOR};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let pool = connect(&args.database_url, 2).await?;
    let applied = migrate(&pool)
        .await
        .with_context(|| format!("migrating {}", redact_url(&args.database_url)))?;
    println!(
        "schema is at migration {} on {}; function files: {applied} applied, {} unchanged",
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default(),
        redact_url(&args.database_url),
        FUNCTION_FILES.len().saturating_sub(applied)
    );
    Ok(())
}

//! Applying the schema: sqlx's versioned migrations (`migrations/`: schemas, types, tables,
//! indexes), then the SQL function files (`functions/`), each applied again whenever its text
//! changed. `tasker-shared/functions/README.md` is the rule for changing either.

use sha2::{Digest, Sha256};
use sqlx::migrate::MigrateError;
use sqlx::{Connection, PgConnection, PgPool};

use crate::error::{DbContext, TaskerError, TaskerResult};

/// The versioned migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The function files, in the order they are applied (each file's functions and triggers are
/// `CREATE OR REPLACE`d, so applying a file again is harmless).
pub const FUNCTION_FILES: &[(&str, &str)] = &[
    (
        "10_transitions.sql",
        include_str!("../functions/10_transitions.sql"),
    ),
    (
        "20_readiness.sql",
        include_str!("../functions/20_readiness.sql"),
    ),
    ("30_queues.sql", include_str!("../functions/30_queues.sql")),
    ("40_worker.sql", include_str!("../functions/40_worker.sql")),
    (
        "50_orchestration.sql",
        include_str!("../functions/50_orchestration.sql"),
    ),
    (
        "60_operator.sql",
        include_str!("../functions/60_operator.sql"),
    ),
];

/// The first version of the folded schema: a database with an applied migration older than
/// this was migrated with the history the folded schema replaced.
const FOLDED_SCHEMA_VERSION: i64 = 20261208000001;

/// Applies every pending migration, then every function file whose text changed since it
/// was last applied; returns how many function files were applied.
///
/// sqlx keeps its bookkeeping table `_sqlx_migrations` unqualified, so it lands in the first
/// schema of the search path; for a role named `tasker` that is the `tasker` schema once the
/// first migration has created it, and a second run would no longer find its own records.
/// Pinning the search path to `public` keeps the bookkeeping in one place; every object of the
/// schema itself is qualified with `tasker.`.
pub async fn migrate(pool: &PgPool) -> TaskerResult<usize> {
    let mut conn = pool
        .acquire()
        .await
        .db_context("acquiring a connection to migrate")?;
    sqlx::query("SET search_path TO public")
        .execute(&mut *conn)
        .await
        .db_context("setting the search path for migrations")?;
    let result = match MIGRATOR.run(&mut *conn).await {
        Ok(()) => apply_function_files(&mut conn).await,
        Err(MigrateError::VersionMissing(version)) if version < FOLDED_SCHEMA_VERSION => {
            Err(TaskerError::OldSchemaHistory { version })
        }
        Err(e) => Err(e.into()),
    };
    // the connection returns to the pool; leave it as every other connection is
    sqlx::query("RESET search_path")
        .execute(&mut *conn)
        .await
        .db_context("resetting the search path after migrations")?;
    result
}

/// Applies each function file whose SHA-256 differs from the one recorded when it was last
/// applied, in one transaction, one migrating process at a time.
async fn apply_function_files(conn: &mut PgConnection) -> TaskerResult<usize> {
    let mut tx = conn
        .begin()
        .await
        .db_context("starting to apply the function files")?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tasker function files', 0))")
        .execute(&mut *tx)
        .await
        .db_context("waiting for another process applying the function files")?;
    // a function may call one defined in a later file: the bodies are checked when they run
    sqlx::query("SET LOCAL check_function_bodies = off")
        .execute(&mut *tx)
        .await
        .db_context("deferring the check of function bodies")?;
    let mut applied = 0;
    for (file, text) in FUNCTION_FILES {
        let digest = format!("{:x}", Sha256::digest(text.as_bytes()));
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM tasker.function_files WHERE file = $1")
                .bind(file)
                .fetch_optional(&mut *tx)
                .await
                .db_context(format!("reading when {file} was last applied"))?;
        if recorded.as_deref() == Some(digest.as_str()) {
            continue;
        }
        sqlx::raw_sql(text)
            .execute(&mut *tx)
            .await
            .db_context(format!("applying tasker-shared/functions/{file}"))?;
        sqlx::query(
            "INSERT INTO tasker.function_files (file, sha256) VALUES ($1, $2)
             ON CONFLICT (file) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()",
        )
        .bind(file)
        .bind(&digest)
        .execute(&mut *tx)
        .await
        .db_context(format!("recording that {file} was applied"))?;
        applied += 1;
    }
    tx.commit()
        .await
        .db_context("committing the function files")?;
    Ok(applied)
}

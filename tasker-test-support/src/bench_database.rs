//! The benchmarks' databases: one fresh, migrated database per bench binary (registered with
//! the counting pass), pools configured as the services configure theirs, and the teardown
//! that drops what this process created on a `DATABASE_URL` server.

use std::sync::Mutex;

use sqlx::{Connection, PgConnection, PgPool};
use tasker_shared::database::{database_url_from_env, redact_url};
use tasker_shared::error::display_chain;

use crate::executor::runtime;
use crate::test_database::{drop_database, TestDatabase};

/// Databases this process created on a `DATABASE_URL` server, dropped by [`teardown`].
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A fresh, migrated database for one benchmark binary.
#[derive(Debug, Clone)]
pub struct BenchDatabase {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl BenchDatabase {
    /// Creates a database (on the throwaway cluster when `DATABASE_URL` is unset) with a pool
    /// of `max_connections`. Must be called from inside [`runtime`].
    pub async fn create(max_connections: u32) -> Self {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("benchmark database: {}", display_chain(&e)))
            .keep();
        crate::bench_db_stats::register_database(&db.name, &db.url);
        if database_url_from_env().is_some() {
            CREATED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(db.name.clone());
        }
        // Connections opened before statement tracking is switched on would never count.
        let counting = crate::bench_db_stats::track_statements(&db.pool, &db.name).await;
        let pool = if max_connections == 10 && !counting {
            db.pool
        } else {
            db.pool.close().await;
            pool(&db.url, max_connections).await
        };
        Self {
            pool,
            url: db.url,
            name: db.name,
        }
    }

    /// Another pool on the same database (for a component that owns its pool).
    pub async fn new_pool(&self, max_connections: u32) -> PgPool {
        pool(&self.url, max_connections).await
    }
}

/// A pool configured as the services configure theirs (`database::connect`: no ping before
/// each acquire, generic plans), so the benchmarks measure what the engine runs.
async fn pool(url: &str, max_connections: u32) -> PgPool {
    tasker_shared::database::connect(url, max_connections)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the benchmark database {}: {}",
                redact_url(url),
                display_chain(&e)
            )
        })
}

/// Drops the databases this process created on a `DATABASE_URL` server. On the throwaway
/// cluster there is nothing to do: the cluster and its data directory disappear when the
/// process exits. Errors are reported, not fatal: the measurements are already written.
/// `TASKER_BENCH_KEEP_DATABASE=1` keeps them (their names are printed), to inspect the data
/// or replay a statement against it with `pgbench` or `EXPLAIN` after the run.
pub fn teardown() {
    let names: Vec<String> =
        std::mem::take(&mut *CREATED.lock().unwrap_or_else(|p| p.into_inner()));
    if std::env::var_os("TASKER_BENCH_KEEP_DATABASE").is_some_and(|v| v == "1") {
        for name in &names {
            eprintln!(
                "teardown: kept the benchmark database {name} (TASKER_BENCH_KEEP_DATABASE=1)"
            );
        }
        return;
    }
    let Some(admin_url) = database_url_from_env() else {
        return;
    };
    if names.is_empty() {
        return;
    }
    runtime().block_on(async {
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("teardown: cannot connect to drop the benchmark databases: {e}");
                return;
            }
        };
        for name in names {
            if let Err(e) = drop_database(&mut admin, &name).await {
                eprintln!("teardown: {}", display_chain(&e));
            }
        }
        let _ = admin.close().await;
    });
}

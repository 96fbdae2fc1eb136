//! Databases for tests and benchmarks: each caller gets a fresh database with the schema
//! applied, on the server named by `DATABASE_URL` or, when it is unset, on a throwaway cluster
//! that this process starts on first use and that disappears when the process exits.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Mutex, OnceCell};

use crate::database::redact_url;
use crate::error::display_chain;
use crate::local_postgres::ThrowawayCluster;

/// Name of the database on the throwaway cluster that holds the migrated schema; new test
/// databases are copied from it, which is much faster than migrating each one.
const TEMPLATE: &str = "tasker_template";

/// Where test databases are created.
struct Server {
    /// URL of a maintenance database on the server, where CREATE DATABASE runs.
    admin_url: String,
    /// Database to copy, when the server has a migrated template.
    template: Option<String>,
    /// Keeps the throwaway cluster (and its watcher) alive for the process's lifetime.
    _cluster: Option<ThrowawayCluster>,
}

static SERVER: OnceCell<Result<Server, String>> = OnceCell::const_new();
/// CREATE DATABASE ... TEMPLATE fails if another session is copying the same template at the
/// same moment, so creations within this process take turns.
static CREATE_LOCK: Mutex<()> = Mutex::const_new(());

/// A freshly created, migrated database.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// A pool on the database (10 connections).
    pub pool: PgPool,
    /// Its connection URL.
    pub url: String,
    /// Its name.
    pub name: String,
}

impl TestDatabase {
    /// Creates a database, panicking with the reason when that is impossible (for tests, where
    /// a panic is the failure report).
    pub async fn new() -> Self {
        match Self::create().await {
            Ok(db) => db,
            Err(reason) => panic!("could not create a test database: {reason}"),
        }
    }

    /// Creates a database.
    pub async fn create() -> Result<Self, String> {
        let server = SERVER
            .get_or_init(|| async { start_server().await })
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        let name = format!("tasker_test_{}", uuid::Uuid::now_v7().simple());
        {
            let _turn = CREATE_LOCK.lock().await;
            let mut admin = PgConnection::connect(&server.admin_url)
                .await
                .map_err(|e| format!("connecting to {}: {e}", redact_url(&server.admin_url)))?;
            let statement = match &server.template {
                Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
                None => format!("CREATE DATABASE {name}"),
            };
            sqlx::query(&statement)
                .execute(&mut admin)
                .await
                .map_err(|e| format!("{statement}: {e}"))?;
            let _ = admin.close().await;
        }
        let url = replace_database(&server.admin_url, &name);
        let pool = crate::database::connect(&url, 10)
            .await
            .map_err(|e| display_chain(&e))?;
        if server.template.is_none() {
            crate::database::migrate(&pool)
                .await
                .map_err(|e| display_chain(&e))?;
        }
        Ok(Self { pool, url, name })
    }
}

async fn start_server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(Server {
            admin_url: url,
            template: None,
            _cluster: None,
        });
    }
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .map_err(|e| format!("starting the throwaway cluster panicked: {e}"))?
        .map_err(|e| display_chain(&e))?;
    let admin_url = cluster.cluster().url("postgres");
    cluster
        .cluster()
        .ensure_database(TEMPLATE)
        .await
        .map_err(|e| display_chain(&e))?;
    let template_url = cluster.cluster().url(TEMPLATE);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&template_url)
        .await
        .map_err(|e| format!("connecting to the template database: {e}"))?;
    crate::database::migrate(&pool)
        .await
        .map_err(|e| display_chain(&e))?;
    // no session may stay connected to a template while it is copied
    pool.close().await;
    Ok(Server {
        admin_url,
        template: Some(TEMPLATE.to_string()),
        _cluster: Some(cluster),
    })
}

/// The URL with its database name replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_name_is_replaced_and_parameters_kept() {
        assert_eq!(
            replace_database("postgres://u:p@h:5432/app?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://h:5432", "t1"),
            "postgres://h:5432/t1"
        );
    }
}

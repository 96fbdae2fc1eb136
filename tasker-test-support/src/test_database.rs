//! Databases for tests and benchmarks: each caller gets a fresh database with the schema
//! applied, on the server named by `DATABASE_URL` or, when it is unset, on a throwaway cluster
//! that this process starts on first use and that disappears when the process exits. On a
//! `DATABASE_URL` server, which outlives the process, a test's database is dropped when its last
//! handle goes away; a test executable run again and again (as the profiler runs the lifecycle
//! tests) would otherwise leave hundreds of databases behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tasker_shared::database::redact_url;
use tasker_shared::error::display_chain;
use tasker_shared::local_postgres::{LocalPostgresError, ThrowawayCluster};
use tasker_shared::TaskerError;
use tokio::sync::{Mutex, OnceCell};

/// Name of the database on the throwaway cluster that holds the migrated schema; new test
/// databases are copied from it, which is much faster than migrating each one.
const TEMPLATE: &str = "tasker_template";

/// Why a test database could not be created or dropped.
#[derive(Debug, thiserror::Error)]
pub enum TestDatabaseError {
    /// The server could not be started or prepared. Kept as text: the first attempt's failure
    /// is remembered and reported to every later caller of the process.
    #[error("no server for test databases: {0}")]
    Server(String),
    #[error("connecting to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("`{statement}` failed")]
    Statement {
        statement: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("preparing database {name}")]
    Prepare {
        name: String,
        // boxed: the data layer's error is large and this one travels in every Result
        #[source]
        source: Box<TaskerError>,
    },
    #[error("preparing the throwaway cluster")]
    Cluster(#[from] LocalPostgresError),
    #[error("starting the throwaway cluster panicked")]
    ClusterPanicked(#[source] tokio::task::JoinError),
    #[error("building a runtime to drop database {name}")]
    Runtime {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread dropping the database panicked")]
    DropPanicked,
}

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
    /// Drops the database with the last clone of this handle (`DATABASE_URL` servers only).
    dropper: Option<Arc<Dropper>>,
}

/// Drops one database on a server this process does not own.
#[derive(Debug)]
struct Dropper {
    admin_url: String,
    name: String,
    armed: AtomicBool,
}

impl Drop for Dropper {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on its own futures; a thread
        // with a runtime of its own does the work while this one waits, so the database is gone
        // when the test ends.
        let outcome = std::thread::spawn(move || -> Result<(), TestDatabaseError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| TestDatabaseError::Runtime {
                    name: name.clone(),
                    source,
                })?;
            runtime.block_on(async {
                let mut admin = connect_admin(&admin_url).await?;
                drop_database(&mut admin, &name).await?;
                let _ = admin.close().await;
                Ok(())
            })
        })
        .join()
        .unwrap_or(Err(TestDatabaseError::DropPanicked));
        if let Err(e) = outcome {
            eprintln!(
                "warning: test database {} left behind: {}",
                self.name,
                display_chain(&e)
            );
        }
    }
}

/// Drops database `name` through the `admin` connection, ending the sessions still open on it
/// (`WITH (FORCE)`: pools that were never closed). The error names the statement.
pub async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), TestDatabaseError> {
    run(
        admin,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
}

async fn run(conn: &mut PgConnection, statement: String) -> Result<(), TestDatabaseError> {
    match sqlx::query(&statement).execute(conn).await {
        Ok(_) => Ok(()),
        Err(source) => Err(TestDatabaseError::Statement { statement, source }),
    }
}

async fn connect_admin(admin_url: &str) -> Result<PgConnection, TestDatabaseError> {
    PgConnection::connect(admin_url)
        .await
        .map_err(|source| TestDatabaseError::Connect {
            url: redact_url(admin_url),
            source,
        })
}

impl TestDatabase {
    /// Creates a database, panicking with the reason when that is impossible (for tests, where
    /// a panic is the failure report).
    pub async fn new() -> Self {
        match Self::create().await {
            Ok(db) => db,
            Err(e) => panic!("could not create a test database: {}", display_chain(&e)),
        }
    }

    /// Creates a database.
    pub async fn create() -> Result<Self, TestDatabaseError> {
        let server = SERVER
            .get_or_init(|| async { start_server().await.map_err(|e| display_chain(&e)) })
            .await
            .as_ref()
            .map_err(|reason| TestDatabaseError::Server(reason.clone()))?;
        let name = format!("tasker_test_{}", uuid::Uuid::now_v7().simple());
        {
            let _turn = CREATE_LOCK.lock().await;
            let mut admin = connect_admin(&server.admin_url).await?;
            let statement = match &server.template {
                Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
                None => format!("CREATE DATABASE {name}"),
            };
            run(&mut admin, statement).await?;
            let _ = admin.close().await;
        }
        let url = replace_database(&server.admin_url, &name);
        let prepare = |source| TestDatabaseError::Prepare {
            name: name.clone(),
            source: Box::new(source),
        };
        let pool = tasker_shared::database::connect(&url, 10)
            .await
            .map_err(prepare)?;
        if server.template.is_none() {
            tasker_shared::schema::migrate(&pool)
                .await
                .map_err(prepare)?;
        }
        // On the throwaway cluster the whole cluster goes when the process exits.
        let dropper = server._cluster.is_none().then(|| {
            Arc::new(Dropper {
                admin_url: server.admin_url.clone(),
                name: name.clone(),
                armed: AtomicBool::new(true),
            })
        });
        Ok(Self {
            pool,
            url,
            name,
            dropper,
        })
    }

    /// Keeps the database after its last handle is dropped: the caller drops it itself (the
    /// benchmarks, whose databases live in statics, do so in their teardown).
    pub fn keep(self) -> Self {
        if let Some(dropper) = &self.dropper {
            dropper.armed.store(false, Ordering::SeqCst);
        }
        self
    }
}

async fn start_server() -> Result<Server, TestDatabaseError> {
    if let Some(url) = tasker_shared::database::database_url_from_env() {
        return Ok(Server {
            admin_url: url,
            template: None,
            _cluster: None,
        });
    }
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .map_err(TestDatabaseError::ClusterPanicked)??;
    let admin_url = cluster.cluster().url("postgres");
    cluster.cluster().ensure_database(TEMPLATE).await?;
    let template_url = cluster.cluster().url(TEMPLATE);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&template_url)
        .await
        .map_err(|source| TestDatabaseError::Connect {
            url: redact_url(&template_url),
            source,
        })?;
    tasker_shared::schema::migrate(&pool)
        .await
        .map_err(|source| TestDatabaseError::Prepare {
            name: TEMPLATE.to_owned(),
            source: Box::new(source),
        })?;
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
    use super::*;

    async fn exists(pool: &PgPool, name: &str) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(pool)
            .await
            .expect("reading pg_database")
    }

    /// A database of its own on the test server, with a session left open on it as a test's
    /// pool would leave one.
    async fn scratch_database(admin_url: &str) -> (String, PgPool) {
        let name = format!("tasker_drop_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(admin_url).await.expect("admin");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("creating the scratch database");
        let session = tasker_shared::database::connect(&replace_database(admin_url, &name), 1)
            .await
            .expect("connecting to the scratch database");
        sqlx::query("SELECT 1")
            .execute(&session)
            .await
            .expect("a session on it");
        (name, session)
    }

    #[tokio::test]
    async fn the_last_handle_drops_the_database_and_a_kept_one_stays() {
        let db = TestDatabase::new().await;
        let admin_url = match SERVER.get() {
            Some(Ok(server)) => server.admin_url.clone(),
            _ => panic!("the test server is up after TestDatabase::new"),
        };
        let dropper = |name: &str| {
            Arc::new(Dropper {
                admin_url: admin_url.clone(),
                name: name.to_owned(),
                armed: AtomicBool::new(true),
            })
        };

        let (name, _session) = scratch_database(&admin_url).await;
        let handle = TestDatabase {
            pool: db.pool.clone(),
            url: db.url.clone(),
            name: name.clone(),
            dropper: Some(dropper(&name)),
        };
        let clone = handle.clone();
        drop(handle);
        assert!(exists(&db.pool, &name).await, "dropped with a clone alive");
        // Dropped from inside this (current-thread) runtime, with a session still open on it.
        drop(clone);
        assert!(!exists(&db.pool, &name).await, "{name} is still there");

        let (kept, _session) = scratch_database(&admin_url).await;
        let handle = TestDatabase {
            pool: db.pool.clone(),
            url: db.url.clone(),
            name: kept.clone(),
            dropper: Some(dropper(&kept)),
        }
        .keep();
        drop(handle);
        assert!(exists(&db.pool, &kept).await, "a kept database was dropped");
        let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
        drop_database(&mut admin, &kept).await.expect("cleaning up");
    }

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

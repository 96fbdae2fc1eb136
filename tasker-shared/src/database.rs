//! Connecting to PostgreSQL (the schema is applied by [`crate::schema`]).

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool, Postgres};

use crate::error::{DbContext, TaskerResult};

/// Opens a connection pool for `url` with up to `max_connections` connections, tuned for the
/// engine's short statements (see [`pool_options`] and [`connect_options`]).
pub async fn connect(url: &str, max_connections: u32) -> TaskerResult<PgPool> {
    pool_options(max_connections)
        .connect_with(connect_options(url)?)
        .await
        .db_context(format!(
            "connecting to {} (is PostgreSQL running? `tasker db start` runs a local one)",
            redact_url(url)
        ))
}

/// `DATABASE_URL`, or `None` when it is unset or empty: an empty value is a variable someone
/// cleared, and taken for a URL it fails later with "relative URL without a base".
pub fn database_url_from_env() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Session settings for every connection the engine opens.
///
/// `plan_cache_mode = force_generic_plan`: the hot statements look rows up by key, where a
/// generic plan is as good as a custom one, and PostgreSQL would otherwise plan each statement
/// afresh for its first five executions on every connection (and every statement inside the
/// PL/pgSQL functions too), which dominated a warm-up measured at several milliseconds per step.
///
/// `jit = off`: the engine's statements take well under a millisecond, and compiling one with
/// LLVM takes tens. PostgreSQL decides to compile from the plan's estimated cost, and a generic
/// plan made while a table had never been analysed can carry an estimate thousands of times
/// too high: on the build machine one such plan (the ancestors' recursive query) was compiled
/// on every execution and throughput fell from about 900 to 34 steps a second.
///
/// `enable_seqscan = off`, `enable_bitmapscan = off`: every statement the engine runs finds
/// its rows through an index, and so do the statements PostgreSQL runs on its behalf: the
/// foreign-key probe of each history insert, the cascades of a deletion. Those are planned
/// once per connection and kept, like the engine's own; planned while the statistics said a
/// table was a page long (a new installation, a table a retention job has just emptied), the
/// probe reads the whole table, and keeps doing so as the table grows, until the next analyse.
/// The settings only price those scans out: a statement with no index to use still runs.
/// (The functions whose own plans fell into this pin the same settings, so that callers on
/// other connections get them too: see `tasker-shared/functions/`.)
pub fn connect_options(url: &str) -> TaskerResult<PgConnectOptions> {
    Ok(url
        .parse::<PgConnectOptions>()
        .db_context(format!("parsing the database URL {}", redact_url(url)))?
        .options([
            ("plan_cache_mode", "force_generic_plan"),
            ("jit", "off"),
            ("enable_seqscan", "off"),
            ("enable_bitmapscan", "off"),
        ])
        // statement logging at INFO would put every hot-path query in the logs
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

/// Pool settings: no liveness ping before each acquire (sqlx's default costs a round trip
/// per query; a dead connection surfaces as an error on the statement instead, which callers
/// retry like any other database error), and one connection opened eagerly.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1.min(max_connections))
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
}

/// One pooled connection kept by a loop whose statements run one after another (the
/// orchestrator's and the worker's), checked out on first use and kept until an error.
///
/// Why not a checkout per statement: sqlx hands out its idle connections first in, first out,
/// so consecutive statements land on a different server process each time, whose caches have
/// gone cold since its last turn; and it returns each connection with a round trip (a `Sync`
/// to check the connection) on a spawned task. Measured on the 2-core build machine, the task
/// transition benchmark took about 40 % less time on one held connection than through a pool
/// of ten. A loop that fails drops its connection (the pool checks it) and takes another.
pub struct HeldConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    what: &'static str,
}

impl HeldConnection {
    /// A holder for `pool`; `what` names the holder in errors ("the orchestrator loop").
    pub fn new(pool: PgPool, what: &'static str) -> Self {
        Self {
            pool,
            conn: None,
            what,
        }
    }

    /// The held connection, checked out now if none is held.
    pub async fn get(&mut self) -> TaskerResult<&mut PgConnection> {
        if self.conn.is_none() {
            let conn = self
                .pool
                .acquire()
                .await
                .db_context(format!("acquiring a connection for {}", self.what))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just checked out"))
    }

    /// Gives the connection back after a failed statement: the pool tests it on return, and
    /// the next [`Self::get`] checks out a healthy one.
    pub fn discard(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is held now.
    pub fn is_held(&self) -> bool {
        self.conn.is_some()
    }
}

/// The URL with any password replaced by `***`, safe for logs and reports.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn password_is_removed_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://user:s3cret@db.example:5432/app?sslmode=disable"),
            "postgres://user:***@db.example:5432/app?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://user@localhost/app"),
            "postgres://user@localhost/app"
        );
        assert_eq!(
            redact_url("postgres://localhost/app"),
            "postgres://localhost/app"
        );
    }
}

//! A PostgreSQL cluster run from the system's server binaries, for development (`tasker db`),
//! tests and benchmarks, so that nothing has to be installed or configured by hand.
//!
//! PostgreSQL refuses to run as root; when the caller is root the cluster's processes run as
//! the `postgres` system user (created by every distribution's PostgreSQL packages) via
//! `setuid` in the spawned command, so `sudo` is not needed.

mod binaries;
mod cluster;

pub use binaries::PgBinaries;
pub use cluster::{ClusterInfo, LocalCluster, ThrowawayCluster};

use std::path::PathBuf;

/// What can go wrong starting or stopping a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found (looked in \
         $TASKER_PG_BINDIR, `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin); install \
         them with `apt-get install postgresql` (Debian/Ubuntu), `dnf install postgresql-server` \
         (Fedora) or `brew install postgresql@16` (macOS), or set TASKER_PG_BINDIR to their directory"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is no `postgres` system user to run the cluster as \
         (PostgreSQL refuses to run as root); install the distribution's PostgreSQL server \
         package, which creates it, or run as an ordinary user"
    )]
    NoPostgresUser,
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("could not run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no local cluster in {0}; start one with `tasker db start`")]
    NotInitialised(PathBuf),
    #[error("the cluster description {path} is unreadable ({reason}); remove the directory and run `tasker db start` again")]
    CorruptInfo { path: PathBuf, reason: String },
    #[error("could not find a free TCP port on 127.0.0.1")]
    NoFreePort(#[source] std::io::Error),
    #[error("the local cluster is running but refused a connection")]
    Connect(#[from] sqlx::Error),
    #[error("could not apply the migrations to the local cluster")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

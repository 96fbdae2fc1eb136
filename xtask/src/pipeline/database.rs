//! A throwaway PostgreSQL for targets that need one, through the workspace's own
//! `tasker db` command (so the xtask needs no database code). Stopped and deleted when the
//! guard drops: at the end, on failure, and after Ctrl-C. Deleted, not kept: whatever the
//! measured programs left in it (test databases, queue rows) would otherwise grow from run to
//! run and change what the next run measures.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::build::Cargo;

/// The package and binary that provide `tasker db start|url|status|stop`.
pub const TASKER_PACKAGE: &str = "tasker-core";
pub const TASKER_BINARY: &str = "tasker";

/// The throwaway cluster's directory under the cargo target directory: a directory of its own,
/// so a cluster the user runs in `tasker db`'s default one is untouched.
const THROWAWAY_DIR: &str = "xtask-tasker-db";

/// Builds the `tasker` binary that provides `tasker db`, with the run's flags.
pub fn build_tasker(sh: &Shell, cargo: &Cargo, log: &Path) -> Result<PathBuf> {
    eprintln!("building the `{TASKER_BINARY}` binary for `tasker db`");
    Ok(cargo
        .build_bin(sh, TASKER_PACKAGE, TASKER_BINARY, log)?
        .executable)
}

/// Whether `DATABASE_URL` is unset, so the run needs a throwaway cluster and the `tasker`
/// binary that starts it.
pub fn needs_throwaway() -> bool {
    database_url().is_none()
}

/// `DATABASE_URL`, or `None` when it is unset or empty (a cleared variable, not a URL). The
/// same rule as `tasker_shared::database::database_url_from_env`, which the xtask cannot call:
/// it builds the workspace and does not link it.
pub fn database_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// The database the measured programs use.
pub struct Provided {
    pub url: String,
    /// `DATABASE_URL` or `tasker db`, for the manifest.
    pub source: &'static str,
    /// The throwaway cluster, stopped and deleted when dropped; `None` for `DATABASE_URL`.
    pub guard: Option<Database>,
}

/// The server `DATABASE_URL` names, or else a throwaway cluster under `target_dir` started
/// with `tasker` (built beforehand when [`needs_throwaway`]).
pub fn provide(sh: &Shell, tasker: Option<&Path>, target_dir: &Path) -> Result<Provided> {
    match database_url() {
        Some(url) => Ok(Provided {
            url,
            source: "DATABASE_URL",
            guard: None,
        }),
        None => {
            let exe = tasker.context("the tasker binary was not built")?;
            let db = Database::start_throwaway(sh, exe, target_dir)?;
            Ok(Provided {
                url: db.url.clone(),
                source: "tasker db",
                guard: Some(db),
            })
        }
    }
}

pub struct Database {
    exe: PathBuf,
    dir: PathBuf,
    pub url: String,
}

impl Database {
    /// Starts the throwaway cluster under `target_dir`.
    fn start_throwaway(sh: &Shell, exe: &Path, target_dir: &Path) -> Result<Database> {
        eprintln!("starting a throwaway PostgreSQL with `tasker db start`");
        Database::start(sh, exe, &target_dir.join(THROWAWAY_DIR))
    }

    fn start(sh: &Shell, exe: &Path, dir: &Path) -> Result<Database> {
        let status = cmd!(sh, "{exe} db status --dir {dir}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
        if status.is_ok() {
            bail!(
                "a database is already running in {}; stop it with `{} db stop --dir {}`, or set DATABASE_URL to use a running one",
                dir.display(),
                exe.display(),
                dir.display()
            );
        }
        cmd!(sh, "{exe} db start --dir {dir}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "starting the throwaway database with `{} db start --dir {}`",
                    exe.display(),
                    dir.display()
                )
            })?;
        // From here on the guard owns the cluster, so an error below still stops it.
        let mut db = Database {
            exe: exe.to_owned(),
            dir: dir.to_owned(),
            url: String::new(),
        };
        let url = cmd!(sh, "{exe} db url --dir {dir}")
            .quiet()
            .read()
            .context("reading the database URL with `tasker db url`")?;
        let url = url.lines().next().unwrap_or_default().trim().to_owned();
        if !url.starts_with("postgres") {
            bail!(
                "`tasker db url` printed `{}`, not a postgres:// URL",
                crate::redact::url(&url)
            );
        }
        db.url = url;
        Ok(db)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let exe = &self.exe;
        let dir = &self.dir;
        let result = std::process::Command::new(exe)
            .args(["db", "destroy", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(result, Ok(s) if s.success()) {
            eprintln!(
                "warning: could not stop and delete the throwaway database; run `{} db destroy --dir {}`",
                exe.display(),
                dir.display()
            );
        }
    }
}

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
        claim(sh, exe, dir)?;
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
        let _ = std::fs::remove_file(owner_file(dir));
        if !matches!(result, Ok(s) if s.success()) {
            eprintln!(
                "warning: could not stop and delete the throwaway database; run `{} db destroy --dir {}`",
                exe.display(),
                dir.display()
            );
        }
    }
}

/// The file beside the cluster's directory that names the run owning it.
fn owner_file(dir: &Path) -> PathBuf {
    dir.with_extension("owner")
}

/// Makes the cluster directory this run's. A run killed outright (SIGKILL, a closed
/// terminal) never drops its guard, so its cluster may still be running: when the run that
/// claimed the directory is gone, what it left is stopped and deleted. A directory claimed
/// by a run that is still going is never touched.
fn claim(sh: &Shell, exe: &Path, dir: &Path) -> Result<()> {
    let file = owner_file(dir);
    let owner = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| Owner::parse(&text));
    if let Some(owner) = &owner {
        if owner.is_alive() && owner.pid != std::process::id() {
            bail!(
                "the throwaway database in {} belongs to a run that is still going (pid {}); wait for it to finish, or pass --target-dir DIR to measure elsewhere",
                dir.display(),
                owner.pid
            );
        }
    }
    if dir.exists() {
        eprintln!(
            "note: removing the throwaway database left in {} by a run that is gone{}",
            dir.display(),
            owner.map_or_else(String::new, |o| format!(" (pid {})", o.pid))
        );
        cmd!(sh, "{exe} db destroy --dir {dir}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "removing the left-over database with `{} db destroy --dir {}`",
                    exe.display(),
                    dir.display()
                )
            })?;
    }
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&file, Owner::this_process().render())
        .with_context(|| format!("writing {}", file.display()))
}

/// A process, told apart from a later one with the same pid by its start time (Linux's
/// `/proc/<pid>/stat`, where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: u32,
    started: Option<u64>,
}

impl Owner {
    fn this_process() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            started: start_time(pid),
        }
    }

    fn parse(text: &str) -> Option<Owner> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let started = words.next().and_then(|w| w.parse().ok());
        Some(Owner { pid, started })
    }

    fn render(&self) -> String {
        match self.started {
            Some(t) => format!("{} {t}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }

    fn is_alive(&self) -> bool {
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        let exists = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        exists && (self.started.is_none() || start_time(self.pid) == self.started)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_process_is_no_owner_and_this_one_is() {
        let me = Owner::this_process();
        assert!(me.is_alive());
        assert_eq!(Owner::parse(&me.render()), Some(me.clone()));

        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let gone = Owner {
            pid: child.id(),
            started: start_time(child.id()),
        };
        child.wait().expect("wait");
        assert!(!gone.is_alive(), "{gone:?}");

        // The same pid with another start time is another process.
        let reused = Owner {
            pid: me.pid,
            started: me.started.map(|t| t + 1),
        };
        assert_eq!(reused.is_alive(), me.started.is_none());
    }
}

//! Initialising, starting and stopping a local cluster, and the throwaway variant that removes
//! itself when the process that started it exits.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use super::{LocalPostgresError, PgBinaries};

type Result<T> = std::result::Result<T, LocalPostgresError>;

/// The superuser every local cluster is initialised with (trust authentication on loopback).
pub const CLUSTER_USER: &str = "postgres";

/// Settings appended to the generated postgresql.conf.
///
/// `synchronous_commit = off` lets a commit return before its WAL is flushed; a crash can lose
/// the last few hundred milliseconds of commits but never corrupts data (unlike `fsync = off`).
/// That is the setting a throughput-oriented deployment of an orchestration engine would pick,
/// and it keeps the test suite fast; benchmarks report it alongside their figures.
const SETTINGS: &str = "
# added by tasker's local cluster setup
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
synchronous_commit = off
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
track_functions = all
";

/// Added when the installation has the module (Debian's server package does; some
/// distributions ship it in a separate `contrib` package). Loaded but not recording: tracking
/// every statement costs the end-to-end benchmarks 2-4 % (measured in
/// docs/observability/profiling-workflow.md), so it is switched on per database where it is
/// wanted (`ALTER DATABASE … SET pg_stat_statements.track = 'all'`, as the benchmarks'
/// counting pass does) and costs nothing elsewhere.
const STATEMENT_STATISTICS: &str = "shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 20000
pg_stat_statements.track = none
";

/// What `cluster.json` records about a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// PGDATA.
    pub data_dir: PathBuf,
    /// The TCP port of the last start.
    pub port: u16,
    /// The server log.
    pub log_file: PathBuf,
}

/// The uid/gid the server processes run as when the caller is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or(LocalPostgresError::NoPostgresUser)?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// A cluster whose description lives in `<dir>/cluster.json`.
#[derive(Debug)]
pub struct LocalCluster {
    bins: PgBinaries,
    dir: PathBuf,
    info: ClusterInfo,
    run_as: Option<RunAs>,
}

impl LocalCluster {
    /// Opens the cluster described in `dir`, initialising a new one there if there is none.
    pub fn init_or_open(dir: &Path) -> Result<Self> {
        if dir.join("cluster.json").exists() {
            return Self::open(dir);
        }
        let bins = PgBinaries::locate()?;
        let run_as = run_as()?;
        create_dir(dir)?;
        // the server binaries run with their own working directory, so relative paths would break
        let dir = &absolute(dir)?;
        let data_root = data_root_for(dir, run_as)?;
        let info = ClusterInfo {
            data_dir: data_root.join("data"),
            port: 0,
            log_file: data_root.join("postgresql.log"),
        };
        let cluster = Self {
            bins,
            dir: dir.to_path_buf(),
            info,
            run_as,
        };
        cluster.initdb()?;
        cluster.save_info()?;
        Ok(cluster)
    }

    /// Opens the cluster described in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let dir =
            &absolute(dir).map_err(|_| LocalPostgresError::NotInitialised(dir.to_path_buf()))?;
        let path = dir.join("cluster.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| LocalPostgresError::NotInitialised(dir.to_path_buf()))?;
        let info: ClusterInfo =
            serde_json::from_str(&text).map_err(|e| LocalPostgresError::CorruptInfo {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if !info.data_dir.join("PG_VERSION").exists() {
            return Err(LocalPostgresError::CorruptInfo {
                path,
                reason: format!("its data directory {} is missing", info.data_dir.display()),
            });
        }
        Ok(Self {
            bins: PgBinaries::locate()?,
            dir: dir.to_path_buf(),
            info,
            run_as: run_as()?,
        })
    }

    /// What is recorded about the cluster.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// The directory holding `cluster.json`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server on a free loopback port and waits until it accepts connections.
    /// Starting a running cluster is a no-op.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // A port found free can be taken before the server binds it; try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let result = self.pg_ctl(&[
                "-D",
                path_str(&self.info.data_dir),
                "-l",
                path_str(&self.info.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                &format!("-p {port}"),
                "start",
            ]);
            match result {
                Ok(()) => {
                    self.info.port = port;
                    return self.save_info();
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(LocalPostgresError::NotInitialised(self.dir.clone())))
    }

    /// Stops the server (fast shutdown: open sessions are ended). Stopping a stopped cluster is a
    /// no-op.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.pg_ctl(&[
            "-D",
            path_str(&self.info.data_dir),
            "-m",
            "fast",
            "-w",
            "stop",
        ])
    }

    /// Stops the server and deletes the cluster: its data (also where it lives outside `dir`)
    /// and `dir` itself.
    pub fn destroy(self) -> Result<()> {
        self.stop()?;
        let remove = |path: &Path| match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalPostgresError::Io {
                action: "deleting",
                path: path.to_path_buf(),
                source: e,
            }),
            _ => Ok(()),
        };
        // The data root is `dir` itself or, for a cluster the postgres user could not keep
        // under `dir`, a temporary directory of its own holding the data and the log.
        if let Some(root) = self.info.data_dir.parent() {
            if !root.starts_with(&self.dir) {
                remove(root)?;
            }
        }
        remove(&self.dir)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.command(&self.bins.path("pg_ctl"))
            .args(["-D", path_str(&self.info.data_dir), "status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The connection URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{CLUSTER_USER}@127.0.0.1:{}/{database}",
            self.info.port
        )
    }

    /// Creates `database` if it does not exist.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        let mut conn = PgConnection::connect(&self.url("postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!(
                "CREATE DATABASE \"{}\"",
                database.replace('"', "\"\"")
            ))
            .execute(&mut conn)
            .await?;
        }
        conn.close().await?;
        Ok(())
    }

    fn initdb(&self) -> Result<()> {
        let initdb = self.bins.path("initdb");
        let output = self
            .command(&initdb)
            .args(["-D", path_str(&self.info.data_dir)])
            .args([
                "-U",
                CLUSTER_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg("--no-sync")
            .output()
            .map_err(|source| LocalPostgresError::Spawn {
                command: initdb.display().to_string(),
                source,
            })?;
        check_output("initdb", &output)?;
        let conf = self.info.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|source| LocalPostgresError::Io {
                action: "opening",
                path: conf.clone(),
                source,
            })?;
        let mut settings = SETTINGS.to_owned();
        if self.bins.has_module("pg_stat_statements") {
            settings.push_str(STATEMENT_STATISTICS);
        }
        file.write_all(settings.as_bytes())
            .map_err(|source| LocalPostgresError::Io {
                action: "writing",
                path: conf,
                source,
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let pg_ctl = self.bins.path("pg_ctl");
        // pg_ctl's own stdout stays attached to the server it forks; a pipe would keep our
        // read blocked for the server's lifetime, so both go to files or nowhere.
        let output = self
            .command(&pg_ctl)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| LocalPostgresError::Spawn {
                command: pg_ctl.display().to_string(),
                source,
            })?;
        check_output(&format!("pg_ctl {}", args.last().unwrap_or(&"")), &output).map_err(
            |e| match e {
                LocalPostgresError::CommandFailed {
                    command,
                    status,
                    output,
                } => LocalPostgresError::CommandFailed {
                    command,
                    status,
                    output: format!(
                        "{output}\nserver log: {}\n{}",
                        self.info.log_file.display(),
                        tail(&self.info.log_file, 20)
                    ),
                },
                other => other,
            },
        )
    }

    /// A command for one of the server binaries, run as the cluster's owner, detached from our
    /// process group so that a Ctrl-C aimed at us does not kill the server mid-cleanup.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null()).process_group(0);
        if let Some(parent) = self.info.data_dir.parent() {
            cmd.current_dir(parent);
        }
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn save_info(&self) -> Result<()> {
        let path = self.dir.join("cluster.json");
        let text = serde_json::to_string_pretty(&self.info).expect("cluster info serialises");
        std::fs::write(&path, text).map_err(|source| LocalPostgresError::Io {
            action: "writing",
            path,
            source,
        })
    }
}

/// A cluster in a temporary directory that exists for the lifetime of this process.
///
/// A watcher process (a shell reading our end of a pipe) stops the server and deletes the
/// directory when the pipe closes, which the kernel does however this process ends: normal
/// exit, panic, Ctrl-C or SIGKILL. Test binaries never run destructors of statics, so this is
/// what guarantees no server is left behind.
#[derive(Debug)]
pub struct ThrowawayCluster {
    cluster: LocalCluster,
    watcher: Option<(Child, ChildStdin)>,
}

impl ThrowawayCluster {
    /// Initialises and starts a cluster in a fresh temporary directory.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tasker-pg-")
            .tempdir()
            .map_err(|source| LocalPostgresError::Io {
                action: "creating a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?
            .keep();
        let mut cluster = LocalCluster::init_or_open(&dir)?;
        let watcher = spawn_watcher(&cluster)?;
        cluster.start()?;
        Ok(Self {
            cluster,
            watcher: Some(watcher),
        })
    }

    /// The running cluster.
    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        // Closing the pipe makes the watcher stop the server and remove the directory; waiting
        // for it means the cleanup is finished when the drop returns.
        if let Some((mut child, stdin)) = self.watcher.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn spawn_watcher(cluster: &LocalCluster) -> Result<(Child, ChildStdin)> {
    let script = r#"read _ignored; "$0" -D "$1" -m immediate -w stop >/dev/null 2>&1; rm -rf "$2""#;
    let mut child = cluster
        .command(Path::new("/bin/sh"))
        .arg("-c")
        .arg(script)
        .arg(cluster.bins.path("pg_ctl"))
        .arg(&cluster.info.data_dir)
        .arg(&cluster.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LocalPostgresError::Spawn {
            command: "/bin/sh (cluster watcher)".into(),
            source,
        })?;
    let stdin = child.stdin.take().expect("stdin was piped");
    Ok((child, stdin))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| LocalPostgresError::Io {
        action: "creating",
        path: dir.to_path_buf(),
        source,
    })
}

/// Where the data directory goes. Normally inside `dir`; when running as root and the
/// `postgres` user cannot reach `dir` (a checkout under /root, say), in a directory of its own
/// under the system temporary directory, recorded in `cluster.json`.
fn data_root_for(dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
    let Some(user) = run_as else {
        return Ok(dir.to_path_buf());
    };
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
            LocalPostgresError::Io {
                action: "changing the owner of",
                path: path.to_path_buf(),
                source,
            }
        })
    };
    chown(dir)?;
    let reachable = Command::new("/bin/sh")
        .args(["-c", r#"test -w "$0" && test -x "$0""#])
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if reachable {
        return Ok(dir.to_path_buf());
    }
    let fallback = tempfile::Builder::new()
        .prefix("tasker-db-")
        .tempdir()
        .map_err(|source| LocalPostgresError::Io {
            action: "creating a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })?
        .keep();
    chown(&fallback)?;
    Ok(fallback)
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize().map_err(|source| LocalPostgresError::Io {
        action: "resolving",
        path: dir.to_path_buf(),
        source,
    })
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LocalPostgresError::NoFreePort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(LocalPostgresError::NoFreePort)
}

fn check_output(what: &str, output: &std::process::Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(LocalPostgresError::CommandFailed {
        command: what.to_string(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_string(),
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn path_str(path: &Path) -> &str {
    // Paths come from temp_dir or the user's --dir; PostgreSQL's tools take them as strings.
    path.to_str().unwrap_or_default()
}

//! Finding the PostgreSQL server binaries on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::LocalPostgresError;

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    bindir: PathBuf,
}

const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl PgBinaries {
    /// Looks in `$TASKER_PG_BINDIR`, `pg_config --bindir`, `PATH`, then the distribution
    /// layouts, and takes the first directory that has every server binary. (`pg_config` from a
    /// client-only install points at a directory without `initdb`, hence the check.)
    pub fn locate() -> Result<Self, LocalPostgresError> {
        Self::locate_in(candidate_dirs())
    }

    /// The first of `dirs` that holds every server binary.
    fn locate_in(dirs: Vec<PathBuf>) -> Result<Self, LocalPostgresError> {
        dirs.into_iter()
            .find(|dir| REQUIRED.iter().all(|bin| is_executable(&dir.join(bin))))
            .map(|bindir| Self { bindir })
            .ok_or(LocalPostgresError::BinariesNotFound)
    }

    /// The directory the binaries were found in.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Full path of one of the binaries.
    pub fn path(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// Whether the installation has the loadable module `name` (in the directory its own
    /// `pg_config --pkglibdir` names, or beside the binaries as the common layouts put it).
    pub fn has_module(&self, name: &str) -> bool {
        let mut dirs: Vec<PathBuf> = Command::new(self.path("pg_config"))
            .arg("--pkglibdir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .into_iter()
            .collect();
        if let Some(prefix) = self.bindir.parent() {
            dirs.extend([prefix.join("lib"), prefix.join("lib/postgresql")]);
        }
        dirs.iter().any(|dir| {
            ["so", "dylib"]
                .iter()
                .any(|ext| dir.join(format!("{name}.{ext}")).is_file())
        })
    }
}

fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("TASKER_PG_BINDIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !dir.is_empty() {
                dirs.push(PathBuf::from(dir));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(versioned_dirs(Path::new("/usr/lib/postgresql"), "bin"));
    dirs.extend(versioned_dirs(Path::new("/usr/pgsql"), "bin"));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs.push(PathBuf::from("/opt/homebrew/bin"));
    dirs
}

/// `<root>/<major>/<suffix>` for every installed major version, newest first.
fn versioned_dirs(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry
                .file_name()
                .to_str()?
                .split('.')
                .next()?
                .parse()
                .ok()?;
            Some((major, entry.path().join(suffix)))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn fake_bin(dir: &Path, name: &str) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_module_is_found_beside_the_binaries_and_a_missing_one_is_not() {
        let prefix = tempfile::tempdir().unwrap();
        let bin = prefix.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(prefix.path().join("lib")).unwrap();
        for b in REQUIRED {
            fake_bin(&bin, b);
        }
        std::fs::write(prefix.path().join("lib/pg_stat_statements.so"), "").unwrap();
        let bins = PgBinaries::locate_in(vec![bin]).unwrap();
        assert!(bins.has_module("pg_stat_statements"));
        assert!(!bins.has_module("no_such_module"));
    }

    #[test]
    fn a_directory_missing_any_server_binary_is_skipped() {
        let client_only = tempfile::tempdir().unwrap();
        fake_bin(client_only.path(), "pg_ctl");
        fake_bin(client_only.path(), "postgres");
        let server = tempfile::tempdir().unwrap();
        for bin in REQUIRED {
            fake_bin(server.path(), bin);
        }
        let found = PgBinaries::locate_in(vec![
            client_only.path().to_path_buf(),
            server.path().to_path_buf(),
        ])
        .unwrap();
        assert_eq!(found.bindir(), server.path());
    }

    #[test]
    fn no_installation_is_one_sentence_on_how_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = PgBinaries::locate_in(vec![empty.path().to_path_buf()]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LocalPostgresError::BinariesNotFound));
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(text.contains("TASKER_PG_BINDIR"), "{text}");
    }
}

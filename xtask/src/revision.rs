//! Another revision of the workspace, checked out where it can be built: `--against REV`
//! and `--rev REV` name any git revision; it is resolved to a commit and checked out into
//! one git worktree under the cargo target directory, kept between runs so that cargo
//! rebuilds only what differs from the revision built last.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// The worktree's directory under the target directory.
const WORKTREE_DIR: &str = "xtask-rev/worktree";

/// Where a revision's side of a paired run builds: a target directory of its own under the
/// working tree's, kept between runs like the worktree.
pub fn target_dir(main: &Path) -> PathBuf {
    main.join("xtask-rev/target")
}

/// Where the compiler output of a revision's targets that did not build is kept.
pub fn failed_builds_dir(main: &Path) -> PathBuf {
    main.join("xtask-rev/failed-builds")
}

/// A resolved revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    /// As the user wrote it (`main`, `HEAD~3`, a tag).
    pub spec: String,
    /// The commit it names.
    pub commit: String,
}

impl Revision {
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }

    pub fn describe(&self) -> String {
        if self.spec.starts_with(self.short()) {
            self.short().to_owned()
        } else {
            format!("{} ({})", self.spec, self.short())
        }
    }
}

/// The repository the workspace at `root` belongs to, and where the workspace sits in it.
pub struct Repository {
    pub toplevel: PathBuf,
    /// The workspace's path inside the repository (empty at its top).
    pub workspace: PathBuf,
}

impl Repository {
    pub fn of(sh: &Shell, root: &Path) -> Result<Repository> {
        let toplevel = cmd!(sh, "git -C {root} rev-parse --show-toplevel")
            .quiet()
            .ignore_stderr()
            .read()
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} is not in a git repository, so no other revision of it can be built; run from a git checkout",
                    root.display()
                )
            })?;
        let toplevel = std::fs::canonicalize(toplevel.trim())
            .with_context(|| format!("the repository of {}", root.display()))?;
        let workspace = root
            .strip_prefix(&toplevel)
            .unwrap_or(Path::new(""))
            .to_owned();
        Ok(Repository {
            toplevel,
            workspace,
        })
    }

    /// Resolves `spec` to a commit, or says in one sentence that git does not know it.
    pub fn resolve(&self, sh: &Shell, spec: &str) -> Result<Revision> {
        let top = &self.toplevel;
        let object = format!("{spec}^{{commit}}");
        let commit = cmd!(sh, "git -C {top} rev-parse --verify --quiet {object}")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        match commit {
            Some(commit) => Ok(Revision {
                spec: spec.to_owned(),
                commit,
            }),
            None => bail!(
                "unknown revision `{spec}`: git cannot resolve it to a commit in {}; name a branch, tag or commit that `git log` shows (fetch it first if it is remote)",
                top.display()
            ),
        }
    }

    /// Refuses a revision that predates the plan file: the xtask could not tell which of its
    /// targets to build.
    pub fn check_plan_exists(&self, sh: &Shell, rev: &Revision, plan: &Path) -> Result<()> {
        let Ok(relative) = plan.strip_prefix(&self.toplevel) else {
            // A plan outside the repository applies to every revision alike.
            return Ok(());
        };
        let top = &self.toplevel;
        let object = format!("{}:{}", rev.commit, relative.display());
        let text = cmd!(sh, "git -C {top} show {object}")
            .quiet()
            .ignore_stderr()
            .read();
        let Ok(text) = text else {
            bail!(
                "revision {} has no {}: it is older than the xtask's plan format, so its targets cannot be matched; pick a later revision",
                rev.describe(),
                relative.display()
            );
        };
        if let Err(e) = crate::plan::Plan::parse(relative, &text) {
            bail!(
                "revision {} has a {} this xtask cannot read ({e:#}): it is older than the current plan format; pick a later revision",
                rev.describe(),
                relative.display()
            );
        }
        Ok(())
    }

    /// Whether `path` is a worktree of this repository.
    fn owns(&self, sh: &Shell, path: &Path) -> bool {
        let common = |dir: &Path| {
            cmd!(
                sh,
                "git -C {dir} rev-parse --path-format=absolute --git-common-dir"
            )
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .and_then(|d| std::fs::canonicalize(d.trim()).ok())
        };
        path.join(".git").is_file()
            && common(path).is_some()
            && common(path) == common(&self.toplevel)
    }

    /// Checks `rev` out into the worktree under `target_dir` (created on first use, moved
    /// to `rev` afterwards) and returns the path of the workspace inside it.
    pub fn checkout(&self, sh: &Shell, rev: &Revision, target_dir: &Path) -> Result<PathBuf> {
        let path = target_dir.join(WORKTREE_DIR);
        let top = &self.toplevel;
        let commit = &rev.commit;
        let failed = |what: &str, e: xshell::Error| {
            anyhow::anyhow!(
                "cannot {what} the worktree for {} at {} ({e}); remove that directory and run `git -C {} worktree prune`, then try again",
                rev.describe(),
                path.display(),
                top.display()
            )
        };
        if path.exists() && !self.owns(sh, &path) {
            // Left by another repository (or half-made): it cannot be moved, only replaced.
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the stale worktree {}", path.display()))?;
        }
        if path.join(".git").exists() {
            let head = cmd!(sh, "git -C {path} rev-parse HEAD")
                .quiet()
                .ignore_stderr()
                .read()
                .unwrap_or_default();
            if head.trim() != rev.commit {
                cmd!(
                    sh,
                    "git -C {path} checkout --quiet --force --detach {commit}"
                )
                .quiet()
                .run()
                .map_err(|e| failed("move", e))?;
            }
            // Whatever was left behind by hand goes: the tree must be the revision's.
            cmd!(sh, "git -C {path} clean -q -d -f -x -e target")
                .quiet()
                .run()
                .map_err(|e| failed("clean", e))?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            // A worktree deleted by hand (or by `cargo clean`) is still registered.
            let _ = cmd!(sh, "git -C {top} worktree prune").quiet().run();
            cmd!(
                sh,
                "git -C {top} worktree add --quiet --force --detach {path} {commit}"
            )
            .quiet()
            .run()
            .map_err(|e| failed("create", e))?;
        }
        Ok(path.join(&self.workspace))
    }
}

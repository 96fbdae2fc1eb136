//! The output directory is replaced atomically: a run writes into a hidden sibling and only
//! a complete run is renamed into place, so a failure never leaves a half-written baseline
//! where a good one was.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    keep_on_drop: bool,
    committed: bool,
}

/// Refuses an existing output directory unless `force`: checked before any work starts.
pub fn check_target(out: &Path, force: bool) -> Result<()> {
    if out.exists() && !force {
        bail!(
            "{} already holds a baseline; refusing to overwrite it (pass --force to replace it, or --out DIR to write elsewhere)",
            out.display()
        );
    }
    Ok(())
}

impl Staging {
    pub fn create(out: &Path, keep_on_failure: bool) -> Result<Staging> {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "profile".to_owned());
        // `.tmp-` prefix: ignored by git (see .gitignore) and by anything reading profiles/.
        let dir = parent.join(format!(".tmp-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            target: out.to_owned(),
            keep_on_drop: keep_on_failure,
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves the finished run into place, replacing an older one only when `force`.
    pub fn commit(mut self, force: bool) -> Result<PathBuf> {
        let mut old = None;
        if self.target.exists() {
            if !force {
                bail!(
                    "{} appeared during the run; refusing to overwrite it",
                    self.target.display()
                );
            }
            let parent = self.dir.parent().unwrap_or(Path::new("."));
            let aside = parent.join(format!(".tmp-replaced-{}", std::process::id()));
            std::fs::rename(&self.target, &aside)
                .with_context(|| format!("moving the old {} aside", self.target.display()))?;
            old = Some(aside);
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.target) {
            // Put the old baseline back so the failure costs nothing.
            if let Some(aside) = &old {
                let _ = std::fs::rename(aside, &self.target);
            }
            return Err(e)
                .with_context(|| format!("moving the run into {}", self.target.display()));
        }
        self.committed = true;
        if let Some(aside) = old {
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("removing {}", aside.display()))?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.keep_on_drop {
            eprintln!(
                "the incomplete run is kept in {} (it is not a baseline)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_without_force_and_replaces_with_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("profiles/pre-refactor");
        check_target(&out, false).expect("nothing there yet");

        let first = Staging::create(&out, false).expect("staging");
        std::fs::write(first.path().join("manifest.json"), "1").expect("write");
        first.commit(false).expect("first commit");
        assert_eq!(
            std::fs::read_to_string(out.join("manifest.json")).expect("read"),
            "1"
        );

        let err = check_target(&out, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");

        let second = Staging::create(&out, false).expect("staging");
        std::fs::write(second.path().join("manifest.json"), "2").expect("write");
        assert!(second.commit(false).is_err(), "no silent overwrite");
        assert_eq!(
            std::fs::read_to_string(out.join("manifest.json")).expect("read"),
            "1"
        );

        let third = Staging::create(&out, false).expect("staging");
        std::fs::write(third.path().join("manifest.json"), "3").expect("write");
        third.commit(true).expect("forced commit");
        assert_eq!(
            std::fs::read_to_string(out.join("manifest.json")).expect("read"),
            "3"
        );
        let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("parent"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary directories left: {leftovers:?}"
        );
    }

    #[test]
    fn a_dropped_run_leaves_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("pre");
        let staging = Staging::create(&out, false).expect("staging");
        let tmp = staging.path().to_owned();
        std::fs::write(tmp.join("half"), "x").expect("write");
        drop(staging);
        assert!(!tmp.exists());
        assert!(!out.exists());
    }
}

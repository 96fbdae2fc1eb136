//! The build: `cargo clean` of the profiling profile's output (the rest of the target
//! directory, such as a revision's worktree or the xtask itself, stays), then every target once with the `profiling` profile (release
//! plus line tables) and frame pointers, so timing and profiling run the very same binary and
//! stacks resolve to function names.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

use crate::plan::{Kind, Target};

pub const CARGO_PROFILE: &str = "profiling";

/// Frame pointers make perf's cheap frame-pointer unwinding work on release code; without
/// them stacks stop at the first optimised frame (or need multi-gigabyte DWARF dumps).
pub const FRAME_POINTER_FLAGS: &str = "-C force-frame-pointers=yes";

/// Where cargo builds and how.
pub struct Cargo {
    pub manifest: PathBuf,
    pub target_dir: PathBuf,
    pub rustflags: String,
}

pub struct Built {
    pub executable: PathBuf,
    pub command: Vec<String>,
    pub duration: Duration,
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    target: Option<ArtifactTarget>,
    #[serde(default)]
    profile: Option<ArtifactProfile>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct ArtifactProfile {
    test: bool,
}

impl Cargo {
    /// The workspace at `root`, built into `target_dir` with the user's RUSTFLAGS plus frame
    /// pointers.
    pub fn for_workspace(root: &Path, target_dir: PathBuf) -> Cargo {
        Cargo {
            manifest: root.join("Cargo.toml"),
            target_dir,
            rustflags: Cargo::rustflags_with_frame_pointers(std::env::var("RUSTFLAGS").ok()),
        }
    }

    /// Keeps the user's RUSTFLAGS and adds frame pointers, once.
    pub fn rustflags_with_frame_pointers(existing: Option<String>) -> String {
        let existing = existing.unwrap_or_default();
        if existing.contains("force-frame-pointers") {
            existing
        } else {
            format!("{existing} {FRAME_POINTER_FLAGS}")
                .trim()
                .to_owned()
        }
    }

    pub fn clean(&self, sh: &Shell) -> Result<(String, Duration)> {
        let (manifest, target_dir) = (&self.manifest, &self.target_dir);
        let start = Instant::now();
        let command = cmd!(
            sh,
            "cargo clean --profile {CARGO_PROFILE} --manifest-path {manifest} --target-dir {target_dir}"
        );
        let text = command.to_string();
        command
            .quiet()
            .run()
            .with_context(|| format!("running `{text}`"))?;
        Ok((text, start.elapsed()))
    }

    /// Builds one plan target; returns the executable to run.
    pub fn build_target(&self, sh: &Shell, target: &Target, log: &Path) -> Result<Built> {
        let mut args: Vec<String> = match target.kind {
            Kind::Bench => vec!["build".into()],
            // `cargo test --no-run` is what builds the unit-test harness of a library.
            Kind::Test => vec!["test".into(), "--no-run".into()],
        };
        args.extend(["--package".into(), target.package.clone()]);
        args.extend(target.feature_args());
        match (target.kind, target.binary.as_str()) {
            (Kind::Test, "lib") => args.push("--lib".into()),
            (Kind::Test, name) => args.extend(["--test".into(), name.to_owned()]),
            (Kind::Bench, name) => args.extend(["--bench".into(), name.to_owned()]),
        }
        let pick = |m: &Message| -> bool {
            let (Some(t), Some(p)) = (&m.target, &m.profile) else {
                return false;
            };
            match (target.kind, target.binary.as_str()) {
                (Kind::Test, "lib") => p.test && t.kind.iter().any(|k| k.ends_with("lib")),
                (Kind::Test, name) => t.name == name && t.kind.iter().any(|k| k == "test"),
                (Kind::Bench, name) => t.name == name && t.kind.iter().any(|k| k == "bench"),
            }
        };
        self.build(sh, &args, log, pick)
            .with_context(|| format!("building target `{}`", target.name))
    }

    /// Builds a binary target of a package, e.g. the `tasker` binary for `tasker db`.
    pub fn build_bin(&self, sh: &Shell, package: &str, bin: &str, log: &Path) -> Result<Built> {
        let args = vec![
            "build".to_owned(),
            "--package".to_owned(),
            package.to_owned(),
            "--bin".to_owned(),
            bin.to_owned(),
        ];
        self.build(sh, &args, log, |m| {
            m.target
                .as_ref()
                .is_some_and(|t| t.name == bin && t.kind.iter().any(|k| k == "bin"))
        })
        .with_context(|| format!("building `{bin}` of package `{package}`"))
    }

    fn build(
        &self,
        sh: &Shell,
        args: &[String],
        log: &Path,
        pick: impl Fn(&Message) -> bool,
    ) -> Result<Built> {
        let mut full: Vec<String> = args.to_vec();
        full.extend([
            "--profile".to_owned(),
            CARGO_PROFILE.to_owned(),
            "--manifest-path".to_owned(),
            self.manifest.display().to_string(),
            "--target-dir".to_owned(),
            self.target_dir.display().to_string(),
            "--message-format=json-render-diagnostics".to_owned(),
        ]);
        let full_args = &full;
        let command = cmd!(sh, "cargo {full_args...}")
            .env("RUSTFLAGS", &self.rustflags)
            .env("CARGO_TERM_COLOR", "never");
        let text = command.to_string();
        let start = Instant::now();
        let output = command
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running `{text}`"))?;
        let duration = start.elapsed();
        super::write_log(log, &text, &output)?;
        if !output.status.success() {
            bail!(
                "`{text}` failed ({}); last lines of {}:\n{}",
                output.status,
                log.display(),
                super::tail(&String::from_utf8_lossy(&output.stderr), 20)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let executable = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Message>(l).ok())
            .filter(|m| m.reason == "compiler-artifact" && m.executable.is_some())
            .filter(|m| pick(m))
            .filter_map(|m| m.executable)
            .last();
        let Some(executable) = executable else {
            bail!(
                "`{text}` produced no matching executable; check the target's `binary` in the plan"
            );
        };
        Ok(Built {
            executable,
            command: std::iter::once("cargo".to_owned()).chain(full).collect(),
            duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Cargo;

    #[test]
    fn frame_pointers_are_added_once() {
        assert_eq!(
            Cargo::rustflags_with_frame_pointers(None),
            "-C force-frame-pointers=yes"
        );
        assert_eq!(
            Cargo::rustflags_with_frame_pointers(Some("-C target-cpu=native".into())),
            "-C target-cpu=native -C force-frame-pointers=yes"
        );
        assert_eq!(
            Cargo::rustflags_with_frame_pointers(Some("-Cforce-frame-pointers=yes".into())),
            "-Cforce-frame-pointers=yes"
        );
    }
}

//! One output directory being filled: the workspace it measures (the working tree, or a
//! revision's worktree), its staging directory, one record per plan target, the built
//! executables, and the timings and analyses gathered so far. A run has one side; a paired
//! run (`profile-post --against`) has two, measured in the same session.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::build::Cargo;
use super::counting::{DatabaseFile, TargetCounts, DATABASE_FILE};
use super::manifest::{
    AnalysisFile, Manifest, Pairing, TargetAnalysis, TargetRecord, TargetStatus, TargetTimings,
    Timings, SCHEMA_VERSION,
};
use super::outdir::Staging;
use super::{Options, QUICK_PROFILE_SECS};
use crate::analysis::Analysis;
use crate::plan::{Kind, Target};
use crate::{host, inventory, workspace};

pub struct Side {
    /// The workspace whose code this side measures.
    pub workspace: PathBuf,
    pub git: host::Git,
    /// Where the finished run goes, and its role (`pre-refactor`, `post-refactor`, ...).
    pub out: PathBuf,
    pub label: String,
    pub staging: Staging,
    pub records: Vec<TargetRecord>,
    pub executables: Vec<Option<PathBuf>>,
    pub timings: Timings,
    pub analyses: AnalysisFile,
    pub database: DatabaseFile,
    pub pairing: Option<Pairing>,
}

impl Side {
    /// A side for `targets`, with its staging directory next to `out`; `paired` when it is
    /// one of the two sides of `--against`.
    pub fn new(
        sh: &Shell,
        opts: &Options,
        targets: &[Target],
        (workspace, out): (&Path, &Path),
        paired: bool,
    ) -> Result<Side> {
        let metadata = workspace::metadata(sh, workspace)?;
        let mut records: Vec<TargetRecord> = targets
            .iter()
            .map(|t| target_record(t, profile_secs(opts, t, paired)))
            .collect();
        for (t, r) in targets.iter().zip(records.iter_mut()) {
            if let Some(note) = not_measurable(&metadata, t) {
                r.status = TargetStatus::Skipped;
                r.notes.push(note);
            }
        }
        Ok(Side {
            workspace: workspace.to_owned(),
            git: host::git(sh, workspace),
            out: out.to_owned(),
            label: label_of(out),
            staging: Staging::create(out, opts.keep_failed)?,
            executables: vec![None; targets.len()],
            records,
            timings: Timings {
                schema_version: SCHEMA_VERSION,
                targets: Vec::new(),
            },
            analyses: AnalysisFile {
                schema_version: SCHEMA_VERSION,
                targets: Vec::new(),
            },
            database: DatabaseFile {
                schema_version: SCHEMA_VERSION,
                targets: Vec::new(),
            },
            pairing: None,
        })
    }

    pub fn dir(&self) -> &Path {
        self.staging.path()
    }

    /// Builds every target not skipped. With `tolerate_failures`, a target that does not
    /// build is skipped with its compiler output kept in `keep_logs` (a revision that cannot
    /// build one target still compares the others); otherwise the error ends the run.
    pub fn build(
        &mut self,
        sh: &Shell,
        cargo: &Cargo,
        targets: &[Target],
        keep_logs: Option<&Path>,
    ) -> Result<()> {
        for (i, t) in targets.iter().enumerate() {
            if self.records[i].status == TargetStatus::Skipped {
                continue;
            }
            if super::interrupted() {
                bail!("interrupted");
            }
            eprintln!(
                "building {} for {} ({}/{})",
                t.name,
                self.label,
                i + 1,
                targets.len()
            );
            let log = self.dir().join("logs").join(&t.name).join("build.log");
            match cargo.build_target(sh, t, &log) {
                Ok(built) => {
                    let r = &mut self.records[i];
                    r.executable = Some(built.executable.display().to_string());
                    r.build_command = Some(built.command);
                    r.build_secs = Some(built.duration.as_secs_f64());
                    self.executables[i] = Some(built.executable);
                }
                Err(e) => {
                    let Some(keep) = keep_logs else {
                        return Err(e);
                    };
                    let kept = keep.join(format!("{}-build.log", t.name));
                    std::fs::create_dir_all(keep)
                        .with_context(|| format!("creating {}", keep.display()))?;
                    let _ = std::fs::copy(&log, &kept);
                    let r = &mut self.records[i];
                    r.status = TargetStatus::Skipped;
                    r.notes.push(format!(
                        "does not build here, not compared (compiler output: {})",
                        kept.display()
                    ));
                    eprintln!("{} does not build for {}: {e:#}", t.name, self.label);
                }
            }
        }
        Ok(())
    }

    /// Leaves target `i` out, saying why (unless it was already left out).
    pub fn skip(&mut self, i: usize, why: &str) {
        let r = &mut self.records[i];
        if r.status != TargetStatus::Skipped {
            r.status = TargetStatus::Skipped;
            r.notes.push(why.to_owned());
        }
    }

    pub fn add_timings(&mut self, timings: TargetTimings) {
        self.timings.targets.push(timings);
    }

    pub fn add_counts(&mut self, counts: TargetCounts) {
        self.database.targets.push(counts);
    }

    pub fn add_analysis(&mut self, t: &Target, analysis: Analysis) {
        self.analyses.targets.push(TargetAnalysis {
            name: t.name.clone(),
            category: t.category,
            analysis,
        });
    }

    /// Writes the run's files into the staging directory and moves it into place; a side
    /// with a failed target is left unwritten.
    pub fn finish(self, manifest: Manifest, plan_text: &str, force: bool) -> Result<Finished> {
        let out = self.staging.path().to_owned();
        std::fs::write(out.join(super::manifest::PLAN_FILE), plan_text)
            .context("copying the plan")?;
        super::write_json(&out.join(super::manifest::TIMINGS_FILE), &self.timings)?;
        super::write_json(&out.join(super::manifest::ANALYSIS_FILE), &self.analyses)?;
        super::write_json(&out.join(DATABASE_FILE), &self.database)?;
        std::fs::write(
            out.join(super::manifest::SUMMARY_FILE),
            super::report::summary(&manifest, &self.timings, &self.analyses, &self.database),
        )
        .context("writing summary.md")?;
        super::write_json(&out.join(super::manifest::MANIFEST_FILE), &manifest)?;
        let failed: Vec<&TargetRecord> = manifest
            .targets
            .iter()
            .filter(|r| r.status == TargetStatus::Failed)
            .collect();
        if !failed.is_empty() {
            for r in &failed {
                eprintln!(
                    "{} failed: {}",
                    r.name,
                    r.error.as_deref().unwrap_or("unknown error")
                );
            }
            bail!(
                "{} of {} targets failed ({}); {} was left as it was",
                failed.len(),
                manifest.targets.len(),
                failed
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.out.display()
            );
        }
        let dir = self.staging.commit(force)?;
        Ok(Finished {
            dir,
            manifest,
            timings: self.timings,
            analyses: self.analyses,
            database: self.database,
        })
    }
}

/// A side written and moved into place.
pub struct Finished {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub timings: Timings,
    pub analyses: AnalysisFile,
    pub database: DatabaseFile,
}

/// The output directory's name, recorded as the run's role.
pub fn label_of(out: &Path) -> String {
    out.file_name().map_or_else(
        || "baseline".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Seconds `t` is profiled on one side: `--profile-time`, else the plan's (capped by
/// `--quick`), halved for each side of a paired run so its two profiles together cost what
/// one run's does: both sides are sampled in the same session, so their shares compare
/// with half the samples each.
fn profile_secs(opts: &Options, t: &Target, paired: bool) -> f64 {
    if let Some(secs) = opts.profile_time {
        return secs;
    }
    let secs = if opts.quick {
        t.profile_time_secs.min(QUICK_PROFILE_SECS)
    } else {
        t.profile_time_secs
    };
    if paired {
        secs / 2.0
    } else {
        secs
    }
}

fn target_record(t: &Target, profile_time_secs: f64) -> TargetRecord {
    TargetRecord {
        name: t.name.clone(),
        package: t.package.clone(),
        kind: t.kind,
        binary: t.binary.clone(),
        category: t.category,
        features: t.features.clone(),
        all_features: t.all_features,
        filter: t.filter.clone(),
        needs_database: t.needs_database,
        thresholds: t.thresholds.clone(),
        profile_time_secs,
        cargo_command: t.cargo_command(),
        status: TargetStatus::Ok,
        notes: Vec::new(),
        error: None,
        executable: None,
        build_command: None,
        build_secs: None,
        timing: None,
        profile: None,
        analysis_secs: None,
    }
}

/// Why a target cannot be measured in this workspace, if it cannot: its package or its
/// target is missing (another revision may predate it), or the bench is a placeholder.
fn not_measurable(metadata: &workspace::Metadata, t: &Target) -> Option<String> {
    let Some(package) = metadata.package(&t.package) else {
        return Some(format!(
            "package `{}` does not exist here: not measured",
            t.package
        ));
    };
    let found = package
        .targets
        .iter()
        .find(|c| match (t.kind, t.binary.as_str()) {
            (Kind::Test, "lib") => c.kind.iter().any(|k| k.ends_with("lib")),
            (Kind::Test, name) => c.name == name && c.is("test"),
            (Kind::Bench, name) => c.name == name && c.is("bench"),
        });
    let Some(found) = found else {
        return Some(format!(
            "package `{}` has no {} target `{}` here: not measured",
            t.package,
            t.kind.name(),
            t.binary
        ));
    };
    let placeholder = t.kind == Kind::Bench
        && std::fs::read_to_string(&found.src_path)
            .is_ok_and(|src| inventory::is_placeholder(&src));
    placeholder.then(|| {
        format!(
            "placeholder bench (`{}` in its header): not measured",
            inventory::PLACEHOLDER_MARKER
        )
    })
}

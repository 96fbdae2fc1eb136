//! A saved run (`profiles/<phase>/`) read back for judging: its manifest, timings and
//! analysis, each checked for its schema version, and the folded stacks the manifest points
//! to. Every error names the file and says how to get a good one, because a comparison
//! never guesses around a damaged run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::pipeline::counting::{DatabaseFile, DATABASE_FILE};
use crate::pipeline::manifest::{
    AnalysisFile, Manifest, TargetRecord, Timings, ANALYSIS_FILE, MANIFEST_FILE, SCHEMA_VERSION,
    TIMINGS_FILE,
};

/// Which side of the comparison a directory is, for the advice in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Baseline,
    Post,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::Post => "post run",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Role::Baseline => "record the baseline again (`cargo xtask profile-baseline --force`) or restore a good copy",
            Role::Post => "run it again (`cargo xtask profile-post --force`)",
        }
    }
}

#[derive(Debug)]
pub struct RunDir {
    pub dir: PathBuf,
    pub role: Role,
    pub manifest: Manifest,
    pub timings: Timings,
    /// The counting pass's figures; runs recorded before it existed have none.
    pub database: Option<DatabaseFile>,
}

impl RunDir {
    pub fn load(dir: &Path, role: Role) -> Result<RunDir> {
        if !dir.is_dir() {
            bail!(
                "the {} directory {} does not exist; {}",
                role.name(),
                dir.display(),
                match role {
                    Role::Baseline => "record one with `cargo xtask profile-baseline` (or point --baseline at one)",
                    Role::Post => "record one with `cargo xtask profile-post`",
                }
            );
        }
        let manifest: Manifest = read_json(&dir.join(MANIFEST_FILE), role)?;
        let timings: Timings = read_json(&dir.join(TIMINGS_FILE), role)?;
        // Read to check the run is whole and consistent; the judgement recomputes what it
        // needs from the folded stacks, so the rules of this xtask apply to both sides.
        let analysis: AnalysisFile = read_json(&dir.join(ANALYSIS_FILE), role)?;
        for name in timings
            .targets
            .iter()
            .map(|t| &t.name)
            .chain(analysis.targets.iter().map(|t| &t.name))
        {
            if !manifest.targets.iter().any(|t| &t.name == name) {
                bail!(
                    "{} names target `{name}`, which {} does not list: the {} in {} is inconsistent; {}",
                    if timings.targets.iter().any(|t| &t.name == name) {
                        TIMINGS_FILE
                    } else {
                        ANALYSIS_FILE
                    },
                    MANIFEST_FILE,
                    role.name(),
                    dir.display(),
                    role.remedy()
                );
            }
        }
        let database_file = dir.join(DATABASE_FILE);
        let database = if database_file.exists() {
            Some(read_json(&database_file, role)?)
        } else {
            None
        };
        Ok(RunDir {
            dir: dir.to_owned(),
            role,
            manifest,
            timings,
            database,
        })
    }

    pub fn target(&self, name: &str) -> Option<&TargetRecord> {
        self.manifest.targets.iter().find(|t| t.name == name)
    }

    /// The folded stacks of a target, when its profile has them. A file the manifest lists
    /// but the directory lacks is an error: the run is damaged.
    pub fn folded(&self, target: &TargetRecord) -> Result<Option<String>> {
        match target.profile.as_ref().and_then(|p| p.folded.as_ref()) {
            Some(rel) => self.listed_file(rel).map(Some),
            None => Ok(None),
        }
    }

    /// A file the manifest lists, which must be there.
    fn listed_file(&self, rel: &str) -> Result<String> {
        let path = self.dir.join(rel);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (listed in {} of the {}); {}",
                path.display(),
                MANIFEST_FILE,
                self.role.name(),
                self.role.remedy()
            )
        })
    }

    /// The off-CPU folded stacks of a target and the profile's wall time, when its profile
    /// has them; a listed file missing is an error, as for [`RunDir::folded`].
    pub fn offcpu_folded(&self, target: &TargetRecord) -> Result<Option<(String, f64)>> {
        let Some((profile, off)) = target
            .profile
            .as_ref()
            .and_then(|p| Some((p, p.offcpu.as_ref()?)))
        else {
            return Ok(None);
        };
        let text = self.listed_file(&off.folded)?;
        Ok(Some((text, profile.duration_secs)))
    }

    /// A file of the run named by a path relative to its directory, if it exists.
    pub fn file(&self, rel: Option<&String>) -> Option<PathBuf> {
        rel.map(|r| self.dir.join(r)).filter(|p| p.is_file())
    }
}

/// Reads one of the run's JSON files: present, valid JSON, the schema version this xtask
/// writes, and the expected shape, in that order, so the message says which went wrong.
fn read_json<T: DeserializeOwned>(path: &Path, role: Role) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} of the {}; {}",
            path.display(),
            role.name(),
            role.remedy()
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} of the {} is not valid JSON (truncated or edited?); {}",
            path.display(),
            role.name(),
            role.remedy()
        )
    })?;
    match value.get("schema_version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => bail!(
            "{} of the {} has schema_version {v}; this xtask reads version {SCHEMA_VERSION}; {}",
            path.display(),
            role.name(),
            role.remedy()
        ),
        None => bail!(
            "{} of the {} has no schema_version: it was not written by `cargo xtask` or is damaged; {}",
            path.display(),
            role.name(),
            role.remedy()
        ),
    }
    serde_json::from_value(value).with_context(|| {
        format!(
            "{} of the {} does not have the fields of schema version {SCHEMA_VERSION}; {}",
            path.display(),
            role.name(),
            role.remedy()
        )
    })
}

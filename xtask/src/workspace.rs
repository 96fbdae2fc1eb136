//! The workspace being profiled, as `cargo metadata` describes it: packages, their bench
//! and test targets, and the target directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub target_directory: PathBuf,
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub name: String,
    pub targets: Vec<CargoTarget>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CargoTarget {
    pub name: String,
    pub kind: Vec<String>,
    pub src_path: PathBuf,
    #[serde(default, rename = "required-features")]
    pub required_features: Vec<String>,
}

impl CargoTarget {
    pub fn is(&self, kind: &str) -> bool {
        self.kind.iter().any(|k| k == kind)
    }
}

/// The workspace this xtask belongs to: the parent of `xtask/`.
pub fn default_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_owned()
}

pub fn metadata(sh: &Shell, root: &Path) -> Result<Metadata> {
    let manifest = root.join("Cargo.toml");
    let json = cmd!(
        sh,
        "cargo metadata --format-version 1 --no-deps --manifest-path {manifest}"
    )
    .quiet()
    .read()
    .with_context(|| format!("running `cargo metadata` for {}", manifest.display()))?;
    serde_json::from_str(&json).context("parsing `cargo metadata` output")
}

impl Metadata {
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}

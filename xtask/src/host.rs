//! Facts about the run that a later comparison needs to trust it: git revision and dirty
//! state, toolchain, host fingerprint and profiler versions.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sysinfo::System;
use xshell::{cmd, Shell};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Git {
    /// `None` outside a git checkout (the fixture's temporary copy, a source tarball).
    pub revision: Option<String>,
    pub dirty: Option<bool>,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Toolchain {
    pub rustc: String,
    pub host_triple: String,
    pub cargo: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub os: String,
    pub os_version: Option<String>,
    pub kernel: Option<String>,
    pub arch: String,
    pub cpu_model: String,
    pub physical_cores: Option<usize>,
    pub logical_cores: usize,
    pub memory_bytes: u64,
    pub hostname: Option<String>,
}

pub fn git(sh: &Shell, dir: &Path) -> Git {
    let _dir = sh.push_dir(dir);
    let revision = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .ok();
    let dirty = revision.as_ref().and_then(|_| {
        cmd!(sh, "git status --porcelain --untracked-files=normal")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .map(|s| !s.trim().is_empty())
    });
    let branch = revision.as_ref().and_then(|_| {
        cmd!(sh, "git rev-parse --abbrev-ref HEAD")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
    });
    Git {
        revision,
        dirty,
        branch,
    }
}

pub fn toolchain(sh: &Shell) -> anyhow::Result<Toolchain> {
    use anyhow::Context as _;
    let verbose = cmd!(sh, "rustc -vV")
        .quiet()
        .read()
        .context("running `rustc -vV`")?;
    let rustc = verbose.lines().next().unwrap_or_default().to_owned();
    let host_triple = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_default()
        .to_owned();
    let cargo = cmd!(sh, "cargo -V")
        .quiet()
        .read()
        .context("running `cargo -V`")?;
    Ok(Toolchain {
        rustc,
        host_triple,
        cargo,
    })
}

pub fn host() -> Host {
    let mut sys = System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    Host {
        os: std::env::consts::OS.to_owned(),
        os_version: System::long_os_version(),
        kernel: System::kernel_version(),
        arch: std::env::consts::ARCH.to_owned(),
        cpu_model: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_owned())
            .unwrap_or_default(),
        physical_cores: System::physical_core_count(),
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: sys.total_memory(),
        hostname: System::host_name(),
    }
}

/// First line of `TOOL --version`, or `None` when the tool is not installed.
pub fn tool_version(sh: &Shell, tool: &str) -> Option<String> {
    cmd!(sh, "{tool} --version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
}

//! `cargo xtask install-tools`: installs and verifies the profilers at pinned versions.
//! samply everywhere it runs (the plan's macOS tool), and on Linux perf from the
//! distribution plus cargo-flamegraph. Idempotent: a tool at the pinned version is left alone.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::flags::InstallToolsArgs;
use crate::interference::paranoid_meaning;
use crate::probe::{self, which};

/// A tool installed with `cargo install`, pinned so every machine profiles with the same
/// version.
struct CargoTool {
    /// The binary whose `--version` is checked.
    binary: &'static str,
    krate: &'static str,
    version: &'static str,
}

const SAMPLY: CargoTool = CargoTool {
    binary: "samply",
    krate: "samply",
    version: "0.13.1",
};

/// The `flamegraph` crate provides both `flamegraph` and `cargo-flamegraph`.
const FLAMEGRAPH: CargoTool = CargoTool {
    binary: "flamegraph",
    krate: "flamegraph",
    version: "0.6.15",
};

#[derive(Debug)]
struct Row {
    tool: String,
    version: String,
    path: String,
    status: String,
    missing: bool,
}

/// The version number in `--version` output such as `samply 0.13.1` or `perf version 6.1.187`.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
}

fn version_of(sh: &Shell, program: &Path) -> Option<String> {
    cmd!(sh, "{program} --version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .and_then(|s| parse_version(&s))
}

/// The distribution's perf package and the command that installs it, from /etc/os-release.
pub fn perf_package(os_release: &str) -> (&'static str, &'static str) {
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default()
    };
    let ids = format!("{} {}", field("ID="), field("ID_LIKE="));
    let has = |id: &str| ids.split_whitespace().any(|w| w == id);
    if has("ubuntu") {
        (
            "linux-tools-generic",
            "apt-get install -y linux-tools-common linux-tools-generic",
        )
    } else if has("debian") {
        ("linux-perf", "apt-get install -y linux-perf")
    } else if has("fedora") || has("rhel") || has("centos") {
        ("perf", "dnf install -y perf")
    } else if has("arch") {
        ("perf", "pacman -S --noconfirm perf")
    } else if has("suse") || has("opensuse") {
        ("perf", "zypper install -y perf")
    } else if has("alpine") {
        ("perf", "apk add perf")
    } else {
        ("perf", "install your distribution's `perf` package")
    }
}

fn cargo_tool(sh: &Shell, tool: &CargoTool, check: bool) -> Row {
    let installed = which(tool.binary).map(|p| {
        let v = version_of(sh, &p);
        (p, v)
    });
    let install = format!(
        "cargo install {} --version {} --locked",
        tool.krate, tool.version
    );
    match installed {
        Some((path, Some(v))) if v == tool.version => Row {
            tool: tool.binary.to_owned(),
            version: v,
            path: path.display().to_string(),
            status: "ok".to_owned(),
            missing: false,
        },
        found if check => {
            let (path, status) = match &found {
                Some((p, v)) => (
                    p.display().to_string(),
                    format!(
                        "wrong version {} (want {}): run `{install} --force`",
                        v.as_deref().unwrap_or("?"),
                        tool.version
                    ),
                ),
                None => ("–".to_owned(), format!("missing: run `{install}`")),
            };
            Row {
                tool: tool.binary.to_owned(),
                version: found.and_then(|(_, v)| v).unwrap_or_else(|| "–".to_owned()),
                path,
                status,
                missing: true,
            }
        }
        found => {
            let (krate, version) = (tool.krate, tool.version);
            eprintln!(
                "installing {krate} {version} (this compiles it from crates.io; a few minutes)"
            );
            let force = found.as_ref().map(|_| "--force");
            // --locked first: the tool's own tested dependency versions. A lock file can name
            // a version the registry no longer serves (yanked, or a partial mirror: seen with
            // flamegraph 0.6.15 and webpki-roots 1.0.11), and then only a fresh resolution
            // within the tool's own requirements can install it.
            let result = cmd!(
                sh,
                "cargo install {krate} --version {version} --locked {force...}"
            )
            .run()
            .or_else(|locked_error| {
                eprintln!(
                    "the locked install of {krate} {version} failed ({locked_error}); retrying without --locked, resolving its dependencies afresh"
                );
                cmd!(sh, "cargo install {krate} --version {version} {force...}").run()
            });
            let after = which(tool.binary).map(|p| {
                let v = version_of(sh, &p);
                (p, v)
            });
            match (result, after) {
                (Ok(()), Some((path, Some(v)))) if v == tool.version => Row {
                    tool: tool.binary.to_owned(),
                    version: v,
                    path: path.display().to_string(),
                    status: "installed".to_owned(),
                    missing: false,
                },
                (Err(e), _) => Row {
                    tool: tool.binary.to_owned(),
                    version: "–".to_owned(),
                    path: "–".to_owned(),
                    status: format!("install failed: {e}"),
                    missing: true,
                },
                (Ok(()), other) => Row {
                    tool: tool.binary.to_owned(),
                    version: other.and_then(|(_, v)| v).unwrap_or_else(|| "–".to_owned()),
                    path: "–".to_owned(),
                    status: "installed, but not found at the pinned version on PATH (is ~/.cargo/bin on PATH?)".to_owned(),
                    missing: true,
                },
            }
        }
    }
}

fn perf(sh: &Shell, check: bool) -> Row {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let (package, install) = perf_package(&os_release);
    let found = || which("perf").map(|p| (version_of(sh, &p), p));
    let row = |path: &Path, v: Option<String>, status: &str| Row {
        tool: "perf".to_owned(),
        version: v.unwrap_or_else(|| "?".to_owned()),
        path: path.display().to_string(),
        // perf follows the kernel, so the distribution's version is the right one.
        status: status.to_owned(),
        missing: false,
    };
    if let Some((v, path)) = found() {
        return row(&path, v, "ok (distribution package, matches the kernel)");
    }
    if !check && probe::is_root() && !install.starts_with("install ") {
        eprintln!("installing perf with `{install}`");
        let mut words = install.split_whitespace();
        let program = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        if program == "apt-get" {
            let _ = cmd!(sh, "apt-get update").quiet().run();
        }
        if cmd!(sh, "{program} {args...}").run().is_ok() {
            if let Some((v, path)) = found() {
                return row(&path, v, &format!("installed ({package})"));
            }
        }
    }
    Row {
        tool: "perf".to_owned(),
        version: "–".to_owned(),
        path: "–".to_owned(),
        status: format!("missing: package `{package}`; run `sudo {install}`"),
        missing: true,
    }
}

/// Where `--persist` keeps the level: a file of its own rather than a line appended to
/// /etc/sysctl.conf, so undoing it is deleting one file.
const PERSISTED_PARANOID: &str = "/etc/sysctl.d/60-perf-event-paranoid.conf";

/// Keeps `level` across reboots in the sysctl file `path` (see [`PERSISTED_PARANOID`]).
fn persist_paranoid(path: &Path, level: i32) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "# Written by `cargo xtask install-tools --set-perf-paranoid {level} --persist`: \
             lets perf and samply sample (delete this file to undo).\nkernel.perf_event_paranoid = {level}\n"
        ),
    )
    .with_context(|| format!("writing {} (needs root)", path.display()))?;
    println!(
        "kept across reboots in {}; delete that file to undo",
        path.display()
    );
    Ok(())
}

fn paranoid_report(set: Option<i32>, persist: bool) -> Result<()> {
    const PATH: &str = "/proc/sys/kernel/perf_event_paranoid";
    let read = || -> Option<i32> { std::fs::read_to_string(PATH).ok()?.trim().parse().ok() };
    let Some(current) = read() else {
        println!("kernel.perf_event_paranoid: not readable ({PATH})");
        return Ok(());
    };
    println!(
        "kernel.perf_event_paranoid = {current}: {}{}",
        paranoid_meaning(current),
        if probe::is_root() {
            " (perf is not limited for root)"
        } else {
            ""
        }
    );
    if current > 1 {
        println!(
            "  samply refuses to record above 1, even as root; `--set-perf-paranoid 1` lowers it"
        );
    }
    let Some(wanted) = set else {
        return Ok(());
    };
    if !probe::is_root() {
        bail!(
            "changing kernel.perf_event_paranoid needs root; run `sudo sysctl -w kernel.perf_event_paranoid={wanted}` or re-run this command with sudo"
        );
    }
    if wanted == current {
        println!("kernel.perf_event_paranoid is already {wanted}; nothing changed");
        return if persist {
            persist_paranoid(Path::new(PERSISTED_PARANOID), wanted)
        } else {
            Ok(())
        };
    }
    std::fs::write(PATH, format!("{wanted}\n")).with_context(|| format!("writing {PATH}"))?;
    let now = read();
    if now != Some(wanted) {
        bail!("wrote {wanted} to {PATH} but it reads back as {now:?}; the kernel may not allow it (container?)");
    }
    println!(
        "changed kernel.perf_event_paranoid from {current} to {wanted} for the running kernel ({})",
        paranoid_meaning(wanted)
    );
    if persist {
        persist_paranoid(Path::new(PERSISTED_PARANOID), wanted)
    } else {
        println!("  not persisted: it reverts on reboot (add --persist to keep it)");
        Ok(())
    }
}

/// What samply needs on macOS before it can record, printed where it applies.
const MACOS_NOTES: &str = "\
samply on macOS: run `samply setup` once; it code-signs samply so that it may attach to the
processes it starts (macOS refuses otherwise). If recording still fails, see samply's
README, \"macOS permissions\". Keep the Mac on mains power while measuring: check-env flags
a battery.";

pub fn run(args: &InstallToolsArgs) -> ExitCode {
    super::finish(install_tools(args))
}

fn install_tools(args: &InstallToolsArgs) -> Result<()> {
    let sh = Shell::new()?;
    let mut rows = Vec::new();
    if cfg!(target_os = "linux") {
        rows.push(perf(&sh, args.check));
        rows.push(cargo_tool(&sh, &SAMPLY, args.check));
        rows.push(cargo_tool(&sh, &FLAMEGRAPH, args.check));
    } else if cfg!(target_os = "macos") {
        rows.push(cargo_tool(&sh, &SAMPLY, args.check));
    } else {
        bail!("profiling tools are set up for Linux and macOS only");
    }
    let w = |f: fn(&Row) -> &str, min: usize| {
        rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(min)
    };
    let (wt, wv, wp) = (w(|r| &r.tool, 4), w(|r| &r.version, 7), w(|r| &r.path, 4));
    println!(
        "{:<wt$}  {:<wv$}  {:<wp$}  status",
        "tool", "version", "path"
    );
    for r in &rows {
        println!(
            "{:<wt$}  {:<wv$}  {:<wp$}  {}",
            r.tool, r.version, r.path, r.status
        );
    }
    if cfg!(target_os = "linux") {
        paranoid_report(args.set_perf_paranoid, args.persist)?;
    } else if args.set_perf_paranoid.is_some() {
        bail!("--set-perf-paranoid only applies to Linux");
    }
    if cfg!(target_os = "macos") {
        println!("{MACOS_NOTES}");
    }
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r.missing)
        .map(|r| r.tool.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("missing or at the wrong version: {}", missing.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_persisted_level_is_a_sysctl_setting_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("60-perf-event-paranoid.conf");
        persist_paranoid(&file, 1).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let settings: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(settings, ["kernel.perf_event_paranoid = 1"], "{text}");
    }

    #[test]
    fn persist_needs_a_level_to_keep() {
        use clap::Parser;
        let err =
            crate::flags::Cli::try_parse_from(["xtask", "install-tools", "--persist"]).unwrap_err();
        assert!(err.to_string().contains("--set-perf-paranoid"), "{err}");
        assert!(crate::flags::Cli::try_parse_from([
            "xtask",
            "install-tools",
            "--set-perf-paranoid",
            "1",
            "--persist"
        ])
        .is_ok());
    }

    #[test]
    fn versions_are_parsed_from_tool_output() {
        assert_eq!(parse_version("samply 0.13.1").as_deref(), Some("0.13.1"));
        assert_eq!(
            parse_version("perf version 6.1.187").as_deref(),
            Some("6.1.187")
        );
        assert_eq!(
            parse_version("flamegraph 0.6.15\n").as_deref(),
            Some("0.6.15")
        );
        assert_eq!(parse_version("no numbers"), None);
    }

    #[test]
    fn perf_package_follows_the_distribution() {
        assert_eq!(
            perf_package("ID=debian\nVERSION_ID=\"12\"\n").0,
            "linux-perf"
        );
        assert_eq!(
            perf_package("ID=ubuntu\nID_LIKE=debian\n").0,
            "linux-tools-generic"
        );
        assert_eq!(
            perf_package("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n").1,
            "dnf install -y perf"
        );
        assert_eq!(perf_package("ID=arch\n").0, "perf");
    }
}

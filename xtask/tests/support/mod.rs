//! Helpers shared by the integration tests of the judging commands: a private copy of the
//! fixture workspace, running the xtask binary against it, and reading its outputs.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// Measuring tests take turns: two runs timing at once on a small machine would be
/// measuring each other.
pub static MEASURING: Mutex<()> = Mutex::new(());

pub const HOT: &str = "xtask_fixture_hot_kernel";

/// Flags of a measuring run on the fixture: criterion's quick settings with `runs` timing
/// runs, 3 s profiles for enough samples, the shared target directory without cleaning (the
/// fixture's dependencies are built once), and a busy machine accepted (recorded in the
/// manifest, and the verdict accounts for it). The fixture's short profiles are judged on
/// their shares, so they sample at a higher rate than the default (which is chosen for the
/// profiler's cost on long runs).
pub fn measuring_flags<'a>(target_dir: &'a str, runs: &'a str) -> Vec<&'a str> {
    vec![
        "--frequency",
        "999",
        "--quick",
        "--runs",
        runs,
        "--profile-time",
        "3",
        "--no-clean",
        "--allow-interference",
        "--target-dir",
        target_dir,
    ]
}

pub fn fixture_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/profile-fixture")
}

/// The fixture's cargo target directory, kept between test runs so its dependencies
/// (criterion) are built once; the runs use `--no-clean`.
pub fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("profile-fixture-target")
}

/// Copies the fixture (without build output) so runs never write into the repository.
pub fn copy_fixture(to: &Path) {
    copy_dir(&fixture_source(), to);
}

/// A private copy of the fixture workspace in a temporary directory (deleted with the guard).
pub fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("fixture");
    copy_fixture(&ws);
    (tmp, ws)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture copy");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("fixture entry");
        let name = entry.file_name();
        if ["target", "profiles", "docs"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy fixture file");
        }
    }
}

/// Runs the xtask against the fixture workspace with a clean environment: no slow switch,
/// no GitHub Actions variables, unless `env` sets them.
pub fn xtask(workspace: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    xtask_with_plan(workspace, "profile-plan.toml", args, env)
}

/// [`xtask`] with another of the fixture's plans (`offcpu-plan.toml`).
pub fn xtask_with_plan(
    workspace: &Path,
    plan: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--workspace")
        .arg(workspace)
        .arg("--plan")
        .arg(workspace.join(plan))
        .args(args)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("XTASK_FIXTURE_SLOW")
        .env_remove("XTASK_FIXTURE_UNCONTENDED")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xtask")
}

/// Runs the xtask without pointing it at a workspace (for `compare`, which needs none).
pub fn xtask_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run xtask")
}

pub fn require_perf() {
    let ok = Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "perf is not installed: these tests profile the fixture with perf. Install it \
         (`apt-get install linux-perf` on Debian) or run `cargo xtask install-tools`."
    );
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The last line on stderr: the commands' verdict line.
pub fn last_line(o: &Output) -> String {
    stderr(o).lines().last().unwrap_or_default().to_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// Parses the SVG as XML from start to end and returns the text of its `<title>` elements
/// (inferno puts each frame's name, sample count and, in differential graphs, the change
/// of share there).
pub fn svg_titles(path: &Path) -> Vec<String> {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(path).expect("read svg");
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut titles = Vec::new();
    let mut in_title = false;
    let mut saw_svg = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == b"svg" => saw_svg = true,
            Ok(Event::Start(e)) if e.name().as_ref() == b"title" => in_title = true,
            Ok(Event::End(e)) if e.name().as_ref() == b"title" => in_title = false,
            Ok(Event::Text(t)) if in_title => {
                titles.push(String::from_utf8_lossy(t.as_ref()).into_owned())
            }
            Ok(Event::Eof) => break,
            Err(e) => panic!("{} is not well-formed XML: {e}", path.display()),
            _ => {}
        }
    }
    assert!(saw_svg, "{} has no <svg> element", path.display());
    titles
}

/// Runs git in `dir` with a fixed identity, panicking with its output on failure.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=xtask test",
            "-c",
            "user.email=xtask@test.invalid",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private copy of the fixture workspace as a git repository: a first commit without the
/// plan file (a revision older than the plan format), then one with everything.
pub fn git_fixture() -> (tempfile::TempDir, PathBuf) {
    let (tmp, ws) = fixture_copy();
    std::fs::write(ws.join(".gitignore"), "target/\nprofiles/\n").expect("write .gitignore");
    git(&ws, &["init", "-q"]);
    let plan = ws.join("profile-plan.toml");
    let aside = tmp.path().join("plan-aside.toml");
    std::fs::rename(&plan, &aside).expect("move the plan aside");
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "before the plan"]);
    std::fs::rename(&aside, &plan).expect("restore the plan");
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "the plan"]);
    (tmp, ws)
}

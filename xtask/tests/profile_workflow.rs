//! `.github/workflows/profile-benchmarks.yml` cannot run here, so this checks what can be:
//! it is valid YAML with the plan's triggers, its key steps exist in order, and every
//! `cargo xtask` command it runs is accepted by this xtask's command line (the commands
//! themselves are exercised on the fixture by `tests/profile_post.rs`).

use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

fn workflow() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows/profile-benchmarks.yml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn steps(w: &Value) -> Vec<Value> {
    w["jobs"]["profile"]["steps"]
        .as_sequence()
        .expect("jobs.profile.steps")
        .clone()
}

fn find(steps: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    steps
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no step that {what}"))
}

fn run_of(step: &Value) -> &str {
    step["run"].as_str().unwrap_or("")
}

fn condition(step: &Value) -> &str {
    step["if"].as_str().unwrap_or("")
}

#[test]
fn workflow_triggers_on_the_plans_paths_and_main() {
    let w = workflow();
    // YAML 1.1 readers take a bare `on` for `true`; serde_yaml keeps the string.
    let on = w
        .get("on")
        .or_else(|| w.get(Value::Bool(true)))
        .expect("an `on:` section");
    let paths = strings(&on["pull_request"]["paths"]);
    // Every place the measured code lives: every crate of the workspace but the xtask (the
    // SQL functions are in tasker-shared), the benches, the binary and the plan.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let workspace: toml::Table =
        toml::from_str(&std::fs::read_to_string(&manifest).expect("the workspace's Cargo.toml"))
            .expect("Cargo.toml is TOML");
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .filter_map(|m| m.as_str())
        .filter(|m| *m != "xtask")
        .map(|m| format!("{m}/**"));
    let places: Vec<String> = members
        .chain(["src/**", "tests/benches/**", "xtask/profile-plan.toml"].map(str::to_owned))
        .collect();
    assert!(places.len() > 6, "{places:?}");
    for place in places {
        assert!(paths.contains(&place), "{place}: {paths:?}");
    }
    assert!(strings(&on["push"]["branches"]).contains(&"main".to_owned()));
    assert_eq!(
        w["permissions"]["contents"], "read",
        "the job reads the repository and nothing else"
    );
}

#[test]
fn workflow_has_the_key_steps_in_order() {
    let w = workflow();
    let steps = steps(&w);
    let install = find(&steps, "installs PostgreSQL and perf", |s| {
        let r = run_of(s);
        r.contains("apt-get install") && r.contains("postgresql") && r.contains("linux-tools")
    });
    let paranoid = find(&steps, "allows perf", |s| {
        run_of(s).contains("kernel.perf_event_paranoid=1")
    });
    assert_eq!(
        steps[0]["with"]["fetch-depth"], 0,
        "the merge base must be in the clone"
    );
    let gate = find(&steps, "judges against the merge base", |s| {
        run_of(s).contains("git merge-base")
            && run_of(s)
                .contains("cargo xtask profile-gate --quick --keep-failed --against \"$base\"")
    });
    assert!(condition(&steps[gate]).contains("pull_request"));
    let upload = find(&steps, "uploads the post run", |s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact"))
            && s["with"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("profiles/post-refactor"))
    });
    assert!(
        condition(&steps[upload]).contains("always()"),
        "the report is uploaded even when the gate fails"
    );
    let fail = find(&steps, "fails the job", |s| {
        condition(s).contains("steps.gate.outputs.exit_code") && run_of(s).contains("exit 1")
    });
    let save = find(&steps, "saves the baseline on main", |s| {
        run_of(s).contains("cargo xtask profile-gate --save-baseline")
    });
    assert!(condition(&steps[save]).contains("!= 'pull_request'"));
    let save_upload = find(&steps, "uploads the baseline", |s| {
        s["with"]["name"].as_str() == Some("profile-baseline")
    });
    assert!(install < paranoid && paranoid < gate);
    assert!(gate < upload && upload < fail && save < save_upload);
    // The post run and the merge base's side are uploaded with the report.
    let uploaded = steps[upload]["with"]["path"].as_str().unwrap_or_default();
    assert!(
        uploaded.contains("profiles/post-refactor-against/"),
        "{uploaded}"
    );
}

/// Every `cargo xtask …` line of the workflow must be a command line this xtask accepts:
/// clap rejects an unknown flag before it gets to `--help`.
#[test]
fn workflow_commands_are_accepted_by_the_xtask() {
    let w = workflow();
    let mut checked = 0;
    for step in steps(&w) {
        for line in run_of(&step).lines() {
            let Some(rest) = line.trim().strip_prefix("cargo xtask ") else {
                continue;
            };
            let args: Vec<&str> = rest.split_whitespace().collect();
            let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
                .args(&args)
                .arg("--help")
                .output()
                .expect("run xtask");
            assert!(
                o.status.success(),
                "`cargo xtask {rest}` is not accepted: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the pull-request gate and the baseline on main");
}

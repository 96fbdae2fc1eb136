//! End-to-end tests of Phase 3 on the fixture workspace (`tests/fixtures/profile-fixture`):
//! `profile-post` must pass an unchanged rerun and catch a doubled hot function
//! (`XTASK_FIXTURE_SLOW=1`), `compare` must re-judge saved runs and refuse damaged ones with
//! exit 2, and `profile-gate` must run the CI workflow's steps locally. Real builds,
//! criterion runs and perf profiles on whatever machine runs the tests (the noise handling
//! is what keeps a busy one from raising false alarms). Needs perf.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{
    code, fixture_copy, last_line, measuring_flags, read_json, require_perf, shared_target_dir,
    stderr, stdout, svg_titles, xtask, xtask_bare, HOT, MEASURING,
};

/// Five timing runs, so the noise estimate of a two-session verdict has something to go on.
fn run_flags(target_dir: &str) -> Vec<&str> {
    measuring_flags(target_dir, "5")
}

fn with<'a>(mut base: Vec<&'a str>, more: &[&'a str]) -> Vec<&'a str> {
    base.extend_from_slice(more);
    base
}

fn row<'a>(c: &'a Value, target: &str, benchmark: &str) -> &'a Value {
    c["timings"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["target"] == target && r["benchmark"] == benchmark)
        })
        .unwrap_or_else(|| panic!("no row {target} {benchmark} in {}", c["timings"]))
}

/// The function among a target's movers (the ten whose share moved most), if it is one.
fn mover<'a>(c: &'a Value, target: &str, function_suffix: &str) -> Option<&'a Value> {
    c["profiles"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["target"] == target))
        .and_then(|p| p["movers"].as_array())
        .and_then(|ms| {
            ms.iter().find(|m| {
                m["function"]
                    .as_str()
                    .is_some_and(|f| f.ends_with(function_suffix))
            })
        })
}

/// The timing rows and each side's runs, for assertion messages: when a verdict is not the
/// expected one, the numbers behind it are what needs reading.
fn evidence(dir: &Path, baseline: &Path) -> String {
    let mut out = String::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("comparison.json")) {
        let c: Value = serde_json::from_str(&text).unwrap_or_default();
        for r in c["timings"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{} {}: {} {:.1}% ({:.1} … {:.1}) {}\n",
                r["target"],
                r["benchmark"],
                r["verdict"],
                r["change_pct"].as_f64().unwrap_or(0.0),
                r["low_pct"].as_f64().unwrap_or(0.0),
                r["high_pct"].as_f64().unwrap_or(0.0),
                r["reason"]
            ));
        }
    }
    for (side, d) in [("baseline", baseline), ("post", dir)] {
        if let Ok(text) = std::fs::read_to_string(d.join("timings.json")) {
            let t: Value = serde_json::from_str(&text).unwrap_or_default();
            for run in t["targets"][0]["benchmarks"][0]["runs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{side} run: typical {} usage {}\n",
                    run["typical_ns"], run["usage"]
                ));
            }
        }
    }
    out
}

fn fired(c: &Value) -> Vec<String> {
    c["signals"]
        .as_array()
        .expect("signals")
        .iter()
        .filter(|s| s["fired"] == true)
        .map(|s| s["summary"].to_string())
        .collect()
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read run dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_run(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Rewrites a copy of a run's manifest.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut manifest = read_json(&path);
    edit(&mut manifest);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("write");
}

#[test]
fn profile_post_passes_an_unchanged_rerun_and_catches_a_doubled_hot_function() {
    require_perf();
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, ws) = fixture_copy();
    let target_dir = shared_target_dir();
    let flags = run_flags(target_dir.to_str().expect("utf-8 path"));

    let doc = ws.join("docs/observability/lifecycle-performance-baseline.md");
    let doc_arg = doc.to_str().expect("utf-8 path");
    let base = xtask(
        &ws,
        &with(vec!["profile-baseline", "--baseline-doc", doc_arg], &flags),
        &[],
    );
    assert!(base.status.success(), "baseline failed:\n{}", stderr(&base));
    let baseline_dir = ws.join("profiles/pre-refactor");
    let doc_before = std::fs::read(&doc).expect("the baseline wrote its document");

    // An unchanged rerun: exit 0, no regression, no signal; inconclusive only as warnings.
    let same = xtask(&ws, &with(vec!["profile-post"], &flags), &[]);
    let err = stderr(&same);
    let post_dir = ws.join("profiles/post-refactor");
    assert_eq!(
        code(&same),
        0,
        "unchanged rerun must pass:\n{err}\n{}",
        evidence(&post_dir, &baseline_dir)
    );
    assert!(
        last_line(&same).starts_with("profile-post: pass (exit 0)"),
        "{err}"
    );
    let c = read_json(&post_dir.join("comparison.json"));
    assert_eq!(c["schema_version"], 1);
    assert_eq!(c["outcome"]["exit_code"], 0);
    let rows = c["timings"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "the bench and the test target: {rows:?}");
    for r in rows {
        let verdict = r["verdict"].as_str().expect("verdict");
        assert!(
            verdict == "pass" || verdict == "inconclusive",
            "false alarm on an unchanged rerun: {r}"
        );
        if verdict == "inconclusive" {
            let name = r["target"].as_str().expect("target");
            assert!(
                err.contains(&format!("warning: inconclusive: {name}")),
                "inconclusive {name} must be a printed warning:\n{err}"
            );
        }
    }
    assert!(fired(&c).is_empty(), "signals fired: {:?}", fired(&c));
    let signals = c["signals"].as_array().expect("signals");
    let on_blocked_time = signals
        .iter()
        .filter(|s| s["kind"] == "lock_wait_growth")
        .count();
    assert_eq!(
        signals.len() - on_blocked_time,
        8,
        "four profile signals per target evaluated"
    );
    // As root, perf records where the threads blocked too, and the lock signal is judged
    // on that blocked time as well.
    let root = nix::unistd::geteuid().is_root();
    assert_eq!(on_blocked_time, if root { 2 } else { 0 }, "{signals:?}");
    if let Some(hot) = mover(&c, "fixture-bench", HOT) {
        assert_ne!(
            hot["change"], "grown",
            "the hot function did not change: {hot}"
        );
    }
    assert_eq!(
        std::fs::read(&doc).expect("doc"),
        doc_before,
        "profile-post must leave the baseline's document alone"
    );

    // The hot function doing twice the work: exit 1, the benchmark named, the function grown.
    let slow_dir = ws.join("profiles/post-slow");
    let slow = xtask(
        &ws,
        &with(
            vec!["profile-post", "--out", slow_dir.to_str().expect("utf-8")],
            &flags,
        ),
        &[("XTASK_FIXTURE_SLOW", "1")],
    );
    let err = stderr(&slow);
    let why = evidence(&slow_dir, &baseline_dir);
    assert_eq!(
        code(&slow),
        1,
        "a doubled hot function must fail:\n{err}\n{why}"
    );
    let last = last_line(&slow);
    assert!(
        last.starts_with("profile-post: regression (exit 1)") && last.contains("fixture/workload"),
        "{last}\n{why}"
    );
    let c = read_json(&slow_dir.join("comparison.json"));
    let workload = row(&c, "fixture-bench", "fixture/workload");
    assert_eq!(workload["verdict"], "regression", "{workload}");
    assert!(
        workload["low_pct"].as_f64().is_some_and(|p| p > 20.0),
        "{workload}"
    );
    let hot = mover(&c, "fixture-bench", HOT).expect("the hot function moved most");
    assert_eq!(hot["change"], "grown", "{hot}");
    assert!(
        hot["after_self_pct"].as_f64() > hot["before_self_pct"].as_f64(),
        "{hot}"
    );

    let md = std::fs::read_to_string(slow_dir.join("comparison.md")).expect("comparison.md");
    let table_row = md
        .lines()
        .find(|l| l.starts_with("| fixture-bench | `fixture/workload` |"))
        .expect("a table row for the benchmark");
    assert!(table_row.ends_with("| **regression** |"), "{table_row}");
    assert!(md.contains("## Regression signals"), "{md}");
    assert!(
        md.contains("(comparison/fixture-bench/differential.svg)"),
        "{md}"
    );
    assert!(
        md.lines().any(|l| l.contains(HOT) && l.contains("▲ grown")),
        "{md}"
    );

    // The differential flamegraph shows the hot function's share grown.
    let titles = svg_titles(&slow_dir.join("comparison/fixture-bench/differential.svg"));
    assert!(
        titles.iter().any(|t| t.contains(HOT) && t.contains("; +")),
        "no grown {HOT} frame in the differential flamegraph: {titles:?}"
    );
    svg_titles(&slow_dir.join("comparison/fixture-bench/differential-negated.svg"));

    // One page with everything inline and nothing fetched from the network.
    let html = std::fs::read_to_string(slow_dir.join("index.html")).expect("index.html");
    assert_eq!(
        html.matches("src=\"data:image/svg+xml;base64,").count(),
        8,
        "before, after and two differential graphs for each of the two targets"
    );
    for remote in ["http://", "https://", "<script src", "<link"] {
        assert!(!html.contains(remote), "index.html references {remote}");
    }
    assert!(html.contains("fixture/workload") && html.contains("class=\"regression\""));

    // `compare` re-reads the saved runs without measuring: same verdict, written elsewhere.
    let reread = tmp.path().join("reread");
    let o = xtask_bare(&[
        "compare",
        baseline_dir.to_str().expect("utf-8"),
        slow_dir.to_str().expect("utf-8"),
        "--out",
        reread.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let again = read_json(&reread.join("comparison.json"));
    assert_eq!(
        row(&again, "fixture-bench", "fixture/workload")["change_pct"],
        workload["change_pct"],
        "the same data gives the same verdict"
    );
    assert!(stdout(&o).contains("fixture/workload"));

    // A baseline from another host: timings become inconclusive unless allowed.
    let other = tmp.path().join("other-host");
    copy_run(&baseline_dir, &other);
    edit_manifest(&other, |m| m["host"]["hostname"] = "another-machine".into());
    let o = xtask_bare(&[
        "compare",
        other.to_str().expect("utf-8"),
        slow_dir.to_str().expect("utf-8"),
        "--out",
        tmp.path().join("h1").to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c = read_json(&tmp.path().join("h1/comparison.json"));
    let r = row(&c, "fixture-bench", "fixture/workload");
    assert_eq!(r["verdict"], "inconclusive");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|s| s.contains("different hosts")),
        "{r}"
    );
    assert!(
        stderr(&o).contains("--allow-different-host"),
        "{}",
        stderr(&o)
    );
    let o = xtask_bare(&[
        "compare",
        other.to_str().expect("utf-8"),
        slow_dir.to_str().expect("utf-8"),
        "--out",
        tmp.path().join("h2").to_str().expect("utf-8"),
        "--allow-different-host",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));

    // A baseline whose profiles were unwound another way: the timings are judged as before,
    // the profile signals are listed but not judged.
    let unwound = tmp.path().join("other-unwinding");
    copy_run(&baseline_dir, &unwound);
    edit_manifest(&unwound, |m| {
        for t in m["targets"].as_array_mut().expect("targets") {
            let command = t["profile"]["command"].as_array_mut().expect("command");
            let at = command.iter().position(|a| a == "-g").expect("perf's -g");
            command.splice(at..=at, ["--call-graph".into(), "dwarf".into()]);
        }
    });
    let reread = tmp.path().join("u1");
    let o = xtask_bare(&[
        "compare",
        unwound.to_str().expect("utf-8"),
        slow_dir.to_str().expect("utf-8"),
        "--out",
        reread.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 1, "the timing regression stands: {}", stderr(&o));
    let c = read_json(&reread.join("comparison.json"));
    let why = c["comparability"]["profiles_blocked"]
        .as_str()
        .expect("profiles not judged");
    assert!(
        why.contains("unwound differently") && why.contains("frame pointers"),
        "{why}"
    );
    assert!(
        stderr(&o).contains(&format!("warning: {why}")),
        "{}",
        stderr(&o)
    );
    let profile_signals: Vec<&Value> = c["signals"]
        .as_array()
        .expect("signals")
        .iter()
        .filter(|s| s["target"] == "fixture-bench" && s["benchmark"].is_null())
        .collect();
    assert!(profile_signals.len() >= 4, "{profile_signals:?}");
    for s in profile_signals {
        assert_eq!(s["fired"], false, "{s}");
        assert!(
            s["summary"].as_str().is_some_and(
                |t| t.starts_with("not judged (the profiles were recorded differently")
            ),
            "{s}"
        );
    }

    // Damaged inputs: exit 2 naming the file, and the existing report stays as it was.
    let report_before = std::fs::read(slow_dir.join("comparison.md")).expect("report");
    let damaged = |name: &str, edit: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name);
        copy_run(&baseline_dir, &dir);
        edit(&dir);
        let o = xtask_bare(&[
            "compare",
            dir.to_str().expect("utf-8"),
            slow_dir.to_str().expect("utf-8"),
        ]);
        assert_eq!(code(&o), 2, "{name}: {}", stderr(&o));
        let last = last_line(&o);
        assert!(last.starts_with("compare: unusable (exit 2):"), "{last}");
        assert_eq!(
            std::fs::read(slow_dir.join("comparison.md")).expect("report"),
            report_before,
            "{name}: a failed comparison replaced the good report"
        );
        last
    };
    let last = damaged("truncated", &|dir| {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).expect("manifest");
        std::fs::write(&path, &text[..text.len() / 2]).expect("truncate");
    });
    assert!(
        last.contains(&format!(
            "{}",
            tmp.path().join("truncated/manifest.json").display()
        )) && last.contains("not valid JSON"),
        "{last}"
    );
    let last = damaged("future-schema", &|dir| {
        edit_manifest(dir, |m| m["schema_version"] = 99.into())
    });
    assert!(
        last.contains("manifest.json") && last.contains("schema_version 99"),
        "{last}"
    );
    let last = damaged("wrong-shape", &|dir| {
        edit_manifest(dir, |m| m["targets"] = 5.into())
    });
    assert!(last.contains("manifest.json"), "{last}");
    let last = damaged("other-plan", &|dir| {
        edit_manifest(dir, |m| {
            m["targets"][0]["binary"] = "another_bench".into();
        })
    });
    assert!(
        last.contains("different plans") && last.contains("another_bench"),
        "{last}"
    );
    let last = damaged("no-folded-stacks", &|dir| {
        std::fs::remove_file(dir.join("profiles/fixture-bench/folded.txt")).expect("rm");
    });
    assert!(last.contains("folded.txt"), "{last}");
    let leftovers: Vec<_> = std::fs::read_dir(&slow_dir)
        .expect("post dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    // A missing baseline is refused before anything is built.
    let nowhere = tmp.path().join("nowhere");
    let o = xtask(
        &ws,
        &with(
            vec![
                "profile-post",
                "--baseline",
                nowhere.to_str().expect("utf-8"),
                "--out",
                tmp.path().join("never").to_str().expect("utf-8"),
            ],
            &flags,
        ),
        &[],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let last = last_line(&o);
    assert!(
        last.contains(&nowhere.display().to_string()) && last.contains("profile-baseline"),
        "{last}"
    );
    assert!(!stderr(&o).contains("building"), "{}", stderr(&o));
}

#[test]
fn profile_gate_runs_the_ci_steps_locally() {
    require_perf();
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, ws) = fixture_copy();
    let target_dir = shared_target_dir();
    // The gate adds --force and --allow-interference itself, as CI needs them.
    let flags: Vec<&str> = run_flags(target_dir.to_str().expect("utf-8"))
        .into_iter()
        .filter(|f| *f != "--allow-interference")
        .collect();
    let actions = [("GITHUB_ACTIONS", "true")];

    // What the workflow does on main.
    let save = xtask(
        &ws,
        &with(vec!["profile-gate", "--save-baseline"], &flags),
        &actions,
    );
    assert_eq!(code(&save), 0, "{}", stderr(&save));
    assert!(
        last_line(&save).starts_with("profile-gate: baseline saved (exit 0)"),
        "{}",
        stderr(&save)
    );
    let manifest = read_json(&ws.join("profiles/pre-refactor/manifest.json"));
    assert_eq!(manifest["options"]["allow_interference"], true);
    assert!(
        !ws.join("docs").exists(),
        "CI keeps the run as an artifact; no baseline document"
    );

    // What the workflow does on a pull request, here one that doubles the hot function.
    let summary = tmp.path().join("step-summary.md");
    let gate = xtask(
        &ws,
        &with(
            vec![
                "profile-gate",
                "--summary",
                summary.to_str().expect("utf-8"),
            ],
            &flags,
        ),
        &[("GITHUB_ACTIONS", "true"), ("XTASK_FIXTURE_SLOW", "1")],
    );
    let why = evidence(
        &ws.join("profiles/post-refactor"),
        &ws.join("profiles/pre-refactor"),
    );
    assert_eq!(code(&gate), 1, "{}\n{why}", stderr(&gate));
    assert!(
        last_line(&gate).starts_with("profile-gate: regression (exit 1)"),
        "{}",
        stderr(&gate)
    );
    let annotations = stdout(&gate);
    assert!(
        annotations.lines().any(|l| l
            .starts_with("::error title=Performance regression::fixture-bench fixture/workload")),
        "{annotations}\n{why}"
    );
    let c = read_json(&ws.join("profiles/post-refactor/comparison.json"));
    let inconclusive = c["timings"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["verdict"] == "inconclusive")
        .count();
    assert_eq!(
        annotations
            .lines()
            .filter(|l| l.starts_with("::warning title=Inconclusive timing::"))
            .count(),
        inconclusive
    );
    let summary = std::fs::read_to_string(&summary).expect("step summary written");
    assert!(
        summary.starts_with("# Performance comparison") && summary.contains("**regression**"),
        "{summary}"
    );
}

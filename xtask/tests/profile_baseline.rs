//! End-to-end test of `cargo xtask profile-baseline` on the fixture workspace
//! (`tests/fixtures/profile-fixture`): a real clean build, criterion timing runs and perf
//! profiles, checked against the one thing known in advance, that
//! `xtask_fixture_hot_kernel` dominates the fixture's time. Needs perf; fails without it.

mod support;

use serde_json::Value;
use support::{
    fixture_copy, read_json, require_perf, shared_target_dir, stderr, svg_titles, xtask,
    xtask_bare, HOT, MEASURING,
};

#[test]
fn profile_baseline_finds_the_hot_function_and_protects_the_baseline() {
    require_perf();
    let (tmp, ws) = fixture_copy();
    let target_dir = tmp.path().join("target");
    let target_dir_arg = target_dir.to_str().expect("utf-8 temp path");

    // A --quick run writes the baseline document only to a file named on the command line.
    let doc = ws.join("docs/observability/lifecycle-performance-baseline.md");
    let run = xtask(
        &ws,
        &[
            "profile-baseline",
            "--quick",
            "--profiler",
            "perf",
            // Plenty of samples for a ranking in a two-second profile.
            "--frequency",
            "999",
            "--allow-interference",
            "--target-dir",
            target_dir_arg,
            "--baseline-doc",
            doc.to_str().expect("utf-8 temp path"),
        ],
        &[],
    );
    assert!(
        run.status.success(),
        "profile-baseline failed:\n{}",
        stderr(&run)
    );

    let out = ws.join("profiles/pre-refactor");
    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(manifest["schema_version"], 1);
    assert!(manifest["interference"]["findings"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    assert!(manifest["host"]["logical_cores"]
        .as_u64()
        .is_some_and(|n| n >= 1));
    assert!(manifest["build"]["clean_command"]
        .as_str()
        .is_some_and(|c| c.contains("cargo clean")));
    let targets = manifest["targets"].as_array().expect("targets array");
    assert_eq!(targets.len(), 2);
    for t in targets {
        let name = t["name"].as_str().expect("name");
        assert_ne!(t["status"], "failed", "{name}: {}", t["error"]);
        let raw = out.join(t["profile"]["raw"].as_str().expect("raw profile path"));
        assert!(raw.is_file(), "{} missing", raw.display());
        assert!(
            t["profile"]["samples"].as_u64().is_some_and(|s| s > 100),
            "{name}: too few samples"
        );
        assert!(
            t["profile"]["top_self"]["function"]
                .as_str()
                .is_some_and(|f| f.ends_with(HOT)),
            "{name}: top self function is {}",
            t["profile"]["top_self"]
        );
    }

    // The test target is repeated under the profiler until its (quick) profile time passed.
    let tests = targets
        .iter()
        .find(|t| t["name"] == "fixture-kernel-tests")
        .expect("test target");
    assert!(
        tests["profile"]["repetitions"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "repetitions: {}",
        tests["profile"]
    );
    assert!(tests["profile"]["duration_secs"]
        .as_f64()
        .is_some_and(|d| d >= 2.0));

    // The summary ranks the hot function first by self time for the bench target.
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    let bench_section = summary
        .split("### fixture-bench")
        .nth(1)
        .expect("bench section in summary");
    let first_row = bench_section
        .lines()
        .find(|l| l.starts_with("| 1 |"))
        .expect("a ranked row");
    assert!(first_row.contains(HOT), "first by self time: {first_row}");

    // The machine-readable analysis agrees, and the cold helper ranks below it.
    let analysis = read_json(&out.join("analysis.json"));
    let bench = analysis["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "fixture-bench"))
        .expect("bench analysis");
    let hot_pct = hot_then_cold(&bench["analysis"]["top_self"]);
    assert!(hot_pct > 50.0, "{hot_pct}");

    // Criterion estimates are read, copied and summarised per run.
    let timings = read_json(&out.join("timings.json"));
    let benchmarks = &timings["targets"][0]["benchmarks"];
    assert_eq!(benchmarks[0]["id"], "fixture/workload");
    assert_eq!(benchmarks[0]["runs"].as_array().map(Vec::len), Some(3));
    assert!(benchmarks[0]["typical_ns"]
        .as_f64()
        .is_some_and(|ns| ns > 0.0));
    // criterion's layout, the baseline named after the run directory and run
    assert!(out
        .join("criterion/fixture-bench/fixture/workload/pre-refactor-3/estimates.json")
        .is_file());

    // Flamegraph: well-formed SVG whose frames include the hot function.
    let svg = out.join(
        targets[0]["profile"]["flamegraph"]
            .as_str()
            .expect("svg path"),
    );
    let titles = svg_titles(&svg);
    assert!(
        titles.iter().any(|t| t.contains(HOT)),
        "no {HOT} frame in {}",
        svg.display()
    );

    assert!(out.join("plan.toml").is_file());
    assert!(doc.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(ws.join("profiles"))
        .expect("profiles dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary directories left behind");

    // A second run without --force refuses before building anything and leaves the
    // baseline as it was.
    let before = std::fs::read(out.join("manifest.json")).expect("manifest bytes");
    let again = xtask(
        &ws,
        &[
            "profile-baseline",
            "--quick",
            "--allow-interference",
            "--target-dir",
            target_dir_arg,
        ],
        &[],
    );
    assert!(!again.status.success(), "second run must refuse");
    let err = stderr(&again);
    assert!(err.contains("--force"), "{err}");
    assert!(
        !err.contains("building"),
        "refused only after building: {err}"
    );
    assert_eq!(
        std::fs::read(out.join("manifest.json")).expect("manifest bytes"),
        before
    );
}

#[test]
fn unknown_target_and_malformed_plan_are_clear_errors() {
    let (_tmp, ws) = fixture_copy();

    let o = xtask(
        &ws,
        &["profile-baseline", "--only", "nope", "--profiler", "none"],
        &[],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("unknown target `nope`") && err.contains("fixture-bench"),
        "{err}"
    );

    let plan = ws.join("profile-plan.toml");
    let text = std::fs::read_to_string(&plan).expect("plan");
    std::fs::write(
        &plan,
        text.replace("category = \"component\"", "category = \"componnet\""),
    )
    .expect("write");
    let line = 1 + text
        .lines()
        .position(|l| l == "category = \"component\"")
        .expect("the bench's category");
    let o = xtask(&ws, &["profile-baseline", "--profiler", "none"], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("profile-plan.toml:{line}:")) && err.contains("componnet"),
        "{err}"
    );
    assert!(
        !ws.join("profiles").exists(),
        "nothing written on a bad plan"
    );
}

#[test]
fn audit_lists_the_fixture_bench() {
    let (_tmp, ws) = fixture_copy();
    std::fs::create_dir_all(ws.join("benches")).expect("benches dir");
    std::fs::write(
        ws.join("benches/later.rs"),
        "//! Later.\n//!\n//! Status: placeholder\nfn main() {}\n",
    )
    .expect("write placeholder");
    let manifest = ws.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        format!("{text}\n[[bench]]\nname = \"later\"\nharness = false\n"),
    )
    .expect("write");

    let o = xtask(&ws, &["audit"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    let row = |bench: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("| {bench} |")))
            .unwrap_or_else(|| panic!("no row for {bench}:\n{table}"))
            .to_owned()
    };
    assert!(
        row("fixture_bench").contains("implemented") && row("fixture_bench").contains("| yes |")
    );
    assert!(row("later").contains("placeholder") && row("later").contains("| no |"));
}

#[test]
fn check_env_reports_json() {
    let o = xtask_bare(&["check-env", "--json"]);
    // A busy CI machine may fail the check; the report must be there either way.
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let findings = report["findings"].as_array().expect("findings");
    assert!(findings.iter().any(|f| f["check"] == "load"));
    assert!(findings
        .iter()
        .all(|f| ["ok", "warn", "fail"].contains(&f["status"].as_str().unwrap_or(""))));
    assert_eq!(o.status.success(), report["worst"] != "fail");
}

/// `--perf-dwarf` has perf unwind from the binaries' unwind tables, as samply does: the
/// fixture ranks the same under it as in the samply recording kept beside the folding's unit
/// tests (hot function first with most of the time, cold helper second).
#[test]
fn perf_unwinding_from_the_unwind_tables_ranks_the_fixture_like_samply() {
    require_perf();
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, ws) = fixture_copy();
    let target_dir = shared_target_dir();
    let out = tmp.path().join("dwarf");
    let run = xtask(
        &ws,
        &[
            "profile-baseline",
            "--quick",
            "--only",
            "fixture-bench",
            "--profiler",
            "perf",
            "--perf-dwarf",
            "--perf-per-thread",
            "--frequency",
            "999",
            "--no-clean",
            "--allow-interference",
            "--target-dir",
            target_dir.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(
        run.status.success(),
        "profile-baseline failed:\n{}",
        stderr(&run)
    );

    let manifest = read_json(&out.join("manifest.json"));
    let command: Vec<&str> = manifest["targets"][0]["profile"]["command"]
        .as_array()
        .expect("the profiler's command line")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        command.windows(2).any(|w| w == ["--call-graph", "dwarf"]) && !command.contains(&"-a"),
        "{command:?}"
    );
    let analysis = read_json(&out.join("analysis.json"));
    let hot_pct = hot_then_cold(&analysis["targets"][0]["analysis"]["top_self"]);
    // The samply recording's share of the hot function lies in 55–92 %.
    assert!((55.0..92.0).contains(&hot_pct), "{hot_pct}");
}

/// Asserts the fixture's ranking by self time (its hot function first, the cold helper
/// second) and returns the hot function's share.
fn hot_then_cold(top: &Value) -> f64 {
    let name = |i: usize| top[i]["function"].as_str().unwrap_or_default();
    assert!(name(0).ends_with(HOT), "{top}");
    assert!(name(1).ends_with("xtask_fixture_cold_helper"), "{top}");
    top[0]["self_pct"].as_f64().expect("a share")
}

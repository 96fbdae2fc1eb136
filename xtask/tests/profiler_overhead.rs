//! `cargo xtask profiler-overhead` on the fixture workspace: real criterion runs, half of them
//! under perf, paired and judged. Needs perf; fails without it.

mod support;

use support::{
    code, fixture_copy, last_line, read_json, require_perf, shared_target_dir, stderr, xtask,
    MEASURING,
};

#[test]
fn pairs_run_with_and_without_perf_and_are_judged() {
    require_perf();
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, ws) = fixture_copy();
    let target_dir = shared_target_dir();
    let json = tmp.path().join("overhead.json");
    // Six pairs are the fewest that give a 95 % interval; a 50 % limit is one perf at this
    // rate cannot reach on a CPU-bound bench, so the verdict must be "under".
    let o = xtask(
        &ws,
        &[
            "profiler-overhead",
            "--target",
            "fixture-bench",
            "--pairs",
            "6",
            "--measurement-time",
            "0.3",
            "--warm-up-time",
            "0.1",
            "--limit",
            "50",
            "--target-dir",
            target_dir.to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        last_line(&o),
        "profiler overhead: under the limit (exit 0)",
        "{}",
        stderr(&o)
    );

    let report = read_json(&json);
    let pairs = report["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 6);
    let order: Vec<bool> = pairs
        .iter()
        .map(|p| p["profiled_first"].as_bool().expect("bool"))
        .collect();
    assert_eq!(order, [false, true, false, true, false, true]);
    for p in pairs {
        let without = p["without"].as_object().expect("without");
        let with = p["with"].as_object().expect("with");
        assert!(!without.is_empty(), "{p}");
        assert_eq!(
            without.keys().collect::<Vec<_>>(),
            with.keys().collect::<Vec<_>>()
        );
        for v in without.values().chain(with.values()) {
            assert!(v.as_f64().expect("ns") > 0.0, "{p}");
        }
    }
    let command: Vec<&str> = report["profiler_command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("str"))
        .collect();
    assert_eq!(command[..2], ["perf", "record"]);
    assert!(
        command.windows(2).any(|w| w == ["-F", "249"]),
        "{command:?}"
    );
    let benchmarks = report["benchmarks"].as_array().expect("benchmarks");
    assert!(!benchmarks.is_empty());
    for b in benchmarks {
        assert_eq!(b["pairs"], 6, "{b}");
        assert_eq!(b["verdict"], "under", "{b}");
        let ci = b["ci_pct"].as_array().expect("an interval from six pairs");
        let (lo, hi) = (ci[0].as_f64().expect("lo"), ci[1].as_f64().expect("hi"));
        let median = b["median_overhead_pct"].as_f64().expect("median");
        assert!(lo <= median && median <= hi && hi < 50.0, "{b}");
    }
}

#[test]
fn only_a_known_bench_target_can_be_measured() {
    let (_tmp, ws) = fixture_copy();
    let unknown = xtask(&ws, &["profiler-overhead", "--target", "nope"], &[]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    let text = stderr(&unknown);
    assert!(
        text.contains("unknown target `nope`") && text.contains("fixture-bench"),
        "{text}"
    );
    let test_target = xtask(
        &ws,
        &["profiler-overhead", "--target", "fixture-kernel-tests"],
        &[],
    );
    assert_eq!(code(&test_target), 2, "{}", stderr(&test_target));
    assert!(
        stderr(&test_target).contains("is a test target"),
        "{}",
        stderr(&test_target)
    );
    assert_eq!(
        last_line(&test_target),
        "profiler overhead: not measured (exit 2)"
    );
}

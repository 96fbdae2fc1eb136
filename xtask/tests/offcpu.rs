//! End to end, the off-CPU profile on the fixture's lock test (`offcpu-plan.toml`): the
//! profiling pass records the scheduler's switches next to its samples, folds where the
//! threads blocked into its own flamegraph, and `profile-post` judges the lock signal on
//! that blocked time: threads made to wait for one lock (against a baseline where each had
//! its own, `XTASK_FIXTURE_UNCONTENDED=1`) fail the run. Needs perf, as root (the
//! scheduler's tracepoint over the whole machine).

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::{
    code, measuring_flags, read_json, require_perf, shared_target_dir, stderr, svg_titles,
    MEASURING,
};

const LOCKED: &str = "profile_fixture::xtask_fixture_locked_section";

/// The xtask on the fixture copy with the off-CPU plan.
fn run(ws: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    support::xtask_with_plan(ws, "offcpu-plan.toml", args, env)
}

fn offcpu(run_dir: &Path) -> Value {
    let m = read_json(&run_dir.join("manifest.json"));
    m["targets"][0]["profile"]["offcpu"].clone()
}

fn lock_wait(c: &Value) -> &Value {
    c["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "lock_wait_growth"))
        .unwrap_or_else(|| panic!("no lock_wait_growth signal in {}", c["signals"]))
}

#[test]
fn the_off_cpu_profile_shows_a_held_lock_and_a_new_lock_wait_fails_profile_post() {
    require_perf();
    assert!(
        nix::unistd::geteuid().is_root(),
        "the off-CPU profile records the scheduler's switches of the whole machine: run the tests as root"
    );
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, ws) = support::fixture_copy();
    let target_dir = shared_target_dir();
    // three runs: the verdict here is the lock signal, not a timing
    let flags = measuring_flags(target_dir.to_str().expect("utf-8 path"), "3");

    // Baseline: every thread its own lock, nobody waits.
    let mut args = vec!["profile-baseline", "--no-baseline-doc"];
    args.extend(&flags);
    let base = run(&ws, &args, &[("XTASK_FIXTURE_UNCONTENDED", "1")]);
    assert!(base.status.success(), "baseline failed:\n{}", stderr(&base));
    let baseline_dir = ws.join("profiles/pre-refactor");
    let quiet = offcpu(&baseline_dir);
    assert!(quiet["switches"].as_u64().is_some_and(|n| n > 0), "{quiet}");

    // One lock for all: the waits are the top of the off-CPU graph, and the run fails.
    let mut args = vec!["profile-post"];
    args.extend(&flags);
    let post = run(&ws, &args, &[]);
    let err = stderr(&post);
    let post_dir = ws.join("profiles/post-refactor");
    let off = offcpu(&post_dir);
    assert_eq!(off["top_self"][0]["function"], LOCKED, "{off}\n{err}");
    let svg = post_dir.join(off["flamegraph"].as_str().expect("an off-CPU flamegraph"));
    assert!(
        svg_titles(&svg).iter().any(|t| t.starts_with(LOCKED)),
        "{} draws no {LOCKED}",
        svg.display()
    );
    assert_eq!(code(&post), 1, "a new lock wait must fail:\n{err}");
    let c = read_json(&post_dir.join("comparison.json"));
    let signal = lock_wait(&c);
    assert_eq!(signal["fired"], true, "{signal}");
    assert!(
        signal["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["name"] == LOCKED)),
        "the waiting function is named: {signal}"
    );
    // The report lists where the waiting moved: the locked section waits longer.
    let moved = c["profiles"][0]["blocked_movers"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["function"] == LOCKED))
        .unwrap_or_else(|| panic!("{LOCKED} not among {}", c["profiles"][0]));
    assert!(
        moved["after_pct"].as_f64() > moved["before_pct"].as_f64(),
        "{moved}"
    );
    let md = std::fs::read_to_string(post_dir.join("comparison.md")).expect("comparison.md");
    assert!(
        md.lines()
            // the off-CPU table's row: two shares, not the on-CPU movers' "before → after"
            .any(|l| l.starts_with(&format!("| `{LOCKED}` |"))
                && l.ends_with(" pts |")
                && !l.contains('→')),
        "{md}"
    );

    // The same runs compared with themselves: the signal is evaluated and stays quiet.
    let same = support::xtask_bare(&[
        "compare",
        post_dir.to_str().expect("utf-8"),
        post_dir.to_str().expect("utf-8"),
        "--out",
        ws.join("same").to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    let c = read_json(&ws.join("same/comparison.json"));
    assert_eq!(lock_wait(&c)["fired"], false, "{}", lock_wait(&c));
}

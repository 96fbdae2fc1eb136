//! `profile-post --against REV` on the fixture workspace made into a git repository: both
//! revisions built and measured in alternating pairs in one session. An unchanged tree must
//! pass with the paired interval in the report, a hot function doubled in the working tree
//! must fail, and a revision git does not know or one older than the plan format must be
//! refused with exit 2 before anything is built. Real builds, criterion runs and perf
//! profiles. Needs perf and git.

mod support;

use serde_json::Value;
use support::{
    code, git_fixture, last_line, read_json, require_perf, shared_target_dir, stderr, xtask,
    xtask_bare, MEASURING,
};

/// Criterion's quick settings, six pairs (the fewest for the signed-rank interval), short
/// profiles at a rate that gives the fixture enough samples, the shared target directory.
fn flags(target_dir: &str) -> Vec<&str> {
    vec![
        "--quick",
        "--pairs",
        "6",
        "--profile-time",
        "2",
        "--frequency",
        "999",
        "--allow-interference",
        "--target-dir",
        target_dir,
    ]
}

fn with<'a>(mut first: Vec<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    first.extend_from_slice(rest);
    first
}

fn row<'a>(c: &'a Value, target: &str) -> &'a Value {
    c["timings"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["target"] == target))
        .unwrap_or_else(|| panic!("no row for {target} in {}", c["timings"]))
}

#[test]
fn bad_revisions_are_refused_before_anything_is_built() {
    let (_tmp, ws) = git_fixture();
    let target = ws.join("target-never-built");
    let target = target.to_str().expect("utf-8 path");

    let unknown = xtask(
        &ws,
        &with(
            vec!["profile-post", "--against", "no-such-rev"],
            &flags(target),
        ),
        &[],
    );
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    let last = last_line(&unknown);
    assert!(
        last.starts_with("profile-post: unusable (exit 2)")
            && last.contains("unknown revision `no-such-rev`"),
        "{last}"
    );

    let older = xtask(
        &ws,
        &with(vec!["profile-post", "--against", "HEAD~1"], &flags(target)),
        &[],
    );
    assert_eq!(code(&older), 2, "{}", stderr(&older));
    assert!(
        last_line(&older).contains("older than the xtask's plan format"),
        "{}",
        last_line(&older)
    );
    assert!(!ws.join("profiles").exists(), "nothing may be written");
    assert!(
        !ws.join("target-never-built").exists(),
        "nothing may be built"
    );
}

#[test]
fn against_passes_an_unchanged_tree_and_catches_a_doubled_hot_function() {
    require_perf();
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, ws) = git_fixture();
    let target_dir = shared_target_dir();
    let target = target_dir.to_str().expect("utf-8 path");

    // Unchanged: exit 0, measured in pairs, every row with its six pair ratios.
    let same = xtask(
        &ws,
        &with(vec!["profile-post", "--against", "HEAD"], &flags(target)),
        &[],
    );
    let err = stderr(&same);
    assert_eq!(code(&same), 0, "an unchanged tree must pass:\n{err}");
    let post_dir = ws.join("profiles/post-refactor");
    let against_dir = ws.join("profiles/post-refactor-against");
    let c = read_json(&post_dir.join("comparison.json"));
    assert_eq!(c["measurement"]["paired"], true, "{}", c["measurement"]);
    assert_eq!(c["measurement"]["pairs"], 6);
    let rows = c["timings"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "the bench and the test target: {rows:?}");
    for r in rows {
        assert_ne!(r["verdict"], "regression", "false alarm: {r}");
        assert_eq!(
            r["pair_log_ratios"].as_array().map(Vec::len),
            Some(6),
            "{r}"
        );
        let (low, high) = (
            r["low_pct"].as_f64().expect("low"),
            r["high_pct"].as_f64().expect("high"),
        );
        let change = r["change_pct"].as_f64().expect("change");
        assert!(
            low <= change && change <= high,
            "the interval holds the change: {r}"
        );
    }
    let md = std::fs::read_to_string(post_dir.join("comparison.md")).expect("comparison.md");
    assert!(
        md.contains("**Measured:** paired in one session: 6 pairs"),
        "{md}"
    );
    let base_manifest = read_json(&against_dir.join("manifest.json"));
    assert_eq!(base_manifest["pairing"]["side"], "against");
    assert_eq!(base_manifest["git"]["dirty"], false);
    // Criterion's own layout, each side's baselines named after its directory and run, so
    // critcmp can hold both sides at once.
    for (dir, baseline) in [
        (&against_dir, "post-refactor-against-6"),
        (&post_dir, "post-refactor-6"),
    ] {
        let estimates = dir
            .join("criterion/fixture-bench/fixture/workload")
            .join(baseline)
            .join("estimates.json");
        assert!(
            estimates.is_file(),
            "criterion layout: {}",
            estimates.display()
        );
    }
    // The saved sides are ordinary run directories: `compare` judges them again, paired.
    let again = tmp.path().join("again");
    let rejudged = xtask_bare(&[
        "compare",
        against_dir.to_str().expect("utf-8"),
        post_dir.to_str().expect("utf-8"),
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&rejudged), 0, "{}", stderr(&rejudged));
    assert_eq!(
        read_json(&again.join("comparison.json"))["measurement"]["paired"],
        true
    );

    // The hot function doing twice the work in the working tree, uncommitted: exit 1.
    let lib = ws.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    let doubled = source.replace(
        "const HOT_ROUNDS: u32 = 9_000;",
        "const HOT_ROUNDS: u32 = 18_000;",
    );
    assert_ne!(source, doubled, "the fixture's hot rounds constant moved");
    std::fs::write(&lib, doubled).expect("write lib.rs");
    let slow = xtask(
        &ws,
        &with(
            vec!["profile-post", "--against", "HEAD", "--force"],
            &flags(target),
        ),
        &[],
    );
    let err = stderr(&slow);
    assert_eq!(code(&slow), 1, "a doubled hot function must fail:\n{err}");
    let last = last_line(&slow);
    assert!(last.contains("fixture/workload"), "{last}");
    let c = read_json(&post_dir.join("comparison.json"));
    let workload = row(&c, "fixture-bench");
    assert_eq!(workload["verdict"], "regression", "{workload}");
    assert!(
        workload["low_pct"].as_f64().is_some_and(|p| p > 20.0),
        "{workload}"
    );
    assert_eq!(
        read_json(&post_dir.join("manifest.json"))["git"]["dirty"],
        true
    );
}

//! Synthetic runs for the comparison's unit tests: a manifest with one bench target, and
//! timings built from plain numbers.

use std::path::PathBuf;

use super::run_dir::{Role, RunDir};
use crate::criterion::{ConfidenceInterval, Estimate, Estimates};
use crate::pipeline::manifest::{BenchmarkTimings, Manifest, RunEstimates, TargetTimings, Timings};
use crate::pipeline::schedstat::RunUsage;
use crate::plan::Category;

/// A manifest as `profile-baseline` writes it, trimmed to one bench target `bench`.
pub fn manifest() -> Manifest {
    serde_json::from_str(
        r#"{"schema_version": 1, "label": "pre-refactor", "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z", "command_line": ["xtask"],
        "options": {"quick": true, "runs": 3, "profiler": "perf", "sample_frequency_hz": 999,
          "profile_time_override_secs": null, "only": [], "clean": false,
          "allow_interference": false, "criterion_args": []},
        "git": {"revision": null, "dirty": null, "branch": null},
        "toolchain": {"rustc": "rustc 1.95.0", "host_triple": "x86_64-unknown-linux-gnu",
          "cargo": "cargo 1.95.0"},
        "host": {"os": "linux", "os_version": "Debian 12", "kernel": "6.1", "arch": "x86_64",
          "cpu_model": "Intel(R) Xeon(R) Processor", "physical_cores": 2, "logical_cores": 2,
          "memory_bytes": 25276510208, "hostname": "vm"},
        "interference": {"readings": {"os": "linux", "logical_cores": 2,
          "load_average": [0.1, 0.1, 0.1], "power": "unknown", "top_processes": [],
          "memory": null, "governors": [], "turbo_enabled": null, "perf_event_paranoid": 1,
          "perf_max_sample_rate": 100000, "is_root": false, "spotlight_busy": null,
          "backup_running": null},
          "findings": [], "worst": "ok"},
        "tools": {}, "database": null,
        "build": {"cargo_profile": "profiling", "rustflags": "-C force-frame-pointers=yes",
          "clean_command": null, "clean_secs": 0.0, "build_secs": 1.0},
        "plan_source": "plan.toml",
        "targets": [{"name": "bench", "package": "p", "kind": "bench", "binary": "b",
          "category": "component", "features": [], "all_features": false, "filter": null,
          "needs_database": false,
          "thresholds": {"max_change_pct": 20.0, "regression_pct": null, "noise_pct": 20.0,
            "hot_path_pct": 5.0, "message_passing_max_pct": 5.0, "fail_on_new_hot_path": true},
          "profile_time_secs": 2.0, "cargo_command": "cargo bench --package p --bench b",
          "status": "ok", "notes": [], "error": null, "executable": null,
          "build_command": null, "build_secs": null, "timing": null, "profile": null,
          "analysis_secs": null}],
        "total_secs": 60.0}"#,
    )
    .expect("the synthetic manifest matches the schema")
}

fn estimate(ns: f64) -> Estimate {
    Estimate {
        point_estimate: ns,
        standard_error: ns * 0.005,
        confidence_interval: ConfidenceInterval {
            confidence_level: 0.95,
            lower_bound: ns * 0.99,
            upper_bound: ns * 1.01,
        },
    }
}

/// One benchmark's runs: typical time and, optionally, the run's contention factor
/// (a single-threaded run that waited `1 − factor` of its wall time for a CPU).
pub fn benchmark(id: &str, runs: &[(f64, Option<f64>)]) -> BenchmarkTimings {
    BenchmarkTimings {
        id: id.to_owned(),
        directory: id.to_owned(),
        typical_statistic: "mean".to_owned(),
        typical_ns: crate::criterion::median(&runs.iter().map(|r| r.0).collect::<Vec<_>>())
            .unwrap_or(0.0),
        spread_pct: None,
        runs: runs
            .iter()
            .enumerate()
            .map(|(i, (ns, factor))| RunEstimates {
                run: i as u32 + 1,
                typical_ns: *ns,
                estimates: Estimates {
                    mean: estimate(*ns),
                    median: estimate(*ns),
                    std_dev: estimate(ns * 0.01),
                    median_abs_dev: estimate(ns * 0.01),
                    slope: None,
                },
                usage: factor.map(|f| RunUsage {
                    wall_secs: 2.0,
                    cpu_secs: 2.0 * f,
                    run_delay_secs: 2.0 * (1.0 - f),
                    threads: 1,
                    measurement_phase: true,
                    steal_share: 0.0,
                }),
                cpu_split: None,
            })
            .collect(),
    }
}

pub fn run(role: Role, manifest: Manifest, benchmarks: Vec<BenchmarkTimings>) -> RunDir {
    RunDir {
        dir: PathBuf::from(match role {
            Role::Baseline => "/runs/pre-refactor",
            Role::Post => "/runs/post-refactor",
        }),
        role,
        manifest,
        database: None,
        timings: Timings {
            schema_version: 1,
            targets: vec![TargetTimings {
                name: "bench".to_owned(),
                category: Category::Component,
                noise_pct: 20.0,
                spread_pct: None,
                noisy: false,
                benchmarks,
            }],
        },
    }
}

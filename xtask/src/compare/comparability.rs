//! Whether two runs can be compared at all, read from their manifests before any number:
//! host and hardware, toolchain, profiler, build, options, interference and the plan. A
//! plan that measures a target differently makes the comparison unusable; a different host
//! makes the timing verdicts inconclusive unless allowed; everything else is reported.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::recording::Recording;
use crate::pipeline::manifest::{Manifest, TargetRecord};

/// How strictly the two runs' machines must match for timings to be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPolicy {
    /// The same host (the default).
    SameHost,
    /// Another machine of the same hardware (CPU model, cores, architecture, OS): what a CI
    /// runner pool offers, where every job gets a fresh VM.
    SameHardware,
    /// Anything (`--allow-different-host`).
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub aspect: String,
    pub baseline: String,
    pub post: String,
    /// What the difference does to the verdict.
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparability {
    pub same_host: bool,
    pub same_hardware: bool,
    pub host_policy: HostPolicy,
    /// Why timing verdicts cannot be given, when they cannot.
    pub timings_blocked: Option<String>,
    /// Why the profiles cannot be judged function by function, when they cannot.
    #[serde(default)]
    pub profiles_blocked: Option<String>,
    pub findings: Vec<Finding>,
}

fn hardware(m: &Manifest) -> String {
    format!(
        "{} ({} logical / {} physical cores, {}, {})",
        m.host.cpu_model,
        m.host.logical_cores,
        m.host
            .physical_cores
            .map_or_else(|| "?".to_owned(), |c| c.to_string()),
        m.host.arch,
        m.host.os
    )
}

fn load(m: &Manifest) -> String {
    let load = m.interference.readings.load_average.map_or_else(
        || "load unknown".to_owned(),
        |l| format!("load {:.1}", l[0]),
    );
    format!(
        "{} ({load} on {} cores)",
        m.interference.worst.name(),
        m.interference.readings.logical_cores
    )
}

/// The fields that define what a target measures; a difference in any of them means the two
/// runs measured different things under one name.
fn definition(t: &TargetRecord) -> String {
    format!(
        "package {}, {} `{}`, features [{}]{}, filter {}, category {}",
        t.package,
        match t.kind {
            crate::plan::Kind::Bench => "bench",
            crate::plan::Kind::Test => "test",
        },
        t.binary,
        t.features.join(", "),
        if t.all_features { " (all)" } else { "" },
        t.filter.as_deref().unwrap_or("none"),
        t.category.name()
    )
}

/// Errors when the plans measure a common target differently (the comparison is unusable).
/// Whether the two runs are the two sides of one paired session.
pub fn paired(base: &Manifest, post: &Manifest) -> bool {
    matches!((&base.pairing, &post.pairing), (Some(b), Some(p)) if b.session == p.session)
}

pub fn check(base: &Manifest, post: &Manifest, policy: HostPolicy) -> Result<Comparability> {
    same_plan(base, post)?;
    let host = HostMatch::of(base, post, policy);
    let mut findings = Findings::default();
    host.record(&mut findings, base, post);
    let profiles_blocked = super::recording::profiles_blocked(base, post);
    record_settings(&mut findings, base, post, profiles_blocked.is_some());
    let timings_blocked = host
        .timings_blocked
        .or_else(|| different_cpu_idle(base, post));
    record_cpu_idle_and_profile_time(&mut findings, base, post);
    record_interference(&mut findings, base, post);
    record_target_settings(&mut findings, base, post);
    Ok(Comparability {
        same_host: host.same_host,
        same_hardware: host.same_hardware,
        host_policy: policy,
        timings_blocked,
        profiles_blocked,
        findings: findings.0,
    })
}

/// Fails unless every target both runs have is defined the same way in both plans.
fn same_plan(base: &Manifest, post: &Manifest) -> Result<()> {
    let mut conflicts = Vec::new();
    for p in &post.targets {
        if let Some(b) = base.targets.iter().find(|b| b.name == p.name) {
            let (db, dp) = (definition(b), definition(p));
            if db != dp {
                conflicts.push(format!("`{}`: baseline {db}; post {dp}", p.name));
            }
        }
    }
    if !conflicts.is_empty() {
        bail!(
            "the two runs use different plans: {}. Re-record the baseline with the current plan (`cargo xtask profile-baseline --force`)",
            conflicts.join("; ")
        );
    }
    Ok(())
}

/// The findings so far, in the order the report lists them.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    /// Records `aspect` when the two sides differ in it.
    fn differ(&mut self, aspect: &str, baseline: String, post: String, effect: &str) {
        if baseline != post {
            self.0.push(Finding {
                aspect: aspect.to_owned(),
                baseline,
                post,
                effect: effect.to_owned(),
            });
        }
    }
}

/// Whether the two runs were measured on the same machine, and what that means for the
/// timing verdicts under `policy`.
struct HostMatch {
    same_host: bool,
    same_hardware: bool,
    timings_blocked: Option<String>,
    effect: &'static str,
}

impl HostMatch {
    fn of(base: &Manifest, post: &Manifest, policy: HostPolicy) -> HostMatch {
        let same_hardware = hardware(base) == hardware(post);
        let same_hostname = match (&base.host.hostname, &post.host.hostname) {
            (Some(b), Some(p)) => b == p,
            _ => true,
        };
        let same_host = same_hardware && same_hostname;
        let (timings_blocked, effect) = match (same_host, same_hardware, policy) {
            (true, _, _) => (None, ""),
            (false, _, HostPolicy::Any) => {
                (None, "timings judged anyway (--allow-different-host)")
            }
            (false, true, HostPolicy::SameHardware) => {
                (None, "same hardware: timings judged (CI runner pool)")
            }
            (false, _, _) => (
                Some(format!(
                    "the runs were measured on different {} ({} vs {}); pass --allow-different-host to judge them anyway",
                    if same_hardware { "hosts" } else { "machines" },
                    base.host.hostname.as_deref().unwrap_or("?"),
                    post.host.hostname.as_deref().unwrap_or("?")
                )),
                "timing verdicts inconclusive",
            ),
        };
        HostMatch {
            same_host,
            same_hardware,
            timings_blocked,
            effect,
        }
    }

    /// The host and hardware findings.
    fn record(&self, findings: &mut Findings, base: &Manifest, post: &Manifest) {
        findings.differ(
            "host",
            base.host.hostname.clone().unwrap_or_else(|| "?".into()),
            post.host.hostname.clone().unwrap_or_else(|| "?".into()),
            self.effect,
        );
        findings.differ(
            "hardware",
            hardware(base),
            hardware(post),
            if self.effect.is_empty() {
                "timing verdicts inconclusive"
            } else {
                self.effect
            },
        );
    }
}

/// Machine, toolchain, profiler, build and criterion settings that differ.
fn record_settings(
    findings: &mut Findings,
    base: &Manifest,
    post: &Manifest,
    profiles_blocked: bool,
) {
    findings.differ(
        "memory",
        format!("{} MiB", base.host.memory_bytes >> 20),
        format!("{} MiB", post.host.memory_bytes >> 20),
        "reported",
    );
    findings.differ(
        "kernel",
        base.host.kernel.clone().unwrap_or_default(),
        post.host.kernel.clone().unwrap_or_default(),
        "reported",
    );
    findings.differ(
        "toolchain",
        base.toolchain.rustc.clone(),
        post.toolchain.rustc.clone(),
        "a compiler change alone can move timings",
    );
    let profiler = |m: &Manifest| {
        let how = Recording::of(m)
            .map_or_else(|| m.options.profiler.name().to_owned(), |r| r.to_string());
        format!("{how} at {} Hz", m.options.sample_frequency_hz)
    };
    findings.differ(
        "profiler",
        profiler(base),
        profiler(post),
        if profiles_blocked {
            "profile signals not judged"
        } else {
            "profiles compared by share only"
        },
    );
    let build = |m: &Manifest| format!("{} with `{}`", m.build.cargo_profile, m.build.rustflags);
    findings.differ(
        "build",
        build(base),
        build(post),
        "different compiler flags",
    );
    let quick = |m: &Manifest| {
        if m.options.quick {
            "quick (--quick)".to_owned()
        } else {
            "full".to_owned()
        }
    };
    findings.differ(
        "criterion settings",
        quick(base),
        quick(post),
        "different criterion settings; quick runs are smoke tests",
    );
    findings.differ(
        "timing runs",
        base.options.runs.to_string(),
        post.options.runs.to_string(),
        "reported (the noise estimate accounts for it)",
    );
}

/// Why the timings cannot be judged when one run held idle CPUs polling and the other did
/// not: every round trip's wake-up cost differs.
fn different_cpu_idle(base: &Manifest, post: &Manifest) -> Option<String> {
    let (ib, ip) = (&base.options.cpu_idle, &post.options.cpu_idle);
    let idle_recorded = !ib.requested.is_empty() && !ip.requested.is_empty();
    (idle_recorded && ib.held != ip.held).then(|| {
        format!(
            "one run held idle CPUs polling and the other did not (baseline: {}; post: {}), so every round trip's wake-up cost differs; record both with the same --cpu-idle (and as root for `poll`)",
            ib.describe(),
            ip.describe()
        )
    })
}

fn record_cpu_idle_and_profile_time(findings: &mut Findings, base: &Manifest, post: &Manifest) {
    let (ib, ip) = (&base.options.cpu_idle, &post.options.cpu_idle);
    let idle_recorded = !ib.requested.is_empty() && !ip.requested.is_empty();
    findings.differ(
        "cpu idle",
        ib.describe(),
        ip.describe(),
        if idle_recorded {
            "timing verdicts inconclusive"
        } else {
            "reported (the baseline predates the record)"
        },
    );
    let override_of = |m: &Manifest| {
        m.options
            .profile_time_override_secs
            .map_or_else(|| "the plan's".to_owned(), |s| format!("{s} s"))
    };
    findings.differ(
        "profile time",
        override_of(base),
        override_of(post),
        "profiles compared by share only",
    );
}

/// A busy machine during either run, and what it means for the verdicts.
fn record_interference(findings: &mut Findings, base: &Manifest, post: &Manifest) {
    if base.interference.worst == crate::interference::Status::Ok
        && post.interference.worst == crate::interference::Status::Ok
    {
        return;
    }
    findings.0.push(Finding {
        aspect: "interference".to_owned(),
        baseline: load(base),
        post: load(post),
        effect: if paired(base, post) {
            "the session was measured on a busy machine: both sides of every pair alike, so the paired verdicts stand; only the absolute figures are affected".to_owned()
        } else {
            "a run was measured on a busy machine: timings are corrected for waiting for a CPU where measured, and their noise includes the category's noise limit between sessions".to_owned()
        },
    });
}

/// Per target: thresholds and profile times that differ.
fn record_target_settings(findings: &mut Findings, base: &Manifest, post: &Manifest) {
    for p in &post.targets {
        let Some(b) = base.targets.iter().find(|b| b.name == p.name) else {
            continue;
        };
        if b.thresholds != p.thresholds {
            findings.0.push(Finding {
                aspect: format!("thresholds of `{}`", p.name),
                baseline: format!("{:?}", b.thresholds),
                post: format!("{:?}", p.thresholds),
                effect: "the post run's thresholds are used".to_owned(),
            });
        }
        if (b.profile_time_secs - p.profile_time_secs).abs() > 1e-9 {
            findings.0.push(Finding {
                aspect: format!("profile time of `{}`", p.name),
                baseline: format!("{} s", b.profile_time_secs),
                post: format!("{} s", p.profile_time_secs),
                effect: "profiles compared by share only".to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::manifest;

    #[test]
    fn identical_runs_have_nothing_to_report() {
        let c = check(&manifest(), &manifest(), HostPolicy::SameHost).expect("comparable");
        assert!(c.same_host && c.timings_blocked.is_none(), "{c:?}");
        assert!(c.findings.is_empty(), "{:?}", c.findings);
    }

    #[test]
    fn another_host_blocks_timings_unless_allowed() {
        let mut post = manifest();
        post.host.hostname = Some("ci-runner-7".to_owned());
        let strict = check(&manifest(), &post, HostPolicy::SameHost).expect("comparable");
        let reason = strict.timings_blocked.expect("blocked");
        assert!(
            reason.contains("different hosts") && reason.contains("ci-runner-7"),
            "{reason}"
        );
        assert!(strict.findings.iter().any(|f| f.aspect == "host"));
        // A CI pool: same hardware, fresh VM.
        let pool = check(&manifest(), &post, HostPolicy::SameHardware).expect("comparable");
        assert!(pool.timings_blocked.is_none());
        let any = check(&manifest(), &post, HostPolicy::Any).expect("comparable");
        assert!(any.timings_blocked.is_none());
        assert!(any
            .findings
            .iter()
            .any(|f| f.effect.contains("--allow-different-host")));
    }

    #[test]
    fn other_hardware_blocks_even_a_ci_pool() {
        let mut post = manifest();
        post.host.hostname = Some("ci-runner-7".to_owned());
        post.host.cpu_model = "AMD EPYC 7763".to_owned();
        let pool = check(&manifest(), &post, HostPolicy::SameHardware).expect("comparable");
        assert!(
            pool.timings_blocked
                .as_deref()
                .is_some_and(|r| r.contains("different machines")),
            "{pool:?}"
        );
        assert!(pool.findings.iter().any(|f| f.aspect == "hardware"));
        assert!(check(&manifest(), &post, HostPolicy::Any)
            .expect("comparable")
            .timings_blocked
            .is_none());
    }

    #[test]
    fn toolchain_profiler_and_thresholds_are_reported() {
        let mut post = manifest();
        post.toolchain.rustc = "rustc 1.96.0".to_owned();
        post.options.sample_frequency_hz = 499;
        post.targets[0].thresholds.max_change_pct = Some(30.0);
        post.interference.worst = crate::interference::Status::Fail;
        let c = check(&manifest(), &post, HostPolicy::SameHost).expect("comparable");
        let aspects: Vec<&str> = c.findings.iter().map(|f| f.aspect.as_str()).collect();
        for aspect in [
            "toolchain",
            "profiler",
            "thresholds of `bench`",
            "interference",
        ] {
            assert!(
                aspects.contains(&aspect),
                "{aspect} missing from {aspects:?}"
            );
        }
        assert!(c.timings_blocked.is_none());
    }

    #[test]
    fn a_different_cpu_idle_blocks_timings_once_both_runs_record_it() {
        let polling = crate::cpu_idle::IdleRecord {
            requested: "poll".to_owned(),
            held: true,
            note: "held".to_owned(),
        };
        let halting = crate::cpu_idle::IdleRecord {
            requested: "system".to_owned(),
            held: false,
            note: "not requested".to_owned(),
        };
        let (mut base, mut post) = (manifest(), manifest());
        base.options.cpu_idle = polling.clone();
        post.options.cpu_idle = halting;
        let c = check(&base, &post, HostPolicy::Any).expect("comparable");
        let reason = c.timings_blocked.expect("blocked");
        assert!(reason.contains("--cpu-idle"), "{reason}");
        assert!(c.findings.iter().any(|f| f.aspect == "cpu idle"));

        // A baseline from before the record: reported, not blocking.
        let mut post = manifest();
        post.options.cpu_idle = polling;
        let c = check(&manifest(), &post, HostPolicy::SameHost).expect("comparable");
        assert!(c.timings_blocked.is_none(), "{c:?}");
        assert!(c
            .findings
            .iter()
            .any(|f| f.aspect == "cpu idle" && f.baseline == "not recorded"));
    }

    #[test]
    fn a_target_measured_differently_is_unusable() {
        let mut post = manifest();
        post.targets[0].filter = Some("only_this".to_owned());
        let err = check(&manifest(), &post, HostPolicy::Any)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("different plans") && err.contains("only_this"),
            "{err}"
        );
    }
}

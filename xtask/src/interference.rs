//! The interference rules: machine readings in, a verdict per check out (ok, warn or fail,
//! each with a reason). Pure, so the rules are tested with synthetic readings; `probe`
//! takes the real readings.

use serde::{Deserialize, Serialize};

use crate::profiler_choice::ProfilerChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    Mains,
    Battery,
    /// No power supply information (desktops without it, VMs, containers).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReading {
    pub pid: u32,
    pub name: String,
    /// Percent of one core, as `top` shows it.
    pub cpu_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReading {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
}

/// Everything the rules look at. `None` means "could not be read on this machine".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readings {
    pub os: Os,
    pub logical_cores: usize,
    pub load_average: Option<[f64; 3]>,
    pub power: Power,
    /// Other processes, busiest first.
    pub top_processes: Vec<ProcessReading>,
    pub memory: Option<MemoryReading>,
    /// Distinct CPU frequency governors in use (Linux).
    pub governors: Vec<String>,
    /// Whether turbo/boost is enabled (Linux), when exposed.
    pub turbo_enabled: Option<bool>,
    pub perf_event_paranoid: Option<i32>,
    pub perf_max_sample_rate: Option<u64>,
    pub is_root: bool,
    /// macOS: Spotlight indexing processes busy.
    pub spotlight_busy: Option<bool>,
    /// macOS: a Time Machine backup in progress.
    pub backup_running: Option<bool>,
    /// Linux: the idle states of cpu0 (`cpuidle/state*/name`, e.g. `POLL`, `haltpoll`, `C1`);
    /// empty where none are exposed.
    #[serde(default)]
    pub idle_states: Vec<String>,
    /// Linux: the CPU latency in µs the kernel enforces now (`/dev/cpu_dma_latency`, readable by
    /// root); 0 means idle CPUs poll.
    #[serde(default)]
    pub cpu_latency_us: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub readings: Readings,
    pub findings: Vec<Finding>,
    pub worst: Status,
}

/// What the run will do, which changes what counts as interference.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub profiler: ProfilerChoice,
    pub sample_frequency: u32,
}

/// A single process above this share of one core is busy enough to disturb timings.
const BUSY_PROCESS_PCT: f64 = 25.0;

pub fn evaluate(readings: Readings, ctx: Context) -> Report {
    let mut findings = vec![
        power(&readings),
        load(&readings),
        busy_processes(&readings),
        memory(&readings),
    ];
    if readings.os == Os::Linux {
        findings.push(governor(&readings));
        findings.push(turbo(&readings));
        findings.push(cpu_idle(&readings));
    }
    if readings.os == Os::Macos {
        findings.push(background_macos(&readings));
    }
    findings.extend(perf_limits(&readings, ctx));
    let worst = findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok);
    Report {
        readings,
        findings,
        worst,
    }
}

fn finding(check: &str, status: Status, reason: impl Into<String>) -> Finding {
    Finding {
        check: check.to_owned(),
        status,
        reason: reason.into(),
    }
}

fn power(r: &Readings) -> Finding {
    match r.power {
        Power::Battery => finding(
            "power",
            Status::Fail,
            "running on battery: the CPU is throttled and timings drift; plug in the charger",
        ),
        Power::Mains => finding("power", Status::Ok, "on mains power"),
        Power::Unknown => finding(
            "power",
            Status::Ok,
            "no power supply reported (desktop, VM or container)",
        ),
    }
}

fn load(r: &Readings) -> Finding {
    let Some([one, _, _]) = r.load_average else {
        return finding(
            "load",
            Status::Ok,
            "load average not available on this platform",
        );
    };
    let cores = r.logical_cores.max(1) as f64;
    let per_core = one / cores;
    let text = format!(
        "1-minute load {one:.2} on {} logical cores",
        r.logical_cores
    );
    if per_core >= 1.0 {
        finding(
            "load",
            Status::Fail,
            format!("{text}: the machine is saturated; wait for other work to finish"),
        )
    } else if per_core >= 0.5 {
        finding(
            "load",
            Status::Warn,
            format!("{text}: other work competes for the CPU"),
        )
    } else {
        finding("load", Status::Ok, text)
    }
}

fn busy_processes(r: &Readings) -> Finding {
    let busy: Vec<&ProcessReading> = r
        .top_processes
        .iter()
        .filter(|p| p.cpu_pct >= BUSY_PROCESS_PCT)
        .collect();
    let total: f64 = busy.iter().map(|p| p.cpu_pct).sum();
    let list = busy
        .iter()
        .map(|p| format!("{} (pid {}, {:.0}%)", p.name, p.pid, p.cpu_pct))
        .collect::<Vec<_>>()
        .join(", ");
    let capacity = r.logical_cores.max(1) as f64 * 100.0;
    if busy.is_empty() {
        finding(
            "processes",
            Status::Ok,
            format!("no other process above {BUSY_PROCESS_PCT:.0}% of a core"),
        )
    } else if total >= capacity / 2.0 {
        finding(
            "processes",
            Status::Fail,
            format!(
                "busy processes use {total:.0}% of {capacity:.0}% CPU: {list}; close or pause them"
            ),
        )
    } else {
        finding("processes", Status::Warn, format!("busy processes: {list}"))
    }
}

fn memory(r: &Readings) -> Finding {
    let Some(m) = &r.memory else {
        return finding("memory", Status::Ok, "memory figures not available");
    };
    if m.total_bytes == 0 {
        return finding("memory", Status::Ok, "memory figures not available");
    }
    let available = m.available_bytes as f64 * 100.0 / m.total_bytes as f64;
    let swap = if m.swap_total_bytes > 0 {
        m.swap_used_bytes as f64 * 100.0 / m.swap_total_bytes as f64
    } else {
        0.0
    };
    let text = format!(
        "{available:.0}% of {} MiB available, swap {swap:.0}% used",
        m.total_bytes >> 20
    );
    if available < 10.0 {
        finding(
            "memory",
            Status::Fail,
            format!("{text}: memory pressure will page the benchmarks"),
        )
    } else if available < 20.0 || swap > 50.0 {
        finding(
            "memory",
            Status::Warn,
            format!("{text}: memory is getting tight"),
        )
    } else {
        finding("memory", Status::Ok, text)
    }
}

fn governor(r: &Readings) -> Finding {
    if r.governors.is_empty() {
        return finding(
            "cpu governor",
            Status::Ok,
            "no cpufreq governor exposed (VM or fixed frequency)",
        );
    }
    let list = r.governors.join(", ");
    if r.governors.iter().all(|g| g == "performance") {
        finding("cpu governor", Status::Ok, format!("governor {list}"))
    } else {
        finding(
            "cpu governor",
            Status::Warn,
            format!("governor {list} scales the clock with load; for steadier timings run `sudo cpupower frequency-set -g performance`"),
        )
    }
}

fn turbo(r: &Readings) -> Finding {
    match r.turbo_enabled {
        Some(true) => finding(
            "turbo",
            Status::Warn,
            "turbo boost is on: clock speed depends on temperature, so runs vary more",
        ),
        Some(false) => finding("turbo", Status::Ok, "turbo boost is off"),
        None => finding("turbo", Status::Ok, "turbo state not exposed"),
    }
}

/// Informational: whether idle CPUs halt, which the measuring commands change for their run
/// (see `cpu_idle`), so it never fails or warns the check itself.
fn cpu_idle(r: &Readings) -> Finding {
    let halting: Vec<&str> = r
        .idle_states
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "POLL")
        .collect();
    let reason = if r.cpu_latency_us == Some(0) {
        "idle CPUs poll: a 0 µs latency request is in force".to_owned()
    } else if halting.is_empty() {
        "no halting idle states exposed".to_owned()
    } else {
        format!(
            "idle CPUs may halt ({}): waking one adds latency to every round trip, most on a VM; profile runs hold them polling (--cpu-idle poll, as root)",
            halting.join(", ")
        )
    };
    finding("cpu idle", Status::Ok, reason)
}

fn background_macos(r: &Readings) -> Finding {
    let mut busy = Vec::new();
    if r.spotlight_busy == Some(true) {
        busy.push("Spotlight is indexing");
    }
    if r.backup_running == Some(true) {
        busy.push("a Time Machine backup is running");
    }
    if busy.is_empty() {
        finding(
            "background",
            Status::Ok,
            "no Spotlight indexing or backup seen",
        )
    } else {
        finding(
            "background",
            Status::Warn,
            format!(
                "{}; wait for it or pause it (the plan: disable Spotlight and backups)",
                busy.join(" and ")
            ),
        )
    }
}

fn perf_limits(r: &Readings, ctx: Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(paranoid) = r.perf_event_paranoid else {
        return out;
    };
    let fix = "run `sudo sysctl kernel.perf_event_paranoid=1` or `cargo xtask install-tools --set-perf-paranoid 1`";
    let meaning = paranoid_meaning(paranoid);
    let whole = "whole-machine sampling needs root or `sudo sysctl kernel.perf_event_paranoid=0`";
    let status_reason = match ctx.profiler {
        ProfilerChoice::Samply if paranoid > 1 => (
            Status::Fail,
            format!("kernel.perf_event_paranoid={paranoid} ({meaning}); samply refuses to record above 1, even as root: {fix}"),
        ),
        ProfilerChoice::Perf if !r.is_root && paranoid > 2 => (
            Status::Fail,
            format!("kernel.perf_event_paranoid={paranoid} ({meaning}); perf cannot sample as a normal user: {fix}"),
        ),
        ProfilerChoice::Perf if !r.is_root && paranoid == 2 => (
            Status::Warn,
            format!("kernel.perf_event_paranoid={paranoid} ({meaning}); kernel frames will be missing from the profiles, and perf samples the program's threads only, which slows switch-heavy code: {whole}"),
        ),
        ProfilerChoice::Perf if !r.is_root && paranoid == 1 => (
            Status::Warn,
            format!("kernel.perf_event_paranoid={paranoid} ({meaning}); perf samples the program's threads only, which slows switch-heavy code: {whole}"),
        ),
        _ => (
            Status::Ok,
            format!("kernel.perf_event_paranoid={paranoid} ({meaning}){}", if r.is_root { ", running as root" } else { "" }),
        ),
    };
    out.push(finding(
        "perf_event_paranoid",
        status_reason.0,
        status_reason.1,
    ));
    if let Some(rate) = r.perf_max_sample_rate {
        if ctx.profiler != ProfilerChoice::None && u64::from(ctx.sample_frequency) > rate {
            out.push(finding(
                "perf sample rate",
                Status::Warn,
                format!(
                    "kernel.perf_event_max_sample_rate={rate} is below the requested {} Hz; the kernel will throttle sampling",
                    ctx.sample_frequency
                ),
            ));
        } else {
            out.push(finding(
                "perf sample rate",
                Status::Ok,
                format!("kernel.perf_event_max_sample_rate={rate}"),
            ));
        }
    }
    out
}

/// What each `kernel.perf_event_paranoid` level lets an unprivileged user do.
pub fn paranoid_meaning(level: i32) -> &'static str {
    match level {
        i32::MIN..=-1 => "no restrictions",
        0 => "CPU-wide and kernel profiling allowed, no raw tracepoints",
        1 => "user and kernel profiling of own processes",
        2 => "user-space profiling of own processes only",
        _ => "perf disabled for unprivileged users",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Readings {
        Readings {
            os: Os::Linux,
            logical_cores: 4,
            load_average: Some([0.3, 0.2, 0.1]),
            power: Power::Mains,
            top_processes: vec![ProcessReading {
                pid: 10,
                name: "sshd".to_owned(),
                cpu_pct: 1.0,
            }],
            memory: Some(MemoryReading {
                total_bytes: 16 << 30,
                available_bytes: 12 << 30,
                swap_total_bytes: 0,
                swap_used_bytes: 0,
            }),
            governors: vec!["performance".to_owned()],
            turbo_enabled: Some(false),
            perf_event_paranoid: Some(0),
            perf_max_sample_rate: Some(100_000),
            is_root: false,
            spotlight_busy: None,
            backup_running: None,
            idle_states: vec!["POLL".to_owned(), "C1".to_owned()],
            cpu_latency_us: None,
        }
    }

    const PERF: Context = Context {
        profiler: ProfilerChoice::Perf,
        sample_frequency: 999,
    };

    fn status_of(report: &Report, check: &str) -> Status {
        report
            .findings
            .iter()
            .find(|f| f.check == check)
            .map(|f| f.status)
            .unwrap_or_else(|| panic!("no {check} finding in {:?}", report.findings))
    }

    #[test]
    fn a_calm_machine_passes() {
        let report = evaluate(calm(), PERF);
        assert_eq!(report.worst, Status::Ok, "{:?}", report.findings);
    }

    #[test]
    fn battery_fails() {
        let report = evaluate(
            Readings {
                power: Power::Battery,
                ..calm()
            },
            PERF,
        );
        assert_eq!(status_of(&report, "power"), Status::Fail);
        assert_eq!(report.worst, Status::Fail);
    }

    #[test]
    fn load_is_judged_against_cores() {
        let warn = evaluate(
            Readings {
                load_average: Some([2.5, 1.0, 1.0]),
                ..calm()
            },
            PERF,
        );
        assert_eq!(status_of(&warn, "load"), Status::Warn);
        let fail = evaluate(
            Readings {
                load_average: Some([4.5, 1.0, 1.0]),
                ..calm()
            },
            PERF,
        );
        assert_eq!(status_of(&fail, "load"), Status::Fail);
        let two_cores = evaluate(
            Readings {
                logical_cores: 2,
                load_average: Some([2.5, 1.0, 1.0]),
                ..calm()
            },
            PERF,
        );
        assert_eq!(status_of(&two_cores, "load"), Status::Fail);
    }

    #[test]
    fn busy_processes_are_named() {
        let mut r = calm();
        r.top_processes = vec![ProcessReading {
            pid: 42,
            name: "chrome".to_owned(),
            cpu_pct: 80.0,
        }];
        let report = evaluate(r.clone(), PERF);
        let f = report
            .findings
            .iter()
            .find(|f| f.check == "processes")
            .expect("finding");
        assert_eq!(f.status, Status::Warn);
        assert!(f.reason.contains("chrome (pid 42"), "{}", f.reason);
        r.top_processes.push(ProcessReading {
            pid: 43,
            name: "rustc".to_owned(),
            cpu_pct: 150.0,
        });
        assert_eq!(status_of(&evaluate(r, PERF), "processes"), Status::Fail);
    }

    #[test]
    fn memory_pressure() {
        let mut r = calm();
        r.memory = Some(MemoryReading {
            total_bytes: 100,
            available_bytes: 5,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
        });
        assert_eq!(
            status_of(&evaluate(r.clone(), PERF), "memory"),
            Status::Fail
        );
        r.memory = Some(MemoryReading {
            total_bytes: 100,
            available_bytes: 15,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
        });
        assert_eq!(status_of(&evaluate(r, PERF), "memory"), Status::Warn);
    }

    #[test]
    fn governor_and_turbo_warn() {
        let r = Readings {
            governors: vec!["powersave".to_owned()],
            turbo_enabled: Some(true),
            ..calm()
        };
        let report = evaluate(r, PERF);
        assert_eq!(status_of(&report, "cpu governor"), Status::Warn);
        assert_eq!(status_of(&report, "turbo"), Status::Warn);
        assert_eq!(report.worst, Status::Warn);
    }

    #[test]
    fn halting_idle_is_named_without_changing_the_verdict() {
        let halting = Readings {
            idle_states: vec!["POLL".to_owned(), "haltpoll".to_owned()],
            ..calm()
        };
        let report = evaluate(halting.clone(), PERF);
        assert_eq!(report.worst, Status::Ok);
        let reason = &report
            .findings
            .iter()
            .find(|f| f.check == "cpu idle")
            .expect("a cpu idle finding")
            .reason;
        assert!(
            reason.contains("haltpoll") && reason.contains("--cpu-idle poll"),
            "{reason}"
        );
        let polling = Readings {
            cpu_latency_us: Some(0),
            ..halting
        };
        let report = evaluate(polling, PERF);
        assert!(report
            .findings
            .iter()
            .any(|f| f.check == "cpu idle" && f.reason.contains("poll: a 0 µs")));
    }

    #[test]
    fn samply_needs_paranoid_at_most_one_even_as_root() {
        let samply = Context {
            profiler: ProfilerChoice::Samply,
            sample_frequency: 999,
        };
        let r = Readings {
            perf_event_paranoid: Some(2),
            is_root: true,
            ..calm()
        };
        let report = evaluate(r.clone(), samply);
        assert_eq!(status_of(&report, "perf_event_paranoid"), Status::Fail);
        // perf as root is not limited by the setting.
        assert_eq!(
            status_of(&evaluate(r.clone(), PERF), "perf_event_paranoid"),
            Status::Ok
        );
        let user = Readings {
            is_root: false,
            ..r
        };
        assert_eq!(
            status_of(&evaluate(user.clone(), PERF), "perf_event_paranoid"),
            Status::Warn
        );
        // A user at level 1 gets per-thread sampling only, which costs switch-heavy code.
        let per_thread = Readings {
            perf_event_paranoid: Some(1),
            ..user.clone()
        };
        let report = evaluate(per_thread, PERF);
        assert_eq!(status_of(&report, "perf_event_paranoid"), Status::Warn);
        let whole_machine = Readings {
            perf_event_paranoid: Some(0),
            ..user.clone()
        };
        assert_eq!(
            status_of(&evaluate(whole_machine, PERF), "perf_event_paranoid"),
            Status::Ok
        );
        let locked = Readings {
            perf_event_paranoid: Some(3),
            ..user
        };
        assert_eq!(
            status_of(&evaluate(locked, PERF), "perf_event_paranoid"),
            Status::Fail
        );
    }

    #[test]
    fn low_sample_rate_limit_warns() {
        let r = Readings {
            perf_max_sample_rate: Some(500),
            ..calm()
        };
        assert_eq!(
            status_of(&evaluate(r, PERF), "perf sample rate"),
            Status::Warn
        );
    }

    #[test]
    fn macos_background_work_warns() {
        let r = Readings {
            os: Os::Macos,
            governors: Vec::new(),
            turbo_enabled: None,
            perf_event_paranoid: None,
            perf_max_sample_rate: None,
            spotlight_busy: Some(true),
            backup_running: Some(false),
            ..calm()
        };
        let report = evaluate(r, PERF);
        let f = report
            .findings
            .iter()
            .find(|f| f.check == "background")
            .expect("finding");
        assert_eq!(f.status, Status::Warn);
        assert!(f.reason.contains("Spotlight"), "{}", f.reason);
        assert!(report.findings.iter().all(|f| f.check != "cpu governor"));
    }
}

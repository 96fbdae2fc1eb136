//! Takes the readings the interference rules judge, from `sysinfo` and the platform's own
//! sources (`/sys` and `/proc` on Linux, `pmset` and `tmutil` on macOS).

use std::path::Path;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::interference::{MemoryReading, Os, Power, ProcessReading, Readings};

/// How many of the busiest other processes are recorded.
const TOP_PROCESSES: usize = 5;

pub fn readings() -> Readings {
    let os = if cfg!(target_os = "linux") {
        Os::Linux
    } else if cfg!(target_os = "macos") {
        Os::Macos
    } else {
        Os::Other
    };
    let mut sys = System::new();
    sys.refresh_memory();
    let top_processes = busiest_processes(&mut sys);
    let load = System::load_average();
    let spotlight_busy = (os == Os::Macos).then(|| {
        top_processes
            .iter()
            .any(|p| p.name.starts_with("mds") || p.name.starts_with("mdworker"))
    });
    Readings {
        os,
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        // sysinfo reports zeros where there is no load average (Windows).
        load_average: (load.one > 0.0 || load.five > 0.0 || cfg!(unix)).then_some([
            load.one,
            load.five,
            load.fifteen,
        ]),
        power: power(os),
        top_processes,
        memory: Some(MemoryReading {
            total_bytes: sys.total_memory(),
            available_bytes: sys.available_memory(),
            swap_total_bytes: sys.total_swap(),
            swap_used_bytes: sys.used_swap(),
        }),
        governors: governors(),
        turbo_enabled: turbo(),
        perf_event_paranoid: read_trimmed("/proc/sys/kernel/perf_event_paranoid")
            .and_then(|s| s.parse().ok()),
        perf_max_sample_rate: read_trimmed("/proc/sys/kernel/perf_event_max_sample_rate")
            .and_then(|s| s.parse().ok()),
        is_root: is_root(),
        spotlight_busy,
        backup_running: (os == Os::Macos).then(backup_running).flatten(),
        idle_states: idle_states(),
        cpu_latency_us: crate::cpu_idle::in_force(Path::new(crate::cpu_idle::QOS_FILE)).ok(),
    }
}

/// The names of cpu0's idle states, shallowest first.
fn idle_states() -> Vec<String> {
    (0..)
        .map_while(|i| {
            read_trimmed(format!(
                "/sys/devices/system/cpu/cpu0/cpuidle/state{i}/name"
            ))
        })
        .collect()
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// CPU usage needs two samples some time apart; this process and the processes that
/// started it (cargo, the shell) are not interference.
fn busiest_processes(sys: &mut System) -> Vec<ProcessReading> {
    let kind = ProcessRefreshKind::nothing().with_cpu();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(
        sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(std::time::Duration::from_millis(500)),
    );
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let mut ours = Vec::new();
    let mut pid = Some(Pid::from_u32(std::process::id()));
    while let Some(p) = pid {
        ours.push(p);
        pid = sys.process(p).and_then(|proc_| proc_.parent());
    }
    let mut busy: Vec<ProcessReading> = sys
        .processes()
        .iter()
        .filter(|(pid, _)| !ours.contains(pid))
        .map(|(pid, p)| ProcessReading {
            pid: pid.as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cpu_pct: f64::from(p.cpu_usage()),
        })
        .collect();
    busy.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
    busy.truncate(TOP_PROCESSES);
    busy
}

fn power(os: Os) -> Power {
    match os {
        Os::Linux => linux_power(Path::new("/sys/class/power_supply")),
        Os::Macos => {
            let out = std::process::Command::new("pmset")
                .args(["-g", "batt"])
                .output();
            match out {
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains("'Battery Power'") => {
                    Power::Battery
                }
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains("'AC Power'") => Power::Mains,
                _ => Power::Unknown,
            }
        }
        Os::Other => Power::Unknown,
    }
}

/// pyperf's rule: a `Mains` supply that is online means plugged in; batteries without
/// any mains supply online mean battery.
fn linux_power(dir: &Path) -> Power {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Power::Unknown;
    };
    let mut mains_seen = false;
    let mut battery_seen = false;
    for entry in entries.flatten() {
        let path = entry.path();
        match read_trimmed(path.join("type")).as_deref() {
            Some("Mains") => {
                mains_seen = true;
                if read_trimmed(path.join("online")).as_deref() == Some("1") {
                    return Power::Mains;
                }
            }
            Some("Battery") => battery_seen = true,
            _ => {}
        }
    }
    if mains_seen || battery_seen {
        Power::Battery
    } else {
        Power::Unknown
    }
}

fn governors() -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("cpu")
            || !name[3..].chars().all(|c| c.is_ascii_digit())
            || name.len() == 3
        {
            continue;
        }
        if let Some(g) = read_trimmed(entry.path().join("cpufreq/scaling_governor")) {
            if !found.contains(&g) {
                found.push(g);
            }
        }
    }
    found.sort();
    found
}

fn turbo() -> Option<bool> {
    if let Some(no_turbo) = read_trimmed("/sys/devices/system/cpu/intel_pstate/no_turbo") {
        return Some(no_turbo == "0");
    }
    read_trimmed("/sys/devices/system/cpu/cpufreq/boost").map(|b| b == "1")
}

fn backup_running() -> Option<bool> {
    let out = std::process::Command::new("tmutil")
        .arg("status")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).contains("Running = 1"))
}

/// Effective user id 0. Read from `/proc` on Linux so no unsafe `geteuid` call is needed.
pub fn is_root() -> bool {
    if let Some(status) = read_trimmed("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, kind: &str, online: Option<&str>) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("type"), format!("{kind}\n")).expect("write");
        if let Some(o) = online {
            std::fs::write(d.join("online"), format!("{o}\n")).expect("write");
        }
    }

    #[test]
    fn linux_power_supply_rules() {
        let none = tempfile::tempdir().expect("tempdir");
        assert_eq!(linux_power(none.path()), Power::Unknown);
        let laptop = tempfile::tempdir().expect("tempdir");
        supply(laptop.path(), "BAT0", "Battery", None);
        supply(laptop.path(), "AC", "Mains", Some("0"));
        assert_eq!(linux_power(laptop.path()), Power::Battery);
        supply(laptop.path(), "AC", "Mains", Some("1"));
        assert_eq!(linux_power(laptop.path()), Power::Mains);
    }
}

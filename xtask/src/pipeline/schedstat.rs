//! CPU contention of a measured process: runs a command to completion while sampling, for
//! every thread, the CPU time and the run-queue delay (time spent runnable but waiting for a
//! CPU) from Linux's `/proc/<pid>/task/<tid>/schedstat`, and the machine's steal time (what
//! the hypervisor ran elsewhere, from `/proc/stat`), as a time series, and timestamps each
//! line the command writes to stderr (where criterion reports its phases).
//!
//! Why: criterion measures wall-clock time, and on a shared machine the same code measures
//! 2× slower when other work competes for the cores (seen on the 2-core build machine:
//! 36–93 µs for an unchanged bench within minutes). The run-queue delay is the part of that
//! which is pure waiting for a CPU, independent of what the code does while it runs, so a
//! comparison can take it out (see [`RunUsage::contention_factor`]). The time series lets
//! the timing pass take it over exactly the window criterion measured in, because bursts of
//! other work during warm-up or analysis say nothing about the measurement.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How often the threads are sampled: fine enough for a measurement phase of a second.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// What a measured process cost over a stretch of time, summed over all of its threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    pub wall_secs: f64,
    /// Time on a CPU.
    pub cpu_secs: f64,
    /// Time runnable but waiting for a CPU (the kernel's `run_delay`).
    pub run_delay_secs: f64,
    /// Threads seen during the run.
    pub threads: u32,
    /// Whether this covers only criterion's measurement of the benchmark (from its progress
    /// lines) rather than the whole run.
    #[serde(default)]
    pub measurement_phase: bool,
    /// The share of the machine's CPU time its hypervisor gave to others meanwhile (steal
    /// time; 0 on bare metal and in older records).
    #[serde(default)]
    pub steal_share: f64,
}

impl RunUsage {
    /// The share of the wall time that was not spent waiting for a CPU, in (0, 1]:
    /// `(1 − delay / max(wall, cpu + delay)) · (1 − steal)`. Multiplying a wall-clock
    /// estimate by it removes the waiting. For a single-threaded process the delay lies on
    /// its critical path, so the first factor is `(wall − delay) / wall`; for several threads
    /// runnable at once, `cpu + delay > wall` and the delay is spread across them, giving
    /// `cpu / (cpu + delay)`. Time stolen by the hypervisor while a thread runs counts as
    /// neither CPU time nor delay in the guest, only as wall time; the machine's steal share
    /// is the best estimate of how much of it the process lost.
    pub fn contention_factor(&self) -> f64 {
        let denominator = self.wall_secs.max(self.cpu_secs + self.run_delay_secs);
        if denominator.is_nan() || denominator <= 0.0 || !self.run_delay_secs.is_finite() {
            return 1.0;
        }
        let queued = (1.0 - self.run_delay_secs / denominator).clamp(0.01, 1.0);
        let stolen = if self.steal_share.is_finite() {
            self.steal_share.clamp(0.0, 0.99)
        } else {
            0.0
        };
        (queued * (1.0 - stolen)).clamp(0.01, 1.0)
    }
}

/// One sample: seconds since the start, and the totals over all threads seen so far.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    t: f64,
    cpu_ns: u64,
    delay_ns: u64,
    threads: u32,
    /// The machine's steal and total CPU time so far, in the kernel's ticks.
    machine: Option<MachineTicks>,
}

/// `/proc/stat`'s first line summed: the CPU time stolen by the hypervisor and all of it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MachineTicks {
    steal: u64,
    total: u64,
}

impl MachineTicks {
    fn read() -> Option<MachineTicks> {
        parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The steal share between two readings, when the kernel counted any time between them.
    fn steal_share(from: Option<Self>, to: Option<Self>) -> f64 {
        match (from, to) {
            (Some(a), Some(b)) if b.total > a.total => {
                b.steal.saturating_sub(a.steal) as f64 / (b.total - a.total) as f64
            }
            _ => 0.0,
        }
    }
}

/// The CPU usage of a process over its run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    points: Vec<Point>,
    /// The machine's ticks when the command was started.
    machine_at_start: Option<MachineTicks>,
}

impl Series {
    /// Usage between `from` and `to` (seconds since the start), from the last sample at or
    /// before `from` to the first at or after `to`.
    pub fn between(&self, from: f64, to: f64) -> Option<RunUsage> {
        let first = self.points.iter().rev().find(|p| p.t <= from)?;
        let last = self.points.iter().find(|p| p.t >= to)?;
        let wall = last.t - first.t;
        (wall > 0.0).then(|| RunUsage {
            wall_secs: wall,
            cpu_secs: last.cpu_ns.saturating_sub(first.cpu_ns) as f64 / 1e9,
            run_delay_secs: last.delay_ns.saturating_sub(first.delay_ns) as f64 / 1e9,
            threads: last.threads,
            measurement_phase: true,
            steal_share: MachineTicks::steal_share(first.machine, last.machine),
        })
    }

    /// Usage over the whole run of `wall_secs`.
    pub fn total(&self, wall_secs: f64) -> Option<RunUsage> {
        let last = self.points.last()?;
        Some(RunUsage {
            wall_secs,
            cpu_secs: last.cpu_ns as f64 / 1e9,
            run_delay_secs: last.delay_ns as f64 / 1e9,
            threads: last.threads,
            measurement_phase: false,
            steal_share: MachineTicks::steal_share(self.machine_at_start, last.machine),
        })
    }
}

/// A finished run: its output, its CPU usage over time (empty where `/proc/<pid>/task`
/// cannot be read: macOS, restricted containers) and its stderr lines with the time each
/// arrived, in seconds since the start.
pub struct Measured {
    pub output: Output,
    pub wall_secs: f64,
    pub series: Series,
    pub stderr_lines: Vec<(f64, String)>,
}

/// Runs `command` to completion, capturing its output, and measures its threads.
///
/// xshell cannot hand out the child's pid while it runs or stream its stderr, hence
/// `std::process` here; the command is still built with xshell's `cmd!` and converted.
pub fn run(mut command: Command) -> Result<Measured> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let pid = child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut threads: HashMap<String, (u64, u64)> = HashMap::new();
            let mut points = Vec::new();
            let machine_at_start = MachineTicks::read();
            loop {
                if sample(pid, &mut threads) {
                    points.push(Point {
                        t: started.elapsed().as_secs_f64(),
                        cpu_ns: threads.values().map(|(cpu, _)| cpu).sum(),
                        delay_ns: threads.values().map(|(_, delay)| delay).sum(),
                        threads: threads.len() as u32,
                        machine: MachineTicks::read(),
                    });
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            Series {
                points,
                machine_at_start,
            }
        })
    };
    let stdout = child.stdout.take().context("capturing stdout")?;
    let stderr = child.stderr.take().context("capturing stderr")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = BufReader::new(stdout).read_to_end(&mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            lines.push((
                started.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&line).trim_end().to_owned(),
            ));
            bytes.extend_from_slice(&line);
            line.clear();
        }
        (bytes, lines)
    });
    let status: std::io::Result<ExitStatus> = child.wait();
    let wall_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let series = sampler.join().unwrap_or_default();
    let stdout = stdout_reader.join().unwrap_or_default();
    let (stderr, stderr_lines) = stderr_reader.join().unwrap_or_default();
    let status = status.with_context(|| format!("waiting for {:?}", command.get_program()))?;
    Ok(Measured {
        output: Output {
            status,
            stdout,
            stderr,
        },
        wall_secs,
        series,
        stderr_lines,
    })
}

/// Reads every thread's `schedstat` once; keeps the largest values seen per thread (a
/// thread that exited keeps its last reading). Returns whether anything could be read.
fn sample(pid: u32, threads: &mut HashMap<String, (u64, u64)>) -> bool {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    let mut any = false;
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let Some((cpu, delay)) = parse(&text) else {
            continue;
        };
        any = true;
        let slot = threads
            .entry(entry.file_name().to_string_lossy().into_owned())
            .or_insert((0, 0));
        slot.0 = slot.0.max(cpu);
        slot.1 = slot.1.max(delay);
    }
    any
}

/// `/proc/stat`'s `cpu` line: user nice system idle iowait irq softirq steal guest
/// guest_nice, in ticks; guest time is already inside user and nice.
fn parse_stat(text: &str) -> Option<MachineTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(MachineTicks {
        steal: *ticks.get(7)?,
        total: ticks.iter().take(8).sum(),
    })
}

/// `schedstat` is "cpu_ns run_delay_ns timeslices".
fn parse(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace();
    let cpu = fields.next()?.parse().ok()?;
    let delay = fields.next()?.parse().ok()?;
    Some((cpu, delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(wall: f64, cpu: f64, delay: f64) -> RunUsage {
        RunUsage {
            wall_secs: wall,
            cpu_secs: cpu,
            run_delay_secs: delay,
            threads: 1,
            measurement_phase: false,
            steal_share: 0.0,
        }
    }

    #[test]
    fn factor_removes_waiting_for_a_cpu() {
        // Single thread, always runnable: half the time waiting → half the wall time is real.
        assert!((usage(2.0, 1.0, 1.0).contention_factor() - 0.5).abs() < 1e-9);
        // Single thread that also sleeps (I/O): only the delay is removed.
        assert!((usage(4.0, 1.0, 1.0).contention_factor() - 0.75).abs() < 1e-9);
        // Two threads busy at once: the delay is shared between them.
        assert!((usage(1.0, 1.5, 0.5).contention_factor() - 0.75).abs() < 1e-9);
        // No contention.
        assert_eq!(usage(1.0, 1.0, 0.0).contention_factor(), 1.0);
        // Nonsense readings do not distort anything.
        assert_eq!(usage(0.0, 0.0, 0.0).contention_factor(), 1.0);
    }

    #[test]
    fn time_the_hypervisor_stole_is_taken_out_too() {
        // Single thread, always running as the guest sees it, while the host took a fifth of
        // the machine: its wall time holds that fifth, its CPU time does not.
        let stolen = RunUsage {
            steal_share: 0.2,
            ..usage(1.0, 0.8, 0.0)
        };
        assert!((stolen.contention_factor() - 0.8).abs() < 1e-9);
        // Both kinds of lost time at once.
        let both = RunUsage {
            steal_share: 0.2,
            ..usage(2.0, 1.0, 1.0)
        };
        assert!((both.contention_factor() - 0.4).abs() < 1e-9);
        let nonsense = RunUsage {
            steal_share: f64::NAN,
            ..usage(1.0, 1.0, 0.0)
        };
        assert_eq!(nonsense.contention_factor(), 1.0);
    }

    #[test]
    fn the_steal_share_comes_from_the_machine_line_of_proc_stat() {
        let at = |steal, rest| {
            parse_stat(&format!(
                "cpu  {rest} 0 0 0 0 0 0 {steal} 7 7\ncpu0 1 1 1 1 1 1 1 1 0 0\n"
            ))
        };
        let (a, b) = (at(10, 100), at(30, 180));
        assert_eq!(
            a,
            Some(MachineTicks {
                steal: 10,
                total: 110
            })
        );
        assert!((MachineTicks::steal_share(a, b) - 0.2).abs() < 1e-9);
        assert_eq!(MachineTicks::steal_share(b, a), 0.0, "no time counted");
        assert_eq!(MachineTicks::steal_share(None, b), 0.0);
        assert_eq!(parse_stat("intr 1 2\n"), None);
        #[cfg(target_os = "linux")]
        assert!(MachineTicks::read().is_some_and(|t| t.total > 0));
    }

    #[test]
    fn a_window_of_the_series_takes_only_its_own_waiting() {
        let point = |t: f64, cpu: f64, delay: f64| Point {
            t,
            cpu_ns: (cpu * 1e9) as u64,
            delay_ns: (delay * 1e9) as u64,
            threads: 1,
            // The host takes 10 % of the machine in the second second only.
            machine: Some(MachineTicks {
                steal: if t < 2.0 { 0 } else { 20 },
                total: (t * 200.0) as u64,
            }),
        };
        // Quiet until 1 s, then a burst of other work halves the CPU it gets.
        let series = Series {
            points: vec![
                point(0.0, 0.0, 0.0),
                point(1.0, 1.0, 0.0),
                point(2.0, 1.5, 0.5),
                point(3.0, 2.0, 1.0),
            ],
            machine_at_start: None,
        };
        let quiet = series.between(0.0, 1.0).expect("window");
        assert_eq!(quiet.contention_factor(), 1.0);
        assert!(quiet.measurement_phase);
        let busy = series.between(1.2, 2.8).expect("window");
        assert!((busy.wall_secs - 2.0).abs() < 1e-9, "{busy:?}");
        // From the samples at 1 s and 3 s: 20 ticks stolen of 400.
        assert!((busy.steal_share - 0.05).abs() < 1e-9, "{busy:?}");
        assert!(
            (busy.contention_factor() - 0.5 * 0.95).abs() < 1e-9,
            "{busy:?}"
        );
        let total = series.total(3.0).expect("total");
        assert!(
            (total.contention_factor() - 2.0 / 3.0).abs() < 1e-9,
            "{total:?}"
        );
        assert!(series.between(5.0, 6.0).is_none(), "after the last sample");
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse("637141 4369148 2\n"), Some((637141, 4369148)));
        assert_eq!(parse("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn measures_a_busy_child_and_times_its_stderr() {
        // A shell loop that burns CPU between two lines on stderr.
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo start >&2; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo end >&2; echo done",
        ]);
        let m = run(command).expect("runs");
        assert!(m.output.status.success());
        assert_eq!(String::from_utf8_lossy(&m.output.stdout).trim(), "done");
        assert_eq!(String::from_utf8_lossy(&m.output.stderr), "start\nend\n");
        let lines: Vec<&str> = m.stderr_lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["start", "end"]);
        let (start, end) = (m.stderr_lines[0].0, m.stderr_lines[1].0);
        assert!(end > start);
        let usage = m
            .series
            .total(m.wall_secs)
            .expect("schedstat is readable on Linux");
        assert!(usage.cpu_secs > 0.0, "{usage:?}");
        let f = usage.contention_factor();
        assert!(f > 0.0 && f <= 1.0, "{f}");
    }
}

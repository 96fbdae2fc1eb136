//! CPU contention of a measured process: runs a command to completion while sampling, for
//! every thread, the CPU time and the run-queue delay (time spent runnable but waiting for a
//! CPU) from Linux's `/proc/<pid>/task/<tid>/schedstat`.
//!
//! Why: criterion measures wall-clock time, and on a shared machine the same code measures
//! 2× slower when other work competes for the cores (seen on the 2-core build machine:
//! 36–93 µs for an unchanged bench within minutes). The run-queue delay is the part of that
//! which is pure waiting for a CPU, independent of what the code does while it runs, so a
//! comparison can take it out (see [`RunUsage::contention_factor`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How often the threads are sampled. A thread's counters only grow, so the last sample
/// before exit is what counts; 20 ms misses at most the last 20 ms of a run of seconds.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// What one run of a measured executable cost, summed over all of its threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    pub wall_secs: f64,
    /// Time on a CPU.
    pub cpu_secs: f64,
    /// Time runnable but waiting for a CPU (the kernel's `run_delay`).
    pub run_delay_secs: f64,
    /// Threads seen during the run.
    pub threads: u32,
}

impl RunUsage {
    /// The share of the run's wall time that was not spent waiting for a CPU, in (0, 1]:
    /// `1 − delay / max(wall, cpu + delay)`. Multiplying a wall-clock estimate by it removes
    /// the waiting. For a single-threaded process the delay lies on its critical path, so
    /// this is `(wall − delay) / wall`; for several threads runnable at once,
    /// `cpu + delay > wall` and the delay is spread across them, giving `cpu / (cpu + delay)`.
    pub fn contention_factor(&self) -> f64 {
        let denominator = self.wall_secs.max(self.cpu_secs + self.run_delay_secs);
        if denominator.is_nan() || denominator <= 0.0 || !self.run_delay_secs.is_finite() {
            return 1.0;
        }
        (1.0 - self.run_delay_secs / denominator).clamp(0.01, 1.0)
    }
}

/// Runs `command` to completion, capturing its output, and measures its threads. The usage
/// is `None` where `/proc/<pid>/task` cannot be read (macOS, restricted containers): the run
/// itself is unaffected.
///
/// xshell cannot hand out the child's pid while it runs, hence `std::process` here; the
/// command is still built with xshell's `cmd!` and converted.
pub fn run(mut command: Command) -> Result<(Output, Option<RunUsage>)> {
    let started = Instant::now();
    let child = command
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
            let mut readable = false;
            loop {
                readable |= sample(pid, &mut threads);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            readable.then_some(threads)
        })
    };
    let output = child.wait_with_output();
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    // The final sample races with the reaped pid; a sample of nothing keeps what was seen.
    let threads = sampler.join().ok().flatten();
    let output = output.with_context(|| format!("waiting for {:?}", command.get_program()))?;
    let usage = threads.filter(|t| !t.is_empty()).map(|t| RunUsage {
        wall_secs: wall.as_secs_f64(),
        cpu_secs: t.values().map(|(cpu, _)| *cpu).sum::<u64>() as f64 / 1e9,
        run_delay_secs: t.values().map(|(_, delay)| *delay).sum::<u64>() as f64 / 1e9,
        threads: t.len() as u32,
    });
    Ok((output, usage))
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
    fn parses_schedstat() {
        assert_eq!(parse("637141 4369148 2\n"), Some((637141, 4369148)));
        assert_eq!(parse("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn measures_a_busy_child() {
        // A shell loop that burns CPU for a moment: its CPU time must be seen.
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done",
        ]);
        let (output, usage) = run(command).expect("runs");
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "done");
        let usage = usage.expect("schedstat is readable on Linux");
        assert!(usage.cpu_secs > 0.0, "{usage:?}");
        assert!(usage.wall_secs >= usage.cpu_secs * 0.5, "{usage:?}");
        let f = usage.contention_factor();
        assert!(f > 0.0 && f <= 1.0, "{f}");
    }
}

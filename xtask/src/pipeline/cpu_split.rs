//! Each benchmark's wall time in a timing run split into the program's CPU, the PostgreSQL
//! server's CPU and waiting, per iteration. The benches write one line per sample to stderr
//! when [`SPLIT_ENV`] is set (`tasker_test_support::bench_cpu`); criterion writes its
//! progress to the same stream, so the lines between a benchmark's `Collecting` and the next
//! progress line are exactly its measurement samples, whose iterations criterion's
//! `sample.json` holds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::criterion::{self, BenchResult};

/// The variable the benches read (`tasker_test_support::bench_cpu::SPLIT_ENV`).
pub const SPLIT_ENV: &str = "TASKER_BENCH_CPU_SPLIT";
/// The first word of a sample's line (`tasker_test_support::bench_cpu::SAMPLE_MARKER`).
const SAMPLE_MARKER: &str = "tasker-bench-sample";

/// Where one iteration's wall time went, in microseconds, over criterion's measurement
/// samples of one timing run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSplit {
    /// Iterations in the measurement samples.
    pub iterations: u64,
    pub wall_us: f64,
    /// The bench process's CPU, all its threads.
    pub program_cpu_us: f64,
    /// The server's processes on this machine; absent when they cannot be read here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us: Option<f64>,
    /// Wall time neither was on a CPU (never below zero: on two cores they overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_us: Option<f64>,
}

/// One sample's line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    wall_ns: u64,
    program_ns: u64,
    server_ns: Option<u64>,
}

impl Sample {
    /// `wall_ns=… program_cpu_ns=… server_cpu_ns=…|-`, in any order.
    fn parse(fields: &str) -> Option<Sample> {
        let mut sample = Sample {
            wall_ns: 0,
            program_ns: 0,
            server_ns: None,
        };
        let mut seen = 0;
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "wall_ns" => sample.wall_ns = value.parse().ok()?,
                "program_cpu_ns" => sample.program_ns = value.parse().ok()?,
                "server_cpu_ns" => sample.server_ns = value.parse().ok(),
                _ => continue,
            }
            seen += 1;
        }
        (seen == 3).then_some(sample)
    }
}

/// The samples of one benchmark's measurement, summed.
#[derive(Debug, Default)]
struct Totals {
    samples: usize,
    wall_ns: u64,
    program_ns: u64,
    /// `None` as soon as one sample could not read the server.
    server_ns: Option<u64>,
}

impl Totals {
    fn add(&mut self, s: Sample) {
        self.server_ns = match (self.samples, self.server_ns, s.server_ns) {
            (0, _, server) => server,
            (_, Some(total), Some(more)) => Some(total + more),
            _ => None,
        };
        self.samples += 1;
        self.wall_ns += s.wall_ns;
        self.program_ns += s.program_ns;
    }

    fn per_iteration(&self, iterations: u64) -> CpuSplit {
        let us = |ns: u64| ns as f64 / iterations.max(1) as f64 / 1e3;
        let (wall_us, program_cpu_us) = (us(self.wall_ns), us(self.program_ns));
        let server_cpu_us = self.server_ns.map(us);
        CpuSplit {
            iterations,
            wall_us,
            program_cpu_us,
            server_cpu_us,
            waiting_us: server_cpu_us.map(|s| (wall_us - program_cpu_us - s).max(0.0)),
        }
    }
}

/// The split of every benchmark in `results` whose measurement samples each wrote a line to
/// `stderr`; `home` is the run's criterion home, holding each benchmark's `sample.json`.
/// A benchmark whose lines and samples do not match one to one is left out.
pub fn read(stderr: &str, home: &Path, results: &[BenchResult]) -> BTreeMap<String, CpuSplit> {
    let measured = measured_samples(stderr);
    results
        .iter()
        .filter_map(|r| {
            let totals = measured.get(&r.id)?;
            let iterations = sample_iterations(&home.join(&r.directory))?;
            (iterations.len() == totals.samples)
                .then(|| (r.id.clone(), totals.per_iteration(iterations.iter().sum())))
        })
        .collect()
}

/// `stderr` without the sample lines, for the run's log.
pub fn without_samples(stderr: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(stderr);
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with(SAMPLE_MARKER) {
            kept.push_str(line);
        }
    }
    kept.into_bytes()
}

/// Each benchmark's sample lines between its `Collecting` progress line and the next one.
fn measured_samples(stderr: &str) -> BTreeMap<String, Totals> {
    let mut current: Option<&str> = None;
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for line in stderr.lines() {
        if let Some(fields) = line.strip_prefix(SAMPLE_MARKER) {
            if let (Some(id), Some(sample)) = (current, Sample::parse(fields)) {
                totals.entry(id.to_owned()).or_default().add(sample);
            }
        } else if let Some((id, phase)) = criterion::progress_line(line) {
            current = phase.starts_with("Collecting").then_some(id);
        }
    }
    totals
}

/// The iterations of each measurement sample (`new/sample.json` in the benchmark's
/// directory).
fn sample_iterations(bench_dir: &Path) -> Option<Vec<u64>> {
    #[derive(Deserialize)]
    struct SampleFile {
        iters: Vec<f64>,
    }
    let text = std::fs::read_to_string(bench_dir.join("new").join("sample.json")).ok()?;
    let file: SampleFile = serde_json::from_str(&text).ok()?;
    Some(file.iters.into_iter().map(|i| i as u64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> BenchResult {
        BenchResult::from_samples(id, &[1.0])
    }

    fn write_samples(home: &Path, id: &str, iters: &[u64]) {
        let dir = home.join(id).join("new");
        std::fs::create_dir_all(&dir).expect("dir");
        let iters: Vec<f64> = iters.iter().map(|&i| i as f64).collect();
        std::fs::write(
            dir.join("sample.json"),
            serde_json::json!({ "sampling_mode": "Flat", "iters": iters, "times": iters })
                .to_string(),
        )
        .expect("sample.json");
    }

    /// Warm-up samples and those of other benchmarks are not counted; the measurement's are,
    /// per iteration, with waiting what neither CPU explains.
    #[test]
    fn only_a_benchmarks_measurement_samples_count() {
        let home = tempfile::tempdir().expect("home");
        write_samples(home.path(), "g/a", &[2, 2]);
        write_samples(home.path(), "g/b", &[1, 1, 1]);
        let stderr = "\
Benchmarking g/a
Benchmarking g/a: Warming up for 500.00 ms
tasker-bench-sample wall_ns=999000 program_cpu_ns=999000 server_cpu_ns=999000
Benchmarking g/a: Collecting 2 samples in estimated 1.0 s (4 iterations)
tasker-bench-sample wall_ns=2000000 program_cpu_ns=400000 server_cpu_ns=600000
tasker-bench-sample wall_ns=2000000 program_cpu_ns=400000 server_cpu_ns=600000
Benchmarking g/a: Analyzing
Benchmarking g/b
Benchmarking g/b: Collecting 3 samples in estimated 1.0 s (3 iterations)
tasker-bench-sample wall_ns=1000 program_cpu_ns=1000 server_cpu_ns=-
tasker-bench-sample wall_ns=1000 program_cpu_ns=1000 server_cpu_ns=-
Benchmarking g/b: Analyzing
";
        let split = read(stderr, home.path(), &[result("g/a"), result("g/b")]);
        let a = &split["g/a"];
        assert_eq!(a.iterations, 4);
        assert_eq!(a.wall_us, 1000.0);
        assert_eq!(a.program_cpu_us, 200.0);
        assert_eq!(a.server_cpu_us, Some(300.0));
        assert_eq!(a.waiting_us, Some(500.0));
        assert!(
            !split.contains_key("g/b"),
            "two lines for three samples is no measurement: {split:?}"
        );
        let log = without_samples(stderr.as_bytes());
        let log = String::from_utf8(log).expect("utf-8");
        assert!(!log.contains(SAMPLE_MARKER), "{log}");
        assert!(log.contains("Benchmarking g/b: Analyzing"), "{log}");
    }

    #[test]
    fn a_remote_server_leaves_the_server_share_out() {
        let mut totals = Totals::default();
        totals.add(Sample::parse(" wall_ns=10 program_cpu_ns=5 server_cpu_ns=-").expect("line"));
        let split = totals.per_iteration(1);
        assert_eq!(split.server_cpu_us, None);
        assert_eq!(split.waiting_us, None);
    }
}

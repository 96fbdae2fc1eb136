//! Per-iteration latency percentiles, which criterion does not report (it reports the
//! distribution of per-sample means), and the output directory they are written to.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};

/// Criterion's output directory, found the way criterion finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the target directory `cargo metadata` reports (when run
/// by cargo), else `target/criterion`.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output();
        if let Ok(output) = output {
            if let Ok(meta) = serde_json::from_slice::<Value>(&output.stdout) {
                if let Some(dir) = meta.get("target_directory").and_then(Value::as_str) {
                    return PathBuf::from(dir).join("criterion");
                }
            }
        }
    }
    PathBuf::from("target").join("criterion")
}

/// Latency distribution of one benchmark, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn from_samples(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let idx = ((p / 100.0) * us.len() as f64).ceil() as usize;
            us[idx.clamp(1, us.len()) - 1]
        };
        Some(Self {
            samples: us.len(),
            min_us: us[0],
            p50_us: rank(50.0),
            p95_us: rank(95.0),
            p99_us: rank(99.0),
            max_us: us[us.len() - 1],
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        })
    }
}

/// Per-iteration latencies recorded by benchmarks that report percentiles (criterion only
/// reports the distribution of per-sample means).
#[derive(Debug, Default)]
pub struct LatencyLog {
    entries: Mutex<Vec<LogEntry>>,
}

#[derive(Debug)]
struct LogEntry {
    id: String,
    samples: Vec<Duration>,
    last_iters: u64,
}

impl LatencyLog {
    pub const fn new() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }

    fn with_entry<R>(&self, id: &str, f: impl FnOnce(&mut LogEntry) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let index = match entries.iter().position(|e| e.id == id) {
            Some(i) => i,
            None => {
                entries.push(LogEntry {
                    id: id.to_string(),
                    samples: Vec::new(),
                    last_iters: 0,
                });
                entries.len() - 1
            }
        };
        f(&mut entries[index])
    }

    /// Call at the start of each `iter_custom` batch. Criterion's warm-up doubles the
    /// iteration count until its time is up; its measurement then starts again from a smaller
    /// count. The first drop in `iters` therefore marks the end of the warm-up, whose
    /// iterations are discarded so the percentiles describe the measured ones.
    pub fn batch(&self, id: &str, iters: u64) {
        self.with_entry(id, |e| {
            if iters < e.last_iters {
                e.samples.clear();
            }
            e.last_iters = iters;
        });
    }

    /// Records one iteration of benchmark `id`.
    pub fn record(&self, id: &str, latency: Duration) {
        self.with_entry(id, |e| e.samples.push(latency));
    }

    /// Samples recorded for `id` so far.
    pub fn samples(&self, id: &str) -> Vec<Duration> {
        self.with_entry(id, |e| e.samples.clone())
    }

    /// Writes `<criterion home>/<group>/percentiles.json` and prints one line per benchmark.
    /// Nothing is written when nothing was recorded (a filtered or `--list` run).
    pub fn write(&self, group: &str, context: Value) -> Option<PathBuf> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut results = serde_json::Map::new();
        for LogEntry { id, samples, .. } in entries.iter() {
            if let Some(p) = Percentiles::from_samples(samples) {
                println!(
                    "{group}/{id}: n={} p50={:.1}us p95={:.1}us p99={:.1}us max={:.1}us",
                    p.samples, p.p50_us, p.p95_us, p.p99_us, p.max_us
                );
                results.insert(id.clone(), serde_json::to_value(&p).unwrap_or(Value::Null));
            }
        }
        if results.is_empty() {
            return None;
        }
        let dir = criterion_home().join(group);
        let path = dir.join("percentiles.json");
        let doc = json!({
            "group": group,
            "generated_at": Utc::now().to_rfc3339(),
            "unit": "microseconds",
            "context": context,
            "benchmarks": results,
        });
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default())
        });
        match written {
            Ok(()) => {
                println!("{group}: percentiles written to {}", path.display());
                Some(path)
            }
            Err(e) => {
                eprintln!("{group}: could not write {}: {e}", path.display());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let p = Percentiles::from_samples(&samples).unwrap();
        assert_eq!((p.p50_us, p.p95_us, p.p99_us), (50.0, 95.0, 99.0));
    }
}

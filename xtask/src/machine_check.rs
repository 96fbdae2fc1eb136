//! The interference check as a run takes it: this machine's readings judged by the rules of
//! [`crate::interference`], taken again while only the load is too high, and rendered.

use std::time::{Duration, Instant};

use crate::interference::{self, Context, Report, Status};
use crate::probe;
use crate::profiler_choice::ProfilerChoice;

pub fn check(profiler: ProfilerChoice, sample_frequency: u32) -> Report {
    interference::evaluate(
        probe::readings(),
        Context {
            profiler,
            sample_frequency,
        },
    )
}

/// How often a load-only failure is read again while waiting for it to settle.
const SETTLE_POLL: Duration = Duration::from_secs(10);

/// The check, taken again every [`SETTLE_POLL`] while its only failure is the load average,
/// for at most `settle`. The 1-minute average trails the work that made it by about a minute:
/// on a fresh clone `cargo xtask` compiles the xtask first and the check then reads a
/// saturated machine that is in fact idle. Other failures, and a load that stays up, end the
/// wait; the report returned is the last one taken.
pub fn check_settled(profiler: ProfilerChoice, sample_frequency: u32, settle: Duration) -> Report {
    let started = Instant::now();
    loop {
        let report = check(profiler, sample_frequency);
        if !fails_on_load_alone(&report) || started.elapsed() + SETTLE_POLL > settle {
            return report;
        }
        let one_minute = report.readings.load_average.map_or(f64::NAN, |l| l[0]);
        eprintln!(
            "interference check: 1-minute load {one_minute:.2} on {} logical cores; waiting for it to settle ({} of at most {} s)",
            report.readings.logical_cores,
            started.elapsed().as_secs(),
            settle.as_secs()
        );
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Whether the report fails, and only because of the load average.
fn fails_on_load_alone(report: &Report) -> bool {
    let mut failing = report
        .findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .peekable();
    failing.peek().is_some() && failing.all(|f| f.check == "load")
}

pub fn render(report: &Report) -> String {
    let width = report
        .findings
        .iter()
        .map(|f| f.check.len())
        .max()
        .unwrap_or(5);
    let mut out = String::from("interference check:\n");
    for f in &report.findings {
        out.push_str(&format!(
            "  {:<4}  {:<width$}  {}\n",
            f.status.name(),
            f.check,
            f.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interference::Finding;

    fn report_with(findings: &[(&str, Status)]) -> Report {
        let mut report = check(ProfilerChoice::None, crate::flags::DEFAULT_SAMPLE_FREQUENCY);
        report.findings = findings
            .iter()
            .map(|(check, status)| Finding {
                check: (*check).to_owned(),
                status: *status,
                reason: String::new(),
            })
            .collect();
        report
    }

    #[test]
    fn only_a_load_failure_is_waited_out() {
        use Status::*;
        assert!(fails_on_load_alone(&report_with(&[
            ("load", Fail),
            ("power", Ok),
            ("memory", Warn)
        ])));
        assert!(!fails_on_load_alone(&report_with(&[
            ("load", Fail),
            ("perf", Fail)
        ])));
        assert!(!fails_on_load_alone(&report_with(&[("perf", Fail)])));
        assert!(!fails_on_load_alone(&report_with(&[
            ("load", Warn),
            ("power", Ok)
        ])));
    }
}

//! `cargo xtask check-env`: the interference check on its own, printed as a report.

use anyhow::{bail, Result};

use crate::flags::{CheckEnvArgs, ProfilerChoice};
use crate::interference::{self, Context, Report, Status};
use crate::probe;

pub fn run(args: &CheckEnvArgs) -> Result<()> {
    let report = check(
        args.profiler
            .unwrap_or_else(ProfilerChoice::platform_default),
        crate::flags::DEFAULT_SAMPLE_FREQUENCY,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if report.worst == Status::Fail {
        bail!("the interference check failed; fix the findings marked `fail` above");
    }
    Ok(())
}

pub fn check(profiler: ProfilerChoice, sample_frequency: u32) -> Report {
    interference::evaluate(
        probe::readings(),
        Context {
            profiler,
            sample_frequency,
        },
    )
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

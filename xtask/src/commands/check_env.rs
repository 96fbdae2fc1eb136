//! `cargo xtask check-env`: the interference check on its own, printed as a report.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::flags::CheckEnvArgs;
use crate::interference::Status;
use crate::machine_check::{check, render};
use crate::profiler_choice::ProfilerChoice;

pub fn run(args: &CheckEnvArgs) -> ExitCode {
    super::finish(check_env(args))
}

fn check_env(args: &CheckEnvArgs) -> Result<()> {
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

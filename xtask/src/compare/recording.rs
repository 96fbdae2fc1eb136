//! How a run's profiles were recorded, read from the profiler command lines its manifest
//! keeps: which profiler, how it unwound call stacks, and whether it sampled the whole
//! machine or the program's threads only. Two runs that differ in unwinding or scope put the
//! same time under different functions (profiling-workflow.md, "samply"), so their profiles
//! are not judged function by function; the profiler alone does not stop the judging.

use std::fmt;
use std::path::Path;

use crate::pipeline::manifest::Manifest;
use crate::pipeline::profiler::{perf_record_args, PerfSetup};
use crate::profiler_choice::ProfilerChoice;

/// How call stacks were unwound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwinding {
    FramePointers,
    UnwindTables,
}

/// How one run's profiles were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub profiler: String,
    pub unwinding: Unwinding,
    pub whole_machine: bool,
}

impl Recording {
    /// From the first profiled target's command line; `None` when the run has no profile.
    pub fn of(manifest: &Manifest) -> Option<Recording> {
        let command = manifest
            .targets
            .iter()
            .find_map(|t| t.profile.as_ref())
            .map(|p| &p.command)?;
        Self::from_command(command)
    }

    /// How a run about to start will record, from the command line it will give perf.
    pub fn planned(profiler: ProfilerChoice, perf: &PerfSetup) -> Option<Recording> {
        let command: Vec<String> = match profiler {
            ProfilerChoice::Perf => std::iter::once("perf".to_owned())
                .chain(perf_record_args(perf, 1, Path::new("perf.data")))
                .collect(),
            ProfilerChoice::Samply => vec!["samply".to_owned()],
            ProfilerChoice::None => return None,
        };
        Self::from_command(&command)
    }

    fn from_command(command: &[String]) -> Option<Recording> {
        let profiler = command.first()?.clone();
        // Everything after `--` is the program and its arguments.
        let options = command
            .iter()
            .take_while(|a| a.as_str() != "--")
            .map(String::as_str)
            .collect::<Vec<_>>();
        let samply = profiler == "samply";
        let dwarf = options.windows(2).any(|w| w == ["--call-graph", "dwarf"]);
        Some(Recording {
            profiler,
            unwinding: if samply || dwarf {
                Unwinding::UnwindTables
            } else {
                Unwinding::FramePointers
            },
            whole_machine: !samply && options.contains(&"-a"),
        })
    }
}

impl fmt::Display for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}",
            self.profiler,
            match self.unwinding {
                Unwinding::FramePointers => "frame pointers",
                Unwinding::UnwindTables => "unwind tables",
            },
            if self.whole_machine {
                "whole machine"
            } else {
                "program's threads only"
            }
        )
    }
}

/// Why the two runs' profiles cannot be judged function by function, when they cannot.
pub fn profiles_blocked(base: &Manifest, post: &Manifest) -> Option<String> {
    recorded_differently(&Recording::of(base)?, &Recording::of(post)?)
}

/// Why profiles recorded as `b` and as `p` cannot be judged against each other, if so.
pub fn recorded_differently(b: &Recording, p: &Recording) -> Option<String> {
    let unwinding = b.unwinding != p.unwinding;
    let scope = b.whole_machine != p.whole_machine;
    (unwinding || scope).then(|| {
        let what = match (unwinding, scope) {
            (true, true) => "unwound and sampled differently",
            (true, false) => "unwound differently",
            _ => "sampled differently",
        };
        format!(
            "the profiles were {what} (baseline: {b}; post: {p}), which puts the same time under other functions; record both sides alike (--perf-dwarf, --perf-per-thread, --profiler)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata;

    fn with_command(command: &str) -> Manifest {
        let mut m = testdata::manifest();
        let profile = serde_json::json!({
            "command": command.split(' ').collect::<Vec<_>>(),
            "duration_secs": 1.0, "raw": "profiles/bench/perf.data", "folded": null,
            "flamegraph": null, "samples": null, "top_self": null
        });
        m.targets[0].profile = Some(serde_json::from_value(profile).unwrap());
        m
    }

    const PERF_FP: &str = "perf record -a -e cpu-clock -F 249 -g -o p.data -- bench --bench";
    const PERF_FP_THREADS: &str = "perf record -e cpu-clock -F 249 -g -o p.data -- bench --bench";
    const PERF_DWARF: &str =
        "perf record -e cpu-clock -F 249 --call-graph dwarf -o p.data -- bench --bench";
    const SAMPLY: &str =
        "samply record --save-only --unstable-presymbolicate --rate 249 -o p.json.gz -- bench -a";

    #[test]
    fn the_recording_is_read_from_the_profilers_options_not_the_programs() {
        let fp = Recording::of(&with_command(PERF_FP)).unwrap();
        assert_eq!(fp.unwinding, Unwinding::FramePointers);
        assert!(fp.whole_machine);
        assert_eq!(
            fp.to_string(),
            "perf, frame pointers, whole machine".to_owned()
        );
        let samply = Recording::of(&with_command(SAMPLY)).unwrap();
        // the program's own `-a` is not samply's
        assert_eq!(
            samply.to_string(),
            "samply, unwind tables, program's threads only"
        );
        assert!(Recording::of(&testdata::manifest()).is_none(), "no profile");
    }

    #[test]
    fn only_unwinding_or_sampling_scope_blocks_the_profile_judgement() {
        let (fp, dwarf, samply) = (
            with_command(PERF_FP),
            with_command(PERF_DWARF),
            with_command(SAMPLY),
        );
        assert_eq!(profiles_blocked(&fp, &fp), None);
        assert_eq!(profiles_blocked(&dwarf, &samply), None, "they agree");
        let why = profiles_blocked(&fp, &samply).expect("blocked");
        assert!(why.contains("unwound and sampled differently"), "{why}");
        assert!(
            why.contains("baseline: perf, frame pointers, whole machine"),
            "{why}"
        );
        let why = profiles_blocked(&with_command(PERF_FP_THREADS), &dwarf).expect("blocked");
        assert!(why.contains("were unwound differently"), "{why}");
        let why = profiles_blocked(&fp, &with_command(PERF_FP_THREADS)).expect("blocked");
        assert!(why.contains("were sampled differently"), "{why}");
        assert_eq!(profiles_blocked(&testdata::manifest(), &samply), None);
    }

    #[test]
    fn a_planned_run_reads_like_the_manifest_it_will_write() {
        let mut perf = PerfSetup {
            event: "cpu-clock".into(),
            system_wide: true,
            off_cpu: true,
            dwarf: false,
        };
        let planned = Recording::planned(ProfilerChoice::Perf, &perf).unwrap();
        assert_eq!(Some(planned), Recording::of(&with_command(PERF_FP)));
        perf.system_wide = false;
        perf.dwarf = true;
        let planned = Recording::planned(ProfilerChoice::Perf, &perf).unwrap();
        assert_eq!(
            Some(&planned),
            Recording::of(&with_command(PERF_DWARF)).as_ref()
        );
        let samply = Recording::planned(ProfilerChoice::Samply, &perf).unwrap();
        assert_eq!(recorded_differently(&planned, &samply), None);
        assert!(Recording::planned(ProfilerChoice::None, &perf).is_none());
    }
}

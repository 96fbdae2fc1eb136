//! Which profiler a run uses: the choice on the command line and in the manifest, and the
//! platform's default.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfilerChoice {
    Perf,
    Samply,
    None,
}

impl ProfilerChoice {
    /// samply on macOS, the plan's tool there. On Linux perf, unless perf may not sample
    /// the whole machine (not root, `perf_event_paranoid` above 0) where samply may record
    /// (at 1, with samply installed): perf following the program's threads slows
    /// switch-heavy benchmarks (see `pipeline::profiler`), samply records them without that.
    pub fn platform_default() -> Self {
        let readings = crate::probe::readings();
        Self::default_for(
            cfg!(target_os = "macos"),
            crate::probe::is_root(),
            readings.perf_event_paranoid,
            crate::probe::which("samply").is_some(),
        )
    }

    fn default_for(macos: bool, root: bool, paranoid: Option<i32>, samply: bool) -> Self {
        let perf_whole_machine = root || paranoid.is_some_and(|p| p <= 0);
        if macos || (!perf_whole_machine && samply && paranoid == Some(1)) {
            ProfilerChoice::Samply
        } else {
            ProfilerChoice::Perf
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProfilerChoice::Perf => "perf",
            ProfilerChoice::Samply => "samply",
            ProfilerChoice::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProfilerChoice;

    #[test]
    fn linux_takes_samply_only_where_perf_cannot_sample_the_machine_and_samply_can_record() {
        let pick =
            |root, paranoid, samply| ProfilerChoice::default_for(false, root, paranoid, samply);
        assert_eq!(
            pick(true, Some(2), true),
            ProfilerChoice::Perf,
            "root: perf -a"
        );
        assert_eq!(
            pick(false, Some(0), true),
            ProfilerChoice::Perf,
            "perf -a allowed"
        );
        assert_eq!(pick(false, Some(1), true), ProfilerChoice::Samply);
        assert_eq!(
            pick(false, Some(1), false),
            ProfilerChoice::Perf,
            "samply missing"
        );
        assert_eq!(
            pick(false, Some(2), true),
            ProfilerChoice::Perf,
            "samply refuses above 1"
        );
        assert_eq!(
            ProfilerChoice::default_for(true, false, None, false),
            ProfilerChoice::Samply
        );
    }
}

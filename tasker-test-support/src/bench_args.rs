//! Criterion's command line as this process will run it (measure, profile, test or list), for
//! work outside criterion that only makes sense in some of those modes.

/// How criterion will run this process, read from the same arguments criterion parses (its
/// `Criterion` keeps the mode private). Used to skip work that only makes sense in one mode,
/// such as the EXPLAIN pass, which neither `--list` nor `--profile-time` should pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// `--bench`: measure.
    Benchmark,
    /// `--bench --profile-time N`: iterate for N seconds, no analysis.
    Profile,
    /// No `--bench` (`cargo test --benches`): each benchmark runs once.
    Test,
    /// `--list`.
    List,
}

/// The parsed arguments.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub mode: BenchMode,
    /// Criterion's positional FILTER (a regular expression over benchmark ids).
    pub filter: Option<String>,
}

impl BenchArgs {
    /// Criterion's options that take a value (so that value is not mistaken for the filter).
    const VALUED: &'static [&'static str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];

    pub fn from_env() -> Self {
        Self::parse(std::env::args().skip(1))
    }

    pub fn parse(args: impl IntoIterator<Item = String>) -> Self {
        let (mut bench, mut test, mut list, mut profile) = (false, false, false, false);
        let mut filter = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let name = arg.split('=').next().unwrap_or_default();
            match name {
                "--bench" => bench = true,
                "--test" => test = true,
                "--list" => list = true,
                "--profile-time" => profile = true,
                _ => {}
            }
            if Self::VALUED.contains(&name) {
                if !arg.contains('=') {
                    args.next();
                }
            } else if !arg.starts_with('-') && filter.is_none() {
                filter = Some(arg);
            }
        }
        let mode = if list {
            BenchMode::List
        } else if !bench || test {
            BenchMode::Test
        } else if profile {
            BenchMode::Profile
        } else {
            BenchMode::Benchmark
        };
        Self { mode, filter }
    }

    /// Whether a pass named `name` that is not a criterion benchmark should run: in benchmark
    /// and test mode, when there is no filter or the filter mentions it.
    pub fn runs_extra_pass(&self, name: &str) -> bool {
        matches!(self.mode, BenchMode::Benchmark | BenchMode::Test)
            && self
                .filter
                .as_deref()
                .is_none_or(|f| name.contains(f) || f.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> BenchArgs {
        BenchArgs::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn modes_follow_criterion() {
        assert_eq!(args(&[]).mode, BenchMode::Test);
        assert_eq!(args(&["--bench"]).mode, BenchMode::Benchmark);
        assert_eq!(
            args(&["--bench", "--profile-time", "5"]).mode,
            BenchMode::Profile
        );
        assert_eq!(args(&["--bench", "--list"]).mode, BenchMode::List);
        let a = args(&["--bench", "--profile-time", "5", "get_next"]);
        assert_eq!(a.filter.as_deref(), Some("get_next"));
        let a = args(&["--bench", "--save-baseline", "base", "--sample-size=10"]);
        assert_eq!(a.filter, None);
        assert!(a.runs_extra_pass("explain_analyze"));
        assert!(!args(&["--bench", "get_next"]).runs_extra_pass("explain_analyze"));
    }
}

//! The profile plan: which targets to build, time and profile, and the thresholds a later
//! run is judged by. Parsed from TOML (`xtask/profile-plan.toml`); every error names the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The plan file format version this xtask understands.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bench,
    Test,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bench => "bench",
            Kind::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    E2e,
    Sql,
    Events,
    Api,
    Lifecycle,
    Component,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::E2e => "e2e",
            Category::Sql => "sql",
            Category::Events => "events",
            Category::Api => "api",
            Category::Lifecycle => "lifecycle",
            Category::Component => "component",
        }
    }

    pub fn from_name(name: &str) -> Option<Category> {
        [
            Category::E2e,
            Category::Sql,
            Category::Events,
            Category::Api,
            Category::Lifecycle,
            Category::Component,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }

    /// The plan's success criteria and regression signals. E2E, SQL and lifecycle figures
    /// come from the plan itself; events, api and component have none there, so they take
    /// the stricter E2E-like limit for user-facing latency and the lifecycle one for
    /// component internals.
    pub fn default_thresholds(self) -> Thresholds {
        let base = Thresholds {
            max_change_pct: None,
            regression_pct: None,
            noise_pct: 10.0,
            hot_path_pct: 5.0,
            message_passing_max_pct: 5.0,
            fail_on_new_hot_path: true,
            session_drift_pct: 0.0,
        };
        match self {
            // "E2E latency: within 10% of baseline"; "E2E latency >20% slower" is a regression.
            Category::E2e => Thresholds {
                max_change_pct: Some(10.0),
                regression_pct: Some(20.0),
                ..base
            },
            // "SQL latency: unchanged": no fixed percentage, a change must stay within the
            // noise measured across runs, which itself must stay small for that to mean much.
            Category::Sql => Thresholds {
                noise_pct: 5.0,
                ..base
            },
            // "Lifecycle operation time: within 20% of baseline".
            Category::Lifecycle | Category::Component => Thresholds {
                max_change_pct: Some(20.0),
                noise_pct: 20.0,
                ..base
            },
            Category::Events | Category::Api => Thresholds {
                max_change_pct: Some(10.0),
                regression_pct: Some(20.0),
                ..base
            },
        }
    }
}

/// Resolved thresholds of one target (category default, then plan overrides, then target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Allowed slowdown in percent; `None` means "unchanged": within the measured noise.
    pub max_change_pct: Option<f64>,
    /// Slowdown in percent that counts as a regression signal.
    pub regression_pct: Option<f64>,
    /// Largest spread between timing runs before the target is marked noisy.
    pub noise_pct: f64,
    /// A function above this share of samples is a hot path.
    pub hot_path_pct: f64,
    /// Message passing above this share of total time is a regression signal.
    pub message_passing_max_pct: f64,
    /// Whether a hot path absent from the baseline is a regression signal.
    pub fail_on_new_hot_path: bool,
    /// How far two sessions of unchanged code can land apart on the machines the plan is
    /// measured on (a 95 % band, percent): widens every verdict judged across two sessions,
    /// never a paired one. 0 when the plan does not say.
    #[serde(default)]
    pub session_drift_pct: f64,
}

/// Optional overrides, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverrides {
    max_change_pct: Option<Spanned<f64>>,
    regression_pct: Option<Spanned<f64>>,
    noise_pct: Option<Spanned<f64>>,
    hot_path_pct: Option<Spanned<f64>>,
    message_passing_max_pct: Option<Spanned<f64>>,
    fail_on_new_hot_path: Option<bool>,
    session_drift_pct: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    schema_version: Option<Spanned<u32>>,
    #[serde(default)]
    needs_database: bool,
    profile_time_secs: Option<Spanned<f64>>,
    session_drift_pct: Option<Spanned<f64>>,
    #[serde(default)]
    thresholds: BTreeMap<String, Spanned<ThresholdOverrides>>,
    #[serde(default, rename = "target")]
    targets: Vec<Spanned<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    package: String,
    kind: Kind,
    binary: Spanned<String>,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    all_features: bool,
    filter: Option<String>,
    category: Category,
    needs_database: Option<bool>,
    profile_time_secs: Option<Spanned<f64>>,
    pairs: Option<Spanned<u32>>,
    thresholds: Option<ThresholdOverrides>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub package: String,
    pub kind: Kind,
    /// Bench target name, integration test name, or `lib` for the package's unit tests.
    pub binary: String,
    pub features: Vec<String>,
    pub all_features: bool,
    pub filter: Option<String>,
    pub category: Category,
    pub needs_database: bool,
    pub profile_time_secs: f64,
    /// Pairs of timing runs under `profile-post --against`, when this target needs other
    /// than [`DEFAULT_PAIRS`] to decide its limits.
    pub pairs: Option<u32>,
    pub thresholds: Thresholds,
}

impl Target {
    /// The cargo flags that select this target's features.
    pub fn feature_args(&self) -> Vec<String> {
        if self.all_features {
            vec!["--all-features".to_owned()]
        } else if self.features.is_empty() {
            Vec::new()
        } else {
            vec!["--features".to_owned(), self.features.join(",")]
        }
    }

    /// The `cargo` command a human would type to run this target.
    pub fn cargo_command(&self) -> String {
        let mut parts = vec![
            "cargo".to_owned(),
            match self.kind {
                Kind::Bench => "bench".to_owned(),
                Kind::Test => "test".to_owned(),
            },
            "--package".to_owned(),
            self.package.clone(),
        ];
        parts.extend(self.feature_args());
        match (self.kind, self.binary.as_str()) {
            (Kind::Test, "lib") => parts.push("--lib".to_owned()),
            (Kind::Bench, b) => parts.extend(["--bench".to_owned(), b.to_owned()]),
            (Kind::Test, t) => parts.extend(["--test".to_owned(), t.to_owned()]),
        }
        if let Some(filter) = &self.filter {
            parts.push(filter.clone());
        }
        parts.join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    pub text: String,
    pub targets: Vec<Target>,
}

/// Seconds each benchmark is iterated under the profiler when the plan does not say.
pub const DEFAULT_PROFILE_TIME_SECS: f64 = 10.0;

/// Pairs of timing runs per target under `profile-post --against`, unless the target or
/// `--pairs` says otherwise (docs/observability/profiling-workflow.md says why eight).
pub const DEFAULT_PAIRS: u32 = 8;

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading profile plan {}", path.display()))?;
        Plan::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Plan> {
        let at = |span: std::ops::Range<usize>| {
            format!("{}:{}", path.display(), line_of(text, span.start))
        };
        let raw: RawPlan = toml::from_str(text).map_err(|e| {
            let location = e
                .span()
                .map(&at)
                .unwrap_or_else(|| path.display().to_string());
            anyhow::anyhow!("malformed profile plan {location}: {}", e.message())
        })?;
        check_version(&raw, &at)?;
        let defaults = Defaults::of(&raw, &at)?;
        if raw.targets.is_empty() {
            bail!("{}: the plan has no [[target]] entries", path.display());
        }
        let mut targets: Vec<Target> = Vec::new();
        for spanned in &raw.targets {
            let target = defaults.resolve(spanned, &at)?;
            if targets.iter().any(|t| t.name == target.name) {
                bail!(
                    "{}: duplicate target name `{}`",
                    at(spanned.get_ref().name.span()),
                    target.name
                );
            }
            targets.push(target);
        }
        Ok(Plan {
            path: path.to_owned(),
            text: text.to_owned(),
            targets,
        })
    }

    /// The targets to run: all of them, or those named with `--only`, in plan order.
    pub fn select(&self, only: &[String]) -> Result<Vec<Target>> {
        if only.is_empty() {
            return Ok(self.targets.clone());
        }
        for name in only {
            if !self.targets.iter().any(|t| &t.name == name) {
                let known: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
                bail!(
                    "unknown target `{name}` in --only; {} defines: {}",
                    self.path.display(),
                    known.join(", ")
                );
            }
        }
        Ok(self
            .targets
            .iter()
            .filter(|t| only.contains(&t.name))
            .cloned()
            .collect())
    }
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>) -> String;

fn check_version(raw: &RawPlan, at: At<'_>) -> Result<()> {
    if let Some(version) = &raw.schema_version {
        if *version.get_ref() != PLAN_SCHEMA_VERSION {
            bail!(
                "{}: schema_version {} is not supported (this xtask reads version {PLAN_SCHEMA_VERSION})",
                at(version.span()),
                version.get_ref()
            );
        }
    }
    Ok(())
}

/// What the plan says for every target, before a target's own settings.
struct Defaults {
    /// Overrides of the whole plan (`session_drift_pct`).
    plan_wide: ThresholdOverrides,
    /// `[thresholds.<category>]`.
    by_category: BTreeMap<Category, ThresholdOverrides>,
    profile_time_secs: f64,
    needs_database: bool,
}

impl Defaults {
    fn of(raw: &RawPlan, at: At<'_>) -> Result<Defaults> {
        let mut by_category = BTreeMap::new();
        for (key, overrides) in &raw.thresholds {
            let category = Category::from_name(key).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: [thresholds.{key}] names no category; use one of e2e, sql, events, api, lifecycle, component",
                    at(overrides.span())
                )
            })?;
            check_overrides(overrides.get_ref(), at)?;
            by_category.insert(category, overrides.get_ref().clone());
        }
        let plan_wide = ThresholdOverrides {
            session_drift_pct: raw.session_drift_pct.clone(),
            ..ThresholdOverrides::default()
        };
        check_overrides(&plan_wide, at)?;
        Ok(Defaults {
            plan_wide,
            by_category,
            profile_time_secs: match &raw.profile_time_secs {
                Some(t) => positive(t, "profile_time_secs", at)?,
                None => DEFAULT_PROFILE_TIME_SECS,
            },
            needs_database: raw.needs_database,
        })
    }

    /// One `[[target]]`, checked, with its thresholds resolved: the category's defaults, the
    /// plan's, the category's overrides, then its own.
    fn resolve(&self, spanned: &Spanned<RawTarget>, at: At<'_>) -> Result<Target> {
        let raw = spanned.get_ref();
        let name = raw.name.get_ref().trim().to_owned();
        check_target(raw, &name, spanned.span(), at)?;
        let mut thresholds = raw.category.default_thresholds();
        apply(&mut thresholds, &self.plan_wide);
        if let Some(overrides) = self.by_category.get(&raw.category) {
            apply(&mut thresholds, overrides);
        }
        if let Some(overrides) = &raw.thresholds {
            check_overrides(overrides, at)?;
            apply(&mut thresholds, overrides);
        }
        let profile_time_secs = match &raw.profile_time_secs {
            Some(t) => positive(t, "profile_time_secs", at)?,
            None => self.profile_time_secs,
        };
        let pairs = match &raw.pairs {
            Some(p) if *p.get_ref() < 2 => bail!(
                "{}: target `{name}`: `pairs` must be at least 2 (one pair gives no interval), got {}",
                at(p.span()),
                p.get_ref()
            ),
            p => p.as_ref().map(|p| *p.get_ref()),
        };
        Ok(Target {
            name,
            package: raw.package.clone(),
            kind: raw.kind,
            binary: raw.binary.get_ref().clone(),
            features: raw.features.clone(),
            all_features: raw.all_features,
            filter: raw.filter.clone().filter(|f| !f.is_empty()),
            category: raw.category,
            needs_database: raw.needs_database.unwrap_or(self.needs_database),
            profile_time_secs,
            pairs,
            thresholds,
        })
    }
}

/// The checks of a target's own fields that need no other target.
fn check_target(
    raw: &RawTarget,
    name: &str,
    span: std::ops::Range<usize>,
    at: At<'_>,
) -> Result<()> {
    if name.is_empty() {
        bail!("{}: target name is empty", at(raw.name.span()));
    }
    if raw.binary.get_ref().trim().is_empty() {
        bail!(
            "{}: target `{name}` has an empty `binary`",
            at(raw.binary.span())
        );
    }
    if raw.all_features && !raw.features.is_empty() {
        bail!(
            "{}: target `{name}` sets both `features` and `all_features`; keep one",
            at(span)
        );
    }
    if raw.kind == Kind::Bench && raw.binary.get_ref() == "lib" {
        bail!(
            "{}: target `{name}`: `binary = \"lib\"` only applies to kind = \"test\"",
            at(raw.binary.span())
        );
    }
    Ok(())
}

fn positive(
    value: &Spanned<f64>,
    field: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<f64> {
    let v = *value.get_ref();
    if !(v.is_finite() && v > 0.0) {
        bail!(
            "{}: `{field}` must be a positive number of seconds, got {v}",
            at(value.span())
        );
    }
    Ok(v)
}

fn check_overrides(
    o: &ThresholdOverrides,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<()> {
    let fields = [
        ("max_change_pct", &o.max_change_pct),
        ("regression_pct", &o.regression_pct),
        ("noise_pct", &o.noise_pct),
        ("hot_path_pct", &o.hot_path_pct),
        ("message_passing_max_pct", &o.message_passing_max_pct),
        ("session_drift_pct", &o.session_drift_pct),
    ];
    for (field, value) in fields {
        if let Some(v) = value {
            let x = *v.get_ref();
            if !(x.is_finite() && (0.0..=1000.0).contains(&x)) {
                bail!(
                    "{}: `{field}` must be a percentage between 0 and 1000, got {x}",
                    at(v.span())
                );
            }
        }
    }
    Ok(())
}

fn apply(t: &mut Thresholds, o: &ThresholdOverrides) {
    if let Some(v) = &o.max_change_pct {
        t.max_change_pct = Some(*v.get_ref());
    }
    if let Some(v) = &o.regression_pct {
        t.regression_pct = Some(*v.get_ref());
    }
    if let Some(v) = &o.noise_pct {
        t.noise_pct = *v.get_ref();
    }
    if let Some(v) = &o.hot_path_pct {
        t.hot_path_pct = *v.get_ref();
    }
    if let Some(v) = &o.message_passing_max_pct {
        t.message_passing_max_pct = *v.get_ref();
    }
    if let Some(v) = o.fail_on_new_hot_path {
        t.fail_on_new_hot_path = v;
    }
    if let Some(v) = &o.session_drift_pct {
        t.session_drift_pct = *v.get_ref();
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan> {
        Plan::parse(Path::new("plan.toml"), text)
    }

    const GOOD: &str = r#"
[thresholds.sql]
noise_pct = 3

[[target]]
name = "sql"
package = "tasker-shared"
kind = "bench"
binary = "sql_functions"
features = ["benchmarks"]
category = "sql"
needs_database = true

[[target]]
name = "init"
package = "tasker-orchestration"
kind = "test"
binary = "lib"
filter = "lifecycle::task_initializer::tests"
category = "lifecycle"
profile_time_secs = 5
[target.thresholds]
max_change_pct = 15
"#;

    #[test]
    fn parses_targets_and_resolves_thresholds() {
        let plan = parse(GOOD).expect("valid plan");
        assert_eq!(plan.targets.len(), 2);
        let sql = &plan.targets[0];
        assert_eq!(sql.kind, Kind::Bench);
        assert_eq!(sql.thresholds.noise_pct, 3.0, "category override applies");
        assert_eq!(
            sql.thresholds.max_change_pct, None,
            "sql is judged against noise"
        );
        assert!(sql.needs_database);
        assert_eq!(
            sql.cargo_command(),
            "cargo bench --package tasker-shared --features benchmarks --bench sql_functions"
        );
        let init = &plan.targets[1];
        assert_eq!(
            init.thresholds.max_change_pct,
            Some(15.0),
            "target override wins"
        );
        assert_eq!(init.thresholds.noise_pct, 20.0, "lifecycle default kept");
        assert_eq!(init.profile_time_secs, 5.0);
        assert!(!init.needs_database);
    }

    #[test]
    fn a_target_may_ask_for_its_own_pairs_but_not_fewer_than_two() {
        let text = GOOD.replacen(
            "needs_database = true",
            "needs_database = true\npairs = 12",
            1,
        );
        let plan = parse(&text).expect("valid plan");
        assert_eq!(plan.targets[0].pairs, Some(12));
        assert_eq!(plan.targets[1].pairs, None, "the default applies");

        let text = GOOD.replacen(
            "needs_database = true",
            "needs_database = true\npairs = 1",
            1,
        );
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(
            err.contains("plan.toml:") && err.contains("`pairs` must be at least 2"),
            "{err}"
        );
    }

    #[test]
    fn session_drift_is_plan_wide_and_overridable() {
        let text = format!(
            "session_drift_pct = 45\n{}",
            GOOD.replace("noise_pct = 3", "noise_pct = 3\nsession_drift_pct = 30")
        );
        let plan = parse(&text).expect("valid plan");
        assert_eq!(
            plan.targets[0].thresholds.session_drift_pct, 30.0,
            "category wins"
        );
        assert_eq!(
            plan.targets[1].thresholds.session_drift_pct, 45.0,
            "plan-wide"
        );
        assert_eq!(
            parse(GOOD).unwrap().targets[1].thresholds.session_drift_pct,
            0.0
        );
        let err = parse(&format!("session_drift_pct = -1\n{GOOD}")).unwrap_err();
        assert!(
            err.to_string()
                .contains("plan.toml:1: `session_drift_pct` must be a percentage"),
            "{err}"
        );
    }

    #[test]
    fn category_defaults_follow_the_plan() {
        let e2e = Category::E2e.default_thresholds();
        assert_eq!(e2e.max_change_pct, Some(10.0));
        assert_eq!(e2e.regression_pct, Some(20.0));
        assert_eq!(e2e.message_passing_max_pct, 5.0);
        assert_eq!(
            Category::Lifecycle.default_thresholds().max_change_pct,
            Some(20.0)
        );
    }

    #[test]
    fn unknown_field_names_its_line() {
        let text = GOOD.replace(
            "category = \"lifecycle\"",
            "category = \"lifecycle\"\nfitler = \"x\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("plan.toml:21"), "{err}");
        assert!(err.contains("fitler"), "{err}");
    }

    #[test]
    fn unknown_category_and_kind_are_errors() {
        let err =
            parse(&GOOD.replace("category = \"sql\"", "category = \"database\"")).unwrap_err();
        assert!(err.to_string().contains("plan.toml:11"), "{err}");
        assert!(err.to_string().contains("database"), "{err}");
        let err = parse(&GOOD.replace("kind = \"bench\"", "kind = \"binary\"")).unwrap_err();
        assert!(err.to_string().contains("plan.toml:8"), "{err}");
    }

    #[test]
    fn duplicate_names_are_errors() {
        let text = GOOD.replace("name = \"init\"", "name = \"sql\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("duplicate target name `sql`"), "{err}");
        assert!(err.contains("plan.toml:15"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        let err =
            parse(&GOOD.replace("profile_time_secs = 5", "profile_time_secs = -1")).unwrap_err();
        assert!(err.to_string().contains("plan.toml:21"), "{err}");
        let err = parse(&GOOD.replace("noise_pct = 3", "noise_pct = -3")).unwrap_err();
        assert!(err.to_string().contains("plan.toml:3"), "{err}");
        let err = parse(&GOOD.replace("[thresholds.sql]", "[thresholds.sqll]")).unwrap_err();
        assert!(err.to_string().contains("thresholds.sqll"), "{err}");
        let err = parse("[[target]]\nname = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = parse("targets = 1").unwrap_err();
        assert!(err.to_string().contains("plan.toml:1"), "{err}");
        let err = parse("").unwrap_err();
        assert!(err.to_string().contains("no [[target]]"), "{err}");
    }

    #[test]
    fn only_selects_and_rejects_unknown_names() {
        let plan = parse(GOOD).expect("valid plan");
        let picked = plan.select(&["init".to_owned()]).expect("known name");
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name, "init");
        let err = plan.select(&["nope".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("unknown target `nope`"), "{err}");
        assert!(err.contains("sql, init"), "{err}");
    }
}

#[cfg(test)]
mod shipped_plan {
    use super::*;

    /// The plan in the repository parses and covers what the user's plan names.
    #[test]
    fn shipped_plan_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profile-plan.toml");
        let plan = Plan::load(&path).expect("xtask/profile-plan.toml parses");
        let has = |package: &str, binary: &str, filter: Option<&str>| {
            plan.targets.iter().any(|t| {
                t.package == package && t.binary == binary && t.filter.as_deref() == filter
            })
        };
        assert!(has("tasker-shared", "sql_functions", None));
        assert!(has("tasker-shared", "event_propagation", None));
        assert!(has("tasker-client", "task_initialization", None));
        assert!(has("tasker-core", "e2e_latency", None));
        for module in ["task_initializer", "step_enqueuer", "result_processor"] {
            let filter = format!("lifecycle::{module}::tests");
            assert!(
                has("tasker-orchestration", "lib", Some(&filter)),
                "{filter}"
            );
        }
        let e2e = plan
            .targets
            .iter()
            .find(|t| t.category == Category::E2e)
            .expect("an e2e target");
        assert_eq!(e2e.profile_time_secs, 60.0);
    }
}

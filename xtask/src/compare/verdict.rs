//! The timing verdict of one benchmark: the change from baseline to post with its
//! uncertainty, judged against the category's limit. Pure, so the rules are tested on
//! synthetic estimates.
//!
//! In log space (timings are ratios). Each side's centre is the median of its runs. A run's
//! noise `σ²` is the larger of the spread between runs and criterion's own uncertainty (its
//! confidence interval turned into a standard error), because a few runs can agree by
//! chance. The spread is the sample variance of `ln t`, or with five runs or more the
//! robust `(1.4826 · MAD)²`, so one run disturbed by a burst of other work does not hide a
//! change the others agree on. The median of `n ≥ 3` runs varies `π/2` times as much as
//! their mean would. A busy machine also shifts a whole session, which runs within it cannot
//! show: the plan's `session_drift_pct` (how far two sessions of unchanged code move apart on
//! the machines it is measured on) and, when a run was measured under a failed interference
//! check, the category's noise limit, each a 95 % band (`S² = (ln(1 + pct) / 1.96)²`, half of
//! it on each side), which more runs do not shrink. The change `d = ln(post / base)` has the
//! 95 % half-width `h = t(0.975, df) · sqrt(k_b σ_b² / n_b + k_p σ_p² / n_p + S²)` (`k` is
//! `π/2` or 1) with Welch's degrees of freedom, so few runs give wide intervals. With
//! `L = ln(1 + limit)`:
//!
//! - `regression` when `d − h > L`: slower than allowed even at the low end;
//! - `improvement` when `d + h < −L`: faster by at least the same factor;
//! - `pass` when `d + h ≤ L`: within the limit even at the high end;
//! - `inconclusive` otherwise: the interval straddles the limit, either because the noise
//!   is wider than the limit itself (`h > L`) or because the change sits near it.

use serde::{Deserialize, Serialize};

use crate::stats;

/// Most runs per side the "runs needed" estimate considers; beyond it the noise itself
/// has to come down.
pub const MAX_RUNS: u32 = 50;

const CONFIDENCE_QUANTILE: f64 = 0.975;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Regression,
    Improvement,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Runs from which the spread is measured robustly (median absolute deviation).
pub const ROBUST_FROM_RUNS: usize = 5;

/// Where a side's noise figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseSource {
    /// The spread between repeated runs (sample variance).
    Spread,
    /// The spread between repeated runs, from their median absolute deviation.
    RobustSpread,
    /// criterion's confidence intervals (one run, or runs that agree more closely).
    Criterion,
    /// Not measured: a single run with the category's noise limit assumed.
    Assumed,
}

/// One side (baseline or post) of a comparison, in log space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Median of the runs (ns per iteration, or CPU seconds for a test target).
    pub center: f64,
    /// Variance of ln(value) of one run.
    pub run_variance: f64,
    /// Degrees of freedom of `run_variance`; infinite when it is not a sample variance.
    #[serde(with = "infinite_as_null")]
    pub df: f64,
    /// Variance of ln(value) between sessions that more runs do not reduce (the host's drift,
    /// a busy machine).
    #[serde(default)]
    pub session_variance: f64,
    pub runs: u32,
    pub noise_source: NoiseSource,
    /// Whether more `--runs` would add data (false for a test target's single profile).
    pub repeatable: bool,
}

impl Side {
    /// From a benchmark's runs: each run's value and relative standard error (criterion's
    /// confidence half-width over its z, divided by the estimate).
    pub fn from_runs(values: &[f64], rel_se: &[f64]) -> Option<Side> {
        if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return None;
        }
        let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
        let (spread, spread_source) = if logs.len() >= ROBUST_FROM_RUNS {
            (
                stats::mad_sigma(&logs).map(|s| s * s),
                NoiseSource::RobustSpread,
            )
        } else {
            (stats::variance(&logs), NoiseSource::Spread)
        };
        let criterion = if rel_se.is_empty() {
            0.0
        } else {
            rel_se
                .iter()
                .map(|s| if s.is_finite() { s * s } else { 0.0 })
                .sum::<f64>()
                / rel_se.len() as f64
        };
        let (run_variance, df, noise_source) = match spread {
            Some(s) if s >= criterion => (s, (values.len() - 1) as f64, spread_source),
            _ => (criterion, f64::INFINITY, NoiseSource::Criterion),
        };
        Some(Side {
            center: crate::criterion::median(values)?,
            run_variance,
            df,
            session_variance: 0.0,
            runs: values.len() as u32,
            noise_source,
            repeatable: true,
        })
    }

    /// Adds this side's half of a session-to-session noise of `pct` percent (a 95 % band
    /// for the two sessions together) that does not shrink with more runs; sources add up.
    pub fn with_session_noise(mut self, pct: f64) -> Side {
        let band = (1.0 + pct.max(0.0) / 100.0).ln() / 1.96;
        self.session_variance += band * band / 2.0;
        self
    }

    /// A single measurement whose run-to-run noise is unknown: `assumed_pct` is taken as its
    /// 95 % band, plus the counting noise of `samples` profiler samples.
    pub fn single(value: f64, assumed_pct: f64, samples: u64) -> Option<Side> {
        if !(value.is_finite() && value > 0.0) {
            return None;
        }
        let band = (1.0 + assumed_pct.max(0.0) / 100.0).ln() / 1.96;
        let counting = if samples > 0 {
            1.0 / samples as f64
        } else {
            0.0
        };
        Some(Side {
            center: value,
            run_variance: band * band + counting,
            df: f64::INFINITY,
            session_variance: 0.0,
            runs: 1,
            noise_source: NoiseSource::Assumed,
            repeatable: false,
        })
    }
}

/// How many runs would settle an inconclusive verdict, if the noise stays what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunsNeeded {
    /// Re-running the post run alone with `--runs N` (`more` than it had) is enough.
    Post { runs: u32, more: u32 },
    /// The baseline's own noise is too large: both need `--runs N` (`more` than the
    /// larger of the two had).
    Both { runs: u32, more: u32 },
    /// Not within `MAX_RUNS` per side: the noise has to come down instead.
    Unreachable { max: u32 },
    /// The noise between two sessions (the plan's drift, a busy machine) alone is wider
    /// than what would settle it: only measuring both sides in one session can.
    OneSession,
    /// The value comes from a single profiled run; `--runs` does not repeat it.
    NotApplicable,
    /// A paired measurement: `pairs` in all (`more` than it had) would settle it.
    Pairs { pairs: u32, more: u32 },
}

impl RunsNeeded {
    pub fn describe(&self) -> String {
        match self {
            RunsNeeded::Post { runs, more } => format!(
                "{more} more post runs would settle it (run profile-post again with --runs {runs})"
            ),
            RunsNeeded::Both { runs, more } => format!(
                "{more} more runs on both sides would settle it (re-record the baseline and the post run with --runs {runs})"
            ),
            RunsNeeded::Unreachable { max } => format!(
                "more than {max} runs (or pairs) per side would be needed: the change sits at the limit, or the noise must come down first (cargo xtask check-env)"
            ),
            RunsNeeded::OneSession => "no number of runs settles it: two sessions may differ by more than this with nothing changed (the plan's session_drift_pct, and the category's noise limit when the interference check failed); judge both revisions in one session with profile-post --against REV".to_owned(),
            RunsNeeded::Pairs { pairs, more } => format!(
                "{more} more pairs would settle it (run profile-post --against again with --pairs {pairs})"
            ),
            RunsNeeded::NotApplicable => {
                "a test target is profiled once per run, so more --runs do not help; a quieter machine or a longer test does".to_owned()
            }
        }
    }
}

/// The judgement of one benchmark. Percentages are changes from the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub change_pct: f64,
    /// 95 % interval of the change.
    pub low_pct: f64,
    pub high_pct: f64,
    /// Half-width of the interval as a percentage (`100 · (e^h − 1)`).
    pub noise_pct: f64,
    pub limit_pct: f64,
    pub reason: String,
    pub runs_needed: Option<RunsNeeded>,
}

fn pct(log_ratio: f64) -> f64 {
    (log_ratio.exp() - 1.0) * 100.0
}

/// How much more a median of `runs` varies than a mean would (asymptotically `π/2`).
fn median_factor(runs: u32) -> f64 {
    if runs >= 3 {
        std::f64::consts::FRAC_PI_2
    } else {
        1.0
    }
}

fn half_width(base: &Side, post: &Side, base_runs: u32, post_runs: u32) -> f64 {
    let vb = median_factor(base_runs) * base.run_variance / f64::from(base_runs.max(1));
    let vp = median_factor(post_runs) * post.run_variance / f64::from(post_runs.max(1));
    let session = base.session_variance + post.session_variance;
    let df_of = |side: &Side, runs: u32| {
        if side.df.is_finite() {
            f64::from(runs.saturating_sub(1).max(1))
        } else {
            f64::INFINITY
        }
    };
    let df = stats::welch_df(&[
        (vb, df_of(base, base_runs)),
        (vp, df_of(post, post_runs)),
        (session, f64::INFINITY),
    ]);
    stats::t_quantile(CONFIDENCE_QUANTILE, df) * (vb + vp + session).sqrt()
}

/// Judges `post` against `base` with an allowed slowdown of `limit_pct` percent.
pub fn judge(base: &Side, post: &Side, limit_pct: f64) -> Judgement {
    let d = post.center.ln() - base.center.ln();
    let h = half_width(base, post, base.runs, post.runs);
    classify(d, d - h, d + h, limit_pct, || {
        runs_needed(
            base,
            post,
            (d - (1.0 + limit_pct.max(0.0) / 100.0).ln()).abs(),
        )
    })
}

/// Judges a paired measurement: `log_ratios[i]` is `ln(post / base)` of the i-th pair of
/// runs, the two measured one after the other in the same session. The change is the
/// pairs' centre and its 95 % interval comes from their spread alone: with six pairs or
/// more the Hodges–Lehmann estimate and its signed-rank interval (see
/// [`stats::hodges_lehmann`]), with two to five Student's t on the mean (the signed-rank
/// interval does not reach 95 % below six).
pub fn judge_paired(log_ratios: &[f64], limit_pct: f64) -> Judgement {
    let limit = (1.0 + limit_pct.max(0.0) / 100.0).ln();
    let Some((d, low, high)) = paired_interval(log_ratios) else {
        let d = crate::criterion::median(log_ratios).unwrap_or(0.0);
        let mut j = classify(d, f64::NEG_INFINITY, f64::INFINITY, limit_pct, || {
            RunsNeeded::Pairs { pairs: 6, more: 6 }
        });
        j.reason = format!(
            "{} pair(s) give no interval; at least two are needed",
            log_ratios.len()
        );
        return j;
    };
    classify(d, low, high, limit_pct, || {
        pairs_needed(
            log_ratios.len() as u32,
            (high - low) / 2.0,
            (d - limit).abs(),
        )
    })
}

/// The centre and 95 % interval of paired log ratios, `None` below two pairs.
pub fn paired_interval(log_ratios: &[f64]) -> Option<(f64, f64, f64)> {
    if log_ratios.len() >= 6 {
        return stats::hodges_lehmann(log_ratios, 0.95);
    }
    let n = log_ratios.len();
    let mean = log_ratios.iter().sum::<f64>() / n as f64;
    let sd = stats::variance(log_ratios)?.sqrt();
    let h = stats::t_quantile(CONFIDENCE_QUANTILE, (n - 1) as f64) * sd / (n as f64).sqrt();
    Some((mean, mean - h, mean + h))
}

/// Pairs that would bring a half-width of `h` (from `pairs` pairs) under `target`,
/// assuming it shrinks with the square root of their number.
fn pairs_needed(pairs: u32, h: f64, target: f64) -> RunsNeeded {
    if target <= 1e-9 || !h.is_finite() {
        return RunsNeeded::Unreachable { max: MAX_RUNS };
    }
    let needed = (f64::from(pairs.max(1)) * (h / target).powi(2)).ceil() as u32;
    match needed.max(pairs + 1) {
        n if n <= MAX_RUNS => RunsNeeded::Pairs {
            pairs: n,
            more: n - pairs,
        },
        _ => RunsNeeded::Unreachable { max: MAX_RUNS },
    }
}

/// The verdict rules, shared by both ways of measuring: the change `d` with its 95 %
/// interval `[low, high]` (log space) against the limit.
fn classify(
    d: f64,
    low: f64,
    high: f64,
    limit_pct: f64,
    runs_needed: impl FnOnce() -> RunsNeeded,
) -> Judgement {
    let limit = (1.0 + limit_pct.max(0.0) / 100.0).ln();
    let h = ((high - d).max(d - low)).max(0.0);
    let mut judgement = Judgement {
        verdict: Verdict::Inconclusive,
        change_pct: pct(d),
        low_pct: pct(low),
        high_pct: pct(high),
        noise_pct: pct(h),
        limit_pct,
        reason: String::new(),
        runs_needed: None,
    };
    if low > limit {
        judgement.verdict = Verdict::Regression;
        judgement.reason = format!(
            "slower than the +{limit_pct:.0}% limit even at the low end of the noise ({:+.1}%)",
            judgement.low_pct
        );
    } else if high < -limit {
        judgement.verdict = Verdict::Improvement;
        judgement.reason = format!(
            "faster by more than the limit even at the high end of the noise ({:+.1}%)",
            judgement.high_pct
        );
    } else if high <= limit {
        judgement.verdict = Verdict::Pass;
        judgement.reason = format!(
            "within the +{limit_pct:.0}% limit even at the high end of the noise ({:+.1}%)",
            judgement.high_pct
        );
    } else {
        judgement.reason = if h > limit {
            format!(
                "the noise (±{:.1}%) is wider than the {limit_pct:.0}% limit itself",
                judgement.noise_pct
            )
        } else {
            format!(
                "the change ({:+.1}%) is within the noise (±{:.1}%) of the +{limit_pct:.0}% limit",
                judgement.change_pct, judgement.noise_pct
            )
        };
        judgement.runs_needed = Some(runs_needed());
    }
    judgement
}

/// The fewest runs whose interval would no longer straddle the limit, assuming the centre
/// and the per-run noise stay as measured: first re-running only the post side, then both.
pub fn runs_needed(base: &Side, post: &Side, target_half_width: f64) -> RunsNeeded {
    if !base.repeatable || !post.repeatable {
        return RunsNeeded::NotApplicable;
    }
    if target_half_width <= 1e-9 {
        return RunsNeeded::Unreachable { max: MAX_RUNS };
    }
    let session = base.session_variance + post.session_variance;
    if session > 0.0
        && stats::normal_quantile(CONFIDENCE_QUANTILE) * session.sqrt() >= target_half_width
    {
        return RunsNeeded::OneSession;
    }
    for n in post.runs + 1..=MAX_RUNS {
        if half_width(base, post, base.runs, n) < target_half_width {
            return RunsNeeded::Post {
                runs: n,
                more: n - post.runs,
            };
        }
    }
    for n in base.runs.max(post.runs) + 1..=MAX_RUNS {
        if half_width(base, post, n, n) < target_half_width {
            return RunsNeeded::Both {
                runs: n,
                more: n - base.runs.max(post.runs),
            };
        }
    }
    RunsNeeded::Unreachable { max: MAX_RUNS }
}

/// serde_json cannot write infinity; `null` stands for it.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs with criterion uncertainties of 1 %.
    fn side(values: &[f64]) -> Side {
        Side::from_runs(values, &vec![0.01; values.len()]).expect("valid runs")
    }

    #[test]
    fn a_clear_slowdown_is_a_regression() {
        let j = judge(
            &side(&[100.0, 101.0, 99.0]),
            &side(&[150.0, 151.0, 149.0]),
            20.0,
        );
        assert_eq!(j.verdict, Verdict::Regression, "{j:?}");
        assert!((j.change_pct - 50.0).abs() < 0.01, "{j:?}");
        assert!(j.low_pct > 20.0 && j.low_pct < j.change_pct && j.high_pct > j.change_pct);
        assert!(j.runs_needed.is_none());
    }

    #[test]
    fn a_small_change_inside_the_limit_passes() {
        let j = judge(
            &side(&[100.0, 101.0, 99.0]),
            &side(&[102.0, 101.0, 103.0]),
            10.0,
        );
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert!(j.high_pct <= 10.0);
    }

    #[test]
    fn a_clear_speedup_is_an_improvement() {
        let j = judge(
            &side(&[100.0, 101.0, 99.0]),
            &side(&[70.0, 71.0, 69.0]),
            10.0,
        );
        assert_eq!(j.verdict, Verdict::Improvement, "{j:?}");
        assert!(j.change_pct < -25.0);
    }

    #[test]
    fn noise_wider_than_the_limit_is_inconclusive_with_runs_needed() {
        // Runs disagree by ±15 %: an unchanged rerun on a busy machine.
        let base = side(&[100.0, 120.0, 90.0]);
        let post = side(&[100.0, 118.0, 92.0]);
        let j = judge(&base, &post, 20.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(j.noise_pct > 20.0, "{j:?}");
        assert!(
            j.reason.contains("wider than the 20% limit"),
            "{}",
            j.reason
        );
        // The baseline's own noise is too wide for post runs alone to settle it.
        match j.runs_needed {
            Some(RunsNeeded::Both { runs, .. }) => {
                assert!((4..=MAX_RUNS).contains(&runs), "{runs}")
            }
            other => panic!("expected runs for both sides, got {other:?}"),
        }
        // Twice that noise, judged against half the limit, cannot be settled within the cap.
        let wild = judge(
            &side(&[100.0, 140.0, 80.0]),
            &side(&[105.0, 150.0, 85.0]),
            10.0,
        );
        assert_eq!(
            wild.runs_needed,
            Some(RunsNeeded::Unreachable { max: MAX_RUNS }),
            "{wild:?}"
        );
    }

    #[test]
    fn a_noisy_post_run_alone_needs_more_post_runs() {
        let base = side(&[100.0, 100.5, 99.5]);
        let post = side(&[100.0, 115.0, 90.0]);
        let j = judge(&base, &post, 20.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        match j.runs_needed {
            Some(RunsNeeded::Post { runs, more }) => {
                assert!(runs > 3, "{runs}");
                assert_eq!(more, runs - 3);
            }
            other => panic!("expected more post runs, got {other:?}"),
        }
    }

    #[test]
    fn a_change_near_the_limit_is_inconclusive() {
        let base = side(&[100.0, 100.5, 99.5]);
        let post = side(&[110.0, 110.5, 109.5]);
        let j = judge(&base, &post, 10.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(j.noise_pct < 10.0);
        assert!(j.reason.contains("within the noise"), "{}", j.reason);
    }

    #[test]
    fn a_large_slowdown_is_a_regression_even_through_wide_noise() {
        // The noise (±~40 %) is wider than the limit, but a tripling clears it anyway.
        let j = judge(
            &side(&[100.0, 130.0, 90.0]),
            &side(&[300.0, 390.0, 270.0]),
            20.0,
        );
        assert!(j.noise_pct > 20.0, "{j:?}");
        assert_eq!(j.verdict, Verdict::Regression, "{j:?}");
    }

    #[test]
    fn runs_needed_is_consistent_with_the_interval() {
        let base = side(&[100.0, 112.0, 92.0]);
        let post = side(&[104.0, 118.0, 95.0]);
        let j = judge(&base, &post, 10.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        let d = post.center.ln() - base.center.ln();
        let target = (d - 1.1_f64.ln()).abs();
        match j.runs_needed {
            Some(RunsNeeded::Post { runs, .. }) => {
                assert!(half_width(&base, &post, base.runs, runs) < target);
                assert!(half_width(&base, &post, base.runs, runs - 1) >= target);
            }
            Some(RunsNeeded::Both { runs, .. }) => {
                assert!(half_width(&base, &post, runs, runs) < target);
                assert!(half_width(&base, &post, runs - 1, runs - 1) >= target);
            }
            other => panic!("expected a number of runs, got {other:?}"),
        }
    }

    #[test]
    fn criterion_uncertainty_is_the_floor_when_runs_agree_by_chance() {
        // Identical runs have no spread; criterion's 5 % standard error still counts.
        let base = Side::from_runs(&[100.0, 100.0, 100.0], &[0.05; 3]).expect("valid");
        assert_eq!(base.noise_source, NoiseSource::Criterion);
        assert!((base.run_variance - 0.0025).abs() < 1e-12);
        let single = Side::from_runs(&[100.0], &[0.01]).expect("valid");
        let j = judge(
            &single,
            &Side::from_runs(&[130.0], &[0.01]).expect("valid"),
            20.0,
        );
        assert_eq!(
            j.verdict,
            Verdict::Regression,
            "one precise run each: {j:?}"
        );
    }

    #[test]
    fn a_single_profiled_run_uses_the_assumed_noise() {
        let base = Side::single(1.0, 20.0, 10_000).expect("valid");
        let small = judge(
            &base,
            &Side::single(1.1, 20.0, 10_000).expect("valid"),
            20.0,
        );
        assert_eq!(small.verdict, Verdict::Inconclusive, "{small:?}");
        assert_eq!(small.runs_needed, Some(RunsNeeded::NotApplicable));
        let doubled = judge(
            &base,
            &Side::single(2.0, 20.0, 10_000).expect("valid"),
            20.0,
        );
        assert_eq!(doubled.verdict, Verdict::Regression, "{doubled:?}");
    }

    #[test]
    fn a_busy_machine_widens_the_noise_without_hiding_a_large_slowdown() {
        // Tight runs within each session, measured under interference: a 25 % shift
        // between sessions is what a busy machine does to unchanged code.
        let busy = |v: &[f64]| side(v).with_session_noise(20.0);
        let shifted = judge(
            &busy(&[100.0, 101.0, 99.0]),
            &busy(&[125.0, 126.0, 124.0]),
            20.0,
        );
        assert_eq!(shifted.verdict, Verdict::Inconclusive, "{shifted:?}");
        assert_eq!(shifted.runs_needed, Some(RunsNeeded::OneSession));
        // The same shift on a quiet machine is a regression.
        let quiet = judge(
            &side(&[100.0, 101.0, 99.0]),
            &side(&[125.0, 126.0, 124.0]),
            20.0,
        );
        assert_eq!(quiet.verdict, Verdict::Regression, "{quiet:?}");
        // A doubled hot function is caught even on the busy machine.
        let doubled = judge(
            &busy(&[100.0, 101.0, 99.0]),
            &busy(&[184.0, 186.0, 183.0]),
            20.0,
        );
        assert_eq!(doubled.verdict, Verdict::Regression, "{doubled:?}");
    }

    #[test]
    fn one_disturbed_run_of_five_does_not_hide_a_slowdown() {
        let base = side(&[100.0, 101.0, 99.0, 100.0, 100.5]);
        let post = side(&[175.0, 178.0, 172.0, 350.0, 176.0]);
        assert_eq!(post.noise_source, NoiseSource::RobustSpread);
        let j = judge(&base, &post, 20.0);
        assert_eq!(j.verdict, Verdict::Regression, "{j:?}");
        // With three runs every run counts, and the same outlier makes it inconclusive.
        let few = judge(
            &side(&[100.0, 101.0, 99.0]),
            &side(&[175.0, 350.0, 174.0]),
            20.0,
        );
        assert_eq!(few.verdict, Verdict::Inconclusive, "{few:?}");
    }

    #[test]
    fn invalid_values_give_no_side() {
        assert!(Side::from_runs(&[], &[]).is_none());
        assert!(Side::from_runs(&[100.0, 0.0], &[0.01, 0.01]).is_none());
        assert!(Side::single(f64::NAN, 10.0, 1).is_none());
    }

    #[test]
    fn paired_ratios_decide_on_their_own_spread() {
        // Ten pairs within ±2 % of no change: a pass well inside a 10 % limit.
        let same = [
            0.01, -0.02, 0.0, 0.015, -0.01, 0.005, -0.005, 0.02, -0.015, 0.0,
        ];
        let j = judge_paired(&same, 10.0);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert!(
            j.low_pct < 0.0 && j.high_pct > 0.0 && j.high_pct < 3.0,
            "{j:?}"
        );

        // Fifteen percent slower in every pair, same jitter: a regression against 10 %.
        let slower: Vec<f64> = same.iter().map(|d| d + 1.15f64.ln()).collect();
        let j = judge_paired(&slower, 10.0);
        assert_eq!(j.verdict, Verdict::Regression, "{j:?}");
        assert!((j.change_pct - 15.0).abs() < 1.5, "{j:?}");

        // One pair ruined by a burst of other work does not hide it.
        let mut burst = slower.clone();
        burst[3] = 1.0;
        assert_eq!(judge_paired(&burst, 10.0).verdict, Verdict::Regression);

        // Faster by a fifth in every pair: an improvement.
        let faster: Vec<f64> = same.iter().map(|d| d + 0.8f64.ln()).collect();
        assert_eq!(judge_paired(&faster, 10.0).verdict, Verdict::Improvement);
    }

    #[test]
    fn few_pairs_use_students_t_and_one_pair_decides_nothing() {
        let j = judge_paired(&[0.0, 0.01], 10.0);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        // t(0.975, 1) = 12.71 on a standard error of 0.005: a half-width of about 6.6 %.
        assert!((j.noise_pct - 6.56).abs() < 0.2, "{j:?}");

        let j = judge_paired(&[0.05], 10.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(
            matches!(j.runs_needed, Some(RunsNeeded::Pairs { .. })),
            "{j:?}"
        );

        // Noisy pairs straddling the limit say how many pairs would settle it.
        let noisy = [0.02, 0.15, 0.05, 0.12, 0.0, 0.14];
        let j = judge_paired(&noisy, 10.0);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(
            matches!(j.runs_needed, Some(RunsNeeded::Pairs { pairs, .. } | RunsNeeded::Unreachable { max: pairs }) if pairs > 6),
            "{j:?}"
        );
    }
}

//! The little statistics the verdicts need: normal and Student-t quantiles, and the
//! Welch–Satterthwaite degrees of freedom of a difference of two means. Kept here, without
//! a statistics crate, because three formulas do not justify a dependency.

/// Inverse of the standard normal CDF, by Acklam's rational approximation (relative error
/// below 1.2e-9, far finer than any threshold here). `p` is clamped into (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Quantile of Student's t with `df` degrees of freedom (`df` may be fractional, as Welch's
/// is; infinite means normal). Exact for 1 and 2 degrees of freedom, the Cornish–Fisher
/// expansion to the fourth order above (within 1 % of the tables at df = 3, closer beyond).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    if !df.is_finite() {
        return normal_quantile(p);
    }
    let df = df.max(1.0);
    if df < 1.5 {
        return (std::f64::consts::PI * (p - 0.5)).tan();
    }
    if df < 2.5 {
        return (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
    }
    let z = normal_quantile(p);
    let z3 = z.powi(3);
    let z5 = z.powi(5);
    let z7 = z.powi(7);
    let z9 = z.powi(9);
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df.powi(2))
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * df.powi(4))
}

/// Welch–Satterthwaite degrees of freedom of a sum of variance terms `(variance, df)`;
/// a term with infinite degrees of freedom (a variance known from many samples) adds
/// nothing to the denominator. Infinite when every term is.
pub fn welch_df(terms: &[(f64, f64)]) -> f64 {
    let total: f64 = terms.iter().map(|(v, _)| v).sum();
    let denominator: f64 = terms
        .iter()
        .filter(|(_, df)| df.is_finite() && *df > 0.0)
        .map(|(v, df)| v * v / df)
        .sum();
    if denominator > 0.0 {
        total * total / denominator
    } else {
        f64::INFINITY
    }
}

/// Sample variance (n − 1 in the denominator); `None` below two values.
pub fn variance(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some(values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64)
}

/// Standard deviation estimated from the median absolute deviation (`1.4826 · MAD`, which
/// equals σ for normal data) and so undisturbed by a few outliers; `None` below two values.
pub fn mad_sigma(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let median = crate::criterion::median(values)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    Some(1.4826 * crate::criterion::median(&deviations)?)
}

/// A distribution-free confidence interval for the median of `values`: the order statistics
/// whose ranks a Binomial(n, ½) count puts outside the interval with probability at most
/// `1 − confidence` (the interval of the sign test). It needs no assumption about the shape of
/// the noise, which on a shared machine is anything but normal. `None` when there are too
/// few values for that confidence (fewer than six at 95 %).
pub fn median_ci(values: &[f64], confidence: f64) -> Option<(f64, f64)> {
    let n = values.len();
    let tail = (1.0 - confidence) / 2.0;
    // P(X <= k) for X ~ Binomial(n, 1/2), accumulated term by term in floating point
    // (exact binomial coefficients overflow u64 beyond n = 60 or so).
    let mut term = 0.5f64.powi(n as i32);
    let mut cumulative = 0.0;
    let mut lower_rank = None;
    for k in 0..n {
        cumulative += term;
        if cumulative > tail {
            break;
        }
        lower_rank = Some(k);
        term *= (n - k) as f64 / (k + 1) as f64;
    }
    let k = lower_rank?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((sorted[k], sorted[n - 1 - k]))
}

/// The Hodges–Lehmann estimate of the centre of `values` (the median of all pairwise means,
/// Walsh averages) with the distribution-free confidence interval that Wilcoxon's
/// signed-rank test gives it: the Walsh averages ranked `k + 1` and `M − k`, where `k` is
/// the largest count whose exact lower tail under the null hypothesis stays within
/// `(1 − confidence) / 2`. It assumes only that the values are symmetric about their centre
/// (which alternating two programs gives the pairs' log ratios when nothing changed) and
/// lets one disturbed value move the estimate little. `None` below the size at which the
/// confidence can be reached (six values at 95 %).
///
/// Written here rather than taken from a crate: the statistics crates on crates.io offer
/// the signed-rank test's p-value but not this interval, and it is thirty lines.
pub fn hodges_lehmann(values: &[f64], confidence: f64) -> Option<(f64, f64, f64)> {
    let n = values.len();
    if n == 0 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut walsh = Vec::with_capacity(n * (n + 1) / 2);
    for i in 0..n {
        for j in i..n {
            walsh.push((values[i] + values[j]) / 2.0);
        }
    }
    walsh.sort_by(f64::total_cmp);
    let centre = crate::criterion::median(&walsh)?;
    let k = signed_rank_critical(n, (1.0 - confidence) / 2.0)?;
    Some((centre, walsh[k], walsh[walsh.len() - 1 - k]))
}

/// The largest `k` with `P(T ≤ k) ≤ tail` (the critical value of the tables) for Wilcoxon's signed-rank statistic `T` of
/// `n` values under the null hypothesis, counted exactly (the number of subsets of
/// `1..=n` with each rank sum); `None` when even `P(T = 0)` exceeds the tail.
fn signed_rank_critical(n: usize, tail: f64) -> Option<usize> {
    let max_sum = n * (n + 1) / 2;
    let mut ways = vec![0f64; max_sum + 1];
    ways[0] = 1.0;
    for rank in 1..=n {
        for sum in (rank..=max_sum).rev() {
            ways[sum] += ways[sum - rank];
        }
    }
    let total = 2f64.powi(n as i32);
    let mut cumulative = 0.0;
    let mut k = None;
    for (sum, w) in ways.iter().enumerate() {
        cumulative += w / total;
        if cumulative > tail {
            break;
        }
        k = Some(sum);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn normal_quantiles_match_the_tables() {
        assert!(close(normal_quantile(0.975), 1.959_964, 1e-5));
        assert!(close(normal_quantile(0.5), 0.0, 1e-9));
        assert!(close(normal_quantile(0.01), -2.326_348, 1e-5));
        assert!(close(normal_quantile(0.999), 3.090_232, 1e-5));
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95 % critical values from the t table.
        for (df, table) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (4.0, 2.776),
            (8.0, 2.306),
            (30.0, 2.042),
        ] {
            let t = t_quantile(0.975, df);
            assert!(close(t, table, table * 0.01), "df {df}: {t} vs {table}");
        }
        assert!(close(t_quantile(0.975, f64::INFINITY), 1.96, 1e-3));
    }

    #[test]
    fn welch_degrees_of_freedom() {
        // Equal variances and sizes: df = 2 (n − 1).
        assert!(close(welch_df(&[(1.0, 2.0), (1.0, 2.0)]), 4.0, 1e-9));
        // One side known exactly: only the other side's df counts.
        assert!(close(
            welch_df(&[(1.0, 2.0), (1.0, f64::INFINITY)]),
            8.0,
            1e-9
        ));
        assert!(welch_df(&[(1.0, f64::INFINITY)]).is_infinite());
    }

    #[test]
    fn mad_sigma_ignores_an_outlier() {
        let sigma = mad_sigma(&[1.0, 2.0, 3.0, 4.0, 100.0]).expect("five values");
        assert!(close(sigma, 1.4826, 1e-9), "{sigma}");
        assert_eq!(mad_sigma(&[1.0]), None);
    }

    #[test]
    fn median_interval_uses_the_sign_test_ranks() {
        // The classic table: for n = 10 the 95 % interval runs from the 2nd to the 9th value,
        // for n = 20 from the 6th to the 15th, for n = 29 from the 9th to the 21st.
        for (n, lower, upper) in [(10, 2, 9), (20, 6, 15), (29, 9, 21)] {
            let values: Vec<f64> = (1..=n).rev().map(f64::from).collect();
            assert_eq!(
                median_ci(&values, 0.95),
                Some((f64::from(lower), f64::from(upper))),
                "n = {n}"
            );
        }
        // Five values cannot give 95 %: even the extremes leave 2 · 1/32 outside.
        assert_eq!(median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), None);
        assert_eq!(
            median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.95),
            Some((1.0, 6.0))
        );
    }

    #[test]
    fn sample_variance() {
        assert_eq!(variance(&[1.0]), None);
        assert!(close(
            variance(&[1.0, 2.0, 3.0]).expect("3 values"),
            1.0,
            1e-12
        ));
    }

    #[test]
    fn hodges_lehmann_interval_matches_the_signed_rank_tables() {
        // Two-sided 5 % critical values of the signed-rank statistic: none for n = 5, 0 for
        // n = 6, 3 for n = 8, 8 for n = 10, 21 for n = 14 (T <= value is significant); the
        // interval drops that many Walsh averages at each end.
        assert_eq!(signed_rank_critical(5, 0.025), None);
        for (n, table) in [(6, 0), (8, 3), (10, 8), (14, 21)] {
            assert_eq!(signed_rank_critical(n, 0.025), Some(table), "n = {n}");
        }
        let (centre, low, high) =
            hodges_lehmann(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.95).expect("six values");
        assert!(close(centre, 3.5, 1e-12));
        assert!(close(low, 1.0, 1e-12) && close(high, 6.0, 1e-12));
        // One wild value moves the centre little: the mean would be 12.
        let values = [0.9, 1.0, 1.1, 1.0, 0.95, 1.05, 1.0, 80.0];
        let (centre, low, high) = hodges_lehmann(&values, 0.95).expect("eight values");
        assert!(centre > 0.99 && centre < 1.1, "{centre}");
        assert!(low < centre && high > centre);
        assert_eq!(hodges_lehmann(&[1.0; 5], 0.95).map(|c| c.0), None);
    }
}

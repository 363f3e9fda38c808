//! Medians with distribution-free confidence intervals, for ratios measured
//! once per round: no assumption about how this machine's noise is shaped.

/// A median and an interval that holds the true median with at least the
/// stated confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// The interval's actual coverage (for example 0.979 for 10 values).
    pub coverage: f64,
}

/// The median of `values` and the order-statistic interval `(x(k), x(n+1-k))`
/// with the largest `k` whose coverage is still at least 95% (binomial with
/// p = 1/2). Needs 6 values or more for that; with fewer, the interval is
/// the whole range and its coverage says so. `None` for no values.
pub fn median_interval(values: &[f64]) -> Option<Interval> {
    let mut xs: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    // P(X < k) for X ~ Binomial(n, 1/2): the chance the median lies below x(k).
    let below =
        |k: usize| -> f64 { (0..k).map(|i| binomial(n, i)).sum::<f64>() / 2f64.powi(n as i32) };
    let mut k = 1;
    while k < n / 2 && below(k + 1) <= 0.025 {
        k += 1;
    }
    Some(Interval {
        median,
        low: xs[k - 1],
        high: xs[n - k],
        coverage: 1.0 - 2.0 * below(k),
    })
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_rounds_give_the_second_and_ninth_values_at_97_9_percent() {
        let values = [1.09, 1.02, 1.20, 1.05, 1.11, 1.07, 1.01, 1.30, 1.08, 1.04];
        let i = median_interval(&values).unwrap();
        assert!((i.median - 1.075).abs() < 1e-12);
        assert_eq!((i.low, i.high), (1.02, 1.20));
        assert!((i.coverage - (1.0 - 2.0 * 11.0 / 1024.0)).abs() < 1e-12);
    }

    #[test]
    fn twenty_rounds_narrow_to_the_sixth_and_fifteenth_values() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let i = median_interval(&values).unwrap();
        assert_eq!((i.median, i.low, i.high), (10.5, 6.0, 15.0));
        assert!(i.coverage >= 0.95 && i.coverage < 0.99, "{}", i.coverage);
    }

    #[test]
    fn too_few_rounds_give_the_whole_range_and_say_so() {
        let i = median_interval(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((i.median, i.low, i.high), (2.0, 1.0, 3.0));
        assert!(i.coverage < 0.95);
        assert!(median_interval(&[]).is_none());
        assert!(median_interval(&[f64::NAN]).is_none());
    }
}

//! Counters: the arithmetic of the reference's `counters[key] += v * (1 / rate)`.
//!
//! Imports nothing of the crate outside `aggregate`.

/// A counter value as the reference adds it: `v * (1 / sample_rate)`, in that
/// operation order, so that the float result is identical.
#[inline]
pub(crate) fn scaled(value: f64, sample_rate: f64) -> f64 {
    value * (1.0 / sample_rate)
}

/// `total += value`, as the reference does it:
/// `if (!counters[key]) counters[key] = 0; counters[key] += value`.
///
/// The falsy check matters only for NaN (an overflowed sum such as
/// `inf + -inf`): the reference restarts from 0 rather than staying NaN.
#[inline]
pub(crate) fn accumulate(total: &mut f64, value: f64) {
    if *total == 0.0 || total.is_nan() {
        *total = 0.0;
    }
    *total += value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_the_reference() {
        // (values with their rates, expected sum); expectations from node:
        // let c = 0; for (const [v, r] of xs) { if (!c) c = 0; c += v * (1 / r); }
        let cases: &[(&[(f64, f64)], f64)] = &[
            (&[(1.0, 1.0), (2.0, 1.0)], 3.0),
            (&[(1.0, 0.1)], 10.0),
            (&[(0.1, 1.0), (0.2, 1.0)], 0.30000000000000004),
            (&[(3.0, 0.3)], 10.0),
            (
                &[(1e308, 1.0), (1e308, 1.0), (-f64::MAX, 1.0), (5.0, 1.0)],
                f64::INFINITY,
            ),
            // inf + -inf = NaN, which the reference's `!counter` resets to 0.
            (&[(1e308, 0.1), (-1e308, 0.1), (2.0, 1.0)], 2.0),
        ];
        for (values, want) in cases {
            let mut total = 0.0;
            for &(v, r) in *values {
                accumulate(&mut total, scaled(v, r));
            }
            assert_eq!(total, *want, "{values:?}");
        }
    }
}

//! Gauges: what one shard saw of a gauge in one interval, applied onto the
//! registry's persistent value in the reference's order.
//!
//! Imports nothing of the crate outside `aggregate`.

/// Deltas kept one by one per gauge and shard before the rest are summed.
///
/// The reference adds each delta to the running value in arrival order. A
/// shard does not know the running value (the registry holds it), so it keeps
/// the deltas and the registry applies them in order: bit-identical results
/// for up to this many deltas per interval, bounded memory beyond.
pub(crate) const EXACT_DELTAS: usize = 64;

/// `cur (+)= delta` as the reference does it:
/// `if (gauges[key] && /^[-+]/) gauges[key] += d; else gauges[key] = d`.
///
/// A current value of 0 or NaN is falsy in JavaScript, so the delta replaces it.
#[inline]
pub(crate) fn apply_delta(cur: Option<f64>, delta: f64) -> f64 {
    match cur {
        Some(c) if c != 0.0 && !c.is_nan() => c + delta,
        _ => delta,
    }
}

/// One interval's updates to one gauge, as seen by one shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GaugeUpdate {
    /// An absolute value arrived (then any later deltas were applied to it).
    Absolute(f64),
    /// Only deltas arrived, in order; past [`EXACT_DELTAS`] the rest are summed
    /// into the last one.
    Deltas(Vec<f64>),
}

impl GaugeUpdate {
    /// The update for a first value: absolute, or a delta.
    pub(crate) fn new(value: f64, is_delta: bool) -> GaugeUpdate {
        if is_delta {
            GaugeUpdate::Deltas(vec![value])
        } else {
            GaugeUpdate::Absolute(value)
        }
    }

    /// An absolute value: whatever came before no longer matters.
    pub(crate) fn set(&mut self, value: f64) {
        *self = GaugeUpdate::Absolute(value);
    }

    /// A `+N` / `-N` value.
    pub(crate) fn delta(&mut self, delta: f64) {
        match self {
            GaugeUpdate::Absolute(v) => *v = apply_delta(Some(*v), delta),
            GaugeUpdate::Deltas(ds) => {
                if ds.len() < EXACT_DELTAS {
                    ds.push(delta);
                } else if let Some(last) = ds.last_mut() {
                    *last += delta;
                }
            }
        }
    }

    /// The gauge's value after this update, given its value before.
    pub(crate) fn apply(&self, cur: Option<f64>) -> f64 {
        match self {
            GaugeUpdate::Absolute(v) => *v,
            GaugeUpdate::Deltas(ds) => {
                let mut v = cur;
                for &d in ds {
                    v = Some(apply_delta(v, d));
                }
                // `ds` is never empty: it starts with one delta and only grows.
                v.unwrap_or(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (previous value, updates as (value, is_delta), expected). Expectations
    /// from node running the reference's gauge branch of handlePacket.
    #[test]
    fn like_the_reference() {
        type Case = (Option<f64>, &'static [(f64, bool)], f64);
        let cases: &[Case] = &[
            (None, &[(5.0, false)], 5.0),
            (None, &[(5.0, true)], 5.0),
            (None, &[(-5.0, true)], -5.0),
            (Some(3.0), &[(5.0, true)], 8.0),
            (Some(3.0), &[(-5.0, true), (1.0, false), (2.0, true)], 3.0),
            (Some(0.1), &[(0.2, true), (0.3, true)], 0.6000000000000001),
            (Some(0.0), &[(0.2, true)], 0.2),
            (Some(f64::NAN), &[(0.2, true)], 0.2),
            (Some(3.0), &[(-3.0, true), (4.0, true)], 4.0),
            (None, &[(0.0, false), (7.0, true)], 7.0),
        ];
        for (cur, updates, want) in cases {
            let mut it = updates.iter();
            let &(v, d) = it.next().expect("a case has updates");
            let mut u = GaugeUpdate::new(v, d);
            for &(v, d) in it {
                if d {
                    u.delta(v)
                } else {
                    u.set(v)
                }
            }
            assert_eq!(u.apply(*cur), *want, "{cur:?} {updates:?}");
        }
    }

    #[test]
    fn deltas_are_bounded() {
        let mut u = GaugeUpdate::new(1.0, true);
        for _ in 0..1000 {
            u.delta(1.0);
        }
        match &u {
            GaugeUpdate::Deltas(ds) => assert_eq!(ds.len(), EXACT_DELTAS),
            other => panic!("{other:?}"),
        }
        assert_eq!(u.apply(Some(10.0)), 1011.0);
    }
}

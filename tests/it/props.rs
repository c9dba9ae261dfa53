//! Property tests of aggregation and flush, driving the real code: values go
//! into per-thread `Shard`s, the shards' snapshots merge into a `Registry`,
//! and `flush::compute::compute` turns it into the batch the sinks send.
//!
//! Values are chosen so that the arithmetic is exact where the reference's
//! is (integers, sample rates that are powers of two), so that any
//! difference is a bug and not rounding. The one exception is a timer past
//! its exact bound (histogram mode): its `std` comes from Welford's running
//! algorithm merged with Chan's formula, whose rounding depends on the order
//! samples and snapshots arrived in, so it may differ by a relative 1e-12
//! (see `HdrSamples`); every other stat must be identical.
//!
//! Failing cases are kept in tests/proptest-regressions/props.txt and
//! replayed first on every run.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::flush::compute::{compute, ComputeOptions, Percentile};
use statsyard::flush::FlushBatch;
use statsyard::metric::{MetricRef, MetricType, Value};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// The relative error the histogram's percentiles may have (timer.rs: a
/// bucket's midpoint is within 0.05% of its samples, plus 0.0005 ms from
/// recording microseconds, which is another 0.05% for samples >= 1 ms).
const HIST_ERROR: f64 = 1e-3;
/// How far a histogram-mode `std` may move with the order of arrival.
const STD_ERROR: f64 = 1e-12;

const PERCENTILES: [f64; 4] = [90.0, 50.0, 99.9, -10.0];

fn compute_options() -> ComputeOptions {
    ComputeOptions {
        interval: Duration::from_secs(10),
        percentiles: PERCENTILES
            .iter()
            .map(|&value| Percentile { value })
            .collect(),
        ..ComputeOptions::default()
    }
}

fn aggregate_options(timer_exact_samples: usize) -> AggregateOptions {
    AggregateOptions {
        timer_exact_samples,
        ..AggregateOptions::default()
    }
}

/// One value as a client sends it. Keys are few, so that series collide.
#[derive(Debug, Clone)]
enum Ev {
    /// `c<key>:<v>|c|@2^-k`
    Counter { key: u8, v: i32, k: u8 },
    /// `g<key>:+<v>|g` (or `-`): deltas add up in any order.
    GaugeDelta { key: u8, v: i32 },
    /// `t<key>:<v>|ms|@2^-k`
    Timer { key: u8, v: u32, k: u8 },
    /// `s<key>:<member>|s`
    Set { key: u8, member: u8 },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..3, any::<i32>(), 0u8..=4).prop_map(|(key, v, k)| Ev::Counter { key, v, k }),
        (0u8..3, -1_000_000i32..1_000_000).prop_map(|(key, v)| Ev::GaugeDelta { key, v }),
        (0u8..3, 0u32..100_000, 0u8..=4).prop_map(|(key, v, k)| Ev::Timer { key, v, k }),
        (0u8..3, any::<u8>()).prop_map(|(key, member)| Ev::Set { key, member }),
    ]
}

fn insert(shard: &mut Shard, e: &Ev) {
    let (key, kind, value, k) = match *e {
        Ev::Counter { key, v, k } => (
            format!("c{key}"),
            MetricType::Counter,
            Value::Number(v.into()),
            k,
        ),
        Ev::GaugeDelta { key, v } => (
            format!("g{key}"),
            MetricType::Gauge,
            Value::GaugeDelta(v.into()),
            0,
        ),
        Ev::Timer { key, v, k } => (
            format!("t{key}"),
            MetricType::Timer,
            Value::Number(v.into()),
            k,
        ),
        Ev::Set { key, member } => {
            let member = [member];
            shard.insert(&MetricRef {
                key: format!("s{key}").as_bytes(),
                kind: MetricType::Set,
                value: Value::SetMember(&member),
                sample_rate: 1.0,
                timestamp: None,
            });
            return;
        }
    };
    shard.insert(&MetricRef {
        key: key.as_bytes(),
        kind,
        value,
        sample_rate: 0.5f64.powi(k.into()),
        timestamp: None,
    });
}

/// Feed `events` to `shards` shards (event i to shard `assign[i] % shards`),
/// merge the snapshots in shard order, and flush.
fn flush(events: &[Ev], assign: &[usize], shards: usize, exact: usize) -> FlushBatch {
    let opts = aggregate_options(exact);
    let mut s: Vec<Shard> = (0..shards).map(|_| Shard::new(&opts)).collect();
    for (i, e) in events.iter().enumerate() {
        let n = assign.get(i).copied().unwrap_or(i) % shards;
        insert(&mut s[n], e);
    }
    let mut reg = Registry::new(&opts);
    for mut shard in s {
        reg.merge(shard.take());
    }
    compute(&reg, &compute_options(), 1_700_000_000)
}

/// A timer registry from groups of samples, one shard per group, merged in
/// the order given.
fn timers(groups: &[&[f64]], exact: usize) -> FlushBatch {
    let opts = aggregate_options(exact);
    let mut reg = Registry::new(&opts);
    for group in groups {
        let mut shard = Shard::new(&opts);
        for &v in *group {
            shard.insert(&MetricRef {
                key: b"t",
                kind: MetricType::Timer,
                value: Value::Number(v),
                sample_rate: 1.0,
                timestamp: None,
            });
        }
        reg.merge(shard.take());
    }
    compute(&reg, &compute_options(), 1_700_000_000)
}

/// Every value of a batch by name (`c c0 value`, `t t1 upper_90`, ...),
/// sorted, without the processing time.
fn flat(b: &FlushBatch) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for c in &b.counters {
        out.push((format!("c {} value", c.key), c.value));
        out.push((format!("c {} rate", c.key), c.rate));
    }
    for t in &b.timers {
        for (name, v) in t.stats.iter().chain(&t.histogram) {
            out.push((format!("t {} {name}", t.key), *v));
        }
    }
    for g in &b.gauges {
        out.push((format!("g {}", g.key), g.value));
    }
    for s in &b.sets {
        out.push((format!("s {}", s.key), s.count as f64));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The same names and values; a timer's `std` within [`STD_ERROR`]
/// (relative) when `std_may_round`.
fn assert_same(a: &[(String, f64)], b: &[(String, f64)], std_may_round: bool) {
    let names = |x: &[(String, f64)]| x.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for ((name, x), (_, y)) in a.iter().zip(b) {
        if std_may_round && name.ends_with(" std") {
            let err = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            assert!(err <= STD_ERROR, "{name}: {x} vs {y} ({err:e})");
        } else {
            assert_eq!(x, y, "{name}");
        }
    }
}

fn stat(b: &FlushBatch, name: &str) -> f64 {
    let t = &b.timers[0];
    t.stats
        .iter()
        .find(|(n, _)| &**n == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", t.stats))
        .1
}

fn has_stat(b: &FlushBatch, name: &str) -> bool {
    b.timers[0].stats.iter().any(|(n, _)| &**n == name)
}

/// The nearest rank of a percentile as the reference computes it
/// (`Math.round(|pct| / 100 * count)`), if it selects any sample.
fn rank(pct: f64, count: usize) -> Option<usize> {
    let n = (pct.abs() / 100.0 * count as f64).round() as usize;
    (n > 0).then_some(n)
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

fn median(s: &[f64]) -> f64 {
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    }
}

fn within(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

proptest! {
    #![proptest_config(config(256))]

    /// Counter values, each divided by its sample rate, sum exactly, over any
    /// number of shards.
    #[test]
    fn counter_sums_are_exact(
        values in prop::collection::vec((any::<i32>(), 0u8..=6), 1..300),
        shards in 1usize..5,
        assign in prop::collection::vec(any::<usize>(), 300),
    ) {
        let events: Vec<Ev> = values
            .iter()
            .map(|&(v, k)| Ev::Counter { key: 0, v, k })
            .collect();
        let batch = flush(&events, &assign, shards, 10_000);
        let want: i128 = values.iter().map(|&(v, k)| i128::from(v) << k).sum();
        prop_assert_eq!(batch.counters.len(), 1);
        prop_assert_eq!(batch.counters[0].value, want as f64);
        prop_assert_eq!(batch.counters[0].rate, want as f64 / 10.0);
    }

    /// With every sample kept, percentiles and the other stats are the exact
    /// nearest-rank values of the sorted samples.
    #[test]
    fn exact_percentiles_are_exact(
        samples in prop::collection::vec(0.0f64..1e6, 1..400),
        shards in 1usize..4,
    ) {
        let groups: Vec<&[f64]> = samples.chunks(samples.len().div_ceil(shards)).collect();
        let batch = timers(&groups, 10_000);
        let s = sorted(&samples);
        let count = s.len();
        prop_assert_eq!(stat(&batch, "upper"), s[count - 1]);
        prop_assert_eq!(stat(&batch, "lower"), s[0]);
        prop_assert_eq!(stat(&batch, "median"), median(&s));
        prop_assert_eq!(stat(&batch, "count"), count as f64);
        for pct in PERCENTILES {
            let suffix = statsyard::flush::compute::percentile_suffix(pct);
            let Some(n) = rank(pct, count).filter(|_| count > 1) else {
                continue;
            };
            prop_assert_eq!(stat(&batch, &format!("count_{suffix}")), n as f64);
            if pct > 0.0 {
                prop_assert_eq!(stat(&batch, &format!("upper_{suffix}")), s[n - 1]);
                let sum = s[..n].iter().fold(0.0, |a, v| v + a);
                prop_assert_eq!(stat(&batch, &format!("sum_{suffix}")), sum);
            } else {
                prop_assert_eq!(stat(&batch, &format!("lower_{suffix}")), s[count - n]);
            }
        }
    }

    /// Past the exact bound, percentiles come from the histogram: within
    /// 0.1% of the exact nearest-rank sample, with exact ranks, extremes and
    /// (for integer samples) sums.
    #[test]
    fn histogram_percentiles_are_within_a_tenth_of_a_percent(
        samples in prop::collection::vec(1u32..10_000_000, 40..2_000),
        frac in prop::collection::vec(0u32..1000, 2_000),
        shards in 1usize..4,
    ) {
        // Milliseconds with a fractional part, >= 1 ms.
        let samples: Vec<f64> = samples
            .iter()
            .zip(&frac)
            .map(|(&ms, &f)| f64::from(ms) / 10.0 + f64::from(f) / 1e4)
            .map(|v: f64| v.max(1.0))
            .collect();
        let groups: Vec<&[f64]> = samples.chunks(samples.len().div_ceil(shards)).collect();
        let batch = timers(&groups, 16);
        let s = sorted(&samples);
        let count = s.len();
        prop_assert_eq!(stat(&batch, "upper"), s[count - 1]);
        prop_assert_eq!(stat(&batch, "lower"), s[0]);
        prop_assert_eq!(stat(&batch, "count"), count as f64);
        let m = stat(&batch, "median");
        prop_assert!(within(m, median(&s), HIST_ERROR), "median {} vs {}", m, median(&s));
        for pct in PERCENTILES {
            let suffix = statsyard::flush::compute::percentile_suffix(pct);
            let Some(n) = rank(pct, count) else {
                let name = format!("count_{suffix}");
                prop_assert!(!has_stat(&batch, &name), "{} is there", name);
                continue;
            };
            prop_assert_eq!(stat(&batch, &format!("count_{suffix}")), n as f64);
            let (name, want) = if pct > 0.0 {
                (format!("upper_{suffix}"), s[n - 1])
            } else {
                (format!("lower_{suffix}"), s[count - n])
            };
            let got = stat(&batch, &name);
            prop_assert!(within(got, want, HIST_ERROR), "{}: {} vs {}", name, got, want);
        }
    }

    /// Merging histograms is associative (and commutative): three shards'
    /// histograms merged as ((a+b)+c), ((b+c)+a) = a+(b+c), and every other
    /// order flush the same stats.
    #[test]
    fn histogram_merge_is_associative(
        a in prop::collection::vec(1u32..100_000, 17..300),
        b in prop::collection::vec(1u32..100_000, 17..300),
        c in prop::collection::vec(1u32..100_000, 17..300),
    ) {
        let [a, b, c] = [a, b, c].map(|g| g.into_iter().map(f64::from).collect::<Vec<f64>>());
        let orders: [[&[f64]; 3]; 6] = [
            [&a, &b, &c],
            [&b, &c, &a],
            [&a, &c, &b],
            [&b, &a, &c],
            [&c, &a, &b],
            [&c, &b, &a],
        ];
        let first = flat(&timers(&orders[0], 16));
        for order in &orders[1..] {
            assert_same(&first, &flat(&timers(order, 16)), true);
        }
    }

    /// The order values arrive in, and how they spread over shards, does not
    /// change the flush: exactly with every timer sample kept, and up to
    /// `std`'s rounding past the exact bound.
    #[test]
    fn order_of_arrival_does_not_change_the_flush(
        events in prop::collection::vec(ev(), 1..400),
        seed in any::<u64>(),
        shards in 1usize..5,
        assign in prop::collection::vec(any::<usize>(), 400),
    ) {
        // A permutation from the seed (Fisher-Yates with an LCG), so that
        // proptest shrinks the events and the shuffle separately.
        let mut shuffled = events.clone();
        let mut x = seed;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        for exact in [10_000, 8] {
            let one = flat(&flush(&events, &[], 1, exact));
            let many = flat(&flush(&shuffled, &assign, shards, exact));
            assert_same(&one, &many, exact == 8);
        }
    }
}

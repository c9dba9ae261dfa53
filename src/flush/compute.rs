//! Registry → [`FlushBatch`]: the reference's
//! `process_metrics`, as a pure function.
//!
//! A timer with exact samples gets the reference's statistics bit for bit:
//! the same sort, the same cumulative sums in the same order, the same
//! nearest-rank `Math.round`. A timer that went past the exact bound gets the
//! same statistics derived from its histogram (see
//! [`HdrSamples`] for the accuracy).
//!
//! Imports, besides `flush` itself: `aggregate`, `metric`.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::number::js_number;
use super::{CounterOut, FlushBatch, GaugeOut, SetOut, TimerOut};
use crate::aggregate::{HdrSamples, Registry, Timer, TimerSamples};
use crate::metric::MetricKey;

/// A `percentThreshold` entry. Its stat names (`upper_99_9`, `lower_top10`...)
/// are built from the value's JavaScript string form, as the reference builds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentile {
    /// Positive: the lowest `value`% of the samples; negative: the highest.
    pub value: f64,
}

/// A `histogram` rule: timers whose key contains `metric` get these bins.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRule {
    /// A substring of the full key (tags included); the first matching rule wins.
    pub metric: String,
    /// Upper limits in order; a sample counts in the first bin it is below.
    pub bins: Vec<Bin>,
}

/// A histogram bin's non-inclusive upper limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Bin {
    /// Samples below this limit (and not in an earlier bin).
    Limit(f64),
    /// Every remaining sample (`'inf'`).
    Inf,
}

/// How timers are summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeOptions {
    /// The flush interval, which rates are per second of.
    pub interval: Duration,
    /// The reference's `percentThreshold`.
    pub percentiles: Vec<Percentile>,
    /// The reference's `histogram`.
    pub histograms: Vec<HistogramRule>,
    /// The reference's `calculatedTimerMetrics`; `None` (or empty) keeps all.
    pub calculated_timer_metrics: Option<Vec<String>>,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        ComputeOptions {
            interval: Duration::from_secs(10),
            percentiles: vec![Percentile { value: 90.0 }],
            histograms: Vec::new(),
            calculated_timer_metrics: None,
        }
    }
}

/// Compute one flush from the registry (the reference's `process_metrics`).
///
/// `timestamp` is stored in the batch as it is; `processing_time_ms` is the
/// whole milliseconds the computation took.
pub fn compute(reg: &Registry, opts: &ComputeOptions, timestamp: u64) -> FlushBatch {
    let started = Instant::now();
    // The reference divides by `flushInterval / 1000` with the interval in
    // (integer) milliseconds; nanoseconds / 1e6 is exactly that for whole ms.
    let interval_s = opts.interval.as_nanos() as f64 / 1e6 / 1000.0;
    let names = Names::new(opts);

    let counters = reg
        .counters()
        .map(|(key, value)| CounterOut {
            key: key.clone(),
            value,
            rate: value / interval_s,
        })
        .collect();

    let mut scratch = Scratch::default();
    let timers = reg
        .timers()
        .map(|(key, t)| timer_out(key, t, &names, interval_s, &mut scratch))
        .collect();

    let gauges = reg
        .gauges()
        .map(|(key, value)| GaugeOut {
            key: key.clone(),
            value,
        })
        .collect();
    let sets = reg
        .sets()
        .map(|(key, count)| SetOut {
            key: key.clone(),
            count,
        })
        .collect();

    FlushBatch {
        timestamp,
        interval: opts.interval,
        counters,
        timers,
        gauges,
        sets,
        processing_time_ms: started.elapsed().as_millis() as f64,
    }
}

/// The reference's `filter_timer_metrics` test for one stat name: whether
/// `calculatedTimerMetrics` keeps it. Percentile stats (`count_90`,
/// `lower_top10`) are matched as `<stat>_percent`; the reference's regex
/// `_(top)?\d+$` only sees the part after the last `_`, so `mean_99_9` is
/// matched as `mean_99_percent` (and is therefore never kept by `mean_percent`).
pub fn keeps_timer_stat(calculated: Option<&[String]>, name: &str) -> bool {
    let Some(calculated) = calculated.filter(|c| !c.is_empty()) else {
        return true;
    };
    let cleaned = percent_cleaned(name);
    calculated.iter().any(|c| *c == *cleaned)
}

/// `name.replace(/_(top)?\d+$/, "_percent")`.
fn percent_cleaned(name: &str) -> std::borrow::Cow<'_, str> {
    if let Some(i) = name.rfind('_') {
        let rest = &name[i + 1..];
        let digits = rest.strip_prefix("top").unwrap_or(rest);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return format!("{}_percent", &name[..i]).into();
        }
    }
    name.into()
}

/// `('' + pct).replace('.', '_').replace('-', 'top')`: each replaces the first only.
pub fn percentile_suffix(pct: f64) -> String {
    js_number(pct).replacen('.', "_", 1).replacen('-', "top", 1)
}

/// `'bin_' + bin.toString().replace('.', '_')`.
fn bin_name(bin: &Bin) -> String {
    match bin {
        Bin::Limit(v) => format!("bin_{}", js_number(*v).replacen('.', "_", 1)),
        Bin::Inf => "bin_inf".to_owned(),
    }
}

/// A stat name, or `None` when `calculatedTimerMetrics` drops it.
type Name = Option<Arc<str>>;

/// Every stat name of this flush, built (and filtered) once rather than per timer.
struct Names {
    percentiles: Vec<PctNames>,
    std: Name,
    upper: Name,
    lower: Name,
    count: Name,
    count_ps: Name,
    sum: Name,
    sum_squares: Name,
    mean: Name,
    median: Name,
    /// Histogram rules, or none when `calculatedTimerMetrics` drops `histogram`.
    rules: Vec<RuleNames>,
}

struct PctNames {
    pct: f64,
    count: Name,
    mean: Name,
    /// `upper_<pct>` for a positive percentile, `lower_top<pct>` for a negative one.
    bound: Name,
    sum: Name,
    sum_squares: Name,
}

struct RuleNames {
    metric: Vec<u8>,
    bins: Vec<Bin>,
    /// For each bin, its slot in `slots`: bins with the same name share one,
    /// and the later bin's count wins, as with the reference's object keys.
    slot_of_bin: Vec<usize>,
    slots: Vec<Arc<str>>,
}

impl Names {
    fn new(opts: &ComputeOptions) -> Names {
        let calc = opts.calculated_timer_metrics.as_deref();
        let name = |n: String| keeps_timer_stat(calc, &n).then(|| Arc::from(n));
        let mut percentiles: Vec<PctNames> = Vec::new();
        let mut seen = Vec::new();
        for p in &opts.percentiles {
            let suffix = percentile_suffix(p.value);
            // The same percentile twice writes the same keys twice in the
            // reference, with the same values: keep it once.
            if seen.contains(&suffix) {
                continue;
            }
            let bound = if p.value > 0.0 { "upper" } else { "lower" };
            percentiles.push(PctNames {
                pct: p.value,
                count: name(format!("count_{suffix}")),
                mean: name(format!("mean_{suffix}")),
                bound: name(format!("{bound}_{suffix}")),
                sum: name(format!("sum_{suffix}")),
                sum_squares: name(format!("sum_squares_{suffix}")),
            });
            seen.push(suffix);
        }
        let rules = if keeps_timer_stat(calc, "histogram") {
            opts.histograms.iter().map(RuleNames::new).collect()
        } else {
            Vec::new()
        };
        let fixed = |n: &str| name(n.to_owned());
        Names {
            percentiles,
            std: fixed("std"),
            upper: fixed("upper"),
            lower: fixed("lower"),
            count: fixed("count"),
            count_ps: fixed("count_ps"),
            sum: fixed("sum"),
            sum_squares: fixed("sum_squares"),
            mean: fixed("mean"),
            median: fixed("median"),
            rules,
        }
    }

    /// The first rule whose metric the full key contains (`key.indexOf(metric) > -1`).
    fn rule_for(&self, key: &MetricKey) -> Option<&RuleNames> {
        let key = key.as_bytes();
        self.rules.iter().find(|r| {
            r.metric.is_empty()
                || key
                    .windows(r.metric.len())
                    .any(|w| w == r.metric.as_slice())
        })
    }
}

impl RuleNames {
    fn new(rule: &HistogramRule) -> RuleNames {
        let mut slots: Vec<Arc<str>> = Vec::new();
        let mut slot_of_bin = Vec::with_capacity(rule.bins.len());
        for bin in &rule.bins {
            let n = bin_name(bin);
            let slot = match slots.iter().position(|s| **s == *n) {
                Some(i) => i,
                None => {
                    slots.push(Arc::from(n));
                    slots.len() - 1
                }
            };
            slot_of_bin.push(slot);
        }
        RuleNames {
            metric: rule.metric.as_bytes().to_vec(),
            bins: rule.bins.clone(),
            slot_of_bin,
            slots,
        }
    }

    /// Bin counts over samples given in ascending order as (value, how many)
    /// runs, with the reference's single pass: a bin takes samples while they
    /// are below its limit, starting where the previous bin stopped (so
    /// samples at or above the last finite limit are not counted anywhere).
    fn counts(&self, runs: impl Iterator<Item = (f64, u64)>) -> Vec<(Arc<str>, f64)> {
        let mut counts = vec![0.0; self.slots.len()];
        let mut runs = runs.peekable();
        for (bin, &slot) in self.bins.iter().zip(&self.slot_of_bin) {
            let mut freq = 0u64;
            while let Some(&(v, n)) = runs.peek() {
                let inside = match bin {
                    Bin::Inf => true,
                    Bin::Limit(limit) => v < *limit,
                };
                if !inside {
                    break;
                }
                freq += n;
                runs.next();
            }
            counts[slot] = freq as f64;
        }
        self.slots.iter().cloned().zip(counts).collect()
    }
}

/// Buffers reused from one timer to the next.
#[derive(Default)]
struct Scratch {
    sorted: Vec<f64>,
    cumulative: Vec<f64>,
    cumulative_squares: Vec<f64>,
    runs: Vec<(f64, u64)>,
}

/// Adds a stat unless its name was filtered out.
fn put(stats: &mut Vec<(Arc<str>, f64)>, name: &Name, value: f64) {
    if let Some(name) = name {
        stats.push((name.clone(), value));
    }
}

fn timer_out(
    key: &MetricKey,
    t: &Timer,
    names: &Names,
    interval_s: f64,
    scratch: &mut Scratch,
) -> TimerOut {
    let mut stats = Vec::new();
    let mut histogram = Vec::new();
    if t.is_empty() {
        // An idle timer the reference keeps: `count = count_ps = 0`, nothing else.
        put(&mut stats, &names.count, 0.0);
        put(&mut stats, &names.count_ps, 0.0);
    } else {
        let rule = names.rule_for(key);
        match t.samples() {
            TimerSamples::Exact(samples) => {
                exact_stats(samples, &mut stats, names, scratch);
                if let Some(rule) = rule {
                    histogram = rule.counts(scratch.sorted.iter().map(|&v| (v, 1)));
                }
            }
            TimerSamples::Hist(h) => {
                h.runs(&mut scratch.runs);
                hdr_stats(h, &scratch.runs, &mut stats, names);
                if let Some(rule) = rule {
                    histogram = rule.counts(scratch.runs.iter().copied());
                }
            }
        }
        put(&mut stats, &names.count, t.count());
        put(&mut stats, &names.count_ps, t.count() / interval_s);
    }
    TimerOut {
        key: key.clone(),
        kind: t.kind(),
        stats,
        histogram,
    }
}

/// The reference's stats for a non-empty sample list, operation for
/// operation. Leaves the sorted samples in `scratch.sorted`. Pushes
/// everything but `count` and `count_ps`, which need the sample rates.
fn exact_stats(
    samples: &[f64],
    stats: &mut Vec<(Arc<str>, f64)>,
    names: &Names,
    scratch: &mut Scratch,
) {
    let values = &mut scratch.sorted;
    values.clear();
    values.extend_from_slice(samples);
    // `sort((a, b) => a - b)`: a stable sort in which -0 and 0 compare equal
    // (samples are finite, so `partial_cmp` never fails).
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    let values = &scratch.sorted[..];
    let count = values.len();
    let (min, max) = (values[0], values[count - 1]);

    let cum = &mut scratch.cumulative;
    let cum_sq = &mut scratch.cumulative_squares;
    cum.clear();
    cum_sq.clear();
    cum.push(min);
    cum_sq.push(min * min);
    for i in 1..count {
        cum.push(values[i] + cum[i - 1]);
        cum_sq.push((values[i] * values[i]) + cum_sq[i - 1]);
    }

    let (mut sum, mut sum_squares, mut mean, mut bound) = (min, min * min, min, max);
    for p in &names.percentiles {
        let mut in_threshold = count;
        if count > 1 {
            // `Math.round`; the argument is never negative, where it and
            // `f64::round` differ.
            let n = (p.pct.abs() / 100.0 * count as f64).round();
            if n == 0.0 {
                continue;
            }
            // Percentiles are within (-100, 100], so n <= count; min() guards anyway.
            let n = (n as usize).min(count);
            if p.pct > 0.0 {
                bound = values[n - 1];
                sum = cum[n - 1];
                sum_squares = cum_sq[n - 1];
            } else {
                bound = values[count - n];
                // The reference reads cumulativeValues[-1] (undefined → NaN)
                // when the top n% is every sample; the sum before nothing is 0.
                let (before, before_sq) = match (count - n).checked_sub(1) {
                    Some(i) => (cum[i], cum_sq[i]),
                    None => (0.0, 0.0),
                };
                sum = cum[count - 1] - before;
                sum_squares = cum_sq[count - 1] - before_sq;
            }
            mean = sum / n as f64;
            in_threshold = n;
        }
        put(stats, &p.count, in_threshold as f64);
        put(stats, &p.mean, mean);
        put(stats, &p.bound, bound);
        put(stats, &p.sum, sum);
        put(stats, &p.sum_squares, sum_squares);
    }

    let sum = cum[count - 1];
    let sum_squares = cum_sq[count - 1];
    let mean = sum / count as f64;
    let mut sum_of_diffs = 0.0;
    for &v in values {
        sum_of_diffs += (v - mean) * (v - mean);
    }
    let mid = count / 2;
    let median = if count % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    put(stats, &names.std, (sum_of_diffs / count as f64).sqrt());
    put(stats, &names.upper, max);
    put(stats, &names.lower, min);
    put(stats, &names.sum, sum);
    put(stats, &names.sum_squares, sum_squares);
    put(stats, &names.mean, mean);
    put(stats, &names.median, median);
}

/// The value of the `rank`-th smallest sample (1-based) in ascending runs.
fn value_at_rank(runs: &[(f64, u64)], rank: u64) -> f64 {
    let mut seen = 0;
    for &(v, n) in runs {
        seen += n;
        if seen >= rank {
            return v;
        }
    }
    runs.last().map_or(0.0, |r| r.0)
}

/// Sum and sum of squares of the `n` smallest samples of the runs (or the
/// `n` largest, iterating the runs backwards).
fn partial_sums<'a>(runs: impl Iterator<Item = &'a (f64, u64)>, n: u64) -> (f64, f64) {
    let (mut left, mut sum, mut sum_squares) = (n, 0.0, 0.0);
    for &(v, c) in runs {
        if left == 0 {
            break;
        }
        let take = c.min(left);
        left -= take;
        sum += v * take as f64;
        sum_squares += v * v * take as f64;
    }
    (sum, sum_squares)
}

/// The same stats as [`exact_stats`], derived from a histogram and the exact
/// moments kept with it.
fn hdr_stats(h: &HdrSamples, runs: &[(f64, u64)], stats: &mut Vec<(Arc<str>, f64)>, names: &Names) {
    let count = h.len();
    for p in &names.percentiles {
        let (mut n, mut sum, mut sum_squares, mut mean, mut bound) =
            (count, h.min(), h.min() * h.min(), h.min(), h.max());
        if count > 1 {
            let k = (p.pct.abs() / 100.0 * count as f64).round();
            if k == 0.0 {
                continue;
            }
            n = (k as u64).min(count);
            if n == count {
                // Every sample: the exact moments apply.
                (sum, sum_squares) = (h.sum(), h.sum_squares());
                bound = if p.pct > 0.0 { h.max() } else { h.min() };
            } else if p.pct > 0.0 {
                bound = value_at_rank(runs, n);
                (sum, sum_squares) = partial_sums(runs.iter(), n);
            } else {
                bound = value_at_rank(runs, count - n + 1);
                (sum, sum_squares) = partial_sums(runs.iter().rev(), n);
            }
            mean = sum / n as f64;
        }
        put(stats, &p.count, n as f64);
        put(stats, &p.mean, mean);
        put(stats, &p.bound, bound);
        put(stats, &p.sum, sum);
        put(stats, &p.sum_squares, sum_squares);
    }
    let mid = count / 2;
    let median = if count % 2 == 1 {
        value_at_rank(runs, mid + 1)
    } else {
        (value_at_rank(runs, mid) + value_at_rank(runs, mid + 1)) / 2.0
    };
    put(stats, &names.std, h.std());
    put(stats, &names.upper, h.max());
    put(stats, &names.lower, h.min());
    put(stats, &names.sum, h.sum());
    put(stats, &names.sum_squares, h.sum_squares());
    put(stats, &names.mean, h.sum() / count as f64);
    put(stats, &names.median, median);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateOptions, Shard};
    use crate::metric::{MetricRef, MetricType, Value};

    fn timer(key: &[u8], kind: MetricType, v: f64, rate: f64) -> MetricRef<'_> {
        MetricRef {
            key,
            kind,
            value: Value::Number(v),
            sample_rate: rate,
            timestamp: None,
        }
    }

    /// A registry holding `samples` (value, sample rate) for `key`.
    fn registry(key: &str, samples: &[(f64, f64)], exact_limit: usize) -> Registry {
        let opts = AggregateOptions {
            timer_exact_samples: exact_limit,
            ..AggregateOptions::default()
        };
        let mut shard = Shard::new(&opts);
        for &(v, r) in samples {
            shard.insert(&timer(key.as_bytes(), MetricType::Timer, v, r));
        }
        let mut reg = Registry::new(&opts);
        reg.merge(shard.take());
        reg
    }

    fn sorted(stats: &[(Arc<str>, f64)]) -> Vec<(String, f64)> {
        let mut v: Vec<_> = stats.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn sorted_want(stats: &[(&str, f64)]) -> Vec<(String, f64)> {
        let mut v: Vec<_> = stats.iter().map(|&(k, v)| (k.to_owned(), v)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    struct Case {
        key: &'static str,
        samples: &'static [(f64, f64)],
        pct: &'static [f64],
        hist: &'static [(&'static str, &'static [Bin])],
        calc: &'static [&'static str],
        stats: &'static [(&'static str, f64)],
        histogram: &'static [(&'static str, f64)],
    }

    fn options(case: &Case) -> ComputeOptions {
        ComputeOptions {
            interval: Duration::from_millis(10_000),
            percentiles: case.pct.iter().map(|&value| Percentile { value }).collect(),
            histograms: case
                .hist
                .iter()
                .map(|&(metric, bins)| HistogramRule {
                    metric: metric.to_owned(),
                    bins: bins.to_vec(),
                })
                .collect(),
            calculated_timer_metrics: (!case.calc.is_empty())
                .then(|| case.calc.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// Ten unsorted samples at rate 1, shared by the calculatedTimerMetrics cases.
    const CALC_SAMPLES: &[(f64, f64)] = &[
        (0.1, 1.0),
        (0.2, 1.0),
        (0.3, 1.0),
        (10.5, 1.0),
        (7.25, 1.0),
        (3.3333, 1.0),
        (100.0, 1.0),
        (42.0, 1.0),
        (0.001, 1.0),
        (9.0, 1.0),
    ];

    /// Expected values are what the reference's own lib/process_metrics.js
    /// returns for the same samples, percentiles, bins and
    /// calculatedTimerMetrics (flushInterval 10000, timer_counters summed as
    /// `+= 1 / rate`), printed with JavaScript's number formatting. One
    /// exception, marked: the reference's NaN for a negative percentile that
    /// covers every sample (see the compatibility notes).
    // Literal values as the reference printed them, some of which look like constants.
    #[allow(clippy::approx_constant)]
    const CASES: &[Case] = &[
        Case {
            key: "one",
            samples: &[(7.5, 0.5)],
            pct: &[90.0, 99.9, -10.0],
            hist: &[],
            calc: &[],
            stats: &[
                ("count_90", 1.0),
                ("mean_90", 7.5),
                ("upper_90", 7.5),
                ("sum_90", 7.5),
                ("sum_squares_90", 56.25),
                ("count_99_9", 1.0),
                ("mean_99_9", 7.5),
                ("upper_99_9", 7.5),
                ("sum_99_9", 7.5),
                ("sum_squares_99_9", 56.25),
                ("count_top10", 1.0),
                ("mean_top10", 7.5),
                ("lower_top10", 7.5),
                ("sum_top10", 7.5),
                ("sum_squares_top10", 56.25),
                ("std", 0.0),
                ("upper", 7.5),
                ("lower", 7.5),
                ("count", 2.0),
                ("count_ps", 0.2),
                ("sum", 7.5),
                ("sum_squares", 56.25),
                ("mean", 7.5),
                ("median", 7.5),
            ],
            histogram: &[],
        },
        Case {
            key: "five",
            samples: &[(5.0, 1.0), (3.0, 1.0), (1.0, 1.0), (2.0, 1.0), (4.0, 1.0)],
            pct: &[90.0, 99.9, -10.0, 50.0, -90.0, 100.0],
            hist: &[],
            calc: &[],
            stats: &[
                ("count_90", 5.0),
                ("mean_90", 3.0),
                ("upper_90", 5.0),
                ("sum_90", 15.0),
                ("sum_squares_90", 55.0),
                ("count_99_9", 5.0),
                ("mean_99_9", 3.0),
                ("upper_99_9", 5.0),
                ("sum_99_9", 15.0),
                ("sum_squares_99_9", 55.0),
                ("count_top10", 1.0),
                ("mean_top10", 5.0),
                ("lower_top10", 5.0),
                ("sum_top10", 5.0),
                ("sum_squares_top10", 25.0),
                ("count_50", 3.0),
                ("mean_50", 2.0),
                ("upper_50", 3.0),
                ("sum_50", 6.0),
                ("sum_squares_50", 14.0),
                ("count_top90", 5.0),
                ("mean_top90", 3.0), /* reference: NaN */
                ("lower_top90", 1.0),
                ("sum_top90", 15.0),
                ("sum_squares_top90", 55.0),
                ("count_100", 5.0),
                ("mean_100", 3.0),
                ("upper_100", 5.0),
                ("sum_100", 15.0),
                ("sum_squares_100", 55.0),
                ("std", 1.4142135623730951),
                ("upper", 5.0),
                ("lower", 1.0),
                ("count", 5.0),
                ("count_ps", 0.5),
                ("sum", 15.0),
                ("sum_squares", 55.0),
                ("mean", 3.0),
                ("median", 3.0),
            ],
            histogram: &[],
        },
        Case {
            key: "two_equal",
            samples: &[(2.0, 1.0), (2.0, 0.1)],
            pct: &[90.0, 99.9, -10.0, 50.0],
            hist: &[],
            calc: &[],
            stats: &[
                ("count_90", 2.0),
                ("mean_90", 2.0),
                ("upper_90", 2.0),
                ("sum_90", 4.0),
                ("sum_squares_90", 8.0),
                ("count_99_9", 2.0),
                ("mean_99_9", 2.0),
                ("upper_99_9", 2.0),
                ("sum_99_9", 4.0),
                ("sum_squares_99_9", 8.0),
                ("count_50", 1.0),
                ("mean_50", 2.0),
                ("upper_50", 2.0),
                ("sum_50", 2.0),
                ("sum_squares_50", 4.0),
                ("std", 0.0),
                ("upper", 2.0),
                ("lower", 2.0),
                ("count", 11.0),
                ("count_ps", 1.1),
                ("sum", 4.0),
                ("sum_squares", 8.0),
                ("mean", 2.0),
                ("median", 2.0),
            ],
            histogram: &[],
        },
        Case {
            key: "ten",
            samples: &[
                (0.1, 1.0),
                (0.2, 1.0),
                (0.3, 1.0),
                (10.5, 1.0),
                (7.25, 0.25),
                (3.3333, 1.0),
                (100.0, 1.0),
                (42.0, 1.0),
                (0.001, 1.0),
                (9.0, 1.0),
            ],
            pct: &[90.0, 99.9, -10.0],
            hist: &[
                ("nomatch", &[Bin::Limit(1.0)]),
                (
                    "ten",
                    &[
                        Bin::Limit(0.01),
                        Bin::Limit(0.1),
                        Bin::Limit(1.0),
                        Bin::Limit(10.0),
                        Bin::Inf,
                    ],
                ),
            ],
            calc: &[],
            stats: &[
                ("count_90", 9.0),
                ("mean_90", 8.076033333333335),
                ("upper_90", 42.0),
                ("sum_90", 72.68430000000001),
                ("sum_squares_90", 2019.06338989),
                ("count_99_9", 10.0),
                ("mean_99_9", 17.268430000000002),
                ("upper_99_9", 100.0),
                ("sum_99_9", 172.6843),
                ("sum_squares_99_9", 12019.06338989),
                ("count_top10", 1.0),
                ("mean_top10", 100.0),
                ("lower_top10", 100.0),
                ("sum_top10", 100.0),
                ("sum_squares_top10", 10000.0),
                ("std", 30.06173089368109),
                ("upper", 100.0),
                ("lower", 0.001),
                ("count", 13.0),
                ("count_ps", 1.3),
                ("sum", 172.6843),
                ("sum_squares", 12019.06338989),
                ("mean", 17.268430000000002),
                ("median", 5.29165),
            ],
            histogram: &[
                ("bin_0_01", 1.0),
                ("bin_0_1", 0.0),
                ("bin_1", 3.0),
                ("bin_10", 3.0),
                ("bin_inf", 3.0),
            ],
        },
        Case {
            key: "neg",
            samples: &[
                (-5.0, 1.0),
                (3.5, 1.0),
                (-1.25, 1.0),
                (0.0, 1.0),
                (8.0, 1.0),
                (-0.3, 1.0),
            ],
            pct: &[90.0, -10.0, 33.3],
            hist: &[("", &[Bin::Limit(-1.0), Bin::Limit(0.0), Bin::Limit(5.0)])],
            calc: &[],
            stats: &[
                ("count_90", 5.0),
                ("mean_90", -0.61),
                ("upper_90", 3.5),
                ("sum_90", -3.05),
                ("sum_squares_90", 38.9025),
                ("count_top10", 1.0),
                ("mean_top10", 8.0),
                ("lower_top10", 8.0),
                ("sum_top10", 8.0),
                ("sum_squares_top10", 64.0),
                ("count_33_3", 2.0),
                ("mean_33_3", -3.125),
                ("upper_33_3", -1.25),
                ("sum_33_3", -6.25),
                ("sum_squares_33_3", 26.5625),
                ("std", 4.058299110054194),
                ("upper", 8.0),
                ("lower", -5.0),
                ("count", 6.0),
                ("count_ps", 0.6),
                ("sum", 4.95),
                ("sum_squares", 102.9025),
                ("mean", 0.8250000000000001),
                ("median", -0.15),
            ],
            histogram: &[("bin_-1", 2.0), ("bin_0", 1.0), ("bin_5", 2.0)],
        },
        Case {
            key: "dup_bins",
            samples: &[
                (1.0, 1.0),
                (2.0, 1.0),
                (3.0, 1.0),
                (4.0, 1.0),
                (5.0, 1.0),
                (6.0, 1.0),
            ],
            pct: &[90.0],
            hist: &[(
                "dup",
                &[
                    Bin::Limit(3.0),
                    Bin::Limit(3.0),
                    Bin::Limit(5.5),
                    Bin::Limit(2.0),
                    Bin::Inf,
                ],
            )],
            calc: &[],
            stats: &[
                ("count_90", 5.0),
                ("mean_90", 3.0),
                ("upper_90", 5.0),
                ("sum_90", 15.0),
                ("sum_squares_90", 55.0),
                ("std", 1.707825127659933),
                ("upper", 6.0),
                ("lower", 1.0),
                ("count", 6.0),
                ("count_ps", 0.6),
                ("sum", 21.0),
                ("sum_squares", 91.0),
                ("mean", 3.5),
                ("median", 3.5),
            ],
            histogram: &[
                ("bin_3", 0.0),
                ("bin_5_5", 3.0),
                ("bin_2", 0.0),
                ("bin_inf", 1.0),
            ],
        },
        Case {
            key: "calc1",
            samples: CALC_SAMPLES,
            pct: &[90.0, 99.9, -10.0],
            hist: &[("calc", &[Bin::Limit(1.0), Bin::Inf])],
            calc: &["count", "mean", "upper_percent", "histogram"],
            stats: &[
                ("upper_90", 42.0),
                ("count", 10.0),
                ("mean", 17.268430000000002),
            ],
            histogram: &[("bin_1", 4.0), ("bin_inf", 6.0)],
        },
        Case {
            key: "calc2",
            samples: CALC_SAMPLES,
            pct: &[90.0, 99.9, -10.0],
            hist: &[("calc", &[Bin::Limit(1.0), Bin::Inf])],
            calc: &[
                "count_percent",
                "lower_percent",
                "sum",
                "mean_percent",
                "count_ps",
            ],
            stats: &[
                ("count_90", 9.0),
                ("mean_90", 8.076033333333335),
                ("count_top10", 1.0),
                ("mean_top10", 100.0),
                ("lower_top10", 100.0),
                ("count_ps", 1.0),
                ("sum", 172.6843),
            ],
            histogram: &[],
        },
        Case {
            key: "big",
            samples: &[
                (65.515, 0.3),
                (30.481, 1.0),
                (63.248, 1.0),
                (99.588, 1.0),
                (67.946, 1.0),
                (67.312, 1.0),
                (17.27, 1.0),
                (88.317, 0.3),
                (70.727, 1.0),
                (82.753, 1.0),
                (73.942, 1.0),
                (33.774, 1.0),
                (79.39, 1.0),
                (19.221, 1.0),
                (57.987, 0.3),
                (23.376, 1.0),
                (20.895, 1.0),
                (78.757, 1.0),
                (87.131, 1.0),
                (84.399, 1.0),
                (11.134, 1.0),
                (47.039, 0.3),
                (73.133, 1.0),
                (36.601, 1.0),
                (27.932, 1.0),
                (36.826, 1.0),
                (91.872, 1.0),
                (87.076, 1.0),
                (41.927, 0.3),
                (42.866, 1.0),
                (81.971, 1.0),
                (17.273, 1.0),
                (15.831, 1.0),
                (31.787, 1.0),
                (37.698, 1.0),
                (50.45, 0.3),
                (97.297, 1.0),
                (46.753, 1.0),
                (75.351, 1.0),
                (22.53, 1.0),
                (43.602, 1.0),
                (87.344, 1.0),
                (81.894, 0.3),
                (30.787, 1.0),
                (53.58, 1.0),
                (84.657, 1.0),
                (70.022, 1.0),
                (11.107, 1.0),
                (58.925, 1.0),
                (9.213, 0.3),
                (69.094, 1.0),
                (39.959, 1.0),
                (69.966, 1.0),
                (25.414, 1.0),
                (38.227, 1.0),
                (40.039, 1.0),
                (41.819, 0.3),
                (94.41, 1.0),
                (43.053, 1.0),
                (2.279, 1.0),
                (25.186, 1.0),
                (13.29, 1.0),
                (66.687, 1.0),
                (0.549, 0.3),
                (28.626, 1.0),
                (28.057, 1.0),
                (41.78, 1.0),
                (21.801, 1.0),
                (80.331, 1.0),
                (47.937, 1.0),
                (53.824, 0.3),
                (84.805, 1.0),
                (61.331, 1.0),
                (69.939, 1.0),
                (2.081, 1.0),
                (55.407, 1.0),
                (44.868, 1.0),
                (51.087, 0.3),
                (66.366, 1.0),
                (29.184, 1.0),
                (48.804, 1.0),
                (95.422, 1.0),
                (20.154, 1.0),
                (51.918, 1.0),
                (90.626, 0.3),
                (60.956, 1.0),
                (1.419, 1.0),
                (63.982, 1.0),
                (64.892, 1.0),
                (39.901, 1.0),
                (80.468, 1.0),
                (68.557, 0.3),
                (28.268, 1.0),
                (79.273, 1.0),
                (99.541, 1.0),
                (49.283, 1.0),
                (19.03, 1.0),
                (56.896, 1.0),
                (67.3, 0.3),
                (86.238, 1.0),
                (57.224, 1.0),
            ],
            pct: &[90.0, 99.9, -10.0, 95.0, 99.0, 1.0],
            hist: &[(
                "big",
                &[
                    Bin::Limit(10.0),
                    Bin::Limit(20.5),
                    Bin::Limit(50.0),
                    Bin::Limit(99.0),
                ],
            )],
            calc: &[],
            stats: &[
                ("count_90", 91.0),
                ("mean_90", 47.82974725274724),
                ("upper_90", 87.076),
                ("sum_90", 4352.506999999999),
                ("sum_squares_90", 259342.44935900002),
                ("count_99_9", 101.0),
                ("mean_99_9", 52.31737623762375),
                ("upper_99_9", 99.588),
                ("sum_99_9", 5284.0549999999985),
                ("sum_squares_99_9", 346328.156423),
                ("count_top10", 10.0),
                ("mean_top10", 93.15479999999998),
                ("lower_top10", 87.131),
                ("sum_top10", 931.5479999999998),
                ("sum_squares_top10", 86985.70706399996),
                ("count_95", 96.0),
                ("mean_95", 49.97705208333333),
                ("upper_95", 91.872),
                ("sum_95", 4797.797),
                ("sum_squares_95", 299016.66360499995),
                ("count_99", 100.0),
                ("mean_99", 51.84466999999999),
                ("upper_99", 99.541),
                ("sum_99", 5184.466999999999),
                ("sum_squares_99", 336410.386679),
                ("count_1", 1.0),
                ("mean_1", 0.549),
                ("upper_1", 0.549),
                ("sum_1", 0.549),
                ("sum_squares_1", 0.30140100000000003),
                ("std", 26.30368398843393),
                ("upper", 99.588),
                ("lower", 0.549),
                ("count", 135.99999999999997),
                ("count_ps", 13.599999999999998),
                ("sum", 5284.0549999999985),
                ("sum_squares", 346328.156423),
                ("mean", 52.31737623762375),
                ("median", 51.918),
            ],
            histogram: &[
                ("bin_10", 5.0),
                ("bin_20_5", 9.0),
                ("bin_50", 34.0),
                ("bin_99", 51.0),
            ],
        },
    ];

    #[test]
    fn exact_timers_match_the_reference() {
        for case in CASES {
            let reg = registry(case.key, case.samples, 10_000);
            let batch = compute(&reg, &options(case), 1);
            assert_eq!(batch.timers.len(), 1);
            let t = &batch.timers[0];
            assert_eq!(sorted(&t.stats), sorted_want(case.stats), "{}", case.key);
            assert_eq!(
                sorted(&t.histogram),
                sorted_want(case.histogram),
                "{}",
                case.key
            );
        }
    }

    #[test]
    fn idle_timers_report_zero_counts() {
        let mut reg = registry("t", &[(1.0, 1.0)], 10);
        reg.end_interval();
        for (calc, want) in [
            (None, &[("count", 0.0), ("count_ps", 0.0)][..]),
            (Some(vec!["count".to_owned()]), &[("count", 0.0)][..]),
            (Some(vec!["mean".to_owned()]), &[][..]),
        ] {
            let opts = ComputeOptions {
                calculated_timer_metrics: calc,
                ..ComputeOptions::default()
            };
            let batch = compute(&reg, &opts, 1);
            // Still a series (numStats counts it) even when every stat is filtered.
            assert_eq!(batch.num_stats(), 1);
            assert_eq!(sorted(&batch.timers[0].stats), sorted_want(want));
        }
    }

    #[test]
    fn counters_gauges_sets_and_rates() {
        let opts = AggregateOptions::default();
        let mut shard = Shard::new(&opts);
        let m = |key: &'static [u8], kind, value| MetricRef {
            key,
            kind,
            value,
            sample_rate: 1.0,
            timestamp: None,
        };
        shard.insert(&m(b"c", MetricType::Counter, Value::Number(7.0)));
        shard.insert(&m(b"d", MetricType::Counter, Value::Number(0.1)));
        shard.insert(&m(b"g", MetricType::Gauge, Value::Number(-2.5)));
        shard.insert(&m(b"s", MetricType::Set, Value::SetMember(b"a")));
        shard.insert(&m(b"s", MetricType::Set, Value::SetMember(b"b")));
        let mut reg = Registry::new(&opts);
        reg.merge(shard.take());
        let copts = ComputeOptions {
            interval: Duration::from_millis(1234),
            ..ComputeOptions::default()
        };
        let batch = compute(&reg, &copts, 1_700_000_000);
        assert_eq!(batch.timestamp, 1_700_000_000);
        assert_eq!(batch.num_stats(), 4);
        let mut counters: Vec<_> = batch
            .counters
            .iter()
            .map(|c| (c.key.to_string(), c.value, c.rate))
            .collect();
        counters.sort_by(|a, b| a.0.cmp(&b.0));
        // node: 7 / (1234 / 1000), 0.1 / (1234 / 1000)
        assert_eq!(
            counters,
            vec![
                ("c".to_owned(), 7.0, 5.672609400324149),
                ("d".to_owned(), 0.1, 0.08103727714748785)
            ]
        );
        assert_eq!(batch.gauges[0].value, -2.5);
        assert_eq!(batch.sets[0].count, 2);
    }

    #[test]
    fn percentile_names() {
        for (pct, want) in [
            (90.0, "90"),
            (99.9, "99_9"),
            (-10.0, "top10"),
            (-99.9, "top99_9"),
            (0.5, "0_5"),
            (100.0, "100"),
            (1e-7, "1etop7"),
        ] {
            assert_eq!(percentile_suffix(pct), want, "{pct}");
        }
    }

    #[test]
    fn calculated_timer_metrics_filter() {
        let calc: Vec<String> = ["count", "upper_percent", "histogram", "mean_percent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (name, kept) in [
            ("count", true),
            ("count_ps", false),
            ("upper_90", true),
            ("upper_99_9", false), // cleaned to upper_99_percent, as the reference does
            ("lower_top10", false),
            ("mean_top10", true),
            ("mean_99_9", false),
            ("histogram", true),
            ("sum", false),
            ("count_90", false),
        ] {
            assert_eq!(keeps_timer_stat(Some(&calc), name), kept, "{name}");
            assert!(keeps_timer_stat(None, name));
            assert!(keeps_timer_stat(Some(&[]), name));
        }
    }

    fn stat(t: &TimerOut, name: &str) -> f64 {
        t.stats
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|s| s.1)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    /// Past the exact bound: counts exact, moments exact to rounding,
    /// order statistics within the histogram's 0.1%.
    #[test]
    fn hdr_mode_accuracy() {
        let mut x: u64 = 42;
        let mut next = move || {
            // A small LCG: deterministic, no dependency.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let uniform: Vec<f64> = (0..20_000)
            .map(|_| (next() * 1000.0 * 1000.0).round() / 1000.0)
            .collect();
        let skewed: Vec<f64> = (0..20_000).map(|_| (next() * 12.0).exp() / 100.0).collect();
        let signed: Vec<f64> = (0..5_000).map(|_| next() * 200.0 - 150.0).collect();
        let integers: Vec<f64> = (1..=1000).map(f64::from).collect();
        let opts = ComputeOptions {
            percentiles: [90.0, 99.9, -10.0, 50.0, -99.0, 1.0]
                .iter()
                .map(|&value| Percentile { value })
                .collect(),
            histograms: vec![HistogramRule {
                metric: "t".into(),
                bins: vec![Bin::Limit(100.5), Bin::Limit(500.5), Bin::Inf],
            }],
            ..ComputeOptions::default()
        };
        for (name, samples) in [
            ("uniform", &uniform),
            ("skewed", &skewed),
            ("signed", &signed),
            ("integers", &integers),
        ] {
            let with_rates: Vec<(f64, f64)> = samples.iter().map(|&v| (v, 1.0)).collect();
            let exact = compute(&registry("t", &with_rates, usize::MAX), &opts, 1);
            let approx = compute(&registry("t", &with_rates, 100), &opts, 1);
            let (e, a) = (&exact.timers[0], &approx.timers[0]);
            let max_abs = samples.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
            assert_eq!(e.stats.len(), a.stats.len(), "{name}");
            for (k, want) in &e.stats {
                let got = stat(a, k);
                let tolerance = if k.starts_with("count") {
                    0.0
                } else if ["sum", "sum_squares", "mean", "std", "upper", "lower"].contains(&&**k) {
                    1e-9 * want.abs()
                } else if let Some(pct) = k.strip_prefix("sum_squares_") {
                    // Each square within 0.2%, plus the microsecond rounding.
                    let n = stat(e, &format!("count_{pct}"));
                    2e-3 * want.abs() + n * 1e-3 * max_abs
                } else if let Some(pct) = k.strip_prefix("sum_") {
                    let n = stat(e, &format!("count_{pct}"));
                    1e-3 * want.abs() + n * 5e-4
                } else {
                    // Order statistics and their means: 0.1% plus the
                    // 0.0005 ms of recording in microseconds.
                    1e-3 * want.abs() + 5e-4
                };
                assert!(
                    (got - want).abs() <= tolerance,
                    "{name} {k}: {got} vs {want}"
                );
            }
            if name == "integers" {
                // Bin limits far from a bucket edge: exact counts.
                assert_eq!(sorted(&a.histogram), sorted(&e.histogram));
            }
        }
    }

    #[test]
    fn hdr_histograms_merge_across_shards() {
        let opts = AggregateOptions {
            timer_exact_samples: 10,
            ..AggregateOptions::default()
        };
        let mut reg = Registry::new(&opts);
        let mut all = Vec::new();
        for shard_no in 0..3 {
            let mut shard = Shard::new(&opts);
            for i in 0..50 {
                let v = f64::from(shard_no * 50 + i) - 20.0;
                all.push((v, 1.0));
                shard.insert(&timer(b"t", MetricType::Distribution, v, 1.0));
            }
            reg.merge(shard.take());
        }
        let copts = ComputeOptions::default();
        let merged = compute(&reg, &copts, 1);
        let exact = compute(&registry("t", &all, usize::MAX), &copts, 1);
        for (k, want) in &exact.timers[0].stats {
            let got = stat(&merged.timers[0], k);
            assert!(
                (got - want).abs() <= 1e-3 * want.abs() + 5e-4,
                "{k}: {got} vs {want}"
            );
        }
        assert_eq!(merged.timers[0].kind, MetricType::Distribution);
    }
}

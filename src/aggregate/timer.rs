//! Timers (`ms`, and DogStatsD `h` / `d`): the samples of one series in one
//! interval.
//!
//! A series keeps its samples exactly while it has at most
//! `timer_exact_samples` of them in the interval; the flush then computes the
//! reference's statistics bit for bit. Past that bound the samples move into
//! an [HdrHistogram](hdrhistogram) so that memory per series is bounded
//! however many samples arrive; see [`HdrSamples`] for what stays exact and
//! how accurate the rest is.
//!
//! Imports, besides `aggregate` itself: `metric`.

use hdrhistogram::Histogram;

use crate::metric::MetricType;

/// Histogram units per millisecond: samples are recorded in microseconds so
/// that fractional milliseconds keep their precision down to ~0.001 ms.
const SCALE: f64 = 1000.0;
/// The largest magnitude (in histogram units) an auto-resizing histogram can
/// track; larger samples are clamped to it in the histogram (their exact value
/// still counts in sum, min and max).
const MAX_SCALED: u64 = (i64::MAX / 2) as u64;
/// Significant decimal digits the histogram keeps.
const SIGFIG: u8 = 3;

/// One timer series for one interval.
#[derive(Debug, Clone)]
pub struct Timer {
    kind: MetricType,
    /// The reference's `timer_counters[key]`: the sum of `1 / sample_rate`.
    count: f64,
    samples: Samples,
}

#[derive(Debug, Clone)]
enum Samples {
    Exact(Vec<f64>),
    Hist(Box<HdrSamples>),
}

/// A timer's samples, as the flush sees them.
#[derive(Debug, Clone, Copy)]
pub enum TimerSamples<'a> {
    /// Every sample, in arrival order (unsorted).
    Exact(&'a [f64]),
    /// Too many samples to keep: a histogram plus exact moments.
    Hist(&'a HdrSamples),
}

impl Timer {
    /// An empty series whose type is `kind` (the first sample's type wins).
    pub(crate) fn new(kind: MetricType) -> Timer {
        Timer {
            kind,
            count: 0.0,
            samples: Samples::Exact(Vec::new()),
        }
    }

    /// A timer from forwarded state: its count (the sum of `1 /
    /// sample_rate`) and its exact samples.
    pub fn from_exact(kind: MetricType, count: f64, samples: Vec<f64>) -> Timer {
        Timer {
            kind,
            count,
            samples: Samples::Exact(samples),
        }
    }

    /// A timer from forwarded state: its count and its histogram.
    pub fn from_hist(kind: MetricType, count: f64, h: HdrSamples) -> Timer {
        Timer {
            kind,
            count,
            samples: Samples::Hist(Box::new(h)),
        }
    }

    /// The type of the first sample: `ms`, `h` or `d`.
    pub fn kind(&self) -> MetricType {
        self.kind
    }

    /// The reference's timer `count`: each sample counts `1 / sample_rate`.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// How many samples arrived (each counts once, whatever its sample rate).
    pub fn len(&self) -> u64 {
        match &self.samples {
            Samples::Exact(v) => v.len() as u64,
            Samples::Hist(h) => h.len(),
        }
    }

    /// No samples this interval.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples, exact or summarised.
    pub fn samples(&self) -> TimerSamples<'_> {
        match &self.samples {
            Samples::Exact(v) => TimerSamples::Exact(v),
            Samples::Hist(h) => TimerSamples::Hist(h),
        }
    }

    /// Add one sample, as the reference does (`timers[key].push(v);
    /// timer_counters[key] += 1 / rate`), switching to a histogram once more
    /// than `exact_limit` samples arrived.
    pub(crate) fn push(&mut self, value: f64, sample_rate: f64, exact_limit: usize) {
        self.count += 1.0 / sample_rate;
        match &mut self.samples {
            Samples::Exact(v) if v.len() < exact_limit => v.push(value),
            Samples::Exact(v) => {
                let mut h = HdrSamples::from_samples(v);
                h.record(value);
                self.samples = Samples::Hist(Box::new(h));
            }
            Samples::Hist(h) => h.record(value),
        }
    }

    /// Fold in the same series from a later snapshot. The kind stays the
    /// first one seen.
    pub(crate) fn merge(&mut self, other: Timer, exact_limit: usize) {
        self.count += other.count;
        let mine = std::mem::replace(&mut self.samples, Samples::Exact(Vec::new()));
        self.samples = match (mine, other.samples) {
            (Samples::Exact(a), Samples::Exact(b)) if a.is_empty() && b.len() <= exact_limit => {
                Samples::Exact(b)
            }
            (Samples::Exact(mut a), Samples::Exact(b)) if a.len() + b.len() <= exact_limit => {
                a.extend_from_slice(&b);
                Samples::Exact(a)
            }
            (Samples::Exact(a), Samples::Exact(b)) => {
                let mut h = HdrSamples::from_samples(&a);
                b.iter().for_each(|&v| h.record(v));
                Samples::Hist(Box::new(h))
            }
            (Samples::Exact(a), Samples::Hist(mut h))
            | (Samples::Hist(mut h), Samples::Exact(a)) => {
                a.iter().for_each(|&v| h.record(v));
                Samples::Hist(h)
            }
            (Samples::Hist(mut a), Samples::Hist(b)) => {
                a.merge(&b);
                Samples::Hist(a)
            }
        };
    }

    /// Start a new interval: no samples, count 0 (the reference's
    /// `timers[key] = []; timer_counters[key] = 0`).
    pub(crate) fn reset(&mut self) {
        self.count = 0.0;
        self.samples = Samples::Exact(Vec::new());
    }
}

/// A timer's samples past the exact bound.
///
/// Exact: the number of samples, their minimum, maximum, sum and sum of
/// squares (summed in arrival order rather than the reference's sorted order,
/// so the last bits may differ), and the standard deviation (Welford's
/// running algorithm, merged with Chan's formula).
///
/// Approximate: anything that needs the order of the samples (percentile
/// `upper_`/`lower_`/`sum_`/`sum_squares_`/`mean_`, `median`, histogram bins).
/// Each sample is represented by the midpoint of its histogram bucket, which
/// is within 0.05% of the sample (3 significant digits: buckets are at most
/// 1/1024 of their value wide) plus 0.0005 ms from recording in microseconds,
/// and is clamped to the exact [min, max]. Ranks themselves are exact, so a
/// percentile's sample count (`count_90`) is exact; a histogram bin boundary
/// that falls inside a bucket may count that bucket's samples on the wrong
/// side. Magnitudes above 2^62 µs (about 146,000 years) are clamped in the
/// histogram.
///
/// Negative samples (possible for `h` and `d`) go into a second histogram of
/// magnitudes. Two `HdrSamples` merge without loss.
#[derive(Debug, Clone)]
pub struct HdrSamples {
    /// Samples >= 0, in microseconds.
    pos: Histogram<u64>,
    /// Magnitudes of samples < 0, in microseconds; allocated on the first one.
    neg: Option<Histogram<u64>>,
    n: u64,
    sum: f64,
    sum_squares: f64,
    min: f64,
    max: f64,
    /// Running mean and sum of squared differences from it (Welford).
    mean: f64,
    m2: f64,
}

/// [`HdrSamples`] as plain parts (see [`HdrSamples::to_parts`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HdrParts {
    /// Samples >= 0 in microseconds, HdrHistogram V2 encoding.
    pub positive: Vec<u8>,
    /// Magnitudes of samples < 0, the same way; empty when there are none.
    pub negative: Vec<u8>,
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub min: f64,
    pub max: f64,
    /// Welford's running mean and sum of squared differences.
    pub mean: f64,
    pub m2: f64,
}

/// An empty auto-resizing histogram.
fn new_histogram() -> Histogram<u64> {
    // Creation fails only for sigfig > 5; SIGFIG is 3.
    Histogram::new(SIGFIG).expect("3 significant figures is a valid histogram precision")
}

/// A magnitude in histogram units.
fn scaled(magnitude: f64) -> u64 {
    // `as` saturates (and maps NaN to 0); samples are finite anyway.
    ((magnitude * SCALE).round() as u64).min(MAX_SCALED)
}

fn record_scaled(h: &mut Histogram<u64>, v: u64, n: u64) {
    if h.record_n(v, n).is_err() {
        // Only if the histogram could not grow; clamp rather than lose the sample.
        h.saturating_record_n(v, n);
    }
}

fn add_histogram(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    if dst.add(src).is_err() {
        // Only if `dst` could not grow to `src`'s range: fall back to
        // recording `src`'s buckets one by one (clamped).
        for v in src.iter_recorded() {
            record_scaled(dst, v.value_iterated_to(), v.count_at_value());
        }
    }
}

impl HdrSamples {
    fn new() -> HdrSamples {
        HdrSamples {
            pos: new_histogram(),
            neg: None,
            n: 0,
            sum: 0.0,
            sum_squares: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }

    fn from_samples(samples: &[f64]) -> HdrSamples {
        let mut h = HdrSamples::new();
        samples.iter().for_each(|&v| h.record(v));
        h
    }

    fn record(&mut self, v: f64) {
        if v >= 0.0 {
            record_scaled(&mut self.pos, scaled(v), 1);
        } else {
            let neg = self.neg.get_or_insert_with(new_histogram);
            record_scaled(neg, scaled(-v), 1);
        }
        self.n += 1;
        self.sum += v;
        self.sum_squares += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let delta = v - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (v - self.mean);
    }

    fn merge(&mut self, other: &HdrSamples) {
        if other.n == 0 {
            return;
        }
        add_histogram(&mut self.pos, &other.pos);
        if let Some(on) = &other.neg {
            match &mut self.neg {
                Some(n) => add_histogram(n, on),
                None => self.neg = Some(on.clone()),
            }
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.n += other.n;
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many samples.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Everything it holds, for the wire: the histograms in
    /// HdrHistogram's V2 encoding (the format every HdrHistogram
    /// implementation reads), the exact moments as they are.
    pub fn to_parts(&self) -> HdrParts {
        use hdrhistogram::serialization::{Serializer, V2Serializer};
        let mut ser = V2Serializer::new();
        let mut encode = |h: &Histogram<u64>| {
            let mut out = Vec::new();
            // Writing into a Vec cannot fail, and the histogram's counts
            // fit the format (it is the histogram's own).
            if let Err(e) = ser.serialize(h, &mut out) {
                tracing::error!(error = ?e, "cannot encode a histogram");
                out.clear();
            }
            out
        };
        HdrParts {
            positive: encode(&self.pos),
            negative: self.neg.as_ref().map(&mut encode).unwrap_or_default(),
            n: self.n,
            sum: self.sum,
            sum_squares: self.sum_squares,
            min: self.min,
            max: self.max,
            mean: self.mean,
            m2: self.m2,
        }
    }

    /// Read what [`to_parts`](Self::to_parts) wrote, checking it: the
    /// histograms' counts add up to `n`, the moments are numbers, the
    /// precision is statsyard's (so a hostile header cannot ask for a huge
    /// histogram).
    pub fn from_parts(p: &HdrParts) -> Result<HdrSamples, String> {
        fn decode(bytes: &[u8]) -> Result<Option<Histogram<u64>>, String> {
            if bytes.is_empty() {
                return Ok(None);
            }
            // V2 header (big-endian): cookie, payload length, normalizing
            // offset, significant digits (u32s), lowest and highest value
            // (u64s), a ratio (f64), then the payload. The decoder allocates
            // what the header claims before it reads, so the claims are
            // checked against the bytes at hand first: only the plain V2
            // that `to_parts` writes (no DEFLATE: a small body must not
            // inflate), a payload length that is the rest of the bytes, and
            // statsyard's own precision and lowest value.
            const V2_COOKIE: u32 = 0x1c84_9313;
            const HEADER: usize = 40;
            let u32_at = |at: usize| {
                bytes
                    .get(at..at + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            if bytes.len() < HEADER || u32_at(0) != Some(V2_COOKIE) {
                return Err("histogram: not a plain V2 histogram".into());
            }
            let payload = u32_at(4).map(|n| n as usize);
            if payload != Some(bytes.len() - HEADER) {
                return Err(format!(
                    "histogram payload of {payload:?} bytes in {} bytes",
                    bytes.len() - HEADER
                ));
            }
            let digits = u32_at(12);
            if digits != Some(u32::from(SIGFIG)) {
                return Err(format!("histogram precision {digits:?}, not {SIGFIG}"));
            }
            let lowest = u64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes"));
            if lowest != 1 {
                return Err(format!("histogram lowest value {lowest}, not 1"));
            }
            let mut r = bytes;
            let h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut r)
                .map_err(|e| format!("histogram: {e:?}"))?;
            Ok(Some(h))
        }
        let pos = decode(&p.positive)?.unwrap_or_else(new_histogram);
        let mut pos = pos;
        pos.auto(true);
        let neg = decode(&p.negative)?.map(|mut h| {
            h.auto(true);
            h
        });
        let total = pos.len() + neg.as_ref().map_or(0, |h| h.len());
        if total != p.n || p.n == 0 {
            return Err(format!("histogram counts {total} samples, not {}", p.n));
        }
        let moments = [p.sum, p.sum_squares, p.min, p.max, p.mean, p.m2];
        if moments.iter().any(|v| v.is_nan()) || p.min > p.max {
            return Err("histogram moments are not numbers".into());
        }
        Ok(HdrSamples {
            pos,
            neg,
            n: p.n,
            sum: p.sum,
            sum_squares: p.sum_squares,
            min: p.min,
            max: p.max,
            mean: p.mean,
            m2: p.m2,
        })
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The sum of the samples.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The sum of the squares of the samples.
    pub fn sum_squares(&self) -> f64 {
        self.sum_squares
    }

    /// The smallest sample.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest sample.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The population standard deviation (the reference's `std`).
    pub fn std(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (self.m2 / self.n as f64).max(0.0).sqrt()
    }

    /// The samples in ascending order, as `(representative value, how many)`
    /// runs, into `out` (cleared first). The counts add up to [`len`](Self::len).
    pub fn runs(&self, out: &mut Vec<(f64, u64)>) {
        out.clear();
        let (min, max) = (self.min, self.max);
        if let Some(neg) = &self.neg {
            out.extend(neg.iter_recorded().map(|v| {
                let mid = neg.median_equivalent(v.value_iterated_to()) as f64 / SCALE;
                (within(-mid, min, max), v.count_at_value())
            }));
            out.reverse();
        }
        out.extend(self.pos.iter_recorded().map(|v| {
            let mid = self.pos.median_equivalent(v.value_iterated_to()) as f64 / SCALE;
            (within(mid, min, max), v.count_at_value())
        }));
    }
}

/// `v` clamped to `[min, max]`; unlike `f64::clamp` it cannot panic.
fn within(v: f64, min: f64, max: f64) -> f64 {
    v.max(min).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_parts_round_trip_and_hostile_headers_are_refused() {
        let h = HdrSamples::from_samples(&[1.0, 2.5, -3.0, 1e6, 42.0]);
        let parts = h.to_parts();
        let back = HdrSamples::from_parts(&parts).expect("its own parts");
        assert_eq!(back.to_parts(), parts);

        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = parts.clone();
            f(&mut p.positive);
            HdrSamples::from_parts(&p)
        };
        // A payload length past the bytes at hand (the decoder would
        // allocate it before reading): 3.6 GB claimed by a small body.
        assert!(with(&|b| b[4..8].copy_from_slice(&0xda00_0000u32.to_be_bytes())).is_err());
        // Shorter than claimed, longer than claimed.
        assert!(with(&|b| {
            b.pop();
        })
        .is_err());
        assert!(with(&|b| b.push(0)).is_err());
        // DEFLATE-compressed V2 (a small body must not inflate), and junk.
        assert!(with(&|b| b[0..4].copy_from_slice(&0x1c84_9314u32.to_be_bytes())).is_err());
        assert!(with(&|b| b.truncate(20)).is_err());
        // Another precision or lowest value than statsyard's.
        assert!(with(&|b| b[12..16].copy_from_slice(&5u32.to_be_bytes())).is_err());
        assert!(with(&|b| b[16..24].copy_from_slice(&1000u64.to_be_bytes())).is_err());
    }
}

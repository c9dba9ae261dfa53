//! Aggregation: per-thread [`Shard`]s on the hot path, one [`Registry`] that
//! the flusher merges them into and that holds what persists across flushes.
//!
//! Knows only `metric`.

use crate::metric::MetricRef;

/// How aggregation behaves; the reference's `delete*` options and the timer bound.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateOptions {
    /// Samples a timer keeps per interval before it switches to a histogram.
    pub timer_exact_samples: usize,
    /// The reference's `deleteCounters`.
    pub delete_counters: bool,
    /// The reference's `deleteTimers`.
    pub delete_timers: bool,
    /// The reference's `deleteSets`.
    pub delete_sets: bool,
    /// The reference's `deleteGauges`.
    pub delete_gauges: bool,
    /// The reference's `gaugesMaxTTL` (flushes), used with `delete_gauges`.
    pub gauges_max_ttl: u32,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions {
            timer_exact_samples: 10_000,
            delete_counters: false,
            delete_timers: false,
            delete_sets: false,
            delete_gauges: false,
            gauges_max_ttl: 1,
        }
    }
}

/// One receive thread's aggregates for the current interval.
#[derive(Debug, Default)]
pub struct Shard {}

/// What a shard held at the end of an interval.
#[derive(Debug, Default)]
pub struct Snapshot {}

impl Shard {
    pub fn new(opts: &AggregateOptions) -> Shard {
        let _ = opts;
        Shard {}
    }

    /// Add one value.
    pub fn insert(&mut self, m: &MetricRef<'_>) {
        let _ = m;
        todo!()
    }

    /// Take the interval's aggregates, leaving the shard empty. O(1).
    pub fn take(&mut self) -> Snapshot {
        todo!()
    }
}

/// Everything the flusher knows: merged snapshots plus what persists
/// (gauges, idle series that still report zeros).
#[derive(Debug, Default)]
pub struct Registry {}

impl Registry {
    pub fn new(opts: &AggregateOptions) -> Registry {
        let _ = opts;
        Registry {}
    }
    /// Fold a shard's snapshot in.
    pub fn merge(&mut self, snap: Snapshot) {
        let _ = snap;
        todo!()
    }
    /// Add to a counter directly (the `statsd.*` internal counters).
    pub fn add_counter(&mut self, key: &[u8], value: f64) {
        let _ = (key, value);
        todo!()
    }
    /// Set a gauge directly (`statsd.timestamp_lag`); never expires.
    pub fn set_gauge(&mut self, key: &[u8], value: f64) {
        let _ = (key, value);
        todo!()
    }
    /// After a flush: reset or delete per the reference's rules.
    pub fn end_interval(&mut self) {
        todo!()
    }
}

//! Flush: turn the merged aggregates into a [`FlushBatch`] (pure), and name
//! its values for Graphite the way the reference does. The thread that
//! flushes on a timer is [`crate::flusher`].
//!
//! Imports: [`crate::aggregate`], [`crate::metric`] and, for naming,
//! [`crate::parse`]'s key sanitiser; nothing async.

pub mod compute;
pub mod naming;
pub mod number;
pub mod timing;

pub use timing::Timing;

use std::sync::Arc;
use std::time::Duration;

use crate::metric::{MetricKey, MetricType};

/// One flush's results, shared read-only by every sink.
#[derive(Debug, Clone, Default)]
pub struct FlushBatch {
    /// Unix seconds, rounded as the reference rounds them.
    pub timestamp: u64,
    /// The flush interval the batch covers (what rates are per second of),
    /// for outputs that show it (the console's header).
    pub interval: Duration,
    pub counters: Vec<CounterOut>,
    pub timers: Vec<TimerOut>,
    pub gauges: Vec<GaugeOut>,
    pub sets: Vec<SetOut>,
    /// The reference's `statsd_metrics.processing_time`: milliseconds spent computing.
    pub processing_time_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CounterOut {
    pub key: MetricKey,
    /// Sum over the interval, each value divided by its sample rate.
    pub value: f64,
    /// `value` per second of the interval.
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerOut {
    pub key: MetricKey,
    /// The type of the first sample seen (ms, h or d).
    pub kind: MetricType,
    /// Derived stats in the reference's names (`count_90`, `std`, `upper`, ...),
    /// already filtered by `calculatedTimerMetrics`.
    pub stats: Vec<(Arc<str>, f64)>,
    /// Histogram bins (`bin_0_01`, `bin_inf`, ...), empty when none apply.
    pub histogram: Vec<(Arc<str>, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GaugeOut {
    pub key: MetricKey,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetOut {
    pub key: MetricKey,
    /// Distinct members seen in the interval.
    pub count: u64,
}

impl FlushBatch {
    /// Series in the batch: the reference's `numStats`.
    pub fn num_stats(&self) -> usize {
        self.counters.len() + self.timers.len() + self.gauges.len() + self.sets.len()
    }
}

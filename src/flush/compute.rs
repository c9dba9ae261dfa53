//! Snapshot → [`FlushBatch`](super::FlushBatch): the reference's
//! `process_metrics`, as a pure function.

use std::time::Duration;

/// A `percentThreshold` entry. Kept with its original text so the stat names
/// (`upper_99_9`, `lower_top10`...) come out as the reference spells them.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentile {
    pub value: f64,
}

/// A `histogram` rule: timers whose key contains `metric` get these bins.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRule {
    pub metric: String,
    pub bins: Vec<Bin>,
}

/// A histogram bin's non-inclusive upper limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Bin {
    Limit(f64),
    Inf,
}

/// How timers are summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeOptions {
    pub interval: Duration,
    pub percentiles: Vec<Percentile>,
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

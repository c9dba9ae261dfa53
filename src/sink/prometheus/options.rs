//! The exporter's vocabulary that the mapping file shares: how timers are
//! observed and with which quantiles and buckets. A leaf of
//! [`super`]: both [`super::mapping`] and [`super::exporter`] use it.

use std::str::FromStr;

/// How timers, histograms and distributions are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObserverType {
    /// Quantiles over the last flush window, with cumulative `_sum` and `_count`.
    #[default]
    Summary,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

/// The observer type named in config or a mapping file is not one we know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown observer type {0:?} (expected \"summary\" or \"histogram\")")]
pub struct BadObserverType(pub String);

impl FromStr for ObserverType {
    type Err = BadObserverType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "summary" => Ok(ObserverType::Summary),
            "histogram" => Ok(ObserverType::Histogram),
            other => Err(BadObserverType(other.to_string())),
        }
    }
}

/// One quantile of a summary, with the error statsd_exporter's config carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    /// In [0, 1].
    pub quantile: f64,
    /// The allowed rank error. Kept so that mapping files and configs carry
    /// over; quantiles here are exact over the window (or within the timer
    /// histogram's 0.1%), so it is not needed.
    pub error: f64,
}

/// statsd_exporter's default quantiles: 0.5, 0.9 and 0.99.
pub fn default_quantiles() -> Vec<Quantile> {
    [(0.5, 0.05), (0.9, 0.01), (0.99, 0.001)]
        .into_iter()
        .map(|(quantile, error)| Quantile { quantile, error })
        .collect()
}

/// The Prometheus client libraries' default buckets (`DefBuckets`), in seconds.
pub fn default_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

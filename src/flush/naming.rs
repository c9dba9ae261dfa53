//! Graphite names for a [`FlushBatch`](super::FlushBatch), exactly as the
//! reference's graphite backend builds them.

/// The reference's `graphite.*` naming options plus `prefixStats` and `flush_counts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Naming {
    pub legacy_namespace: bool,
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    /// Appended after every name as `.suffix` when set.
    pub global_suffix: Option<String>,
    pub prefix_stats: String,
    /// Emit `stats_counts.*` (legacy) or `.count` (new namespace) for counters.
    pub flush_counts: bool,
    /// When key sanitising on ingress is off, the graphite backend sanitises names itself.
    pub sanitize_names: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: None,
            prefix_stats: "statsd".into(),
            flush_counts: true,
            sanitize_names: false,
        }
    }
}

//! Aggregation: per-thread [`Shard`]s on the hot path, one [`Registry`] that
//! the flusher merges them into and that holds what persists across flushes.
//!
//! The arithmetic is the reference statsd's (its `handlePacket` and
//! `clear_metrics`), operation for operation, so that one shard's values are
//! bit-identical to the reference's. With several shards, values of one
//! series that arrived on different threads are combined per shard first.
//!
//! The registry is owned by the flusher thread alone, so it is a set of plain
//! hash maps rather than the shared dashmap the architecture suggests for
//! persistent state: nothing else reads it yet, and a single owner needs no
//! locking at all. The HTTP API and the admin console get live views of it by
//! sending jobs to the flusher (`flusher::FlusherHandle`) rather than
//! sharing the maps.
//!
//! Each series also counts the values it received in the current interval
//! ([`Registry::hits`]), kept in per-interval storage only (the shard maps and
//! a map the registry frees at the end of each interval), and the previous
//! interval's hottest series ([`Registry::top`]).
//!
//! Knows only `metric`.
//!
//! Owns the per-interval series state (shards, the registry, series limits,
//! forwarded interval state). Imports: [`crate::metric`] only; everything above
//! imports it.

mod counter;
mod gauge;
mod interval;
mod keymap;
pub mod limit;
mod registry;
mod set;
mod shard;
mod timer;

pub use interval::{GaugeState, IntervalState, Route, SetMembers};
pub use limit::{AdmissionLink, PrefixLimit, Refusal, SeriesLimits};
pub use registry::{Hot, Registry, TOP_KEPT};
pub use shard::{Inserted, Shard, Snapshot};
pub use timer::{HdrParts, HdrSamples, Timer, TimerSamples};

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
    /// `[statsd] max_series` and `series_limits` (see [`limit`]).
    pub limits: SeriesLimits,
    /// Runtime, not configuration: how the [`Registry`] built from these
    /// options reaches the [`Shard`]s built from them (see [`limit`]).
    /// Leave it to `Default`; it never makes two option sets unequal.
    pub link: AdmissionLink,
}

/// The default `[statsd] max_series`: about 190 MB of counters at the
/// ~190 B per series docs/benchmarks.md measures, far above a normal
/// deployment, far below what a flood of random keys would take.
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions {
            timer_exact_samples: 10_000,
            delete_counters: false,
            delete_timers: false,
            delete_sets: false,
            delete_gauges: false,
            gauges_max_ttl: 1,
            limits: SeriesLimits {
                max_series: DEFAULT_MAX_SERIES,
                prefixes: Vec::new(),
            },
            link: AdmissionLink::default(),
        }
    }
}

#[cfg(test)]
mod tests;

/// The aggregation maps' hasher: foldhash, seeded per process. Fast on the
/// short, similar byte keys statsd names are (FxHash let them collide in
/// hashbrown's control bytes; see docs/benchmarks.md), and random seeds keep
/// a sender from choosing keys that all collide. hashbrown's map rather than
/// std's (the same table) for `get_key_value_mut`: the registry's merge
/// finds a series by the shard's key bytes and shares its own key.
pub(crate) type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// The set counterpart of [`FastMap`].
pub(crate) type FastSet<T> = hashbrown::HashSet<T, foldhash::fast::RandomState>;

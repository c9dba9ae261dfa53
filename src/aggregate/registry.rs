//! The flusher's view: merged snapshots plus what persists across flushes.

use super::FastMap;

use super::counter;
use super::gauge::GaugeUpdate;
use super::set::Members;
use super::shard::Snapshot;
use super::timer::Timer;
use super::AggregateOptions;
use crate::metric::MetricKey;

/// Counters that the reference resets to 0 rather than deleting under
/// `deleteCounters`: any key *containing* one of these (a substring match, as
/// the reference's `indexOf` does).
const KEPT_COUNTERS: [&[u8]; 3] = [b"packets_received", b"metrics_received", b"bad_lines_seen"];

/// A gauge's value and, under `delete_gauges`, the flushes it has left.
#[derive(Debug, Clone, PartialEq)]
struct Gauge {
    value: f64,
    /// The reference's `gaugesTTL[key]`; `None` never expires.
    ttl: Option<u32>,
}

/// Everything the flusher knows: merged snapshots plus what persists
/// (gauges, idle series that still report zeros).
///
/// Merging applies each snapshot in the order it is given, with the
/// reference's arithmetic: counters and timer counts add, gauges apply their
/// absolute value or deltas onto the persistent value, timers and sets pool
/// their samples and members.
#[derive(Debug, Default)]
pub struct Registry {
    opts: AggregateOptions,
    counters: FastMap<MetricKey, f64>,
    gauges: FastMap<MetricKey, Gauge>,
    timers: FastMap<MetricKey, Timer>,
    sets: FastMap<MetricKey, Members>,
}

impl Registry {
    /// An empty registry.
    pub fn new(opts: &AggregateOptions) -> Registry {
        Registry {
            opts: opts.clone(),
            ..Registry::default()
        }
    }

    /// Fold a shard's snapshot in.
    pub fn merge(&mut self, snap: Snapshot) {
        let maps = snap.maps;
        for (key, v) in maps.counters {
            match self.counters.get_mut(&key) {
                Some(total) => counter::accumulate(total, v),
                None => {
                    self.counters.insert(key, v);
                }
            }
        }
        let ttl = self.opts.delete_gauges.then_some(self.opts.gauges_max_ttl);
        for (key, update) in maps.gauges {
            self.update_gauge(key, &update, ttl);
        }
        let limit = self.opts.timer_exact_samples;
        for (key, t) in maps.timers {
            match self.timers.get_mut(&key) {
                Some(mine) => mine.merge(t, limit),
                None => {
                    self.timers.insert(key, t);
                }
            }
        }
        for (key, members) in maps.sets {
            match self.sets.get_mut(&key) {
                Some(mine) => mine.extend(members),
                None => {
                    self.sets.insert(key, members);
                }
            }
        }
    }

    fn update_gauge(&mut self, key: MetricKey, update: &GaugeUpdate, ttl: Option<u32>) {
        match self.gauges.get_mut(&key) {
            Some(g) => {
                g.value = update.apply(Some(g.value));
                if ttl.is_some() {
                    g.ttl = ttl;
                }
            }
            None => {
                let value = update.apply(None);
                self.gauges.insert(key, Gauge { value, ttl });
            }
        }
    }

    /// Add to a counter directly (the `statsd.*` internal counters), creating
    /// it if needed: `add_counter(key, 0.0)` makes a counter report 0.
    pub fn add_counter(&mut self, key: &[u8], value: f64) {
        match self.counters.get_mut(key) {
            Some(total) => counter::accumulate(total, value),
            None => {
                self.counters.insert(MetricKey::new(key), value);
            }
        }
    }

    /// Set a gauge directly (`statsd.timestamp_lag`); never expires.
    pub fn set_gauge(&mut self, key: &[u8], value: f64) {
        match self.gauges.get_mut(key) {
            // An existing TTL (the key also came in from a client) keeps
            // running, as the reference's separate `gaugesTTL` map does.
            Some(g) => g.value = value,
            None => {
                self.gauges
                    .insert(MetricKey::new(key), Gauge { value, ttl: None });
            }
        }
    }

    /// After a flush: reset or delete per the reference's rules
    /// (`clear_metrics` in its stats.js).
    pub fn end_interval(&mut self) {
        if self.opts.delete_counters {
            self.counters.retain(|key, v| {
                let kept = KEPT_COUNTERS
                    .iter()
                    .any(|name| contains(key.as_bytes(), name));
                *v = 0.0;
                kept
            });
        } else {
            self.counters.values_mut().for_each(|v| *v = 0.0);
        }

        if self.opts.delete_timers {
            self.timers.clear();
        } else {
            self.timers.values_mut().for_each(Timer::reset);
        }

        if self.opts.delete_sets {
            self.sets.clear();
        } else {
            self.sets.values_mut().for_each(Members::clear);
        }

        // Without delete_gauges no gauge has a TTL: they all persist.
        self.gauges.retain(|_, g| match &mut g.ttl {
            None => true,
            Some(ttl) => {
                *ttl = ttl.saturating_sub(1);
                *ttl >= 1
            }
        });
    }

    /// Every counter: its sum over the interval.
    pub fn counters(&self) -> impl Iterator<Item = (&MetricKey, f64)> + '_ {
        self.counters.iter().map(|(k, v)| (k, *v))
    }

    /// Every gauge: its current value.
    pub fn gauges(&self) -> impl Iterator<Item = (&MetricKey, f64)> + '_ {
        self.gauges.iter().map(|(k, g)| (k, g.value))
    }

    /// Every timer (including idle ones kept without `delete_timers`).
    pub fn timers(&self) -> impl Iterator<Item = (&MetricKey, &Timer)> + '_ {
        self.timers.iter()
    }

    /// Every set: the number of distinct members this interval.
    pub fn sets(&self) -> impl Iterator<Item = (&MetricKey, u64)> + '_ {
        self.sets.iter().map(|(k, m)| (k, m.len() as u64))
    }

    /// One counter's value, if it exists.
    pub fn counter(&self, key: &[u8]) -> Option<f64> {
        self.counters.get(key).copied()
    }

    /// One gauge's value, if it exists.
    pub fn gauge(&self, key: &[u8]) -> Option<f64> {
        self.gauges.get(key).map(|g| g.value)
    }

    /// One timer, if it exists.
    pub fn timer(&self, key: &[u8]) -> Option<&Timer> {
        self.timers.get(key)
    }

    /// One set's distinct member count, if it exists.
    pub fn set_len(&self, key: &[u8]) -> Option<u64> {
        self.sets.get(key).map(|m| m.len() as u64)
    }

    /// The number of series of every type (the reference's `numStats`).
    pub fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }

    /// No series at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `haystack.indexOf(needle) > -1`, on bytes.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

//! The flusher's view: merged snapshots plus what persists across flushes.

use std::collections::hash_map::Entry;

use super::FastMap;

use super::counter;
use super::gauge::GaugeUpdate;
use super::set::Members;
use super::shard::Snapshot;
use super::timer::Timer;
use super::AggregateOptions;
use crate::metric::{MetricKey, MetricType};

/// How many of the previous interval's hottest series [`Registry::top`] keeps.
pub const TOP_KEPT: usize = 1000;

/// One series and the values it received in an interval (see [`Registry::top`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Hot {
    /// The series' key.
    pub key: MetricKey,
    /// Its type (a timer's is the type of its first sample).
    pub kind: MetricType,
    /// Values received in the interval.
    pub hits: u64,
}

/// The index of a type's hit map: counters, gauges, timer-likes, sets.
fn class(ty: MetricType) -> usize {
    match ty {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Timer | MetricType::Histogram | MetricType::Distribution => 2,
        MetricType::Set => 3,
    }
}

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
    /// Values received per series since the last `end_interval`, by
    /// [`class`]. Per-interval only: series that were idle cost nothing, and
    /// the keys are shared (`Arc`) with the maps above.
    hits: [FastMap<MetricKey, u64>; 4],
    /// The previous interval's hottest series, hottest first, at most [`TOP_KEPT`].
    last_top: Vec<Hot>,
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
        // Each hit map shares the registry's own key (an `Arc`), not the
        // shard's, so that the shard's copy is freed here as before.
        for (key, (v, hits)) in maps.counters {
            let entry = self.counters.entry(key);
            add_hits(&mut self.hits[0], entry.key(), hits.into());
            match entry {
                Entry::Occupied(mut o) => counter::accumulate(o.get_mut(), v),
                Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        let ttl = self.opts.delete_gauges.then_some(self.opts.gauges_max_ttl);
        for (key, (update, hits)) in maps.gauges {
            let key = self.update_gauge(key, &update, ttl);
            add_hits(&mut self.hits[1], &key, hits.into());
        }
        let limit = self.opts.timer_exact_samples;
        for (key, t) in maps.timers {
            let entry = self.timers.entry(key);
            add_hits(&mut self.hits[2], entry.key(), t.len());
            match entry {
                Entry::Occupied(mut o) => o.get_mut().merge(t, limit),
                Entry::Vacant(e) => {
                    e.insert(t);
                }
            }
        }
        for (key, (members, hits)) in maps.sets {
            let entry = self.sets.entry(key);
            add_hits(&mut self.hits[3], entry.key(), hits.into());
            match entry {
                Entry::Occupied(mut o) => o.get_mut().extend(members),
                Entry::Vacant(e) => {
                    e.insert(members);
                }
            }
        }
    }

    /// Values received for one series since the last
    /// [`end_interval`](Self::end_interval), as of the last merge. `h` and
    /// `d` share the timer's series.
    pub fn hits(&self, ty: MetricType, key: &[u8]) -> u64 {
        self.hits[class(ty)].get(key).copied().unwrap_or(0)
    }

    /// The previous interval's hottest series, hottest first (ties by key),
    /// at most [`TOP_KEPT`].
    pub fn top(&self) -> &[Hot] {
        &self.last_top
    }

    /// Keep the interval's [`TOP_KEPT`] hottest series and forget the rest.
    fn rotate_hits(&mut self) {
        use std::cmp::Reverse;
        // A min-heap of the hottest so far (fewest hits, then greatest key,
        // on top), so that memory is TOP_KEPT entries however many series.
        let mut heap: std::collections::BinaryHeap<Reverse<(u64, Reverse<MetricKey>, usize)>> =
            std::collections::BinaryHeap::with_capacity(TOP_KEPT + 1);
        // Taken, not drained: the maps' memory is freed until the next
        // interval, so idle time costs nothing and steady memory per series
        // stays what the persistent maps need.
        let maps = std::mem::take(&mut self.hits);
        for (i, map) in maps.into_iter().enumerate() {
            for (key, hits) in map {
                if heap.len() == TOP_KEPT {
                    match heap.peek() {
                        Some(Reverse((h, Reverse(k), _)))
                            if (hits, Reverse(&key)) > (*h, Reverse(k)) =>
                        {
                            heap.pop();
                        }
                        _ => continue,
                    }
                }
                heap.push(Reverse((hits, Reverse(key), i)));
            }
        }
        let mut top: Vec<Hot> = heap
            .into_iter()
            .map(|Reverse((hits, Reverse(key), i))| {
                let kind = match i {
                    0 => MetricType::Counter,
                    1 => MetricType::Gauge,
                    2 => self.timers.get(&key).map_or(MetricType::Timer, Timer::kind),
                    _ => MetricType::Set,
                };
                Hot { key, kind, hits }
            })
            .collect();
        top.sort_unstable_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.key.cmp(&b.key)));
        self.last_top = top;
    }

    /// Apply one shard's update; returns the registry's key of the gauge.
    fn update_gauge(
        &mut self,
        key: MetricKey,
        update: &GaugeUpdate,
        ttl: Option<u32>,
    ) -> MetricKey {
        match self.gauges.entry(key) {
            Entry::Occupied(mut o) => {
                let g = o.get_mut();
                g.value = update.apply(Some(g.value));
                if ttl.is_some() {
                    g.ttl = ttl;
                }
                o.key().clone()
            }
            Entry::Vacant(e) => {
                let key = e.key().clone();
                let value = update.apply(None);
                e.insert(Gauge { value, ttl });
                key
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

    /// New options from a config reload; they apply from the next merge and
    /// flush. Series already held are kept.
    pub fn set_options(&mut self, opts: &AggregateOptions) {
        self.opts = opts.clone();
    }

    /// Restore a gauge saved by [`crate::state`]. A gauge that already exists
    /// (a client sent it first) keeps its new value.
    pub fn restore_gauge(&mut self, key: &[u8], value: f64, ttl: Option<u32>) {
        if !self.gauges.contains_key(key) {
            self.gauges
                .insert(MetricKey::new(key), Gauge { value, ttl });
        }
    }

    /// Take every counter's total of this interval out of the registry
    /// (they report 0 at the next flush): what `persist_counters` saves
    /// instead of flushing. Counters at 0 are left out.
    pub fn take_counters(&mut self) -> Vec<(MetricKey, f64)> {
        let mut out = Vec::new();
        for (key, v) in self.counters.iter_mut() {
            if *v != 0.0 {
                out.push((key.clone(), std::mem::take(v)));
            }
        }
        out
    }

    /// After a flush: reset or delete per the reference's rules
    /// (`clear_metrics` in its stats.js).
    pub fn end_interval(&mut self) {
        self.rotate_hits();
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

    /// Every gauge with the flushes it has left under `delete_gauges`.
    pub fn gauges_with_ttl(&self) -> impl Iterator<Item = (&MetricKey, f64, Option<u32>)> + '_ {
        self.gauges.iter().map(|(k, g)| (k, g.value, g.ttl))
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

    /// One set's members (in no particular order), if the set exists.
    pub fn set_members(&self, key: &[u8]) -> Option<impl Iterator<Item = &[u8]> + '_> {
        self.sets.get(key).map(Members::iter)
    }

    /// Delete one series (the admin console's `delcounters`...); `h` and `d`
    /// name the timer maps. Returns whether it existed. A deleted series
    /// comes back, from zero, with its next value.
    pub fn remove(&mut self, ty: MetricType, key: &[u8]) -> bool {
        match class(ty) {
            0 => self.counters.remove(key).is_some(),
            1 => self.gauges.remove(key).is_some(),
            2 => self.timers.remove(key).is_some(),
            _ => self.sets.remove(key).is_some(),
        }
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

/// `map[key] += n`, sharing the key rather than copying it.
fn add_hits(map: &mut FastMap<MetricKey, u64>, key: &MetricKey, n: u64) {
    match map.get_mut(key.as_bytes()) {
        Some(total) => *total += n,
        None => {
            map.insert(key.clone(), n);
        }
    }
}

/// `haystack.indexOf(needle) > -1`, on bytes.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

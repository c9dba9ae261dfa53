//! The flusher's view: merged snapshots plus what persists across flushes.
//!
//! Imports, besides `aggregate` itself: `metric`.

use std::sync::Arc;

use super::FastMap;

use super::counter;
use super::gauge::GaugeUpdate;
use super::limit::{Admission, AdmissionLink};
use super::set::Members;
use super::shard::{class, Snapshot};
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
    /// The series limits' state (see [`super::limit`]); `None` without limits.
    admission: Option<Arc<Admission>>,
    /// Every link the state was published through (the options of the start
    /// and of each reload), so that a new state reaches every shard.
    links: Vec<AdmissionLink>,
    /// statsyard's own series (the `statsd.*` counters and gauges the
    /// flusher sets itself): they never went through the admission check,
    /// so a rebuilt state does not count them against the limits either.
    internal: std::collections::HashSet<MetricKey, foldhash::fast::RandomState>,
}

/// Count `key` as live if it is not (the registry just took it in).
fn ensure(admission: &Option<Arc<Admission>>, class: usize, key: &MetricKey) {
    if let Some(a) = admission {
        a.ensure(class as u8, key.as_bytes());
    }
}

/// Free the slot of a series the registry deleted.
fn forget(admission: &Option<Arc<Admission>>, class: usize, key: &MetricKey) {
    if let Some(a) = admission {
        a.forget(class as u8, key.as_bytes());
    }
}

impl Registry {
    /// An empty registry.
    pub fn new(opts: &AggregateOptions) -> Registry {
        let mut r = Registry {
            opts: opts.clone(),
            ..Registry::default()
        };
        r.admission = r.build_admission();
        opts.link.publish(r.admission.clone());
        r.links.push(opts.link.clone());
        r
    }

    /// A fresh admission state for the current limits that counts every
    /// client series held now (not statsyard's own), or `None` without
    /// limits.
    fn build_admission(&self) -> Option<Arc<Admission>> {
        if self.opts.limits.is_unlimited() {
            return None;
        }
        let a = Admission::new(&self.opts.limits);
        let classes = [
            (0, self.counters.keys().collect::<Vec<_>>()),
            (1, self.gauges.keys().collect()),
            (2, self.timers.keys().collect()),
            (3, self.sets.keys().collect()),
        ];
        for (class, keys) in classes {
            for k in keys {
                if !self.internal.contains(k) {
                    a.ensure(class, k.as_bytes());
                }
            }
        }
        Some(Arc::new(a))
    }

    /// Series counted against the limits now, or `None` without limits.
    pub fn live_series(&self) -> Option<usize> {
        self.admission.as_ref().map(|a| a.live())
    }

    /// Live series under a configured `series_limits` prefix.
    pub fn live_series_under(&self, prefix: &str) -> Option<usize> {
        self.admission.as_ref().and_then(|a| a.live_under(prefix))
    }

    /// Fold a shard's snapshot in.
    pub fn merge(&mut self, snap: Snapshot) {
        let maps = snap.maps;
        // The shard holds key bytes; a series the registry holds keeps its
        // own key (an `Arc`), which each hit map shares. Only a new series
        // allocates one.
        let adm = &self.admission;
        for (key, (v, hits)) in maps.counters.into_iter() {
            let key = fold_in(&mut self.counters, adm, 0, key.as_bytes(), v, |total, v| {
                counter::accumulate(total, v)
            });
            add_hits(&mut self.hits[0], &key, hits.into());
        }
        let ttl = self.opts.delete_gauges.then_some(self.opts.gauges_max_ttl);
        for (key, (update, hits)) in maps.gauges.into_iter() {
            let key = self.update_gauge(key.as_bytes(), &update, ttl);
            add_hits(&mut self.hits[1], &key, hits.into());
        }
        let limit = self.opts.timer_exact_samples;
        let adm = &self.admission;
        for (key, t) in maps.timers.into_iter() {
            let hits = t.len();
            let key = fold_in(&mut self.timers, adm, 2, key.as_bytes(), t, |mine, t| {
                mine.merge(t, limit)
            });
            add_hits(&mut self.hits[2], &key, hits);
        }
        for (key, (members, hits)) in maps.sets.into_iter() {
            let key = fold_in(
                &mut self.sets,
                adm,
                3,
                key.as_bytes(),
                members,
                |mine, m| mine.extend(m),
            );
            add_hits(&mut self.hits[3], &key, hits.into());
        }
    }

    /// Fold in forwarded state ([`super::IntervalState`], from agents or
    /// taken from the shards for a middle tier) with the same arithmetic as
    /// [`Registry::merge`]: counters add, timers and sets pool, gauges apply
    /// their latest absolute value and their deltas onto the persistent
    /// value. New series count against the limits (they were admitted by
    /// the sender) and are never refused. Each series counts one hit (a
    /// timer its samples).
    pub fn merge_state(&mut self, st: super::IntervalState) {
        let parts = st.into_parts();
        let adm = &self.admission;
        for (key, v) in parts.counters {
            let key = fold_in(&mut self.counters, adm, 0, key.as_bytes(), v, |total, v| {
                counter::accumulate(total, v)
            });
            add_hits(&mut self.hits[0], &key, 1);
        }
        let ttl = self.opts.delete_gauges.then_some(self.opts.gauges_max_ttl);
        for (key, g) in parts.gauges {
            let key = match self.gauges.get_key_value_mut(key.as_bytes()) {
                Some((k, mine)) => {
                    mine.value = g.apply(Some(mine.value));
                    if ttl.is_some() {
                        mine.ttl = ttl;
                    }
                    k.clone()
                }
                None => {
                    ensure(&self.admission, 1, &key);
                    let value = g.apply(None);
                    self.gauges.insert(key.clone(), Gauge { value, ttl });
                    key
                }
            };
            add_hits(&mut self.hits[1], &key, 1);
        }
        let limit = self.opts.timer_exact_samples;
        let adm = &self.admission;
        for (key, t) in parts.timers {
            let hits = t.len();
            let key = fold_in(&mut self.timers, adm, 2, key.as_bytes(), t, |mine, t| {
                mine.merge(t, limit)
            });
            add_hits(&mut self.hits[2], &key, hits);
        }
        for (key, m) in parts.sets {
            let key = fold_in(&mut self.sets, adm, 3, key.as_bytes(), m, |mine, m| {
                mine.extend(m)
            });
            add_hits(&mut self.hits[3], &key, 1);
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
    fn update_gauge(&mut self, key: &[u8], update: &GaugeUpdate, ttl: Option<u32>) -> MetricKey {
        match self.gauges.get_key_value_mut(key) {
            Some((key, g)) => {
                g.value = update.apply(Some(g.value));
                if ttl.is_some() {
                    g.ttl = ttl;
                }
                key.clone()
            }
            None => {
                let key = MetricKey::new(key);
                ensure(&self.admission, 1, &key);
                let value = update.apply(None);
                self.gauges.insert(key.clone(), Gauge { value, ttl });
                key
            }
        }
    }

    /// Add to a counter directly (the `statsd.*` internal counters), creating
    /// it if needed: `add_counter(key, 0.0)` makes a counter report 0. A
    /// counter created here is statsyard's own: not counted against the
    /// series limits.
    pub fn add_counter(&mut self, key: &[u8], value: f64) {
        match self.counters.get_mut(key) {
            Some(total) => counter::accumulate(total, value),
            None => {
                let key = MetricKey::new(key);
                self.internal.insert(key.clone());
                self.counters.insert(key, value);
            }
        }
    }

    /// A client's counter saved at the last shutdown (`persist_counters`):
    /// added as if it had arrived, and counted against the limits.
    pub fn restore_counter(&mut self, key: &[u8], value: f64) {
        match self.counters.get_mut(key) {
            Some(total) => counter::accumulate(total, value),
            None => {
                let key = MetricKey::new(key);
                ensure(&self.admission, 0, &key);
                self.counters.insert(key, value);
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
                let key = MetricKey::new(key);
                self.internal.insert(key.clone());
                self.gauges.insert(key, Gauge { value, ttl: None });
            }
        }
    }

    /// New options from a config reload; they apply from the next merge and
    /// flush. Series already held are kept, also past new, lower limits:
    /// those only refuse new series until enough are deleted.
    pub fn set_options(&mut self, opts: &AggregateOptions) {
        let limits_changed = opts.limits != self.opts.limits;
        self.opts = opts.clone();
        if limits_changed {
            self.admission = self.build_admission();
            for l in &self.links {
                l.publish(self.admission.clone());
            }
        }
        // Links nobody but this registry holds served options and shards
        // that are gone.
        let current = &self.opts.link;
        self.links.retain(|l| l.same(current) || !l.orphaned());
        if !self.links.iter().any(|l| l.same(current)) {
            current.publish(self.admission.clone());
            self.links.push(current.clone());
        }
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
        let adm = &self.admission;
        if self.opts.delete_counters {
            self.counters.retain(|key, v| {
                let kept = KEPT_COUNTERS
                    .iter()
                    .any(|name| contains(key.as_bytes(), name));
                *v = 0.0;
                if !kept {
                    forget(adm, 0, key);
                }
                kept
            });
        } else {
            self.counters.values_mut().for_each(|v| *v = 0.0);
        }

        if self.opts.delete_timers {
            if adm.is_some() {
                self.timers.keys().for_each(|k| forget(adm, 2, k));
            }
            self.timers.clear();
        } else {
            self.timers.values_mut().for_each(Timer::reset);
        }

        if self.opts.delete_sets {
            if adm.is_some() {
                self.sets.keys().for_each(|k| forget(adm, 3, k));
            }
            self.sets.clear();
        } else {
            self.sets.values_mut().for_each(Members::clear);
        }

        // Without delete_gauges no gauge has a TTL: they all persist.
        self.gauges.retain(|key, g| match &mut g.ttl {
            None => true,
            Some(ttl) => {
                *ttl = ttl.saturating_sub(1);
                let kept = *ttl >= 1;
                if !kept {
                    forget(adm, 1, key);
                }
                kept
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
        let c = class(ty);
        let removed = match c {
            0 => self.counters.remove_entry(key).map(|(k, _)| k),
            1 => self.gauges.remove_entry(key).map(|(k, _)| k),
            2 => self.timers.remove_entry(key).map(|(k, _)| k),
            _ => self.sets.remove_entry(key).map(|(k, _)| k),
        };
        match removed {
            Some(k) => {
                if !self.internal.remove(&k) {
                    forget(&self.admission, c, &k);
                }
                true
            }
            None => false,
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

/// Fold a shard's `value` of the series `key` into `map` with `fold`, or
/// insert it as a new series (counted against the limits, as class
/// `class`). Returns the registry's key, which a new series allocates.
fn fold_in<V>(
    map: &mut FastMap<MetricKey, V>,
    admission: &Option<Arc<Admission>>,
    class: usize,
    key: &[u8],
    value: V,
    fold: impl FnOnce(&mut V, V),
) -> MetricKey {
    match map.get_key_value_mut(key) {
        Some((key, mine)) => {
            fold(mine, value);
            key.clone()
        }
        None => {
            let key = MetricKey::new(key);
            ensure(admission, class, &key);
            map.insert(key.clone(), value);
            key
        }
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

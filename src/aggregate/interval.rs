//! One interval's mergeable state, apart from the registry: what an agent
//! forwards and what an aggregator receives (the forwarding tier,
//! `crate::forward`).
//!
//! It is the shard's own per-interval state, keyed by owned keys so that it
//! outlives the shards and crosses threads: counter sums (already scaled by
//! the sample rate), gauges as [`GaugeState`] (an absolute value with the
//! time it was written, and/or a sum of deltas), timers as [`Timer`]s (exact
//! samples up to the bound, else the histogram with exact moments), set
//! members. Two states merge exactly as the flusher merges shards, and a
//! state merges into the [`Registry`](super::Registry) the same way
//! ([`Registry::merge_state`](super::Registry::merge_state)), so an
//! aggregator's flush of forwarded state equals a single server's for
//! counters, sets, timer counts and exact samples.
//!
//! The split between forwarded and local series happens here too
//! ([`Snapshot::split_into`]): at flush time, on the flusher thread, never on
//! the receive path.
//!
//! Imports, besides `aggregate` itself: `metric`.

use super::counter;
use super::gauge::{apply_delta, GaugeUpdate};
use super::set::Members;
use super::shard::{Maps, Snapshot};
use super::timer::Timer;
use super::FastMap;
use crate::metric::{MetricKey, MetricType};

/// One gauge's updates in one interval, in a form that merges across
/// hosts: the last absolute value with the time it was written (the latest
/// write wins), and the sum of the deltas that came without one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaugeState {
    /// The last absolute value (deltas after it already applied) and when
    /// it was written (Unix ms).
    pub absolute: Option<(f64, u64)>,
    /// Deltas received while no absolute value was (a host that only
    /// sends `+N`/`-N`), summed.
    pub delta: f64,
}

impl GaugeState {
    /// A shard's update, written at `written_ms`.
    fn from_update(u: &GaugeUpdate, written_ms: u64) -> GaugeState {
        match u {
            GaugeUpdate::Absolute(v) => GaugeState {
                absolute: Some((*v, written_ms)),
                delta: 0.0,
            },
            GaugeUpdate::Deltas(ds) => GaugeState {
                absolute: None,
                delta: ds.iter().sum(),
            },
        }
    }

    /// The same host's later update: an absolute value replaces what came
    /// before; deltas apply to the absolute value when there is one.
    fn then(&mut self, later: &GaugeUpdate, written_ms: u64) {
        match later {
            GaugeUpdate::Absolute(_) => *self = GaugeState::from_update(later, written_ms),
            GaugeUpdate::Deltas(ds) => match &mut self.absolute {
                Some((v, _)) => {
                    for &d in ds {
                        *v = apply_delta(Some(*v), d);
                    }
                }
                None => self.delta += ds.iter().sum::<f64>(),
            },
        }
    }

    /// Another host's state of the same interval: the latest absolute value
    /// wins (ties: the greater value, so that every aggregator agrees), the
    /// deltas add up.
    pub fn merge(&mut self, other: &GaugeState) {
        self.absolute = match (self.absolute, other.absolute) {
            (Some(a), Some(b)) => {
                if (b.1, b.0) > (a.1, a.0) {
                    Some(b)
                } else {
                    Some(a)
                }
            }
            (a, b) => a.or(b),
        };
        self.delta += other.delta;
    }

    /// The gauge's value after this interval, given its value before.
    pub fn apply(&self, cur: Option<f64>) -> f64 {
        match self.absolute {
            Some((v, _)) if self.delta == 0.0 => v,
            Some((v, _)) => apply_delta(Some(v), self.delta),
            None => apply_delta(cur, self.delta),
        }
    }
}

/// Where a series goes at the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Aggregated and flushed here.
    Local,
    /// Into the forwarded state.
    Forward,
}

/// One interval's mergeable state (see the module doc).
#[derive(Debug, Default)]
pub struct IntervalState {
    counters: FastMap<MetricKey, f64>,
    gauges: FastMap<MetricKey, GaugeState>,
    timers: FastMap<MetricKey, Timer>,
    sets: FastMap<MetricKey, Members>,
    /// Samples a timer keeps exactly before it becomes a histogram.
    timer_exact_samples: usize,
}

/// A key of `map`, or a new one (the map's key is shared, not copied).
fn entry<'m, V>(
    map: &'m mut FastMap<MetricKey, V>,
    key: &[u8],
    new: impl FnOnce() -> V,
) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(MetricKey::new(key), new());
    }
    // Just inserted when it was missing.
    map.get_mut(key).expect("present")
}

impl IntervalState {
    /// An empty state whose timers stay exact up to `timer_exact_samples`.
    pub fn new(timer_exact_samples: usize) -> IntervalState {
        IntervalState {
            timer_exact_samples,
            ..IntervalState::default()
        }
    }

    /// Series of every type.
    pub fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add to a counter (a sum already scaled by its sample rates).
    pub fn add_counter(&mut self, key: &[u8], v: f64) {
        counter::accumulate(entry(&mut self.counters, key, || 0.0), v);
    }

    /// Merge another host's gauge state.
    pub fn add_gauge(&mut self, key: &[u8], g: &GaugeState) {
        match self.gauges.get_mut(key) {
            Some(mine) => mine.merge(g),
            None => {
                self.gauges.insert(MetricKey::new(key), *g);
            }
        }
    }

    /// Merge a timer (its count and its samples).
    pub fn add_timer(&mut self, key: &[u8], t: Timer) {
        let limit = self.timer_exact_samples;
        let kind = t.kind();
        entry(&mut self.timers, key, || Timer::new(kind)).merge(t, limit);
    }

    /// Add set members.
    pub fn add_members<'a>(&mut self, key: &[u8], members: impl IntoIterator<Item = &'a [u8]>) {
        let s = entry(&mut self.sets, key, Members::default);
        for m in members {
            s.insert(m);
        }
    }

    /// Merge another state in.
    pub fn merge(&mut self, other: IntervalState) {
        for (k, v) in other.counters {
            self.add_counter(k.as_bytes(), v);
        }
        for (k, g) in other.gauges {
            self.add_gauge(k.as_bytes(), &g);
        }
        for (k, t) in other.timers {
            self.add_timer(k.as_bytes(), t);
        }
        for (k, m) in other.sets {
            match self.sets.get_mut(k.as_bytes()) {
                Some(mine) => mine.extend(m),
                None => {
                    self.sets.insert(k, m);
                }
            }
        }
    }

    /// Every counter.
    pub fn counters(&self) -> impl Iterator<Item = (&MetricKey, f64)> + '_ {
        self.counters.iter().map(|(k, v)| (k, *v))
    }

    /// Every gauge.
    pub fn gauges(&self) -> impl Iterator<Item = (&MetricKey, &GaugeState)> + '_ {
        self.gauges.iter()
    }

    /// Every timer, histogram and distribution.
    pub fn timers(&self) -> impl Iterator<Item = (&MetricKey, &Timer)> + '_ {
        self.timers.iter()
    }

    /// Every set and its members (in no particular order).
    pub fn sets(&self) -> impl Iterator<Item = (&MetricKey, SetMembers<'_>)> + '_ {
        self.sets.iter().map(|(k, m)| (k, SetMembers(m)))
    }

    /// Take the counters, gauges, timers and sets apart (to merge them into
    /// the registry).
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            counters: self.counters,
            gauges: self.gauges,
            timers: self.timers,
            sets: self.sets,
        }
    }

    /// Move the series `route` sends on into `out`; what stays local is
    /// returned. `route(key, type)` also says, when the key must change (a
    /// scope tag stripped), its new key. For a middle tier: forwarded-in
    /// state that forwards on.
    pub fn split_into(
        self,
        out: &mut IntervalState,
        route: &mut impl FnMut(&[u8], MetricType) -> (Route, Option<Vec<u8>>),
    ) -> IntervalState {
        let mut local = IntervalState::new(self.timer_exact_samples);
        macro_rules! each {
            ($map:ident, $ty:expr, $add:expr) => {
                for (k, v) in self.$map {
                    let (to, key) = route(k.as_bytes(), $ty(&v));
                    let dst = match to {
                        Route::Local => &mut local,
                        Route::Forward => &mut *out,
                    };
                    let key = key.as_deref().unwrap_or(k.as_bytes());
                    $add(dst, key, v);
                }
            };
        }
        each!(
            counters,
            |_: &f64| MetricType::Counter,
            |d: &mut IntervalState, k: &[u8], v| d.add_counter(k, v)
        );
        each!(
            gauges,
            |_: &GaugeState| MetricType::Gauge,
            |d: &mut IntervalState, k: &[u8], g: GaugeState| d.add_gauge(k, &g)
        );
        each!(
            timers,
            |t: &Timer| t.kind(),
            |d: &mut IntervalState, k: &[u8], t| d.add_timer(k, t)
        );
        each!(
            sets,
            |_: &Members| MetricType::Set,
            |d: &mut IntervalState, k: &[u8], m: Members| {
                match d.sets.get_mut(k) {
                    Some(mine) => mine.extend(m),
                    None => {
                        d.sets.insert(MetricKey::new(k), m);
                    }
                }
            }
        );
        local
    }
}

/// The parts of an [`IntervalState`], for the registry's merge.
pub(crate) struct Parts {
    pub(crate) counters: FastMap<MetricKey, f64>,
    pub(crate) gauges: FastMap<MetricKey, GaugeState>,
    pub(crate) timers: FastMap<MetricKey, Timer>,
    pub(crate) sets: FastMap<MetricKey, Members>,
}

/// A set's members, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SetMembers<'a>(&'a Members);

impl<'a> SetMembers<'a> {
    /// The members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

impl Snapshot {
    /// Move the series `route` forwards into `out` (gauges stamped as
    /// written at `written_ms`); return what stays local, as a snapshot for
    /// [`Registry::merge`](super::Registry::merge). `route(key, type)` also
    /// says, when the key must change (a scope tag stripped), its new key.
    /// Runs on the flusher at flush time, so the receive path pays nothing.
    pub fn split_into(
        self,
        out: &mut IntervalState,
        written_ms: u64,
        route: &mut impl FnMut(&[u8], MetricType) -> (Route, Option<Vec<u8>>),
    ) -> Snapshot {
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::FixedState::with_seed(0);
        let mut local = Maps::default();
        // A key may come twice (two keys that became one when a scope tag
        // was stripped): the registry's merge folds entries in one by one,
        // so they merge there like two values of one series.
        macro_rules! keep {
            ($map:ident, $key:expr, $v:expr) => {{
                let key: &[u8] = $key;
                local.$map.insert_new(hasher.hash_one(key), key, $v);
            }};
        }
        for (k, (v, hits)) in self.maps.counters.into_iter() {
            match route(k.as_bytes(), MetricType::Counter) {
                (Route::Local, key) => {
                    keep!(counters, key.as_deref().unwrap_or(k.as_bytes()), (v, hits))
                }
                (Route::Forward, key) => out.add_counter(key.as_deref().unwrap_or(k.as_bytes()), v),
            }
        }
        for (k, (u, hits)) in self.maps.gauges.into_iter() {
            match route(k.as_bytes(), MetricType::Gauge) {
                (Route::Local, key) => {
                    keep!(gauges, key.as_deref().unwrap_or(k.as_bytes()), (u, hits))
                }
                (Route::Forward, key) => {
                    let key = key.as_deref().unwrap_or(k.as_bytes());
                    match out.gauges.get_mut(key) {
                        Some(g) => g.then(&u, written_ms),
                        None => {
                            out.gauges.insert(
                                MetricKey::new(key),
                                GaugeState::from_update(&u, written_ms),
                            );
                        }
                    }
                }
            }
        }
        for (k, t) in self.maps.timers.into_iter() {
            match route(k.as_bytes(), t.kind()) {
                (Route::Local, key) => keep!(timers, key.as_deref().unwrap_or(k.as_bytes()), t),
                (Route::Forward, key) => out.add_timer(key.as_deref().unwrap_or(k.as_bytes()), t),
            }
        }
        for (k, (m, hits)) in self.maps.sets.into_iter() {
            match route(k.as_bytes(), MetricType::Set) {
                (Route::Local, key) => {
                    keep!(sets, key.as_deref().unwrap_or(k.as_bytes()), (m, hits))
                }
                (Route::Forward, key) => {
                    let key = key.as_deref().unwrap_or(k.as_bytes());
                    match out.sets.get_mut(key) {
                        Some(mine) => mine.extend(m),
                        None => {
                            out.sets.insert(MetricKey::new(key), m);
                        }
                    }
                }
            }
        }
        Snapshot { maps: local }
    }
}

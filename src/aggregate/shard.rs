//! One receive thread's aggregates for the current interval.
//!
//! Imports, besides `aggregate` itself: `metric`.

use std::hash::BuildHasher;

use super::counter;
use super::gauge::GaugeUpdate;
use super::keymap::KeyMap;
use super::limit::{Refusal, ShardAdmission};
use super::set::Members;
use super::timer::Timer;
use super::AggregateOptions;
use crate::metric::{MetricRef, MetricType, Value};

/// The index of a type's hit map: counters, gauges, timer-likes, sets.
/// Also the type class of a series for the series limits: a counter and a
/// gauge of the same name are two series, a timer and a histogram one.
pub(crate) fn class(ty: MetricType) -> usize {
    match ty {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Timer | MetricType::Histogram | MetricType::Distribution => 2,
        MetricType::Set => 3,
    }
}

/// The per-type maps of one interval, keyed by the canonical key's bytes
/// (see [`super::keymap`] for why not by `MetricKey`).
///
/// Counters, gauges and sets carry the number of values received this
/// interval next to their aggregate (for `/api/top`); a timer's sample count
/// already is that number. The count lives here, in per-interval storage,
/// rather than in the registry's persistent entries.
#[derive(Debug, Default)]
pub(crate) struct Maps {
    pub(crate) counters: KeyMap<(f64, u32)>,
    pub(crate) gauges: KeyMap<(GaugeUpdate, u32)>,
    pub(crate) timers: KeyMap<Timer>,
    pub(crate) sets: KeyMap<(Members, u32)>,
}

impl Maps {
    fn lens(&self) -> [usize; 4] {
        [
            self.counters.len(),
            self.gauges.len(),
            self.timers.len(),
            self.sets.len(),
        ]
    }
}

/// One receive thread's aggregates for the current interval.
///
/// Only its own thread inserts; the flusher [`take`](Shard::take)s the maps
/// out at the end of the interval, which is O(1), so a lock around a shard is
/// held only for an instant.
///
/// Values come in one at a time ([`insert`](Shard::insert)), or through a
/// short queue ([`push`](Shard::push), then [`drain`](Shard::drain) before
/// the lock is released) that spreads each lookup over the values behind
/// it (see [`super::keymap`]): when a value is pushed, the index slot its
/// hash starts from is prefetched; [`QUEUE`]` / 2` values later the slot
/// names the value's entry, which is prefetched; [`QUEUE`] values later
/// the value is applied, its entry in cache. Values are applied in the
/// order they came, either way.
#[derive(Debug)]
pub struct Shard {
    agg: Aggregates,
    queue: Queue,
}

/// Everything but the queue, so that a queued key can be borrowed while the
/// maps are updated.
#[derive(Debug)]
struct Aggregates {
    timer_exact_samples: usize,
    /// Hashes every key once per value; the hash is carried to the maps.
    hasher: foldhash::fast::RandomState,
    maps: Maps,
    /// Series per map at the last `take`: the next interval's maps are
    /// sized for as many, instead of growing step by step again.
    last_lens: [usize; 4],
    /// Consulted only for keys the maps do not hold (see [`super::limit`]).
    admission: ShardAdmission,
}

/// What [`Shard::insert`] did with a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// Aggregated (also a value whose variant does not fit its type, which
    /// is ignored; the parser never produces one).
    Ok,
    /// Dropped: it would have created a new series past a limit.
    Refused(Refusal),
}

/// What a shard held at the end of an interval, ready to be merged into the
/// [`Registry`](super::Registry).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(crate) maps: Maps,
}

impl Snapshot {
    /// The number of series in the snapshot (of every type).
    pub fn len(&self) -> usize {
        self.maps.lens().iter().sum()
    }

    /// No series at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::new(&AggregateOptions::default())
    }
}

/// Values a [`Shard::push`] keeps back. Enough for the index slots, then
/// the entries, of the values queued to arrive from memory while the
/// values ahead are parsed and applied: about 8 values (the half of the
/// queue each step has) take longer than a cache miss to memory.
pub const QUEUE: usize = 16;

/// Longest key a queued value copies; longer ones are applied at once.
const QUEUED_KEY: usize = 64;

/// A value waiting in the queue: its own copy of the key, since the key of
/// a line may live in a parser buffer that the next line reuses.
#[derive(Debug, Clone, Copy)]
struct Queued {
    hash: u64,
    /// Whether `at` was looked up yet.
    resolved: bool,
    /// The entry the index named when it was looked up.
    at: Option<u32>,
    kind: MetricType,
    number: f64,
    delta: bool,
    sample_rate: f64,
    len: u8,
    key: [u8; QUEUED_KEY],
}

impl Queued {
    fn value(&self) -> Value<'static> {
        if self.delta {
            Value::GaugeDelta(self.number)
        } else {
            Value::Number(self.number)
        }
    }
}

/// A ring of [`QUEUE`] values.
#[derive(Debug)]
struct Queue {
    slots: [Queued; QUEUE],
    head: usize,
    len: usize,
}

impl Default for Queue {
    fn default() -> Self {
        let empty = Queued {
            hash: 0,
            resolved: false,
            at: None,
            kind: MetricType::Counter,
            number: 0.0,
            delta: false,
            sample_rate: 1.0,
            len: 0,
            key: [0; QUEUED_KEY],
        };
        Queue {
            slots: [empty; QUEUE],
            head: 0,
            len: 0,
        }
    }
}

impl Shard {
    /// An empty shard.
    pub fn new(opts: &AggregateOptions) -> Shard {
        Shard {
            agg: Aggregates {
                timer_exact_samples: opts.timer_exact_samples,
                hasher: foldhash::fast::RandomState::default(),
                maps: Maps::default(),
                last_lens: [0; 4],
                admission: ShardAdmission::new(&opts.link),
            },
            queue: Queue::default(),
        }
    }

    /// Add one value, with the reference's semantics for its type. Allocates
    /// only for a series (or set member) not yet seen this interval whose key
    /// is too long to keep inline, and for a timer's sample vector as it
    /// grows up to its bound.
    ///
    /// A key the shard does not hold yet is first checked against the
    /// series limits; a value that would create a series past a limit is
    /// refused, and nothing is stored.
    ///
    /// A value whose variant does not fit the type (a set member for a
    /// counter, ...) is ignored; the parser never produces one.
    pub fn insert(&mut self, m: &MetricRef<'_>) -> Inserted {
        // Values pushed before come first (a caller that mixes both ways
        // drains first, so there is nothing to report here).
        self.drain(|_, _| {});
        let hash = self.agg.hash(m.key);
        match self
            .agg
            .apply(hash, None, m.kind, m.value, m.sample_rate, m.key)
        {
            Ok(()) => Inserted::Ok,
            Err(r) => Inserted::Refused(r),
        }
    }

    /// Add one value as [`insert`](Shard::insert) does, later: after at most
    /// [`QUEUE`] more pushes, or at [`drain`](Shard::drain). A value that is
    /// refused, now or when it is applied, is handed to `refused` with its key.
    #[inline]
    pub fn push(&mut self, m: &MetricRef<'_>, mut refused: impl FnMut(&[u8], Refusal)) {
        let (number, delta) = match m.value {
            Value::Number(v) => (v, false),
            Value::GaugeDelta(v) => (v, true),
            // Set members borrow the packet: applied at once, in order.
            Value::SetMember(_) => return self.push_now(m, refused),
        };
        if m.key.len() > QUEUED_KEY {
            return self.push_now(m, refused);
        }
        let hash = self.agg.hash(m.key);
        self.agg.maps.prefetch_slot(m.kind, hash);
        if self.queue.len == QUEUE {
            self.apply_oldest(&mut refused);
        }
        let q = &mut self.queue;
        // The value half a queue behind this one: its index slot has
        // arrived; find its entry and start loading that.
        if q.len >= QUEUE / 2 {
            let v = &mut q.slots[(q.head + q.len - QUEUE / 2) % QUEUE];
            v.at = self.agg.maps.candidate(v.kind, v.hash);
            v.resolved = true;
        }
        let slot = &mut q.slots[(q.head + q.len) % QUEUE];
        slot.hash = hash;
        slot.resolved = false;
        slot.at = None;
        slot.kind = m.kind;
        slot.number = number;
        slot.delta = delta;
        slot.sample_rate = m.sample_rate;
        slot.len = m.key.len() as u8;
        slot.key[..m.key.len()].copy_from_slice(m.key);
        q.len += 1;
    }

    /// Apply every queued value.
    pub fn drain(&mut self, mut refused: impl FnMut(&[u8], Refusal)) {
        while self.queue.len > 0 {
            self.apply_oldest(&mut refused);
        }
    }

    /// Drain, then apply `m` at once.
    fn push_now(&mut self, m: &MetricRef<'_>, mut refused: impl FnMut(&[u8], Refusal)) {
        self.drain(&mut refused);
        let hash = self.agg.hash(m.key);
        if let Err(r) = self
            .agg
            .apply(hash, None, m.kind, m.value, m.sample_rate, m.key)
        {
            refused(m.key, r);
        }
    }

    #[inline]
    fn apply_oldest(&mut self, refused: &mut impl FnMut(&[u8], Refusal)) {
        let q = &mut self.queue;
        let v = &q.slots[q.head];
        q.head = (q.head + 1) % QUEUE;
        q.len -= 1;
        let key = &v.key[..usize::from(v.len)];
        // Not looked up yet (a drain): the exact lookup does it.
        let at = if v.resolved { v.at } else { None };
        if let Err(r) = self
            .agg
            .apply(v.hash, at, v.kind, v.value(), v.sample_rate, key)
        {
            refused(key, r);
        }
    }

    /// Take the interval's aggregates, leaving the shard empty. O(1): the
    /// maps are swapped out, not copied. Anything still queued (only a
    /// caller that did not drain leaves any) is applied first, and a refusal
    /// among it is not reported.
    pub fn take(&mut self) -> Snapshot {
        self.drain(|_, _| {});
        let maps = std::mem::take(&mut self.agg.maps);
        self.agg.last_lens = maps.lens();
        Snapshot { maps }
    }
}

impl Maps {
    /// Prefetch the index slot of `hash` in `kind`'s map.
    #[inline]
    fn prefetch_slot(&self, kind: MetricType, hash: u64) {
        match class(kind) {
            0 => self.counters.prefetch_slot(hash),
            1 => self.gauges.prefetch_slot(hash),
            2 => self.timers.prefetch_slot(hash),
            _ => self.sets.prefetch_slot(hash),
        }
    }

    /// The candidate entry for `hash` in `kind`'s map, prefetched.
    #[inline]
    fn candidate(&self, kind: MetricType, hash: u64) -> Option<u32> {
        macro_rules! look {
            ($map:expr) => {{
                let at = $map.candidate(hash);
                if let Some(at) = at {
                    $map.prefetch(at);
                }
                at
            }};
        }
        match class(kind) {
            0 => look!(self.counters),
            1 => look!(self.gauges),
            2 => look!(self.timers),
            _ => look!(self.sets),
        }
    }
}

impl Aggregates {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The value, with the reference's semantics for its type, into the
    /// series whose key is `key` (hash `hash`; `at` the candidate entry the
    /// index gave when the value was queued).
    #[inline]
    fn apply(
        &mut self,
        hash: u64,
        at: Option<u32>,
        kind: MetricType,
        value: Value<'_>,
        sample_rate: f64,
        key: &[u8],
    ) -> Result<(), Refusal> {
        let maps = &mut self.maps;
        // A series the map does not hold: check the limits, size an empty
        // map for the last interval's series, then insert.
        macro_rules! new_series {
            ($map:ident, $value:expr) => {{
                self.admission.admit(class(kind) as u8, key)?;
                let i = class(kind);
                if maps.$map.is_empty() && self.last_lens[i] > 0 {
                    maps.$map = KeyMap::with_capacity(self.last_lens[i]);
                }
                maps.$map.insert_new(hash, key, $value);
            }};
        }
        match (kind, value) {
            (MetricType::Counter, Value::Number(v) | Value::GaugeDelta(v)) => {
                let v = counter::scaled(v, sample_rate);
                match maps.counters.find_mut(at, hash, key) {
                    Some((total, hits)) => {
                        counter::accumulate(total, v);
                        *hits = hits.saturating_add(1);
                    }
                    None => {
                        let mut total = 0.0;
                        counter::accumulate(&mut total, v);
                        new_series!(counters, (total, 1));
                    }
                }
            }
            (MetricType::Gauge, Value::Number(v)) => match maps.gauges.find_mut(at, hash, key) {
                Some((g, hits)) => {
                    g.set(v);
                    *hits = hits.saturating_add(1);
                }
                None => new_series!(gauges, (GaugeUpdate::new(v, false), 1)),
            },
            (MetricType::Gauge, Value::GaugeDelta(d)) => {
                match maps.gauges.find_mut(at, hash, key) {
                    Some((g, hits)) => {
                        g.delta(d);
                        *hits = hits.saturating_add(1);
                    }
                    None => new_series!(gauges, (GaugeUpdate::new(d, true), 1)),
                }
            }
            (kind, Value::Number(v) | Value::GaugeDelta(v)) if kind.is_timer_like() => {
                let limit = self.timer_exact_samples;
                match maps.timers.find_mut(at, hash, key) {
                    Some(t) => t.push(v, sample_rate, limit),
                    None => {
                        let mut t = Timer::new(kind);
                        t.push(v, sample_rate, limit);
                        new_series!(timers, t);
                    }
                }
            }
            (MetricType::Set, Value::SetMember(member)) => {
                match maps.sets.find_mut(at, hash, key) {
                    Some((s, hits)) => {
                        s.insert(member);
                        *hits = hits.saturating_add(1);
                    }
                    None => {
                        let mut s = Members::default();
                        s.insert(member);
                        new_series!(sets, (s, 1));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

//! One receive thread's aggregates for the current interval.

use super::FastMap;

use super::counter;
use super::gauge::GaugeUpdate;
use super::limit::{Refusal, ShardAdmission};
use super::registry::class;
use super::set::Members;
use super::timer::Timer;
use super::AggregateOptions;
use crate::metric::{MetricKey, MetricRef, MetricType, Value};

/// The per-type maps of one interval. Keys are allocated once per series and
/// interval; an existing series is found by the borrowed key bytes.
///
/// Counters, gauges and sets carry the number of values received this
/// interval next to their aggregate (for `/api/top`); a timer's sample count
/// already is that number. The count lives here, in per-interval storage,
/// rather than in the registry's persistent entries.
#[derive(Debug, Default)]
pub(crate) struct Maps {
    pub(crate) counters: FastMap<MetricKey, (f64, u32)>,
    pub(crate) gauges: FastMap<MetricKey, (GaugeUpdate, u32)>,
    pub(crate) timers: FastMap<MetricKey, Timer>,
    pub(crate) sets: FastMap<MetricKey, (Members, u32)>,
}

/// One receive thread's aggregates for the current interval.
///
/// Only its own thread inserts; the flusher [`take`](Shard::take)s the maps
/// out at the end of the interval, which is O(1), so a lock around a shard is
/// held only for an instant.
#[derive(Debug)]
pub struct Shard {
    timer_exact_samples: usize,
    maps: Maps,
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
        let m = &self.maps;
        m.counters.len() + m.gauges.len() + m.timers.len() + m.sets.len()
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

impl Shard {
    /// An empty shard.
    pub fn new(opts: &AggregateOptions) -> Shard {
        Shard {
            timer_exact_samples: opts.timer_exact_samples,
            maps: Maps::default(),
            admission: ShardAdmission::new(&opts.link),
        }
    }

    /// Add one value, with the reference's semantics for its type. Allocates
    /// only for a series (or set member) not yet seen this interval, and for
    /// a timer's sample vector as it grows up to its bound.
    ///
    /// A key the shard does not hold yet is first checked against the
    /// series limits; a value that would create a series past a limit is
    /// refused, and nothing is stored.
    ///
    /// A value whose variant does not fit the type (a set member for a
    /// counter, ...) is ignored; the parser never produces one.
    pub fn insert(&mut self, m: &MetricRef<'_>) -> Inserted {
        let key = m.key;
        // Only on the path that allocates a new key anyway.
        macro_rules! admit {
            () => {
                if let Err(r) = self.admission.admit(class(m.kind) as u8, key) {
                    return Inserted::Refused(r);
                }
            };
        }
        match (m.kind, m.value) {
            (MetricType::Counter, Value::Number(v) | Value::GaugeDelta(v)) => {
                let v = counter::scaled(v, m.sample_rate);
                match self.maps.counters.get_mut(key) {
                    Some((total, hits)) => {
                        counter::accumulate(total, v);
                        *hits = hits.saturating_add(1);
                    }
                    None => {
                        admit!();
                        let mut total = 0.0;
                        counter::accumulate(&mut total, v);
                        self.maps.counters.insert(MetricKey::new(key), (total, 1));
                    }
                }
            }
            (MetricType::Gauge, Value::Number(v)) => match self.maps.gauges.get_mut(key) {
                Some((g, hits)) => {
                    g.set(v);
                    *hits = hits.saturating_add(1);
                }
                None => {
                    admit!();
                    self.maps
                        .gauges
                        .insert(MetricKey::new(key), (GaugeUpdate::new(v, false), 1));
                }
            },
            (MetricType::Gauge, Value::GaugeDelta(d)) => match self.maps.gauges.get_mut(key) {
                Some((g, hits)) => {
                    g.delta(d);
                    *hits = hits.saturating_add(1);
                }
                None => {
                    admit!();
                    self.maps
                        .gauges
                        .insert(MetricKey::new(key), (GaugeUpdate::new(d, true), 1));
                }
            },
            (kind, Value::Number(v) | Value::GaugeDelta(v)) if kind.is_timer_like() => {
                let limit = self.timer_exact_samples;
                match self.maps.timers.get_mut(key) {
                    Some(t) => t.push(v, m.sample_rate, limit),
                    None => {
                        admit!();
                        let mut t = Timer::new(kind);
                        t.push(v, m.sample_rate, limit);
                        self.maps.timers.insert(MetricKey::new(key), t);
                    }
                }
            }
            (MetricType::Set, Value::SetMember(member)) => match self.maps.sets.get_mut(key) {
                Some((s, hits)) => {
                    s.insert(member);
                    *hits = hits.saturating_add(1);
                }
                None => {
                    admit!();
                    let mut s = Members::default();
                    s.insert(member);
                    self.maps.sets.insert(MetricKey::new(key), (s, 1));
                }
            },
            _ => {}
        }
        Inserted::Ok
    }

    /// Take the interval's aggregates, leaving the shard empty. O(1): the
    /// maps are swapped out, not copied.
    pub fn take(&mut self) -> Snapshot {
        Snapshot {
            maps: std::mem::take(&mut self.maps),
        }
    }
}

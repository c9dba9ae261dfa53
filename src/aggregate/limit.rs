//! Series limits (`[statsd] max_series` and `series_limits`): which new
//! series may enter the aggregation state.
//!
//! # Where the limit is enforced, and why there
//!
//! A series costs memory twice: in the shard of every receive thread that
//! sees it during an interval, and in the [`Registry`](super::Registry),
//! which keeps it across intervals. Checking at the registry alone (at
//! merge) would let one interval of random keys fill the shards without
//! bound, so the check happens in the shard, but only when the shard meets a
//! key it does not hold yet: the first value of a series in an interval, on
//! each receive thread. Every further value of that series in the interval
//! is a plain map hit, exactly as without limits.
//!
//! The shared state is an [`Admission`]: the set of series admitted so far
//! (a concurrent set of 64-bit hashes of type class and key, hashed with a
//! per-process random seed so that a sender cannot aim collisions), the
//! number of live series, and one count per configured prefix. A shard's
//! check is a read of that set; only a series that is really new takes a
//! write lock on one of the set's internal shards and reserves a slot with a
//! compare-and-swap on the counters, so the limit is never exceeded by
//! receive threads racing each other (no check-then-insert race).
//!
//! The registry keeps the set in step with what it holds: a series it
//! deletes (idle stats under `delete_*`, expired gauges, the admin console's
//! `del*`) frees its slot; a series it holds that the set does not (one
//! deleted while its next value was already in a shard) is counted again at
//! merge. Such a series was accepted already, so it is never refused; the
//! live count may therefore pass the limit by the series re-created in the
//! interval they were deleted in, until they are deleted again, and new
//! series are refused meanwhile.
//!
//! # How the shards find the state
//!
//! The options a registry and its shards are built from carry an
//! [`AdmissionLink`]; the registry publishes its state through it, and a
//! shard reads the link's generation (one atomic load) before each check to
//! notice a new state. A config reload that changes the limits makes the
//! registry rebuild the state from the series it holds and publish it
//! through every link it knows, so shards built before and after the reload
//! agree.
//!
//! Imports nothing of the crate outside `aggregate`.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

/// The configured limits. `Default` is no limit at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesLimits {
    /// Most live series of every type together (`[statsd] max_series`); 0 is no limit.
    pub max_series: usize,
    /// Per-prefix limits (`[statsd] series_limits`); the longest matching prefix applies.
    pub prefixes: Vec<PrefixLimit>,
}

impl SeriesLimits {
    /// Nothing to enforce.
    pub fn is_unlimited(&self) -> bool {
        self.max_series == 0 && self.prefixes.is_empty()
    }
}

/// At most `max` live series whose key starts with `prefix`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixLimit {
    /// Compared with the canonical key's bytes (name first, then tags).
    pub prefix: String,
    /// At least 1.
    pub max: usize,
}

/// Why a new series was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The prefix whose limit was reached, or `None` for `max_series`.
    pub prefix: Option<Arc<str>>,
    /// The limit that was reached.
    pub limit: usize,
}

/// One prefix's limit and live count.
#[derive(Debug)]
struct Slot {
    prefix: Arc<str>,
    max: usize,
    live: AtomicUsize,
}

/// No prefix applies (the value stored in the known set).
const NO_SLOT: u32 = u32::MAX;

/// The admission state shared by a registry and its shards.
pub struct Admission {
    seed: foldhash::fast::RandomState,
    /// Hash of (type class, key) → the prefix slot it counts against.
    known: DashMap<u64, u32, foldhash::fast::RandomState>,
    live: AtomicUsize,
    max: usize,
    /// Longest prefix first, so the first match is the longest.
    slots: Vec<Slot>,
}

impl Admission {
    /// An empty state enforcing `limits`.
    pub fn new(limits: &SeriesLimits) -> Admission {
        let mut slots: Vec<Slot> = limits
            .prefixes
            .iter()
            .map(|p| Slot {
                prefix: p.prefix.as_str().into(),
                max: p.max,
                live: AtomicUsize::new(0),
            })
            .collect();
        slots.sort_by_key(|s| std::cmp::Reverse(s.prefix.len()));
        Admission {
            seed: foldhash::fast::RandomState::default(),
            known: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            live: AtomicUsize::new(0),
            max: limits.max_series,
            slots,
        }
    }

    /// Live series now (admitted and not deleted since).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Live series under `prefix`, if it is one of the configured prefixes.
    pub fn live_under(&self, prefix: &str) -> Option<usize> {
        self.slots
            .iter()
            .find(|s| &*s.prefix == prefix)
            .map(|s| s.live.load(Ordering::Relaxed))
    }

    fn hash(&self, class: u8, key: &[u8]) -> u64 {
        self.seed.hash_one((class, key))
    }

    fn slot_of(&self, key: &[u8]) -> u32 {
        self.slots
            .iter()
            .position(|s| key.starts_with(s.prefix.as_bytes()))
            .map_or(NO_SLOT, |i| i as u32)
    }

    /// A shard met `key` (of type class `class`) for the first time this
    /// interval: is it a series already admitted, or may it become one?
    pub(crate) fn admit(&self, class: u8, key: &[u8]) -> Result<(), Refusal> {
        let h = self.hash(class, key);
        // The common case (a known series' first value of the interval)
        // takes only a read lock.
        if self.known.contains_key(&h) {
            return Ok(());
        }
        let slot = self.slot_of(key);
        // The entry holds the write lock of `h`'s part of the set: two
        // threads meeting the same new key cannot both count it.
        match self.known.entry(h) {
            dashmap::Entry::Occupied(_) => Ok(()),
            dashmap::Entry::Vacant(v) => {
                if let Some(s) = self.slots.get(slot as usize) {
                    if !reserve(&s.live, s.max) {
                        return Err(Refusal {
                            prefix: Some(s.prefix.clone()),
                            limit: s.max,
                        });
                    }
                }
                if !reserve(&self.live, self.max) {
                    if let Some(s) = self.slots.get(slot as usize) {
                        s.live.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Err(Refusal {
                        prefix: None,
                        limit: self.max,
                    });
                }
                v.insert(slot);
                Ok(())
            }
        }
    }

    /// The registry holds `key` now: count it if it is not counted (it was
    /// accepted already, so it is never refused).
    pub(crate) fn ensure(&self, class: u8, key: &[u8]) {
        let h = self.hash(class, key);
        if self.known.contains_key(&h) {
            return;
        }
        if let dashmap::Entry::Vacant(v) = self.known.entry(h) {
            let slot = self.slot_of(key);
            if let Some(s) = self.slots.get(slot as usize) {
                s.live.fetch_add(1, Ordering::Relaxed);
            }
            self.live.fetch_add(1, Ordering::Relaxed);
            v.insert(slot);
        }
    }

    /// The registry deleted `key`: free its slot.
    pub(crate) fn forget(&self, class: u8, key: &[u8]) {
        if let Some((_, slot)) = self.known.remove(&self.hash(class, key)) {
            if let Some(s) = self.slots.get(slot as usize) {
                s.live.fetch_sub(1, Ordering::Relaxed);
            }
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the set itself: it may hold millions of hashes.
        f.debug_struct("Admission")
            .field("live", &self.live())
            .field("max", &self.max)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Add one to `live` unless that would pass `max` (0: no limit).
fn reserve(live: &AtomicUsize, max: usize) -> bool {
    if max == 0 {
        live.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < max).then_some(n + 1)
    })
    .is_ok()
}

/// How a registry hands its [`Admission`] to the shards built from the same
/// [`AggregateOptions`](super::AggregateOptions). Clones share the link.
/// Runtime state rather than configuration: it never makes two option
/// sets unequal.
#[derive(Clone, Default)]
pub struct AdmissionLink(Arc<LinkInner>);

#[derive(Default)]
struct LinkInner {
    /// Bumped after every publish, so that shards notice with one load.
    generation: AtomicU64,
    state: Mutex<Option<Arc<Admission>>>,
}

impl AdmissionLink {
    pub(crate) fn publish(&self, state: Option<Arc<Admission>>) {
        // A poisoned lock only means a panic elsewhere while it was held;
        // the Option inside is whole.
        *self.0.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.0.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn same(&self, other: &AdmissionLink) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Held by nobody but the registry: the options and shards it served are gone.
    pub(crate) fn orphaned(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

impl std::fmt::Debug for AdmissionLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionLink")
    }
}

impl PartialEq for AdmissionLink {
    fn eq(&self, _: &AdmissionLink) -> bool {
        true
    }
}

/// A shard's view of the link: the state as of the last generation it saw.
#[derive(Debug, Default)]
pub(crate) struct ShardAdmission {
    link: AdmissionLink,
    generation: u64,
    state: Option<Arc<Admission>>,
}

impl ShardAdmission {
    pub(crate) fn new(link: &AdmissionLink) -> ShardAdmission {
        ShardAdmission {
            link: link.clone(),
            generation: 0,
            state: None,
        }
    }

    /// [`Admission::admit`] against the link's current state; everything
    /// is admitted while no registry has published one.
    #[inline]
    pub(crate) fn admit(&mut self, class: u8, key: &[u8]) -> Result<(), Refusal> {
        let g = self.link.0.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.state = self
                .link
                .0
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.generation = g;
        }
        match &self.state {
            None => Ok(()),
            Some(a) => a.admit(class, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, prefixes: &[(&str, usize)]) -> SeriesLimits {
        SeriesLimits {
            max_series: max,
            prefixes: prefixes
                .iter()
                .map(|&(p, m)| PrefixLimit {
                    prefix: p.into(),
                    max: m,
                })
                .collect(),
        }
    }

    #[test]
    fn global_limit_admits_known_series_and_refuses_new_ones() {
        let a = Admission::new(&limits(2, &[]));
        assert_eq!(a.admit(0, b"a"), Ok(()));
        assert_eq!(a.admit(0, b"b"), Ok(()));
        let refused = Refusal {
            prefix: None,
            limit: 2,
        };
        assert_eq!(a.admit(0, b"c"), Err(refused.clone()));
        // Same key, other type: another series.
        assert_eq!(a.admit(1, b"a"), Err(refused));
        assert_eq!(a.admit(0, b"a"), Ok(()));
        assert_eq!(a.live(), 2);
        a.forget(0, b"a");
        assert_eq!(a.live(), 1);
        assert_eq!(a.admit(0, b"c"), Ok(()));
        // Forgetting what is not known changes nothing.
        a.forget(3, b"zz");
        assert_eq!(a.live(), 2);
    }

    #[test]
    fn longest_prefix_applies_and_counts_separately() {
        let a = Admission::new(&limits(0, &[("app.", 3), ("app.web.", 1)]));
        assert_eq!(a.admit(0, b"app.web.x"), Ok(()));
        let e = a.admit(0, b"app.web.y").unwrap_err();
        assert_eq!(e.prefix.as_deref(), Some("app.web."));
        assert_eq!(a.admit(0, b"app.a"), Ok(()));
        assert_eq!(a.admit(0, b"app.b"), Ok(()));
        // app.web.x counts under app.web. only, so app. has room for 3.
        assert_eq!(a.admit(0, b"app.c"), Ok(()));
        assert_eq!(
            a.admit(0, b"app.d").unwrap_err().prefix.as_deref(),
            Some("app.")
        );
        assert_eq!(a.admit(0, b"other"), Ok(()));
        assert_eq!(a.live_under("app."), Some(3));
        assert_eq!(a.live_under("app.web."), Some(1));
        assert_eq!(a.live(), 5);
        a.forget(0, b"app.web.x");
        assert_eq!(a.live_under("app.web."), Some(0));
        assert_eq!(a.admit(0, b"app.web.y"), Ok(()));
    }

    #[test]
    fn prefix_refusal_gives_back_nothing_and_global_refusal_frees_the_prefix() {
        let a = Admission::new(&limits(1, &[("p.", 5)]));
        assert_eq!(a.admit(0, b"x"), Ok(()));
        assert_eq!(a.admit(0, b"p.1").unwrap_err().prefix, None);
        assert_eq!(a.live_under("p."), Some(0));
        assert_eq!(a.live(), 1);
    }

    #[test]
    fn ensure_counts_once_without_a_limit_check() {
        let a = Admission::new(&limits(1, &[]));
        a.ensure(0, b"a");
        a.ensure(0, b"b");
        a.ensure(0, b"b");
        assert_eq!(a.live(), 2);
        assert!(a.admit(0, b"c").is_err());
        assert_eq!(a.admit(0, b"b"), Ok(()));
    }

    #[test]
    fn racing_threads_never_pass_the_limit() {
        let a = Arc::new(Admission::new(&limits(1000, &[])));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..2000 {
                        // Half the keys are shared between threads.
                        let key = if i % 2 == 0 {
                            format!("shared.{i}")
                        } else {
                            format!("t{t}.{i}")
                        };
                        ok += a.admit(0, key.as_bytes()).is_ok() as usize;
                    }
                    ok
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(a.live(), 1000);
        assert_eq!(a.known.len(), 1000);
    }

    #[test]
    fn a_shard_sees_what_the_link_publishes() {
        let link = AdmissionLink::default();
        let mut s = ShardAdmission::new(&link);
        assert_eq!(s.admit(0, b"a"), Ok(()));
        link.publish(Some(Arc::new(Admission::new(&limits(1, &[])))));
        assert_eq!(s.admit(0, b"a"), Ok(()));
        assert!(s.admit(0, b"b").is_err());
        link.publish(None);
        assert_eq!(s.admit(0, b"b"), Ok(()));
    }
}

//! Keys as clients sent them, for the series whose key ingest rewrote.
//!
//! # Why a side table
//!
//! The reference statsd sanitises the whole key on the way in
//! (`keyNameSanitize`: `route:/x` becomes `route=-x`), and two keys that
//! sanitise alike are one series: `san.merge a` and `san.merge_a` add up,
//! a gauge delta on one moves the other. statsyard's Graphite output must
//! stay byte-identical to it (tests/it/differential.rs), so the aggregation
//! key stays the sanitised one. statsd_exporter, on the other hand, keeps
//! the name for mapping and label values exactly as sent (any UTF-8) and
//! only rewrites names. So the parser reports each rewritten key once per
//! line with what was sent ([`crate::parse::Handler::sent_as`]), ingest
//! records the first form seen per key here, and the Prometheus exporter
//! maps and labels a series from its sent form. Keys ingest did not rewrite
//! (the common case) cost nothing: they are not in the table.
//!
//! Two sent forms that sanitise to the same key are one series in the
//! aggregation, so one on `/metrics` too: the first form seen names it
//! (statsd_exporter would export two). The table holds at most `max`
//! entries (the exporter's `max_series`); past it a rewritten key is
//! exported under its rewritten form, and a warning says so. The exporter
//! forgets an entry when its series leaves the registry.
//!
//! Imports nothing of the crate outside `sink`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Rewritten key → the key as first sent.
#[derive(Debug)]
pub struct SentKeys {
    map: DashMap<Box<[u8]>, Arc<[u8]>, foldhash::fast::RandomState>,
    max: usize,
    warned: AtomicBool,
}

impl SentKeys {
    /// A table of at most `max` keys.
    pub fn new(max: usize) -> SentKeys {
        SentKeys {
            map: DashMap::default(),
            max,
            warned: AtomicBool::new(false),
        }
    }

    /// Note that `key` was sent as `sent`, unless a form is known already.
    /// Called by ingest for every line whose key was rewritten: a read of
    /// the table for a key seen before.
    pub fn record(&self, key: &[u8], sent: &[u8]) {
        if self.map.contains_key(key) {
            return;
        }
        if self.map.len() >= self.max {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max = self.max,
                    "prometheus: too many rewritten keys to remember how they were sent; \
                     more are exported with sanitised names and label values"
                );
            }
            return;
        }
        self.map
            .entry(key.into())
            .or_insert_with(|| Arc::from(sent));
    }

    /// How `key` was first sent, if ingest rewrote it.
    pub fn get(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        self.map.get(key).map(|e| e.value().clone())
    }

    /// Forget `key` (its series left the registry).
    pub fn forget(&self, key: &[u8]) {
        if self.map.remove(key).is_some() && self.map.len() < self.max {
            self.warned.store(false, Ordering::Relaxed);
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No key held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_form_wins_within_the_bound() {
        let t = SentKeys::new(2);
        t.record(b"r;p=-x", b"r;p=/x");
        t.record(b"r;p=-x", b"r;p=-x");
        assert_eq!(t.get(b"r;p=-x").as_deref(), Some(&b"r;p=/x"[..]));
        t.record(b"a", b"a!");
        t.record(b"b", b"b!");
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(b"b"), None);
        t.forget(b"a");
        t.record(b"b", b"b!");
        assert_eq!(t.get(b"b").as_deref(), Some(&b"b!"[..]));
    }
}

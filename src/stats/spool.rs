//! A disk spool's counters ([`crate::spool`]), shared by the sinks' and
//! the relay destinations' spools, and their table.
//!
//! Imports nothing of the crate outside `stats`.

use std::sync::atomic::AtomicU64;

use super::atomic::get;
use super::table::{Kind, Metric};

/// A spool's counters. Totals only grow, except the two `held_*` gauges.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records appended.
    pub spooled_entries: AtomicU64,
    /// Payload bytes appended.
    pub spooled_bytes: AtomicU64,
    /// Records delivered from the spool.
    pub replayed_entries: AtomicU64,
    /// Payload bytes delivered from the spool.
    pub replayed_bytes: AtomicU64,
    /// Undelivered records deleted to stay under the cap.
    pub dropped_entries: AtomicU64,
    /// Payload bytes of those records.
    pub dropped_bytes: AtomicU64,
    /// Torn or corrupt records found (each skips the rest of its segment).
    pub corrupt_records: AtomicU64,
    /// Records waiting on disk now.
    pub held_entries: AtomicU64,
    /// Bytes of segment files on disk now.
    pub held_bytes: AtomicU64,
}

/// Every spool counter, in export order. The Prometheus name follows the
/// owner's prefix (`sink_spool_`, `relay_destination_spool_`); an entry is a
/// flush for a sink, a batch of points for a relay destination.
pub const SPOOL: [Metric<SpoolStats>; 9] = [
    Metric::new(
        "spooled_entries",
        "spooled_entries_total",
        Kind::Counter,
        "Entries (a flush for a sink, a batch of points for a relay destination) written to the disk spool.",
        |k: &SpoolStats| get(&k.spooled_entries),
    )
    .graphite(),
    Metric::new(
        "spooled_bytes",
        "spooled_bytes_total",
        Kind::Counter,
        "Bytes written to the disk spool.",
        |k: &SpoolStats| get(&k.spooled_bytes),
    ),
    Metric::new(
        "replayed_entries",
        "replayed_entries_total",
        Kind::Counter,
        "Entries delivered from the disk spool.",
        |k: &SpoolStats| get(&k.replayed_entries),
    )
    .graphite(),
    Metric::new(
        "replayed_bytes",
        "replayed_bytes_total",
        Kind::Counter,
        "Bytes delivered from the disk spool.",
        |k: &SpoolStats| get(&k.replayed_bytes),
    ),
    Metric::new(
        "dropped_entries",
        "dropped_entries_total",
        Kind::Counter,
        "Undelivered entries deleted from the spool to stay under spool_bytes.",
        |k: &SpoolStats| get(&k.dropped_entries),
    )
    .graphite(),
    Metric::new(
        "dropped_bytes",
        "dropped_bytes_total",
        Kind::Counter,
        "Bytes deleted from the spool to stay under spool_bytes.",
        |k: &SpoolStats| get(&k.dropped_bytes),
    ),
    Metric::new(
        "corrupt_records",
        "corrupt_records_total",
        Kind::Counter,
        "Torn or corrupt spool records found and skipped (each skips the rest of its segment).",
        |k: &SpoolStats| get(&k.corrupt_records),
    ),
    Metric::new(
        "held_entries",
        "entries",
        Kind::Gauge,
        "Entries waiting in the disk spool.",
        |k: &SpoolStats| get(&k.held_entries),
    )
    .graphite(),
    Metric::new(
        "held_bytes",
        "bytes",
        Kind::Gauge,
        "Bytes of the spool's segment files on disk.",
        |k: &SpoolStats| get(&k.held_bytes),
    )
    .graphite(),
];

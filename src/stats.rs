//! Self-metrics: plain atomics, owned by the server and passed down by `Arc`.
//! No globals. Totals only ever grow; the flusher turns them into per-interval
//! deltas for the reference's `statsd.*` counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// UDP datagrams, and TCP/unix reads that held at least one full line.
    pub packets_received: AtomicU64,
    /// Non-empty lines (the reference's `metrics_received`).
    pub metrics_received: AtomicU64,
    /// Rejected lines or values (the reference's `bad_lines_seen`).
    pub bad_lines_seen: AtomicU64,
    /// TCP/unix lines longer than `max_line_length`, dropped.
    pub lines_too_long: AtomicU64,
    /// Stream connections accepted.
    pub connections_accepted: AtomicU64,
    /// Stream connections refused because `max_connections` were open.
    pub connections_rejected: AtomicU64,
    /// Stream connections open now.
    pub connections_open: AtomicU64,
    /// Raw packets dropped because a raw sink's queue was full.
    pub raw_dropped: AtomicU64,
    /// Flushes done.
    pub flushes: AtomicU64,
    /// Duration of the last flush compute, in microseconds.
    pub last_flush_micros: AtomicU64,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Stats::default())
    }

    /// Register a sink's counters under its name.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        let s = Arc::new(SinkStats {
            name: name.to_string(),
            ..SinkStats::default()
        });
        // A poisoned lock only means another thread panicked while pushing;
        // the Vec itself is still whole.
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.clone());
        s
    }

    /// Every registered sink's counters.
    pub fn sinks(&self) -> Vec<Arc<SinkStats>> {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Per-sink counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub name: String,
    /// Messages dropped because the sink's queue was full.
    pub queue_dropped: AtomicU64,
    /// Flushes written out completely.
    pub flushes_sent: AtomicU64,
    /// Flushes (or raw packets) discarded by the sink: buffer bound, shutdown deadline.
    pub dropped: AtomicU64,
    /// Metric lines (or raw packets) written.
    pub lines_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Connect or write failures.
    pub errors: AtomicU64,
    /// Bytes held, waiting for the destination.
    pub buffered_bytes: AtomicU64,
}

/// Shorthand for a relaxed increment.
#[inline]
pub fn incr(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Shorthand for a relaxed read.
#[inline]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

//! Per-listener ingest counters: packets, lines and bad lines by reason for
//! each statsd listener (a UDP address with all its receive threads, a TCP
//! address, a unix socket), for `/metrics` (`statsyard_listener_*`),
//! `/api/stats` (`listeners`) and the status page.
//!
//! Counting costs the receive path no atomic read-modify-write: every
//! [`Ingest`](crate::listener::Ingest) (a receive thread, a stream
//! connection) owns a [`Slot`] it alone writes, with a plain load and store
//! per packet. A reader sums the slots. A slot whose ingest ended (a closed
//! connection) is folded into the listener's retired totals. Bad lines,
//! rare, are counted by reason with a relaxed add each.
//!
//! Imports nothing of the crate outside `stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::get;
use super::table::{Kind, Metric};

/// Why a line was rejected, as the `reason` label names it; the order of
/// the parser's `ParseError` variants
/// ([`crate::listener::bad_reason_index`] maps them).
pub const BAD_REASONS: [&str; 11] = [
    "missing_value",
    "missing_type",
    "unknown_type",
    "bad_value",
    "negative_timer",
    "bad_sample_rate",
    "empty_name",
    "bad_field",
    "bad_timestamp",
    "bad_event",
    "too_many_tags",
];

/// One statsd listener's counters.
#[derive(Debug)]
pub struct ListenerStats {
    /// `udp`, `tcp`, `unix` or `unixgram`.
    pub proto: &'static str,
    /// The address or path, as bound.
    pub addr: String,
    /// The live ingests' slots.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// What the ended ingests counted.
    retired: Slot,
    /// Bad lines by reason, in the order of [`BAD_REASONS`].
    bad: [AtomicU64; BAD_REASONS.len()],
}

/// One ingest's counters, written by that ingest alone.
#[derive(Debug, Default)]
pub struct Slot {
    packets: AtomicU64,
    lines: AtomicU64,
}

impl Slot {
    /// Count one packet of `lines` lines. Only the slot's ingest writes it,
    /// so a load and a store do (no locked instruction on the receive path).
    #[inline]
    pub fn add(&self, lines: u64) {
        self.packets
            .store(self.packets.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.lines.store(
            self.lines.load(Ordering::Relaxed) + lines,
            Ordering::Relaxed,
        );
    }
}

impl ListenerStats {
    pub fn new(proto: &'static str, addr: impl Into<String>) -> ListenerStats {
        ListenerStats {
            proto,
            addr: addr.into(),
            slots: Mutex::new(Vec::new()),
            retired: Slot::default(),
            bad: Default::default(),
        }
    }

    /// `udp 127.0.0.1:8125`: how the status page and the label name it.
    pub fn name(&self) -> String {
        format!("{} {}", self.proto, self.addr)
    }

    /// A slot for a new ingest (a receive thread, a connection); it is
    /// folded into the retired totals when the returned counter drops.
    pub fn counter(self: &Arc<Self>) -> IngestCounter {
        let slot = Arc::new(Slot::default());
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone());
        IngestCounter {
            listener: self.clone(),
            slot,
        }
    }

    fn sum(&self, f: impl Fn(&Slot) -> &AtomicU64) -> u64 {
        let live: u64 = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| get(f(s)))
            .sum();
        live + get(f(&self.retired))
    }

    /// Packets received (UDP datagrams, stream reads or frames holding a line).
    pub fn packets(&self) -> u64 {
        self.sum(|s| &s.packets)
    }

    /// Non-empty lines received.
    pub fn lines(&self) -> u64 {
        self.sum(|s| &s.lines)
    }

    /// Count a bad line of reason `index` ([`BAD_REASONS`]).
    pub fn bad_line(&self, index: usize) {
        if let Some(c) = self.bad.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bad lines of reason `index` ([`BAD_REASONS`]).
    pub fn bad(&self, index: usize) -> u64 {
        self.bad.get(index).map_or(0, get)
    }

    /// Bad lines, all reasons.
    pub fn bad_total(&self) -> u64 {
        self.bad.iter().map(get).sum()
    }
}

/// An ingest's hold on its slot.
#[derive(Debug)]
pub struct IngestCounter {
    listener: Arc<ListenerStats>,
    slot: Arc<Slot>,
}

impl IngestCounter {
    /// Count one packet of `lines` lines.
    #[inline]
    pub fn packet(&self, lines: u64) {
        self.slot.add(lines);
    }

    /// The listener, for its bad-line counters.
    pub fn listener(&self) -> &ListenerStats {
        &self.listener
    }
}

impl Drop for IngestCounter {
    fn drop(&mut self) {
        let mut slots = self
            .listener
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
        // Under the lock, so that a reader never sees the slot twice or not
        // at all.
        let r = &self.listener.retired;
        r.packets
            .fetch_add(get(&self.slot.packets), Ordering::Relaxed);
        r.lines.fetch_add(get(&self.slot.lines), Ordering::Relaxed);
    }
}

macro_rules! bad_row {
    ($i:expr) => {
        Metric::new(
            BAD_REASONS[$i],
            "listener_bad_lines_total",
            Kind::Counter,
            "Lines a statsd listener rejected, by reason.",
            |l: &ListenerStats| l.bad($i),
        )
        .labelled("reason", BAD_REASONS[$i])
    };
}

/// A listener's counters (`statsyard_listener_*{listener="udp 0.0.0.0:8125"}`,
/// the `listeners` list of `/api/stats`). Bad lines are one family with a
/// `reason` label; in JSON, one key per reason (`negative_timer`).
pub const LISTENER: &[Metric<ListenerStats>] = &[
    Metric::new(
        "packets",
        "listener_packets_total",
        Kind::Counter,
        "Packets a statsd listener received: UDP and unix datagrams, stream reads or frames holding at least one full line.",
        |l: &ListenerStats| l.packets(),
    ),
    Metric::new(
        "lines",
        "listener_lines_total",
        Kind::Counter,
        "Non-empty statsd lines a listener received.",
        |l: &ListenerStats| l.lines(),
    ),
    bad_row!(0),
    bad_row!(1),
    bad_row!(2),
    bad_row!(3),
    bad_row!(4),
    bad_row!(5),
    bad_row!(6),
    bad_row!(7),
    bad_row!(8),
    bad_row!(9),
    bad_row!(10),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_and_retire() {
        let l = Arc::new(ListenerStats::new("tcp", "127.0.0.1:1"));
        let a = l.counter();
        let b = l.counter();
        a.packet(3);
        a.packet(1);
        b.packet(2);
        assert_eq!((l.packets(), l.lines()), (3, 6));
        drop(a);
        assert_eq!((l.packets(), l.lines()), (3, 6));
        b.packet(1);
        drop(b);
        assert_eq!((l.packets(), l.lines()), (4, 7));
        assert!(l.slots.lock().unwrap().is_empty());
        l.bad_line(3);
        l.bad_line(3);
        l.bad_line(99);
        assert_eq!((l.bad(3), l.bad_total()), (2, 2));
        assert_eq!(l.name(), "tcp 127.0.0.1:1");
    }
}

//! A short history of the ingest totals, one sample per flush, for the
//! status page's chart and rates (so that a page loaded without JavaScript
//! shows them too). The flusher records a sample at every flush; rates are
//! the differences between samples.
//!
//! Imports nothing of the crate outside `stats`.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{get, Stats};

/// Samples kept: 120 flushes, 20 minutes at the default 10 s interval.
pub const KEPT: usize = 120;

/// The totals at one flush.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When, in Unix milliseconds.
    pub unix_ms: u64,
    /// Lines, packets and bad lines received since start.
    pub lines: u64,
    pub packets: u64,
    pub bad: u64,
    /// Per listener (`udp 0.0.0.0:8125`): lines and packets since start.
    pub listeners: Vec<(String, u64, u64)>,
}

impl Sample {
    /// The totals now.
    pub fn take(stats: &Stats) -> Sample {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Sample {
            unix_ms,
            lines: get(&stats.metrics_received),
            packets: get(&stats.packets_received),
            bad: get(&stats.bad_lines_seen),
            listeners: stats
                .listeners()
                .iter()
                .map(|l| (l.name(), l.lines(), l.packets()))
                .collect(),
        }
    }

    /// Lines per second from `before` to this sample; 0 when no time passed.
    pub fn lines_per_second(&self, before: &Sample) -> f64 {
        per_second(self.lines, before.lines, self, before)
    }

    /// Packets per second from `before` to this sample.
    pub fn packets_per_second(&self, before: &Sample) -> f64 {
        per_second(self.packets, before.packets, self, before)
    }

    /// `(lines/s, packets/s)` of the listener `name` from `before`; a
    /// listener `before` lacks counts from 0.
    pub fn listener_rates(&self, before: &Sample, name: &str) -> Option<(f64, f64)> {
        let find = |s: &Sample| {
            s.listeners
                .iter()
                .find(|(n, ..)| n == name)
                .map(|(_, l, p)| (*l, *p))
        };
        let (l, p) = find(self)?;
        let (l0, p0) = find(before).unwrap_or((0, 0));
        Some((
            per_second(l, l0, self, before),
            per_second(p, p0, self, before),
        ))
    }
}

fn per_second(now: u64, then: u64, a: &Sample, b: &Sample) -> f64 {
    let secs = a.unix_ms.saturating_sub(b.unix_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(then) as f64 / secs
}

/// The last [`KEPT`] samples.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    /// Add a sample, dropping the oldest past [`KEPT`].
    pub fn record(&self, s: Sample) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == KEPT {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Every sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, lines: u64) -> Sample {
        Sample {
            unix_ms: ms,
            lines,
            packets: lines / 2,
            bad: 0,
            listeners: vec![("udp a".into(), lines, lines / 2)],
        }
    }

    #[test]
    fn rates_and_bound() {
        let h = History::default();
        for i in 0..(KEPT as u64 + 5) {
            h.record(at(i * 10_000, i * 1000));
        }
        let s = h.samples();
        assert_eq!(s.len(), KEPT);
        assert_eq!(s[0].unix_ms, 50_000);
        let (a, b) = (&s[KEPT - 1], &s[KEPT - 2]);
        assert_eq!(a.lines_per_second(b), 100.0);
        assert_eq!(a.packets_per_second(b), 50.0);
        assert_eq!(a.listener_rates(b, "udp a"), Some((100.0, 50.0)));
        assert_eq!(a.listener_rates(b, "tcp b"), None);
        assert_eq!(a.lines_per_second(a), 0.0);
    }
}

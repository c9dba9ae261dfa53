//! When flushes happen: interval boundaries on the wall clock, the grace an
//! aggregator waits after one, and a flush's timestamp. Pure arithmetic on
//! Unix milliseconds, so the runtime's flusher and the config share it.
//!
//! Imports: nothing of the crate.

use std::time::Duration;

/// When flushes happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Intervals start at multiples of their length on the wall clock (a
    /// 10 s interval ends at :00, :10, :20...), so that every statsyard of a
    /// fleet cuts the same intervals, and each flush is stamped with the end
    /// of its interval. `false`: an interval after the start, stamped with
    /// the time the flush runs, as the reference does.
    pub align: bool,
    /// How long after an interval's end it is flushed (an aggregator waits
    /// for its agents' state of the interval); 0 flushes at the end.
    pub grace: Duration,
}

impl Timing {
    /// The grace in milliseconds.
    pub fn grace_ms(&self) -> u64 {
        self.grace.as_millis() as u64
    }

    /// The end (Unix ms) of the first interval that starts around `now_ms`.
    pub fn first_end(&self, interval: Duration, now_ms: u64) -> u64 {
        let iv = (interval.as_millis() as u64).max(1);
        if self.align {
            (now_ms / iv + 1) * iv
        } else {
            now_ms + iv
        }
    }

    /// The end of the interval after the one that ended at `end`; past
    /// intervals are skipped (a flush slower than the interval, a suspended
    /// machine) rather than flushed in a burst.
    pub fn after(&self, end: u64, interval: Duration, now_ms: u64) -> u64 {
        let iv = (interval.as_millis() as u64).max(1);
        let next = end + iv;
        if next + self.grace_ms() > now_ms {
            next
        } else if self.align {
            (now_ms / iv + 1) * iv
        } else {
            now_ms + iv
        }
    }

    /// The timestamp of the flush of the interval that ends at `end`.
    pub fn stamp(&self, end: u64) -> Option<u64> {
        // Rounded as the reference rounds, so a whole-second interval's
        // boundary is its own stamp.
        self.align.then(|| (end + 500) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_intervals_end_at_multiples_of_their_length() {
        let iv = Duration::from_secs(10);
        let t = Timing {
            align: true,
            grace: Duration::ZERO,
        };
        assert_eq!(t.first_end(iv, 1_700_000_003_250), 1_700_000_010_000);
        assert_eq!(t.first_end(iv, 1_700_000_010_000), 1_700_000_020_000);
        assert_eq!(
            t.after(1_700_000_010_000, iv, 1_700_000_010_004),
            1_700_000_020_000
        );
        // Fell behind by more than an interval: skip to the next boundary.
        assert_eq!(
            t.after(1_700_000_010_000, iv, 1_700_000_031_000),
            1_700_000_040_000
        );
        assert_eq!(t.stamp(1_700_000_010_000), Some(1_700_000_010));
        let graced = Timing {
            grace: Duration::from_secs(2),
            ..t
        };
        // The next interval is due at its end plus the grace.
        assert_eq!(
            graced.after(1_700_000_010_000, iv, 1_700_000_021_000),
            1_700_000_020_000
        );
        let plain = Timing::default();
        assert_eq!(plain.first_end(iv, 1_700_000_003_250), 1_700_000_013_250);
        assert_eq!(plain.stamp(1_700_000_013_250), None);
    }
}

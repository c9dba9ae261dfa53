//! Rate limiting for log lines about per-line or per-series problems: a
//! flood of bad input must not become a flood of log lines.
//!
//! A leaf: imports nothing of the crate.

use std::time::{Duration, Instant};

/// Lets at most `burst` messages through per `window`; says how many it held back.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window: Duration,
    start: Instant,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(burst: u32, window: Duration) -> Self {
        LogLimiter {
            burst,
            window,
            start: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` if this message may be logged (`n` = messages suppressed since
    /// the last one let through), `None` if it must be dropped.
    pub fn allow(&mut self) -> Option<u64> {
        if self.start.elapsed() >= self.window {
            self.start = Instant::now();
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_a_burst_through_then_counts() {
        let mut l = LogLimiter::new(2, Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        assert_eq!(l.suppressed, 2);
    }
}

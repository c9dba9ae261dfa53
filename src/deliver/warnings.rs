//! The engines' rate-limited warnings: a destination that stays down must
//! not log at every retry, and a dead destination behind a busy repeater
//! must not log once per dropped packet. What is held back is counted and
//! reported with the next line.
//!
//! Imports nothing of the crate outside `deliver`.

use std::time::Duration;

use tokio::time::Instant;

/// Who owns a store, for logs: the output (a sink's name, `relay`) and the
/// destination (`host:port`, a URL).
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub output: String,
    pub addr: String,
}

/// While failures go on, a warning at most this often.
const FAIL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Minimum time between two "buffer full" warnings.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether a line last logged at `last` may be logged again.
fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= every)
}

/// Failures of one destination: the first one after a success (or ever)
/// warns at once, then at most every [`FAIL_LOG_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct FailLog {
    warned: Option<Instant>,
    /// The destination worked since the last warning.
    recovered: bool,
    since: u64,
}

impl FailLog {
    /// The destination works (a connection came up, a request was answered).
    pub fn recovered(&mut self) {
        self.recovered = true;
    }

    /// Count a failure; `Some(failures since the last warning)` when one is
    /// due now, `None` when it is held back.
    fn count(&mut self) -> Option<u64> {
        self.since += 1;
        if !self.recovered && !due(self.warned, FAIL_LOG_EVERY) {
            return None;
        }
        self.warned = Some(Instant::now());
        self.recovered = false;
        Some(std::mem::take(&mut self.since))
    }

    /// Log a failure of `label`'s destination: a warning when one is due
    /// (with the failures since the last, and what is waiting), else debug.
    pub fn failed(
        &mut self,
        label: &Label,
        what: &str,
        error: &str,
        retry_in: Duration,
        held: (usize, u64),
    ) {
        let retry_in_ms = retry_in.as_millis() as u64;
        match self.count() {
            Some(failures) => tracing::warn!(
                output = %label.output,
                addr = %label.addr,
                error,
                failures,
                retry_in_ms,
                buffered_entries = held.0,
                spooled_entries = held.1,
                "{what}"
            ),
            None => {
                tracing::debug!(output = %label.output, addr = %label.addr, error, retry_in_ms, "{what}")
            }
        }
    }
}

/// Entries dropped at a memory bound, reported at most every [`DROP_LOG_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    last: Option<Instant>,
    entries: u64,
    bytes: u64,
}

impl DropLog {
    /// Count `entries` entries of `bytes` bytes; `Some((entries, bytes))`
    /// dropped since the last report when one is due (or `force`d).
    pub fn dropped(&mut self, entries: u64, bytes: u64, force: bool) -> Option<(u64, u64)> {
        self.entries += entries;
        self.bytes += bytes;
        if self.entries == 0 || !(force || due(self.last, DROP_LOG_EVERY)) {
            return None;
        }
        self.last = Some(Instant::now());
        Some((
            std::mem::take(&mut self.entries),
            std::mem::take(&mut self.bytes),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_warn_after_a_recovery_and_then_once_a_minute() {
        let mut l = FailLog::default();
        assert_eq!(l.count(), Some(1), "the first one");
        assert_eq!(l.count(), None);
        assert_eq!(l.count(), None);
        l.recovered();
        assert_eq!(
            l.count(),
            Some(3),
            "after a recovery, with the held-back ones"
        );
        assert_eq!(l.count(), None);
    }

    #[test]
    fn drops_are_summed_between_reports() {
        let mut l = DropLog::default();
        assert_eq!(l.dropped(0, 0, true), None, "nothing to report");
        assert_eq!(l.dropped(1, 10, false), Some((1, 10)));
        assert_eq!(l.dropped(2, 20, false), None);
        assert_eq!(l.dropped(1, 5, true), Some((3, 25)));
    }
}

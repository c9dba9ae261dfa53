//! The exponential backoff between tries: a delivery engine's reconnects and
//! retries, and the supervisor's restarts ([`crate::supervise`]).
//!
//! Each failure waits the current step, which then doubles up to the
//! maximum. Success starts over from the minimum: explicitly
//! ([`Backoff::reset`], when a destination took data) or by time
//! ([`Backoff::after`], when a restarted task ran cleanly for `reset_after`).
//! With jitter, each wait is drawn from the upper half of its step, so that
//! many clients that failed together do not all come back at once.
//!
//! Imports nothing of the crate outside `deliver`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff from `min` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    reset_after: Duration,
    next: Duration,
    /// Random state for the jitter (`None`: no jitter).
    jitter: Option<RandomState>,
    draws: u64,
}

impl Backoff {
    /// `min` doubling to `max`; a run of `reset_after` (see [`Backoff::after`])
    /// starts over. No jitter.
    pub fn new(min: Duration, max: Duration, reset_after: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            reset_after,
            next: min,
            jitter: None,
            draws: 0,
        }
    }

    /// `min` doubling to `max`, reset only by [`Backoff::reset`].
    pub fn between(min: Duration, max: Duration) -> Backoff {
        Backoff::new(min, max, Duration::MAX)
    }

    /// Draw each wait from the upper half of its step (`step/2..=step`).
    pub fn with_jitter(mut self) -> Backoff {
        self.jitter = Some(RandomState::new());
        self
    }

    /// The wait after a failure: the current step, which then doubles (up
    /// to the maximum).
    pub fn fail(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        match &self.jitter {
            None => step,
            Some(state) => {
                // A fresh random number per draw: the hasher's keys are
                // random per `RandomState`, the counter makes draws differ.
                self.draws += 1;
                let mut h = state.build_hasher();
                h.write_u64(self.draws);
                let half = step / 2;
                let nanos = half.as_nanos().min(u128::from(u64::MAX)) as u64;
                half + Duration::from_nanos(h.finish() % nanos.saturating_add(1))
            }
        }
    }

    /// Start over from the minimum: the destination took data again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The wait before restarting a task whose last incarnation ran for
    /// `ran`: a run of at least `reset_after` starts over from the minimum,
    /// then as [`Backoff::fail`].
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= self.reset_after {
            self.reset();
        }
        self.fail()
    }
}

/// Wait until the next try is due: at `at`, and only once there is
/// something to send (`wanted`); until then, never.
pub(crate) async fn retry_due(at: Instant, wanted: bool) {
    if !wanted {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep_until(at).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_to_the_max_and_resets() {
        let mut b = Backoff::between(ms(10), ms(50));
        let waits: Vec<_> = (0..5).map(|_| b.fail()).collect();
        assert_eq!(waits, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
        b.reset();
        assert_eq!(b.fail(), ms(10));
        // A max below the min is the min.
        let mut b = Backoff::between(ms(10), ms(1));
        assert_eq!((b.fail(), b.fail()), (ms(10), ms(10)));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_step() {
        let mut b = Backoff::between(ms(100), ms(400)).with_jitter();
        for step in [100, 200, 400, 400, 400] {
            let w = b.fail();
            assert!(w >= ms(step / 2) && w <= ms(step), "{w:?} for {step}");
        }
        let mut b = Backoff::between(Duration::ZERO, Duration::ZERO).with_jitter();
        assert_eq!(b.fail(), Duration::ZERO);
    }
}

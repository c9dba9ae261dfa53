//! `[events]`: how many events and service checks are kept for the API.
//!
//! Imports, besides `events` itself: `check`.

use serde::{Deserialize, Serialize};

use super::hub::{DEFAULT_KEEP, DEFAULT_MAX_CHECKS};
use crate::check::{bad, Bad};

/// `[events]`: DogStatsD events and service checks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawEvents {
    /// The last events `GET /api/events` serves (received and statsyard's
    /// own); 0 keeps none (outputs still get every event).
    pub keep: usize,
    /// Service checks `GET /api/checks` lists at most; more are counted
    /// (their gauges are kept as any gauge).
    pub max_checks: usize,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            keep: DEFAULT_KEEP,
            max_checks: DEFAULT_MAX_CHECKS,
        }
    }
}

/// `[events]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsConfig {
    pub keep: usize,
    pub max_checks: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            keep: DEFAULT_KEEP,
            max_checks: DEFAULT_MAX_CHECKS,
        }
    }
}

impl EventsConfig {
    pub fn validate(raw: &RawEvents) -> Result<EventsConfig, Bad> {
        if raw.keep > 1_000_000 {
            return Err(bad("events.keep", "at most 1000000"));
        }
        if raw.max_checks == 0 {
            return Err(bad("events.max_checks", "must be at least 1"));
        }
        Ok(EventsConfig {
            keep: raw.keep,
            max_checks: raw.max_checks,
        })
    }
}

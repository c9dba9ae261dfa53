//! Going dark: a source (a sender's address, or the value of a tag) or a
//! series with a time to live that stops sending is noticed, reported once
//! when it goes dark and once when it comes back, instead of silently
//! missing from a graph (Riemann's rule that an event has a time to live).
//!
//! - [`config`]: the `[liveness]` table and its validated settings.
//! - [`feed`]: what each listener does per packet and per value (nothing
//!   but one atomic load when liveness is off).
//! - [`state`]: the tracked sources and series ([`Liveness`], bounded by
//!   `max_sources`), and the [`LiveObserver`] that judges them at every
//!   flush and reports: a `statsyard_source_up` / `statsyard_series_up`
//!   gauge each, an event ([`crate::events`]), a log line; `GET /api/dark`.
//!
//! Imports: the registry (series), the observer surface of `sink`, events,
//! the counters.

pub mod config;
pub mod feed;
pub mod state;

pub use config::{LivenessConfig, RawLiveness};
pub use feed::{Feed, Peer};
pub use state::{LiveObserver, Liveness, OBSERVER};

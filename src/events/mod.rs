//! Events: DogStatsD events that clients send, the transitions statsyard
//! notices itself (a source going dark and coming back), and the service
//! checks' latest states.
//!
//! - [`event`]: the owned [`Event`] every output sees (pure data), its
//!   DogStatsD line (what the repeater sends on), and the [`CheckRecord`]
//!   `GET /api/checks` lists.
//! - [`hub`]: the [`Hub`] that keeps the last events in a bounded ring
//!   (`GET /api/events`), the checks in a bounded table, and hands every
//!   event to the outputs that take events (`SinkMsg::Event`, see
//!   [`crate::sink::SinkConfig::takes_events`]).
//!
//! Events reach outputs through the output surface, not a side channel: an
//! output kind says it takes them, the runtime gives the hub that output's
//! queue, and the output receives `SinkMsg::Event` between its flushes (or
//! raw packets). docs/events.md is the user-facing description.
//!
//! Imports: the parsed forms ([`crate::parse::event`]), the sink message
//! type and the counters.

pub mod config;
pub mod event;
pub mod hub;

pub use config::{EventsConfig, RawEvents};
pub use event::{CheckRecord, Event, Origin};
pub use hub::{EventOut, Hub};

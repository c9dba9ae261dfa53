//! The forwarding tier: agents on every host send each interval's
//! mergeable state to a global tier of aggregators sharded by series.
//!
//! - [`config`]: the `[forward]` and `[aggregator]` tables.
//! - [`proto`]: the messages, their encoding and checks.
//! - [`ring`]: which aggregator a series goes to (rendezvous hashing).
//!
//! Owns the `[forward]`/`[aggregator]` roles and their wire protocol. Imports:
//! [`crate::aggregate`] (interval state), [`crate::deliver`] (the HTTP delivery
//! engine), [`crate::flusher`] (the outflow and inflow halves), [`crate::tls`],
//! [`crate::spool`], [`crate::stats`] and config's shared checks; the runtime
//! starts it, nothing else imports it.

pub mod agent;
pub mod aggregator;
pub mod config;
pub mod proto;
pub mod ring;

pub use config::{AggregatorConfig, ForwardConfig, RawAggregator, RawForward};

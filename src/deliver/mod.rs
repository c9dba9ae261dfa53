//! Delivery: the one way statsyard gets bytes to a destination that may be
//! slow, down or gone, for every output that delivers over a connection
//! (graphite, the repeater's TCP mode, relay destinations) or over HTTP (the
//! InfluxDB and Prometheus remote-write outputs to come).
//!
//! What it owns, and the only place each exists:
//!
//! - [`backoff`]: the exponential backoff between tries (delivery retries and
//!   supervised restarts alike).
//! - [`carbon`]: the carbon encoders, plaintext lines and pickle frames.
//! - [`stream`]: the stream engine: one persistent TCP connection fed by a
//!   [`stream::Source`], with the bounded memory buffer, the disk spool
//!   behind it, the shutdown deadline and the counters. [`feed`] is its
//!   source for sinks (a queue of flushes or packets, encoded by a
//!   [`feed::Feed`]); the relay's destination queue is the other
//!   (`crate::relay::destination`).
//! - [`http`]: the same contract for batched HTTP outputs: request bodies
//!   posted in order, retried with backoff, refused ones counted.
//! - Inside, shared by both engines: `outbox` (entries in memory, bounded,
//!   with how much of the front one went out), `store` (memory, the spool
//!   behind it, and what is loaded back for replay) and `warnings` (the
//!   rate-limited failure and drop warnings).
//!
//! The delivery guarantees, whatever the transport: at least once per entry
//! (an entry leaves memory when the destination took all of it), in order,
//! what the spool holds before what is newer, and every entry that is given
//! up counted by the caller's counters.
//!
//! Imports: [`crate::spool`] (the disk level), [`crate::stats`] (the
//! [`SinkStats`](crate::stats::SinkStats) that [`feed`] and [`http`] fill)
//! and [`crate::log_limit`]; nothing else (tests aside, which compare with
//! the flush path's numbers and the sinks' address check). Nothing here
//! knows a sink, the flusher, the relay or a listener: those implement the
//! traits here ([`stream::Source`], [`feed::Feed`], [`http::Encoder`]), not
//! the other way round.

pub mod backoff;
pub mod carbon;
pub mod feed;
pub mod http;
mod outbox;
mod store;
pub mod stream;
#[cfg(test)]
mod testing;
pub mod transport;
mod warnings;

pub use outbox::Entry;
pub use store::Tag;

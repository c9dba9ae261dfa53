//! Wire-format parsers. No I/O, no async: bytes in, borrowed values out.
//!
//! Owns the statsd, DogStatsD, carbon and pickle wire formats. Imports:
//! [`crate::metric`] only.

pub mod carbon;
pub mod event;
pub mod number;
pub mod pickle;
pub mod sanitize;
pub mod statsd;
pub mod tags;

pub use statsd::{Handler, PacketCounts, ParseError, ParseOptions, StatsdParser};

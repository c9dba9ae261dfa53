//! Wire-format parsers. No I/O, no async: bytes in, borrowed values out.

pub mod statsd;

pub use statsd::{Handler, PacketCounts, ParseError, ParseOptions, StatsdParser};

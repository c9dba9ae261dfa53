//! The statsd line protocol, with the DogStatsD and Graphite-tag extensions.
//!
//! Zero-copy: values borrow from the packet; the key borrows from the packet
//! when it is already canonical and from a reused scratch buffer otherwise, so
//! parsing never allocates once the scratch buffer has grown.

use crate::metric::MetricRef;

/// Options that change how lines are read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseOptions {
    /// The reference's `keyNameSanitize`: rewrite keys as it does
    /// (whitespace runs to `_`, `/` to `-`, drop bytes outside `[A-Za-z0-9_.;=-]`).
    pub sanitize: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { sanitize: true }
    }
}

/// Why a line (or one value of a multi-value line) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("no value (expected name:value|type)")]
    MissingValue,
    #[error("no type (expected name:value|type)")]
    MissingType,
    #[error("unknown metric type")]
    UnknownType,
    #[error("value is not a finite number")]
    BadValue,
    #[error("negative timer value")]
    NegativeTimer,
    #[error("bad sample rate (expected |@rate with 0 < rate)")]
    BadSampleRate,
    #[error("empty metric name")]
    EmptyName,
    #[error("unrecognised field after the type")]
    BadField,
    #[error("DogStatsD events and service checks are not metrics")]
    NotAMetric,
}

/// What the parser hands each value and each rejected line to.
pub trait Handler {
    fn metric(&mut self, m: MetricRef<'_>);
    fn bad_line(&mut self, line: &[u8], err: ParseError);
}

/// Counts for one packet, in the reference's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Non-empty lines (the reference's `metrics_received`).
    pub lines: u64,
    /// Values handed to [`Handler::metric`].
    pub metrics: u64,
    /// Rejected lines or values (the reference's `bad_lines_seen`).
    pub bad: u64,
}

/// A reusable parser; one per receive thread or connection.
#[derive(Debug, Default)]
pub struct StatsdParser {
    opts: ParseOptions,
    scratch: Vec<u8>,
}

impl StatsdParser {
    pub fn new(opts: ParseOptions) -> Self {
        StatsdParser {
            opts,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Parse every line of a packet (`\n` or `\r\n` separated).
    pub fn parse_packet<H: Handler>(&mut self, packet: &[u8], h: &mut H) -> PacketCounts {
        let _ = (&self.opts, &mut self.scratch, packet, h);
        todo!("statsd parser")
    }
}

//! graphite sink

use std::time::Duration;

/// Graphite sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteConfig {
    /// `host:port`.
    pub address: String,
    pub protocol: GraphiteProtocol,
    /// Bytes of encoded flushes held while the destination is unreachable;
    /// past this the oldest are dropped and counted.
    pub buffer_bytes: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphiteProtocol {
    Text,
    Pickle,
}

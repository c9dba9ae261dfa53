//! repeater sink

use std::time::Duration;

/// Repeater sink settings: raw packets copied to other statsd servers.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeaterConfig {
    /// `host:port` of each destination.
    pub destinations: Vec<String>,
    pub protocol: RepeaterProtocol,
    /// Used by TCP destinations while reconnecting.
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeaterProtocol {
    /// The reference's `udp4`/`udp6` (the address decides the family).
    Udp,
    /// The reference's `tcp`: each packet is sent followed by a newline.
    Tcp,
}

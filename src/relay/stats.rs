//! The relay's self-metrics, named as carbon-c-relay names them
//! (`metricsReceived`, `metricsSent`, `metricsQueued`, `metricsDropped`,
//! `destinations.<dest>.sent`...), plus statsyard's per-reason drop counters.
//!
//! The counters are plain atomics shared with [`crate::stats::Stats`] (for
//! `/metrics`); [`RelayStats::values`] names them, and [`super::send_self_metrics`] sends them as carbon points that the
//! relay routes through itself every `stats_interval`, as carbon-c-relay does.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::stats::get;

/// Why a received line or frame was not routed. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A line with a name and value but no timestamp.
    MissingTimestamp,
    /// A value that is NaN or infinite.
    NanInf,
    /// A value that is not a number.
    NonNumeric,
    /// A timestamp that is not an integer (or too large).
    BadTimestamp,
    /// A line with more or fewer fields than `path value timestamp`.
    BadFields,
    /// A line over `max_line_length`.
    TooLong,
    /// A name with characters carbon does not accept (or an empty name).
    IllegalName,
    /// A pickle frame that could not be decoded, or was too large.
    BadFrame,
}

/// Every counter of the relay. Totals only grow.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Points accepted by the receivers (c-relay `metricsReceived`).
    pub metrics_received: AtomicU64,
    /// Points written to destinations (c-relay `metricsSent`).
    pub metrics_sent: AtomicU64,
    /// Points that matched no rule (c-relay counts them in `metricsBlackholed`).
    pub metrics_unrouted: AtomicU64,
    /// Points sent to `blackhole` by a rule (part of c-relay `metricsBlackholed`).
    pub metrics_blackholed: AtomicU64,
    /// Points dropped because a destination queue was full (c-relay
    /// `metricsDropped`), summed over destinations.
    pub metrics_dropped: AtomicU64,
    /// Points of an `any_of`/`failover` cluster sent to another destination
    /// because theirs was down.
    pub metrics_rerouted: AtomicU64,
    /// Pickle frames received.
    pub frames_received: AtomicU64,
    /// Carbon TCP connections accepted (c-relay `connections`).
    pub connections: AtomicU64,
    /// Carbon TCP connections ended (c-relay `disconnects`).
    pub disconnects: AtomicU64,
    /// Carbon TCP connections refused because `[relay] max_connections` were open.
    pub connections_rejected: AtomicU64,
    /// Carbon TCP connections open now (line and pickle together).
    pub connections_open: AtomicU64,
    /// Carbon TCP connections closed because they sent nothing for `[relay] idle_timeout`.
    pub connections_idle_closed: AtomicU64,
    /// Lines with no timestamp (dropped, or stamped now when allowed).
    pub invalid_missing_timestamp: AtomicU64,
    /// Lines whose value is NaN or ±Inf, dropped.
    pub invalid_nan_inf: AtomicU64,
    /// Lines whose value is not a number, dropped.
    pub invalid_non_numeric: AtomicU64,
    /// Lines whose timestamp is not a number, dropped.
    pub invalid_timestamp: AtomicU64,
    /// Lines with the wrong number of fields, dropped.
    pub invalid_fields: AtomicU64,
    /// Lines longer than `max_line_length`, dropped.
    pub invalid_too_long: AtomicU64,
    /// Lines whose name is empty or holds characters carbon refuses, dropped.
    pub invalid_name: AtomicU64,
    /// Pickle frames that were too large or not decodable (the connection is closed).
    pub invalid_frame: AtomicU64,
    /// Lines whose timestamp was `-1` and that were stamped with the current time.
    pub timestamp_now: AtomicU64,
    /// Per destination, in config order (over all clusters).
    pub destinations: Vec<Arc<DestinationStats>>,
}

/// One destination's counters.
#[derive(Debug, Default)]
pub struct DestinationStats {
    /// `host:port[:instance]`.
    pub name: String,
    /// Points written to it (c-relay `destinations.<d>.sent`).
    pub sent: AtomicU64,
    /// Points in its queue now (c-relay `destinations.<d>.queued`).
    pub queued: AtomicU64,
    /// Points dropped because its queue was full (c-relay `destinations.<d>.dropped`).
    pub dropped: AtomicU64,
    /// Points moved from its queue to another destination while it was down.
    pub rerouted: AtomicU64,
    /// Failed connects and writes.
    pub errors: AtomicU64,
    /// 1 while connected, 0 while down.
    pub up: AtomicU64,
    /// The destination's disk spool (all zero without one).
    pub spool: Arc<crate::spool::SpoolStats>,
}

impl RelayStats {
    /// Counters for a relay with these destinations (in config order).
    pub fn new(destinations: impl IntoIterator<Item = String>) -> RelayStats {
        RelayStats {
            destinations: destinations
                .into_iter()
                .map(|name| {
                    Arc::new(DestinationStats {
                        name,
                        ..DestinationStats::default()
                    })
                })
                .collect(),
            ..RelayStats::default()
        }
    }

    /// The counter of a validation case.
    pub fn invalid(&self, r: DropReason) -> &AtomicU64 {
        match r {
            DropReason::MissingTimestamp => &self.invalid_missing_timestamp,
            DropReason::NanInf => &self.invalid_nan_inf,
            DropReason::NonNumeric => &self.invalid_non_numeric,
            DropReason::BadTimestamp => &self.invalid_timestamp,
            DropReason::BadFields => &self.invalid_fields,
            DropReason::TooLong => &self.invalid_too_long,
            DropReason::IllegalName => &self.invalid_name,
            DropReason::BadFrame => &self.invalid_frame,
        }
    }

    /// Refused input, all cases (c-relay `metricsDiscarded`).
    pub fn discarded(&self) -> u64 {
        [
            &self.invalid_missing_timestamp,
            &self.invalid_nan_inf,
            &self.invalid_non_numeric,
            &self.invalid_timestamp,
            &self.invalid_fields,
            &self.invalid_too_long,
            &self.invalid_name,
            &self.invalid_frame,
        ]
        .into_iter()
        .map(get)
        .sum()
    }

    /// Points held in all destination queues now (c-relay `metricsQueued`).
    pub fn queued(&self) -> u64 {
        self.destinations.iter().map(|d| get(&d.queued)).sum()
    }

    /// Every counter as `(name relative to the prefix, value)`, with
    /// carbon-c-relay's names where it has one.
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("metricsReceived".to_string(), get(&self.metrics_received)),
            ("metricsSent".to_string(), get(&self.metrics_sent)),
            ("metricsQueued".to_string(), self.queued()),
            ("metricsDropped".to_string(), get(&self.metrics_dropped)),
            (
                "metricsBlackholed".to_string(),
                get(&self.metrics_blackholed),
            ),
            ("metricsNonMatched".to_string(), get(&self.metrics_unrouted)),
            ("metricsRerouted".to_string(), get(&self.metrics_rerouted)),
            ("framesReceived".to_string(), get(&self.frames_received)),
            ("timestampNow".to_string(), get(&self.timestamp_now)),
            (
                "connectionsRejected".to_string(),
                get(&self.connections_rejected),
            ),
            (
                "connectionsIdleClosed".to_string(),
                get(&self.connections_idle_closed),
            ),
        ];
        for (name, c) in [
            ("missingTimestamp", &self.invalid_missing_timestamp),
            ("nanInf", &self.invalid_nan_inf),
            ("nonNumeric", &self.invalid_non_numeric),
            ("badTimestamp", &self.invalid_timestamp),
            ("badFields", &self.invalid_fields),
            ("tooLong", &self.invalid_too_long),
            ("illegalName", &self.invalid_name),
            ("badFrame", &self.invalid_frame),
        ] {
            v.push((format!("metricsInvalid.{name}"), get(c)));
        }
        for d in &self.destinations {
            let n = graphite_safe(&d.name);
            v.push((format!("destinations.{n}.sent"), get(&d.sent)));
            v.push((format!("destinations.{n}.queued"), get(&d.queued)));
            v.push((format!("destinations.{n}.dropped"), get(&d.dropped)));
            v.push((format!("destinations.{n}.rerouted"), get(&d.rerouted)));
            v.push((format!("destinations.{n}.errors"), get(&d.errors)));
            v.push((format!("destinations.{n}.up"), get(&d.up)));
        }
        v
    }
}

/// A destination as one Graphite path node: c-relay replaces the dots and
/// colons of `host:port` with underscores.
pub fn graphite_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '.' | ':' | ' ' | '/' => '_',
            c => c,
        })
        .collect()
}

/// The short host name (up to the first dot), for the default stats prefix.
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let full = String::from_utf8_lossy(&buf[..end]);
    let short = full.split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        "localhost".to_string()
    } else {
        graphite_safe(&short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_names_are_one_node() {
        assert_eq!(graphite_safe("10.0.0.1:2003:a"), "10_0_0_1_2003_a");
        let s = RelayStats::new(["h:1".to_string()]);
        let names: Vec<String> = s.values().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"destinations.h_1.sent".to_string()));
        assert!(names.contains(&"metricsReceived".to_string()));
        assert!(!short_hostname().contains('.'));
    }
}

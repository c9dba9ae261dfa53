//! The carbon relay's counters ([`crate::relay`]) and their tables. The
//! rows' keys are carbon-c-relay's names (`metricsReceived`,
//! `destinations.<dest>.sent`...): the relay sends them through itself every
//! `stats_interval`, as carbon-c-relay does ([`super::render::relay_values`]);
//! `/metrics` shows them under `statsyard_relay_`.
//!
//! Imports nothing of the crate outside `stats`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::atomic::get;
use super::spool::SpoolStats;
use super::table::{Kind, Metric};

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
    pub spool: Arc<SpoolStats>,
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

/// Every relay-wide counter, in export order.
pub const RELAY: &[Metric<RelayStats>] = &[
    Metric::new(
        "metricsReceived",
        "points_received_total",
        Kind::Counter,
        "Carbon points accepted by the relay's receivers (carbon-c-relay metricsReceived).",
        |r: &RelayStats| get(&r.metrics_received),
    )
    .graphite(),
    Metric::new(
        "metricsSent",
        "points_sent_total",
        Kind::Counter,
        "Points written to destinations (metricsSent).",
        |r: &RelayStats| get(&r.metrics_sent),
    )
    .graphite(),
    Metric::new(
        "metricsQueued",
        "queued",
        Kind::Gauge,
        "Points held in all destination queues now (metricsQueued).",
        RelayStats::queued,
    )
    .graphite(),
    Metric::new(
        "metricsDropped",
        "points_dropped_total",
        Kind::Counter,
        "Points dropped because a destination queue was full (metricsDropped).",
        |r: &RelayStats| get(&r.metrics_dropped),
    )
    .graphite(),
    Metric::new(
        "metricsBlackholed",
        "points_blackholed_total",
        Kind::Counter,
        "Points sent to blackhole by a rule.",
        |r: &RelayStats| get(&r.metrics_blackholed),
    )
    .graphite(),
    Metric::new(
        "metricsNonMatched",
        "points_unrouted_total",
        Kind::Counter,
        "Points that matched no rule.",
        |r: &RelayStats| get(&r.metrics_unrouted),
    )
    .graphite(),
    Metric::new(
        "metricsRerouted",
        "points_rerouted_total",
        Kind::Counter,
        "Points of any_of/failover clusters sent to another destination while theirs was down.",
        |r: &RelayStats| get(&r.metrics_rerouted),
    )
    .graphite(),
    Metric::new(
        "framesReceived",
        "frames_received_total",
        Kind::Counter,
        "Pickle frames received.",
        |r: &RelayStats| get(&r.frames_received),
    )
    .graphite(),
    Metric::new(
        "timestampNow",
        "timestamp_now_total",
        Kind::Counter,
        "Lines with timestamp -1, stamped with the current time.",
        |r: &RelayStats| get(&r.timestamp_now),
    )
    .graphite(),
    Metric::new(
        "connectionsRejected",
        "connections_rejected_total",
        Kind::Counter,
        "Carbon TCP connections refused because [relay] max_connections were open.",
        |r: &RelayStats| get(&r.connections_rejected),
    )
    .graphite(),
    Metric::new(
        "connectionsIdleClosed",
        "connections_idle_closed_total",
        Kind::Counter,
        "Carbon TCP connections closed because they sent nothing for [relay] idle_timeout.",
        |r: &RelayStats| get(&r.connections_idle_closed),
    )
    .graphite(),
    Metric::new(
        "connections",
        "connections_total",
        Kind::Counter,
        "Carbon TCP connections accepted.",
        |r: &RelayStats| get(&r.connections),
    ),
    Metric::new(
        "disconnects",
        "disconnects_total",
        Kind::Counter,
        "Carbon TCP connections ended.",
        |r: &RelayStats| get(&r.disconnects),
    ),
    Metric::new(
        "connectionsOpen",
        "connections_open",
        Kind::Gauge,
        "Carbon TCP connections open now (line and pickle).",
        |r: &RelayStats| get(&r.connections_open),
    ),
    invalid(
        "metricsInvalid.missingTimestamp",
        "missing_timestamp",
        |r: &RelayStats| get(&r.invalid_missing_timestamp),
    ),
    invalid("metricsInvalid.nanInf", "nan_inf", |r: &RelayStats| {
        get(&r.invalid_nan_inf)
    }),
    invalid(
        "metricsInvalid.nonNumeric",
        "non_numeric",
        |r: &RelayStats| get(&r.invalid_non_numeric),
    ),
    invalid(
        "metricsInvalid.badTimestamp",
        "bad_timestamp",
        |r: &RelayStats| get(&r.invalid_timestamp),
    ),
    invalid(
        "metricsInvalid.badFields",
        "bad_fields",
        |r: &RelayStats| get(&r.invalid_fields),
    ),
    invalid("metricsInvalid.tooLong", "too_long", |r: &RelayStats| {
        get(&r.invalid_too_long)
    }),
    invalid(
        "metricsInvalid.illegalName",
        "illegal_name",
        |r: &RelayStats| get(&r.invalid_name),
    ),
    invalid("metricsInvalid.badFrame", "bad_frame", |r: &RelayStats| {
        get(&r.invalid_frame)
    }),
];

/// One validation case of `points_invalid_total{reason=...}`.
const fn invalid(
    key: &'static str,
    reason: &'static str,
    value: fn(&RelayStats) -> u64,
) -> Metric<RelayStats> {
    Metric::new(
        key,
        "points_invalid_total",
        Kind::Counter,
        "Lines and frames refused by validation, by reason.",
        value,
    )
    .labelled("reason", reason)
    .graphite()
}

/// Every per-destination counter, in export order (the key follows
/// `destinations.<dest>.` in Graphite, the Prometheus name `relay_`, with a
/// `destination` label). The destination's spool follows ([`super::spool::SPOOL`]).
pub const DESTINATION: &[Metric<DestinationStats>] = &[
    Metric::new(
        "sent",
        "destination_sent_total",
        Kind::Counter,
        "Points written to a destination.",
        |d: &DestinationStats| get(&d.sent),
    )
    .graphite(),
    Metric::new(
        "queued",
        "destination_queued",
        Kind::Gauge,
        "Points in a destination's queue now.",
        |d: &DestinationStats| get(&d.queued),
    )
    .graphite(),
    Metric::new(
        "dropped",
        "destination_dropped_total",
        Kind::Counter,
        "Points dropped because a destination's queue was full.",
        |d: &DestinationStats| get(&d.dropped),
    )
    .graphite(),
    Metric::new(
        "rerouted",
        "destination_rerouted_total",
        Kind::Counter,
        "Points moved from a down destination's queue to another destination.",
        |d: &DestinationStats| get(&d.rerouted),
    )
    .graphite(),
    Metric::new(
        "errors",
        "destination_errors_total",
        Kind::Counter,
        "Failed connects and writes to a destination.",
        |d: &DestinationStats| get(&d.errors),
    )
    .graphite(),
    Metric::new(
        "up",
        "destination_up",
        Kind::Gauge,
        "1 while statsyard is connected to the destination, 0 while it is down.",
        |d: &DestinationStats| get(&d.up),
    )
    .graphite(),
];

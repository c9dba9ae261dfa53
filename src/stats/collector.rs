//! The counters of what statsyard collects and notices itself: the host
//! collector ([`HostStats`], [`HOST`]), liveness ([`LivenessStats`],
//! [`LIVENESS`]) and events ([`EventStats`], [`EVENTS`]). One table each,
//! rendered like every other ([`super::render`]).
//!
//! Imports nothing of the crate outside `stats`.

use std::sync::atomic::AtomicU64;

use super::get;
use super::table::{Kind, Metric};

/// The host collector's counters (`[host]`).
#[derive(Debug, Default)]
pub struct HostStats {
    /// Collections done.
    pub collections: AtomicU64,
    /// How long the last collection took, in microseconds.
    pub collect_micros: AtomicU64,
    /// Modules turned off because what they read could not be read.
    pub modules_disabled: AtomicU64,
    /// Values the collector wrote (gauges and counters).
    pub values: AtomicU64,
}

/// Liveness's counters (`[liveness]`).
#[derive(Debug, Default)]
pub struct LivenessStats {
    /// Sources tracked now.
    pub sources: AtomicU64,
    /// Of those, dark now.
    pub sources_dark: AtomicU64,
    /// Sources not tracked because `max_sources` were (counted each time
    /// one of them is seen, at most once a second per receive thread).
    pub sources_over_limit: AtomicU64,
    /// Series with a `ttl` tracked now.
    pub series: AtomicU64,
    /// Of those, dark now.
    pub series_dark: AtomicU64,
    /// Sources and series that went dark.
    pub went_dark: AtomicU64,
    /// Sources and series that came back.
    pub came_back: AtomicU64,
    /// Sources and series forgotten after `forget_after`.
    pub forgotten: AtomicU64,
}

/// Event counters (`[events]`).
#[derive(Debug, Default)]
pub struct EventStats {
    /// DogStatsD events accepted.
    pub events_received: AtomicU64,
    /// DogStatsD service checks accepted.
    pub checks_received: AtomicU64,
    /// statsyard's own events (dark, back).
    pub events_own: AtomicU64,
    /// Events in the ring now.
    pub events_kept: AtomicU64,
    /// Service checks listed now.
    pub checks_kept: AtomicU64,
    /// Service checks not listed because `max_checks` were (their gauges
    /// are kept as any gauge).
    pub checks_over_limit: AtomicU64,
}

/// `statsyard_host_*`, the `host` object of `/api/stats`.
pub const HOST: &[Metric<HostStats>] = &[
    Metric::new(
        "collections",
        "collections_total",
        Kind::Counter,
        "Host collections done.",
        |s: &HostStats| get(&s.collections),
    ),
    Metric::new(
        "collect_micros",
        "collect_seconds",
        Kind::Gauge,
        "How long the last host collection took.",
        |s: &HostStats| get(&s.collect_micros),
    )
    .scaled(1e-6),
    Metric::new(
        "modules_disabled",
        "modules_disabled_total",
        Kind::Counter,
        "Host modules turned off because what they read could not be read.",
        |s: &HostStats| get(&s.modules_disabled),
    )
    .graphite(),
    Metric::new(
        "values",
        "values_total",
        Kind::Counter,
        "Values the host collector wrote.",
        |s: &HostStats| get(&s.values),
    ),
];

/// `statsyard_liveness_*`, the `liveness` object of `/api/stats`.
pub const LIVENESS: &[Metric<LivenessStats>] = &[
    Metric::new(
        "sources",
        "sources",
        Kind::Gauge,
        "Sources tracked (at most max_sources).",
        |s: &LivenessStats| get(&s.sources),
    ),
    Metric::new(
        "sources_dark",
        "sources_dark",
        Kind::Gauge,
        "Tracked sources that are dark now.",
        |s: &LivenessStats| get(&s.sources_dark),
    )
    .graphite(),
    Metric::new(
        "sources_over_limit",
        "sources_over_limit_total",
        Kind::Counter,
        "Sightings of sources not tracked because max_sources were.",
        |s: &LivenessStats| get(&s.sources_over_limit),
    )
    .graphite(),
    Metric::new(
        "series",
        "series",
        Kind::Gauge,
        "Series with a ttl tracked.",
        |s: &LivenessStats| get(&s.series),
    ),
    Metric::new(
        "series_dark",
        "series_dark",
        Kind::Gauge,
        "Tracked series that are dark now.",
        |s: &LivenessStats| get(&s.series_dark),
    )
    .graphite(),
    Metric::new(
        "went_dark",
        "went_dark_total",
        Kind::Counter,
        "Sources and series that went dark.",
        |s: &LivenessStats| get(&s.went_dark),
    ),
    Metric::new(
        "came_back",
        "came_back_total",
        Kind::Counter,
        "Sources and series that came back.",
        |s: &LivenessStats| get(&s.came_back),
    ),
    Metric::new(
        "forgotten",
        "forgotten_total",
        Kind::Counter,
        "Sources and series forgotten after forget_after.",
        |s: &LivenessStats| get(&s.forgotten),
    ),
];

/// `statsyard_events_*`, the `events` object of `/api/stats`.
pub const EVENTS: &[Metric<EventStats>] = &[
    Metric::new(
        "events_received",
        "received_total",
        Kind::Counter,
        "DogStatsD events accepted.",
        |s: &EventStats| get(&s.events_received),
    )
    .graphite(),
    Metric::new(
        "checks_received",
        "checks_received_total",
        Kind::Counter,
        "DogStatsD service checks accepted.",
        |s: &EventStats| get(&s.checks_received),
    )
    .graphite(),
    Metric::new(
        "events_own",
        "own_total",
        Kind::Counter,
        "Events statsyard made itself (sources and series going dark and coming back).",
        |s: &EventStats| get(&s.events_own),
    ),
    Metric::new(
        "events_kept",
        "kept",
        Kind::Gauge,
        "Events in the ring that GET /api/events serves.",
        |s: &EventStats| get(&s.events_kept),
    ),
    Metric::new(
        "checks_kept",
        "checks_kept",
        Kind::Gauge,
        "Service checks that GET /api/checks lists.",
        |s: &EventStats| get(&s.checks_kept),
    ),
    Metric::new(
        "checks_over_limit",
        "checks_over_limit_total",
        Kind::Counter,
        "Service checks not listed because max_checks were.",
        |s: &EventStats| get(&s.checks_over_limit),
    ),
];

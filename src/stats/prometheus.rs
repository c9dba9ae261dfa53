//! The Prometheus exporter's figures ([`crate::sink::prometheus`]) and their
//! table. A snapshot, taken when the exporter renders, not atomics.
//!
//! Imports nothing of the crate outside `stats`.

use super::table::{Kind, Metric};

/// The exporter's figures, for the self-metrics and `/api/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromStats {
    /// Whether the exporter is observing (someone scraped within `idle_timeout`).
    pub active: bool,
    pub series: usize,
    pub conflicts: u64,
    pub over_limit: u64,
    /// How long the last observe() and render took, in microseconds.
    pub observe_micros: u64,
    pub render_micros: u64,
}

/// Every exporter figure, in export order (`statsyard_prometheus_*`; the
/// `prometheus` object of `/api/stats`).
pub const PROMETHEUS: &[Metric<PromStats>] = &[
    Metric::new(
        "active",
        "prometheus_active",
        Kind::Flag,
        "1 while the exporter observes flushes (/metrics was requested within idle_timeout).",
        |e: &PromStats| e.active as u64,
    ),
    Metric::new(
        "observe_micros",
        "prometheus_observe_seconds",
        Kind::Gauge,
        "How long the exporter took to take in the last flush.",
        |e: &PromStats| e.observe_micros,
    )
    .scaled(1e-6),
    Metric::new(
        "render_micros",
        "prometheus_render_seconds",
        Kind::Gauge,
        "How long rendering the client series took at the last flush.",
        |e: &PromStats| e.render_micros,
    )
    .scaled(1e-6),
    Metric::new(
        "series",
        "prometheus_series",
        Kind::Gauge,
        "Series exported on /metrics (a summary or histogram counts once).",
        |e: &PromStats| e.series as u64,
    ),
    Metric::new(
        "conflicts",
        "prometheus_conflicts_total",
        Kind::Counter,
        "Series dropped because their name is used by another type or other label names.",
        |e: &PromStats| e.conflicts,
    ),
    Metric::new(
        "over_limit",
        "prometheus_over_limit_total",
        Kind::Counter,
        "Series dropped because max_series were exported.",
        |e: &PromStats| e.over_limit,
    ),
];

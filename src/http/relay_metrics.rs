//! The carbon relay's self-metrics on `/metrics`, under `statsyard_relay_`.
//!
//! The same atomics feed carbon-c-relay-style names sent through the relay
//! itself ([`crate::relay::send_self_metrics`]); here they get Prometheus
//! names, with the validation case and the destination as labels.

use std::fmt::Write as _;

use crate::http::prometheus::push_help;
use crate::relay::stats::RelayStats;
use crate::stats::get;

/// One family: its header, then `(labels, value)` samples.
fn family(s: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let name = format!("statsyard_relay_{name}");
    push_help(s, &name, help);
    let _ = writeln!(s, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(s, "{name}{labels} {v}");
    }
}

fn label(key: &str, value: &str) -> String {
    let v = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{{key}=\"{v}\"}}")
}

/// Every relay family, appended to `s`.
pub fn render(r: &RelayStats, s: &mut String) {
    let plain = |v: u64| vec![(String::new(), v)];
    let counters = [
        (
            "points_received_total",
            "Carbon points accepted by the relay's receivers (carbon-c-relay metricsReceived).",
            get(&r.metrics_received),
        ),
        (
            "points_sent_total",
            "Points written to destinations (metricsSent).",
            get(&r.metrics_sent),
        ),
        (
            "points_dropped_total",
            "Points dropped because a destination queue was full (metricsDropped).",
            get(&r.metrics_dropped),
        ),
        (
            "points_blackholed_total",
            "Points sent to blackhole by a rule.",
            get(&r.metrics_blackholed),
        ),
        (
            "points_unrouted_total",
            "Points that matched no rule.",
            get(&r.metrics_unrouted),
        ),
        (
            "points_rerouted_total",
            "Points of any_of/failover clusters sent to another destination while theirs was down.",
            get(&r.metrics_rerouted),
        ),
        (
            "frames_received_total",
            "Pickle frames received.",
            get(&r.frames_received),
        ),
        (
            "connections_total",
            "Carbon TCP connections accepted.",
            get(&r.connections),
        ),
        (
            "disconnects_total",
            "Carbon TCP connections ended.",
            get(&r.disconnects),
        ),
        (
            "connections_rejected_total",
            "Carbon TCP connections refused because [relay] max_connections were open.",
            get(&r.connections_rejected),
        ),
        (
            "connections_idle_closed_total",
            "Carbon TCP connections closed because they sent nothing for [relay] idle_timeout.",
            get(&r.connections_idle_closed),
        ),
        (
            "timestamp_now_total",
            "Lines with timestamp -1, stamped with the current time.",
            get(&r.timestamp_now),
        ),
    ];
    for (name, help, v) in counters {
        family(s, name, "counter", help, &plain(v));
    }
    let invalid: Vec<(String, u64)> = [
        ("missing_timestamp", &r.invalid_missing_timestamp),
        ("nan_inf", &r.invalid_nan_inf),
        ("non_numeric", &r.invalid_non_numeric),
        ("bad_timestamp", &r.invalid_timestamp),
        ("bad_fields", &r.invalid_fields),
        ("too_long", &r.invalid_too_long),
        ("illegal_name", &r.invalid_name),
        ("bad_frame", &r.invalid_frame),
    ]
    .into_iter()
    .map(|(reason, c)| (label("reason", reason), get(c)))
    .collect();
    family(
        s,
        "points_invalid_total",
        "counter",
        "Lines and frames refused by validation, by reason.",
        &invalid,
    );
    family(
        s,
        "connections_open",
        "gauge",
        "Carbon TCP connections open now (line and pickle).",
        &plain(get(&r.connections_open)),
    );
    family(
        s,
        "queued",
        "gauge",
        "Points held in all destination queues now (metricsQueued).",
        &plain(r.queued()),
    );
    let per_dest = |f: &dyn Fn(&crate::relay::stats::DestinationStats) -> u64| {
        r.destinations
            .iter()
            .map(|d| (label("destination", &d.name), f(d)))
            .collect::<Vec<_>>()
    };
    family(
        s,
        "destination_sent_total",
        "counter",
        "Points written to a destination.",
        &per_dest(&|d| get(&d.sent)),
    );
    family(
        s,
        "destination_dropped_total",
        "counter",
        "Points dropped because a destination's queue was full.",
        &per_dest(&|d| get(&d.dropped)),
    );
    family(
        s,
        "destination_rerouted_total",
        "counter",
        "Points moved from a down destination's queue to another destination.",
        &per_dest(&|d| get(&d.rerouted)),
    );
    family(
        s,
        "destination_errors_total",
        "counter",
        "Failed connects and writes to a destination.",
        &per_dest(&|d| get(&d.errors)),
    );
    family(
        s,
        "destination_queued",
        "gauge",
        "Points in a destination's queue now.",
        &per_dest(&|d| get(&d.queued)),
    );
    family(
        s,
        "destination_up",
        "gauge",
        "1 while statsyard is connected to the destination, 0 while it is down.",
        &per_dest(&|d| get(&d.up)),
    );
    for m in &crate::spool::SPOOL_METRICS {
        let name = format!("destination_spool_{}", m.name);
        family(
            s,
            &name,
            m.kind,
            m.help,
            &per_dest(&|d| (m.value)(&d.spool)),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn families_have_headers_and_labels() {
        let r = RelayStats::new(["10.0.0.1:2004:a".to_string()]);
        r.metrics_received.store(7, Ordering::Relaxed);
        r.invalid_nan_inf.store(2, Ordering::Relaxed);
        r.destinations[0].up.store(1, Ordering::Relaxed);
        let mut s = String::new();
        render(&r, &mut s);
        for line in [
            "# TYPE statsyard_relay_points_received_total counter",
            "statsyard_relay_points_received_total 7",
            "statsyard_relay_points_invalid_total{reason=\"nan_inf\"} 2",
            "# TYPE statsyard_relay_destination_up gauge",
            "statsyard_relay_destination_up{destination=\"10.0.0.1:2004:a\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "{line} missing in\n{s}");
        }
    }
}

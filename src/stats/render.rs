//! The self-metric tables rendered in each format: `/metrics`
//! ([`prometheus`]), `/api/stats` ([`json`]), the flush's Graphite lines
//! ([`graphite`]), the admin console's `stats` ([`admin`]) and the relay's
//! carbon-c-relay lines ([`relay_values`]). One generic walk per format over
//! [`Metric`] rows; nothing here names a counter.
//!
//! Imports, besides `stats` itself: `exposition`.

use serde_json::{json, Map, Value};

use super::collector::{EVENTS, HOST, LIVENESS};
use super::forward::{AGGREGATOR, FORWARD};
use super::listener::LISTENER;
use super::prometheus::{PromStats, PROMETHEUS};
use super::relay::{graphite_safe, RelayStats, DESTINATION, RELAY};
use super::spool::{SpoolStats, SPOOL};
use super::table::{Kind, Metric};
use super::{get, Stats, PROCESS, SINK, TASK, UDP_SOCKET};
use crate::exposition::{push_header, push_number, Out};

/// Every self-metric family under `statsyard_`, in the text exposition
/// format, appended to `out`. `exporter` adds the exporter's figures.
pub fn prometheus(stats: &Stats, exporter: Option<&PromStats>, out: &mut Vec<u8>) {
    let mut s = String::with_capacity(16 * 1024);
    plain(&mut s, "statsyard_", PROCESS, stats);
    plain(&mut s, "statsyard_host_", HOST, &stats.host);
    plain(&mut s, "statsyard_liveness_", LIVENESS, &stats.liveness);
    plain(&mut s, "statsyard_events_", EVENTS, &stats.events);
    if let Some(f) = stats.forward_if_on() {
        plain(&mut s, "statsyard_forward_", FORWARD, &f);
    }
    if let Some(a) = stats.aggregator_if_on() {
        plain(&mut s, "statsyard_aggregator_", AGGREGATOR, &a);
    }
    let prefixes = stats.series_dropped_by_prefix();
    family(
        &mut s,
        "statsyard_series_dropped_by_prefix_total",
        Kind::Counter,
        "Values dropped because their series_limits prefix was full, per prefix.",
        prefixes
            .iter()
            .map(|(p, n)| ([Some(("prefix", p.as_str())), None], *n as f64)),
    );
    let sockets = stats.udp_sockets();
    let labelled = sockets
        .iter()
        .map(|u| (u.addr.to_string(), u.as_ref()))
        .collect::<Vec<_>>();
    grouped(&mut s, "statsyard_", "socket", UDP_SOCKET, &labelled);
    let listeners = stats.listeners();
    let labelled = listeners
        .iter()
        .map(|l| (l.name(), l.as_ref()))
        .collect::<Vec<_>>();
    grouped(&mut s, "statsyard_", "listener", LISTENER, &labelled);
    let sinks = stats.sinks();
    let labelled = sinks
        .iter()
        .map(|k| (k.name.clone(), k.as_ref()))
        .collect::<Vec<_>>();
    grouped(&mut s, "statsyard_", "sink", SINK, &labelled);
    let spools = labelled
        .iter()
        .map(|(n, k)| (n.clone(), k.spool.as_ref()))
        .collect::<Vec<_>>();
    grouped(&mut s, "statsyard_sink_spool_", "sink", &SPOOL, &spools);
    let tasks = stats.tasks();
    let labelled = tasks
        .iter()
        .map(|t| (t.name.clone(), t.as_ref()))
        .collect::<Vec<_>>();
    grouped(&mut s, "statsyard_", "task", TASK, &labelled);
    if let Some(e) = exporter {
        plain(&mut s, "statsyard_", PROMETHEUS, e);
    }
    if let Some(r) = stats.relay() {
        plain(&mut s, "statsyard_relay_", RELAY, &r);
        let dests = r
            .destinations
            .iter()
            .map(|d| (d.name.clone(), d.as_ref()))
            .collect::<Vec<_>>();
        grouped(
            &mut s,
            "statsyard_relay_",
            "destination",
            DESTINATION,
            &dests,
        );
        let spools = dests
            .iter()
            .map(|(n, d)| (n.clone(), d.spool.as_ref()))
            .collect::<Vec<_>>();
        grouped(
            &mut s,
            "statsyard_relay_destination_spool_",
            "destination",
            &SPOOL,
            &spools,
        );
    }
    out.extend_from_slice(s.as_bytes());
}

/// The families of one struct: rows sharing a name (a labelled row per
/// reason) are one family.
fn plain<S: ?Sized>(s: &mut String, prefix: &str, rows: &[Metric<S>], of: &S) {
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        let n = rows[i..]
            .iter()
            .take_while(|r| r.prom == first.prom)
            .count();
        if first.show.prom {
            family(
                s,
                &format!("{prefix}{}", first.prom),
                first.kind,
                first.help,
                rows[i..i + n]
                    .iter()
                    .map(|r| ([r.label, None], (r.value)(of) as f64 * r.prom_scale)),
            );
        }
        i += n;
    }
}

/// One family per run of rows sharing a Prometheus name, one sample per
/// instance and row, labelled `label="name"` (and the row's own label);
/// nothing without instances.
fn grouped<S: ?Sized>(
    s: &mut String,
    prefix: &str,
    label: &str,
    rows: &[Metric<S>],
    instances: &[(String, &S)],
) {
    if instances.is_empty() {
        return;
    }
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        let run = &rows[i..i + rows[i..]
            .iter()
            .take_while(|r| r.prom == first.prom)
            .count()];
        i += run.len();
        if !first.show.prom {
            continue;
        }
        let mut samples = Vec::with_capacity(instances.len() * run.len());
        for (name, of) in instances {
            for r in run {
                samples.push((
                    [Some((label, name.as_str())), r.label],
                    (r.value)(of) as f64 * r.prom_scale,
                ));
            }
        }
        family(
            s,
            &format!("{prefix}{}", first.prom),
            first.kind,
            first.help,
            samples.into_iter(),
        );
    }
}

/// Up to two labels of a sample.
type Labels<'a> = [Option<(&'a str, &'a str)>; 2];

/// A family's header and samples; nothing without samples.
fn family<'a>(
    s: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    samples: impl Iterator<Item = (Labels<'a>, f64)>,
) {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return;
    }
    push_header(s, name, kind.as_str(), help);
    for (labels, v) in samples {
        s.put(name);
        let mut sep = "{";
        for (k, value) in labels.iter().flatten() {
            s.put(sep);
            s.put(k);
            s.put("=\"");
            crate::exposition::push_escaped(s, value, true);
            s.put("\"");
            sep = ",";
        }
        if sep == "," {
            s.put("}");
        }
        s.put(" ");
        push_number(s, v);
        s.put("\n");
    }
}

/// `/api/stats`: every row shown in JSON, as an object. The caller adds
/// what is not a counter (`health`, `uptime_seconds`).
pub fn json(stats: &Stats, exporter: &PromStats) -> Map<String, Value> {
    let mut o = object(PROCESS, stats);
    o.insert("host".into(), object(HOST, &stats.host).into());
    o.insert("liveness".into(), object(LIVENESS, &stats.liveness).into());
    o.insert("events".into(), object(EVENTS, &stats.events).into());
    if let Some(f) = stats.forward_if_on() {
        o.insert("forward".into(), object(FORWARD, f.as_ref()).into());
    }
    if let Some(a) = stats.aggregator_if_on() {
        o.insert("aggregator".into(), object(AGGREGATOR, a.as_ref()).into());
    }
    o.insert(
        "series_dropped_by_prefix".into(),
        stats
            .series_dropped_by_prefix()
            .into_iter()
            .map(|(p, n)| (p, Value::from(n)))
            .collect::<Map<_, _>>()
            .into(),
    );
    o.insert(
        "udp_sockets".into(),
        stats
            .udp_sockets()
            .iter()
            .map(|u| {
                let mut e = object(UDP_SOCKET, u.as_ref());
                e.insert("address".into(), u.addr.to_string().into());
                Value::Object(e)
            })
            .collect(),
    );
    o.insert(
        "listeners".into(),
        stats
            .listeners()
            .iter()
            .map(|l| {
                let mut e = Map::new();
                e.insert("name".into(), l.name().into());
                e.insert("proto".into(), l.proto.into());
                e.insert("address".into(), l.addr.clone().into());
                e.extend(object(LISTENER, l.as_ref()));
                Value::Object(e)
            })
            .collect(),
    );
    o.insert(
        "sinks".into(),
        stats
            .sinks()
            .iter()
            .map(|k| {
                let mut e = Map::new();
                e.insert("name".into(), k.name.clone().into());
                e.extend(object(SINK, k.as_ref()));
                e.insert("last_error".into(), k.last_error().into());
                e.insert("spool".into(), spool_json(&k.spool));
                Value::Object(e)
            })
            .collect(),
    );
    o.insert(
        "last_reload_message".into(),
        stats.last_reload_message().into(),
    );
    o.insert(
        "task_restarts".into(),
        stats
            .tasks()
            .iter()
            .map(|t| (t.name.clone(), Value::from(get(&t.restarts))))
            .collect::<Map<_, _>>()
            .into(),
    );
    o.insert("prometheus".into(), object(PROMETHEUS, exporter).into());
    if let Some(r) = stats.relay() {
        let mut relay = object(RELAY, r.as_ref());
        relay.insert(
            "destinations".into(),
            r.destinations
                .iter()
                .map(|d| {
                    let mut e = Map::new();
                    e.insert("name".into(), d.name.clone().into());
                    e.extend(object(DESTINATION, d.as_ref()));
                    e.insert("spool".into(), spool_json(&d.spool));
                    Value::Object(e)
                })
                .collect(),
        );
        o.insert("relay".into(), relay.into());
    }
    o
}

/// A spool's counters as an object (all zero without a spool).
pub fn spool_json(s: &SpoolStats) -> Value {
    object(&SPOOL, s).into()
}

/// The rows shown in JSON, by key.
fn object<S: ?Sized>(rows: &[Metric<S>], of: &S) -> Map<String, Value> {
    rows.iter()
        .filter(|r| r.show.json)
        .map(|r| {
            let v = (r.value)(of);
            let v = match r.kind {
                Kind::Flag => json!(v != 0),
                _ => json!(v),
            };
            (r.key.to_string(), v)
        })
        .collect()
}

/// The flush's self-metrics: `(name below <prefix_stats>.statsyard., value,
/// kind)`. Counters are totals: the flusher sends their growth per interval.
/// Several SO_REUSEPORT sockets of one address are one series, summed.
pub fn graphite(stats: &Stats) -> Vec<(String, u64, Kind)> {
    let mut out: Vec<(String, u64, Kind)> = Vec::new();
    for (node, rows) in [
        ("", own(PROCESS, stats)),
        ("host.", own(HOST, &stats.host)),
        ("liveness.", own(LIVENESS, &stats.liveness)),
        ("events.", own(EVENTS, &stats.events)),
    ] {
        out.extend(
            rows.into_iter()
                .map(|(k, v, kind)| (format!("{node}{k}"), v, kind)),
        );
    }
    let forward = stats.forward_if_on();
    let aggregator = stats.aggregator_if_on();
    let roles = [
        forward
            .as_ref()
            .map(|f| ("forward.", own(FORWARD, f.as_ref()))),
        aggregator
            .as_ref()
            .map(|a| ("aggregator.", own(AGGREGATOR, a.as_ref()))),
    ];
    for (node, rows) in roles.into_iter().flatten() {
        out.extend(
            rows.into_iter()
                .map(|(k, v, kind)| (format!("{node}{k}"), v, kind)),
        );
    }
    for sock in stats.udp_sockets() {
        let node = format!(
            "udp.{}_{}",
            sock.addr.ip().to_string().replace([':', '.'], "_"),
            sock.addr.port()
        );
        for r in UDP_SOCKET.iter().filter(|r| r.show.graphite) {
            let name = format!("{node}.{}", r.key);
            let v = (r.value)(&sock);
            match out.iter_mut().find(|(n, ..)| *n == name) {
                Some((_, total, _)) => *total += v,
                None => out.push((name, v, r.kind)),
            }
        }
    }
    // Per sink: `sinks.<name>.<key>` and `sinks.<name>.spool.<key>`.
    for k in stats.sinks() {
        let node = format!("sinks.{}", graphite_safe(&k.name));
        for r in SINK.iter().filter(|r| r.show.graphite) {
            out.push((format!("{node}.{}", r.key), (r.value)(&k), r.kind));
        }
        for r in SPOOL.iter().filter(|r| r.show.graphite) {
            out.push((
                format!("{node}.spool.{}", r.key),
                (r.value)(&k.spool),
                r.kind,
            ));
        }
    }
    for (prefix, n) in stats.series_dropped_by_prefix() {
        // The prefix as one path node: `app.` stays one node (`app_`).
        let node = graphite_node(&prefix);
        out.push((format!("series_dropped_prefix.{node}"), n, Kind::Counter));
    }
    out
}

/// `s` as one node of a Graphite name: `_` for anything but ASCII letters,
/// digits, `_` and `-`.
pub fn graphite_node(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The rows of one table shown in Graphite: `(key, value, kind)`.
fn own<S: ?Sized>(rows: &[Metric<S>], of: &S) -> Vec<(&'static str, u64, Kind)> {
    rows.iter()
        .filter(|r| r.show.graphite)
        .map(|r| (r.key, (r.value)(of), r.kind))
        .collect()
}

/// The admin console's per-sink `stats` lines: `<sink>.<key>: <value>`.
pub fn admin(stats: &Stats, out: &mut String) {
    for k in stats.sinks() {
        for r in SINK.iter().filter(|r| r.show.admin) {
            out.push_str(&format!("{}.{}: {}\n", k.name, r.key, (r.value)(&k)));
        }
    }
}

/// The relay's counters as carbon-c-relay names them, relative to
/// `stats_prefix`: what the relay sends through itself.
pub fn relay_values(r: &RelayStats) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = RELAY
        .iter()
        .filter(|m| m.show.graphite)
        .map(|m| (m.key.to_string(), (m.value)(r)))
        .collect();
    for d in &r.destinations {
        let n = graphite_safe(&d.name);
        for m in DESTINATION.iter().filter(|m| m.show.graphite) {
            v.push((format!("destinations.{n}.{}", m.key), (m.value)(d)));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::incr;

    #[test]
    fn renders_counters_sinks_and_exporter() {
        let stats = Stats::new();
        incr(&stats.packets_received, 3);
        incr(&stats.bad_lines_seen, 1);
        incr(&stats.series_dropped, 5);
        stats.add_series_dropped_under("app.\"x\"", 2);
        let sink = stats.sink("graphite \"a\"");
        incr(&sink.errors, 2);
        sink.failed("connect failed: refused");
        let l = stats.listener("udp", "127.0.0.1:8125");
        let c = l.counter();
        c.packet(3);
        l.bad_line(4);
        stats.udp_socket("127.0.0.1:8125".parse().unwrap(), None);
        incr(&stats.task("sink/graphite").restarts, 2);
        let mut out = Vec::new();
        prometheus(&stats, Some(&PromStats::default()), &mut out);
        let text = String::from_utf8(out).unwrap();
        for want in [
            "# TYPE statsyard_packets_received_total counter\nstatsyard_packets_received_total 3\n",
            "statsyard_bad_lines_total 1\n",
            "statsyard_sink_errors_total{sink=\"graphite \\\"a\\\"\"} 2\n",
            "statsyard_kernel_drops_total{socket=\"127.0.0.1:8125\"} 0\n",
            "statsyard_prometheus_series 0\n",
            "statsyard_prometheus_active 0\n",
            "statsyard_prometheus_conflicts_total 0\n",
            "# TYPE statsyard_task_restarts_total counter\nstatsyard_task_restarts_total{task=\"sink/graphite\"} 2\n",
            "statsyard_series_dropped_total 5\n",
            "statsyard_too_many_tags_total 0\n",
            "statsyard_connections_idle_closed_total 0\n",
            "statsyard_series_dropped_by_prefix_total{prefix=\"app.\\\"x\\\"\"} 2\n",
            "statsyard_listener_lines_total{listener=\"udp 127.0.0.1:8125\"} 3\n",
            "statsyard_listener_bad_lines_total{listener=\"udp 127.0.0.1:8125\",reason=\"negative_timer\"} 1\n",
            "statsyard_listener_bad_lines_total{listener=\"udp 127.0.0.1:8125\",reason=\"too_many_tags\"} 0\n",
            "statsyard_sink_connected{sink=\"graphite \\\"a\\\"\"} 0\n",
            "statsyard_last_reload_success 1\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(
            !text.contains("_sum "),
            "graphite-only rows stay off /metrics"
        );
        let j = json(&stats, &PromStats::default());
        assert_eq!(j["packets_received"], 3);
        assert_eq!(j["sinks"][0]["errors"], 2);
        assert_eq!(j["sinks"][0]["connected"], false);
        assert_eq!(j["sinks"][0]["last_error"], "connect failed: refused");
        assert_eq!(j["listeners"][0]["lines"], 3);
        assert_eq!(j["listeners"][0]["negative_timer"], 1);
        assert_eq!(j["last_reload_ok"], true);
        assert_eq!(j["sinks"][0]["spool"]["held_entries"], 0);
        assert_eq!(j["prometheus"]["active"], false);
        assert_eq!(j["task_restarts"]["sink/graphite"], 2);
        let g = graphite(&stats);
        let get = |n: &str| g.iter().find(|(k, ..)| k == n).map(|(_, v, _)| *v);
        assert_eq!(get("series_dropped"), Some(5));
        assert_eq!(get("task_restarts"), Some(2));
        assert_eq!(get("udp.127_0_0_1_8125.kernel_drops"), Some(0));
        assert_eq!(get("series_dropped_prefix.app__x_"), Some(2));
        assert_eq!(get("packets_received"), None);
        assert_eq!(get("sinks.graphite_\"a\".errors"), Some(2));
        assert_eq!(get("sinks.graphite_\"a\".retries"), Some(0));
        assert_eq!(get("sinks.graphite_\"a\".spool.held_entries"), Some(0));
        let mut a = String::new();
        admin(&stats, &mut a);
        assert!(a.contains("graphite \"a\".errors: 2\n"), "{a}");
    }

    #[test]
    fn relay_families_have_headers_and_labels() {
        use std::sync::atomic::Ordering;
        let r = RelayStats::new(["10.0.0.1:2004:a".to_string()]);
        r.metrics_received.store(7, Ordering::Relaxed);
        r.invalid_nan_inf.store(2, Ordering::Relaxed);
        r.destinations[0].up.store(1, Ordering::Relaxed);
        let stats = Stats::new();
        stats.set_relay(std::sync::Arc::new(r));
        let mut out = Vec::new();
        prometheus(&stats, None, &mut out);
        let s = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE statsyard_relay_points_received_total counter",
            "statsyard_relay_points_received_total 7",
            "statsyard_relay_points_invalid_total{reason=\"nan_inf\"} 2",
            "# TYPE statsyard_relay_destination_up gauge",
            "statsyard_relay_destination_up{destination=\"10.0.0.1:2004:a\"} 1",
            "statsyard_relay_destination_spool_entries{destination=\"10.0.0.1:2004:a\"} 0",
        ] {
            assert!(s.lines().any(|l| l == line), "{line} missing in\n{s}");
        }
        assert_eq!(
            s.matches("# TYPE statsyard_relay_points_invalid_total")
                .count(),
            1
        );
        assert_eq!(
            s.matches("# TYPE statsyard_relay_destination_up").count(),
            1
        );
        let names: Vec<String> = relay_values(&stats.relay().unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"destinations.10_0_0_1_2004_a.sent".to_string()));
        assert!(names.contains(&"metricsReceived".to_string()));
        assert!(names.contains(&"metricsInvalid.nanInf".to_string()));
        assert!(!names.contains(&"connections".to_string()));
    }
}

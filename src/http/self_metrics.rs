//! statsyard's own metrics, under `statsyard_`, in the text exposition format.
//!
//! They are rendered straight from the [`Stats`] atomics at scrape time, so
//! they never wait for a flush and never conflict with client metrics: the
//! names are fixed, and a client metric that happens to use one of them is
//! still served (Prometheus then sees both; keep client names out of
//! `statsyard_`).

use std::fmt::Write as _;

use crate::http::prometheus::live::PromStats;
use crate::http::prometheus::push_help;
use crate::stats::{get, Stats};

/// One family: name (without `statsyard_`), type, help.
struct Fam<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

fn header(s: &mut String, f: &Fam<'_>) {
    let name = format!("statsyard_{}", f.name);
    push_help(s, &name, f.help);
    let _ = writeln!(s, "# TYPE {name} {}", f.kind);
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn plain(s: &mut String, f: Fam, v: f64) {
    header(s, &f);
    let _ = writeln!(s, "statsyard_{} {}", f.name, number(v));
}

fn number(v: f64) -> String {
    if v.is_finite() {
        ryu_js::Buffer::new().format(v).to_string()
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// statsyard's own metrics under `statsyard_` in the text format.
pub fn render(stats: &Stats, exporter: Option<&PromStats>, out: &mut Vec<u8>) {
    let mut s = String::new();
    let counters: &[(&str, &str, &std::sync::atomic::AtomicU64)] = &[
        (
            "packets_received_total",
            "UDP datagrams and stream reads holding at least one full line.",
            &stats.packets_received,
        ),
        (
            "lines_received_total",
            "Non-empty statsd lines received (the reference's metrics_received).",
            &stats.metrics_received,
        ),
        (
            "bad_lines_total",
            "Lines or values rejected by the parser (the reference's bad_lines_seen).",
            &stats.bad_lines_seen,
        ),
        (
            "http_client_errors_total",
            "HTTP answers with a 4xx status, and HTTP connections closed unanswered after sending garbage.",
            &stats.http_client_errors,
        ),
        (
            "http_connections_rejected_total",
            "HTTP connections closed at once because 1024 were open.",
            &stats.http_connections_rejected,
        ),
        (
            "admin_auth_failures_total",
            "Admin console commands and POST /-/reload refused for a missing or wrong token.",
            &stats.admin_auth_failures,
        ),
        (
            "lines_too_long_total",
            "Stream lines longer than max_line_length, dropped.",
            &stats.lines_too_long,
        ),
        (
            "connections_accepted_total",
            "Stream connections accepted.",
            &stats.connections_accepted,
        ),
        (
            "connections_rejected_total",
            "Stream connections refused because max_connections were open.",
            &stats.connections_rejected,
        ),
        (
            "raw_dropped_total",
            "Raw packets dropped because a raw sink's queue was full.",
            &stats.raw_dropped,
        ),
        ("flushes_total", "Flushes done.", &stats.flushes),
        (
            "series_dropped_total",
            "Values dropped because they would have created a new series past max_series or a series_limits prefix.",
            &stats.series_dropped,
        ),
        (
            "too_many_tags_total",
            "Lines with more than max_tags tags, dropped (also in bad_lines_total).",
            &stats.too_many_tags,
        ),
        (
            "connections_idle_closed_total",
            "Stream connections closed because they sent nothing for idle_timeout.",
            &stats.connections_idle_closed,
        ),
        (
            "admin_errors_total",
            "Admin console lines answered with ERROR (unknown commands, bad arguments, overlong lines).",
            &stats.admin_errors,
        ),
    ];
    for (name, help, c) in counters {
        plain(
            &mut s,
            Fam {
                name,
                kind: "counter",
                help,
            },
            get(c) as f64,
        );
    }
    plain(
        &mut s,
        Fam {
            name: "connections_open",
            kind: "gauge",
            help: "Stream connections open now.",
        },
        get(&stats.connections_open) as f64,
    );
    plain(
        &mut s,
        Fam {
            name: "series_live",
            kind: "gauge",
            help: "Series counted against max_series and series_limits, as of the last flush (0 without limits).",
        },
        get(&stats.series_live) as f64,
    );
    plain(
        &mut s,
        Fam {
            name: "flush_duration_seconds",
            kind: "gauge",
            help: "How long the last flush's compute took.",
        },
        get(&stats.last_flush_micros) as f64 / 1e6,
    );

    plain(
        &mut s,
        Fam {
            name: "start_time_seconds",
            kind: "gauge",
            help: "When statsyard started, in Unix seconds.",
        },
        get(&stats.started_unix) as f64,
    );
    plain(
        &mut s,
        Fam {
            name: "last_message_seen_seconds",
            kind: "gauge",
            help: "When lines last arrived, in Unix seconds, to within one flush interval.",
        },
        get(&stats.last_msg_seen) as f64,
    );

    let by_prefix = stats.series_dropped_by_prefix();
    if !by_prefix.is_empty() {
        header(
            &mut s,
            &Fam {
                name: "series_dropped_by_prefix_total",
                kind: "counter",
                help: "Values dropped because their series_limits prefix was full, per prefix.",
            },
        );
        for (prefix, n) in &by_prefix {
            let _ = writeln!(
                s,
                "statsyard_series_dropped_by_prefix_total{{prefix=\"{}\"}} {n}",
                label_value(prefix)
            );
        }
    }

    let sockets = stats.udp_sockets();
    if !sockets.is_empty() {
        header(
            &mut s,
            &Fam {
                name: "kernel_drops_total",
                kind: "counter",
                help: "Datagrams the kernel dropped on a UDP socket because its receive buffer was full.",
            },
        );
        for sock in &sockets {
            let _ = writeln!(
                s,
                "statsyard_kernel_drops_total{{socket=\"{}\"}} {}",
                label_value(&sock.addr.to_string()),
                get(&sock.kernel_drops)
            );
        }
    }

    let sinks = stats.sinks();
    if !sinks.is_empty() {
        type Field = fn(&crate::stats::SinkStats) -> u64;
        let per_sink: [(&str, &str, &str, Field); 7] = [
            (
                "sink_errors_total",
                "counter",
                "Connect or write failures of a sink.",
                |k| get(&k.errors),
            ),
            (
                "sink_queue_dropped_total",
                "counter",
                "Messages dropped because a sink's queue was full.",
                |k| get(&k.queue_dropped),
            ),
            (
                "sink_dropped_total",
                "counter",
                "Flushes or raw packets a sink discarded (buffer bound, shutdown deadline).",
                |k| get(&k.dropped),
            ),
            (
                "sink_flushes_total",
                "counter",
                "Flushes a sink wrote out completely.",
                |k| get(&k.flushes_sent),
            ),
            (
                "sink_lines_total",
                "counter",
                "Metric lines or raw packets a sink wrote.",
                |k| get(&k.lines_sent),
            ),
            ("sink_bytes_total", "counter", "Bytes a sink wrote.", |k| {
                get(&k.bytes_sent)
            }),
            (
                "sink_buffered_bytes",
                "gauge",
                "Bytes a sink holds in memory, waiting for its destination (its queue depth).",
                |k| get(&k.buffered_bytes),
            ),
        ];
        let rows = per_sink.iter().map(|&(name, kind, help, field)| {
            let values: Vec<u64> = sinks.iter().map(|k| field(k)).collect();
            (name.to_string(), kind, help, values)
        });
        // The spool's families, shared with the relay destinations'.
        let spool = crate::spool::SPOOL_METRICS.iter().map(|m| {
            let values: Vec<u64> = sinks.iter().map(|k| (m.value)(&k.spool)).collect();
            (format!("sink_spool_{}", m.name), m.kind, m.help, values)
        });
        for (name, kind, help, values) in rows.chain(spool) {
            header(
                &mut s,
                &Fam {
                    name: &name,
                    kind,
                    help,
                },
            );
            for (k, v) in sinks.iter().zip(values) {
                let _ = writeln!(
                    s,
                    "statsyard_{name}{{sink=\"{}\"}} {v}",
                    label_value(&k.name),
                );
            }
        }
    }

    let tasks = stats.tasks();
    if !tasks.is_empty() {
        header(
            &mut s,
            &Fam {
                name: "task_restarts_total",
                kind: "counter",
                help: "Panics and failures of a supervised task that it was restarted after (or, for UDP receive threads and the flusher, that abandoned one datagram, flush or job).",
            },
        );
        for t in &tasks {
            let _ = writeln!(
                s,
                "statsyard_task_restarts_total{{task=\"{}\"}} {}",
                label_value(&t.name),
                get(&t.restarts)
            );
        }
    }

    if let Some(e) = exporter {
        plain(
            &mut s,
            Fam {
                name: "prometheus_active",
                kind: "gauge",
                help: "1 while the exporter observes flushes (/metrics was requested within idle_timeout).",
            },
            if e.active { 1.0 } else { 0.0 },
        );
        plain(
            &mut s,
            Fam {
                name: "prometheus_observe_seconds",
                kind: "gauge",
                help: "How long the exporter took to take in the last flush.",
            },
            e.observe_micros as f64 / 1e6,
        );
        plain(
            &mut s,
            Fam {
                name: "prometheus_render_seconds",
                kind: "gauge",
                help: "How long rendering the client series took at the last flush.",
            },
            e.render_micros as f64 / 1e6,
        );
        plain(
            &mut s,
            Fam {
                name: "prometheus_series",
                kind: "gauge",
                help: "Series exported on /metrics (a summary or histogram counts once).",
            },
            e.series as f64,
        );
        plain(
            &mut s,
            Fam {
                name: "prometheus_conflicts_total",
                kind: "counter",
                help: "Series dropped because their name is used by another type or other label names.",
            },
            e.conflicts as f64,
        );
        plain(
            &mut s,
            Fam {
                name: "prometheus_over_limit_total",
                kind: "counter",
                help: "Series dropped because max_series were exported.",
            },
            e.over_limit as f64,
        );
    }
    if let Some(relay) = stats.relay() {
        crate::http::relay_metrics::render(&relay, &mut s);
    }
    out.extend_from_slice(s.as_bytes());
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
        stats.udp_socket("127.0.0.1:8125".parse().unwrap(), None);
        incr(&stats.task("sink/graphite").restarts, 2);
        let mut out = Vec::new();
        render(&stats, Some(&PromStats::default()), &mut out);
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
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }
}

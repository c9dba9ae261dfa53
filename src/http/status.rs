//! The status page (`GET /`), what a person opens first when something
//! looks wrong, and its data (`GET /api/status`).
//!
//! The page is rendered on the server, so that it shows the numbers of the
//! moment it was loaded with JavaScript off; a little plain JavaScript
//! (`status.js`, in the binary like the stylesheet: nothing is fetched from
//! elsewhere) then polls `/api/status` and redraws it. To keep one renderer,
//! `/api/status` carries, next to its structured data, the page's view: the
//! header line, the chart's points and every section as a table of text
//! cells, formatted here. The script only puts them in place.
//!
//! What it shows: uptime, version and health; ingest per listener
//! (lines/s and packets/s over the last flush, bad lines by reason, kernel
//! drops); live series against `max_series` and what the limits dropped;
//! the top series by lines; every output's state; the relay's destinations;
//! the flush; the last reload; the config in effect; and lines/s over the
//! last flushes ([`crate::stats::history`]).
//!
//! Imports, besides `http` itself: `front`, `stats`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::front::{Front, Settings};
use crate::stats::history::Sample;
use crate::stats::listener::BAD_REASONS;
use crate::stats::prometheus::PromStats;
use crate::stats::{get, unix_now, Stats};

const CSS: &str = include_str!("status.css");
const JS: &str = include_str!("status.js");

/// How often the page polls `/api/status`, in milliseconds.
pub const POLL_MS: u64 = 2000;

/// The top series shown.
const TOP: usize = 10;

/// `GET /`: the status page.
pub async fn page(State(front): State<Arc<Front>>) -> Response {
    let status = gather(&front).await;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html(&status),
    )
        .into_response()
}

/// `GET /api/status`: the status page's data and view, as JSON.
pub async fn api(State(front): State<Arc<Front>>) -> Response {
    let status = gather(&front).await;
    ([(header::CACHE_CONTROL, "no-store")], Json(status)).into_response()
}

/// One table cell: its text, and a class (`ok`, `bad`, `warn`, `num`).
fn cell(text: impl Into<String>, class: &str) -> Value {
    json!([text.into(), class])
}

/// A right-aligned number cell.
fn num(text: impl Into<String>) -> Value {
    cell(text, "num")
}

/// A section of the page: a titled table.
fn section(id: &str, title: &str, columns: &[&str], rows: Vec<Vec<Value>>, empty: &str) -> Value {
    json!({
        "id": id,
        "title": title,
        "columns": columns,
        "rows": rows,
        "empty": empty,
    })
}

/// `1234567` → `1,234,567`.
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, with one decimal under 100.
fn rate(r: f64) -> String {
    if r >= 100.0 {
        int(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `12s ago` for a Unix time; `never` for 0.
fn ago(unix: u64, now: u64) -> String {
    if unix == 0 {
        "never".into()
    } else {
        format!("{} ago", span(now.saturating_sub(unix)))
    }
}

/// Per listener: the Ingest section's rows and the listeners' data.
fn ingest(stats: &Stats, last_two: Option<(&Sample, &Sample)>) -> (Vec<Vec<Value>>, Vec<Value>) {
    let udp = stats.udp_sockets();
    let mut ingest_rows = Vec::new();
    let mut listeners = Vec::new();
    for l in stats.listeners() {
        let name = l.name();
        let (lps, pps) = last_two
            .and_then(|(now, before)| now.listener_rates(before, &name))
            .unwrap_or((0.0, 0.0));
        let drops = (l.proto == "udp").then(|| {
            udp.iter()
                .filter(|u| u.addr.to_string() == l.addr)
                .map(|u| get(&u.kernel_drops))
                .sum::<u64>()
        });
        let reasons: Vec<(&str, u64)> = BAD_REASONS
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, l.bad(i)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let bad = l.bad_total();
        let bad_text = if reasons.is_empty() {
            "0".to_string()
        } else {
            let by: Vec<String> = reasons
                .iter()
                .map(|(r, n)| format!("{r} {}", int(*n)))
                .collect();
            format!("{} ({})", int(bad), by.join(", "))
        };
        ingest_rows.push(vec![
            json!(name),
            num(rate(lps)),
            num(rate(pps)),
            num(int(l.lines())),
            cell(bad_text, if bad > 0 { "warn" } else { "num" }),
            match drops {
                Some(0) => num("0"),
                Some(n) => cell(int(n), "bad"),
                None => num("-"),
            },
        ]);
        listeners.push(json!({
            "name": name,
            "proto": l.proto,
            "address": l.addr,
            "lines": l.lines(),
            "packets": l.packets(),
            "lines_per_second": lps,
            "packets_per_second": pps,
            "bad_lines": reasons.iter().map(|(r, n)| (r.to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "kernel_drops": drops,
        }));
    }
    (ingest_rows, listeners)
}

/// The Series section: live series against the limits, and what they dropped.
fn series(stats: &Stats, settings: &Settings, prom: Option<&PromStats>) -> Vec<Vec<Value>> {
    let live = get(&stats.series_live);
    let max = settings.max_series;
    let dropped = get(&stats.series_dropped);
    let mut series_rows = vec![vec![
        json!("live series"),
        cell(
            if max == 0 {
                format!("{} (no max_series)", int(live))
            } else {
                format!(
                    "{} of {} ({:.1}%)",
                    int(live),
                    int(max as u64),
                    live as f64 * 100.0 / max as f64
                )
            },
            if max > 0 && live * 10 >= max as u64 * 9 {
                "warn"
            } else {
                "num"
            },
        ),
    ]];
    series_rows.push(vec![
        json!("dropped by series limits"),
        cell(int(dropped), if dropped > 0 { "bad" } else { "num" }),
    ]);
    for (prefix, n) in stats.series_dropped_by_prefix() {
        let limit = settings
            .series_limits
            .iter()
            .find(|(p, _)| *p == prefix)
            .map_or(String::new(), |(_, m)| format!(" (max {})", int(*m as u64)));
        series_rows.push(vec![
            json!(format!("dropped under {prefix:?}{limit}")),
            cell(int(n), "bad"),
        ]);
    }
    let too_many_tags = get(&stats.too_many_tags);
    series_rows.push(vec![
        json!("lines over max_tags"),
        cell(
            int(too_many_tags),
            if too_many_tags > 0 { "warn" } else { "num" },
        ),
    ]);
    if let Some(p) = prom {
        series_rows.push(vec![
            json!("on /metrics"),
            json!(if p.active {
                format!(
                    "{} exported; {} over its max_series, {} conflicts",
                    int(p.series as u64),
                    int(p.over_limit),
                    int(p.conflicts)
                )
            } else {
                "idle: not scraped lately".to_string()
            }),
        ]);
    }

    series_rows
}

/// The top series of the last complete interval: rows, data, and what to
/// say when there are none.
async fn top(front: &Front, window: f64) -> (Vec<Vec<Value>>, Vec<Value>, String) {
    match super::api::hottest(front, TOP).await {
        Ok(hot) => (
            hot.iter()
                .map(|h| {
                    vec![
                        json!(h.key.to_string_lossy()),
                        json!(h.kind.as_str()),
                        num(int(h.hits)),
                        num(rate(h.hits as f64 / window)),
                    ]
                })
                .collect(),
            hot.iter()
                .map(|h| super::api::hot_json(h, window))
                .collect::<Vec<_>>(),
            "no lines in the last complete interval".to_string(),
        ),
        Err(e) => (Vec::new(), Vec::new(), e.to_string()),
    }
}

/// Every output's state: rows and data.
fn outputs(stats: &Stats, prom: Option<&PromStats>, now: u64) -> (Vec<Vec<Value>>, Vec<Value>) {
    let mut output_rows = Vec::new();
    let mut outputs = Vec::new();
    for k in stats.sinks() {
        let connected = get(&k.connected) != 0;
        let last_flush = get(&k.last_flush_unix);
        let last_error = k.last_error();
        let last_error_unix = get(&k.last_error_unix);
        let state = if connected {
            cell("connected", "ok")
        } else if last_error_unix == 0 && last_flush == 0 {
            cell("not yet", "warn")
        } else {
            cell("not connected", "bad")
        };
        let error = if last_error.is_empty() {
            json!("-")
        } else {
            cell(
                format!("{last_error} ({})", ago(last_error_unix, now)),
                "bad",
            )
        };
        let dropped = get(&k.queue_dropped) + get(&k.dropped);
        output_rows.push(vec![
            json!(k.name),
            state,
            json!(ago(last_flush, now)),
            error,
            num(int(get(&k.buffered_bytes))),
            num(int(get(&k.spool.held_bytes))),
            num(int(get(&k.lines_sent))),
            cell(int(dropped), if dropped > 0 { "bad" } else { "num" }),
        ]);
        outputs.push(json!({
            "name": k.name,
            "connected": connected,
            "last_flush_unix": last_flush,
            "last_error": last_error,
            "last_error_unix": last_error_unix,
            "queued_bytes": get(&k.buffered_bytes),
            "spool_bytes": get(&k.spool.held_bytes),
            "lines_sent": get(&k.lines_sent),
            "dropped": dropped,
        }));
    }
    if let Some(p) = prom {
        output_rows.push(vec![
            json!("/metrics (prometheus)"),
            if p.active {
                cell("serving", "ok")
            } else {
                cell("idle", "warn")
            },
            json!("-"),
            json!("-"),
            num("-"),
            num("-"),
            num(format!("{} series", int(p.series as u64))),
            cell(
                int(p.over_limit + p.conflicts),
                if p.over_limit + p.conflicts > 0 {
                    "warn"
                } else {
                    "num"
                },
            ),
        ]);
    }

    (output_rows, outputs)
}

/// The relay's destinations, when a relay runs.
fn relay(stats: &Stats) -> Option<Vec<Vec<Value>>> {
    let relay = stats.relay()?;
    let rows = relay
        .destinations
        .iter()
        .map(|d| {
            let up = get(&d.up) != 0;
            vec![
                json!(d.name),
                if up {
                    cell("up", "ok")
                } else {
                    cell("down", "bad")
                },
                num(int(get(&d.queued))),
                num(int(get(&d.sent))),
                cell(
                    int(get(&d.dropped)),
                    if get(&d.dropped) > 0 { "bad" } else { "num" },
                ),
                num(int(get(&d.errors))),
                num(int(get(&d.spool.held_bytes))),
            ]
        })
        .collect();

    Some(rows)
}

/// The Last reload section.
fn reload(stats: &Stats, now: u64) -> Vec<Vec<Value>> {
    let reload_unix = get(&stats.last_reload_unix);
    let reload_ok = get(&stats.last_reload_ok) != 0;
    if reload_unix == 0 {
        Vec::new()
    } else {
        vec![
            vec![json!("when"), json!(ago(reload_unix, now))],
            vec![
                json!("result"),
                if reload_ok {
                    cell("applied", "ok")
                } else {
                    cell("refused: the old config keeps running", "bad")
                },
            ],
            vec![json!("detail"), json!(stats.last_reload_message())],
            vec![
                json!("reloads / refused"),
                json!(format!(
                    "{} / {}",
                    int(get(&stats.reloads)),
                    int(get(&stats.reload_failures))
                )),
            ],
        ]
    }
}

/// Everything the page shows, gathered now.
async fn gather(front: &Front) -> Value {
    let stats = &front.stats;
    let settings = front.settings();
    let now = unix_now();
    let uptime = now.saturating_sub(get(&stats.started_unix));
    let history = stats.history.samples();
    let last_two = match history.as_slice() {
        [.., a, b] => Some((b, a)),
        _ => None,
    };
    let (ingest_rows, listeners) = ingest(stats, last_two);
    let (lps, pps) = last_two.map_or((0.0, 0.0), |(now, before)| {
        (now.lines_per_second(before), now.packets_per_second(before))
    });
    let prom = front.scrape().map(|l| l.rendered().stats);
    let series_rows = series(stats, &settings, prom.as_ref());
    let window = settings.interval.as_secs_f64();
    let (top_rows, top_json, top_empty) = top(front, window).await;
    let (output_rows, outputs) = outputs(stats, prom.as_ref(), now);
    let relay_rows = relay(stats);
    let live = get(&stats.series_live);
    let last_flush_ms = history.last().map_or(0, |s| s.unix_ms);
    let flush_rows = vec![
        vec![json!("interval"), num(format!("{window}s"))],
        vec![json!("last flush"), num(ago(last_flush_ms / 1000, now))],
        vec![
            json!("last flush took"),
            num(format!(
                "{:.1} ms",
                get(&stats.last_flush_micros) as f64 / 1000.0
            )),
        ],
        vec![json!("flushes"), num(int(get(&stats.flushes)))],
    ];
    let reload_unix = get(&stats.last_reload_unix);
    let reload_ok = get(&stats.last_reload_ok) != 0;
    let reload_rows = reload(stats, now);
    let config_rows: Vec<Vec<Value>> = settings
        .config_lines
        .iter()
        .map(|l| match l.split_once(": ") {
            Some((k, v)) => vec![json!(k), json!(v)],
            None => vec![json!(l), json!("")],
        })
        .collect();

    let mut sections = vec![
        section(
            "ingest",
            "Ingest",
            &[
                "listener",
                "lines/s",
                "packets/s",
                "lines",
                "bad lines",
                "kernel drops",
            ],
            ingest_rows,
            "no statsd listener",
        ),
        section("series", "Series", &["", ""], series_rows, ""),
        section(
            "top",
            &format!("Top series (last {window}s interval)"),
            &["series", "type", "lines", "lines/s"],
            top_rows,
            &top_empty,
        ),
        section(
            "outputs",
            "Outputs",
            &[
                "output",
                "state",
                "last flush",
                "last error",
                "queued bytes",
                "spool bytes",
                "lines sent",
                "dropped",
            ],
            output_rows,
            "no output",
        ),
    ];
    if let Some(relay_rows) = relay_rows {
        sections.push(section(
            "relay",
            "Relay destinations",
            &[
                "destination",
                "state",
                "queued",
                "sent",
                "dropped",
                "errors",
                "spool bytes",
            ],
            relay_rows,
            "no destination",
        ));
    }
    sections.push(section("flush", "Flush", &["", ""], flush_rows, ""));
    sections.push(section(
        "reload",
        "Last reload",
        &["", ""],
        reload_rows,
        "none since start (SIGHUP or POST /-/reload)",
    ));
    sections.push(section(
        "config",
        "Config in effect",
        &["key", "value"],
        config_rows,
        "",
    ));

    let summary = format!(
        "statsyard {} · up {} · health {} · {} lines/s · {} series",
        env!("CARGO_PKG_VERSION"),
        span(uptime),
        front.health.as_str(),
        rate(lps),
        int(live),
    );
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime,
        "health": front.health.as_str(),
        "lines_per_second": lps,
        "packets_per_second": pps,
        "listeners": listeners,
        "series": {
            "live": live,
            "max_series": settings.max_series,
            "dropped": get(&stats.series_dropped),
            "too_many_tags": get(&stats.too_many_tags),
        },
        "top": top_json,
        "outputs": outputs,
        "flush": {
            "interval_seconds": window,
            "last_unix_ms": last_flush_ms,
            "last_duration_seconds": get(&stats.last_flush_micros) as f64 / 1e6,
        },
        "reload": {
            "last_unix": reload_unix,
            "ok": reload_ok,
            "message": stats.last_reload_message(),
        },
        "history": history.iter().map(|s| json!([s.unix_ms, s.lines])).collect::<Vec<_>>(),
        "view": {
            "summary": summary,
            "poll_ms": POLL_MS,
            "chart": chart(&history),
            "sections": sections,
        },
    })
}

/// The chart's view: an SVG polyline of lines/s over the samples, in a
/// 600 × 100 box, and its labels.
fn chart(history: &[Sample]) -> Value {
    let rates: Vec<(u64, f64)> = history
        .windows(2)
        .map(|w| (w[1].unix_ms, w[1].lines_per_second(&w[0])))
        .collect();
    let (Some(first), Some(last)) = (rates.first(), rates.last()) else {
        return json!({
            "points": "",
            "max": "",
            "span": "lines/s: after two flushes",
        });
    };
    let max = rates.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let t0 = first.0;
    let dt = (last.0 - t0).max(1) as f64;
    let mut points = String::new();
    for (t, r) in &rates {
        let y = 100.0 - r / max * 95.0;
        if rates.len() == 1 {
            // One rate: a level line across.
            let _ = write!(points, "0.0,{y:.1} 600.0,{y:.1}");
            break;
        }
        let x = (t - t0) as f64 / dt * 600.0;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    json!({
        "points": points.trim_end(),
        "max": format!("{} lines/s", rate(max)),
        "span": format!("lines/s, last {}", span(dt as u64 / 1000)),
    })
}

/// `text` with `&`, `<`, `>` and `"` escaped for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// One section as HTML, the same markup `status.js` builds.
fn section_html(out: &mut String, s: &Value) {
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let _ = write!(
        out,
        "<section id=\"s-{}\"><h2>{}</h2>",
        esc(&str_of(&s["id"])),
        esc(&str_of(&s["title"]))
    );
    let rows = s["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        let _ = write!(
            out,
            "<p class=\"empty\">{}</p></section>",
            esc(&str_of(&s["empty"]))
        );
        return;
    }
    out.push_str("<div class=\"scroll\"><table>");
    let columns = s["columns"].as_array().cloned().unwrap_or_default();
    if columns
        .iter()
        .any(|c| c.as_str().is_some_and(|c| !c.is_empty()))
    {
        out.push_str("<thead><tr>");
        for (i, c) in columns.iter().enumerate() {
            // A column of numbers is aligned as its first row is.
            if rows[0][i][1] == "num" {
                let _ = write!(out, "<th class=\"num\">{}</th>", esc(&str_of(c)));
            } else {
                let _ = write!(out, "<th>{}</th>", esc(&str_of(c)));
            }
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>");
    for row in &rows {
        out.push_str("<tr>");
        for c in row.as_array().into_iter().flatten() {
            match c {
                Value::Array(tc) => {
                    let _ = write!(
                        out,
                        "<td class=\"{}\">{}</td>",
                        esc(&str_of(&tc[1])),
                        esc(&str_of(&tc[0]))
                    );
                }
                other => {
                    let _ = write!(out, "<td>{}</td>", esc(&str_of(other)));
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

/// The whole page, with the numbers of `status`.
fn html(status: &Value) -> String {
    let view = &status["view"];
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>statsyard status</title><style>{CSS}</style></head>\
         <body data-polls=\"0\"><header><h1>statsyard</h1>\
         <p id=\"summary\">{}</p><p id=\"conn\" class=\"muted\">as of page load; \
         refreshed every {}s with JavaScript</p></header>",
        esc(view["summary"].as_str().unwrap_or_default()),
        POLL_MS / 1000
    );
    let chart = &view["chart"];
    let _ = write!(
        out,
        "<figure id=\"chart\"><svg viewBox=\"0 0 600 100\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"lines per second\"><polyline id=\"chart-line\" \
         points=\"{}\"/></svg><figcaption><span id=\"chart-span\">{}</span> \
         <span id=\"chart-max\">{}</span></figcaption></figure><main id=\"sections\">",
        esc(chart["points"].as_str().unwrap_or_default()),
        esc(chart["span"].as_str().unwrap_or_default()),
        esc(chart["max"].as_str().unwrap_or_default()),
    );
    for s in view["sections"].as_array().into_iter().flatten() {
        section_html(&mut out, s);
    }
    let _ = writeln!(
        out,
        "</main><footer>JSON: <a href=\"/api/status\">/api/status</a> · \
         <a href=\"/api/stats\">/api/stats</a> · <a href=\"/metrics\">/metrics</a></footer>\
         <script>{JS}</script></body></html>"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(rate(3.16), "3.2");
        assert_eq!(rate(1234.6), "1,235");
        assert_eq!(span(12), "12s");
        assert_eq!(span(250), "4m 10s");
        assert_eq!(span(7500), "2h 5m");
        assert_eq!(span(3 * 86400 + 4 * 3600), "3d 4h");
        assert_eq!(ago(0, 100), "never");
        assert_eq!(ago(90, 100), "10s ago");
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn sections_render_escaped() {
        let s = section(
            "t",
            "T<1>",
            &["a", "b"],
            vec![vec![json!("<script>"), cell("1", "num")]],
            "",
        );
        let mut out = String::new();
        section_html(&mut out, &s);
        assert_eq!(
            out,
            "<section id=\"s-t\"><h2>T&lt;1&gt;</h2><div class=\"scroll\"><table><thead><tr>\
             <th>a</th><th class=\"num\">b</th></tr></thead><tbody><tr><td>&lt;script&gt;</td>\
             <td class=\"num\">1</td></tr></tbody></table></div></section>"
        );
        let empty = section("e", "E", &["", ""], Vec::new(), "nothing");
        let mut out = String::new();
        section_html(&mut out, &empty);
        assert!(out.contains("<p class=\"empty\">nothing</p>"), "{out}");
    }

    #[test]
    fn chart_points() {
        let at = |ms: u64, lines: u64| Sample {
            unix_ms: ms,
            lines,
            packets: 0,
            bad: 0,
            listeners: Vec::new(),
        };
        assert_eq!(chart(&[at(0, 0)])["points"], "");
        assert_eq!(
            chart(&[at(0, 0), at(1000, 10)])["points"],
            "0.0,5.0 600.0,5.0"
        );
        let c = chart(&[at(0, 0), at(10_000, 100), at(20_000, 300)]);
        // 10/s then 20/s: the highest at the top (y 5), the first at half.
        assert_eq!(c["points"], "0.0,52.5 600.0,5.0");
        assert_eq!(c["max"], "20.0 lines/s");
        assert_eq!(c["span"], "lines/s, last 10s");
    }
}

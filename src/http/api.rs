//! The HTTP API's handlers: `/health`, `/api/stats`, `/api/series`,
//! `/api/top` and `/metrics`. See docs/http.md for the shapes.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{self_metrics, Shared};
use crate::aggregate::TOP_KEPT;
use crate::flush::flusher::FlusherBusy;
use crate::metric::MetricType;
use crate::stats::{get, incr, unix_now};

/// `/api/series` without `limit`.
pub const DEFAULT_SERIES_LIMIT: usize = 1000;
/// The largest `limit` `/api/series` accepts.
pub const MAX_SERIES_LIMIT: usize = 100_000;
/// `/api/top` without `n`.
pub const DEFAULT_TOP: usize = 10;

/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A 4xx/5xx answer with a JSON `{"error": ...}` body.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn busy(e: FlusherBusy) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// `/health`: 200 `up` or 503 `down`, following the admin `health` state.
pub async fn health(State(s): State<Shared>) -> Response {
    if s.health.is_up() {
        (StatusCode::OK, "up\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "down\n").into_response()
    }
}

/// `/metrics`: every exported series, then statsyard's own under `statsyard_`.
///
/// Served from the text rendered at the last flush. Before the first flush,
/// or after `idle_timeout` freed the exporter, the request asks the flusher
/// for a rendering (and a new exporter) and waits for it.
pub async fn metrics(State(s): State<Shared>) -> Response {
    s.exporter.scraped();
    let mut rendered = s.exporter.rendered();
    if !rendered.stats.active {
        let live = s.exporter.clone();
        match s.flusher.run(move |reg| live.activate(reg)).await {
            Ok(r) => rendered = r,
            // Served without client series; the next scrape tries again.
            Err(e) => tracing::debug!(error = %e, "prometheus: could not activate the exporter"),
        }
    }
    let mut own = Vec::with_capacity(8 * 1024);
    self_metrics::render(&s.stats, Some(&rendered.stats), &mut own);
    let text = rendered.text.clone();
    drop(rendered);
    let body = if text.len() < 1 << 20 {
        join(&text, &own)
    } else {
        // Copying a large exposition takes milliseconds: not on a worker
        // that other connections need.
        match tokio::task::spawn_blocking(move || join(&text, &own)).await {
            Ok(body) => body,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "render failed"),
        }
    };
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}

/// The client series, then statsyard's own: one body.
fn join(text: &[u8], own: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + own.len());
    out.extend_from_slice(text);
    out.extend_from_slice(own);
    out
}

/// A spool's counters (all zero without a spool).
pub fn spool_json(s: &crate::spool::SpoolStats) -> Value {
    json!({
        "spooled_entries": get(&s.spooled_entries),
        "spooled_bytes": get(&s.spooled_bytes),
        "replayed_entries": get(&s.replayed_entries),
        "replayed_bytes": get(&s.replayed_bytes),
        "dropped_entries": get(&s.dropped_entries),
        "dropped_bytes": get(&s.dropped_bytes),
        "corrupt_records": get(&s.corrupt_records),
        "held_entries": get(&s.held_entries),
        "held_bytes": get(&s.held_bytes),
    })
}

/// `/api/stats`: the self-metrics as JSON.
pub async fn stats(State(s): State<Shared>) -> Json<Value> {
    let st = &s.stats;
    let now = unix_now();
    let prom = s.exporter.rendered().stats;
    let sinks: Vec<Value> = st
        .sinks()
        .iter()
        .map(|k| {
            json!({
                "name": k.name,
                "flushes_sent": get(&k.flushes_sent),
                "lines_sent": get(&k.lines_sent),
                "bytes_sent": get(&k.bytes_sent),
                "errors": get(&k.errors),
                "dropped": get(&k.dropped),
                "queue_dropped": get(&k.queue_dropped),
                "buffered_bytes": get(&k.buffered_bytes),
                "spool": spool_json(&k.spool),
            })
        })
        .collect();
    let udp: Vec<Value> = st
        .udp_sockets()
        .iter()
        .map(|u| json!({ "address": u.addr.to_string(), "kernel_drops": get(&u.kernel_drops) }))
        .collect();
    let tasks: serde_json::Map<String, Value> = st
        .tasks()
        .iter()
        .map(|t| (t.name.clone(), json!(get(&t.restarts))))
        .collect();
    let by_prefix: serde_json::Map<String, Value> = st
        .series_dropped_by_prefix()
        .into_iter()
        .map(|(p, n)| (p, n.into()))
        .collect();
    let mut body = json!({
        "uptime_seconds": now.saturating_sub(get(&st.started_unix)),
        "health": s.health.as_str(),
        "packets_received": get(&st.packets_received),
        "metrics_received": get(&st.metrics_received),
        "bad_lines_seen": get(&st.bad_lines_seen),
        "last_msg_seen": get(&st.last_msg_seen),
        "lines_too_long": get(&st.lines_too_long),
        "connections_accepted": get(&st.connections_accepted),
        "connections_rejected": get(&st.connections_rejected),
        "connections_open": get(&st.connections_open),
        "raw_dropped": get(&st.raw_dropped),
        "flushes": get(&st.flushes),
        "reloads": get(&st.reloads),
        "reload_failures": get(&st.reload_failures),
        "admin_auth_failures": get(&st.admin_auth_failures),
        "http_client_errors": get(&st.http_client_errors),
        "http_connections_rejected": get(&st.http_connections_rejected),
        "last_flush_micros": get(&st.last_flush_micros),
        "series_live": get(&st.series_live),
        "series_dropped_by_prefix": by_prefix,
        "udp_sockets": udp,
        "sinks": sinks,
        "task_restarts": tasks,
        "prometheus": {
            "active": prom.active,
            "series": prom.series,
            "conflicts": prom.conflicts,
            "over_limit": prom.over_limit,
            "observe_micros": prom.observe_micros,
            "render_micros": prom.render_micros,
        },
    });
    if let Some(o) = body.as_object_mut() {
        for (name, n) in st.limit_counters() {
            o.insert(name.to_string(), n.into());
        }
    }
    Json(body)
}

/// `/api/series` parameters.
#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
    /// At most this many series (default [`DEFAULT_SERIES_LIMIT`]).
    limit: Option<usize>,
}

/// `/api/series?prefix=&limit=`: live series, sorted by key, with their types.
pub async fn series(State(s): State<Shared>, Query(q): Query<SeriesQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_SERIES_LIMIT);
    if !(1..=MAX_SERIES_LIMIT).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be from 1 to {MAX_SERIES_LIMIT}"),
        );
    }
    let prefix = q.prefix;
    let r = s
        .flusher
        .run(move |reg| {
            let p = prefix.as_bytes();
            let mut all: Vec<(crate::metric::MetricKey, MetricType)> = Vec::new();
            let mut keep = |k: &crate::metric::MetricKey, t: MetricType| {
                if k.as_bytes().starts_with(p) {
                    all.push((k.clone(), t));
                }
            };
            reg.counters()
                .for_each(|(k, _)| keep(k, MetricType::Counter));
            reg.gauges().for_each(|(k, _)| keep(k, MetricType::Gauge));
            reg.timers().for_each(|(k, t)| keep(k, t.kind()));
            reg.sets().for_each(|(k, _)| keep(k, MetricType::Set));
            let total = all.len();
            if all.len() > limit {
                all.select_nth_unstable(limit - 1);
                all.truncate(limit);
            }
            all.sort_unstable();
            (all, total)
        })
        .await;
    let (list, total) = match r {
        Ok(x) => x,
        Err(e) => return busy(e),
    };
    let series: Vec<Value> = list
        .iter()
        .map(|(k, t)| json!({ "key": k.to_string_lossy(), "type": t.as_str() }))
        .collect();
    Json(json!({
        "total": total,
        "truncated": total > series.len(),
        "series": series,
    }))
    .into_response()
}

/// `/api/top` parameters.
#[derive(Debug, Deserialize)]
pub struct TopQuery {
    /// How many (default [`DEFAULT_TOP`], at most [`TOP_KEPT`]).
    n: Option<usize>,
}

/// `/api/top?n=`: the series that received the most values in the last
/// complete flush interval, hottest first, with their rate.
pub async fn top(State(s): State<Shared>, Query(q): Query<TopQuery>) -> Response {
    let n = q.n.unwrap_or(DEFAULT_TOP);
    if !(1..=TOP_KEPT).contains(&n) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("n must be from 1 to {TOP_KEPT}"),
        );
    }
    let r = s
        .flusher
        .run(move |reg| reg.top().iter().take(n).cloned().collect::<Vec<_>>())
        .await;
    let hot = match r {
        Ok(x) => x,
        Err(e) => return busy(e),
    };
    let window = s.interval.as_secs_f64();
    let top: Vec<Value> = hot
        .iter()
        .map(|h| {
            json!({
                "key": h.key.to_string_lossy(),
                "type": h.kind.as_str(),
                "lines": h.hits,
                "lines_per_second": h.hits as f64 / window,
            })
        })
        .collect();
    Json(json!({ "window_seconds": window, "top": top })).into_response()
}

/// Anything else: 404 with a JSON body.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint (see docs/http.md)")
}

/// `POST /-/reload`: 200 with the [`ReloadReport`](crate::reload::ReloadReport);
/// 400 when the new config is refused, 503 when the server cannot take it now.
pub async fn reload(
    r: std::sync::Arc<crate::reload::Reloader>,
    shared: Shared,
    headers: axum::http::HeaderMap,
) -> Response {
    // `[admin] token`, as `Authorization: Bearer TOKEN`.
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !shared.admin_token.accepts(given) {
        incr(&shared.stats.admin_auth_failures, 1);
        tracing::warn!("POST /-/reload refused: missing or wrong token");
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "this server requires the admin token: Authorization: Bearer TOKEN".to_string(),
        );
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    match r.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) if e.is_config() => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

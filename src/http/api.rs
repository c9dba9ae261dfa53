//! The HTTP API's handlers: `/health`, `/api/stats`, `/api/series`,
//! `/api/top`, `/api/dark`, `/api/events`, `/api/checks` and `/metrics`.
//! See docs/http.md for the shapes.
//!
//! Imports, besides `http` itself: `aggregate`, `flusher`, `front`, `metric`,
//! `stats`.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::aggregate::{Hot, TOP_KEPT};
use crate::flusher::FlusherBusy;
use crate::front::Front;
use crate::metric::MetricType;
use crate::stats::{get, incr, render, unix_now};

type Shared = Arc<Front>;

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
    let mut rendered = None;
    if let Some(live) = s.scrape() {
        live.scraped();
        let mut r = live.rendered();
        if !r.stats.active {
            match s.flusher.run(move |reg| live.activate(reg)).await {
                Ok(now) => r = now,
                // Served without client series; the next scrape tries again.
                Err(e) => {
                    tracing::debug!(error = %e, "prometheus: could not activate the exporter")
                }
            }
        }
        rendered = Some(r);
    }
    let mut own = Vec::with_capacity(8 * 1024);
    render::prometheus(&s.stats, rendered.as_ref().map(|r| &r.stats), &mut own);
    let text = rendered.map(|r| r.text.clone()).unwrap_or_default();
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

/// `/api/stats`: the self-metrics as JSON.
pub async fn stats(State(s): State<Shared>) -> Json<Value> {
    let prom = s.scrape().map(|l| l.rendered().stats).unwrap_or_default();
    let mut body = render::json(&s.stats, &prom);
    body.insert(
        "uptime_seconds".into(),
        unix_now().saturating_sub(get(&s.stats.started_unix)).into(),
    );
    body.insert("health".into(), s.health.as_str().into());
    Json(Value::Object(body))
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
    let hot = match hottest(&s, n).await {
        Ok(x) => x,
        Err(e) => return busy(e),
    };
    let window = s.settings().interval.as_secs_f64();
    let top: Vec<Value> = hot.iter().map(|h| hot_json(h, window)).collect();
    Json(json!({ "window_seconds": window, "top": top })).into_response()
}

/// The `n` series with the most values in the last complete interval.
pub async fn hottest(front: &Front, n: usize) -> Result<Vec<Hot>, FlusherBusy> {
    front
        .flusher
        .run(move |reg| reg.top().iter().take(n).cloned().collect::<Vec<_>>())
        .await
}

/// One of [`hottest`] as `/api/top` shows it, over a `window` of seconds.
pub fn hot_json(h: &Hot, window: f64) -> Value {
    json!({
        "key": h.key.to_string_lossy(),
        "type": h.kind.as_str(),
        "lines": h.hits,
        "lines_per_second": h.hits as f64 / window,
    })
}

/// `/api/dark`: every tracked source and series, up or dark.
pub async fn dark(State(s): State<Shared>) -> Json<Value> {
    Json(s.side.liveness.report())
}

/// `/api/events` parameters.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events with a larger id (for polling).
    #[serde(default)]
    since: u64,
    /// At most this many, the newest (default and most: the ring's size).
    limit: Option<usize>,
}

/// `/api/events?since=&limit=`: the kept events, oldest first.
pub async fn events(State(s): State<Shared>, Query(q): Query<EventsQuery>) -> Json<Value> {
    let events: Vec<Value> = s
        .side
        .hub
        .events(q.since, q.limit.unwrap_or(usize::MAX))
        .iter()
        .map(|e| e.to_json())
        .collect();
    Json(json!({ "events": events }))
}

/// `/api/checks`: the latest state of every service check.
pub async fn checks(State(s): State<Shared>) -> Json<Value> {
    let checks: Vec<Value> = s.side.hub.checks().iter().map(|c| c.to_json()).collect();
    Json(json!({ "checks": checks }))
}

/// Anything else: 404 with a JSON body.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint (see docs/http.md)")
}

/// The header that carries `[admin] token` when `Authorization` carries
/// basic auth.
pub const TOKEN_HEADER: &str = "x-statsyard-token";

/// `POST /-/reload`: 200 with the
/// [`ReloadReport`](crate::config::diff::ReloadReport); 400 when the new
/// config is refused, 503 when the server cannot take it now.
pub async fn reload(State(shared): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    // `[admin] token`, as `Authorization: Bearer TOKEN`, or as
    // `X-Statsyard-Token: TOKEN` when `Authorization` already carries the
    // web config's basic auth.
    let given = headers.get(TOKEN_HEADER).map(|v| v.as_bytes()).or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    });
    if !shared.admin_token.accepts(given) {
        incr(&shared.stats.admin_auth_failures, 1);
        tracing::warn!("POST /-/reload refused: missing or wrong token");
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "this server requires the admin token: Authorization: Bearer TOKEN, \
             or X-Statsyard-Token: TOKEN next to basic auth"
                .to_string(),
        );
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let Some(r) = shared.reloader() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this server cannot reload");
    };
    match r.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) if e.config => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

//! influxdb output: every flush as InfluxDB line protocol, gzipped, POSTed
//! in bounded batches to InfluxDB 1.x's `/write` (`database`) or 2.x's
//! `/api/v2/write` (`org`, `bucket`, `token`); VictoriaMetrics takes both.
//!
//! The schema is Telegraf's statsd input's, the convention for statsd data
//! in InfluxDB: the measurement is the metric name, the statsd tags are
//! tags (with `metric_type`), and the fields are
//!
//! - counters: `value` (the count in the interval) and `rate` (per second);
//! - gauges: `value`; sets: `value` (distinct members in the interval);
//! - timers, histograms, distributions: `count`, `lower`, `upper`, `mean`,
//!   `median`, `stddev`, `sum`, and `<p>_percentile` (the reference's
//!   `upper_<p>`, the highest value of the lowest p %) per percentile
//!   (`top<p>_percentile` for a negative one), as `[flush]
//!   calculated_timer_metrics` keeps them.
//!
//! DogStatsD events (and statsyard's own, a source going dark or coming
//! back) are points of an `events` measurement, written as they arrive:
//! tags `alert_type`, `priority`, and `host`, `source_type`,
//! `aggregation_key` when the event has them, then its own tags (`key:value`,
//! a bare `key` as `key=true`, as Telegraf writes them); string fields
//! `title` and `text`; the event's time (`d:`, or when it arrived).
//!
//! Every series field is a float. Points carry the flush's time: `precision = "s"`
//! the flush's Unix second, `"ms"` the millisecond the output took the
//! flush, one more than the last if the clock has not moved (so that two
//! flushes never overwrite each other). Delivery (retries, the spool, the
//! shutdown deadline) is [`crate::deliver::http`]'s.
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `events`, `flush`,
//! `metric`, `stats`.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::http_output::{BatchDefaults, Batcher, HttpSettings, RawHttp};
use super::{
    BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::Bad;
use crate::deliver::http::{Auth, Body, Encoder, HttpOutput};
use crate::flush::FlushBatch;
use crate::metric::{MetricKey, MetricType};
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "influxdb"`.
pub struct Kind;

/// The influxdb output's table: the HTTP keys ([`RawHttp`]) and these.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawInflux {
    /// InfluxDB 1.x: the database (`/write?db=`).
    database: Option<String>,
    /// InfluxDB 1.x: the retention policy; unset: the database's default.
    retention_policy: Option<String>,
    /// InfluxDB 1.x: user name (HTTP basic authentication).
    username: Option<String>,
    /// InfluxDB 1.x: password.
    password: Option<String>,
    /// InfluxDB 2.x: the organization (`/api/v2/write?org=`).
    org: Option<String>,
    /// InfluxDB 2.x: the bucket.
    bucket: Option<String>,
    /// InfluxDB 2.x: the API token (`Authorization: Token ...`).
    token: Option<String>,
    /// Timestamp precision, `s` or `ms`.
    precision: Option<String>,
    /// `gzip` or `identity` (uncompressed).
    content_encoding: Option<String>,
}

/// Lines per request by default (InfluxDB's recommended batch size).
const DEFAULT_BATCH: BatchDefaults = BatchDefaults {
    points: 5000,
    bytes: 1024 * 1024,
};

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "influxdb"
    }

    fn keys(&self) -> Vec<String> {
        RawHttp::keys_with::<RawInflux>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let (http, raw): (RawHttp, RawInflux) = RawHttp::split(table, cx)?;
        let mut url = http.base_url(cx)?;
        let precision = match raw.precision.as_deref() {
            None | Some("s") => Precision::Seconds,
            Some("ms") => Precision::Millis,
            Some(p) => return Err(cx.bad("precision", format!("{p:?}: use \"s\" or \"ms\""))),
        };
        let gzip = match raw.content_encoding.as_deref() {
            None | Some("gzip") => true,
            Some("identity") => false,
            Some(e) => {
                return Err(cx.bad(
                    "content_encoding",
                    format!("{e:?}: use \"gzip\" or \"identity\""),
                ))
            }
        };
        let v2 = [&raw.org, &raw.bucket, &raw.token];
        let mut headers = Vec::new();
        let auth = match (&raw.database, v2.iter().any(|k| k.is_some())) {
            (Some(_), true) => {
                return Err(cx.bad(
                    "database",
                    "give either `database` (InfluxDB 1.x) or `org`, `bucket` and `token` (2.x), not both",
                ))
            }
            (None, false) => {
                return Err(cx.bad(
                    "database",
                    "an influxdb output needs `database` (InfluxDB 1.x) or `org`, `bucket` and `token` (2.x)",
                ))
            }
            (Some(db), false) => {
                if db.is_empty() {
                    return Err(cx.bad("database", "must not be empty"));
                }
                push_path(&mut url, "write");
                let mut q = url.query_pairs_mut();
                q.append_pair("db", db);
                if let Some(rp) = &raw.retention_policy {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", precision.as_str());
                drop(q);
                match (&raw.username, &raw.password) {
                    (Some(user), Some(password)) => Some(Auth::Basic {
                        user: user.clone(),
                        password: password.clone(),
                    }),
                    (None, None) => None,
                    (Some(_), None) => return Err(cx.bad("password", "`username` needs `password`")),
                    (None, Some(_)) => return Err(cx.bad("username", "`password` needs `username`")),
                }
            }
            (None, true) => {
                for (key, v) in ["org", "bucket", "token"].iter().zip(v2) {
                    if v.as_ref().is_none_or(String::is_empty) {
                        return Err(cx.bad(key, "InfluxDB 2.x needs `org`, `bucket` and `token`"));
                    }
                }
                for key in ["retention_policy", "username", "password"] {
                    let set = match key {
                        "retention_policy" => raw.retention_policy.is_some(),
                        "username" => raw.username.is_some(),
                        _ => raw.password.is_some(),
                    };
                    if set {
                        return Err(cx.bad(key, "is for InfluxDB 1.x (`database`); 2.x uses `token`"));
                    }
                }
                push_path(&mut url, "api/v2/write");
                url.query_pairs_mut()
                    .append_pair("org", raw.org.as_deref().unwrap_or_default())
                    .append_pair("bucket", raw.bucket.as_deref().unwrap_or_default())
                    .append_pair("precision", precision.as_str());
                let token = raw.token.as_deref().unwrap_or_default();
                HeaderValue::from_str(token)
                    .map_err(|_| cx.bad("token", "not valid in an HTTP header"))?;
                headers.push(("Authorization", format!("Token {token}")));
                None
            }
        };
        let http = http.validate(cx, url, auth, &headers, DEFAULT_BATCH)?;
        Ok(Arc::new(InfluxConfig {
            http,
            precision,
            gzip,
        }))
    }
}

/// Append `path` to the URL's path (a base URL may have a prefix, behind a
/// proxy).
pub(super) fn push_path(url: &mut reqwest::Url, path: &str) {
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/{path}"));
}

/// Timestamp precision of the points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
}

impl Precision {
    fn as_str(self) -> &'static str {
        match self {
            Precision::Seconds => "s",
            Precision::Millis => "ms",
        }
    }
}

/// influxdb output settings.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    pub http: HttpSettings,
    pub precision: Precision,
    pub gzip: bool,
}

impl SinkConfig for InfluxConfig {
    /// Measurements are metric names, not Graphite paths.
    fn uses_naming(&self) -> bool {
        false
    }

    /// Events become points of the `events` measurement.
    fn takes_events(&self) -> bool {
        true
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let out = self.http.output(cx)?;
        Ok(Built::sink(InfluxSink {
            name: cx.name.clone(),
            out,
            encoder: LineEncoder::new(self, cx.stats.clone()),
            stats: cx.stats.clone(),
        }))
    }
}

struct InfluxSink {
    name: String,
    out: HttpOutput,
    encoder: LineEncoder,
    stats: Arc<SinkStats>,
}

impl Sink for InfluxSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        let s = *self;
        Box::pin(s.out.run(s.stats, rx, s.encoder))
    }
}

/// Flushes into gzipped line protocol bodies.
struct LineEncoder {
    precision: Precision,
    gzip: bool,
    batcher: Batcher,
    /// The last millisecond timestamp given (`ms` precision).
    last_ms: u64,
    stats: Arc<SinkStats>,
}

impl LineEncoder {
    fn new(c: &InfluxConfig, stats: Arc<SinkStats>) -> LineEncoder {
        LineEncoder {
            precision: c.precision,
            gzip: c.gzip,
            batcher: Batcher::new(c.http.batch_points, c.http.batch_bytes),
            last_ms: 0,
            stats,
        }
    }

    /// The points' timestamp, in the configured precision.
    fn timestamp(&mut self, batch: &FlushBatch) -> u64 {
        match self.precision {
            Precision::Seconds => batch.timestamp,
            Precision::Millis => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                self.last_ms = now.max(self.last_ms + 1);
                self.last_ms
            }
        }
    }

    fn body(&self, lines: &[u8], points: u64) -> Option<Body> {
        let (data, encoding) = if self.gzip {
            let mut gz = GzEncoder::new(
                Vec::with_capacity(lines.len() / 4),
                flate2::Compression::fast(),
            );
            if let Err(e) = gz.write_all(lines) {
                tracing::error!(error = %e, "gzip failed");
                incr(&self.stats.dropped, 1);
                return None;
            }
            match gz.finish() {
                Ok(d) => (d, Some(HeaderValue::from_static("gzip"))),
                Err(e) => {
                    tracing::error!(error = %e, "gzip failed");
                    incr(&self.stats.dropped, 1);
                    return None;
                }
            }
        } else {
            (lines.to_vec(), None)
        };
        Some(Body {
            data: data.into(),
            content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            content_encoding: encoding,
            points,
        })
    }
}

impl Encoder for LineEncoder {
    type Msg = SinkMsg;

    /// Events are sent as they come, not flushes.
    fn is_flush(&self, msg: &SinkMsg) -> bool {
        matches!(msg, SinkMsg::Flush(_))
    }

    fn encode(&mut self, msg: SinkMsg, out: &mut Vec<Body>) {
        let batch = match msg {
            SinkMsg::Flush(batch) => batch,
            SinkMsg::Event(e) => {
                // One request per event: events are rare, and each goes
                // out as it happens, in order with the flushes.
                let ts = match self.precision {
                    Precision::Seconds => e.timestamp.max(0) as u64,
                    Precision::Millis => (e.timestamp.max(0) as u64).saturating_mul(1000),
                };
                let mut line = Vec::new();
                push_event_line(&mut line, &e, ts);
                out.extend(self.body(&line, 1));
                return;
            }
            SinkMsg::Raw(_) => return,
        };
        let mut ts = self.timestamp(&batch).to_string().into_bytes();
        ts.push(b'\n');
        let mut batcher = std::mem::replace(&mut self.batcher, Batcher::new(1, 1));
        let mut done = |lines: &[u8], points: u64| {
            if let Some(b) = self.body(lines, points) {
                out.push(b);
            }
        };
        for_each_series(&batch, &mut |s| {
            batcher.start_point();
            if push_line(&mut batcher.buf, s, &ts) {
                batcher.end_point(&mut done);
            }
        });
        batcher.finish(&mut done);
        self.batcher = batcher;
    }
}

/// One series of a flush and its fields, as line protocol writes it.
pub struct Series<'a> {
    pub key: &'a MetricKey,
    pub kind: MetricType,
    /// `(field, value)`; counters `value` and `rate`, and so on (see the
    /// module doc).
    pub fields: Fields<'a>,
}

/// The fields of a series.
pub enum Fields<'a> {
    Counter { value: f64, rate: f64 },
    Value(f64),
    Timer(&'a [(Arc<str>, f64)]),
}

/// Hand every series of the batch to `f`, in the batch's order.
pub fn for_each_series(batch: &FlushBatch, f: &mut dyn FnMut(&Series<'_>)) {
    for c in &batch.counters {
        f(&Series {
            key: &c.key,
            kind: MetricType::Counter,
            fields: Fields::Counter {
                value: c.value,
                rate: c.rate,
            },
        });
    }
    for t in &batch.timers {
        f(&Series {
            key: &t.key,
            kind: t.kind,
            fields: Fields::Timer(&t.stats),
        });
    }
    for g in &batch.gauges {
        f(&Series {
            key: &g.key,
            kind: MetricType::Gauge,
            fields: Fields::Value(g.value),
        });
    }
    for s in &batch.sets {
        f(&Series {
            key: &s.key,
            kind: MetricType::Set,
            fields: Fields::Value(s.count as f64),
        });
    }
}

/// Telegraf's `metric_type` tag value.
pub fn metric_type(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Set => "set",
        MetricType::Timer => "timing",
        MetricType::Histogram => "histogram",
        MetricType::Distribution => "distribution",
    }
}

/// The line protocol field name of a timer stat (the reference's name), or
/// `None` for a stat Telegraf's schema does not have.
pub fn timer_field(stat: &str) -> Option<std::borrow::Cow<'static, str>> {
    use std::borrow::Cow;
    Some(match stat {
        "count" => Cow::Borrowed("count"),
        "lower" => Cow::Borrowed("lower"),
        "upper" => Cow::Borrowed("upper"),
        "mean" => Cow::Borrowed("mean"),
        "median" => Cow::Borrowed("median"),
        "std" => Cow::Borrowed("stddev"),
        "sum" => Cow::Borrowed("sum"),
        _ => {
            if let Some(p) = stat.strip_prefix("upper_") {
                Cow::Owned(format!("{p}_percentile"))
            } else if let Some(p) = stat.strip_prefix("lower_top") {
                Cow::Owned(format!("top{p}_percentile"))
            } else {
                return None;
            }
        }
    })
}

/// Append `bytes` with `,`, ` ` (and `=` if `eq`) escaped by a backslash.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], eq: bool) {
    for &b in bytes {
        if b == b',' || b == b' ' || (eq && b == b'=') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn push_field(out: &mut Vec<u8>, first: &mut bool, name: &[u8], v: f64) {
    // NaN and infinities are not line protocol values.
    if !v.is_finite() {
        return;
    }
    if !*first {
        out.push(b',');
    }
    *first = false;
    push_escaped(out, name, true);
    out.push(b'=');
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(v).as_bytes());
}

/// Append one line for `s` (`ts` ends with `\n`); false (and nothing
/// appended) when the series has no field to write.
pub fn push_line(out: &mut Vec<u8>, s: &Series<'_>, ts: &[u8]) -> bool {
    let start = out.len();
    push_escaped(out, s.key.name(), false);
    // The statsd tags (sorted already) and `metric_type` in its place. A
    // bare tag, or one with an empty key or value, is not a line protocol
    // tag: left out. A client's own `metric_type` tag wins.
    const TYPE_KEY: &[u8] = b"metric_type";
    let mut typed = false;
    let push_type = |out: &mut Vec<u8>| {
        out.extend_from_slice(b",metric_type=");
        out.extend_from_slice(metric_type(s.kind).as_bytes());
    };
    for t in s.key.tags() {
        let Some(eq) = t.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = (&t[..eq], &t[eq + 1..]);
        if k.is_empty() || v.is_empty() {
            continue;
        }
        if !typed && k >= TYPE_KEY {
            typed = true;
            if k != TYPE_KEY {
                push_type(out);
            }
        }
        out.push(b',');
        push_escaped(out, k, true);
        out.push(b'=');
        push_escaped(out, v, true);
    }
    if !typed {
        push_type(out);
    }
    out.push(b' ');
    let mut first = true;
    match &s.fields {
        Fields::Counter { value, rate } => {
            push_field(out, &mut first, b"value", *value);
            push_field(out, &mut first, b"rate", *rate);
        }
        Fields::Value(v) => push_field(out, &mut first, b"value", *v),
        Fields::Timer(stats) => {
            for (stat, v) in stats.iter() {
                if let Some(name) = timer_field(stat) {
                    push_field(out, &mut first, name.as_bytes(), *v);
                }
            }
        }
    }
    if first {
        out.truncate(start);
        return false;
    }
    out.push(b' ');
    out.extend_from_slice(ts);
    true
}

/// Append a line protocol string field value: quoted, with `"` and `\`
/// escaped. A newline is kept as DogStatsD writes it, a backslash and an
/// `n`: not every line protocol reader takes a raw newline in a string.
fn push_string_field(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for &b in v.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\\\n"),
            b'\r' => {}
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Append the `events` point of `e` at `ts` (in the output's precision),
/// with its newline. See the module doc for the schema.
pub fn push_event_line(out: &mut Vec<u8>, e: &crate::events::Event, ts: u64) {
    let mut tags: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    tags.insert("alert_type", e.alert_type.as_str());
    tags.insert("priority", e.priority.as_str());
    for (k, v) in [
        ("host", &e.host),
        ("source_type", &e.source_type),
        ("aggregation_key", &e.aggregation_key),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            tags.insert(k, v);
        }
    }
    for t in &e.tags {
        let (k, v) = t.split_once(':').unwrap_or((t, "true"));
        let v = if v.is_empty() { "true" } else { v };
        // The event's own fields win over a tag of the same name.
        if !k.is_empty() {
            tags.entry(k).or_insert(v);
        }
    }
    out.extend_from_slice(b"events");
    for (k, v) in tags {
        out.push(b',');
        push_escaped(out, k.as_bytes(), true);
        out.push(b'=');
        push_escaped(out, v.as_bytes(), true);
    }
    out.extend_from_slice(b" title=");
    push_string_field(out, &e.title);
    out.extend_from_slice(b",text=");
    push_string_field(out, &e.text);
    out.push(b' ');
    out.extend_from_slice(ts.to_string().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{CounterOut, GaugeOut, SetOut, TimerOut};
    use std::io::Read;

    fn key(k: &str) -> MetricKey {
        MetricKey::new(k.as_bytes())
    }

    fn batch() -> FlushBatch {
        let stats = |v: &[(&str, f64)]| -> Vec<(Arc<str>, f64)> {
            v.iter().map(|(n, x)| (Arc::from(*n), *x)).collect()
        };
        FlushBatch {
            timestamp: 1_700_000_000,
            interval: std::time::Duration::from_secs(10),
            counters: vec![CounterOut {
                key: key("bars.hits;env=prod;host=a"),
                value: 50.0,
                rate: 5.0,
            }],
            timers: vec![TimerOut {
                key: key("api.latency;zone=eu"),
                kind: MetricType::Timer,
                stats: stats(&[
                    ("count_90", 9.0),
                    ("mean_90", 5.0),
                    ("upper_90", 9.0),
                    ("sum_90", 45.0),
                    ("sum_squares_90", 285.0),
                    ("lower_top10", 10.0),
                    ("std", 2.8722813232690143),
                    ("upper", 10.0),
                    ("lower", 1.0),
                    ("sum", 55.0),
                    ("sum_squares", 385.0),
                    ("mean", 5.5),
                    ("median", 5.5),
                    ("count", 10.0),
                    ("count_ps", 1.0),
                ]),
                histogram: vec![(Arc::from("bin_inf"), 10.0)],
            }],
            gauges: vec![
                GaugeOut {
                    key: key("room temp,x;a b=c,d;z=1=2"),
                    value: 21.5,
                },
                GaugeOut {
                    key: key("nan.gauge"),
                    value: f64::NAN,
                },
            ],
            sets: vec![SetOut {
                key: key("users;bare;metric_type=mine"),
                count: 3,
            }],
            processing_time_ms: 0.0,
        }
    }

    fn lines(b: &FlushBatch) -> Vec<String> {
        let mut out = Vec::new();
        for_each_series(b, &mut |s| {
            push_line(&mut out, s, b"1700000000\n");
        });
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn telegraf_schema_for_each_type() {
        assert_eq!(
            lines(&batch()),
            [
                "bars.hits,env=prod,host=a,metric_type=counter value=50,rate=5 1700000000",
                "api.latency,metric_type=timing,zone=eu 90_percentile=9,top10_percentile=10,\
                 stddev=2.8722813232690143,upper=10,lower=1,sum=55,mean=5.5,median=5.5,count=10 \
                 1700000000",
                // Escapes: `,` and ` ` in the measurement, `,`, ` `, `=` in tags.
                "room\\ temp\\,x,a\\ b=c\\,d,metric_type=gauge,z=1\\=2 value=21.5 1700000000",
                // A NaN gauge has no field: no line. A bare tag is left out;
                // the client's own metric_type wins.
                "users,metric_type=mine value=3 1700000000",
            ]
        );
    }

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn encoder(points: usize, precision: Precision) -> LineEncoder {
        let mut http = test_settings();
        http.batch_points = points;
        LineEncoder::new(
            &InfluxConfig {
                http,
                precision,
                gzip: true,
            },
            Arc::new(SinkStats::default()),
        )
    }

    fn test_settings() -> HttpSettings {
        validate("url = \"http://127.0.0.1:1\"\ndatabase = \"x\"")
            .unwrap()
            .http
    }

    #[test]
    fn events_are_points_of_the_events_measurement() {
        use crate::parse::event::{parse, Dog};
        let line = b"_e{13,17}:disk \"full\" 1|sda1\\nat 99% c:\\x|d:1700000000|h:web 1|k:disk|p:low|s:nagios|t:error|#env:prod,role,host:other,a=b:c";
        let Ok(Dog::Event(e)) = parse(line) else {
            panic!("not an event")
        };
        let e = crate::events::Event::received(&e, 100, None);
        let mut out = Vec::new();
        push_event_line(&mut out, &e, 1_700_000_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "events,a\\=b=c,aggregation_key=disk,alert_type=error,env=prod,host=web\\ 1,\
             priority=low,role=true,source_type=nagios \
             title=\"disk \\\"full\\\" 1\",text=\"sda1\\\\nat 99% c:\\\\x\" 1700000000\n"
        );
        // Through the encoder: one body per event, in the output's precision.
        let mut enc = encoder(100, Precision::Millis);
        let mut bodies = Vec::new();
        enc.encode(SinkMsg::Event(Arc::new(e)), &mut bodies);
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0].points, 1);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bodies[0].data[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.ends_with(" 1700000000000\n"), "{text}");
    }

    #[test]
    fn batches_are_gzipped_bounded_and_in_order() {
        let mut e = encoder(2, Precision::Seconds);
        let mut out = Vec::new();
        e.encode(SinkMsg::Flush(Arc::new(batch())), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].points, 2);
        assert_eq!(out[1].points, 2);
        assert_eq!(out[0].content_encoding.as_ref().unwrap(), "gzip");
        let text: String = out.iter().map(|b| gunzip(&b.data)).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), lines(&batch()));
    }

    #[test]
    fn millisecond_timestamps_never_repeat() {
        let mut e = encoder(5000, Precision::Millis);
        let b = FlushBatch {
            gauges: vec![GaugeOut {
                key: key("g"),
                value: 1.0,
            }],
            ..FlushBatch::default()
        };
        let mut out = Vec::new();
        for _ in 0..3 {
            e.encode(SinkMsg::Flush(Arc::new(b.clone())), &mut out);
        }
        let ts: Vec<u64> = out
            .iter()
            .map(|b| {
                gunzip(&b.data)
                    .trim()
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(ts[0] < ts[1] && ts[1] < ts[2], "{ts:?}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(ts[0]) < 60_000, "{ts:?}");
    }

    fn validate(toml_text: &str) -> Result<InfluxConfig, Bad> {
        let table: toml::Table = toml::from_str(toml_text).unwrap();
        let mut keys: Vec<String> = ["type", "name", "queue"].map(String::from).into();
        keys.extend(Kind.keys());
        let cx = ValidateCx {
            file: "/etc/statsyard/statsyard.toml",
            index: 0,
            name: "influxdb",
            kind: "influxdb",
            keys,
            has_relay: false,
            prometheus: &Default::default(),
        };
        Kind.validate(table, &cx)
            .map(|c| c.as_any().downcast_ref::<InfluxConfig>().unwrap().clone())
    }

    #[test]
    fn urls_and_credentials_of_both_apis() {
        let c = validate(
            "url = \"http://db:8086/prefix/\"\ndatabase = \"metrics\"\nretention_policy = \"a b\"\n\
             username = \"u\"\npassword = \"p\"\nprecision = \"ms\"",
        )
        .unwrap();
        assert_eq!(
            c.http.engine.url,
            "http://db:8086/prefix/write?db=metrics&rp=a+b&precision=ms"
        );
        assert!(matches!(c.http.engine.auth, Some(Auth::Basic { .. })));
        assert_eq!(c.precision, Precision::Millis);
        assert_eq!(c.http.batch_points, 5000);

        let c = validate(
            "url = \"https://eu.example\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t0k\"\n\
             headers = { \"X-A\" = \"1\" }\nbatch_points = 10\ncontent_encoding = \"identity\"",
        )
        .unwrap();
        assert_eq!(
            c.http.engine.url,
            "https://eu.example/api/v2/write?org=o&bucket=b&precision=s"
        );
        assert_eq!(
            c.http.engine.headers,
            [
                ("X-A".to_string(), "1".to_string()),
                ("Authorization".to_string(), "Token t0k".to_string())
            ]
        );
        assert!(!c.gzip);
        assert_eq!(c.http.batch_points, 10);

        for (text, key) in [
            ("database = \"x\"", "sink[0].url"),
            ("url = \"ftp://x\"\ndatabase = \"x\"", "sink[0].url"),
            ("url = \"http://x\"", "sink[0].database"),
            (
                "url = \"http://x\"\ndatabase = \"x\"\norg = \"o\"",
                "sink[0].database",
            ),
            (
                "url = \"http://x\"\norg = \"o\"\nbucket = \"b\"",
                "sink[0].token",
            ),
            (
                "url = \"http://x\"\ndatabase = \"x\"\nusername = \"u\"",
                "sink[0].password",
            ),
            (
                "url = \"http://x\"\ndatabase = \"x\"\nprecision = \"ns\"",
                "sink[0].precision",
            ),
            (
                "url = \"http://x\"\ndatabase = \"x\"\nbatch_points = 0",
                "sink[0].batch_points",
            ),
            (
                "url = \"http://x\"\ndatabase = \"x\"\nbackoff_min = \"1x\"",
                "sink[0].backoff_min",
            ),
            (
                "url = \"http://x\"\ndatabase = \"x\"\naddress = \"a:1\"",
                "sink[0].address",
            ),
        ] {
            let e = validate(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e:?}");
        }
    }
}

//! console sink: every flush printed to stdout, as Graphite plaintext lines
//! (the names Graphite would get) or as one JSON object per series; and
//! every event as it happens, as its DogStatsD line (`text`) or a JSON
//! object with `"type":"event"` (`json`).
//!
//! The text format is for a person at a terminal: each flush is one block, a
//! `#` header (time, interval, series count), the user's series sorted by
//! key (each series' lines together), then the self-metrics (the
//! reference's `<prefix_stats>.*` counters, statsyard's own, the graphite
//! backend's `numStats`...) folded into one `#` summary line, or printed in
//! full with `self_metrics = true`. The JSON format prints every series as
//! it always has.
//!
//! Each flush is rendered into one buffer and written with one locked write
//! on a blocking thread, so a slow terminal or a full pipe stalls only this
//! sink (whose queue then drops and counts), never the runtime.
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `flush`, `metric`,
//! `stats`.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    keys_of, BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::Bad;
use crate::flush::naming::{for_each_internal_line, for_each_series_line, Naming, SeriesRef};
use crate::flush::number::push_js_number;
use crate::flush::FlushBatch;
use crate::metric::{MetricKey, MetricType};
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "console"`.
pub struct Kind;

/// The console sink's table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    /// `text` (Graphite lines) or `json`.
    format: Option<String>,
    /// Text format: print the self-metrics (the `<prefix_stats>.*` series)
    /// line by line after the user's series; `false` (the default) folds
    /// them into one summary line. The JSON format always prints them.
    self_metrics: Option<bool>,
}

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "console"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawConsole>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let raw: RawConsole = cx.table(table)?;
        let format = match raw.format.as_deref() {
            None | Some("text") => ConsoleFormat::Text,
            Some("json") => ConsoleFormat::Json,
            Some(other) => {
                return Err(cx.bad(
                    "format",
                    format!("{other:?}: expected \"text\" or \"json\""),
                ))
            }
        };
        Ok(Arc::new(ConsoleConfig {
            format,
            self_metrics: raw.self_metrics.unwrap_or(false),
        }))
    }
}

/// Console sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub format: ConsoleFormat,
    /// Print the self-metrics in full (text format); else one summary line.
    pub self_metrics: bool,
}

impl SinkConfig for ConsoleConfig {
    fn takes_events(&self) -> bool {
        true
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        Ok(Built::sink(ConsoleSink::new(
            cx.name.clone(),
            self.clone(),
            cx.naming.clone(),
            cx.stats.clone(),
        )))
    }
}

/// How the console prints a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    /// Graphite plaintext lines (`name value timestamp`), one per value.
    Text,
    /// One JSON object per series.
    Json,
}

/// The console sink.
pub struct ConsoleSink {
    name: String,
    config: ConsoleConfig,
    naming: Naming,
    stats: Arc<SinkStats>,
}

impl ConsoleSink {
    /// A sink printing in `config.format`, with the graphite sink's names.
    pub fn new(name: String, config: ConsoleConfig, naming: Naming, stats: Arc<SinkStats>) -> Self {
        ConsoleSink {
            name,
            config,
            naming,
            stats,
        }
    }
}

impl Sink for ConsoleSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        Box::pin(async move {
            let s = *self;
            while let Some(msg) = rx.recv().await {
                let mut out = Vec::new();
                let batch = match msg {
                    SinkMsg::Flush(batch) => batch,
                    SinkMsg::Event(e) => {
                        match s.config.format {
                            ConsoleFormat::Text => out.extend(e.to_dogstatsd()),
                            ConsoleFormat::Json => out.extend(e.to_json().to_string().into_bytes()),
                        }
                        out.push(b'\n');
                        s.write(out, 1).await;
                        continue;
                    }
                    SinkMsg::Raw(_) => continue,
                };
                let lines = match s.config.format {
                    ConsoleFormat::Text => {
                        render_text(&batch, &s.naming, s.config.self_metrics, &mut out)
                    }
                    ConsoleFormat::Json => render_json(&batch, &mut out),
                };
                if s.write(out, lines).await {
                    incr(&s.stats.flushes_sent, 1);
                }
            }
        })
    }
}

impl ConsoleSink {
    /// Write `out` (`lines` lines) to stdout off the runtime; whether it was
    /// written. Failures are counted and logged.
    async fn write(&self, out: Vec<u8>, lines: usize) -> bool {
        let len = out.len();
        let written = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out).and_then(|()| stdout.flush())
        })
        .await;
        match written {
            Ok(Ok(())) => {
                incr(&self.stats.lines_sent, lines as u64);
                incr(&self.stats.bytes_sent, len as u64);
                self.stats.delivered();
                true
            }
            Ok(Err(e)) => {
                incr(&self.stats.errors, 1);
                incr(&self.stats.dropped, 1);
                self.stats.failed(format!("cannot write to stdout: {e}"));
                tracing::warn!(sink = %self.name, error = %e, "cannot write to stdout");
                false
            }
            Err(e) => {
                incr(&self.stats.errors, 1);
                incr(&self.stats.dropped, 1);
                self.stats.failed(format!("stdout writer failed: {e}"));
                tracing::error!(sink = %self.name, error = %e, "stdout writer failed");
                false
            }
        }
    }
}

/// Append `batch` as one text block: a `#` header, the user's series
/// sorted by key (every Graphite line of a series together, in the order
/// the graphite sink sends them), then the self-metrics: every line with
/// `self_metrics`, else one `#` summary line. Returns the Graphite lines
/// written.
///
/// A self-metric is a series whose key starts with `<prefix_stats>.` (what
/// the reference puts there, and statsyard's own under `.statsyard.`), and
/// the graphite backend's own `numStats`, `processing_time` and
/// `calculationtime` lines.
pub fn render_text(
    batch: &FlushBatch,
    naming: &Naming,
    self_metrics: bool,
    out: &mut Vec<u8>,
) -> usize {
    let started = std::time::Instant::now();
    let own = format!("{}.", naming.prefix_stats);
    let is_own = |of: SeriesRef| of.key(batch).as_bytes().starts_with(own.as_bytes());
    // (series, line) pairs: sorted by key with a stable sort, so that the
    // lines of one series keep their order.
    let mut user: Vec<(SeriesRef, String, f64)> = Vec::new();
    let mut others: Vec<(String, f64)> = Vec::new();
    for_each_series_line(batch, naming, &mut |of, name, v| {
        if is_own(of) {
            others.push((name.to_string(), v));
        } else {
            user.push((of, name.to_string(), v));
        }
    });
    user.sort_by(|a, b| a.0.key(batch).cmp(b.0.key(batch)).then(a.0.cmp(&b.0)));
    for_each_internal_line(batch, naming, started, &mut |name, v| {
        others.push((name.to_string(), v))
    });
    let mut series: Vec<SeriesRef> = user.iter().map(|(of, ..)| *of).collect();
    series.dedup();

    header(batch, series.len(), out);
    let ts = batch.timestamp.to_string();
    let line = |out: &mut Vec<u8>, name: &str, v: f64| {
        crate::deliver::carbon::push_line(out, name.as_bytes(), v, ts.as_bytes())
    };
    let mut n = 0;
    for (_, name, v) in &user {
        line(out, name, *v);
        n += 1;
    }
    if self_metrics {
        for (name, v) in &others {
            line(out, name, *v);
            n += 1;
        }
    } else {
        summary(batch, naming, others.len(), out);
    }
    n
}

/// `# flush 2026-12-07T10:00:00Z (1796637600), interval 10s, 3 series`
fn header(batch: &FlushBatch, series: usize, out: &mut Vec<u8>) {
    use humantime_serde::re::humantime;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(batch.timestamp);
    let line = format!(
        "# flush {} ({}), interval {}, {series} series\n",
        humantime::format_rfc3339_seconds(at),
        batch.timestamp,
        humantime::format_duration(batch.interval),
    );
    out.extend_from_slice(line.as_bytes());
}

/// `# statsd: 3 lines in 2 packets, 0 bad; 31 self-metric lines not shown
/// (self_metrics = true)`, with statsyard's own counters that are not zero
/// (drops, refusals) named before the count.
fn summary(batch: &FlushBatch, naming: &Naming, hidden: usize, out: &mut Vec<u8>) {
    let p = &naming.prefix_stats;
    let counter = |name: &str| {
        let key = format!("{p}.{name}");
        batch
            .counters
            .iter()
            .find(|c| c.key.as_bytes() == key.as_bytes())
            .map_or(0.0, |c| c.value)
    };
    let count = |n: f64, what: &str| {
        let s = if n == 1.0 { "" } else { "s" };
        format!("{n} {what}{s}")
    };
    let mut line = format!(
        "# {p}: {} in {}, {} bad",
        count(counter("metrics_received"), "line"),
        count(counter("packets_received"), "packet"),
        counter("bad_lines_seen"),
    );
    let own = format!("{p}.statsyard.");
    let mut nonzero: Vec<String> = batch
        .counters
        .iter()
        .filter(|c| c.value != 0.0)
        .filter_map(|c| {
            let rest = c.key.as_bytes().strip_prefix(own.as_bytes())?;
            Some(format!("{}={}", String::from_utf8_lossy(rest), c.value))
        })
        .collect();
    nonzero.sort();
    if !nonzero.is_empty() {
        line.push_str("; ");
        line.push_str(&nonzero.join(" "));
    }
    line.push_str(&format!(
        "; {hidden} self-metric lines not shown (self_metrics = true)\n"
    ));
    out.extend_from_slice(line.as_bytes());
}

/// Append one JSON object per series of `batch`, one per line; returns how
/// many. Numbers are printed as the reference prints them; non-finite ones
/// become `null`, as `JSON.stringify` makes them.
pub fn render_json(batch: &FlushBatch, out: &mut Vec<u8>) -> usize {
    let mut j = Json {
        out,
        num: String::new(),
    };
    for c in &batch.counters {
        j.head(batch.timestamp, "counter", &c.key);
        j.field("value", c.value);
        j.field("rate", c.rate);
        j.end();
    }
    for t in &batch.timers {
        let kind = match t.kind {
            MetricType::Histogram => "histogram",
            MetricType::Distribution => "distribution",
            _ => "timer",
        };
        j.head(batch.timestamp, kind, &t.key);
        for (field, values) in [("stats", &t.stats), ("histogram", &t.histogram)] {
            j.out.extend_from_slice(b",\"");
            j.out.extend_from_slice(field.as_bytes());
            j.out.extend_from_slice(b"\":{");
            for (i, (k, v)) in values.iter().enumerate() {
                if i > 0 {
                    j.out.push(b',');
                }
                j.string(k);
                j.out.push(b':');
                j.number(*v);
            }
            j.out.push(b'}');
        }
        j.end();
    }
    for g in &batch.gauges {
        j.head(batch.timestamp, "gauge", &g.key);
        j.field("value", g.value);
        j.end();
    }
    for s in &batch.sets {
        j.head(batch.timestamp, "set", &s.key);
        j.field("count", s.count as f64);
        j.end();
    }
    batch.num_stats()
}

/// A tiny JSON line writer: the objects have a fixed shape, and numbers must
/// be formatted like the reference's, which serde_json's `Value` cannot do.
struct Json<'a> {
    out: &'a mut Vec<u8>,
    num: String,
}

impl Json<'_> {
    fn head(&mut self, ts: u64, kind: &str, key: &MetricKey) {
        self.out.extend_from_slice(b"{\"timestamp\":");
        self.out.extend_from_slice(ts.to_string().as_bytes());
        self.out.extend_from_slice(b",\"type\":");
        self.string(kind);
        self.out.extend_from_slice(b",\"key\":");
        self.string(&key.to_string_lossy());
        self.out.extend_from_slice(b",\"name\":");
        self.string(&String::from_utf8_lossy(key.name()));
        self.out.extend_from_slice(b",\"tags\":[");
        for (i, tag) in key.tags().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.string(&String::from_utf8_lossy(tag));
        }
        self.out.push(b']');
    }

    fn field(&mut self, name: &str, v: f64) {
        self.out.push(b',');
        self.string(name);
        self.out.push(b':');
        self.number(v);
    }

    fn string(&mut self, s: &str) {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, s);
    }

    fn number(&mut self, v: f64) {
        if v.is_finite() {
            self.num.clear();
            push_js_number(&mut self.num, v);
            self.out.extend_from_slice(self.num.as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    fn end(&mut self) {
        self.out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{CounterOut, GaugeOut, SetOut, TimerOut};

    #[test]
    fn json_lines() {
        let key = |s: &str| MetricKey::new(s.as_bytes());
        let batch = FlushBatch {
            timestamp: 1_700_000_000,
            counters: vec![CounterOut {
                key: key("foo;a=b"),
                value: 1.0,
                rate: 0.1,
            }],
            timers: vec![TimerOut {
                key: key("t"),
                kind: MetricType::Timer,
                stats: vec![("count".into(), 2.0), ("mean".into(), 1.5)],
                histogram: vec![("bin_inf".into(), 2.0)],
            }],
            gauges: vec![
                GaugeOut {
                    key: key("g\"q;x;y=1"),
                    value: -2.5,
                },
                GaugeOut {
                    key: key("nan"),
                    value: f64::NAN,
                },
            ],
            sets: vec![SetOut {
                key: key("s"),
                count: 3,
            }],
            processing_time_ms: 0.0,
            ..FlushBatch::default()
        };
        let mut out = Vec::new();
        assert_eq!(render_json(&batch, &mut out), 5);
        let text = String::from_utf8(out).unwrap();
        let want = [
            r#"{"timestamp":1700000000,"type":"counter","key":"foo;a=b","name":"foo","tags":["a=b"],"value":1,"rate":0.1}"#,
            r#"{"timestamp":1700000000,"type":"timer","key":"t","name":"t","tags":[],"stats":{"count":2,"mean":1.5},"histogram":{"bin_inf":2}}"#,
            r#"{"timestamp":1700000000,"type":"gauge","key":"g\"q;x;y=1","name":"g\"q","tags":["x","y=1"],"value":-2.5}"#,
            r#"{"timestamp":1700000000,"type":"gauge","key":"nan","name":"nan","tags":[],"value":null}"#,
            r#"{"timestamp":1700000000,"type":"set","key":"s","name":"s","tags":[],"count":3}"#,
        ];
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got, want);
        // Every line is valid JSON.
        for l in got {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    fn counter(key: &str, value: f64) -> CounterOut {
        CounterOut {
            key: MetricKey::new(key.as_bytes()),
            value,
            rate: value / 10.0,
        }
    }

    /// A user's three series among the reference's and statsyard's own,
    /// in hash order as the registry hands them out.
    fn mixed() -> FlushBatch {
        FlushBatch {
            timestamp: 1_795_000_000,
            interval: std::time::Duration::from_secs(10),
            counters: vec![
                counter("statsd.bad_lines_seen", 1.0),
                counter("zeta", 2.0),
                counter("statsd.statsyard.series_dropped", 3.0),
                counter("statsd.metrics_received", 4.0),
                counter("statsd.statsyard.lines_too_long", 0.0),
                counter("alpha", 1.0),
                counter("statsd.packets_received", 2.0),
            ],
            timers: vec![TimerOut {
                key: MetricKey::new(b"mid"),
                kind: MetricType::Timer,
                stats: vec![("count".into(), 2.0), ("upper".into(), 30.0)],
                histogram: vec![],
            }],
            gauges: vec![
                GaugeOut {
                    key: MetricKey::new(b"statsd.timestamp_lag"),
                    value: 0.0,
                },
                GaugeOut {
                    key: MetricKey::new(b"alpha"),
                    value: 7.0,
                },
            ],
            ..FlushBatch::default()
        }
    }

    #[test]
    fn text_block_sorts_the_users_series_and_folds_self_metrics() {
        let mut out = Vec::new();
        let n = render_text(&mixed(), &Naming::default(), false, &mut out);
        let text = String::from_utf8(out).unwrap();
        let want = "\
# flush 2026-11-18T11:06:40Z (1795000000), interval 10s, 4 series
stats.alpha 0.1 1795000000
stats_counts.alpha 1 1795000000
stats.gauges.alpha 7 1795000000
stats.timers.mid.count 2 1795000000
stats.timers.mid.upper 30 1795000000
stats.zeta 0.2 1795000000
stats_counts.zeta 2 1795000000
# statsd: 4 lines in 2 packets, 1 bad; series_dropped=3; 14 self-metric lines not shown (self_metrics = true)
";
        assert_eq!(text, want);
        assert_eq!(n, 7);
    }

    #[test]
    fn text_block_with_self_metrics_prints_them_after() {
        let mut out = Vec::new();
        let n = render_text(&mixed(), &Naming::default(), true, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(n, 21);
        assert_eq!(lines.len(), 22, "{text}");
        assert!(lines[0].starts_with("# flush "), "{text}");
        assert_eq!(lines[7], "stats_counts.zeta 2 1795000000");
        assert!(lines[8..].iter().all(|l| l.contains("statsd.")), "{text}");
        assert!(text.contains("stats_counts.statsd.metrics_received 4 1795000000\n"));
        assert!(text.contains("statsd.numStats 10 1795000000\n"));
        assert!(!text.contains("# statsd:"));
    }
}

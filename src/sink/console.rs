//! console sink: every flush printed to stdout, as Graphite plaintext lines
//! (the names Graphite would get) or as one JSON object per series; and
//! every event as it happens, as its DogStatsD line (`text`) or a JSON
//! object with `"type":"event"` (`json`).
//!
//! Each flush is rendered into one buffer and written with one locked write
//! on a blocking thread, so a slow terminal or a full pipe stalls only this
//! sink (whose queue then drops and counts), never the runtime.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::graphite::push_text_line;
use super::{
    keys_of, BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::Bad;
use crate::flush::naming::{for_each_graphite_line, Naming};
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
        Ok(Arc::new(ConsoleConfig { format }))
    }
}

/// Console sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub format: ConsoleFormat,
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
            let mut scratch = String::new();
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
                        let ts = batch.timestamp.to_string();
                        let mut n = 0usize;
                        for_each_graphite_line(&batch, &s.naming, &mut |name, v| {
                            push_text_line(&mut out, &mut scratch, name, v, &ts);
                            n += 1;
                        });
                        n
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
                true
            }
            Ok(Err(e)) => {
                incr(&self.stats.errors, 1);
                incr(&self.stats.dropped, 1);
                tracing::warn!(sink = %self.name, error = %e, "cannot write to stdout");
                false
            }
            Err(e) => {
                incr(&self.stats.errors, 1);
                incr(&self.stats.dropped, 1);
                tracing::error!(sink = %self.name, error = %e, "stdout writer failed");
                false
            }
        }
    }
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
}

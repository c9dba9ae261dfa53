//! prometheus_remote_write output: the series `/metrics` would serve, pushed
//! every flush with Prometheus remote write 1.0 (protobuf `WriteRequest`s,
//! snappy block format) to Prometheus' receiver, Mimir, Cortex, Thanos
//! Receive, VictoriaMetrics...
//!
//! How it is fed: an [`Observer`] on the flusher thread feeds the output's
//! own [`Exporter`] (the same mapping file, TTL, series bound and conflict
//! rules as `/metrics`, from `[prometheus]`), so counters are cumulative
//! (`_total`, `rate()` works), timers are summaries or histograms, and a
//! restart starts counters from 0 as an exporter restart would. It then
//! copies the exported samples into one compact [`Snapshot`] (one string
//! arena, no allocation per series) and leaves it in the output's
//! [`Mailbox`]; it never waits on the network. The output's task encodes
//! the snapshot into bounded `WriteRequest`s, compresses them and posts them
//! through [`crate::deliver::http`] (retries, `Retry-After`, the spool, the
//! shutdown deadline). A mailbox that is still full at the next flush (the
//! task cannot keep up) loses its oldest snapshot, counted in
//! `queue_dropped`; the next snapshot carries the same cumulative series.
//! A series the exporter expires (`[prometheus] ttl`) is sent once more,
//! with Prometheus' staleness marker ([`STALE_NAN`]), in the flush that
//! expires it.
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `exposition`, `stats`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::http_output::{BatchDefaults, Batcher, HttpSettings, RawHttp};
use super::prometheus::exporter::{Exporter, Sample};
use super::prometheus::PrometheusConfig;
use super::{
    BoxFuture, BuildCx, Built, FlushView, Observer, Sink, SinkConfig, SinkError, SinkKind, SinkMsg,
    ValidateCx,
};
use crate::check::Bad;
use crate::deliver::http::{Auth, Body, Encoder, HttpOutput};
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "prometheus_remote_write"`.
pub struct Kind;

/// `basic_auth = { username = "...", password = "..." }`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    /// The user name.
    username: String,
    /// Its password.
    password: String,
}

/// The remote-write output's table: the HTTP keys ([`RawHttp`]) and these.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWrite {
    /// HTTP basic authentication, `{ username = "...", password = "..." }`.
    basic_auth: Option<RawBasicAuth>,
    /// `Authorization: Bearer <token>`.
    bearer_token: Option<String>,
    /// A file holding the bearer token (read at start and at each reload;
    /// relative to the config file's directory).
    bearer_token_file: Option<String>,
}

/// Samples per request by default: Prometheus' own `max_samples_per_send`
/// is 2000; larger requests cost fewer round trips at a million series.
const DEFAULT_BATCH: BatchDefaults = BatchDefaults {
    points: 5000,
    bytes: 4 * 1024 * 1024,
};

/// Snapshots waiting for the task at most.
const MAILBOX: usize = 2;

/// The output's `type`.
pub const KIND: &str = "prometheus_remote_write";

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn keys(&self) -> Vec<String> {
        RawHttp::keys_with::<RawRemoteWrite>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let (http, raw): (RawHttp, RawRemoteWrite) = RawHttp::split(table, cx)?;
        let url = http.base_url(cx)?;
        let token = match (&raw.bearer_token, &raw.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(cx.bad(
                    "bearer_token_file",
                    "give `bearer_token` or `bearer_token_file`, not both",
                ))
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => {
                let path = cx.path(f);
                let t = std::fs::read_to_string(&path).map_err(|e| {
                    cx.bad(
                        "bearer_token_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(t.trim().to_string())
            }
            (None, None) => None,
        };
        let auth = match (raw.basic_auth, token) {
            (Some(_), Some(_)) => {
                return Err(cx.bad(
                    "basic_auth",
                    "give `basic_auth` or a bearer token, not both",
                ))
            }
            (Some(b), None) => Some(Auth::Basic {
                user: b.username,
                password: b.password,
            }),
            (None, Some(t)) => {
                HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| cx.bad("bearer_token", "not valid in an HTTP header"))?;
                Some(Auth::Bearer(t))
            }
            (None, None) => None,
        };
        let version = [("X-Prometheus-Remote-Write-Version", "0.1.0".to_string())];
        let http = http.validate(cx, url, auth, &version, DEFAULT_BATCH)?;
        Ok(Arc::new(RemoteWriteConfig {
            http,
            prometheus: cx.prometheus.clone(),
            mailbox: Arc::new(Mailbox::default()),
        }))
    }
}

/// Remote-write settings.
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    pub http: HttpSettings,
    /// `[prometheus]`: what the output's exporter exports.
    pub prometheus: PrometheusConfig,
    /// Where the observer leaves snapshots for the task; shared by every
    /// build of these settings, so a task restarted after a panic reads
    /// what the running observer leaves.
    mailbox: Arc<Mailbox>,
}

impl PartialEq for RemoteWriteConfig {
    fn eq(&self, o: &Self) -> bool {
        self.http == o.http && self.prometheus == o.prometheus
    }
}

impl SinkConfig for RemoteWriteConfig {
    /// Prometheus names come from the mapping, not from `[naming]`.
    fn uses_naming(&self) -> bool {
        false
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let out = self.http.output(cx)?;
        Ok(Built {
            sink: Some(Box::new(RemoteWriteSink {
                name: cx.name.clone(),
                out,
                encoder: WriteEncoder {
                    batcher: Batcher::new(self.http.batch_points, self.http.batch_bytes),
                },
                mailbox: self.mailbox.clone(),
                stats: cx.stats.clone(),
            })),
            observer: Some(Box::new(Snapshots {
                exporter: {
                    let mut e = Exporter::new(super::prometheus::exporter::PromOptions {
                        sent: cx.sent_keys.clone(),
                        ..self.prometheus.options.clone()
                    });
                    e.track_gone();
                    e
                },
                mailbox: self.mailbox.clone(),
                stats: cx.stats.clone(),
                last_ms: 0,
                scratch: Vec::new(),
            })),
            scrape: None,
        })
    }
}

/// Prometheus' staleness marker (`value.StaleNaN`): a NaN with this exact
/// bit pattern, which the TSDB reads as "the series ended here".
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// The snapshots waiting for the task: bounded, the oldest dropped.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Arc<Snapshot>>>,
    ready: Notify,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mailbox")
    }
}

impl Mailbox {
    /// Leave `s`; returns whether an older snapshot was dropped for it.
    fn put(&self, s: Arc<Snapshot>) -> bool {
        let dropped = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = q.len() >= MAILBOX && q.pop_front().is_some();
            q.push_back(s);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    fn take(&self) -> Option<Arc<Snapshot>> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// The exported samples of one flush, copied compactly: every label name
/// and value in one arena.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch: every sample's timestamp.
    pub timestamp_ms: i64,
    text: String,
    /// `(name, value)` spans into `text`, series after series, each
    /// series' labels sorted by name (`__name__` among them).
    labels: Vec<(Span, Span)>,
    /// Per series: where its labels end in `labels`, and its value.
    series: Vec<(u32, f64)>,
}

type Span = (u32, u32);

impl Snapshot {
    /// Series in the snapshot.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn str(&self, (a, b): Span) -> &str {
        &self.text[a as usize..b as usize]
    }

    /// The series `i`: its labels and value.
    pub fn series(&self, i: usize) -> (impl Iterator<Item = (&str, &str)>, f64) {
        let start = match i {
            0 => 0,
            _ => self.series[i - 1].0 as usize,
        };
        let (end, value) = self.series[i];
        let labels = self.labels[start..end as usize]
            .iter()
            .map(|&(n, v)| (self.str(n), self.str(v)));
        (labels, value)
    }

    fn push_str(&mut self, s: &str) -> Span {
        let a = self.text.len() as u32;
        self.text.push_str(s);
        (a, self.text.len() as u32)
    }

    /// Copy one exporter sample in, its labels sorted by name.
    fn push(&mut self, s: &Sample<'_>, scratch: &mut Vec<(Span, Span)>) {
        scratch.clear();
        let n = self.push_str("__name__");
        let a = self.text.len() as u32;
        self.text.push_str(s.family);
        self.text.push_str(s.suffix);
        scratch.push((n, (a, self.text.len() as u32)));
        for (k, v) in s.names.iter().zip(s.values) {
            let k = self.push_str(k);
            let v = self.push_str(v);
            scratch.push((k, v));
        }
        if let Some((k, v)) = s.extra {
            let k = self.push_str(k);
            let a = self.text.len() as u32;
            crate::exposition::push_number(&mut self.text, v);
            scratch.push((k, (a, self.text.len() as u32)));
        }
        // The exporter's names are sorted; `__name__` and `quantile`/`le`
        // go in their places.
        let text = &self.text;
        scratch.sort_by(|x, y| {
            text[x.0 .0 as usize..x.0 .1 as usize].cmp(&text[y.0 .0 as usize..y.0 .1 as usize])
        });
        self.labels.extend_from_slice(scratch);
        self.series.push((self.labels.len() as u32, s.value));
    }
}

/// The observer: feeds the exporter, leaves a snapshot per flush.
struct Snapshots {
    exporter: Exporter,
    mailbox: Arc<Mailbox>,
    stats: Arc<SinkStats>,
    last_ms: i64,
    scratch: Vec<(Span, Span)>,
}

impl Observer for Snapshots {
    fn observe(&mut self, flush: &FlushView<'_>) {
        self.exporter.observe(flush.registry, flush.now);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Strictly increasing, so that two flushes in one millisecond (or
        // a clock stepping back) never send a series' sample twice.
        self.last_ms = now.max(self.last_ms + 1);
        let mut snap = Snapshot {
            timestamp_ms: self.last_ms,
            ..Snapshot::default()
        };
        let scratch = &mut self.scratch;
        self.exporter
            .for_each_sample(&mut |s| snap.push(&s, scratch));
        // Series that expired in this observe: one staleness marker each,
        // as Prometheus writes when a scraped series disappears, so a query
        // stops showing them now, not 5 minutes (its lookback) later.
        self.exporter
            .take_gone(STALE_NAN, &mut |s| snap.push(&s, scratch));
        if self.mailbox.put(Arc::new(snap)) {
            incr(&self.stats.queue_dropped, 1);
            tracing::warn!(
                sink = %self.stats.name,
                "remote write is behind: the oldest snapshot was dropped (the next carries the same series)"
            );
        }
    }
}

struct RemoteWriteSink {
    name: String,
    out: HttpOutput,
    encoder: WriteEncoder,
    mailbox: Arc<Mailbox>,
    stats: Arc<SinkStats>,
}

impl Sink for RemoteWriteSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// The queue carries flushes, which the observer already saw: it is
    /// read only for its closing, the shutdown signal. Snapshots go from
    /// the mailbox to the delivery engine; when the queue closes, the last
    /// ones (the final flush's) follow, then the engine delivers what it
    /// holds within the deadline.
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        let s = *self;
        let (tx, snapshots) = mpsc::channel::<Arc<Snapshot>>(1);
        let mailbox = s.mailbox;
        let forward = async move {
            loop {
                tokio::select! {
                    msg = rx.recv() => if msg.is_none() { break },
                    _ = mailbox.ready.notified() => {
                        while let Some(snap) = mailbox.take() {
                            if tx.send(snap).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            while let Some(snap) = mailbox.take() {
                if tx.send(snap).await.is_err() {
                    return;
                }
            }
        };
        let deliver = s.out.run(s.stats, snapshots, s.encoder);
        Box::pin(async move {
            tokio::join!(forward, deliver);
        })
    }
}

/// Remote write 1.0's messages (prometheus/prompb/remote.proto and
/// types.proto), written by hand: only what is sent.
pub mod proto {
    /// `prometheus.WriteRequest` (metadata, field 3, is not sent).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `prometheus.TimeSeries`: labels sorted by name, samples by time.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Snapshots into snappy-compressed `WriteRequest`s of at most
/// `batch_points` series (one sample each) and about `batch_bytes` bytes.
///
/// The protobuf is written straight from the snapshot's arena, field by
/// field as [`proto`] declares them: building the message structs first
/// would allocate two strings per label, several million per flush at a
/// million series. The tests decode what it writes with [`proto`].
struct WriteEncoder {
    batcher: Batcher,
}

/// `WriteRequest.timeseries`, `TimeSeries.labels`, `Label.name`,
/// `Sample.value`: field 1, length-delimited.
const FIELD_1: u8 = 0x0a;
/// `TimeSeries.samples`, `Label.value`: field 2, length-delimited.
const FIELD_2: u8 = 0x12;
/// `Sample.value`: field 1, 64-bit.
const VALUE: u8 = 0x09;
/// `Sample.timestamp`: field 2, varint.
const TIMESTAMP: u8 = 0x10;

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

/// Length of a length-delimited field holding `len` bytes, tag included.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

impl WriteEncoder {
    /// Append series `i` of `snap` as one `timeseries` field; returns its
    /// length.
    fn push_series(snap: &Snapshot, i: usize, out: &mut Vec<u8>) -> usize {
        let (labels, value) = snap.series(i);
        let sample_len = 9 + 1 + varint_len(snap.timestamp_ms as u64);
        let label_len = |(n, v): (&str, &str)| field_len(n.len()) + field_len(v.len());
        let (labels_again, _) = snap.series(i);
        let ts_len: usize =
            labels_again.map(|l| field_len(label_len(l))).sum::<usize>() + field_len(sample_len);
        let start = out.len();
        out.push(FIELD_1);
        put_varint(out, ts_len as u64);
        for (n, v) in labels {
            out.push(FIELD_1);
            put_varint(out, label_len((n, v)) as u64);
            out.push(FIELD_1);
            put_varint(out, n.len() as u64);
            out.extend_from_slice(n.as_bytes());
            out.push(FIELD_2);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v.as_bytes());
        }
        out.push(FIELD_2);
        put_varint(out, sample_len as u64);
        out.push(VALUE);
        out.extend_from_slice(&value.to_le_bytes());
        out.push(TIMESTAMP);
        put_varint(out, snap.timestamp_ms as u64);
        out.len() - start
    }

    fn body(raw: &[u8], points: u64, snappy: &mut snap::raw::Encoder) -> Option<Body> {
        match snappy.compress_vec(raw) {
            Ok(data) => Some(Body {
                data: data.into(),
                content_type: HeaderValue::from_static("application/x-protobuf"),
                content_encoding: Some(HeaderValue::from_static("snappy")),
                points,
            }),
            Err(e) => {
                tracing::error!(error = %e, "snappy compression failed; batch dropped");
                None
            }
        }
    }
}

impl Encoder for WriteEncoder {
    type Msg = Arc<Snapshot>;

    fn encode(&mut self, snap: Arc<Snapshot>, out: &mut Vec<Body>) {
        let mut snappy = snap::raw::Encoder::new();
        let mut done = |raw: &[u8], n: u64| out.extend(Self::body(raw, n, &mut snappy));
        let b = &mut self.batcher;
        for i in 0..snap.len() {
            b.start_point();
            Self::push_series(&snap, i, &mut b.buf);
            b.end_point(&mut done);
        }
        b.finish(&mut done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateOptions, Registry, Shard};
    use crate::metric::{MetricRef, MetricType, Value};
    use prost::Message;
    use std::time::Instant;

    fn snapshot(lines: &[(&str, MetricType, f64)]) -> Snapshot {
        let agg = AggregateOptions::default();
        let mut reg = Registry::new(&agg);
        let mut shard = Shard::new(&agg);
        for (key, kind, v) in lines {
            shard.insert(&MetricRef {
                key: key.as_bytes(),
                kind: *kind,
                value: Value::Number(*v),
                sample_rate: 1.0,
                timestamp: None,
            });
        }
        reg.merge(shard.take());
        let mut exporter = Exporter::new(Default::default());
        exporter.observe(&reg, Instant::now());
        let mut snap = Snapshot {
            timestamp_ms: 1_700_000_000_000,
            ..Snapshot::default()
        };
        let mut scratch = Vec::new();
        exporter.for_each_sample(&mut |s| snap.push(&s, &mut scratch));
        snap
    }

    fn decode(b: &Body) -> proto::WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(&b.data).unwrap();
        proto::WriteRequest::decode(&raw[..]).unwrap()
    }

    fn labels(ts: &proto::TimeSeries) -> Vec<String> {
        ts.labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect()
    }

    #[test]
    fn what_metrics_serves_with_sorted_labels_in_bounded_requests() {
        let snap = Arc::new(snapshot(&[
            ("hits;env=prod;Zone=a", MetricType::Counter, 3.0),
            ("lat", MetricType::Timer, 100.0),
            ("temp", MetricType::Gauge, 21.5),
        ]));
        let mut e = WriteEncoder {
            batcher: Batcher::new(4, 1 << 20),
        };
        let mut out = Vec::new();
        e.encode(snap, &mut out);
        // hits_total, lat{quantile} x3, lat_sum, lat_count, temp: 7 series,
        // in /metrics' order.
        assert_eq!(out.iter().map(|b| b.points).collect::<Vec<_>>(), [4, 3]);
        assert_eq!(out[0].content_encoding.as_ref().unwrap(), "snappy");
        let series: Vec<proto::TimeSeries> =
            out.iter().flat_map(|b| decode(b).timeseries).collect();
        let all: Vec<Vec<String>> = series.iter().map(labels).collect();
        assert_eq!(
            all,
            [
                // Upper-case names sort before `__name__`.
                vec!["Zone=a", "__name__=hits_total", "env=prod"],
                vec!["__name__=lat", "quantile=0.5"],
                vec!["__name__=lat", "quantile=0.9"],
                vec!["__name__=lat", "quantile=0.99"],
                vec!["__name__=lat_sum"],
                vec!["__name__=lat_count"],
                vec!["__name__=temp"],
            ]
        );
        let values: Vec<f64> = series.iter().map(|s| s.samples[0].value).collect();
        assert_eq!(values, [3.0, 0.1, 0.1, 0.1, 0.1, 1.0, 21.5]);
        assert!(series
            .iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp == 1_700_000_000_000));

        // A byte bound cuts requests too.
        let mut e = WriteEncoder {
            batcher: Batcher::new(100, 60),
        };
        let mut out = Vec::new();
        e.encode(
            Arc::new(snapshot(&[
                ("a", MetricType::Gauge, 1.0),
                ("b", MetricType::Gauge, 2.0),
                ("c", MetricType::Gauge, 3.0),
            ])),
            &mut out,
        );
        assert!(out.len() > 1, "{}", out.len());
        assert_eq!(out.iter().map(|b| b.points).sum::<u64>(), 3);
    }

    #[test]
    fn a_full_mailbox_drops_the_oldest() {
        let m = Mailbox::default();
        let snap = |ms| {
            Arc::new(Snapshot {
                timestamp_ms: ms,
                ..Snapshot::default()
            })
        };
        assert!(!m.put(snap(1)));
        assert!(!m.put(snap(2)));
        assert!(m.put(snap(3)));
        assert_eq!(m.take().unwrap().timestamp_ms, 2);
        assert_eq!(m.take().unwrap().timestamp_ms, 3);
        assert!(m.take().is_none());
    }
}

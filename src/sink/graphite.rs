//! graphite sink: every flush as Graphite lines, over one persistent TCP
//! connection, in the plaintext or the pickle protocol.
//!
//! The lines are the reference's graphite backend's, names and values alike,
//! followed by the four `graphiteStats` lines it adds to every flush
//! (`last_exception`, `last_flush`, `flush_time`, `flush_length`), which
//! describe the writes before this one. Unlike the reference, which opens a
//! connection per flush and loses the flush when that fails, flushes wait in
//! a bounded buffer while the destination is down and go out in order when
//! it is back (see [`crate::deliver::feed`] and [`crate::deliver::stream`]).
//! Lines and pickle frames are written by [`crate::deliver::carbon`].
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `flush`, `spool`,
//! `stats`, `tls`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::{
    keys_of, BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::{check_address, check_backoff, check_nonzero, Bad};
use crate::deliver::carbon::{self, PickleError};
use crate::deliver::feed::{self, Feed, FeedConfig};
use crate::deliver::transport::TlsConnect;
use crate::deliver::Entry;
use crate::flush::naming::{
    for_each_graphite_line, graphite_lines, graphite_stats_name, GraphiteLine, Naming,
};
use crate::flush::FlushBatch;
use crate::spool::SpoolConfig;
use crate::stats::{incr, SinkStats};
use crate::tls::{RawTlsClient, TlsClient};

/// `[[sink]] type = "graphite"`.
pub struct Kind;

/// The graphite sink's table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawGraphite {
    /// The carbon receiver, `host:port`.
    address: Option<String>,
    /// `text` or `pickle`.
    protocol: Option<String>,
    /// Bytes of flushes held while the destination is down.
    buffer_bytes: Option<usize>,
    /// How long a connection attempt may take.
    #[serde(default, with = "humantime_serde::option")]
    connect_timeout: Option<Duration>,
    /// The first reconnect delay.
    #[serde(default, with = "humantime_serde::option")]
    backoff_min: Option<Duration>,
    /// The longest reconnect delay.
    #[serde(default, with = "humantime_serde::option")]
    backoff_max: Option<Duration>,
    /// Directory of the disk spool (relative to the config file's directory);
    /// the sink uses its own subdirectory, named after it. Unset: no spool.
    spool_dir: Option<String>,
    /// Bytes the spool keeps at most (1 GiB).
    spool_bytes: Option<u64>,
    /// TLS to the carbon receiver: `{ ca_file, cert_file, key_file,
    /// server_name, insecure_skip_verify }`; unset: plaintext.
    tls: Option<RawTlsClient>,
    /// `persistent` (one connection, kept) or `per_flush` (a connection per
    /// flush, closed after it, as the reference statsd does).
    connection: Option<String>,
}

const DEFAULT_BUFFER_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawGraphite>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let raw: RawGraphite = cx.table(table)?;
        let Some(address) = raw.address else {
            return Err(cx.bad("address", "a graphite sink needs `address = \"host:port\"`"));
        };
        check_address(&address).map_err(|r| cx.bad("address", r))?;
        let protocol = match raw.protocol.as_deref() {
            None | Some("text") => GraphiteProtocol::Text,
            Some("pickle") => GraphiteProtocol::Pickle,
            Some(other) => {
                return Err(cx.bad(
                    "protocol",
                    format!("{other:?}: a graphite sink speaks \"text\" or \"pickle\""),
                ))
            }
        };
        let connect_timeout = raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        check_nonzero(connect_timeout).map_err(|r| cx.bad("connect_timeout", r))?;
        let backoff_min = raw.backoff_min.unwrap_or(DEFAULT_BACKOFF_MIN);
        check_nonzero(backoff_min).map_err(|r| cx.bad("backoff_min", r))?;
        let backoff_max = raw.backoff_max.unwrap_or(DEFAULT_BACKOFF_MAX);
        check_backoff(backoff_min, backoff_max).map_err(|r| cx.bad("backoff_max", r))?;
        let per_flush = match raw.connection.as_deref() {
            None | Some("persistent") => false,
            Some("per_flush") => true,
            Some(other) => {
                return Err(cx.bad(
                    "connection",
                    format!("{other:?}: expected \"persistent\" or \"per_flush\""),
                ))
            }
        };
        Ok(Arc::new(GraphiteConfig {
            address,
            protocol,
            per_flush,
            buffer_bytes: raw.buffer_bytes.unwrap_or(DEFAULT_BUFFER_BYTES),
            connect_timeout,
            backoff_min,
            backoff_max,
            spool: cx.spool(raw.spool_dir.as_deref(), raw.spool_bytes)?,
            tls: raw
                .tls
                .as_ref()
                .map(|t| TlsClient::load(t, cx.file))
                .transpose()
                .map_err(|r| cx.bad("tls", r))?,
        }))
    }
}

impl SinkConfig for GraphiteConfig {
    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let mut s = GraphiteSink::new(
            cx.name.clone(),
            self.clone(),
            cx.naming.clone(),
            cx.stats.clone(),
            cx.shutdown_timeout,
        );
        if let Some(t) = &self.tls {
            s.tls = Some(
                tls_connect(t, &self.address).map_err(|reason| SinkError::Other {
                    sink: cx.name.clone(),
                    reason,
                })?,
            );
        }
        Ok(Built::sink(s))
    }
}

/// How to speak TLS to `address` (`host:port`) with `t`.
pub fn tls_connect(t: &TlsClient, address: &str) -> Result<TlsConnect, String> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    Ok(TlsConnect {
        config: t.client_config()?,
        server_name: t.server_name(host)?,
    })
}

/// Graphite sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteConfig {
    /// `host:port`.
    pub address: String,
    pub protocol: GraphiteProtocol,
    /// Bytes of encoded flushes held while the destination is unreachable;
    /// past this the oldest are dropped and counted.
    pub buffer_bytes: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where flushes that overflow `buffer_bytes` go (this sink's own
    /// directory); `None`: they are dropped and counted.
    pub spool: Option<SpoolConfig>,
    /// TLS to the receiver; `None`: plaintext.
    pub tls: Option<TlsClient>,
    /// A connection per flush, closed after it (the reference's way).
    pub per_flush: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphiteProtocol {
    Text,
    Pickle,
}

/// The graphite sink.
pub struct GraphiteSink {
    name: String,
    config: GraphiteConfig,
    naming: Naming,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
    /// Unix seconds at build time: `last_flush` until the first write.
    started: u64,
    tls: Option<TlsConnect>,
}

impl GraphiteSink {
    /// A sink for `config`; the address is checked by [`Kind`]'s validation.
    pub fn new(
        name: String,
        config: GraphiteConfig,
        naming: Naming,
        stats: Arc<SinkStats>,
        shutdown_timeout: Duration,
    ) -> Self {
        GraphiteSink {
            name,
            config,
            naming,
            stats,
            shutdown_timeout,
            started: unix_now_rounded(),
            tls: None,
        }
    }
}

impl Sink for GraphiteSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        let s = *self;
        let cfg = FeedConfig {
            sink: s.name.clone(),
            addr: s.config.address.clone(),
            buffer_bytes: s.config.buffer_bytes,
            connect_timeout: s.config.connect_timeout,
            backoff_min: s.config.backoff_min,
            backoff_max: s.config.backoff_max,
            shutdown_timeout: s.shutdown_timeout,
            spool: s.config.spool.clone(),
            tls: s.tls.clone(),
            per_entry: s.config.per_flush,
        };
        let feed = GraphiteFeed::new(
            s.name,
            s.config.protocol,
            s.naming,
            s.stats.clone(),
            s.started,
        );
        Box::pin(feed::run(cfg, s.stats, rx, feed))
    }
}

/// The reference's `graphiteStats`: what the sink-level lines report.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WriteStats {
    /// Unix seconds of the last failed connect or write; 0 before any.
    last_exception: u64,
    /// Unix seconds of the last complete write; the start time before any.
    last_flush: u64,
    /// Milliseconds the last complete write took.
    flush_time: u64,
    /// Bytes of the last payload written.
    flush_length: u64,
}

/// Encodes flushes; hears back about writes for the `graphiteStats` lines.
struct GraphiteFeed {
    sink: String,
    protocol: GraphiteProtocol,
    naming: Naming,
    stats: Arc<SinkStats>,
    /// The four `graphiteStats` names, in the reference's order.
    stat_names: [String; 4],
    write: WriteStats,
    /// Reused across flushes.
    lines: Vec<GraphiteLine>,
}

impl GraphiteFeed {
    fn new(
        sink: String,
        protocol: GraphiteProtocol,
        naming: Naming,
        stats: Arc<SinkStats>,
        started: u64,
    ) -> Self {
        let stat_names = ["last_exception", "last_flush", "flush_time", "flush_length"]
            .map(|s| graphite_stats_name(&naming, s));
        GraphiteFeed {
            sink,
            protocol,
            naming,
            stats,
            stat_names,
            write: WriteStats {
                last_exception: 0,
                last_flush: started,
                flush_time: 0,
                flush_length: 0,
            },
            lines: Vec::new(),
        }
    }

    /// The flush's lines plus the `graphiteStats` lines, encoded, and how
    /// many lines that is.
    fn encode_batch(&mut self, batch: &FlushBatch) -> Result<(Vec<u8>, u64), PickleError> {
        let w = self.write;
        let values = [w.last_exception, w.last_flush, w.flush_time, w.flush_length];
        let mut out = Vec::new();
        match self.protocol {
            GraphiteProtocol::Text => {
                // Straight into the output buffer: no per-line allocation.
                let ts = batch.timestamp.to_string();
                let mut n = 0u64;
                let mut emit = |name: &str, v: f64| {
                    carbon::push_line(&mut out, name.as_bytes(), v, ts.as_bytes());
                    n += 1;
                };
                for_each_graphite_line(batch, &self.naming, &mut emit);
                for (name, v) in self.stat_names.iter().zip(values) {
                    emit(name, v as f64);
                }
                Ok((out, n))
            }
            GraphiteProtocol::Pickle => {
                self.lines.clear();
                graphite_lines(batch, &self.naming, &mut self.lines);
                for (name, value) in self.stat_names.iter().zip(values) {
                    self.lines.push(GraphiteLine {
                        name: name.clone(),
                        value: value as f64,
                    });
                }
                let ts = batch.timestamp;
                carbon::push_pickle_frames(
                    &self.lines,
                    |l| (Cow::Borrowed(l.name.as_str()), ts, l.value),
                    &mut out,
                )?;
                Ok((out, self.lines.len() as u64))
            }
        }
    }
}

impl Feed for GraphiteFeed {
    type Msg = SinkMsg;

    fn encode(&mut self, msg: SinkMsg) -> Option<Entry> {
        let SinkMsg::Flush(batch) = msg else {
            return None;
        };
        match self.encode_batch(&batch) {
            Ok((out, lines)) => Some(Entry::new(Bytes::from(out), lines)),
            Err(e) => {
                incr(&self.stats.dropped, 1);
                tracing::error!(sink = %self.sink, error = %e, "cannot encode flush; dropped");
                None
            }
        }
    }

    fn sent(&mut self, entry: &Entry, took: Duration) {
        incr(&self.stats.flushes_sent, 1);
        self.write.flush_time = took.as_millis() as u64;
        self.write.flush_length = entry.data.len() as u64;
        self.write.last_flush = unix_now_rounded();
    }

    fn failed(&mut self) {
        self.write.last_exception = unix_now_rounded();
    }
}

/// Append `lines` as Graphite plaintext: `name value timestamp\n` each, the
/// value formatted as the reference prints numbers ([`carbon::push_line`]).
pub fn encode_text(lines: &[GraphiteLine], timestamp: u64, out: &mut Vec<u8>) {
    let ts = timestamp.to_string();
    for l in lines {
        carbon::push_line(out, l.name.as_bytes(), l.value, ts.as_bytes());
    }
}

/// Unix seconds, rounded to the nearest as the reference's
/// `Math.round(Date.now() / 1000)`.
fn unix_now_rounded() -> u64 {
    // A clock before 1970 reads as 0 rather than failing.
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (ms + 500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{CounterOut, GaugeOut};
    use crate::metric::MetricKey;
    use crate::stats::get;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const TS: u64 = 1_700_000_000;

    fn batch(ts: u64) -> Arc<FlushBatch> {
        Arc::new(FlushBatch {
            timestamp: ts,
            counters: vec![CounterOut {
                key: MetricKey::new(b"foo;env=prod"),
                value: 10.0,
                rate: 1.0,
            }],
            gauges: vec![GaugeOut {
                key: MetricKey::new(b"g"),
                value: 0.25,
            }],
            processing_time_ms: 0.5,
            ..FlushBatch::default()
        })
    }

    fn sink(addr: &str, protocol: GraphiteProtocol) -> (Box<dyn Sink>, Arc<SinkStats>) {
        let stats = Arc::new(SinkStats::default());
        let config = GraphiteConfig {
            address: addr.into(),
            protocol,
            buffer_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            spool: None,
            tls: None,
            per_flush: false,
        };
        let s = GraphiteSink::new(
            "graphite".into(),
            config,
            Naming::default(),
            stats.clone(),
            Duration::from_secs(5),
        );
        (Box::new(s), stats)
    }

    async fn read_all(l: &TcpListener) -> Vec<u8> {
        let (mut conn, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        got
    }

    /// `calculationtime` is how long naming took: whole milliseconds that
    /// are not ours to predict. Check its shape and take it out.
    fn without_calculationtime(lines: Vec<String>) -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| {
                let Some(rest) = l.strip_prefix("stats.statsd.graphiteStats.calculationtime ")
                else {
                    return true;
                };
                let (v, ts) = rest.split_once(' ').unwrap();
                assert!(v.parse::<u64>().is_ok() && ts.parse::<u64>().is_ok(), "{l}");
                false
            })
            .collect()
    }

    #[tokio::test]
    async fn text_flushes_over_tcp() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let before = unix_now_rounded();
        let (sink, stats) = sink(&l.local_addr().unwrap().to_string(), GraphiteProtocol::Text);
        let after = unix_now_rounded();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        tx.send(SinkMsg::Flush(batch(TS))).await.unwrap();
        tx.send(SinkMsg::Raw(Bytes::from_static(b"ignored:1|c")))
            .await
            .unwrap();
        let (mut conn, _) = l.accept().await.unwrap();
        // The graphiteStats of a flush describe the writes done when it is
        // encoded: let the first one go out, as an interval would.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while get(&stats.flushes_sent) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "first flush not sent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(SinkMsg::Flush(batch(TS + 10))).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        let got = String::from_utf8(got).unwrap();
        task.await.unwrap();

        let lines = without_calculationtime(got.lines().map(String::from).collect());
        let first: Vec<&str> = lines[..9].iter().map(String::as_str).collect();
        // Before the first write, last_flush is the start time.
        let started: u64 = first[6]
            .strip_prefix("stats.statsd.graphiteStats.last_flush ")
            .and_then(|r| r.strip_suffix(" 1700000000"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}", first[6]));
        assert!((before..=after).contains(&started));
        let last_flush = format!("stats.statsd.graphiteStats.last_flush {started} {TS}");
        assert_eq!(
            first,
            [
                "stats.foo;env=prod 1 1700000000",
                "stats_counts.foo;env=prod 10 1700000000",
                "stats.gauges.g 0.25 1700000000",
                "statsd.numStats 2 1700000000",
                "stats.statsd.processing_time 0.5 1700000000",
                "stats.statsd.graphiteStats.last_exception 0 1700000000",
                last_flush.as_str(),
                "stats.statsd.graphiteStats.flush_time 0 1700000000",
                "stats.statsd.graphiteStats.flush_length 0 1700000000",
            ]
        );
        // The second flush reports on the first write: its length in bytes.
        let first_len = got
            .split_inclusive('\n')
            .take(10)
            .map(str::len)
            .sum::<usize>();
        let second: Vec<&str> = lines[9..].iter().map(String::as_str).collect();
        assert_eq!(second.len(), 9);
        assert_eq!(second[0], "stats.foo;env=prod 1 1700000010");
        assert_eq!(
            second[8],
            format!("stats.statsd.graphiteStats.flush_length {first_len} 1700000010")
        );
        assert!(second[5].starts_with("stats.statsd.graphiteStats.last_exception 0 "));
        assert_eq!(get(&stats.flushes_sent), 2);
        assert_eq!(get(&stats.lines_sent), 20);
        assert_eq!(get(&stats.bytes_sent), got.len() as u64);
        assert_eq!(get(&stats.dropped), 0);
    }

    #[tokio::test]
    async fn pickle_flushes_over_tcp() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sink, _) = sink(
            &l.local_addr().unwrap().to_string(),
            GraphiteProtocol::Pickle,
        );
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        tx.send(SinkMsg::Flush(batch(TS))).await.unwrap();
        drop(tx);
        let got = read_all(&l).await;
        task.await.unwrap();

        let len = u32::from_be_bytes([got[0], got[1], got[2], got[3]]) as usize;
        assert_eq!(got.len(), 4 + len, "one frame");
        let points: Vec<(String, (u64, f64))> =
            serde_pickle::from_slice(&got[4..], serde_pickle::DeOptions::new()).unwrap();
        let names: Vec<&str> = points.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "stats.foo;env=prod",
                "stats_counts.foo;env=prod",
                "stats.gauges.g",
                "statsd.numStats",
                "stats.statsd.processing_time",
                "stats.statsd.graphiteStats.calculationtime",
                "stats.statsd.graphiteStats.last_exception",
                "stats.statsd.graphiteStats.last_flush",
                "stats.statsd.graphiteStats.flush_time",
                "stats.statsd.graphiteStats.flush_length",
            ]
        );
        assert!(points.iter().all(|(_, (ts, _))| *ts == TS));
        let values: Vec<f64> = points.iter().map(|(_, (_, v))| *v).collect();
        assert_eq!(&values[..5], [1.0, 10.0, 0.25, 2.0, 0.5]);
        assert_eq!(values[6], 0.0);
    }

    #[tokio::test]
    async fn failures_set_last_exception_and_buffered_flushes_follow() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let (sink, stats) = sink(&addr.to_string(), GraphiteProtocol::Text);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        tx.send(SinkMsg::Flush(batch(TS))).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while get(&stats.errors) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no failed connect");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Encoded after the failure: reports it.
        tx.send(SinkMsg::Flush(batch(TS + 10))).await.unwrap();
        let l = TcpListener::bind(addr).await.unwrap();
        drop(tx);
        let got = String::from_utf8(read_all(&l).await).unwrap();
        task.await.unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[0], "stats.foo;env=prod 1 1700000000");
        assert_eq!(lines[10], "stats.foo;env=prod 1 1700000010");
        assert_eq!(
            lines[6],
            "stats.statsd.graphiteStats.last_exception 0 1700000000"
        );
        let (name, rest) = lines[16].split_once(' ').unwrap();
        assert_eq!(name, "stats.statsd.graphiteStats.last_exception");
        let failed_at: u64 = rest.split_once(' ').unwrap().0.parse().unwrap();
        assert!(failed_at.abs_diff(unix_now_rounded()) <= 5, "{failed_at}");
    }

    #[test]
    fn text_lines() {
        let lines = [
            ("stats.foo", 0.5, "stats.foo 0.5 1700000000\n"),
            (
                "stats_counts.foo;a=b",
                5.0,
                "stats_counts.foo;a=b 5 1700000000\n",
            ),
            (
                "stats.timers.t.std",
                1.0 / 3.0,
                "stats.timers.t.std 0.3333333333333333 1700000000\n",
            ),
            ("stats.gauges.g", 1e21, "stats.gauges.g 1e+21 1700000000\n"),
            ("stats.gauges.n", -0.0, "stats.gauges.n 0 1700000000\n"),
        ];
        for (name, value, want) in lines {
            let mut out = Vec::new();
            encode_text(
                &[GraphiteLine {
                    name: name.into(),
                    value,
                }],
                1_700_000_000,
                &mut out,
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}

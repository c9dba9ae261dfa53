//! repeater sink: every received statsd packet, as it arrived, copied to
//! other statsd servers (the reference's `repeater` backend).
//!
//! UDP sends one datagram per packet per destination. TCP keeps one
//! connection per destination, each with its own task and bounded buffer
//! (see [`crate::deliver::feed`]), and sends each packet followed by a
//! newline, as the reference does.
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `stats`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    keys_of, BoxFuture, BuildCx, Built, Input, Sink, SinkConfig, SinkError, SinkKind, SinkMsg,
    ValidateCx,
};
use crate::check::{check_address, check_nonzero, Bad};
use crate::deliver::feed::{self, Feed, FeedConfig};
use crate::deliver::Entry;
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "repeater"`.
pub struct Kind;

/// The repeater's table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRepeater {
    /// `host:port` of each statsd server that gets a copy of every packet.
    destinations: Option<Vec<String>>,
    /// `udp` or `tcp`.
    protocol: Option<String>,
    /// The longest reconnect delay (tcp).
    #[serde(default, with = "humantime_serde::option")]
    backoff_max: Option<Duration>,
}

/// Default queue of the repeater, in packets: it sees every packet, not one
/// message per flush.
const DEFAULT_QUEUE: usize = 65_536;
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "repeater"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawRepeater>()
    }

    fn default_queue(&self) -> usize {
        DEFAULT_QUEUE
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let raw: RawRepeater = cx.table(table)?;
        let destinations = raw.destinations.unwrap_or_default();
        if destinations.is_empty() {
            return Err(cx.bad(
                "destinations",
                "a repeater sink needs at least one `host:port` destination",
            ));
        }
        for (j, d) in destinations.iter().enumerate() {
            check_address(d).map_err(|r| cx.bad(&format!("destinations[{j}]"), r))?;
        }
        let protocol = match raw.protocol.as_deref() {
            None | Some("udp") => RepeaterProtocol::Udp,
            Some("tcp") => RepeaterProtocol::Tcp,
            Some(other) => {
                return Err(cx.bad(
                    "protocol",
                    format!("{other:?}: a repeater sink speaks \"udp\" or \"tcp\""),
                ))
            }
        };
        let backoff_max = raw.backoff_max.unwrap_or(DEFAULT_BACKOFF_MAX);
        check_nonzero(backoff_max).map_err(|r| cx.bad("backoff_max", r))?;
        Ok(Arc::new(RepeaterConfig {
            destinations,
            protocol,
            backoff_max,
        }))
    }
}

impl SinkConfig for RepeaterConfig {
    fn input(&self) -> Input {
        Input::Raw
    }

    /// statsyard's own events go on as DogStatsD lines ([`SinkMsg::into_packet`]).
    fn takes_events(&self) -> bool {
        true
    }

    /// It copies packets as they arrived: names play no part.
    fn uses_naming(&self) -> bool {
        false
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        Ok(Built::sink(RepeaterSink::new(
            cx.name.clone(),
            self.clone(),
            cx.stats.clone(),
            cx.shutdown_timeout,
        )))
    }
}

/// Repeater sink settings: raw packets copied to other statsd servers.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeaterConfig {
    /// `host:port` of each destination.
    pub destinations: Vec<String>,
    pub protocol: RepeaterProtocol,
    /// Used by TCP destinations while reconnecting.
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeaterProtocol {
    /// The reference's `udp4`/`udp6` (the address decides the family).
    Udp,
    /// The reference's `tcp`: each packet is sent followed by a newline.
    Tcp,
}

/// Bytes buffered per TCP destination while it is unreachable.
const TCP_BUFFER_BYTES: usize = 16 << 20;
/// Packets queued between the repeater and one TCP destination's task. The
/// task drains its queue into its buffer at once, so this fills only when
/// that task is starved.
const TCP_QUEUE: usize = 4096;
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait after a TCP failure; doubled up to `backoff_max`.
const TCP_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How long a UDP destination's resolved address is used before resolving
/// the name again.
const UDP_RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Minimum time between two warnings about the same kind of per-packet failure.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The repeater sink.
pub struct RepeaterSink {
    name: String,
    config: RepeaterConfig,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
}

impl RepeaterSink {
    /// A sink for `config`; the addresses are checked by [`Kind`]'s validation.
    pub fn new(
        name: String,
        config: RepeaterConfig,
        stats: Arc<SinkStats>,
        shutdown_timeout: Duration,
    ) -> Self {
        RepeaterSink {
            name,
            config,
            stats,
            shutdown_timeout,
        }
    }
}

impl Sink for RepeaterSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        match self.config.protocol {
            RepeaterProtocol::Udp => Box::pin(run_udp(*self, rx)),
            RepeaterProtocol::Tcp => Box::pin(run_tcp(*self, rx)),
        }
    }
}

/// Logs a recurring per-packet problem at most once per [`LOG_EVERY`], with
/// how many times it happened since the last line.
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    fn new() -> Self {
        Throttle {
            last: None,
            count: 0,
        }
    }

    /// Count one occurrence; returns how many to report if a line is due now.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.count))
        } else {
            None
        }
    }
}

/// One UDP destination: its name and the address it last resolved to.
struct UdpDest {
    name: String,
    addr: Option<SocketAddr>,
    resolved_at: Option<Instant>,
    errors: Throttle,
}

impl UdpDest {
    /// The address to send to, resolving the name when it is due. A failed
    /// resolution keeps the previous address, if there was one.
    async fn addr(&mut self, sink: &str, stats: &SinkStats) -> Option<SocketAddr> {
        let due = self
            .resolved_at
            .is_none_or(|t| t.elapsed() >= UDP_RESOLVE_EVERY);
        if due {
            self.resolved_at = Some(Instant::now());
            let first = tokio::net::lookup_host(self.name.as_str())
                .await
                .map(|mut addrs| addrs.next());
            match first {
                Ok(Some(a)) => self.addr = Some(a),
                Ok(None) => self.resolve_failed(sink, stats, "no address"),
                Err(e) => self.resolve_failed(sink, stats, &e.to_string()),
            }
        }
        self.addr
    }

    fn resolve_failed(&self, sink: &str, stats: &SinkStats, error: &str) {
        incr(&stats.errors, 1);
        let kept = self.addr.map(|a| a.to_string());
        tracing::warn!(sink, destination = %self.name, error, kept = ?kept, "cannot resolve destination");
    }
}

/// The UDP sockets, one per address family, bound on first use.
#[derive(Default)]
struct UdpSockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl UdpSockets {
    async fn for_addr(&mut self, addr: &SocketAddr) -> io::Result<&UdpSocket> {
        let (slot, bind) = if addr.is_ipv4() {
            (&mut self.v4, "0.0.0.0:0")
        } else {
            (&mut self.v6, "[::]:0")
        };
        if slot.is_none() {
            *slot = Some(UdpSocket::bind(bind).await?);
        }
        // Just filled when it was empty.
        slot.as_ref().ok_or_else(|| io::Error::other("no socket"))
    }
}

async fn run_udp(s: RepeaterSink, mut rx: mpsc::Receiver<SinkMsg>) {
    let mut dests: Vec<UdpDest> = s
        .config
        .destinations
        .iter()
        .map(|d| UdpDest {
            name: d.clone(),
            addr: None,
            resolved_at: None,
            errors: Throttle::new(),
        })
        .collect();
    let mut sockets = UdpSockets::default();
    while let Some(msg) = rx.recv().await {
        let Some(packet) = msg.into_packet() else {
            continue;
        };
        for d in &mut dests {
            let Some(addr) = d.addr(&s.name, &s.stats).await else {
                incr(&s.stats.dropped, 1);
                continue;
            };
            let sent = match sockets.for_addr(&addr).await {
                Ok(sock) => sock.send_to(&packet, addr).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(n) => {
                    incr(&s.stats.lines_sent, 1);
                    incr(&s.stats.bytes_sent, n as u64);
                }
                Err(e) => {
                    incr(&s.stats.errors, 1);
                    incr(&s.stats.dropped, 1);
                    if let Some(count) = d.errors.hit() {
                        tracing::warn!(
                            sink = %s.name,
                            destination = %d.name,
                            error = %e,
                            count,
                            "cannot send packet"
                        );
                    }
                }
            }
        }
    }
}

/// Each packet plus a newline, for one TCP destination.
struct LineFeed;

impl Feed for LineFeed {
    type Msg = Bytes;

    fn encode(&mut self, packet: Bytes) -> Option<Entry> {
        let mut b = BytesMut::with_capacity(packet.len() + 1);
        b.put_slice(&packet);
        b.put_u8(b'\n');
        Some(Entry::new(b.freeze(), 1))
    }
}

async fn run_tcp(s: RepeaterSink, mut rx: mpsc::Receiver<SinkMsg>) {
    let mut outs = Vec::new();
    let mut tasks = Vec::new();
    for dest in &s.config.destinations {
        let (tx, drx) = mpsc::channel::<Bytes>(TCP_QUEUE);
        let cfg = FeedConfig {
            sink: s.name.clone(),
            addr: dest.clone(),
            buffer_bytes: TCP_BUFFER_BYTES,
            connect_timeout: TCP_CONNECT_TIMEOUT,
            backoff_min: TCP_BACKOFF_MIN.min(s.config.backoff_max),
            backoff_max: s.config.backoff_max,
            shutdown_timeout: s.shutdown_timeout,
            spool: None,
            tls: None,
            per_entry: false,
        };
        tasks.push(tokio::spawn(feed::run(cfg, s.stats.clone(), drx, LineFeed)));
        outs.push((dest.as_str(), tx, Throttle::new()));
    }
    while let Some(msg) = rx.recv().await {
        let Some(packet) = msg.into_packet() else {
            continue;
        };
        for (dest, tx, full) in &mut outs {
            match tx.try_send(packet.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    incr(&s.stats.dropped, 1);
                    if let Some(count) = full.hit() {
                        tracing::warn!(sink = %s.name, destination = %dest, count, "destination queue full; packet dropped");
                    }
                }
                Err(TrySendError::Closed(_)) => {
                    // Only if the destination's task died, which it does not
                    // do before its queue closes.
                    incr(&s.stats.dropped, 1);
                }
            }
        }
    }
    // Closing each destination's queue starts its shutdown delivery; each
    // keeps to the same deadline.
    drop(outs);
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(sink = %s.name, error = %e, "repeater destination task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::get;
    use tokio::io::AsyncReadExt;

    fn sink(
        destinations: Vec<String>,
        protocol: RepeaterProtocol,
    ) -> (Box<dyn Sink>, Arc<SinkStats>) {
        let stats = Arc::new(SinkStats::default());
        let config = RepeaterConfig {
            destinations,
            protocol,
            backoff_max: Duration::from_millis(50),
        };
        let s = RepeaterSink::new(
            "repeater".into(),
            config,
            stats.clone(),
            Duration::from_secs(5),
        );
        (Box::new(s), stats)
    }

    const PACKETS: [&[u8]; 3] = [b"foo:1|c", b"bar:2|ms|@0.5\nbaz:3|g", b"\xff\x00binary:1|c"];

    #[tokio::test]
    async fn udp_sends_each_packet_as_received_to_every_destination() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dests = vec![
            a.local_addr().unwrap().to_string(),
            b.local_addr().unwrap().to_string(),
        ];
        let (sink, stats) = sink(dests, RepeaterProtocol::Udp);
        assert_eq!(
            RepeaterConfig {
                destinations: Vec::new(),
                protocol: RepeaterProtocol::Udp,
                backoff_max: Duration::from_secs(1)
            }
            .input(),
            Input::Raw
        );
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        for p in PACKETS {
            tx.send(SinkMsg::Raw(Bytes::from_static(p))).await.unwrap();
        }
        // Flushes are not the repeater's business.
        tx.send(SinkMsg::Flush(Default::default())).await.unwrap();
        drop(tx);
        task.await.unwrap();
        for sock in [&a, &b] {
            let mut buf = [0u8; 1024];
            for p in PACKETS {
                let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(&buf[..n], p);
            }
        }
        assert_eq!(get(&stats.lines_sent), 6);
        assert_eq!(get(&stats.dropped), 0);
    }

    #[tokio::test]
    async fn tcp_sends_each_packet_and_a_newline() {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dests = vec![
            l1.local_addr().unwrap().to_string(),
            l2.local_addr().unwrap().to_string(),
        ];
        let (sink, stats) = sink(dests, RepeaterProtocol::Tcp);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        for p in PACKETS {
            tx.send(SinkMsg::Raw(Bytes::from_static(p))).await.unwrap();
        }
        drop(tx);
        let mut want = Vec::new();
        for p in PACKETS {
            want.extend_from_slice(p);
            want.push(b'\n');
        }
        for l in [&l1, &l2] {
            let (mut conn, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, want);
        }
        task.await.unwrap();
        assert_eq!(get(&stats.lines_sent), 6);
        assert_eq!(get(&stats.dropped), 0);
    }

    #[tokio::test]
    async fn tcp_buffers_while_a_destination_is_down() {
        let addr = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let (sink, stats) = sink(vec![addr.to_string()], RepeaterProtocol::Tcp);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        for p in PACKETS {
            tx.send(SinkMsg::Raw(Bytes::from_static(p))).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(&stats.errors) == 0 {
            assert!(Instant::now() < deadline, "no failed connect");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (mut conn, _) = l.accept().await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        task.await.unwrap();
        assert_eq!(
            got,
            b"foo:1|c\nbar:2|ms|@0.5\nbaz:3|g\n\xff\x00binary:1|c\n"
        );
    }
}

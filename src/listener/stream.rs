//! statsd over a byte stream (TCP or a unix socket), newline-delimited or
//! in DogStatsD's length-prefixed frames ([`Framing`]).
//!
//! Each connection keeps one receive buffer. Complete lines are parsed in
//! place; a partial line waits for the rest. A line longer than
//! `max_line_length` is dropped and counted, and the connection carries on
//! from the next newline, so one runaway client line cannot grow memory or
//! kill the connection. A frame longer than `max_line_length` is counted
//! the same way, and closes the connection: nothing says where the next
//! frame starts.
//!
//! Imports, besides `listener` itself: `gate`, `liveness`, `parse`, `shutdown`,
//! `sink`, `stats`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::{Ingest, RawTap, SharedShard, SideCtx};
use crate::liveness::Peer;
use crate::parse::ParseOptions;
use crate::shutdown::CancellationToken;
use crate::sink::prometheus::sent::SentKeys;
use crate::stats::listener::ListenerStats;
use crate::stats::{incr, Stats};

/// After shutdown starts, a connection reads what is already buffered for at
/// most this long per read before it gives up waiting for more.
const DRAIN_READ: Duration = Duration::from_millis(25);

/// How a stream's bytes are cut into packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Lines end with `\n` (TCP, the reference's unix socket); the complete
    /// lines of one read are one packet.
    Newline,
    /// DogStatsD's `unixstream`: each payload (one or more lines) follows
    /// its length, 4 bytes little-endian, and is one packet.
    Length,
    /// Each connection's first four bytes tell: a NUL fourth byte is the top
    /// byte of a length (statsd text has none), anything else is text.
    Auto,
}

/// The length prefix of a [`Framing::Length`] frame.
const LENGTH_PREFIX: usize = 4;

/// What every stream connection shares.
pub struct StreamCtx {
    pub parse: ParseOptions,
    pub shard: SharedShard,
    pub stats: Arc<Stats>,
    pub raw: RawTap,
    pub dump_messages: bool,
    pub max_line_length: usize,
    /// How this listener's connections are cut into packets.
    pub framing: Framing,
    /// The listener's counters; each connection gets a slot.
    pub listener: Arc<ListenerStats>,
    /// Where rewritten keys are noted for the Prometheus exporter.
    pub sent: Option<Arc<SentKeys>>,
    pub idle_timeout: Option<Duration>,
    /// One permit per open connection (`max_connections`), shared by all stream listeners.
    pub connections: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub token: CancellationToken,
    /// The listener's allow-list (checked by its accept loop) and TLS
    /// (each connection's handshake runs on its own task, after its permit).
    pub gate: Arc<crate::gate::Gate>,
    /// Liveness and events.
    pub side: SideCtx,
}

impl StreamCtx {
    fn ingest(&self) -> Ingest {
        Ingest::new(
            &self.parse,
            self.shard.clone(),
            self.stats.clone(),
            self.raw.clone(),
            self.dump_messages,
        )
        .counted_in(&self.listener)
        .recording_sent(self.sent.clone())
        .with_side(&self.side)
    }

    /// Take a connection: serve it on its own task if a permit is free,
    /// otherwise close it at once and count the refusal.
    pub fn accept<S>(self: &Arc<Self>, stream: S, peer: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permit = match self.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                incr(&self.stats.connections_rejected, 1);
                tracing::warn!(%peer, "connection refused: max_connections reached");
                return;
            }
        };
        incr(&self.stats.connections_accepted, 1);
        incr(&self.stats.connections_open, 1);
        let ctx = self.clone();
        self.tracker.spawn(async move {
            // A TCP peer is its address; a unix socket client, the socket.
            let source = match peer.parse::<std::net::SocketAddr>() {
                Ok(a) => Peer::Ip(a.ip()),
                Err(_) => Peer::Local(format!("unix:{peer}").into()),
            };
            // With TLS, the handshake (bounded in time) comes first; one
            // that fails was counted and logged by the gate.
            if let Some(stream) = ctx.gate.open(stream, &peer).await {
                if let Err(e) = ctx.serve(stream, source).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            ctx.stats
                .connections_open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }

    async fn serve<S: AsyncRead + Unpin>(&self, mut stream: S, peer: Peer) -> io::Result<()> {
        let mut ingest = self.ingest();
        ingest.set_peer(Some(peer));
        let mut conn = Conn {
            ingest,
            buf: BytesMut::with_capacity(16 * 1024),
            discarding: false,
            max: self.max_line_length,
            framing: self.framing,
            stats: &self.stats,
        };
        loop {
            let read = tokio::select! {
                biased;
                _ = self.token.cancelled() => break,
                r = read_with_idle(&mut stream, &mut conn.buf, self.idle_timeout) => r?,
            };
            match read {
                Some(0) => return Ok(()),
                Some(_) => conn.process()?,
                None => {
                    incr(&self.stats.connections_idle_closed, 1);
                    tracing::debug!("closing idle connection");
                    return Ok(());
                }
            }
        }
        // Shutting down: whatever the client already sent is in the socket
        // buffer; take it, then stop.
        while let Ok(r) = tokio::time::timeout(DRAIN_READ, stream.read_buf(&mut conn.buf)).await {
            match r? {
                0 => break,
                _ => conn.process()?,
            }
        }
        Ok(())
    }
}

/// `Some(n)` bytes read, or `None` when the idle timeout passed first.
async fn read_with_idle<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> io::Result<Option<usize>> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    match idle {
        Some(d) => match tokio::time::timeout(d, stream.read_buf(buf)).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        },
        None => stream.read_buf(buf).await.map(Some),
    }
}

struct Conn<'a> {
    ingest: Ingest,
    buf: BytesMut,
    /// Inside a line that was already too long: skip to the next newline.
    discarding: bool,
    max: usize,
    /// [`Framing::Auto`] until the first four bytes are in.
    framing: Framing,
    stats: &'a Stats,
}

impl Conn<'_> {
    /// Consume every complete packet in the buffer. An error closes the
    /// connection.
    fn process(&mut self) -> io::Result<()> {
        if self.framing == Framing::Auto {
            if self.buf.len() < LENGTH_PREFIX {
                return Ok(());
            }
            self.framing = if self.buf[LENGTH_PREFIX - 1] == 0 {
                Framing::Length
            } else {
                Framing::Newline
            };
        }
        match self.framing {
            Framing::Length => self.frames(),
            _ => {
                self.lines();
                Ok(())
            }
        }
    }

    /// Consume every complete length-prefixed frame in the buffer.
    fn frames(&mut self) -> io::Result<()> {
        while self.buf.len() >= LENGTH_PREFIX {
            let mut len = [0u8; LENGTH_PREFIX];
            len.copy_from_slice(&self.buf[..LENGTH_PREFIX]);
            let len = u32::from_le_bytes(len) as usize;
            if len > self.max {
                incr(&self.stats.lines_too_long, 1);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a {len}-byte frame is longer than max_line_length"),
                ));
            }
            if self.buf.len() < LENGTH_PREFIX + len {
                break;
            }
            self.buf.advance(LENGTH_PREFIX);
            let frame = self.buf.split_to(len);
            if !frame.is_empty() {
                self.ingest.packet(&frame);
            }
        }
        Ok(())
    }

    /// Consume every complete line in the buffer.
    fn lines(&mut self) {
        if self.discarding {
            match memchr(b'\n', &self.buf) {
                Some(i) => {
                    self.buf.advance(i + 1);
                    self.discarding = false;
                }
                None => {
                    self.buf.clear();
                    return;
                }
            }
        }
        let Some(last_nl) = self.buf.iter().rposition(|&b| b == b'\n') else {
            self.check_partial();
            return;
        };
        let complete = self.buf.split_to(last_nl + 1);
        // Hand over runs of acceptable lines in one call; skip overlong ones.
        let data = &complete[..last_nl];
        let mut start = 0;
        let mut run_start = 0;
        while start <= data.len() {
            let end = memchr(b'\n', &data[start..])
                .map(|i| start + i)
                .unwrap_or(data.len());
            if end - start > self.max {
                if run_start < start {
                    self.ingest.packet(&data[run_start..start - 1]);
                }
                incr(&self.stats.lines_too_long, 1);
                run_start = end + 1;
            }
            start = end + 1;
        }
        if run_start < data.len() {
            self.ingest.packet(&data[run_start..]);
        }
        self.check_partial();
    }

    /// A partial line already over the limit will be dropped whatever follows.
    fn check_partial(&mut self) {
        if self.buf.len() > self.max {
            incr(&self.stats.lines_too_long, 1);
            self.buf.clear();
            self.discarding = true;
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memchr_finds_first() {
        assert_eq!(memchr(b'\n', b"ab\ncd\n"), Some(2));
        assert_eq!(memchr(b'\n', b"abc"), None);
    }
}

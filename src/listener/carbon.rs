//! Carbon input: the plaintext line protocol over TCP and UDP, and the
//! pickle protocol over TCP. Bytes in; [`crate::relay::ingest`] checks and
//! routes them.
//!
//! Flow control (`on_full = "block"`): a TCP connection whose next point a
//! live destination has no room for stops reading until the destination's
//! writer makes room, so the client is slowed by TCP instead of its points
//! being dropped (carbon's `USE_FLOW_CONTROL`). The wait is async and holds
//! no lock; other connections go on unless they need the same full
//! destination. UDP never waits.
//!
//! At shutdown every connection reads what its client already sent (as the
//! statsd streams do), no longer waiting for room: what does not fit is
//! dropped and counted.
//!
//! Connections are limited as the statsd streams limit theirs: at most
//! `[relay] max_connections` line and pickle connections are open together
//! (more are closed at once and counted), and a connection that sends
//! nothing for `[relay] idle_timeout` is closed and counted. The open count
//! lives in the relay's counters, which every relay listener shares.
//!
//! Imports, besides `listener` itself: `gate`, `parse`, `relay`, `shutdown`,
//! `stats`, `supervise`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::task::TaskTracker;

use crate::parse::pickle::{next_frame, PickleError};
use crate::relay::config::CarbonInputOptions;
use crate::relay::ingest::{decode_pickle, route_lines, route_lines_from, route_points_from};
use crate::relay::router::Router;
use crate::shutdown::CancellationToken;
use crate::stats::incr;
use crate::stats::relay::DropReason;

/// After shutdown starts, a read waits at most this long for buffered data.
const DRAIN_READ: Duration = Duration::from_millis(25);

/// What every carbon listener and connection shares.
pub struct CarbonCtx {
    /// Where every accepted point goes.
    pub router: Arc<Router>,
    /// Line checks (`max_line_length` at least 1: a line is never
    /// unbounded) and connection limits.
    pub opts: CarbonInputOptions,
    /// Largest pickle frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Tracks connections, so shutdown waits for them to drain.
    pub tracker: TaskTracker,
    /// Cancelled when the server shuts down.
    pub token: CancellationToken,
    /// The listener's allow-list and, for TCP, its TLS.
    pub gate: Arc<crate::gate::Gate>,
}

/// Bind a UDP socket for carbon lines.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Which protocol a TCP listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Carbon plaintext lines.
    Line,
    /// Length-prefixed pickle frames.
    Pickle,
}

/// Accept until the token is cancelled; each connection on its own task.
pub async fn accept_loop(listener: TcpListener, kind: StreamKind, ctx: Arc<CarbonCtx>) {
    // Accept errors (out of file descriptors...): the one backoff.
    let mut backoff =
        crate::supervise::Backoff::between(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            biased;
            r = listener.accept() => r,
            _ = ctx.token.cancelled() => {
                // Connections the kernel already completed may hold data
                // their clients consider sent: take them before stopping.
                while let Ok(Ok((stream, peer))) =
                    tokio::time::timeout(DRAIN_READ, listener.accept()).await
                {
                    if ctx.gate.admits(peer.ip()) {
                        ctx.spawn(stream, peer, kind);
                    }
                }
                return;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                if ctx.gate.admits(peer.ip()) {
                    ctx.spawn(stream, peer, kind);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "carbon accept failed");
                tokio::time::sleep(backoff.fail()).await;
            }
        }
    }
}

/// How a read ended.
enum Read {
    /// This many bytes; 0 at end of stream (or, during shutdown, when
    /// nothing more is already there).
    Bytes(usize),
    /// Nothing came for the idle timeout.
    Idle,
}

/// Read more into `buf`.
async fn read_more<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    token: &CancellationToken,
    idle: Option<Duration>,
) -> io::Result<Read> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    if !token.is_cancelled() {
        let read = async {
            match idle {
                Some(d) => match tokio::time::timeout(d, s.read_buf(buf)).await {
                    Ok(r) => r.map(Read::Bytes),
                    Err(_) => Ok(Read::Idle),
                },
                None => s.read_buf(buf).await.map(Read::Bytes),
            }
        };
        tokio::select! {
            biased;
            r = read => return r,
            _ = token.cancelled() => {}
        }
    }
    match tokio::time::timeout(DRAIN_READ, s.read_buf(buf)).await {
        Ok(r) => r.map(Read::Bytes),
        Err(_) => Ok(Read::Bytes(0)),
    }
}

/// Add one to `open` unless `max` (0: no limit) are open already.
fn reserve(open: &std::sync::atomic::AtomicU64, max: usize) -> bool {
    use std::sync::atomic::Ordering;
    if max == 0 {
        open.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < max as u64).then_some(n + 1)
    })
    .is_ok()
}

impl CarbonCtx {
    /// Serve a connection on its own task if fewer than `max_connections`
    /// are open; otherwise close it at once and count the refusal.
    fn spawn(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, kind: StreamKind) {
        let stats = &self.router.stats;
        if !reserve(&stats.connections_open, self.opts.max_connections) {
            incr(&stats.connections_rejected, 1);
            tracing::debug!("carbon connection refused: [relay] max_connections reached");
            return;
        }
        let c = self.clone();
        incr(&stats.connections, 1);
        self.tracker.spawn(async move {
            // With TLS, the handshake (bounded in time) comes first; one
            // that fails was counted and logged by the gate.
            if let Some(stream) = c.gate.open(stream, &peer.to_string()).await {
                let r = match kind {
                    StreamKind::Line => c.serve_lines(stream).await,
                    StreamKind::Pickle => c.serve_pickle(stream).await,
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, "carbon connection ended with an error");
                }
            }
            incr(&c.router.stats.disconnects, 1);
            c.router
                .stats
                .connections_open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// Read more; `Ok(0)` also when the connection was idle too long (then
    /// counted), so that it ends as at end of stream.
    async fn read<S: AsyncRead + Unpin>(&self, s: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
        match read_more(s, buf, &self.token, self.opts.idle_timeout).await? {
            Read::Bytes(n) => Ok(n),
            Read::Idle => {
                incr(&self.router.stats.connections_idle_closed, 1);
                tracing::debug!("closing idle carbon connection");
                Ok(0)
            }
        }
    }

    async fn serve_lines<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> io::Result<()> {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut discarding = false;
        let max_line_length = self.opts.line.max_line_length;
        loop {
            let n = self.read(&mut s, &mut buf).await?;
            if n == 0 {
                // A last line without its newline still counts.
                if !discarding && !buf.is_empty() {
                    self.stream_lines(&buf).await;
                }
                return Ok(());
            }
            if discarding {
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        buf.advance(i + 1);
                        discarding = false;
                    }
                    None => {
                        buf.clear();
                        continue;
                    }
                }
            }
            if let Some(last) = buf.iter().rposition(|&b| b == b'\n') {
                let complete = buf.split_to(last + 1);
                self.stream_lines(&complete[..last]).await;
            }
            if max_line_length != 0 && buf.len() > max_line_length {
                incr(self.router.stats.invalid(DropReason::TooLong), 1);
                buf.clear();
                discarding = true;
            }
        }
    }

    fn lines(&self, data: &[u8]) {
        route_lines(&self.router, data, &self.opts.line);
    }

    /// Route a stream's complete lines, waiting for room where needed (not
    /// reading meanwhile, which is what slows the client).
    async fn stream_lines(&self, data: &[u8]) {
        let mut off = 0;
        while let Some((n, w)) = route_lines_from(
            &self.router,
            &data[off..],
            &self.opts.line,
            !self.token.is_cancelled(),
        ) {
            off += n;
            self.router.wait(w, &self.token).await;
        }
    }

    /// Route decoded pickle points, waiting for room where needed.
    async fn stream_points(&self, points: &[crate::parse::pickle::Point]) {
        let mut off = 0;
        while let Some((n, w)) =
            route_points_from(&self.router, &points[off..], !self.token.is_cancelled())
        {
            off += n;
            self.router.wait(w, &self.token).await;
        }
    }

    async fn serve_pickle<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> io::Result<()> {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut points = Vec::new();
        loop {
            // Every complete frame in the buffer.
            loop {
                match next_frame(&buf, self.max_frame_bytes) {
                    Ok(Some(frame)) => {
                        let decoded = decode_pickle(
                            &self.router,
                            frame.payload,
                            &self.opts.line,
                            &mut points,
                        );
                        let n = frame.consumed;
                        buf.advance(n);
                        match decoded {
                            Ok(()) => self.stream_points(&points).await,
                            Err(e) => {
                                incr(self.router.stats.invalid(DropReason::BadFrame), 1);
                                tracing::debug!(error = %e, "bad pickle frame");
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e @ PickleError::FrameTooLarge { .. }) => {
                        // The stream cannot be resynchronised past a frame we
                        // will not read: close it, as carbon does.
                        incr(self.router.stats.invalid(DropReason::BadFrame), 1);
                        tracing::warn!(error = %e, "closing pickle connection");
                        return Ok(());
                    }
                    Err(e) => {
                        incr(self.router.stats.invalid(DropReason::BadFrame), 1);
                        tracing::debug!(error = %e, "bad pickle frame");
                        return Ok(());
                    }
                }
            }
            if self.read(&mut s, &mut buf).await? == 0 {
                if !buf.is_empty() {
                    incr(self.router.stats.invalid(DropReason::BadFrame), 1);
                }
                return Ok(());
            }
        }
    }
}

/// Receive datagrams of carbon lines until the token is cancelled, then
/// take what the socket already holds.
pub async fn udp_loop(sock: UdpSocket, ctx: Arc<CarbonCtx>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let r = tokio::select! {
            biased;
            r = sock.recv_from(&mut buf) => r,
            _ = ctx.token.cancelled() => break,
        };
        match r {
            Ok((n, from)) if ctx.gate.admits(from.ip()) => ctx.lines(&buf[..n]),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "carbon udp receive failed"),
        }
    }
    while let Ok((n, from)) = sock.try_recv_from(&mut buf) {
        if ctx.gate.admits(from.ip()) {
            ctx.lines(&buf[..n]);
        }
    }
}

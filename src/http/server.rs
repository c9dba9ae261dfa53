//! The axum application and its server: routes, graceful shutdown, and a
//! listener that bounds and counts what clients do to it.
//!
//! Imports, besides `http` itself: `front`, `gate`, `shutdown`, `stats`, `tls`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::front::Front;
use crate::gate::Gate;
use crate::shutdown::CancellationToken;
use crate::stats::{incr, Stats};
use crate::tls::MaybeTls;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{api, status};

/// Open HTTP connections at most; more are closed at once and counted
/// (`http_connections_rejected`). Prometheus and a few operators need a
/// handful; this bounds what a flood of idle connections can hold.
pub const MAX_CONNECTIONS: usize = 1024;

/// The HTTP listener: serves only clients its gate admits, finishes TLS
/// handshakes (when the web config file asks for TLS) on their own tasks so
/// that a slow one holds up no other client, bounds the open connections and
/// counts client errors.
struct Guarded {
    inner: TcpListener,
    stats: Arc<Stats>,
    slots: Arc<Semaphore>,
    gate: Arc<Gate>,
    /// Connections whose handshake finished, from their tasks.
    ready: mpsc::Receiver<(MaybeTls<TcpStream>, SocketAddr, OwnedSemaphorePermit)>,
    ready_tx: mpsc::Sender<(MaybeTls<TcpStream>, SocketAddr, OwnedSemaphorePermit)>,
}

impl axum::serve::Listener for Guarded {
    type Io = CountedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedIo, SocketAddr) {
        loop {
            let (stream, addr) = tokio::select! {
                Some((io, addr, permit)) = self.ready.recv() => {
                    return (self.counted(io, permit), addr);
                }
                // Retries (and backs off on) accept errors itself.
                a = axum::serve::Listener::accept(&mut self.inner) => a,
            };
            if !self.gate.admits(addr.ip()) {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                incr(&self.stats.http_connections_rejected, 1);
                continue;
            };
            if !self.gate.is_tls() {
                return (self.counted(MaybeTls::Plain(stream), permit), addr);
            }
            let (gate, tx) = (self.gate.clone(), self.ready_tx.clone());
            tokio::spawn(async move {
                // A failed or slow handshake was counted and logged by the gate.
                if let Some(io) = gate.open(stream, &addr.to_string()).await {
                    let _ = tx.send((io, addr, permit)).await;
                }
            });
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Guarded {
    fn counted(&self, inner: MaybeTls<TcpStream>, permit: OwnedSemaphorePermit) -> CountedIo {
        CountedIo {
            inner,
            stats: self.stats.clone(),
            _permit: permit,
            read_any: false,
            answered: false,
        }
    }
}

/// One HTTP connection. Counts in `http_client_errors` every answer with a
/// 4xx status (the parser's 400 and 431 for garbage, unknown paths, bad
/// parameters, a missing token), and a connection that sent bytes but was
/// closed without any answer (garbage the parser gave up on).
struct CountedIo {
    inner: MaybeTls<TcpStream>,
    stats: Arc<Stats>,
    _permit: OwnedSemaphorePermit,
    read_any: bool,
    answered: bool,
}

impl CountedIo {
    /// A write that starts a response head: count a client error.
    fn saw_write(&mut self, first: &[u8]) {
        if first.starts_with(b"HTTP/1.") {
            self.answered = true;
            if first.get(9) == Some(&b'4') {
                incr(&self.stats.http_client_errors, 1);
            }
        }
    }
}

impl Drop for CountedIo {
    fn drop(&mut self) {
        if self.read_any && !self.answered {
            incr(&self.stats.http_client_errors, 1);
        }
    }
}

impl AsyncRead for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.read_any = true;
        }
        r
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.saw_write(buf);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                self.saw_write(first);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve `app` on `listener` until `token` is cancelled, behind `gate`
/// (its allow-list and TLS), with the connection bound and the client
/// error counts of the HTTP server (also the aggregator's listener).
pub async fn run(
    listener: TcpListener,
    stats: Arc<Stats>,
    gate: Arc<Gate>,
    app: Router,
    token: CancellationToken,
) {
    let (ready_tx, ready) = mpsc::channel(64);
    let guarded = Guarded {
        inner: listener,
        stats,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        gate,
        ready,
        ready_tx,
    };
    if let Err(e) = axum::serve(guarded, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Every route; `POST /-/reload` answers 503 where the server has no
/// reload hook. With a web config file's users, every route needs basic
/// auth; its headers go on every answer.
pub fn router(front: Arc<Front>) -> Router {
    // Bad query strings are answered by axum's own `Query` rejection: 400.
    Router::new()
        .route("/", get(status::page))
        .route("/api/status", get(status::api))
        .route("/metrics", get(api::metrics))
        .route("/health", get(api::health))
        .route("/api/stats", get(api::stats))
        .route("/api/series", get(api::series))
        .route("/api/top", get(api::top))
        .route("/api/dark", get(api::dark))
        .route("/api/events", get(api::events))
        .route("/api/checks", get(api::checks))
        .route("/-/reload", post(api::reload))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            front.clone(),
            super::access::check,
        ))
        .with_state(front)
}

/// Serve HTTP on `listener` until `token` is cancelled; requests in flight
/// are finished first.
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    gate: Arc<Gate>,
    token: CancellationToken,
) {
    let stats = front.stats.clone();
    run(listener, stats, gate, router(front), token).await
}

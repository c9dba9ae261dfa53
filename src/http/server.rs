//! The axum application and its server: routes, graceful shutdown, and a
//! listener that bounds and counts what clients do to it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::front::Front;
use crate::shutdown::CancellationToken;
use crate::stats::{incr, Stats};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api;

/// Open HTTP connections at most; more are closed at once and counted
/// (`http_connections_rejected`). Prometheus and a few operators need a
/// handful; this bounds what a flood of idle connections can hold.
pub const MAX_CONNECTIONS: usize = 1024;

/// The HTTP listener: bounds the open connections and counts client errors.
struct Guarded {
    inner: TcpListener,
    stats: Arc<Stats>,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Guarded {
    type Io = CountedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedIo, SocketAddr) {
        loop {
            // Retries (and backs off on) accept errors itself.
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        CountedIo {
                            inner: stream,
                            stats: self.stats.clone(),
                            _permit: permit,
                            read_any: false,
                            answered: false,
                        },
                        addr,
                    )
                }
                Err(_) => {
                    incr(&self.stats.http_connections_rejected, 1);
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One HTTP connection. Counts in `http_client_errors` every answer with a
/// 4xx status (the parser's 400 and 431 for garbage, unknown paths, bad
/// parameters, a missing token), and a connection that sent bytes but was
/// closed without any answer (garbage the parser gave up on).
struct CountedIo {
    inner: TcpStream,
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

/// Serve `app` on `listener` until `token` is cancelled.
async fn run(listener: TcpListener, stats: Arc<Stats>, app: Router, token: CancellationToken) {
    let guarded = Guarded {
        inner: listener,
        stats,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    if let Err(e) = axum::serve(guarded, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Every route; `POST /-/reload` answers 503 where the server has no
/// reload hook.
pub fn router(front: Arc<Front>) -> Router {
    // Bad query strings are answered by axum's own `Query` rejection: 400.
    Router::new()
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
        .with_state(front)
}

/// Serve HTTP on `listener` until `token` is cancelled; requests in flight
/// are finished first.
pub async fn serve(listener: TcpListener, front: Arc<Front>, token: CancellationToken) {
    let stats = front.stats.clone();
    run(listener, stats, router(front), token).await
}

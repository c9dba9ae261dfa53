//! statsd over TCP: an accept loop that hands each connection to [`StreamCtx`].
//!
//! Imports, besides `listener` itself: `supervise`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::stream::StreamCtx;

/// Bind a TCP listener (SO_REUSEADDR, so a restart does not wait out TIME_WAIT).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accept until the token is cancelled.
pub async fn accept_loop(listener: TcpListener, ctx: Arc<StreamCtx>) {
    // Accept errors (out of file descriptors...): the one backoff.
    let mut backoff =
        crate::supervise::Backoff::between(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            _ = ctx.token.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                if ctx.gate.admits(peer.ip()) {
                    ctx.accept(stream, peer.to_string());
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(backoff.fail()).await;
            }
        }
    }
}

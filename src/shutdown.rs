//! The shutdown protocol.
//!
//! One [`CancellationToken`] stops every listener. The order after that is
//! what makes "no accepted line is lost" true, and [`crate::server`] drives it:
//!
//! 1. The token is cancelled (SIGINT, SIGTERM, or [`crate::server::Running::shutdown`]).
//!    Listeners stop accepting new connections and stop waiting for new data.
//! 2. Each listener drains what the kernel already holds for it (UDP datagrams
//!    in the socket buffer, bytes already sent on open streams) into its shard,
//!    then exits. Its raw-packet senders are dropped with it.
//! 3. The flusher is told to do its final flush, which merges every shard, and
//!    then exits, dropping the flush senders.
//! 4. Each sink sees its queue close, delivers what it holds within
//!    `shutdown_timeout`, and returns. Whatever it could not deliver by then
//!    is counted and logged, never dropped silently.
//!
//! Queue closure is the only "stop" signal sinks get, so a sink cannot stop
//! before it has seen the final flush.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Await `fut` for at most `deadline`; `None` if it did not finish in time.
pub async fn with_deadline<F: Future>(deadline: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(deadline, fut).await.ok()
}

/// Resolve on SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT will stop the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

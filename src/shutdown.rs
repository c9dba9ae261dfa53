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
//!
//! Owns the stop token and the signal handling. Imports nothing of the crate.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Await `fut` for at most `deadline`; `None` if it did not finish in time.
pub async fn with_deadline<F: Future>(deadline: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(deadline, fut).await.ok()
}

/// SIGINT and SIGTERM, watched from the moment [`StopSignals::watch`]
/// returns: a signal that comes while the server is still starting is not
/// lost (nor does it end the process by its default action), it stops the
/// server once it runs.
pub struct StopSignals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Start watching (needs a tokio runtime).
    pub fn watch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch {name}; it will not stop the server in order");
                    None
                }
            };
            StopSignals {
                int: watch(SignalKind::interrupt(), "SIGINT"),
                term: watch(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolve on the first SIGINT or SIGTERM (at once if one came since
    /// [`StopSignals::watch`]).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = one(&mut self.int) => {}
                _ = one(&mut self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

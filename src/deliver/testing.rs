//! Helpers for the engines' tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::SinkStats;

/// Poll `cond` until it holds, for at most five seconds.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A loopback address nothing listens on (until the test binds it again).
pub async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Spawn `run(stats, rx)` on a fresh queue and fresh counters, as a sink
/// runs its engine.
pub fn spawn<M, F>(
    run: impl FnOnce(Arc<SinkStats>, mpsc::Receiver<M>) -> F,
) -> (mpsc::Sender<M>, Arc<SinkStats>, JoinHandle<()>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let stats = Arc::new(SinkStats::default());
    let task = tokio::spawn(run(stats.clone(), rx));
    (tx, stats, task)
}

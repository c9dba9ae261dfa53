//! The carbon relay: route carbon line and pickle input to destination
//! clusters with carbon's own placement.
//!
//! [`ingest`] checks carbon lines and pickle frames (with the parsers of
//! [`crate::parse::carbon`] and [`crate::parse::pickle`]) and counts what it
//! refuses; [`router`] decides where each point goes (rules, rewrites,
//! clusters and their methods, placement by [`hashing`]); [`destination`]
//! holds one bounded queue per destination and runs its writer on the
//! stream engine ([`crate::deliver::stream`]); [`config`] is the validated
//! `[relay]`; `crate::stats::relay` counts everything under carbon-c-relay's
//! names; the `relay` sink (`crate::sink::relay`) routes the statsd flush
//! output through the same clusters. The listeners
//! (`crate::listener::carbon`) call [`router::Router::route`] (UDP, never
//! waits) or [`router::Router::route_stream`] (TCP line and pickle, which
//! wait for room at a live destination with `on_full = "block"`).
//! [`RelayRuntime`] runs the writers, warns (at most once per destination
//! every [`DROP_LOG_EVERY`]) when points were dropped, and stops them in
//! order.
//!
//! Owns the `[relay]` routing, placement and destinations. Imports:
//! [`crate::parse`], [`crate::deliver`], [`crate::spool`], [`crate::tls`],
//! [`crate::stats`], [`crate::supervise`] and config's shared checks; never the
//! runtime or the listeners.

pub mod config;
pub mod destination;
pub mod hashing;
pub mod ingest;
pub mod router;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::stats::Stats;
use crate::supervise::Backoff;
use config::RelayConfig;
use destination::Closing;
use router::Router;

/// One carbon data point on its way through the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric path, tags included (`name;k=v`).
    pub name: Bytes,
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: i64,
}

/// How often dropped points are logged (per destination, when any were).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long after the shutdown deadline a writer may take to finish: each
/// stops delivering by itself at the deadline (or spools before it), and
/// this covers only counting what it drops and closing its connection.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// A running relay: one writer task per destination, the task that moves
/// points off down destinations, the self-metrics task and the drop logger.
pub struct RelayRuntime {
    router: Arc<Router>,
    /// The writers' stop signal, with the instants by which they give up.
    closing: Closing,
    writers: Vec<JoinHandle<()>>,
    stats_task: Option<JoinHandle<()>>,
    drop_log: JoinHandle<()>,
}

impl RelayRuntime {
    /// Spawn the relay's tasks (on the current tokio runtime). Each writer
    /// runs under [`crate::supervise`]: a panic starts it again on the same
    /// queue after the backoff, counted in `stats` as the task
    /// `relay-destination/<host>:<port>`. The batch it was writing then may
    /// be lost (up to `batch` points; carbon may also see some twice).
    pub fn start(router: Arc<Router>, cfg: &RelayConfig, stats: &Stats) -> RelayRuntime {
        let closing = Closing::new();
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, destination::Item)>();
        let mut writers = Vec::new();
        for (i, d) in router.dests.iter().enumerate() {
            let task = stats.task(&format!("relay-destination/{}:{}", d.host, d.port));
            let (d, tuning, rstats, tx, closing) = (
                d.clone(),
                cfg.tuning.clone(),
                router.stats.clone(),
                tx.clone(),
                closing.clone(),
            );
            let stop = Some(closing.token().clone());
            writers.push(tokio::spawn(async move {
                crate::supervise::supervise(task, stop, Backoff::default(), move || {
                    let run = destination::run(
                        i,
                        d.clone(),
                        tuning.clone(),
                        rstats.clone(),
                        tx.clone(),
                        closing.clone(),
                    );
                    async move {
                        run.await;
                        Ok(())
                    }
                })
                .await;
            }));
        }
        drop(tx);
        // Ends when every writer (and so every sender) is gone.
        let r = router.clone();
        tokio::spawn(async move {
            while let Some((from, item)) = rx.recv().await {
                r.reroute(from, item);
            }
        });
        let stats_task = cfg.stats_interval.map(|every| {
            let r = router.clone();
            let prefix = cfg.stats_prefix.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    send_self_metrics(&r, &prefix);
                }
            })
        });
        let r = router.clone();
        let drop_log = tokio::spawn(async move {
            let mut seen = vec![0u64; r.dests.len()];
            let mut tick = tokio::time::interval(DROP_LOG_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                report_drops(&r, &mut seen);
            }
        });
        RelayRuntime {
            router,
            closing,
            writers,
            stats_task,
            drop_log,
        }
    }

    /// The router the listeners (and the `relay` sink) feed.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Deliver what the queues hold within `deadline`, then stop. Whatever is
    /// left is counted as dropped and logged.
    pub async fn shutdown(self, deadline: Duration) {
        if let Some(t) = self.stats_task {
            t.abort();
        }
        self.drop_log.abort();
        // Writers with a spool get the last quarter of the deadline (at most
        // a second) to spool what they could not deliver; the others deliver
        // until the end, then drop and count what is left.
        let started = tokio::time::Instant::now();
        let spool_at = started + deadline - (deadline / 4).min(Duration::from_secs(1));
        let end = started + deadline;
        self.closing.close(spool_at, end);
        let aborts: Vec<_> = self.writers.iter().map(|w| w.abort_handle()).collect();
        let mut writers = self.writers;
        let mut all_done = true;
        for w in &mut writers {
            if tokio::time::timeout_at(end + SHUTDOWN_GRACE, &mut *w)
                .await
                .is_err()
            {
                all_done = false;
                break;
            }
        }
        if !all_done {
            for a in aborts {
                a.abort();
            }
        }
        // After the deadline, or (rarely) points moved off a down
        // destination onto one whose writer had already finished: counted,
        // never lost silently.
        let lost: u64 = self
            .router
            .dests
            .iter()
            .map(|d| d.discard(&self.router.stats))
            .sum();
        if lost > 0 {
            tracing::error!(lost, "relay points not delivered at shutdown");
        }
    }
}

/// Warn once per destination that dropped points since the last call
/// (`seen` holds the totals then), with the totals.
pub fn report_drops(router: &Router, seen: &mut [u64]) {
    use std::sync::atomic::Ordering::Relaxed;
    for (d, last) in router.dests.iter().zip(seen.iter_mut()) {
        let total = d.stats.dropped.load(Relaxed);
        if total > *last {
            tracing::warn!(
                destination = %format!("{}:{}", d.host, d.port),
                dropped = total - *last,
                total,
                queued = d.len(),
                up = d.is_up(),
                stalled = d.is_stalled(),
                "relay destination queue full: points dropped (raise queue/queue_bytes, \
                 or check the destination)"
            );
            *last = total;
        }
    }
}

/// Route the relay's counters through the relay itself, as carbon-c-relay does.
pub fn send_self_metrics(router: &Router, prefix: &str) {
    let now = ingest::now();
    let mut name = String::new();
    for (n, v) in crate::stats::render::relay_values(&router.stats) {
        name.clear();
        name.push_str(prefix);
        name.push('.');
        name.push_str(&n);
        router.route(name.as_bytes(), v as f64, now);
    }
}

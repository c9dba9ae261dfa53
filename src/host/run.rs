//! The collector's thread: one collection per interval into statsyard's
//! own shard, which the flusher merges like a listener's. It starts half an
//! interval after the flusher's ticks would (when both intervals are the
//! same, each flush then holds exactly one collection), and stops when its
//! [`HostTask`] is dropped or stopped.
//!
//! Imports, besides `host` itself: `aggregate`, `log_limit`, `stats`,
//! `supervise`.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::collect::Collector;
use super::config::HostConfig;
use super::write::Writer;
use crate::aggregate::Shard;
use crate::stats::{incr, Stats};

/// A running collector.
pub struct HostTask {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl HostTask {
    /// Start collecting `config` into `shard`.
    pub fn start(
        config: HostConfig,
        shard: Arc<Mutex<Shard>>,
        stats: Arc<Stats>,
    ) -> std::io::Result<HostTask> {
        let (stop, rx) = channel::<()>();
        let task = stats.task("host");
        let mut log = crate::log_limit::LogLimiter::new(10, Duration::from_secs(60));
        let interval = config.interval;
        let mut collector = Collector::new(config);
        let thread = std::thread::Builder::new()
            .name("host-collector".into())
            .spawn(move || {
                let mut next = Instant::now() + interval / 2;
                loop {
                    match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    crate::supervise::catch(&task, "a host collection", &mut log, || {
                        once(&mut collector, &shard, &stats)
                    });
                    next += interval;
                    let now = Instant::now();
                    if next <= now {
                        next = now + interval;
                    }
                }
            })?;
        Ok(HostTask { stop, thread })
    }

    /// Stop; returns once the thread has ended (a collection in progress
    /// finishes first).
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// One collection.
pub fn once(collector: &mut Collector, shard: &Mutex<Shard>, stats: &Stats) {
    let started = Instant::now();
    let c = collector.config().clone();
    let host = c.tags.then_some(c.hostname.as_str());
    let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = Writer::new(&mut shard, &c.prefix, host);
    collector.collect(&mut w);
    let (written, refused) = (w.written, w.refused);
    drop(shard);
    let h = &stats.host;
    incr(&h.collections, 1);
    incr(&h.values, written);
    incr(
        &h.modules_disabled,
        std::mem::take(&mut collector.newly_off),
    );
    if refused > 0 {
        incr(&stats.series_dropped, refused);
    }
    h.collect_micros.store(
        started.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

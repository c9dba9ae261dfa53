//! The flusher: on every interval tick, swap each shard's maps out, merge them
//! into the [`Registry`], compute a [`FlushBatch`] and offer it to every sink.
//!
//! It runs on its own thread so that computing a large flush never occupies a
//! tokio worker that TCP connections or sinks need. Shard locks are held only
//! for the O(1) swap, never for the merge or the compute.
//!
//! The registry has one owner, this thread. The admin console and the HTTP
//! API read (and delete from) it by sending a [`Job`] through a
//! [`FlusherHandle`]: the flusher merges the shards first, so answers are
//! live, as the reference's are, and runs the job between flushes.
//!
//! A panic in a flush, a job or a reload is caught around that one unit of
//! work ([`crate::supervise::catch`]), counted as a `flusher` restart and
//! logged; the thread, its registry and its job queue go on. What a
//! panicking flush had taken is not lost: the shards' maps were swapped out
//! and merged into the registry first, and the registry is cleared only
//! after the batch is computed, so the next flush that succeeds sends it
//! (counters summed over both intervals, timer samples and set members
//! together, gauges at their last value). Only a snapshot whose merge itself
//! panicked loses what it had not merged yet. A job whose run panicked
//! drops its reply, so the asker gets [`FlusherBusy::Stopped`]; a reload
//! that panicked likewise reports an error. A panic that comes back every
//! flush (the same data each time) keeps the data in the registry and says
//! so at every flush, in the log and in `task_restarts`.
//!
//! Owns the registry and the flush timer. Imports: [`crate::aggregate`],
//! [`crate::flush`], [`crate::metric`], the output surface of [`crate::sink`]
//! and [`crate::stats`]; the forwarding roles reach it only through the
//! [`Outflow`] and [`Inflow`] halves it defines.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError as StdTrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::aggregate::{IntervalState, Registry, Shard, Snapshot};
use crate::flush::compute::{compute, ComputeOptions};
use crate::flush::{FlushBatch, Timing};
use crate::sink::{FlushView, Observer, SinkMsg};
use crate::stats::table::Kind;
use crate::stats::{get, incr, SinkStats, Stats};

/// Work run on the flusher thread with the registry, after the shards are merged.
pub type Job = Box<dyn FnOnce(&mut Registry) + Send>;

/// What the flusher thread receives between ticks.
pub enum FlusherMsg {
    /// Do the final flush and return.
    Stop,
    /// Merge the shards, then run the job.
    Run(Job),
    /// New options and outputs from a config reload (or the start).
    Reconfigure(Box<Reconfigure>, tokio::sync::oneshot::Sender<()>),
    /// Every agent an aggregator knows has sent the interval that ends at
    /// this time (Unix ms): flush it now rather than when the grace ends.
    Ready(u64),
}

/// The agent role's half on the flusher thread (`crate::forward::agent`):
/// it takes the forwarded series out of what the flusher merges, so they
/// never reach this process's registry or outputs, and is told when an
/// interval ends.
pub trait Outflow: Send {
    /// Take the forwarded series out of a shard's snapshot; return what
    /// stays local.
    fn split(&mut self, snap: Snapshot) -> Snapshot;
    /// The same for forwarded-in state (a middle tier forwards it on).
    fn split_state(&mut self, st: IntervalState) -> IntervalState;
    /// The interval `[start_ms, start_ms + len_ms)` is over: hand its
    /// forwarded state on (quickly: the sending happens elsewhere).
    fn interval_done(&mut self, start_ms: u64, len_ms: u64);
}

/// The aggregator role's half on the flusher thread
/// (`crate::forward::aggregator`): the forwarded state that is due.
pub trait Inflow: Send {
    /// Take out the forwarded state of every interval that ends at or
    /// before `end_ms` (late state included).
    fn take_due(&mut self, end_ms: u64) -> Option<IntervalState>;
    /// The flush of the interval that ends at `end_ms` went to the outputs
    /// (`early`: every known agent had sent it before the grace ran out).
    fn flushed(&mut self, end_ms: u64, early: bool);
}

/// What a config reload changes in the flusher. The registry is kept.
pub struct Reconfigure {
    pub compute: ComputeOptions,
    pub timing: Timing,
    pub aggregate: crate::aggregate::AggregateOptions,
    pub self_metrics: bool,
    /// Outputs (by name) to let go: a sink's queue closes (it delivers what
    /// it holds and stops), an observer is dropped.
    pub remove: Vec<String>,
    /// New outputs, fed from the next flush on.
    pub add: Vec<Output>,
    /// Shards of new listeners, merged from the next flush on.
    pub shards: Vec<Arc<Mutex<Shard>>>,
}

/// Jobs waiting for the flusher at most; more are refused ([`FlusherBusy`]).
pub const JOB_QUEUE: usize = 64;

/// A job could not be run: the flusher's queue is full or it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlusherBusy {
    /// [`JOB_QUEUE`] jobs are already waiting.
    #[error("the flusher is busy; try again")]
    Full,
    /// The flusher has stopped (shutdown).
    #[error("the flusher has stopped")]
    Stopped,
}

/// Sends jobs to the flusher thread; cheap to clone.
#[derive(Clone)]
pub struct FlusherHandle {
    tx: SyncSender<FlusherMsg>,
}

impl FlusherHandle {
    /// A handle and the receiver [`Flusher::spawn`] takes.
    pub fn channel() -> (FlusherHandle, Receiver<FlusherMsg>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(JOB_QUEUE);
        (FlusherHandle { tx }, rx)
    }

    /// Run `f` on the flusher thread with the live registry and return its
    /// result. Never blocks the caller's thread: a full queue is an error.
    pub async fn run<R, F>(&self, f: F) -> Result<R, FlusherBusy>
    where
        R: Send + 'static,
        F: FnOnce(&mut Registry) -> R + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |reg| {
            // The asker may have gone (a closed connection): nothing to do.
            let _ = reply.send(f(reg));
        });
        match self.tx.try_send(FlusherMsg::Run(job)) {
            Ok(()) => {}
            Err(StdTrySendError::Full(_)) => return Err(FlusherBusy::Full),
            Err(StdTrySendError::Disconnected(_)) => return Err(FlusherBusy::Stopped),
        }
        answer.await.map_err(|_| FlusherBusy::Stopped)
    }

    /// Apply a config reload between flushes; returns once it is applied.
    pub async fn reconfigure(&self, r: Reconfigure) -> Result<(), FlusherBusy> {
        let (done, applied) = tokio::sync::oneshot::channel();
        match self.tx.try_send(FlusherMsg::Reconfigure(Box::new(r), done)) {
            Ok(()) => {}
            Err(StdTrySendError::Full(_)) => return Err(FlusherBusy::Full),
            Err(StdTrySendError::Disconnected(_)) => return Err(FlusherBusy::Stopped),
        }
        applied.await.map_err(|_| FlusherBusy::Stopped)
    }

    /// Flush the interval that ends at `end_ms` now (see
    /// [`FlusherMsg::Ready`]); never blocks, and a full queue only means
    /// it is flushed when its grace ends.
    pub fn ready(&self, end_ms: u64) {
        let _ = self.tx.try_send(FlusherMsg::Ready(end_ms));
    }

    /// Ask for the final flush (blocking only if the queue is full).
    pub fn stop(&self) {
        let _ = self.tx.send(FlusherMsg::Stop);
    }
}

/// One sink's queue, as the flusher sees it.
pub struct SinkQueue {
    pub tx: Sender<SinkMsg>,
    pub stats: Arc<SinkStats>,
}

/// One output, as the flusher sees it: a queue to hand each flush to,
/// and/or an observer that sees each flush with the registry.
pub struct Output {
    pub name: String,
    pub queue: Option<SinkQueue>,
    pub observer: Option<Box<dyn Observer>>,
}

/// Names of the reference's own counters and gauge, under `prefixStats`.
struct InternalNames {
    bad_lines_seen: String,
    packets_received: String,
    metrics_received: String,
    timestamp_lag: String,
}

/// Totals of the self-metrics at the previous flush, to turn them into deltas.
#[derive(Default)]
struct Seen {
    bad_lines_seen: u64,
    packets_received: u64,
    metrics_received: u64,
    /// Sum of every drop counter at the previous flush, for [`Flusher::report_drops`].
    drops: u64,
    /// Sum of every task's restarts at the previous flush.
    task_restarts: u64,
}

pub struct Flusher {
    shards: Vec<Arc<Mutex<Shard>>>,
    registry: Registry,
    compute: ComputeOptions,
    outputs: Vec<Output>,
    stats: Arc<Stats>,
    names: InternalNames,
    seen: Seen,
    /// The previous flush's timestamp, for `timestamp_lag`; 0 before the first.
    old_timestamp: u64,
    /// When flushes happen.
    timing: Timing,
    /// The timestamp the next flush carries (Unix seconds); `None`: the
    /// time it runs, rounded as the reference rounds it.
    stamp: Option<u64>,
    /// Add statsyard's own drop counters to every flush (`flush.self_metrics`).
    self_metrics: bool,
    prefix_stats: String,
    /// Totals of the self-metric counters at the previous flush, by name.
    self_seen: std::collections::HashMap<String, u64>,
    /// `metrics_received` at the last merge, for `last_msg_seen`.
    lines_at_merge: u64,
    /// `[flush] state_file`: saved after the final flush.
    state: Option<crate::config::StateConfig>,
    /// The agent role, when this process forwards.
    outflow: Option<Box<dyn Outflow>>,
    /// The aggregator role, when this process takes forwarded state.
    inflow: Option<Box<dyn Inflow>>,
    /// The end (Unix ms) of the interval being gathered now.
    end_ms: Option<u64>,
    /// The flush running now was asked for early ([`FlusherMsg::Ready`]).
    early: bool,
    /// The final flush is running: every pending interval is due.
    last: bool,
}

impl Flusher {
    pub fn new(
        shards: Vec<Arc<Mutex<Shard>>>,
        registry: Registry,
        compute: ComputeOptions,
        outputs: Vec<Output>,
        stats: Arc<Stats>,
        prefix_stats: &str,
        self_metrics: bool,
    ) -> Flusher {
        let name = |s: &str| format!("{prefix_stats}.{s}");
        Flusher {
            shards,
            registry,
            compute,
            outputs,
            stats,
            names: InternalNames {
                bad_lines_seen: name("bad_lines_seen"),
                packets_received: name("packets_received"),
                metrics_received: name("metrics_received"),
                timestamp_lag: name("timestamp_lag"),
            },
            seen: Seen::default(),
            old_timestamp: 0,
            timing: Timing::default(),
            stamp: None,
            self_metrics,
            prefix_stats: prefix_stats.to_string(),
            self_seen: std::collections::HashMap::new(),
            lines_at_merge: 0,
            state: None,
            outflow: None,
            inflow: None,
            end_ms: None,
            early: false,
            last: false,
        }
    }

    /// The forwarding roles: what this agent forwards, what this
    /// aggregator takes in.
    pub fn with_roles(
        mut self,
        outflow: Option<Box<dyn Outflow>>,
        inflow: Option<Box<dyn Inflow>>,
    ) -> Flusher {
        self.outflow = outflow;
        self.inflow = inflow;
        self
    }

    /// Save gauges (and counters) to the state file at shutdown.
    pub fn with_state(mut self, state: Option<crate::config::StateConfig>) -> Flusher {
        self.state = state;
        self
    }

    /// The last flush at shutdown. With `persist_counters`, the interval's
    /// counters are taken out first and saved instead of flushed; with a state
    /// file, the gauges are saved after the flush.
    fn final_flush(&mut self) {
        self.last = true;
        let carried = match &self.state {
            Some(s) if s.counters => {
                self.merge_shards();
                self.registry.take_counters()
            }
            _ => Vec::new(),
        };
        self.flush();
        let Some(conf) = &self.state else {
            return;
        };
        let lag = self.names.timestamp_lag.as_bytes();
        let state = crate::state::State {
            gauges: self
                .registry
                .gauges_with_ttl()
                .filter(|(k, ..)| k.as_bytes() != lag)
                .map(|(k, v, ttl)| (k.as_bytes().to_vec(), v, ttl))
                .collect(),
            counters: carried
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        };
        match crate::state::save(&conf.path, &state) {
            Ok(()) => tracing::info!(
                path = %conf.path.display(),
                gauges = state.gauges.len(),
                counters = state.counters.len(),
                "state saved"
            ),
            Err(e) => {
                // The counters were not flushed either: say how much was lost.
                tracing::error!(
                    path = %conf.path.display(),
                    error = %e,
                    gauges = state.gauges.len(),
                    counters = state.counters.len(),
                    "cannot save the state file: these gauges and counters are lost"
                );
            }
        }
    }

    /// Apply a reload. Dropping a queue's sender closes it, which is the
    /// sink's signal to deliver what it holds and stop.
    fn reconfigure(&mut self, r: Reconfigure) {
        // What the shards hold now was aggregated under the old options:
        // merge it first, so it is flushed under the same rules as the rest.
        self.merge_shards();
        self.compute = r.compute;
        self.timing = r.timing;
        self.registry.set_options(&r.aggregate);
        self.self_metrics = r.self_metrics;
        self.outputs.retain(|o| !r.remove.contains(&o.name));
        self.outputs.extend(r.add);
        self.shards.extend(r.shards);
    }

    /// Swap every shard's maps out and merge them into the registry, and
    /// note when new lines were last seen.
    fn merge_shards(&mut self) {
        let lines = get(&self.stats.metrics_received);
        if lines != self.lines_at_merge {
            self.lines_at_merge = lines;
            self.stats.last_msg_seen.store(
                crate::stats::unix_now(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        for shard in &self.shards {
            // The swap is O(1); the listener waits at most that long.
            let snap = shard.lock().unwrap_or_else(|e| e.into_inner()).take();
            // Forwarded series leave here, on the flusher: the receive
            // path is the same with or without forwarding.
            let snap = match &mut self.outflow {
                Some(o) => o.split(snap),
                None => snap,
            };
            self.registry.merge(snap);
        }
    }

    /// Run one flush now and hand the batch to every sink.
    pub fn flush(&mut self) -> Arc<FlushBatch> {
        let started = Instant::now();
        self.merge_shards();
        let iv = self.compute.interval.as_millis() as u64;
        let end = self.end_ms.unwrap_or_else(unix_ms);
        if let Some(inflow) = &mut self.inflow {
            let due = if self.last { u64::MAX } else { end };
            if let Some(st) = inflow.take_due(due) {
                let st = match &mut self.outflow {
                    Some(o) => o.split_state(st),
                    None => st,
                };
                self.registry.merge_state(st);
            }
        }
        if let Some(o) = &mut self.outflow {
            o.interval_done(end.saturating_sub(iv), iv);
        }
        self.stats.series_live.store(
            self.registry.live_series().unwrap_or(0) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );

        let s = &self.stats;
        let (bad, packets, metrics) = (
            get(&s.bad_lines_seen),
            get(&s.packets_received),
            get(&s.metrics_received),
        );
        self.registry.add_counter(
            self.names.bad_lines_seen.as_bytes(),
            (bad - self.seen.bad_lines_seen) as f64,
        );
        self.registry.add_counter(
            self.names.packets_received.as_bytes(),
            (packets - self.seen.packets_received) as f64,
        );
        self.registry.add_counter(
            self.names.metrics_received.as_bytes(),
            (metrics - self.seen.metrics_received) as f64,
        );
        self.seen.bad_lines_seen = bad;
        self.seen.packets_received = packets;
        self.seen.metrics_received = metrics;

        let kernel_grew = self.stats.refresh_kernel_drops();
        if self.self_metrics {
            self.add_self_metrics();
        }

        let timestamp = self.stamp.take().unwrap_or_else(unix_seconds_rounded);
        if self.old_timestamp > 0 {
            // As the reference: how late this flush is against the interval, in seconds.
            let lag = timestamp as f64
                - self.old_timestamp as f64
                - self.compute.interval.as_millis() as f64 / 1000.0;
            self.registry
                .set_gauge(self.names.timestamp_lag.as_bytes(), lag);
        }
        self.old_timestamp = timestamp;

        let batch = Arc::new(compute(&self.registry, &self.compute, timestamp));
        for sink in self.outputs.iter().filter_map(|o| o.queue.as_ref()) {
            match sink.tx.try_send(SinkMsg::Flush(batch.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    incr(&sink.stats.queue_dropped, 1);
                    tracing::error!(sink = %sink.stats.name, "sink queue full: flush dropped");
                }
                Err(TrySendError::Closed(_)) => {
                    incr(&sink.stats.queue_dropped, 1);
                    tracing::error!(sink = %sink.stats.name, "sink has stopped: flush dropped");
                }
            }
        }
        // The sinks have their batch; observers see it with the registry
        // before the interval ends.
        let view = FlushView {
            batch: &batch,
            registry: &self.registry,
            now: Instant::now(),
        };
        for o in &mut self.outputs {
            if let Some(observer) = o.observer.as_mut() {
                observer.observe(&view);
            }
        }
        self.registry.end_interval();
        if let Some(inflow) = &mut self.inflow {
            inflow.flushed(end, self.early);
        }
        self.report_drops(&kernel_grew);
        incr(&self.stats.flushes, 1);
        // The status page's chart and rates.
        self.stats
            .history
            .record(crate::stats::history::Sample::take(&self.stats));
        self.stats.last_flush_micros.store(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::debug!(
            series = batch.num_stats(),
            micros = started.elapsed().as_micros() as u64,
            "flushed"
        );
        batch
    }

    /// statsyard's own counters under `<prefixStats>.statsyard.`, next to
    /// the reference's `metrics_received`: the rows of the self-metric
    /// tables shown in Graphite ([`crate::stats::render::graphite`]);
    /// counters as per-interval counts, gauges as they are.
    fn add_self_metrics(&mut self) {
        for (name, total, kind) in crate::stats::render::graphite(&self.stats) {
            let key = format!("{}.statsyard.{name}", self.prefix_stats);
            match kind {
                Kind::Counter => {
                    let before = self.self_seen.insert(name, total).unwrap_or(0);
                    self.registry
                        .add_counter(key.as_bytes(), total.saturating_sub(before) as f64);
                }
                Kind::Gauge | Kind::Flag => self.registry.set_gauge(key.as_bytes(), total as f64),
            }
        }
    }

    /// Say, once per interval at most, that something was dropped: counted drops
    /// must be visible even where no self-metrics endpoint is scraped.
    fn report_drops(&mut self, kernel_grew: &[(Arc<crate::stats::UdpSocketStats>, u64)]) {
        let s = &self.stats;
        for (socket, n) in kernel_grew {
            tracing::warn!(
                addr = %socket.addr,
                dropped = *n,
                total = get(&socket.kernel_drops),
                "the kernel dropped datagrams before statsyard read them; raise udp_recv_buffer \
                 (and net.core.rmem_max) or udp_threads"
            );
        }
        let sinks = s.sinks();
        let sink_drops: u64 = sinks
            .iter()
            .map(|k| get(&k.queue_dropped) + get(&k.dropped))
            .sum();
        let total = get(&s.lines_too_long)
            + get(&s.series_dropped)
            + get(&s.connections_rejected)
            + get(&s.raw_dropped)
            + sink_drops;
        if total > self.seen.drops {
            let per_sink: Vec<String> = sinks
                .iter()
                .map(|k| format!("{}={}+{}", k.name, get(&k.queue_dropped), get(&k.dropped)))
                .collect();
            tracing::warn!(
                lines_too_long = get(&s.lines_too_long),
                series_dropped = get(&s.series_dropped),
                connections_rejected = get(&s.connections_rejected),
                raw_dropped = get(&s.raw_dropped),
                sink_queue_plus_buffer_drops = %per_sink.join(","),
                "data was dropped since start (totals)"
            );
        }
        self.seen.drops = total;
        let tasks = s.tasks();
        let restarts: u64 = tasks.iter().map(|t| get(&t.restarts)).sum();
        if restarts > self.seen.task_restarts {
            let per_task: Vec<String> = tasks
                .iter()
                .filter(|t| get(&t.restarts) > 0)
                .map(|t| format!("{}={}", t.name, get(&t.restarts)))
                .collect();
            tracing::warn!(
                new = restarts - self.seen.task_restarts,
                task_panics = %per_task.join(","),
                "supervised tasks panicked or failed and were restarted since start (totals)"
            );
        }
        self.seen.task_restarts = restarts;
    }

    /// Flush every interval on a dedicated thread, running jobs in between,
    /// until [`FlusherMsg::Stop`] arrives (or every sender is dropped); then do
    /// the final flush and return, which drops the sink queues' senders.
    pub fn spawn(mut self, rx: Receiver<FlusherMsg>) -> std::io::Result<JoinHandle<()>> {
        let task = self.stats.task("flusher");
        let mut log = crate::log_limit::LogLimiter::new(10, Duration::from_secs(60));
        // Each unit of work runs under `catch`: a panic abandons it, and the
        // loop (with the registry and the job queue) goes on.
        let mut guard = move |what: &str, f: &mut dyn FnMut()| {
            crate::supervise::catch(&task, what, &mut log, f);
        };
        std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || {
                // The interval that ends next (Unix ms), and when it is flushed.
                let mut end = self.timing.first_end(self.compute.interval, unix_ms());
                let mut next = instant_at(end + self.timing.grace_ms());
                loop {
                    self.end_ms = Some(end);
                    let wait = next.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(FlusherMsg::Run(job)) => {
                            let mut job = Some(job);
                            guard("a flusher job", &mut || {
                                self.merge_shards();
                                if let Some(job) = job.take() {
                                    job(&mut self.registry);
                                }
                            });
                        }
                        Ok(FlusherMsg::Reconfigure(r, done)) => {
                            let before = (self.compute.interval, self.timing);
                            let mut r = Some(r);
                            let mut done = Some(done);
                            guard("a reload", &mut || {
                                if let Some(r) = r.take() {
                                    self.reconfigure(*r);
                                }
                                if let Some(done) = done.take() {
                                    let _ = done.send(());
                                }
                            });
                            if (self.compute.interval, self.timing) != before {
                                // A new interval starts counting now (or at
                                // the next boundary, aligned).
                                end = self.timing.first_end(self.compute.interval, unix_ms());
                                next = instant_at(end + self.timing.grace_ms());
                            }
                        }
                        Ok(FlusherMsg::Ready(e)) if e != end || unix_ms() < end => {
                            // Not the interval waited for (flushed already),
                            // or not over on this clock: the grace decides.
                        }
                        Ok(FlusherMsg::Ready(_)) | Err(RecvTimeoutError::Timeout) => {
                            let interval = self.compute.interval;
                            self.stamp = self.timing.stamp(end);
                            self.early = Instant::now() < next;
                            guard("a flush", &mut || {
                                self.flush();
                            });
                            self.early = false;
                            // Fell behind (a flush slower than the interval, or
                            // a suspended machine): skip ahead, do not burst.
                            end = self.timing.after(end, interval, unix_ms());
                            next = instant_at(end + self.timing.grace_ms());
                        }
                        Ok(FlusherMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                            guard("the final flush", &mut || {
                                self.final_flush();
                            });
                            return;
                        }
                    }
                }
            })
    }
}

/// Unix time in milliseconds.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `Instant` at Unix time `ms` (now if it has passed).
fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(unix_ms()))
}

/// `Math.round(Date.now() / 1000)`, as the reference stamps its flushes.
fn unix_seconds_rounded() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (d.as_millis() as f64 / 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggregateOptions;
    use crate::metric::{MetricRef, MetricType, Value};

    #[tokio::test]
    async fn a_panicking_job_loses_nothing_the_shards_held() {
        let opts = AggregateOptions::default();
        let shard = Arc::new(Mutex::new(Shard::new(&opts)));
        shard.lock().unwrap().insert(&MetricRef {
            key: b"a",
            kind: MetricType::Counter,
            value: Value::Number(3.0),
            sample_rate: 1.0,
            timestamp: None,
        });
        let stats = Stats::new();
        let sink_stats = stats.sink("q");
        let (tx, mut queue) = tokio::sync::mpsc::channel(4);
        let flusher = Flusher::new(
            vec![shard],
            Registry::new(&opts),
            ComputeOptions {
                interval: Duration::from_secs(3600),
                ..ComputeOptions::default()
            },
            vec![Output {
                name: "q".into(),
                queue: Some(SinkQueue {
                    tx,
                    stats: sink_stats,
                }),
                observer: None,
            }],
            stats.clone(),
            "statsd",
            false,
        );
        let (handle, rx) = FlusherHandle::channel();
        let thread = flusher.spawn(rx).unwrap();
        // The job runs after the shards were merged, then panics.
        let r = handle.run::<(), _>(|_| panic!("a job panics")).await;
        assert_eq!(r, Err(FlusherBusy::Stopped));
        // The thread and the registry are still there, with the data.
        let a = handle.run(|reg: &mut Registry| reg.counter(b"a")).await;
        assert_eq!(a, Ok(Some(3.0)));
        // Counted (by the time the next job ran).
        assert_eq!(get(&stats.task("flusher").restarts), 1);
        handle.stop();
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let Some(SinkMsg::Flush(batch)) = queue.recv().await else {
            panic!("no final flush");
        };
        let a = batch.counters.iter().find(|c| c.key.as_bytes() == b"a");
        assert_eq!(a.map(|c| c.value), Some(3.0));
    }
}

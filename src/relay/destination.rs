//! One destination: a bounded queue of points, and the source through which
//! the stream engine ([`crate::deliver::stream`], pull mode) writes them out
//! over TCP as carbon plaintext lines or pickle frames (protocol 2, encoded
//! by [`crate::deliver::carbon`]).
//!
//! [`DestQueue::push`] never waits: a full queue drops the newest point and
//! counts it (a rate-limited warning names the destination, see
//! [`super::RelayRuntime`]). With `on_full = "block"` the stream receivers
//! first ask [`DestQueue::must_wait`] and, while a destination that is *live*
//! (up, and not stalled: it took a batch within `block_timeout` of holding
//! points) has no room, wait for room with [`DestQueue::wait_for_room`]
//! (carbon's flow control). A destination that is down or stalled never makes
//! anyone wait: its queue fills to the bound and the rest is dropped, counted.
//!
//! The writer ([`run`]) is the engine: it stays connected, takes a batch of
//! up to `batch` points when the previous one is written, checks before
//! each write that carbon has not closed the connection, and on any failure
//! reconnects with exponential backoff. A batch that failed to write goes
//! back to the front of the queue, so a reset connection loses nothing that
//! fits the queue (carbon may then see a few points twice, which it
//! overwrites with the same value).
//!
//! While a destination is down, the points in its queue that belong to an
//! `any_of` or `failover` cluster (those of the failed batch included) are
//! handed back to the router (the `reroute` channel), which sends them to
//! another destination of their cluster. Points of hashed clusters stay, up
//! to the bound.
//!
//! With a spool ([`crate::spool`], `cluster[].spool_dir`), the points that a
//! full queue cannot take while the destination is down (and what a failed
//! batch cannot put back) are spilled into a second bounded buffer instead
//! of being dropped; the engine moves them to the spool in records of
//! `batch` points, encoded for the destination. Connected, it sends one
//! spooled record after each batch from the queue, and all of them while the
//! queue is empty. Down at shutdown, it spools the queue at once; too slow
//! to deliver it by the spool deadline ([`Closing`]), it spools what is left.
//! All spool I/O runs on tokio's blocking pool.
//!
//! Imports, besides `relay` itself: `deliver`, `shutdown`, `spool`, `stats`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::Point;
use crate::deliver::carbon;
use crate::deliver::stream::{self, Input, Mode, Source, StreamConfig};
use crate::deliver::transport::TlsConnect;
use crate::deliver::{Entry, Tag};
use crate::shutdown::CancellationToken;
use crate::spool::SpoolConfig;
use crate::stats::incr;
use crate::stats::relay::{DestinationStats, RelayStats};

/// Marks a queued point that stays with its destination whatever happens
/// (hashed and `forward` clusters).
pub const HELD: u32 = u32::MAX;

/// How points are written to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `path value timestamp\n`.
    Plain,
    /// Length-prefixed pickle frames of `[(path, (timestamp, value)), ...]`, protocol 2.
    Pickle,
}

/// What a stream receiver does when a destination's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room while the destination is live (carbon's flow control);
    /// drop once it is down or stalled.
    Block,
    /// Drop the newest point and count it, always.
    Drop,
}

/// Connection settings shared by every destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Points a destination's queue holds at most.
    pub queue: usize,
    /// Bytes a destination's queue holds at most (names plus overhead).
    pub queue_bytes: usize,
    /// Points written per write (and per pickle frame) at most.
    pub batch: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// What stream receivers do when a queue is full.
    pub on_full: OnFull,
    /// A destination holding points that has not taken a batch for this long
    /// counts as stalled: nobody waits for it.
    pub block_timeout: Duration,
}

/// The spill (points waiting for the spool writer) holds as much as the
/// queue, and at least this much, so a burst into a down destination with a
/// small queue reaches the spool rather than the drop counter.
const SPILL_MIN_POINTS: usize = 65_536;
const SPILL_MIN_BYTES: usize = 16 << 20;

/// Bytes a queued point is charged against `queue_bytes`: its name plus the
/// item and queue-slot overhead.
fn cost(i: &Item) -> usize {
    name_cost(i.point.name.len())
}

fn name_cost(name_len: usize) -> usize {
    name_len + 64
}

/// A destination's points, and what they weigh.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
}

/// A queued point, with the cluster that may move it elsewhere (or [`HELD`]).
#[derive(Debug, Clone)]
pub struct Item {
    pub point: Point,
    pub cluster: u32,
}

/// One destination's queue and health, shared by the router and its writer task.
#[derive(Debug)]
pub struct DestQueue {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    queue: Mutex<Queue>,
    cap: usize,
    cap_bytes: usize,
    notify: Notify,
    /// Woken when the writer takes a batch (room was made).
    room: Notify,
    /// Copies of the queue's length and bytes, for checks without the lock.
    len: AtomicUsize,
    bytes: AtomicUsize,
    /// Milliseconds since `born` of the last batch taken, or of the first
    /// point queued into an empty queue.
    progress: AtomicU64,
    born: Instant,
    block_timeout: Duration,
    /// False from the first failed connect or write until the next connect.
    up: AtomicBool,
    pub stats: Arc<DestinationStats>,
    /// Where points go that a full queue cannot take while the destination
    /// is down; `None`: they are dropped and counted.
    spool: Option<SpoolConfig>,
    /// TLS to the destination; `None`: plaintext.
    tls: Option<TlsConnect>,
    /// Those points, until the writer task appends them to the spool
    /// (bounded like the queue; past that they are dropped and counted).
    spill: Mutex<Queue>,
}

impl DestQueue {
    pub fn new(
        host: String,
        port: u16,
        protocol: Protocol,
        cap: usize,
        cap_bytes: usize,
        block_timeout: Duration,
        stats: Arc<DestinationStats>,
    ) -> DestQueue {
        DestQueue {
            host,
            port,
            protocol,
            queue: Mutex::new(Queue::default()),
            cap: cap.max(1),
            cap_bytes: cap_bytes.max(1),
            notify: Notify::new(),
            room: Notify::new(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            born: Instant::now(),
            block_timeout,
            // Optimistic until the first connect fails, so traffic is not
            // diverted from a destination that has not been tried yet.
            up: AtomicBool::new(true),
            stats,
            spool: None,
            spill: Mutex::new(Queue::default()),
            tls: None,
        }
    }

    /// Speak TLS to the destination.
    pub fn with_tls(mut self, tls: TlsConnect) -> DestQueue {
        self.tls = Some(tls);
        self
    }

    /// Give the destination a disk spool.
    pub fn with_spool(mut self, spool: SpoolConfig) -> DestQueue {
        self.spool = Some(spool);
        self
    }

    /// Its spool, if it has one.
    pub fn spool(&self) -> Option<&SpoolConfig> {
        self.spool.as_ref()
    }

    fn lock_spill(&self) -> MutexGuard<'_, Queue> {
        self.spill.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep a point the queue has no room for, for the spool: only while
    /// the destination is down (or `always`, for a batch that failed), and
    /// within the queue's bounds. `false`: the caller drops it.
    fn spill(&self, item: Item, always: bool) -> Result<(), Item> {
        if self.spool.is_none() || (!always && self.is_up()) {
            return Err(item);
        }
        let c = cost(&item);
        let mut q = self.lock_spill();
        if q.items.len() >= self.cap.max(SPILL_MIN_POINTS)
            || q.bytes + c > self.cap_bytes.max(SPILL_MIN_BYTES)
        {
            return Err(item);
        }
        q.bytes += c;
        q.items.push_back(item);
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    /// Take every spilled point.
    fn take_spill(&self) -> Vec<Item> {
        let mut q = self.lock_spill();
        q.bytes = 0;
        q.items.drain(..).collect()
    }

    fn spill_is_empty(&self) -> bool {
        self.lock_spill().items.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The critical sections only push and pop; a poisoned lock still
        // holds a whole VecDeque.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the destination is believed reachable.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Mark the destination up or down (the writer task does this; tests too).
    pub fn mark(&self, up: bool) {
        self.set_up(up);
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.stats.up.store(u64::from(up), Ordering::Relaxed);
        if !up {
            // Nobody waits for a down destination.
            self.room.notify_waiters();
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Publish the queue's size for the lock-free checks (under the lock).
    fn publish(&self, q: &Queue) {
        self.len.store(q.items.len(), Ordering::Relaxed);
        self.bytes.store(q.bytes, Ordering::Relaxed);
    }

    /// Whether a point of `cost` bytes fits no more (without the lock).
    fn full_for(&self, cost: usize) -> bool {
        self.len.load(Ordering::Relaxed) >= self.cap
            || self.bytes.load(Ordering::Relaxed) + cost > self.cap_bytes
    }

    /// Whether the queue is full (a point with a short name does not fit).
    pub fn is_full(&self) -> bool {
        self.full_for(name_cost(0))
    }

    /// Holding points, and no batch taken for `block_timeout`: the writer is
    /// stuck (connecting, or writing into a connection nobody reads).
    pub fn is_stalled(&self) -> bool {
        self.len.load(Ordering::Relaxed) > 0
            && self
                .now_ms()
                .saturating_sub(self.progress.load(Ordering::Relaxed))
                >= self.block_timeout.as_millis() as u64
    }

    /// Up and not stalled: worth waiting for.
    pub fn is_live(&self) -> bool {
        self.is_up() && !self.is_stalled()
    }

    /// Whether a stream receiver with a point named `name_len` bytes for this
    /// destination should wait: no room, and the destination is live.
    pub fn must_wait(&self, name_len: usize) -> bool {
        self.full_for(name_cost(name_len)) && self.is_live()
    }

    /// Wait until a point named `name_len` bytes fits, the destination is no
    /// longer live, or `closing` is cancelled. Never holds the queue's lock
    /// while waiting; wakes when the writer takes a batch, and at the latest
    /// when the destination would count as stalled.
    pub async fn wait_for_room(&self, name_len: usize, closing: &CancellationToken) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.must_wait(name_len) || closing.is_cancelled() {
                return;
            }
            let since = self
                .now_ms()
                .saturating_sub(self.progress.load(Ordering::Relaxed));
            let left = (self.block_timeout.as_millis() as u64).saturating_sub(since);
            let left = Duration::from_millis(left.max(1));
            tokio::select! {
                _ = &mut room => {}
                _ = tokio::time::sleep(left) => {}
                _ = closing.cancelled() => return,
            }
        }
    }

    /// Queue a point without waiting. `false` (and counted) when the queue is full.
    pub fn push(&self, item: Item, stats: &RelayStats) -> bool {
        self.push_with(item, stats, false)
    }

    /// Queue a point without waiting. With `overshoot` (block mode) a live
    /// destination takes it even past the bounds, up to twice them. Stream
    /// receivers wait at the bound ([`DestQueue::must_wait`]), so that room
    /// is for input that cannot wait, and for points that several
    /// connections route between their check and their push.
    pub fn push_with(&self, item: Item, stats: &RelayStats, overshoot: bool) -> bool {
        let c = cost(&item);
        let (cap, cap_bytes) = if overshoot && self.is_live() {
            (self.cap * 2, self.cap_bytes * 2)
        } else {
            (self.cap, self.cap_bytes)
        };
        let mut q = self.lock();
        if q.items.len() >= cap || q.bytes + c > cap_bytes {
            drop(q);
            if self.spill(item, false).is_ok() {
                return true;
            }
            incr(&self.stats.dropped, 1);
            incr(&stats.metrics_dropped, 1);
            return false;
        }
        if q.items.is_empty() {
            self.progress.store(self.now_ms(), Ordering::Relaxed);
        }
        q.bytes += c;
        q.items.push_back(item);
        self.publish(&q);
        drop(q);
        incr(&self.stats.queued, 1);
        self.notify.notify_one();
        true
    }

    /// Points queued now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, n: usize, into: &mut Vec<Item>) {
        let mut q = self.lock();
        let k = n.min(q.items.len());
        let start = into.len();
        into.extend(q.items.drain(..k));
        q.bytes -= into[start..].iter().map(cost).sum::<usize>();
        if k > 0 {
            self.progress.store(self.now_ms(), Ordering::Relaxed);
        }
        self.publish(&q);
        drop(q);
        if k > 0 {
            self.room.notify_waiters();
        }
        self.stats
            .queued
            .fetch_sub(k as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Put a batch that could not be written back at the front, as far as
    /// the bound allows; the rest is dropped and counted.
    fn unshift(&self, batch: Vec<Item>, stats: &RelayStats) {
        let mut q = self.lock();
        // The oldest points of the batch go back first; whatever no longer
        // fits the bounds (new points came in meanwhile) is dropped.
        let mut keep = 0;
        let mut bytes = 0;
        for item in &batch {
            if q.items.len() + keep >= self.cap || q.bytes + bytes + cost(item) > self.cap_bytes {
                break;
            }
            keep += 1;
            bytes += cost(item);
        }
        let mut batch = batch;
        let rest = batch.split_off(keep);
        for item in batch.into_iter().rev() {
            q.items.push_front(item);
        }
        q.bytes += bytes;
        self.publish(&q);
        drop(q);
        incr(&self.stats.queued, keep as u64);
        let lost = rest
            .into_iter()
            .filter(|i| self.spill(i.clone(), true).is_err())
            .count();
        if lost > 0 {
            incr(&self.stats.dropped, lost as u64);
            incr(&stats.metrics_dropped, lost as u64);
        }
    }

    /// Take every point that may go elsewhere (not [`HELD`]).
    fn take_movable(&self) -> Vec<Item> {
        let mut q = self.lock();
        if q.items.iter().all(|i| i.cluster == HELD) {
            return Vec::new();
        }
        let (held, movable): (VecDeque<Item>, VecDeque<Item>) =
            q.items.drain(..).partition(|i| i.cluster == HELD);
        q.bytes = held.iter().map(cost).sum();
        q.items = held;
        self.publish(&q);
        drop(q);
        self.room.notify_waiters();
        self.stats
            .queued
            .fetch_sub(movable.len() as u64, Ordering::Relaxed);
        movable.into()
    }

    /// Discard what is left (after the shutdown deadline); returns how many.
    pub fn discard(&self, stats: &RelayStats) -> u64 {
        let n = {
            let mut q = self.lock();
            let n = q.items.len() as u64;
            *q = Queue::default();
            self.publish(&q);
            n
        };
        self.stats.queued.fetch_sub(n, Ordering::Relaxed);
        // Points spilled for a spool that the writer did not get to.
        let n = n + self.take_spill().len() as u64;
        incr(&self.stats.dropped, n);
        incr(&stats.metrics_dropped, n);
        n
    }
}

/// Where a down destination hands back its movable points: `(from, item)`.
pub type Reroute = mpsc::UnboundedSender<(usize, Item)>;

/// The relay's stop signal for its writers: cancelled when shutdown begins,
/// after the instants by which the writers give up have been set.
#[derive(Debug, Clone, Default)]
pub struct Closing {
    token: CancellationToken,
    /// `(spool_at, end)`: a writer with a spool stops delivering at
    /// `spool_at` and spools what is left; one without stops at `end` and
    /// drops (and counts) what is left.
    at: Arc<OnceLock<(tokio::time::Instant, tokio::time::Instant)>>,
}

impl Closing {
    pub fn new() -> Closing {
        Closing::default()
    }

    /// The token a supervisor watches.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Begin the shutdown: writers deliver until `spool_at` (with a spool)
    /// or `end` (without).
    pub fn close(&self, spool_at: tokio::time::Instant, end: tokio::time::Instant) {
        let _ = self.at.set((spool_at, end));
        self.token.cancel();
    }

    fn deadline(&self, spooled: bool) -> tokio::time::Instant {
        // Only `close` cancels the token, after setting the instants.
        let (spool_at, end) = self.at.get().copied().unwrap_or_else(|| {
            let now = tokio::time::Instant::now();
            (now, now)
        });
        if spooled {
            spool_at
        } else {
            end
        }
    }
}

/// Run one destination's writer: the stream engine ([`crate::deliver::stream`])
/// in pull mode, fed by the destination's queue, until `closing` and
/// the queue is delivered or the deadline set at closing passes. With a
/// spool, the engine also moves spilled points to it, replays it while
/// connected, and at shutdown spools what a down destination still holds.
pub async fn run(
    index: usize,
    dest: Arc<DestQueue>,
    tuning: Tuning,
    stats: Arc<RelayStats>,
    reroute: Reroute,
    closing: Closing,
) {
    let cfg = StreamConfig {
        output: "relay".into(),
        addr: format!("{}:{}", dest.host, dest.port),
        mode: Mode::Pull,
        connect_timeout: tuning.connect_timeout,
        backoff_min: tuning.backoff_min,
        backoff_max: tuning.backoff_max,
        spool: dest.spool.clone(),
        spool_stats: dest.stats.spool.clone(),
        // A relay that a reload is replacing may still hold the directory
        // while it delivers.
        spool_wait: Duration::from_secs(15),
        tls: dest.tls.clone(),
        per_entry: false,
    };
    let source = DestSource {
        index,
        dest,
        tuning,
        stats,
        reroute,
        closing,
        closed: false,
        spare: Vec::new(),
        encoded_hint: 0,
    };
    stream::run(cfg, source).await;
}

/// One destination's queue as the engine's source: a batch of up to
/// `batch` points per entry, encoded in the destination's protocol, the
/// points kept with it until it is written.
struct DestSource {
    index: usize,
    dest: Arc<DestQueue>,
    tuning: Tuning,
    stats: Arc<RelayStats>,
    reroute: Reroute,
    closing: Closing,
    closed: bool,
    /// The points vector of the last written batch, reused for the next.
    spare: Vec<Item>,
    /// Bytes the last batch encoded to: the next one's starting capacity.
    encoded_hint: usize,
}

/// A batch's points ride with its entry; a batch replayed from the spool has none.
impl Tag for Vec<Item> {}

impl DestSource {
    /// Encode `items` in records of `batch` points, for the spool. What
    /// cannot be encoded is counted as dropped.
    fn records(&self, items: Vec<Item>) -> Vec<Entry<Vec<Item>>> {
        let mut out = Vec::new();
        for chunk in items.chunks(self.tuning.batch.max(1)) {
            let mut buf = Vec::new();
            match encode(self.dest.protocol, chunk, &mut buf) {
                Ok(()) => out.push(Entry {
                    data: Bytes::from(buf),
                    lines: chunk.len() as u64,
                    tag: Vec::new(),
                }),
                Err(e) => self.lost(chunk.len() as u64, &e),
            }
        }
        out
    }

    /// Points that could not be encoded: counted and logged.
    fn lost(&self, n: u64, e: &io::Error) {
        incr(&self.dest.stats.dropped, n);
        incr(&self.stats.metrics_dropped, n);
        tracing::error!(
            destination = %format!("{}:{}", self.dest.host, self.dest.port),
            points = n,
            error = %e,
            "cannot encode points; dropped"
        );
    }
}

impl Source for DestSource {
    type Tag = Vec<Item>;

    async fn wait(&mut self) -> Input {
        if !self.closed {
            tokio::select! {
                _ = self.dest.notify.notified() => return Input::More,
                _ = self.closing.token.cancelled() => {}
            }
            self.closed = true;
            return Input::Closed {
                deadline: self.closing.deadline(self.dest.spool.is_some()),
            };
        }
        // Points rerouted here during the shutdown.
        self.dest.notify.notified().await;
        Input::More
    }

    fn next(&mut self) -> Option<Entry<Vec<Item>>> {
        loop {
            let mut batch = std::mem::take(&mut self.spare);
            self.dest.take(self.tuning.batch, &mut batch);
            if batch.is_empty() {
                self.spare = batch;
                return None;
            }
            let mut buf = Vec::with_capacity(self.encoded_hint);
            match encode(self.dest.protocol, &batch, &mut buf) {
                Ok(()) => {
                    self.encoded_hint = buf.len() + buf.len() / 8;
                    return Some(Entry {
                        data: Bytes::from(buf),
                        lines: batch.len() as u64,
                        tag: batch,
                    });
                }
                Err(e) => self.lost(batch.len() as u64, &e),
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dest.is_empty() && self.dest.spill_is_empty()
    }

    fn overflow(&mut self) -> Vec<Entry<Vec<Item>>> {
        if self.dest.spool.is_none() {
            return Vec::new();
        }
        let items = self.dest.take_spill();
        if items.is_empty() {
            return Vec::new();
        }
        self.records(items)
    }

    fn rest(&mut self) -> Vec<Entry<Vec<Item>>> {
        // The queue, then the spilled points (newer... or older: carbon
        // orders points by timestamp), in records of `batch` points.
        let mut items = Vec::new();
        self.dest.take(usize::MAX, &mut items);
        items.extend(self.dest.take_spill());
        self.records(items)
    }

    fn connected(&mut self) {
        self.dest.set_up(true);
    }

    /// Put the batch that was not written back at the front of the queue,
    /// mark the destination down and hand its movable points to the router
    /// (those of the batch included: they reach another destination).
    fn failed(&mut self, _why: &str, unsent: Vec<Entry<Vec<Item>>>) {
        let items: Vec<Item> = unsent.into_iter().flat_map(|e| e.tag).collect();
        if !items.is_empty() {
            self.dest.unshift(items, &self.stats);
        }
        self.dest.set_up(false);
        incr(&self.dest.stats.errors, 1);
        for item in self.dest.take_movable() {
            incr(&self.dest.stats.rerouted, 1);
            // The router outlives every destination task; if it is gone the
            // process is stopping and the point is lost with it.
            let _ = self.reroute.send((self.index, item));
        }
    }

    fn written(&mut self, entry: Entry<Vec<Item>>, _took: Duration) {
        incr(&self.dest.stats.sent, entry.lines);
        incr(&self.stats.metrics_sent, entry.lines);
        let mut points = entry.tag;
        points.clear();
        if points.capacity() > self.spare.capacity() {
            self.spare = points;
        }
    }

    fn dropped(&mut self, entries: &[Entry<Vec<Item>>]) {
        let n: u64 = entries.iter().map(|e| e.lines).sum();
        incr(&self.dest.stats.dropped, n);
        incr(&self.stats.metrics_dropped, n);
    }
}

/// A destination's spool directory name: its `host:port[:instance]` with
/// every character but letters, digits, `.`, `-` and `_` made `_`.
pub fn spool_subdir(dest: &str) -> String {
    dest.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Append `items` to `out` in `protocol` (one pickle frame for the whole
/// batch, whose size `batch` bounds).
pub fn encode(protocol: Protocol, items: &[Item], out: &mut Vec<u8>) -> io::Result<()> {
    match protocol {
        Protocol::Plain => {
            // Points of a batch mostly share their timestamp: format it once.
            let mut ts = Vec::with_capacity(20);
            let mut last = None;
            for i in items {
                if last != Some(i.point.timestamp) {
                    ts.clear();
                    let _ = write!(ts, "{}", i.point.timestamp);
                    last = Some(i.point.timestamp);
                }
                carbon::push_line(out, &i.point.name, i.point.value, &ts);
            }
            Ok(())
        }
        Protocol::Pickle => carbon::push_pickle_frame(
            items.iter().map(|i| {
                // Carbon reads the path as a str; names are UTF-8 in practice,
                // and a stray byte becomes U+FFFD rather than a refused frame.
                (
                    String::from_utf8_lossy(&i.point.name),
                    i.point.timestamp,
                    i.point.value,
                )
            }),
            out,
        )
        .map_err(io::Error::other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn item(name: &str, v: f64, ts: i64) -> Item {
        Item {
            point: Point {
                name: Bytes::copy_from_slice(name.as_bytes()),
                value: v,
                timestamp: ts,
            },
            cluster: HELD,
        }
    }

    #[test]
    fn plain_and_pickle_encoding() {
        let items = [item("a.b", 1.0, 10), item("c", 0.5, 11)];
        let mut out = Vec::new();
        encode(Protocol::Plain, &items, &mut out).unwrap();
        assert_eq!(out, b"a.b 1 10\nc 0.5 11\n");
        out.clear();
        encode(Protocol::Pickle, &items, &mut out).unwrap();
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(&out[4..6], b"\x80\x02");
        let v: Vec<(String, (i64, f64))> =
            serde_pickle::from_slice(&out[4..], serde_pickle::DeOptions::new()).unwrap();
        assert_eq!(v, vec![("a.b".into(), (10, 1.0)), ("c".into(), (11, 0.5))]);
    }

    #[test]
    fn full_queue_drops_newest_and_counts() {
        let stats = RelayStats::new(["d".to_string()]);
        let q = DestQueue::new(
            "h".into(),
            1,
            Protocol::Plain,
            2,
            1 << 20,
            Duration::from_secs(1),
            stats.destinations[0].clone(),
        );
        assert!(q.push(item("a", 1.0, 1), &stats));
        assert!(q.push(item("b", 1.0, 1), &stats));
        assert!(!q.push(item("c", 1.0, 1), &stats));
        assert_eq!(crate::stats::get(&stats.metrics_dropped), 1);
        assert_eq!(crate::stats::get(&stats.destinations[0].queued), 2);
        let mut b = Vec::new();
        q.take(1, &mut b);
        q.unshift(b, &stats);
        let mut b = Vec::new();
        q.take(5, &mut b);
        assert_eq!(&b[0].point.name[..], b"a");
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let stats = RelayStats::new(["d".to_string()]);
        let q = DestQueue::new(
            "h".into(),
            1,
            Protocol::Plain,
            100,
            300,
            Duration::from_secs(1),
            stats.destinations[0].clone(),
        );
        let long = "x".repeat(80); // 144 bytes charged each
        assert!(q.push(item(&long, 1.0, 1), &stats));
        assert!(q.push(item(&long, 1.0, 1), &stats));
        assert!(!q.push(item(&long, 1.0, 1), &stats));
        let mut b = Vec::new();
        q.take(1, &mut b);
        assert!(q.push(item("short", 1.0, 1), &stats));
        // Only part of the batch fits back: counted as dropped.
        q.unshift(b, &stats);
        assert_eq!(q.len(), 2);
        assert_eq!(crate::stats::get(&stats.metrics_dropped), 2);
    }

    fn queue(cap: usize, block_timeout: Duration) -> (RelayStats, Arc<DestQueue>) {
        let stats = RelayStats::new(["d".to_string()]);
        let q = Arc::new(DestQueue::new(
            "h".into(),
            1,
            Protocol::Plain,
            cap,
            1 << 20,
            block_timeout,
            stats.destinations[0].clone(),
        ));
        (stats, q)
    }

    #[tokio::test]
    async fn a_full_live_queue_makes_streams_wait_until_a_batch_is_taken() {
        let (stats, q) = queue(2, Duration::from_secs(5));
        assert!(q.push(item("a", 1.0, 1), &stats));
        assert!(!q.must_wait(1));
        assert!(q.push(item("b", 1.0, 1), &stats));
        assert!(q.must_wait(1), "full and live");
        let closing = CancellationToken::new();
        let waiter = {
            let q = q.clone();
            let c = closing.clone();
            tokio::spawn(async move { q.wait_for_room(1, &c).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still waiting");
        let mut b = Vec::new();
        q.take(1, &mut b);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken by the take")
            .unwrap();
        // Past the bound only with overshoot, and never past twice.
        assert!(q.push_with(item("c", 1.0, 1), &stats, false));
        assert!(!q.push_with(item("d", 1.0, 1), &stats, false));
        assert!(q.push_with(item("d", 1.0, 1), &stats, true));
        assert!(q.push_with(item("e", 1.0, 1), &stats, true));
        assert!(!q.push_with(item("f", 1.0, 1), &stats, true));
        assert_eq!(q.len(), 4);
    }

    #[tokio::test]
    async fn down_or_stalled_destinations_are_not_waited_for() {
        let (stats, q) = queue(1, Duration::from_millis(100));
        assert!(q.push(item("a", 1.0, 1), &stats));
        assert!(q.must_wait(1));
        q.mark(false);
        assert!(!q.must_wait(1), "down");
        q.mark(true);
        assert!(q.must_wait(1));
        // Nothing taken: stalled after block_timeout, and a waiter returns.
        let closing = CancellationToken::new();
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(2), q.wait_for_room(1, &closing))
            .await
            .expect("not waited for once stalled");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(q.is_stalled() && !q.must_wait(1));
        // A taken batch makes it live again.
        let mut b = Vec::new();
        q.take(1, &mut b);
        assert!(q.push(item("b", 1.0, 1), &stats));
        assert!(q.must_wait(1));
        // Shutdown ends a wait.
        closing.cancel();
        tokio::time::timeout(Duration::from_secs(1), q.wait_for_room(1, &closing))
            .await
            .expect("cancelled");
    }
}

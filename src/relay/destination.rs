//! One destination: a bounded queue of points and the task that writes them
//! out over TCP, as carbon plaintext lines or pickle frames (protocol 2).
//!
//! [`DestQueue::push`] never waits: a full queue drops the newest point and
//! counts it (a rate-limited warning names the destination, see
//! [`super::RelayRuntime`]). With `on_full = "block"` the stream receivers
//! first ask [`DestQueue::must_wait`] and, while a destination that is *live*
//! (up, and not stalled: it took a batch within `block_timeout` of holding
//! points) has no room, wait for room with [`DestQueue::wait_for_room`]
//! (carbon's flow control). A destination that is down or stalled never makes
//! anyone wait: its queue fills to the bound and the rest is dropped, counted.
//! The writer task connects,
//! writes batches, and on any failure reconnects with exponential backoff. A
//! batch that failed to write goes back to the front of the queue, so a reset
//! connection loses nothing that fits the queue (carbon may then see a few
//! points twice, which it overwrites with the same value).
//!
//! Carbon never writes back on these connections, so a readable socket means
//! the peer closed it (or reset it): the writer checks that before each batch,
//! so points are not written into a connection that is already dead.
//!
//! While a destination is down, the points in its queue that belong to an
//! `any_of` or `failover` cluster are handed back to the router (the
//! `reroute` channel), which sends them to another destination of their
//! cluster. Points of hashed clusters stay, up to the bound.
//!
//! With a spool ([`crate::spool`], `cluster[].spool_dir`), the points that a
//! full queue cannot take while the destination is down (and what a failed
//! batch cannot put back) are spilled into a second bounded buffer instead
//! of being dropped; the writer task moves them to the spool in records of
//! `batch` points, encoded for the destination. Connected, it sends one
//! spooled record after each batch from the queue, and all of them while the
//! queue is empty. Down at shutdown, it spools the queue at once. All spool
//! I/O runs on tokio's blocking pool.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::Point;
use crate::shutdown::CancellationToken;
use crate::spool::{Pos, Record, SpoolConfig, SpoolHandle};
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
        }
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

/// Run one destination's writer until `closing` is cancelled and its queue is
/// empty. The caller bounds how long that may take. With a spool, the writer
/// also moves spilled points to it, replays it while connected, and at
/// shutdown spools what a down destination still holds.
pub async fn run(
    index: usize,
    dest: Arc<DestQueue>,
    tuning: Tuning,
    stats: Arc<RelayStats>,
    reroute: Reroute,
    closing: CancellationToken,
    spool_now: CancellationToken,
) {
    let mut spool = match &dest.spool {
        None => None,
        Some(cfg) => {
            // A relay that a reload is replacing may still hold the
            // directory while it delivers.
            let wait = Duration::from_secs(15);
            match SpoolHandle::open(cfg.clone(), dest.stats.spool.clone(), wait).await {
                Ok(h) => Some(Spooled {
                    handle: h,
                    pending: VecDeque::new(),
                }),
                Err(e) => {
                    tracing::error!(
                        destination = %format!("{}:{}", dest.host, dest.port),
                        error = %e,
                        "cannot open the spool; running without it"
                    );
                    None
                }
            }
        }
    };
    let mut backoff = tuning.backoff_min;
    let mut batch = Vec::with_capacity(tuning.batch);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        if closing.is_cancelled() && dest.is_empty() && dest.spill_is_empty() {
            break;
        }
        let addr = format!("{}:{}", dest.host, dest.port);
        let conn = tokio::time::timeout(tuning.connect_timeout, TcpStream::connect(&addr)).await;
        let why = match conn {
            Ok(Ok(mut stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(destination = %addr, "relay destination connected");
                dest.set_up(true);
                backoff = tuning.backoff_min;
                let r = serve(
                    &mut stream,
                    &dest,
                    &tuning,
                    &stats,
                    &closing,
                    &mut batch,
                    &mut buf,
                    &mut spool,
                    &spool_now,
                )
                .await;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        if !batch.is_empty() {
                            dest.unshift(std::mem::take(&mut batch), &stats);
                        }
                        e.to_string()
                    }
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        down(index, &dest, &reroute, &addr, &why);
        if let Some(sp) = spool.as_mut() {
            sp.take_spill(&dest, &tuning, &stats).await;
            if closing.is_cancelled() {
                // Down at shutdown: what the queue holds goes to the
                // spool now, for the next start, rather than to the drop
                // counter after the deadline.
                sp.take_queue(&dest, &tuning, &stats).await;
                break;
            }
        }
        if !pause(
            &dest,
            &closing,
            &mut backoff,
            &tuning,
            spool.as_mut(),
            &stats,
        )
        .await
        {
            break;
        }
    }
    if let Some(sp) = spool {
        sp.close(&dest, &tuning, &stats).await;
    }
}

/// A destination's open spool, and the records loaded from it but not
/// delivered yet (they stay on disk until acknowledged).
struct Spooled {
    handle: SpoolHandle,
    pending: VecDeque<Record>,
}

/// Bytes loaded from a relay spool at a time.
const REPLAY_BYTES: usize = 256 * 1024;

impl Spooled {
    /// Append points, `batch` per record, encoded for the destination.
    async fn append(
        &mut self,
        items: Vec<Item>,
        dest: &DestQueue,
        tuning: &Tuning,
        stats: &RelayStats,
    ) {
        if items.is_empty() {
            return;
        }
        let mut records = Vec::new();
        let mut failed = 0u64;
        for chunk in items.chunks(tuning.batch.max(1)) {
            let mut buf = Vec::new();
            match encode(dest.protocol, chunk, &mut buf) {
                Ok(()) => records.push((bytes::Bytes::from(buf), chunk.len() as u64)),
                Err(_) => failed += chunk.len() as u64,
            }
        }
        let n: u64 = records.iter().map(|(_, l)| *l).sum();
        if let Err(e) = self.handle.append(records).await {
            tracing::error!(
                destination = %format!("{}:{}", dest.host, dest.port),
                error = %e,
                points = n,
                "cannot spool; points dropped"
            );
            failed += n;
        }
        if failed > 0 {
            incr(&dest.stats.dropped, failed);
            incr(&stats.metrics_dropped, failed);
        }
    }

    /// Move the spilled points to the spool.
    async fn take_spill(&mut self, dest: &DestQueue, tuning: &Tuning, stats: &RelayStats) {
        let items = dest.take_spill();
        self.append(items, dest, tuning, stats).await;
    }

    /// Move everything queued to the spool (behind the spilled points,
    /// which are older... or newer: carbon orders points by timestamp).
    async fn take_queue(&mut self, dest: &DestQueue, tuning: &Tuning, stats: &RelayStats) {
        let mut items = Vec::new();
        dest.take(usize::MAX, &mut items);
        items.extend(dest.take_spill());
        let n = items.len();
        self.append(items, dest, tuning, stats).await;
        if n > 0 {
            tracing::info!(
                destination = %format!("{}:{}", dest.host, dest.port),
                points = n,
                "relay destination down at shutdown; its queue is spooled"
            );
        }
    }

    /// Whether anything is waiting on disk or loaded.
    fn has_data(&self) -> bool {
        !self.pending.is_empty() || self.handle.has_unread()
    }

    /// Write the oldest spooled record, then acknowledge it.
    async fn replay_one(
        &mut self,
        stream: &mut TcpStream,
        dest: &DestQueue,
        stats: &RelayStats,
        scratch: &mut [u8],
    ) -> io::Result<()> {
        if self.pending.is_empty() {
            self.pending.extend(self.handle.read(REPLAY_BYTES).await);
        }
        let Some(r) = self.pending.front() else {
            return Ok(());
        };
        check_open(stream, scratch)?;
        stream.write_all(&r.data).await?;
        let (pos, len, lines) = (r.pos, r.data.len() as u64, r.lines);
        self.pending.pop_front();
        self.handle.ack(vec![(pos, len)]).await;
        incr(&dest.stats.sent, lines);
        incr(&stats.metrics_sent, lines);
        Ok(())
    }

    /// Spool the spilled points and loaded records whose segment the cap
    /// dropped meanwhile (the others are still on disk), then close.
    async fn close(mut self, dest: &DestQueue, tuning: &Tuning, stats: &RelayStats) {
        self.take_spill(dest, tuning, stats).await;
        let positions: Vec<Pos> = self.pending.iter().map(|r| r.pos).collect();
        let gone = self.handle.gone(&positions);
        let again: Vec<(bytes::Bytes, u64)> = self
            .pending
            .drain(..)
            .zip(gone)
            .filter(|(_, g)| *g)
            .map(|(r, _)| (r.data, r.lines))
            .collect();
        if !again.is_empty() {
            let n: u64 = again.iter().map(|(_, l)| *l).sum();
            if self.handle.append(again).await.is_err() {
                incr(&dest.stats.dropped, n);
                incr(&stats.metrics_dropped, n);
            }
        }
        self.handle.close().await;
    }
}

/// Mark the destination down and hand its movable points to the router.
fn down(index: usize, dest: &DestQueue, reroute: &Reroute, addr: &str, why: &str) {
    if dest.is_up() {
        tracing::warn!(destination = %addr, error = %why, "relay destination down");
    }
    dest.set_up(false);
    incr(&dest.stats.errors, 1);
    for item in dest.take_movable() {
        incr(&dest.stats.rerouted, 1);
        // The router outlives every destination task; if it is gone the
        // process is stopping and the point is lost with it.
        let _ = reroute.send((index, item));
    }
}

/// Sleep the backoff (doubling it); `false` when shutting down and nothing is
/// left to deliver, or nothing can be delivered. With a spool, spilled points
/// are moved to it while waiting, and shutdown ends the wait.
async fn pause(
    dest: &DestQueue,
    closing: &CancellationToken,
    backoff: &mut Duration,
    tuning: &Tuning,
    mut spool: Option<&mut Spooled>,
    stats: &RelayStats,
) -> bool {
    if closing.is_cancelled() && dest.is_empty() && dest.spill_is_empty() {
        return false;
    }
    // During shutdown keep retrying until the caller's deadline.
    let until = tokio::time::Instant::now() + *backoff;
    *backoff = (*backoff * 2).min(tuning.backoff_max);
    match spool.as_mut() {
        None => tokio::time::sleep_until(until).await,
        Some(sp) => loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = dest.notify.notified() => sp.take_spill(dest, tuning, stats).await,
                _ = closing.cancelled(), if !closing.is_cancelled() => break,
            }
        },
    }
    true
}

/// Write batches until shutdown empties the queue (`Ok`) or the connection
/// fails. With a spool, spooled records go out in turns with queued batches
/// (one record after each batch, and all of them while the queue is empty),
/// except during shutdown, when the spool is left for the next start.
#[allow(clippy::too_many_arguments)]
async fn serve(
    stream: &mut TcpStream,
    dest: &DestQueue,
    tuning: &Tuning,
    stats: &RelayStats,
    closing: &CancellationToken,
    batch: &mut Vec<Item>,
    buf: &mut Vec<u8>,
    spool: &mut Option<Spooled>,
    spool_now: &CancellationToken,
) -> io::Result<()> {
    let mut scratch = [0u8; 512];
    let spooled = spool.is_some();
    loop {
        if let Some(sp) = spool.as_mut().filter(|_| spool_now.is_cancelled()) {
            // The shutdown deadline is near and the queue is not drained:
            // spool it rather than lose it.
            sp.take_queue(dest, tuning, stats).await;
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if let Some(sp) = spool.as_mut() {
            if !dest.spill_is_empty() {
                sp.take_spill(dest, tuning, stats).await;
            }
        }
        let replay = spool
            .as_mut()
            .filter(|sp| sp.has_data() && !closing.is_cancelled());
        dest.take(tuning.batch, batch);
        if batch.is_empty() {
            if let Some(sp) = replay {
                sp.replay_one(stream, dest, stats, &mut scratch).await?;
                continue;
            }
            if closing.is_cancelled() {
                let _ = stream.shutdown().await;
                return Ok(());
            }
            tokio::select! {
                _ = dest.notify.notified() => {}
                _ = closing.cancelled() => {}
                r = stream.readable() => {
                    r?;
                    check_open(stream, &mut scratch)?;
                }
            }
            continue;
        }
        check_open(stream, &mut scratch)?;
        buf.clear();
        encode(dest.protocol, batch, buf)?;
        tokio::select! {
            r = stream.write_all(buf) => r?,
            _ = spool_now.cancelled(), if spooled => {
                // A destination too slow to take this batch before the
                // deadline: the batch goes back (it may arrive twice) and
                // is spooled with the queue at the top of the loop.
                dest.unshift(std::mem::take(batch), stats);
                continue;
            }
        }
        let n = batch.len() as u64;
        batch.clear();
        incr(&dest.stats.sent, n);
        incr(&stats.metrics_sent, n);
        if let Some(sp) = replay {
            sp.replay_one(stream, dest, stats, &mut scratch).await?;
        }
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

/// Err if the peer has closed or reset the connection. Anything it sent is
/// read and ignored.
fn check_open(stream: &TcpStream, scratch: &mut [u8]) -> io::Result<()> {
    loop {
        match stream.try_read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "closed by the destination",
                ))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Append `items` to `out` in `protocol`.
pub fn encode(protocol: Protocol, items: &[Item], out: &mut Vec<u8>) -> io::Result<()> {
    match protocol {
        Protocol::Plain => {
            for i in items {
                push_line(&i.point, out);
            }
            Ok(())
        }
        Protocol::Pickle => {
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            let opts = serde_pickle::SerOptions::new().proto_v2();
            serde_pickle::to_writer(out, &Frame(items), opts).map_err(io::Error::other)?;
            let len = out.len() - start - 4;
            let prefix = u32::try_from(len).map_err(io::Error::other)?;
            out[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
            Ok(())
        }
    }
}

/// `path value timestamp\n`, the value printed shortest-round-trip.
pub fn push_line(p: &Point, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.name);
    out.push(b' ');
    let mut b = ryu_js::Buffer::new();
    out.extend_from_slice(b.format(p.value).as_bytes());
    out.push(b' ');
    out.extend_from_slice(p.timestamp.to_string().as_bytes());
    out.push(b'\n');
}

struct Frame<'a>(&'a [Item]);

impl Serialize for Frame<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for i in self.0 {
            // Carbon reads the path as a str; names are UTF-8 in practice,
            // and a stray byte becomes U+FFFD rather than a refused frame.
            let name = String::from_utf8_lossy(&i.point.name);
            seq.serialize_element(&(name.as_ref(), (i.point.timestamp, i.point.value)))?;
        }
        seq.end()
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

//! The two levels an engine keeps undelivered entries in: memory (an
//! [`Outbox`]) and, when configured, the disk spool ([`crate::spool`]),
//! with the entries loaded back from the spool for replay. Both engines
//! ([`super::stream`], [`super::http`]) hold one [`Store`] and decide when
//! to write from which level; the store does the bookkeeping: what
//! overflows memory goes to the spool (or is handed back to be counted as
//! dropped), replayed entries are acknowledged as they are delivered, and
//! at the end what is left is spooled for the next start.
//!
//! Spool I/O is awaited on tokio's blocking pool (see
//! [`crate::spool::SpoolHandle`]), which pauses only the engine's own task.
//!
//! Imports, besides `deliver` itself: `spool`, `stats`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::outbox::{Entry, Outbox};
use super::warnings::{DropLog, Label};
use crate::spool::{Pos, SpoolConfig, SpoolHandle};
use crate::stats::spool::SpoolStats;
use bytes::Bytes;

/// How many bytes are loaded from the spool at a time (at least one record):
/// per destination, and a relay may have many.
const REPLAY_BYTES: usize = 256 * 1024;

/// What an entry's source keeps with it ([`Entry::tag`]), and how that goes
/// through the spool: by default the spool record is the entry's bytes as
/// they are, and a replayed entry gets the default tag.
pub trait Tag: Default + Send + Sync + 'static {
    /// The spool record for `entry`.
    fn pack(entry: &Entry<Self>) -> Bytes {
        entry.data.clone()
    }

    /// The bytes to deliver and the tag, from a spool record.
    fn unpack(record: Bytes) -> (Bytes, Self) {
        (record, Self::default())
    }
}

impl Tag for () {}

/// Memory, spool, and what was loaded back from the spool.
#[derive(Debug)]
pub(crate) struct Store<T> {
    pub label: Label,
    /// The first level: recent entries in memory.
    pub buffer: Outbox<T>,
    /// Entries loaded back from the spool, oldest first...
    pub replay: Outbox<T>,
    /// ...and where each ends in the spool (with its payload size), to
    /// acknowledge it.
    replay_pos: VecDeque<(Pos, u64)>,
    /// The second level: what overflowed memory, on disk.
    spool: Option<SpoolHandle>,
    /// Never drop a front entry already tried at the memory bound.
    keep_tried: bool,
    drop_log: DropLog,
}

impl<T: Tag> Store<T> {
    /// A store holding at most `buffer_bytes` in memory (see
    /// [`Outbox::push`]), with the spool `spool` if it can be opened within
    /// `lock_wait` (a sink or relay that a reload is replacing may still
    /// hold the directory while it delivers). With `keep_tried`, a front
    /// entry already tried is never dropped at the bound (an HTTP request
    /// for it may be in flight); with a spool it never is anyway (it is
    /// older than what the spool holds).
    pub async fn open(
        label: Label,
        buffer_bytes: usize,
        keep_tried: bool,
        spool: Option<SpoolConfig>,
        stats: Arc<SpoolStats>,
        lock_wait: Duration,
    ) -> Store<T> {
        let spool = match spool {
            None => None,
            Some(sc) => {
                let dir = sc.dir.display().to_string();
                match SpoolHandle::open(sc, stats, lock_wait).await {
                    Ok(h) => {
                        if !h.is_empty() {
                            tracing::info!(
                                output = %label.output,
                                addr = %label.addr,
                                dir,
                                entries = h.len(),
                                "spool holds undelivered data from before; it goes first"
                            );
                        }
                        Some(h)
                    }
                    Err(e) => {
                        tracing::error!(output = %label.output, addr = %label.addr, error = %e, "cannot open the spool; running without it");
                        None
                    }
                }
            }
        };
        Store {
            label,
            buffer: Outbox::new(buffer_bytes),
            replay: Outbox::new(usize::MAX),
            replay_pos: VecDeque::new(),
            keep_tried: keep_tried || spool.is_some(),
            spool,
            drop_log: DropLog::default(),
        }
    }

    pub fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    /// The spool holds entries not delivered yet (loaded or not): with
    /// ordered delivery, nothing in memory may overtake them.
    pub fn behind(&self) -> bool {
        !self.replay.is_empty() || self.spool.as_ref().is_some_and(|s| s.has_unread())
    }

    /// Anything to deliver, in memory or on disk.
    pub fn has_data(&self) -> bool {
        !self.buffer.is_empty()
            || !self.replay.is_empty()
            || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Entries on disk, for logs.
    pub fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.len())
    }

    /// Bytes held in memory (the buffer and what was loaded for replay).
    pub fn held_bytes(&self) -> usize {
        self.buffer.bytes() + self.replay.bytes()
    }

    /// Put `entry` into memory. Over the bound the oldest entries go to the
    /// spool, behind what it holds (so the spool holds everything older
    /// than memory, except a front entry already tried, which stays to go
    /// first); without a spool they are dropped. Returns what was dropped,
    /// for the caller's counters.
    pub async fn push(&mut self, entry: Entry<T>) -> Vec<Entry<T>> {
        let over = self.buffer.push_with(entry, self.keep_tried);
        if self.spool.is_none() {
            self.log_drops(&over, false);
            return over;
        }
        self.spool(over).await
    }

    /// Append `entries` to the spool. Returns what could not be kept there
    /// (no spool, or the append failed: logged), for the caller to count as
    /// dropped.
    pub async fn spool(&mut self, entries: Vec<Entry<T>>) -> Vec<Entry<T>> {
        if entries.is_empty() {
            return entries;
        }
        let Some(spool) = self.spool.as_mut() else {
            return entries;
        };
        let records = entries.iter().map(|e| (T::pack(e), e.lines)).collect();
        match spool.append(records).await {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::error!(output = %self.label.output, addr = %self.label.addr, entries = entries.len(), error = %e, "cannot spool; dropping undelivered data");
                entries
            }
        }
    }

    /// Load the next spooled entries for replay, once the loaded ones are
    /// delivered.
    pub async fn load_replay(&mut self) {
        if !self.replay.is_empty() {
            return;
        }
        let Some(spool) = self.spool.as_mut().filter(|s| s.has_unread()) else {
            return;
        };
        for r in spool.read(REPLAY_BYTES).await {
            self.replay_pos.push_back((r.pos, r.data.len() as u64));
            let (data, tag) = T::unpack(r.data);
            self.replay.push(Entry {
                data,
                lines: r.lines,
                tag,
            });
        }
    }

    /// The first `n` loaded entries were delivered (and removed from
    /// `replay`): acknowledge them in the spool.
    pub async fn replayed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let n = n.min(self.replay_pos.len());
        let acks: Vec<(Pos, u64)> = self.replay_pos.drain(..n).collect();
        if let Some(spool) = self.spool.as_mut() {
            spool.ack(acks).await;
        }
    }

    /// Count and log (rate-limited, or now with `force`) entries dropped
    /// at the memory bound.
    fn log_drops(&mut self, dropped: &[Entry<T>], force: bool) {
        let bytes = dropped.iter().map(|e| e.data.len() as u64).sum();
        if let Some((entries, bytes)) = self.drop_log.dropped(dropped.len() as u64, bytes, force) {
            tracing::warn!(
                output = %self.label.output,
                addr = %self.label.addr,
                entries,
                bytes,
                buffer_bytes = self.buffer.cap(),
                "buffer full; dropped the oldest undelivered data"
            );
        }
    }

    /// The end: spool `left` (what memory and the source still hold, oldest
    /// first) behind the loaded entries whose segment the spool's cap
    /// dropped meanwhile (the others are still on disk), then close the
    /// spool. Returns what could not be kept, for the caller to count and log.
    pub async fn close(mut self, left: Vec<Entry<T>>) -> Vec<Entry<T>> {
        self.log_drops(&[], true);
        let replayed = self.replay.take_all();
        let positions: Vec<Pos> = self.replay_pos.drain(..).map(|(p, _)| p).collect();
        let Some(spool) = self.spool.as_ref() else {
            return left;
        };
        let gone = spool.gone(&positions);
        let again: Vec<Entry<T>> = replayed
            .into_iter()
            .zip(gone)
            .filter(|(_, g)| *g)
            .map(|(e, _)| e)
            .chain(left)
            .collect();
        let (entries, bytes) = (
            again.len(),
            again.iter().map(|e| e.data.len()).sum::<usize>(),
        );
        let lost = self.spool(again).await;
        if entries > 0 && lost.is_empty() {
            tracing::info!(
                output = %self.label.output,
                addr = %self.label.addr,
                entries,
                bytes,
                "destination unavailable at shutdown; undelivered data spooled"
            );
        }
        if let Some(spool) = self.spool.take() {
            spool.close().await;
        }
        lost
    }
}

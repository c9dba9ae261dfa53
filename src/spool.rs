//! A disk spool: what a destination could not take while it was down (or
//! too slow), kept on disk in order, replayed when it is back, and deleted as
//! it drains. It survives a restart.
//!
//! ## Layout
//!
//! One directory per spool (a graphite sink's `spool_dir/<sink name>`, a relay
//! destination's `spool_dir/<cluster>/<host_port>`), holding:
//!
//! - segment files `NNNNNNNNNNNNNNNNNNNN.seg` (a 20-digit id, oldest first),
//!   each the 8-byte magic [`MAGIC`] followed by records. A segment takes
//!   appends until it holds `segment_bytes`; then the next one starts.
//! - `cursor`: the id and offset of the next record to deliver, and a
//!   checksum of both (20 bytes, rewritten in place after every delivery).
//!
//! A record is a 12-byte header, `len` (u32 LE), `lines` (u32 LE, the metric
//! lines it carries, for the sink's counters) and `crc` (u32 LE, CRC-32 of
//! `len`, `lines` and the payload), then `len` payload bytes: exactly the
//! bytes to write to the destination.
//!
//! ## Guarantees and limits
//!
//! - Order: records are replayed oldest first.
//! - A delivered record is acknowledged ([`Spool::ack`]); the cursor is
//!   written to the OS before the next delivery completes, so a restart
//!   resends nothing that was acknowledged. What a crash (not an ordered
//!   shutdown) can repeat is what was written to the socket but not yet
//!   acknowledged: the records of the write in flight (in practice the one
//!   entry in flight). Carbon stores a repeated point once.
//! - A torn or corrupt record (a crash in the middle of an append, a bad
//!   disk) is detected by its length or checksum, counted in
//!   `corrupt_records`, and never replayed. The rest of that segment is
//!   skipped, since record boundaries past it cannot be trusted; the records
//!   before it are delivered.
//! - Past `max_bytes` (all segment files together), the oldest segment is
//!   deleted and its undelivered records are counted in `dropped_*`. A record
//!   larger than `max_bytes` by itself is not spooled; it is dropped and
//!   counted. Nothing grows without bound.
//! - Writes go to the OS page cache without fsync: a spool survives the
//!   process (a crash, a restart), not necessarily a power cut.
//! - The directory is locked (`flock`) while a spool is open, so two sinks
//!   (or a sink and the one a reload is replacing) never write the same files.
//!
//! [`Spool`] does blocking file I/O. The sinks and the relay call it through
//! [`SpoolHandle`], which runs every operation on tokio's blocking pool
//! (`spawn_blocking`), so spool I/O never stalls the runtime's workers.
//!
//! Owns the on-disk spool format. Imports: [`crate::stats`] only (its
//! counters).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::stats::incr;
use crate::stats::spool::SpoolStats;

/// The first 8 bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"SYSPOOL1";
/// Record header: len, lines, crc.
pub const HEADER: usize = 12;
/// Default cap of one spool, in bytes (all its segments together).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default size at which a segment stops taking appends.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
const CURSOR: &str = "cursor";
const CURSOR_LEN: usize = 20;

/// Where a spool lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// This spool's own directory (created when missing).
    pub dir: PathBuf,
    /// Bytes of segment files kept at most.
    pub max_bytes: u64,
    /// A segment takes appends until it holds this many bytes.
    pub segment_bytes: u64,
}

/// Where a record ends: acknowledging it moves the cursor there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    seg: u64,
    end: u64,
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub data: Bytes,
    pub lines: u64,
    pub pos: Pos,
}

/// Errors opening a spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory could not be created, listed or locked.
    #[error("spool {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: io::Error,
    },
    /// Another spool (a sink being replaced by a reload, another process)
    /// still holds the directory.
    #[error("spool {dir}: locked by another sink or process")]
    Locked { dir: String },
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes of the file up to the end of its last good record.
    size: u64,
    /// Good records in the file.
    records: u64,
    /// Records before the read position (loaded or delivered).
    read: u64,
    /// Records delivered.
    acked: u64,
}

/// An open spool. Blocking I/O: call it through [`SpoolHandle`] from async code.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    stats: Arc<SpoolStats>,
    /// Held open for the `flock`.
    _lock: File,
    segments: VecDeque<Segment>,
    /// The last segment, open for appends (none until the first append).
    tail: Option<File>,
    /// Next record to load: segment id and offset.
    read_seg: u64,
    read_off: u64,
    /// The segment being read, open.
    reader: Option<(u64, File)>,
    cursor: Option<File>,
    /// The last record delivered.
    acked_at: Option<Pos>,
    next_id: u64,
}

impl Spool {
    /// Open (or create) the spool in `cfg.dir`, waiting up to `lock_wait` for
    /// its lock. Existing segments are checked record by record: a torn tail
    /// is counted and cut off. Delivery resumes at the cursor.
    pub fn open(
        cfg: SpoolConfig,
        stats: Arc<SpoolStats>,
        lock_wait: Duration,
    ) -> Result<Spool, SpoolError> {
        let dir_name = cfg.dir.display().to_string();
        let io_err = |source| SpoolError::Io {
            dir: dir_name.clone(),
            source,
        };
        fs::create_dir_all(&cfg.dir).map_err(io_err)?;
        let lock = File::open(&cfg.dir).map_err(io_err)?;
        let started = Instant::now();
        loop {
            // SAFETY: `lock` is an open file descriptor for the whole call.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(io_err(e));
            }
            if started.elapsed() >= lock_wait {
                return Err(SpoolError::Locked { dir: dir_name });
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        let mut ids = Vec::new();
        for e in fs::read_dir(&cfg.dir).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let cursor = read_cursor(&cfg.dir.join(CURSOR));
        let mut s = Spool {
            stats,
            _lock: lock,
            segments: VecDeque::new(),
            tail: None,
            read_seg: 0,
            read_off: MAGIC.len() as u64,
            reader: None,
            cursor: None,
            acked_at: None,
            next_id: ids.last().map_or(1, |l| l + 1),
            cfg,
        };
        for id in ids {
            let path = s.seg_path(id);
            if cursor.is_some_and(|(cseg, _)| id < cseg) {
                // Delivered before a crash that came between the cursor
                // write and the delete.
                let _ = fs::remove_file(&path);
                continue;
            }
            let (size, boundaries) = match s.scan(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read spool segment; skipped");
                    incr(&s.stats.corrupt_records, 1);
                    let _ = fs::remove_file(&path);
                    continue;
                }
            };
            let mut seg = Segment {
                id,
                size,
                records: boundaries.len() as u64,
                read: 0,
                acked: 0,
            };
            if let Some((cseg, coff)) = cursor {
                if cseg == id {
                    // Resume after the last delivered record; a cursor that
                    // is not at a record boundary (it cannot happen unless the
                    // files were edited) resends the segment.
                    if let Some(k) = boundaries.iter().position(|&b| b == coff) {
                        seg.read = k as u64 + 1;
                        seg.acked = seg.read;
                    }
                }
            }
            if seg.acked == seg.records {
                // Nothing left in it.
                let _ = fs::remove_file(&path);
                continue;
            }
            if s.segments.is_empty() {
                s.read_seg = id;
                s.read_off = match seg.read {
                    0 => MAGIC.len() as u64,
                    k => boundaries[k as usize - 1],
                };
                if seg.acked > 0 {
                    s.acked_at = Some(Pos {
                        seg: id,
                        end: s.read_off,
                    });
                }
            }
            s.segments.push_back(seg);
        }
        if s.segments.is_empty() {
            let _ = fs::remove_file(s.cfg.dir.join(CURSOR));
        }
        s.publish();
        Ok(s)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.cfg.dir.join(format!("{id:020}.seg"))
    }

    /// Check every record of a segment; cut off a torn or corrupt tail
    /// (counted). Returns the good size and where each good record ends.
    fn scan(&self, path: &Path) -> io::Result<(u64, Vec<u64>)> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let len = f.metadata()?.len();
        let mut magic = [0u8; 8];
        if len < MAGIC.len() as u64 || {
            f.read_exact_at(&mut magic, 0)?;
            &magic != MAGIC
        } {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a spool segment",
            ));
        }
        let mut off = MAGIC.len() as u64;
        let mut ends = Vec::new();
        let mut buf = Vec::new();
        while off < len {
            match read_record(&f, off, len, &mut buf) {
                Ok(Some((_, next))) => {
                    ends.push(next);
                    off = next;
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        path = %path.display(),
                        offset = off,
                        skipped_bytes = len - off,
                        "torn or corrupt spool record; the rest of the segment is skipped"
                    );
                    incr(&self.stats.corrupt_records, 1);
                    f.set_len(off)?;
                    break;
                }
            }
        }
        Ok((off, ends))
    }

    /// Append entries `(payload, lines)` in order, dropping the oldest
    /// segments (counted) to stay under the cap.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a [u8], u64)>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        for (data, lines) in entries {
            let need = (HEADER + data.len()) as u64;
            let Ok(len) = u32::try_from(data.len()) else {
                self.count_dropped(1, data.len() as u64);
                continue;
            };
            if need + MAGIC.len() as u64 > self.cfg.max_bytes {
                tracing::warn!(
                    dir = %self.cfg.dir.display(),
                    bytes = data.len(),
                    max_bytes = self.cfg.max_bytes,
                    "entry larger than the spool's cap; dropped"
                );
                self.count_dropped(1, data.len() as u64);
                continue;
            }
            let tail_full = self
                .segments
                .back()
                .is_none_or(|s| s.size >= self.cfg.segment_bytes);
            if self.tail.is_none() || tail_full {
                self.roll()?;
            }
            while self.total_bytes() + need > self.cfg.max_bytes {
                if self.segments.len() == 1 {
                    // The tail itself is the oldest: start another first.
                    self.roll()?;
                }
                self.drop_oldest();
            }
            buf.clear();
            let lines = u32::try_from(lines).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&lines.to_le_bytes());
            let mut h = crc32fast::Hasher::new();
            h.update(&buf[..8]);
            h.update(data);
            buf.extend_from_slice(&h.finalize().to_le_bytes());
            buf.extend_from_slice(data);
            // `roll` opened the tail.
            let Some(tail) = self.tail.as_mut() else {
                return Err(io::Error::other("spool has no tail segment"));
            };
            tail.write_all(&buf)?;
            if let Some(seg) = self.segments.back_mut() {
                seg.size += buf.len() as u64;
                seg.records += 1;
            }
            incr(&self.stats.spooled_entries, 1);
            incr(&self.stats.spooled_bytes, data.len() as u64);
        }
        self.publish();
        Ok(())
    }

    /// Start a new tail segment.
    fn roll(&mut self) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.seg_path(id))?;
        f.write_all(MAGIC)?;
        if self.segments.is_empty() {
            self.read_seg = id;
            self.read_off = MAGIC.len() as u64;
        }
        self.segments.push_back(Segment {
            id,
            size: MAGIC.len() as u64,
            records: 0,
            read: 0,
            acked: 0,
        });
        self.tail = Some(f);
        Ok(())
    }

    /// Delete the oldest segment (not the tail); its unread records are
    /// counted as dropped. Records already loaded stay with the caller, who
    /// can tell by [`Spool::is_gone`].
    fn drop_oldest(&mut self) {
        if self.segments.len() < 2 {
            return;
        }
        let Some(seg) = self.segments.pop_front() else {
            return;
        };
        let unread = seg.records - seg.read;
        // Unread bytes are not tracked per record: charge the file's share.
        let bytes = ((seg.size - MAGIC.len() as u64) * unread)
            .checked_div(seg.records)
            .unwrap_or(0);
        self.count_dropped(unread, bytes.saturating_sub(unread * HEADER as u64));
        tracing::warn!(
            dir = %self.cfg.dir.display(),
            records = unread,
            max_bytes = self.cfg.max_bytes,
            "spool full; dropped its oldest segment"
        );
        let _ = fs::remove_file(self.seg_path(seg.id));
        if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.reader = None;
        }
        if self.read_seg == seg.id {
            if let Some(next) = self.segments.front() {
                self.read_seg = next.id;
                self.read_off = MAGIC.len() as u64;
            }
        }
        self.write_cursor();
    }

    fn count_dropped(&self, entries: u64, bytes: u64) {
        incr(&self.stats.dropped_entries, entries);
        incr(&self.stats.dropped_bytes, bytes);
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Records not yet delivered.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.acked).sum()
    }

    /// Nothing left to deliver.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records not yet loaded by [`Spool::read`].
    pub fn has_unread(&self) -> bool {
        self.segments.iter().any(|s| s.read < s.records)
    }

    /// Load records from the read position, oldest first: at least one (if
    /// any is left) and at most about `max_bytes`. Corrupt records found on
    /// the way are counted and skipped with the rest of their segment.
    pub fn read(&mut self, max_bytes: usize, out: &mut Vec<Record>) {
        let mut got = 0usize;
        let mut buf = Vec::new();
        while got < max_bytes || out.is_empty() {
            let Some(idx) = self.segments.iter().position(|s| s.id == self.read_seg) else {
                return;
            };
            let seg = &self.segments[idx];
            if seg.read >= seg.records {
                // This segment is read; go on with the next.
                match self.segments.get(idx + 1) {
                    Some(next) => {
                        self.read_seg = next.id;
                        self.read_off = MAGIC.len() as u64;
                        continue;
                    }
                    None => return,
                }
            }
            let (seg_id, seg_size) = (seg.id, seg.size);
            if self.reader.as_ref().is_none_or(|(id, _)| *id != seg_id) {
                match File::open(self.seg_path(seg_id)) {
                    Ok(f) => self.reader = Some((seg_id, f)),
                    Err(e) => {
                        self.skip_rest(idx, &e.to_string());
                        continue;
                    }
                }
            }
            let Some((_, f)) = self.reader.as_ref() else {
                return;
            };
            match read_record(f, self.read_off, seg_size, &mut buf) {
                Ok(Some((lines, next))) => {
                    got += buf.len();
                    out.push(Record {
                        // The buffer becomes the record: no second copy.
                        data: Bytes::from(std::mem::take(&mut buf)),
                        lines,
                        pos: Pos {
                            seg: seg_id,
                            end: next,
                        },
                    });
                    self.read_off = next;
                    self.segments[idx].read += 1;
                }
                Ok(None) => self.skip_rest(idx, "checksum or length mismatch"),
                Err(e) => self.skip_rest(idx, &e.to_string()),
            }
        }
    }

    /// A record of segment `idx` is bad: count it and give up the rest of
    /// the segment (as delivered, so it is deleted in turn).
    fn skip_rest(&mut self, idx: usize, why: &str) {
        incr(&self.stats.corrupt_records, 1);
        let seg = &mut self.segments[idx];
        tracing::warn!(
            dir = %self.cfg.dir.display(),
            segment = seg.id,
            offset = self.read_off,
            skipped_records = seg.records - seg.read,
            error = why,
            "corrupt spool record; the rest of the segment is skipped"
        );
        // Neither delivered nor dropped: corrupt, and counted as such.
        seg.records = seg.read;
        self.retire_front();
        self.write_cursor();
        self.publish();
    }

    /// These records (each with its payload size) were delivered, in order.
    pub fn ack(&mut self, records: &[(Pos, u64)]) {
        for &(pos, bytes) in records {
            incr(&self.stats.replayed_entries, 1);
            incr(&self.stats.replayed_bytes, bytes);
            if self.is_gone(pos) {
                // Its segment was dropped for the cap after it was loaded.
                continue;
            }
            // Everything in segments before it was delivered too.
            while self.segments.front().is_some_and(|s| s.id < pos.seg) {
                if let Some(s) = self.segments.front_mut() {
                    s.acked = s.records;
                }
                self.retire_front();
            }
            if let Some(seg) = self.segments.iter_mut().find(|s| s.id == pos.seg) {
                seg.acked = (seg.acked + 1).min(seg.read);
            }
            self.acked_at = Some(pos);
            self.retire_front();
        }
        self.write_cursor();
        self.publish();
    }

    /// Whether the segment `pos` came from is gone (dropped for the cap):
    /// a loaded record that is not delivered must then be spooled again.
    pub fn is_gone(&self, pos: Pos) -> bool {
        !self.segments.iter().any(|s| s.id == pos.seg)
    }

    /// Delete delivered segments at the front; when everything is delivered,
    /// the tail and the cursor go too.
    fn retire_front(&mut self) {
        while let Some(s) = self.segments.front() {
            if s.acked < s.records {
                return;
            }
            let id = s.id;
            self.segments.pop_front();
            if self.segments.is_empty() {
                self.tail = None;
            }
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            let _ = fs::remove_file(self.seg_path(id));
            if let Some(next) = self.segments.front() {
                if self.read_seg == id {
                    self.read_seg = next.id;
                    self.read_off = MAGIC.len() as u64;
                }
            }
        }
    }

    /// Persist where delivery resumes: the first segment, and the end of
    /// the last delivered record if it is in that segment. No segment left:
    /// no cursor.
    fn write_cursor(&mut self) {
        let path = self.cfg.dir.join(CURSOR);
        let Some(front) = self.segments.front() else {
            self.cursor = None;
            self.acked_at = None;
            let _ = fs::remove_file(&path);
            return;
        };
        let off = match self.acked_at {
            Some(p) if p.seg == front.id => p.end,
            _ => MAGIC.len() as u64,
        };
        let mut b = [0u8; CURSOR_LEN];
        b[..8].copy_from_slice(&front.id.to_le_bytes());
        b[8..16].copy_from_slice(&off.to_le_bytes());
        let crc = crc32fast::hash(&b[..16]);
        b[16..].copy_from_slice(&crc.to_le_bytes());
        if self.cursor.is_none() {
            match OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            {
                Ok(f) => self.cursor = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the spool cursor");
                    return;
                }
            }
        }
        if let Some(f) = &self.cursor {
            if let Err(e) = f.write_all_at(&b, 0) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the spool cursor");
            }
        }
    }

    fn publish(&self) {
        self.stats.held_entries.store(self.len(), Ordering::Relaxed);
        self.stats
            .held_bytes
            .store(self.total_bytes(), Ordering::Relaxed);
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The files stay for the next start; the gauges say nothing is held
        // by this (closed) spool.
        self.stats.held_entries.store(0, Ordering::Relaxed);
        self.stats.held_bytes.store(0, Ordering::Relaxed);
    }
}

/// `(segment id, offset)` from a cursor file, if it is whole.
fn read_cursor(path: &Path) -> Option<(u64, u64)> {
    let b = fs::read(path).ok()?;
    if b.len() != CURSOR_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    if crc32fast::hash(&b[..16]) != crc {
        tracing::warn!(path = %path.display(), "spool cursor is corrupt; delivery restarts at the oldest segment");
        return None;
    }
    let seg = u64::from_le_bytes(b[..8].try_into().ok()?);
    let off = u64::from_le_bytes(b[8..16].try_into().ok()?);
    Some((seg, off))
}

/// Read the record at `off` of a file whose good part ends at `end` into
/// `buf`. `Ok(Some((lines, next offset)))`, or `Ok(None)` when it is torn
/// (runs past `end`) or its checksum does not match.
fn read_record(f: &File, off: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<Option<(u64, u64)>> {
    if off + HEADER as u64 > end {
        return Ok(None);
    }
    let mut h = [0u8; HEADER];
    f.read_exact_at(&mut h, off)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let lines = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let next = off + HEADER as u64 + len;
    if next > end {
        return Ok(None);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    f.read_exact_at(buf, off + HEADER as u64)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..8]);
    hasher.update(buf);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((lines, next)))
}

/// A [`Spool`] for async code: every operation runs on tokio's blocking
/// pool, one at a time (the caller awaits each), so the files are never
/// touched from a runtime worker and operations keep their order.
#[derive(Debug)]
pub struct SpoolHandle {
    spool: Option<Spool>,
    /// Copies of the spool's state after the last operation.
    len: u64,
    unread: bool,
}

impl SpoolHandle {
    /// Open on the blocking pool (see [`Spool::open`]).
    pub async fn open(
        cfg: SpoolConfig,
        stats: Arc<SpoolStats>,
        lock_wait: Duration,
    ) -> Result<SpoolHandle, SpoolError> {
        let dir = cfg.dir.display().to_string();
        let spool = tokio::task::spawn_blocking(move || Spool::open(cfg, stats, lock_wait))
            .await
            .map_err(|e| SpoolError::Io {
                dir,
                source: io::Error::other(e),
            })??;
        let mut h = SpoolHandle {
            spool: Some(spool),
            len: 0,
            unread: false,
        };
        h.refresh();
        Ok(h)
    }

    fn refresh(&mut self) {
        if let Some(s) = &self.spool {
            self.len = s.len();
            self.unread = s.has_unread();
        } else {
            self.len = 0;
            self.unread = false;
        }
    }

    /// Run `f` on the spool, on the blocking pool. `None` if the spool is
    /// gone (an earlier operation panicked; logged then).
    async fn with<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Option<R> {
        let mut spool = self.spool.take()?;
        let r = tokio::task::spawn_blocking(move || {
            let r = f(&mut spool);
            (spool, r)
        })
        .await;
        match r {
            Ok((spool, r)) => {
                self.spool = Some(spool);
                self.refresh();
                Some(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "spool operation failed; the spool is closed");
                self.refresh();
                None
            }
        }
    }

    /// Records waiting to be delivered.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records not loaded yet.
    pub fn has_unread(&self) -> bool {
        self.unread
    }

    /// Append `(payload, lines)` entries. `Err` leaves them to the caller
    /// (to count as dropped).
    pub async fn append(&mut self, entries: Vec<(Bytes, u64)>) -> io::Result<()> {
        self.with(move |s| s.append(entries.iter().map(|(d, l)| (&d[..], *l))))
            .await
            .unwrap_or_else(|| Err(io::Error::other("spool closed")))
    }

    /// Load up to about `max_bytes` of records (see [`Spool::read`]).
    pub async fn read(&mut self, max_bytes: usize) -> Vec<Record> {
        self.with(move |s| {
            let mut out = Vec::new();
            s.read(max_bytes, &mut out);
            out
        })
        .await
        .unwrap_or_default()
    }

    /// See [`Spool::ack`].
    pub async fn ack(&mut self, records: Vec<(Pos, u64)>) {
        if records.is_empty() {
            return;
        }
        self.with(move |s| s.ack(&records)).await;
    }

    /// Which of `positions` were dropped for the cap (see [`Spool::is_gone`]).
    pub fn gone(&self, positions: &[Pos]) -> Vec<bool> {
        match &self.spool {
            Some(s) => positions.iter().map(|p| s.is_gone(*p)).collect(),
            None => vec![true; positions.len()],
        }
    }

    /// Close the spool on the blocking pool (its files stay).
    pub async fn close(mut self) {
        if let Some(s) = self.spool.take() {
            let _ = tokio::task::spawn_blocking(move || drop(s)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::get;

    fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.join("s"),
            max_bytes,
            segment_bytes,
        }
    }

    fn open(c: &SpoolConfig) -> (Spool, Arc<SpoolStats>) {
        let stats = Arc::new(SpoolStats::default());
        let s = Spool::open(c.clone(), stats.clone(), Duration::ZERO).unwrap();
        (s, stats)
    }

    fn put(s: &mut Spool, items: &[&str]) {
        s.append(items.iter().map(|i| (i.as_bytes(), 1))).unwrap();
    }

    /// Read and deliver `n` records, returning their payloads.
    fn deliver(s: &mut Spool, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let mut recs = Vec::new();
            s.read(1, &mut recs);
            if recs.is_empty() {
                break;
            }
            for r in recs {
                s.ack(&[(r.pos, r.data.len() as u64)]);
                out.push(String::from_utf8(r.data.to_vec()).unwrap());
            }
        }
        out
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn replays_in_order_across_segments_and_deletes_as_it_drains() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 1 << 20, 40);
        let (mut s, stats) = open(&c);
        put(&mut s, &["one", "two", "three", "four", "five"]);
        assert!(files(&c.dir).len() >= 2, "{:?}", files(&c.dir));
        assert_eq!(s.len(), 5);
        assert_eq!(get(&stats.held_entries), 5);
        assert_eq!(deliver(&mut s, 2), ["one", "two"]);
        put(&mut s, &["six"]);
        assert_eq!(deliver(&mut s, 10), ["three", "four", "five", "six"]);
        assert!(s.is_empty());
        assert!(files(&c.dir).is_empty(), "{:?}", files(&c.dir));
        assert_eq!(get(&stats.spooled_entries), 6);
        assert_eq!(get(&stats.replayed_entries), 6);
        assert_eq!(get(&stats.held_bytes), 0);
        // And it starts again after draining.
        put(&mut s, &["seven"]);
        assert_eq!(deliver(&mut s, 10), ["seven"]);
    }

    #[test]
    fn a_restart_resumes_at_the_cursor() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 1 << 20, 30);
        let (mut s, _) = open(&c);
        put(&mut s, &["a1", "a2", "a3", "a4", "a5"]);
        assert_eq!(deliver(&mut s, 3), ["a1", "a2", "a3"]);
        // Loaded but not delivered: sent again after the restart.
        let mut recs = Vec::new();
        s.read(1, &mut recs);
        assert_eq!(&recs[0].data[..], b"a4");
        drop(s);
        let (mut s, stats) = open(&c);
        assert_eq!(s.len(), 2);
        assert_eq!(get(&stats.held_entries), 2);
        assert_eq!(deliver(&mut s, 10), ["a4", "a5"]);
        assert!(files(&c.dir).is_empty());
    }

    #[test]
    fn the_directory_is_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 1 << 20, 1 << 20);
        let (s, _) = open(&c);
        let again = Spool::open(c.clone(), Arc::default(), Duration::from_millis(50));
        assert!(matches!(again, Err(SpoolError::Locked { .. })), "{again:?}");
        drop(s);
        assert!(Spool::open(c, Arc::default(), Duration::ZERO).is_ok());
    }

    #[test]
    fn torn_and_corrupt_tails_are_counted_and_skipped() {
        for damage in ["truncate", "garbage", "flip"] {
            let tmp = tempfile::tempdir().unwrap();
            let c = cfg(tmp.path(), 1 << 20, 1 << 20);
            let (mut s, _) = open(&c);
            put(&mut s, &["good1", "good2", "lastone"]);
            drop(s);
            let seg = c.dir.join(&files(&c.dir)[0]);
            let mut bytes = fs::read(&seg).unwrap();
            match damage {
                "truncate" => bytes.truncate(bytes.len() - 3),
                "garbage" => bytes.extend_from_slice(&[0xff; 7]),
                _ => {
                    let n = bytes.len();
                    bytes[n - 2] ^= 0x40;
                }
            }
            fs::write(&seg, &bytes).unwrap();
            let (mut s, stats) = open(&c);
            assert_eq!(get(&stats.corrupt_records), 1, "{damage}");
            let want: &[&str] = if damage == "garbage" {
                &["good1", "good2", "lastone"]
            } else {
                &["good1", "good2"]
            };
            assert_eq!(deliver(&mut s, 10), want, "{damage}");
            assert!(files(&c.dir).is_empty(), "{damage}");
        }
    }

    #[test]
    fn corruption_found_while_reading_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 1 << 20, 1 << 20);
        let (mut s, stats) = open(&c);
        put(&mut s, &["first", "second", "third"]);
        let seg = c.dir.join(&files(&c.dir)[0]);
        // Flip a payload byte of "second" behind the spool's back.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let off = (MAGIC.len() + HEADER + 5 + HEADER) as u64;
        f.write_all_at(b"X", off).unwrap();
        assert_eq!(deliver(&mut s, 10), ["first"]);
        assert_eq!(get(&stats.corrupt_records), 1);
        assert!(s.is_empty());
        assert!(files(&c.dir).is_empty(), "{:?}", files(&c.dir));
    }

    #[test]
    fn the_cap_drops_the_oldest_segment_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        // Each record is 12 + 10 bytes; segments roll after two records.
        let c = cfg(tmp.path(), 120, 40);
        let (mut s, stats) = open(&c);
        let items: Vec<String> = (0..10).map(|i| format!("record-{i:03}")).collect();
        for i in &items {
            put(&mut s, &[i.as_str()]);
            assert!(get(&stats.held_bytes) <= 120);
        }
        let dropped = get(&stats.dropped_entries);
        assert!(dropped >= 4, "{dropped}");
        let got = deliver(&mut s, 100);
        assert_eq!(got.len() as u64 + dropped, 10);
        // What is left is the newest, in order.
        assert_eq!(got, items[dropped as usize..]);
        // An entry larger than the cap is refused, and counted.
        put(&mut s, &[&"x".repeat(200)]);
        assert_eq!(get(&stats.dropped_entries), dropped + 1);
        assert!(s.is_empty());
    }

    #[test]
    fn loaded_records_of_a_dropped_segment_are_reported_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 120, 40);
        let (mut s, _) = open(&c);
        put(&mut s, &["record-000", "record-001"]);
        let mut recs = Vec::new();
        s.read(1, &mut recs);
        assert!(!s.is_gone(recs[0].pos));
        for i in 2..10 {
            put(&mut s, &[format!("record-{i:03}").as_str()]);
        }
        assert!(s.is_gone(recs[0].pos));
        // Acknowledging it later is harmless.
        s.ack(&[(recs[0].pos, 10)]);
        let got = deliver(&mut s, 100);
        assert_eq!(got.last().map(String::as_str), Some("record-009"));
    }
}

//! A persistent TCP connection fed from a bounded, drop-oldest buffer: the
//! delivery half shared by the graphite sink and the repeater's TCP
//! destinations.
//!
//! One task owns the queue receiver, the buffer ([`Outbox`]) and the
//! connection. A single `select!` loop keeps draining the queue into the
//! buffer while it connects, backs off or writes, so a slow or dead
//! destination costs buffer space, never queue consumption. Every await
//! inside the loop is cancel-safe: writes go through `try_write_vectored`
//! after `writable()`, and what was written is recorded only when the call
//! returns, so dropping a pending write never loses track of a byte.
//!
//! Delivery is at-least-once per entry: an entry leaves the buffer only when
//! its last byte was accepted by the kernel. If the connection fails halfway
//! through an entry, the whole entry is sent again on the next connection
//! (a receiver drops the torn line or pickle frame; carbon stores a repeated
//! datapoint once, since the timestamp is the same).
//!
//! With a spool ([`crate::spool`], the graphite sink's `spool_dir`), the
//! buffer is the first level and the spool the second: what overflows the
//! buffer goes to the spool (oldest first) instead of being dropped, and the
//! spool's records go out before the buffer's entries, so order is kept. The
//! one exception is an entry that was partly written on a connection that
//! was lost: it is older than everything spooled after it, so it stays in the
//! buffer and goes first. Records are loaded back 1 MiB at a time and
//! acknowledged as they are written out. At shutdown, what the destination
//! cannot take now (it is down, or the spool is still behind) is spooled at
//! once instead of waiting for the deadline; what is still held at the
//! deadline is spooled too. Spool I/O is awaited on tokio's blocking pool,
//! which pauses only this destination's task.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::spool::{Pos, SpoolConfig, SpoolHandle};
use crate::stats::{get, incr, SinkStats};

/// How many buffered entries one vectored write hands to the kernel at most.
const MAX_SLICES: usize = 64;

/// Minimum time between two "buffer full" warnings of one outlet: a dead
/// destination behind a busy repeater would otherwise log once per packet.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// One unit of delivery: a whole encoded flush, or one repeated packet.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub data: Bytes,
    /// Metric lines (or packets) the entry carries, for `SinkStats::lines_sent`.
    pub lines: u64,
}

/// Entries waiting for the destination, oldest first, bounded in bytes.
#[derive(Debug)]
pub(crate) struct Outbox {
    entries: VecDeque<Entry>,
    bytes: usize,
    cap: usize,
    /// Bytes of the front entry already written on the current connection.
    /// Only the front can be partly written: `advance` pops every entry it
    /// completes.
    written: usize,
    /// Some bytes of the front entry went out on some connection (kept when
    /// the connection is lost): with a spool, that entry is older than
    /// everything spooled and must go first.
    tried: bool,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            bytes: 0,
            cap,
            written: 0,
            tried: false,
        }
    }

    /// Whether the front entry was partly written on some connection.
    pub fn front_tried(&self) -> bool {
        self.tried && !self.entries.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held, counting the front entry whole.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Append `entry`, then drop the oldest entries while over the bound.
    /// The newest entry is always kept (a bound smaller than one flush must
    /// not stop delivery altogether), and so is a partly written front entry
    /// (dropping it would tear a line on the wire). Returns what was dropped.
    pub fn push(&mut self, entry: Entry) -> Vec<Entry> {
        self.push_with(entry, false)
    }

    /// [`Outbox::push`]; with `keep_tried`, a front entry that was partly
    /// written on an earlier connection is kept too (a spool takes the
    /// overflow, and that entry is older than what the spool holds).
    pub fn push_with(&mut self, entry: Entry, keep_tried: bool) -> Vec<Entry> {
        self.bytes += entry.data.len();
        self.entries.push_back(entry);
        let mut dropped = Vec::new();
        while self.bytes > self.cap {
            let oldest = usize::from(self.written > 0 || (keep_tried && self.tried));
            if oldest + 1 >= self.entries.len() {
                break;
            }
            // `oldest` < len - 1, so the entry exists.
            if let Some(e) = self.entries.remove(oldest) {
                self.bytes -= e.data.len();
                dropped.push(e);
                if oldest == 0 {
                    // The tried front is gone; the new front is untried.
                    self.tried = false;
                }
            }
        }
        dropped
    }

    /// The unwritten bytes, front first, as slices for one vectored write.
    /// Returns how many slices of `out` were filled.
    #[cfg(test)]
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.slices_of(usize::MAX, out)
    }

    /// [`Outbox::slices`] of the first `max_entries` entries only.
    pub fn slices_of<'a>(&'a self, max_entries: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, e) in self.entries.iter().take(max_entries).enumerate() {
            if n == out.len() {
                break;
            }
            let data = if i == 0 {
                &e.data[self.written..]
            } else {
                &e.data[..]
            };
            if !data.is_empty() {
                out[n] = IoSlice::new(data);
                n += 1;
            }
        }
        n
    }

    /// Record that `n` more bytes were written; every entry this completes is
    /// removed and handed to `done`, oldest first.
    pub fn advance(&mut self, mut n: usize, mut done: impl FnMut(Entry)) {
        while let Some(front) = self.entries.front() {
            let left = front.data.len() - self.written;
            if n < left {
                self.written += n;
                self.tried |= n > 0;
                return;
            }
            n -= left;
            self.written = 0;
            self.tried = false;
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.data.len();
                done(e);
            }
        }
    }

    /// Start the front entry over (the connection it was going out on is gone).
    pub fn rewind(&mut self) {
        self.written = 0;
    }

    /// Remove everything.
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.written = 0;
        self.tried = false;
        self.bytes = 0;
        self.entries.drain(..).collect()
    }
}

/// What one destination's outlet turns its queue messages into, and what it
/// wants to hear about.
pub(crate) trait Feed: Send + 'static {
    type Msg: Send + 'static;
    /// The bytes to deliver for `msg`, or `None` to skip it.
    fn encode(&mut self, msg: Self::Msg) -> Option<Entry>;
    /// `entry` was written completely, `took` after its first byte was tried.
    fn sent(&mut self, entry: &Entry, took: Duration) {
        let _ = (entry, took);
    }
    /// A connect or write failed.
    fn failed(&mut self) {}
}

/// Where and how an outlet delivers.
#[derive(Debug, Clone)]
pub(crate) struct OutletConfig {
    /// The sink's name, for logs.
    pub sink: String,
    /// `host:port`, resolved at every connect.
    pub addr: String,
    pub buffer_bytes: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long delivery may go on once the queue has closed.
    pub shutdown_timeout: Duration,
    /// Where what overflows `buffer_bytes` goes; `None`: it is dropped.
    pub spool: Option<SpoolConfig>,
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum Conn {
    /// No connection; try again at `retry_at` once there is something to send.
    Down {
        retry_at: Instant,
    },
    Connecting(ConnectFuture),
    Up(TcpStream),
}

/// What moved the connection forward.
enum Event {
    RetryDue,
    Connected(io::Result<TcpStream>),
    /// A write returned; `started` is when it began waiting to write.
    Wrote {
        started: Instant,
        result: io::Result<usize>,
    },
    /// The peer closed (`None`) or reset (`Some`) the connection.
    Closed(Option<io::Error>),
}

/// Rate-limited warning about entries dropped at the buffer bound.
struct DropLog {
    last: Option<Instant>,
    entries: u64,
    bytes: u64,
}

/// Run one destination until `rx` closes, then deliver what is buffered
/// within `cfg.shutdown_timeout`; what is still held then is spooled (with a
/// spool) or dropped and counted.
pub(crate) async fn run<F: Feed>(
    cfg: OutletConfig,
    stats: Arc<SinkStats>,
    mut rx: mpsc::Receiver<F::Msg>,
    mut feed: F,
) {
    let spool = match &cfg.spool {
        None => None,
        Some(sc) => {
            // A sink that a reload is replacing may still hold the
            // directory while it delivers: wait for it as long as it may take.
            let wait = cfg.shutdown_timeout + Duration::from_secs(2);
            match SpoolHandle::open(sc.clone(), stats.spool.clone(), wait).await {
                Ok(h) => {
                    if !h.is_empty() {
                        tracing::info!(
                            sink = %cfg.sink,
                            dir = %sc.dir.display(),
                            entries = h.len(),
                            "spool holds undelivered flushes from before; they go first"
                        );
                    }
                    Some(h)
                }
                Err(e) => {
                    tracing::error!(sink = %cfg.sink, error = %e, "cannot open the spool; running without it");
                    None
                }
            }
        }
    };
    let mut o = Outlet {
        outbox: Outbox::new(cfg.buffer_bytes),
        replay: Outbox::new(usize::MAX),
        replay_pos: VecDeque::new(),
        spool,
        conn: Conn::Down {
            retry_at: Instant::now(),
        },
        backoff: cfg.backoff_min,
        front_started: None,
        reported_bytes: 0,
        drop_log: DropLog {
            last: None,
            entries: 0,
            bytes: 0,
        },
        cfg,
        stats,
    };

    loop {
        o.load_replay().await;
        let src = o.source();
        let has_data = o.has_data();
        let step = tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => Step::Msg(msg),
                None => break,
            },
            ev = progress(&mut o.conn, writable(&o.outbox, &o.replay, src), has_data) => Step::Event(ev),
        };
        match step {
            Step::Msg(msg) => {
                if let Some(entry) = feed.encode(msg) {
                    o.push(entry).await;
                }
            }
            Step::Event(ev) => o.handle(ev, src, &mut feed).await,
        }
    }

    // The queue is closed: deliver what is left, within the deadline. A
    // pending backoff is cut short, since there is no later to wait for.
    // With a spool, what the destination cannot take now (it is down, or the
    // spool is still behind) goes to the spool at once rather than waiting.
    let deadline = Instant::now() + o.cfg.shutdown_timeout;
    if let Conn::Down { retry_at } = &mut o.conn {
        *retry_at = Instant::now();
    }
    let errors = get(&o.stats.errors);
    while !o.outbox.is_empty() {
        if o.spool.is_some() {
            let behind = !matches!(o.source(), Src::Outbox(_));
            if get(&o.stats.errors) > errors || (behind && !o.outbox.front_tried()) {
                break;
            }
        }
        let src = o.source();
        let has_data = o.has_data();
        tokio::select! {
            ev = progress(&mut o.conn, writable(&o.outbox, &o.replay, src), has_data) => o.handle(ev, src, &mut feed).await,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let left = o.outbox.take_all();
    let replayed = o.replay.take_all();
    let positions: Vec<Pos> = o.replay_pos.drain(..).map(|(p, _)| p).collect();
    if let Some(mut spool) = o.spool.take() {
        // Loaded from the spool but not delivered: still on disk, unless
        // the cap dropped their segment meanwhile.
        let gone = spool.gone(&positions);
        let again: Vec<(Bytes, u64)> = replayed
            .into_iter()
            .zip(gone)
            .filter(|(_, g)| *g)
            .map(|(e, _)| (e.data, e.lines))
            .chain(left.into_iter().map(|e| (e.data, e.lines)))
            .collect();
        if !again.is_empty() {
            let entries = again.len();
            let bytes: usize = again.iter().map(|(d, _)| d.len()).sum();
            match spool.append(again).await {
                Ok(()) => tracing::info!(
                    sink = %o.cfg.sink,
                    addr = %o.cfg.addr,
                    entries,
                    bytes,
                    "destination unavailable at shutdown; undelivered data spooled"
                ),
                Err(e) => {
                    incr(&o.stats.dropped, entries as u64);
                    tracing::error!(
                        sink = %o.cfg.sink,
                        addr = %o.cfg.addr,
                        entries,
                        bytes,
                        error = %e,
                        "cannot spool at shutdown; dropping undelivered data"
                    );
                }
            }
        }
        spool.close().await;
    } else if !left.is_empty() {
        let bytes: usize = left.iter().map(|e| e.data.len()).sum();
        incr(&o.stats.dropped, left.len() as u64);
        tracing::warn!(
            sink = %o.cfg.sink,
            addr = %o.cfg.addr,
            entries = left.len(),
            bytes,
            "shutdown deadline passed; dropping undelivered data"
        );
    }
    o.report_bytes();
    o.log_drops(true);
    if let Conn::Up(mut stream) = o.conn {
        // Send our FIN so the receiver sees a clean end of stream; what the
        // kernel still holds is delivered after the socket is dropped.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, tokio::io::AsyncWriteExt::shutdown(&mut stream)).await;
    }
}

/// What one turn of the loop brought.
enum Step<M> {
    Msg(M),
    Event(Event),
}

/// Where the next bytes come from. With a spool, the order is: an outbox
/// entry already partly written (it was taken before anything was spooled),
/// then the spool, oldest first, then the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The first `n` entries of the outbox.
    Outbox(usize),
    /// The entries loaded from the spool.
    Replay,
    /// Nothing until more is loaded from the spool.
    Nothing,
}

/// How many bytes are loaded from the spool at a time.
const REPLAY_BYTES: usize = 1 << 20;

fn writable<'a>(outbox: &'a Outbox, replay: &'a Outbox, src: Src) -> Option<(&'a Outbox, usize)> {
    match src {
        Src::Outbox(n) => Some((outbox, n)),
        Src::Replay => Some((replay, usize::MAX)),
        Src::Nothing => None,
    }
}

struct Outlet {
    cfg: OutletConfig,
    stats: Arc<SinkStats>,
    /// The first level: recent entries in memory.
    outbox: Outbox,
    /// Entries loaded back from the spool, oldest first, and where each
    /// ends in the spool (with its payload size), to acknowledge it.
    replay: Outbox,
    replay_pos: VecDeque<(Pos, u64)>,
    /// The second level: what overflowed the outbox, on disk.
    spool: Option<SpoolHandle>,
    conn: Conn,
    /// The wait after the next failure.
    backoff: Duration,
    /// When the first byte of the current front entry was tried on this connection.
    front_started: Option<Instant>,
    /// What this outlet last added to `SinkStats::buffered_bytes`, which
    /// several outlets (the repeater's destinations) share.
    reported_bytes: usize,
    drop_log: DropLog,
}

impl Outlet {
    /// Where the next write takes its bytes from.
    fn source(&self) -> Src {
        let Some(spool) = &self.spool else {
            return Src::Outbox(usize::MAX);
        };
        if self.replay.is_empty() && !spool.has_unread() {
            Src::Outbox(usize::MAX)
        } else if self.outbox.front_tried() {
            Src::Outbox(1)
        } else if !self.replay.is_empty() {
            Src::Replay
        } else {
            Src::Nothing
        }
    }

    /// Anything to deliver, in memory or on disk.
    fn has_data(&self) -> bool {
        !self.outbox.is_empty()
            || !self.replay.is_empty()
            || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// While connected, load the next spooled entries once the loaded ones
    /// are delivered.
    async fn load_replay(&mut self) {
        if !matches!(self.conn, Conn::Up(_)) || self.source() != Src::Nothing {
            return;
        }
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        for r in spool.read(REPLAY_BYTES).await {
            self.replay_pos.push_back((r.pos, r.data.len() as u64));
            self.replay.push(Entry {
                data: r.data,
                lines: r.lines,
            });
        }
        self.report_bytes();
    }

    async fn push(&mut self, entry: Entry) {
        if self.spool.is_none() {
            let dropped = self.outbox.push(entry);
            self.count_dropped(&dropped);
            self.report_bytes();
            return;
        }
        // Over the bound, the oldest entries go to the spool, behind what
        // it holds: the spool then holds everything older than the outbox.
        let over = self.outbox.push_with(entry, true);
        self.report_bytes();
        if over.is_empty() {
            return;
        }
        let batch: Vec<(Bytes, u64)> = over.iter().map(|e| (e.data.clone(), e.lines)).collect();
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        if let Err(e) = spool.append(batch).await {
            tracing::error!(sink = %self.cfg.sink, error = %e, "cannot spool; dropping the oldest undelivered data");
            self.count_dropped(&over);
        }
    }

    fn count_dropped(&mut self, dropped: &[Entry]) {
        if !dropped.is_empty() {
            incr(&self.stats.dropped, dropped.len() as u64);
            self.drop_log.entries += dropped.len() as u64;
            self.drop_log.bytes += dropped.iter().map(|e| e.data.len() as u64).sum::<u64>();
            self.log_drops(false);
        }
    }

    fn log_drops(&mut self, force: bool) {
        if self.drop_log.entries == 0 {
            return;
        }
        let now = Instant::now();
        let due = self
            .drop_log
            .last
            .is_none_or(|t| now.duration_since(t) >= DROP_LOG_EVERY);
        if force || due {
            tracing::warn!(
                sink = %self.cfg.sink,
                addr = %self.cfg.addr,
                entries = self.drop_log.entries,
                bytes = self.drop_log.bytes,
                buffer_bytes = self.cfg.buffer_bytes,
                "buffer full; dropped the oldest undelivered data"
            );
            self.drop_log.last = Some(now);
            self.drop_log.entries = 0;
            self.drop_log.bytes = 0;
        }
    }

    fn report_bytes(&mut self) {
        let now = self.outbox.bytes() + self.replay.bytes();
        let b = &self.stats.buffered_bytes;
        if now >= self.reported_bytes {
            b.fetch_add((now - self.reported_bytes) as u64, Ordering::Relaxed);
        } else {
            b.fetch_sub((self.reported_bytes - now) as u64, Ordering::Relaxed);
        }
        self.reported_bytes = now;
    }

    async fn handle<F: Feed>(&mut self, ev: Event, src: Src, feed: &mut F) {
        match ev {
            Event::RetryDue => {
                let addr = self.cfg.addr.clone();
                let timeout = self.cfg.connect_timeout;
                self.conn = Conn::Connecting(Box::pin(async move {
                    match tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connect timed out after {timeout:?}"),
                        )),
                    }
                }));
            }
            Event::Connected(Ok(stream)) => {
                tracing::info!(sink = %self.cfg.sink, addr = %self.cfg.addr, "connected");
                self.stats.set_connected(true); // [status page] output state
                self.outbox.rewind();
                self.replay.rewind();
                self.front_started = None;
                self.conn = Conn::Up(stream);
            }
            Event::Connected(Err(e)) => self.fail(feed, "connect failed", Some(e)),
            Event::Wrote { result: Ok(0), .. } => self.fail(
                feed,
                "write failed",
                Some(io::Error::from(io::ErrorKind::WriteZero)),
            ),
            Event::Wrote {
                started,
                result: Ok(n),
            } => {
                incr(&self.stats.bytes_sent, n as u64);
                let now = Instant::now();
                let first = *self.front_started.get_or_insert(started);
                let mut completed = 0usize;
                let stats = &self.stats;
                let from = if src == Src::Replay {
                    &mut self.replay
                } else {
                    &mut self.outbox
                };
                from.advance(n, |e| {
                    completed += 1;
                    incr(&stats.lines_sent, e.lines);
                    feed.sent(&e, now.duration_since(first));
                });
                if completed > 0 {
                    self.stats.delivered(); // [status page] output state
                                            // The destination takes data again: the next failure
                                            // starts from the shortest wait.
                    self.backoff = self.cfg.backoff_min;
                    self.front_started = (from.written > 0).then_some(started);
                }
                if src == Src::Replay && completed > 0 {
                    let acks: Vec<(Pos, u64)> = self.replay_pos.drain(..completed).collect();
                    if let Some(spool) = self.spool.as_mut() {
                        spool.ack(acks).await;
                    }
                }
                self.report_bytes();
            }
            Event::Wrote { result: Err(e), .. } => self.fail(feed, "write failed", Some(e)),
            Event::Closed(Some(e)) => self.fail(feed, "connection reset", Some(e)),
            Event::Closed(None) => {
                if !self.has_data() {
                    // An idle connection closed by the peer is no failure:
                    // reconnect when there is something to send.
                    tracing::debug!(sink = %self.cfg.sink, addr = %self.cfg.addr, "peer closed the connection");
                    self.stats.set_connected(false); // [status page] output state
                    self.outbox.rewind();
                    self.replay.rewind();
                    self.conn = Conn::Down {
                        retry_at: Instant::now(),
                    };
                } else {
                    self.fail(feed, "peer closed the connection", None);
                }
            }
        }
    }

    /// Drop the connection (if any) and schedule the next attempt.
    fn fail<F: Feed>(&mut self, feed: &mut F, what: &str, error: Option<io::Error>) {
        incr(&self.stats.errors, 1);
        feed.failed();
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        let error = error.map_or_else(|| "end of stream".to_string(), |e| e.to_string());
        self.stats.failed(format!("{what}: {error}")); // [status page] output state
        tracing::warn!(
            sink = %self.cfg.sink,
            addr = %self.cfg.addr,
            %error,
            retry_in_ms = wait.as_millis() as u64,
            buffered_entries = self.outbox.len(),
            spooled_entries = self.spool.as_ref().map_or(0, |s| s.len()),
            "{what}"
        );
        self.outbox.rewind();
        self.replay.rewind();
        self.front_started = None;
        self.conn = Conn::Down {
            retry_at: Instant::now() + wait,
        };
    }
}

/// Wait for the next thing that moves the connection forward. Cancel-safe:
/// nothing is recorded until the returned event is handled. `src` is what
/// may be written now (the outbox and how many of its entries, or the
/// replayed entries); `has_data` whether anything is waiting at all.
async fn progress(conn: &mut Conn, src: Option<(&Outbox, usize)>, has_data: bool) -> Event {
    match conn {
        Conn::Down { retry_at } => {
            if !has_data {
                // Nothing to send: stay down until a message arrives.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(*retry_at).await;
            Event::RetryDue
        }
        Conn::Connecting(fut) => Event::Connected(fut.await),
        Conn::Up(stream) => {
            let stream = &*stream;
            let src = src.filter(|(o, _)| !o.is_empty());
            tokio::select! {
                (started, result) = write_some(stream, src), if src.is_some() => {
                    Event::Wrote { started, result }
                }
                e = watch_close(stream) => Event::Closed(e),
            }
        }
    }
}

async fn write_some(
    stream: &TcpStream,
    src: Option<(&Outbox, usize)>,
) -> (Instant, io::Result<usize>) {
    let started = Instant::now();
    let Some((outbox, max_entries)) = src else {
        // Not polled without a source (see `progress`).
        return (started, Ok(0));
    };
    loop {
        if let Err(e) = stream.writable().await {
            return (started, Err(e));
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = outbox.slices_of(max_entries, &mut slices);
        match stream.try_write_vectored(&slices[..n]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return (started, r),
        }
    }
}

/// Resolve when the peer closes (`None`) or resets (`Some`) the connection.
/// Graphite receivers send nothing, so anything read is discarded.
async fn watch_close(stream: &TcpStream) -> Option<io::Error> {
    let mut buf = [0u8; 1024];
    loop {
        if let Err(e) = stream.readable().await {
            return Some(e);
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> Entry {
        Entry {
            data: Bytes::copy_from_slice(s.as_bytes()),
            lines: 1,
        }
    }

    fn contents(o: &Outbox) -> Vec<String> {
        o.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    fn unwritten(o: &Outbox) -> Vec<String> {
        let mut s = [IoSlice::new(&[]); 8];
        let n = o.slices(&mut s);
        s[..n]
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn push_drops_oldest_over_the_bound() {
        /// (cap, pushes, kept, dropped)
        type Case<'a> = (usize, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (10, &["aaaa", "bbbb"], &["aaaa", "bbbb"], &[]),
            (10, &["aaaa", "bbbb", "cccc"], &["bbbb", "cccc"], &["aaaa"]),
            (8, &["aaaa", "bbbb", "cc"], &["bbbb", "cc"], &["aaaa"]),
            // The newest is kept even alone over the bound.
            (3, &["aaaa", "bbbbbb"], &["bbbbbb"], &["aaaa"]),
            (0, &["a", "b", "c"], &["c"], &["a", "b"]),
        ];
        for (cap, pushes, kept, dropped) in cases {
            let mut o = Outbox::new(*cap);
            let mut gone = Vec::new();
            for p in *pushes {
                gone.extend(o.push(entry(p)));
            }
            let gone: Vec<String> = gone
                .iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect();
            assert_eq!(contents(&o), *kept, "cap {cap} pushes {pushes:?}");
            assert_eq!(gone, *dropped, "cap {cap} pushes {pushes:?}");
            assert_eq!(o.bytes(), kept.iter().map(|s| s.len()).sum::<usize>());
        }
    }

    #[test]
    fn partly_written_front_is_never_dropped() {
        let mut o = Outbox::new(8);
        o.push(entry("aaaa"));
        o.advance(2, |_| panic!("nothing completes"));
        o.push(entry("bbbb"));
        let dropped = o.push(entry("cccc"));
        assert_eq!(dropped.len(), 1);
        assert_eq!(contents(&o), ["aaaa", "cccc"]);
        assert_eq!(unwritten(&o), ["aa", "cccc"]);
    }

    #[test]
    fn a_front_tried_on_a_lost_connection_stays_ahead_of_the_spool() {
        for keep_tried in [true, false] {
            let mut o = Outbox::new(4);
            o.push(entry("aaaa"));
            o.advance(2, |_| panic!("nothing completes"));
            o.rewind();
            assert!(o.front_tried());
            assert!(o.push_with(entry("bbbb"), keep_tried).len() <= 1);
            let over = o.push_with(entry("cccc"), keep_tried);
            let kept = contents(&o);
            if keep_tried {
                // Older than anything spooled: it stays, to go first.
                assert_eq!(kept, ["aaaa", "cccc"]);
                assert_eq!(&over[0].data[..], b"bbbb");
            } else {
                assert_eq!(kept, ["cccc"]);
                assert!(!o.front_tried());
            }
        }
    }

    #[test]
    fn advance_completes_entries_in_order() {
        let mut o = Outbox::new(100);
        for s in ["ab", "cde", "f"] {
            o.push(entry(s));
        }
        let mut done = Vec::new();
        o.advance(1, |e| done.push(e.data));
        assert!(done.is_empty());
        o.advance(3, |e| done.push(e.data));
        assert_eq!(done, [Bytes::from_static(b"ab")]);
        assert_eq!(unwritten(&o), ["e", "f"]);
        // A lost connection sends the partly written entry again, whole.
        o.rewind();
        assert_eq!(unwritten(&o), ["cde", "f"]);
        o.advance(4, |e| done.push(e.data));
        assert_eq!(done.len(), 3);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn slices_are_capped() {
        let mut o = Outbox::new(1000);
        for _ in 0..10 {
            o.push(entry("x"));
        }
        let mut s = [IoSlice::new(&[]); 4];
        assert_eq!(o.slices(&mut s), 4);
    }

    #[test]
    fn addresses() {
        for (addr, ok) in [
            ("localhost:2003", true),
            ("127.0.0.1:2003", true),
            ("[::1]:2004", true),
            ("graphite.example.com:2003", true),
            ("graphite.example.com.:2003", true),
            ("carbon_relay-1:2003", true),
            ("localhost", false),
            ("localhost:", false),
            ("localhost:0", false),
            ("localhost:65536", false),
            (":2003", false),
            ("::1:2003", false),
            ("[::1:2003", false),
            ("[nope]:2003", false),
            ("a..b:2003", false),
            ("bad host:2003", false),
            ("http://x:2003", false),
        ] {
            assert_eq!(crate::check::check_address(addr).is_ok(), ok, "{addr}");
        }
    }

    /// Passes bytes through, one entry per message.
    struct Pass;

    impl Feed for Pass {
        type Msg = &'static str;
        fn encode(&mut self, msg: &'static str) -> Option<Entry> {
            Some(entry(msg))
        }
    }

    fn config(addr: std::net::SocketAddr, buffer_bytes: usize, shutdown: Duration) -> OutletConfig {
        OutletConfig {
            sink: "test".into(),
            addr: addr.to_string(),
            buffer_bytes,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            shutdown_timeout: shutdown,
            spool: None,
        }
    }

    /// A loopback address nothing listens on (until the test binds it again).
    async fn free_addr() -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    async fn read_all(mut s: TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
            .await
            .expect("reading timed out")
            .unwrap();
        buf
    }

    /// Poll `cond` until it holds, for at most five seconds.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn spawn(
        cfg: OutletConfig,
    ) -> (
        mpsc::Sender<&'static str>,
        Arc<SinkStats>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(16);
        let stats = Arc::new(SinkStats::default());
        let task = tokio::spawn(run(cfg, stats.clone(), rx, Pass));
        (tx, stats, task)
    }

    #[tokio::test]
    async fn buffers_while_down_then_delivers_in_order_once() {
        let addr = free_addr().await;
        let (tx, stats, task) = spawn(config(addr, 1 << 20, Duration::from_secs(5)));
        for m in ["a 1 1\n", "b 2 1\n", "c 3 1\n"] {
            tx.send(m).await.unwrap();
        }
        eventually("failed connects", || get(&stats.errors) >= 2).await;
        eventually("buffering", || get(&stats.buffered_bytes) == 18).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        eventually("delivery", || get(&stats.lines_sent) == 3).await;
        tx.send("d 4 1\n").await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(read_all(conn).await, "a 1 1\nb 2 1\nc 3 1\nd 4 1\n");
        assert_eq!(get(&stats.lines_sent), 4);
        assert_eq!(get(&stats.bytes_sent), 24);
        assert_eq!(get(&stats.buffered_bytes), 0);
        assert_eq!(get(&stats.dropped), 0);
    }

    #[tokio::test]
    async fn bound_drops_the_oldest_and_counts() {
        let addr = free_addr().await;
        let (tx, stats, task) = spawn(config(addr, 10, Duration::from_secs(5)));
        for m in ["0000\n", "1111\n", "2222\n", "3333\n", "4444\n"] {
            tx.send(m).await.unwrap();
        }
        eventually("drops", || get(&stats.dropped) == 3).await;
        assert_eq!(get(&stats.buffered_bytes), 10);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        drop(tx);
        let (conn, _) = listener.accept().await.unwrap();
        task.await.unwrap();
        assert_eq!(read_all(conn).await, "3333\n4444\n");
        assert_eq!(get(&stats.dropped), 3);
    }

    #[tokio::test]
    async fn shutdown_delivers_what_is_queued() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, stats, task) = spawn(config(addr, 1 << 20, Duration::from_secs(5)));
        tx.send("final 1 1\n").await.unwrap();
        drop(tx);
        let (conn, _) = listener.accept().await.unwrap();
        task.await.unwrap();
        assert_eq!(read_all(conn).await, "final 1 1\n");
        assert_eq!(get(&stats.dropped), 0);
    }

    #[tokio::test]
    async fn shutdown_deadline_drops_and_counts() {
        let addr = free_addr().await;
        let (tx, stats, task) = spawn(config(addr, 1 << 20, Duration::from_millis(100)));
        tx.send("x 1 1\n").await.unwrap();
        tx.send("y 1 1\n").await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the deadline bounds shutdown")
            .unwrap();
        assert_eq!(get(&stats.dropped), 2);
        assert_eq!(get(&stats.buffered_bytes), 0);
    }

    #[tokio::test]
    async fn reconnects_after_the_peer_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, stats, task) = spawn(config(addr, 1 << 20, Duration::from_secs(5)));
        tx.send("one 1 1\n").await.unwrap();
        let (mut first, _) = listener.accept().await.unwrap();
        {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 8];
            first.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"one 1 1\n");
        }
        drop(first);
        // Let the outlet notice the close before it has data again, so the
        // next entry is not written into the dead connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send("two 2 1\n").await.unwrap();
        let (second, _) = listener.accept().await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(read_all(second).await, "two 2 1\n");
        assert_eq!(get(&stats.lines_sent), 2);
    }

    fn spooled(
        addr: std::net::SocketAddr,
        dir: &std::path::Path,
        shutdown: Duration,
    ) -> (
        mpsc::Sender<&'static str>,
        Arc<SinkStats>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut cfg = config(addr, 1, shutdown);
        cfg.spool = Some(SpoolConfig {
            dir: dir.join("test"),
            max_bytes: 1 << 20,
            segment_bytes: 64,
        });
        spawn(cfg)
    }

    #[tokio::test]
    async fn overflow_goes_to_the_spool_and_comes_back_first_in_order() {
        let addr = free_addr().await;
        let tmp = tempfile::tempdir().unwrap();
        let (tx, stats, task) = spooled(addr, tmp.path(), Duration::from_secs(5));
        let lines = ["a 1 1\n", "b 2 1\n", "c 3 1\n", "d 4 1\n", "e 5 1\n"];
        for m in lines {
            tx.send(m).await.unwrap();
        }
        eventually("failed connects", || get(&stats.errors) >= 1).await;
        // A one-byte buffer keeps the newest entry in memory; the rest is on disk.
        eventually("spooling", || get(&stats.spool.spooled_entries) == 4).await;
        assert_eq!(get(&stats.dropped), 0);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        eventually("delivery", || get(&stats.lines_sent) == 5).await;
        tx.send("f 6 1\n").await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(read_all(conn).await, lines.concat() + "f 6 1\n");
        assert_eq!(get(&stats.spool.replayed_entries), 4);
        assert_eq!(get(&stats.spool.held_entries), 0);
        assert_eq!(get(&stats.buffered_bytes), 0);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("test")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn a_down_destination_at_shutdown_is_spooled_at_once_and_sent_by_the_next_outlet() {
        let addr = free_addr().await;
        let tmp = tempfile::tempdir().unwrap();
        // A long deadline: spooling must not wait for it.
        let (tx, stats, task) = spooled(addr, tmp.path(), Duration::from_secs(30));
        for m in ["x 1 1\n", "y 2 1\n", "z 3 1\n"] {
            tx.send(m).await.unwrap();
        }
        eventually("failed connects", || get(&stats.errors) >= 1).await;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("spooled without waiting for the deadline")
            .unwrap();
        assert_eq!(get(&stats.dropped), 0);
        assert_eq!(get(&stats.spool.spooled_entries), 3);

        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (tx, stats, task) = spooled(addr, tmp.path(), Duration::from_secs(5));
        let (conn, _) = listener.accept().await.unwrap();
        eventually("replay", || get(&stats.spool.replayed_entries) == 3).await;
        tx.send("w 4 1\n").await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(read_all(conn).await, "x 1 1\ny 2 1\nz 3 1\nw 4 1\n");
    }
}

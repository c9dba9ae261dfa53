//! The stream engine: one persistent TCP connection to one destination, fed
//! by a [`Source`], with the memory buffer and disk spool of a
//! [`Store`](super::store), backoff between tries, and delivery within a
//! deadline at shutdown.
//!
//! One task owns the source, the store and the connection. A single
//! `select!` loop waits for the source and moves the connection forward at
//! the same time (connect, back off, write, notice the peer closing), so a
//! slow or dead destination costs buffer space, never the source's
//! progress. Every await inside the loop is cancel-safe: writes go through
//! `try_write_vectored` after `writable()`, and what was written is
//! recorded only when the call returns, so dropping a pending write never
//! loses track of a byte. Carbon never writes back on these connections: a
//! readable socket means the peer closed (or reset) it, which is checked
//! before every write, so nothing is written into a connection already gone.
//!
//! Delivery is at-least-once per entry: an entry is done only when its last
//! byte was accepted by the kernel. If the connection fails halfway through
//! an entry, the whole entry is sent again on the next connection (a
//! receiver drops the torn line or pickle frame; carbon stores a repeated
//! datapoint once, since the timestamp is the same).
//!
//! The two [`Mode`]s are the two ways a source holds its data:
//!
//! - [`Mode::Buffer`] (the sinks, [`super::feed`]): the engine takes every
//!   entry at once into its memory buffer, bounded in bytes; past the bound
//!   the oldest go to the spool or, without one, are dropped and counted.
//!   What the spool holds is older than memory, so it goes first (except an
//!   entry partly written on a lost connection, which is older still). The
//!   engine connects when it has something to send; a peer closing an idle
//!   connection is no failure.
//! - [`Mode::Pull`] (relay destinations): the source keeps its own bounded
//!   queue; the engine takes one entry at a time, only while connected, and
//!   on a failure gives it back ([`Source::failed`]), so the source can put
//!   it back or send its points elsewhere. What the source spills while the
//!   destination is down ([`Source::overflow`]) is spooled; it is newer
//!   than the queue, so one spooled entry goes after each entry from the
//!   source (all of them while the source has none), and the source's
//!   queue keeps moving. The engine stays connected, idle or not, since the
//!   source routes by whether the destination is up; a close is a failure.
//!
//! At shutdown (the source reports [`Input::Closed`] with a deadline), a
//! pending backoff is cut short and what is held is delivered until the
//! deadline; nothing is loaded from the spool any more (it stays for the
//! next start). With a spool, what the destination cannot take now goes to
//! the spool at once instead of waiting for the deadline: after a failure
//! since the close (it is down), and in buffer mode when the spool is still
//! behind (memory must not overtake it). What is still held at the deadline
//! is spooled too; without a spool it is dropped and counted.
//!
//! Imports, besides `deliver` itself: `spool`, `stats`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{retry_due, Backoff};
use super::outbox::{Entry, Outbox};
use super::store::{Store, Tag};
use super::transport::{TlsConnect, Transport};
use super::warnings::FailLog;
use super::warnings::Label;
use crate::spool::SpoolConfig;
use crate::stats::spool::SpoolStats;

/// How many buffered entries one vectored write hands to the kernel at most.
const MAX_SLICES: usize = 64;

/// Entries a buffer-mode engine takes from its source per turn of its loop,
/// so that a source that never runs dry cannot starve the connection.
const TAKE_PER_TURN: usize = 64;

/// How the engine takes entries from its source (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Take every entry at once, hold at most `bytes` of them in memory.
    Buffer { bytes: usize },
    /// Take one entry at a time while connected; the source holds the rest.
    Pull,
}

/// Where and how an engine delivers.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Whose engine it is, for logs: the sink's name, or `relay`.
    pub output: String,
    /// `host:port`, resolved at every connect.
    pub addr: String,
    pub mode: Mode,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where entries go that memory (buffer mode) or the source (pull
    /// mode) cannot hold; `None`: they are dropped and counted.
    pub spool: Option<SpoolConfig>,
    pub spool_stats: Arc<SpoolStats>,
    /// How long to wait for the spool directory's lock: the engine a reload
    /// is replacing may still hold it while it delivers.
    pub spool_wait: Duration,
    /// TLS to the destination; `None`: plaintext.
    pub tls: Option<TlsConnect>,
    /// One connection per entry (buffer mode): connect, write the entry,
    /// close, as the reference statsd's graphite backend does per flush (a
    /// load balancer in front of several receivers then spreads flushes,
    /// and a receiver reading "until the connection closes" gets one flush
    /// each time). `false`: one persistent connection.
    pub per_entry: bool,
}

/// What [`Source::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// There may be something new: entries, or overflow for the spool.
    More,
    /// Nothing new will come (except, in pull mode, what the source is
    /// handed meanwhile): deliver what is held until `deadline`.
    Closed { deadline: Instant },
}

/// The input side of an engine, and what it wants to hear about. The engine
/// calls it from its one task; only [`Source::wait`] may wait.
pub trait Source: Send + 'static {
    /// What each entry carries back to the source (see [`Entry::tag`]).
    type Tag: Tag;

    /// Wait until there may be something new. Cancel-safe: the engine
    /// drops this future whenever the connection moves first. After
    /// returning [`Input::Closed`] once, it only ever returns
    /// [`Input::More`] (or never returns).
    fn wait(&mut self) -> impl Future<Output = Input> + Send;

    /// The next entry, if one is ready.
    fn next(&mut self) -> Option<Entry<Self::Tag>>;

    /// Whether the source holds nothing that [`Source::next`] or
    /// [`Source::overflow`] would give.
    fn is_empty(&self) -> bool;

    /// Entries for the spool: what the source could not hold (pull mode).
    fn overflow(&mut self) -> Vec<Entry<Self::Tag>> {
        Vec::new()
    }

    /// Everything the source still holds, oldest first, to spool (or drop)
    /// at the end.
    fn rest(&mut self) -> Vec<Entry<Self::Tag>> {
        let mut all: Vec<_> = std::iter::from_fn(|| self.next()).collect();
        all.extend(self.overflow());
        all
    }

    /// A connection is up.
    fn connected(&mut self) {}

    /// A connect or a write failed, or the peer closed a connection that had
    /// something to deliver; `why` says which, as logged. `unsent` (pull
    /// mode) is what the engine had taken and not delivered, oldest first:
    /// the source's again.
    fn failed(&mut self, why: &str, unsent: Vec<Entry<Self::Tag>>) {
        let _ = (why, unsent);
    }

    /// The peer closed an idle connection (no failure: the engine connects
    /// again when there is something to send).
    fn disconnected(&mut self) {}

    /// `bytes` more were written to the connection.
    fn wrote(&mut self, bytes: usize) {
        let _ = bytes;
    }

    /// `entry` was written completely, `took` after its first byte was tried.
    fn written(&mut self, entry: Entry<Self::Tag>, took: Duration) {
        let _ = (entry, took);
    }

    /// These entries were given up (memory bound without a spool, a spool
    /// that failed, the shutdown deadline): count them.
    fn dropped(&mut self, entries: &[Entry<Self::Tag>]) {
        let _ = entries;
    }

    /// The engine holds `bytes` in memory now.
    fn held(&mut self, bytes: usize) {
        let _ = bytes;
    }
}

/// Run one destination until its source closes, then deliver what is held
/// until the deadline; what is still held then is spooled (with a spool) or
/// dropped and counted.
pub async fn run<S: Source>(cfg: StreamConfig, source: S) {
    let label = Label {
        output: cfg.output.clone(),
        addr: cfg.addr.clone(),
    };
    let buffer_bytes = match cfg.mode {
        Mode::Buffer { bytes } => bytes,
        Mode::Pull => usize::MAX,
    };
    let store = Store::open(
        label,
        buffer_bytes,
        false,
        cfg.spool.clone(),
        cfg.spool_stats.clone(),
        cfg.spool_wait,
    )
    .await;
    let mut e = Engine {
        backoff: Backoff::between(cfg.backoff_min, cfg.backoff_max),
        cfg,
        source,
        store,
        conn: Conn::Down {
            retry_at: Instant::now(),
        },
        front_started: None,
        closed: false,
        failures: 0,
        credit: 0,
        fail_log: FailLog::default(),
    };

    let deadline = loop {
        e.refill().await;
        let src = e.pick();
        let wanted = e.wants_connection();
        let step = tokio::select! {
            input = e.source.wait() => Step::Input(input),
            ev = progress(&mut e.conn, writable(&e.store, src), wanted) => Step::Event(ev),
        };
        match step {
            Step::Input(Input::More) => {}
            Step::Input(Input::Closed { deadline }) => break deadline,
            Step::Event(ev) => e.handle(ev, src).await,
        }
    };

    e.closed = true;
    if let Conn::Down { retry_at } = &mut e.conn {
        // There is no later to wait for.
        *retry_at = Instant::now();
    }
    let failures = e.failures;
    loop {
        e.refill().await;
        if e.store.buffer.is_empty() && e.source.is_empty() {
            break;
        }
        if e.store.has_spool() {
            let down = e.failures > failures;
            let overtaking = matches!(e.cfg.mode, Mode::Buffer { .. })
                && e.store.behind()
                && !e.store.buffer.front_tried();
            if down || overtaking {
                break;
            }
        }
        let src = e.pick();
        tokio::select! {
            ev = progress(&mut e.conn, writable(&e.store, src), true) => e.handle(ev, src).await,
            _ = e.source.wait() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    e.finish(deadline).await;
}

/// What one turn of the loop brought.
enum Step {
    Input(Input),
    Event(Event),
}

/// Where the next bytes come from, and how many entries of it at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Buffer(usize),
    Replay(usize),
    /// Nothing until more is loaded from the spool or taken from the source.
    Nothing,
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Transport>> + Send>>;

enum Conn {
    /// No connection; try again at `retry_at` (in buffer mode, once there
    /// is something to send).
    Down {
        retry_at: Instant,
    },
    Connecting(ConnectFuture),
    Up(Transport),
}

/// What moved the connection forward.
enum Event {
    RetryDue,
    Connected(io::Result<Transport>),
    /// A write returned; `started` is when it began waiting to write.
    Wrote {
        started: Instant,
        result: io::Result<usize>,
    },
    /// The peer closed (`None`) or reset (`Some`) the connection.
    Closed(Option<io::Error>),
}

struct Engine<S: Source> {
    cfg: StreamConfig,
    source: S,
    store: Store<S::Tag>,
    conn: Conn,
    backoff: Backoff,
    /// When the first byte of the current front entry was tried on this connection.
    front_started: Option<Instant>,
    /// The source closed: shutting down.
    closed: bool,
    /// Failures so far.
    failures: u64,
    /// Pull mode: a spooled entry may go before the next one from the source.
    credit: usize,
    fail_log: FailLog,
}

fn writable<T>(store: &Store<T>, src: Src) -> Option<(&Outbox<T>, usize)> {
    match src {
        Src::Buffer(n) => Some((&store.buffer, n)),
        Src::Replay(n) => Some((&store.replay, n)),
        Src::Nothing => None,
    }
}

impl<S: Source> Engine<S> {
    fn is_up(&self) -> bool {
        matches!(self.conn, Conn::Up(_))
    }

    /// Whether to connect (or stay connected): in pull mode always, in
    /// buffer mode when there is something to send.
    fn wants_connection(&self) -> bool {
        match self.cfg.mode {
            Mode::Pull => true,
            Mode::Buffer { .. } => self.store.has_data(),
        }
    }

    /// Move what is ready into the store: the source's overflow to the
    /// spool, its entries to memory (as the mode allows), spooled entries
    /// to the replay list (while connected and not shutting down).
    async fn refill(&mut self) {
        let over = self.source.overflow();
        if !over.is_empty() {
            let lost = self.store.spool(over).await;
            self.drop_entries(lost);
        }
        match self.cfg.mode {
            Mode::Buffer { .. } => {
                for _ in 0..TAKE_PER_TURN {
                    let Some(entry) = self.source.next() else {
                        break;
                    };
                    let lost = self.store.push(entry).await;
                    self.drop_entries(lost);
                }
            }
            Mode::Pull => {
                if self.is_up() && self.store.buffer.is_empty() {
                    if let Some(entry) = self.source.next() {
                        self.store.buffer.push(entry);
                    }
                }
            }
        }
        if self.is_up() && !self.closed {
            self.store.load_replay().await;
        }
        self.source.held(self.store.held_bytes());
    }

    fn drop_entries(&mut self, lost: Vec<Entry<S::Tag>>) {
        if !lost.is_empty() {
            self.source.dropped(&lost);
        }
    }

    /// Where the next write takes its bytes from (see the module doc for the
    /// order of each mode).
    fn pick(&self) -> Src {
        let src = self.pick_any();
        if !self.cfg.per_entry {
            return src;
        }
        // One entry per connection.
        match src {
            Src::Buffer(_) => Src::Buffer(1),
            Src::Replay(_) => Src::Replay(1),
            Src::Nothing => Src::Nothing,
        }
    }

    fn pick_any(&self) -> Src {
        let (buffer, replay) = (&self.store.buffer, &self.store.replay);
        // An entry partly written on this connection is finished first:
        // anything else now would tear its line.
        if replay.front_started() {
            return Src::Replay(1);
        }
        match self.cfg.mode {
            Mode::Buffer { .. } => {
                if !self.store.behind() {
                    Src::Buffer(usize::MAX)
                } else if buffer.front_tried() {
                    Src::Buffer(1)
                } else if !replay.is_empty() {
                    Src::Replay(usize::MAX)
                } else {
                    Src::Nothing
                }
            }
            Mode::Pull => {
                let turn = buffer.is_empty() || (self.credit > 0 && !buffer.front_started());
                if !self.closed && !replay.is_empty() && turn {
                    Src::Replay(if buffer.is_empty() { usize::MAX } else { 1 })
                } else if !buffer.is_empty() {
                    Src::Buffer(usize::MAX)
                } else {
                    Src::Nothing
                }
            }
        }
    }

    async fn handle(&mut self, ev: Event, src: Src) {
        match ev {
            Event::RetryDue => {
                let addr = self.cfg.addr.clone();
                let timeout = self.cfg.connect_timeout;
                let tls = self.cfg.tls.clone();
                self.conn = Conn::Connecting(Box::pin(async move {
                    Transport::connect(&addr, tls.as_ref(), timeout).await
                }));
            }
            Event::Connected(Ok(stream)) => {
                if self.cfg.per_entry {
                    tracing::debug!(output = %self.cfg.output, addr = %self.cfg.addr, "connected");
                } else {
                    tracing::info!(output = %self.cfg.output, addr = %self.cfg.addr, "connected");
                }
                self.store.buffer.rewind();
                self.store.replay.rewind();
                self.front_started = None;
                self.conn = Conn::Up(stream);
                self.fail_log.recovered();
                if self.cfg.mode == Mode::Pull {
                    // In pull mode being connected is being up (idle
                    // connections complete no entry to reset it).
                    self.backoff.reset();
                }
                self.source.connected();
            }
            Event::Connected(Err(e)) => self.fail("connect failed", Some(e)),
            Event::Wrote { result: Ok(0), .. } => self.fail(
                "write failed",
                Some(io::Error::from(io::ErrorKind::WriteZero)),
            ),
            Event::Wrote {
                started,
                result: Ok(n),
            } => self.wrote(n, started, src).await,
            Event::Wrote { result: Err(e), .. } => self.fail("write failed", Some(e)),
            Event::Closed(Some(e)) => self.fail("connection reset", Some(e)),
            Event::Closed(None) => {
                if self.cfg.mode != Mode::Pull && !self.store.has_data() {
                    // An idle connection closed by the peer is no failure:
                    // reconnect when there is something to send.
                    tracing::debug!(output = %self.cfg.output, addr = %self.cfg.addr, "peer closed the connection");
                    self.source.disconnected();
                    self.conn = Conn::Down {
                        retry_at: Instant::now(),
                    };
                } else {
                    self.fail("peer closed the connection", None);
                }
            }
        }
    }

    /// `n` bytes of `src` were written.
    async fn wrote(&mut self, n: usize, started: Instant, src: Src) {
        self.source.wrote(n);
        let now = Instant::now();
        let first = *self.front_started.get_or_insert(started);
        let replayed = matches!(src, Src::Replay(_));
        let from = if replayed {
            &mut self.store.replay
        } else {
            &mut self.store.buffer
        };
        let mut completed = 0usize;
        let source = &mut self.source;
        from.advance(n, |e| {
            completed += 1;
            source.written(e, now.duration_since(first));
        });
        if completed == 0 {
            return;
        }
        // The destination takes data again: the next failure starts from
        // the shortest wait.
        self.backoff.reset();
        self.front_started = from.front_started().then_some(started);
        if replayed {
            self.credit = self.credit.saturating_sub(completed);
            self.store.replayed(completed).await;
        } else if self.cfg.mode == Mode::Pull {
            self.credit = 1;
        }
        if self.cfg.per_entry {
            // Its entry is written: close (our FIN ends the receiver's
            // read), and connect again for the next one.
            let conn = std::mem::replace(
                &mut self.conn,
                Conn::Down {
                    retry_at: Instant::now(),
                },
            );
            if let Conn::Up(stream) = conn {
                stream.shutdown().await;
            }
        }
    }

    /// Drop the connection (if any) and schedule the next attempt.
    fn fail(&mut self, what: &str, error: Option<io::Error>) {
        self.failures += 1;
        self.store.buffer.rewind();
        self.store.replay.rewind();
        self.front_started = None;
        let unsent = match self.cfg.mode {
            Mode::Pull => self.store.buffer.take_all(),
            Mode::Buffer { .. } => Vec::new(),
        };
        let error = error.map_or_else(|| "end of stream".to_string(), |e| e.to_string());
        self.source.failed(&format!("{what}: {error}"), unsent);
        let wait = self.backoff.fail();
        self.conn = Conn::Down {
            retry_at: Instant::now() + wait,
        };
        let held = (self.store.buffer.len(), self.store.spooled());
        self.fail_log
            .failed(&self.store.label, what, &error, wait, held);
    }

    /// The end: spool (or drop and count) what is left, then close the
    /// connection cleanly.
    async fn finish(mut self, deadline: Instant) {
        let mut left = self.store.buffer.take_all();
        left.extend(self.source.rest());
        let lost = self.store.close(left).await;
        if !lost.is_empty() {
            let bytes: usize = lost.iter().map(|e| e.data.len()).sum();
            let lines: u64 = lost.iter().map(|e| e.lines).sum();
            tracing::warn!(
                output = %self.cfg.output,
                addr = %self.cfg.addr,
                entries = lost.len(),
                lines,
                bytes,
                "shutdown deadline passed; dropping undelivered data"
            );
            self.source.dropped(&lost);
        }
        self.source.held(0);
        if let Conn::Up(stream) = self.conn {
            // Send our FIN (and TLS close_notify) so the receiver sees a
            // clean end of stream; what the kernel still holds is delivered
            // after the socket is dropped.
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, stream.shutdown()).await;
        }
    }
}

/// Wait for the next thing that moves the connection forward. Cancel-safe:
/// nothing is recorded until the returned event is handled. `src` is what
/// may be written now (an outbox and how many of its entries); `wanted`
/// whether a connection is wanted at all.
async fn progress<T>(conn: &mut Conn, src: Option<(&Outbox<T>, usize)>, wanted: bool) -> Event {
    match conn {
        Conn::Down { retry_at } => {
            retry_due(*retry_at, wanted).await;
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
                e = stream.watch_close() => Event::Closed(e),
            }
        }
    }
}

async fn write_some<T>(
    stream: &Transport,
    src: Option<(&Outbox<T>, usize)>,
) -> (Instant, io::Result<usize>) {
    let started = Instant::now();
    let Some((outbox, max_entries)) = src else {
        // Not polled without a source (see `progress`).
        return (started, Ok(0));
    };
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let n = outbox.slices_of(max_entries, &mut slices);
    (started, stream.write_some(&slices[..n]).await)
}

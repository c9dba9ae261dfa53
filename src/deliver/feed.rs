//! The stream engine's source for sinks: a bounded queue of messages
//! (flushes, raw packets) that a [`Feed`] encodes into entries, counted in
//! the sink's [`SinkStats`]. The engine runs it in buffer mode: every entry
//! is taken at once, the memory bound drops (or spools) the oldest.
//!
//! The queue closing is the sink's shutdown: the engine then has the
//! sink's `shutdown_timeout` to deliver what it holds.
//!
//! Imports, besides `deliver` itself: `spool`, `stats`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outbox::Entry;
use super::stream::{self, Input, Mode, Source, StreamConfig};
use crate::spool::SpoolConfig;
use crate::stats::{incr, SinkStats};

/// What one destination's engine turns its queue messages into, and what
/// it wants to hear about.
pub trait Feed: Send + 'static {
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

/// Where and how a sink's destination is delivered to.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The sink's name, for logs.
    pub sink: String,
    /// `host:port`, resolved at every connect.
    pub addr: String,
    /// Bytes of encoded entries held in memory while the destination is
    /// slow or down; past this the oldest are spooled or dropped.
    pub buffer_bytes: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long delivery may go on once the queue has closed.
    pub shutdown_timeout: Duration,
    /// Where what overflows `buffer_bytes` goes; `None`: it is dropped.
    pub spool: Option<SpoolConfig>,
    /// TLS to the destination; `None`: plaintext.
    pub tls: Option<super::transport::TlsConnect>,
    /// A connection per entry (see [`StreamConfig::per_entry`]).
    pub per_entry: bool,
}

/// Run one destination of a sink until `rx` closes, then deliver what is
/// held within `cfg.shutdown_timeout` (see [`stream::run`]).
pub async fn run<F: Feed>(
    cfg: FeedConfig,
    stats: Arc<SinkStats>,
    rx: mpsc::Receiver<F::Msg>,
    feed: F,
) {
    let engine = StreamConfig {
        output: cfg.sink,
        addr: cfg.addr,
        mode: Mode::Buffer {
            bytes: cfg.buffer_bytes,
        },
        connect_timeout: cfg.connect_timeout,
        backoff_min: cfg.backoff_min,
        backoff_max: cfg.backoff_max,
        spool: cfg.spool,
        spool_stats: stats.spool.clone(),
        // A sink that a reload is replacing may still hold the directory
        // while it delivers: wait for it as long as it may take.
        spool_wait: cfg.shutdown_timeout + Duration::from_secs(2),
        tls: cfg.tls,
        per_entry: cfg.per_entry,
    };
    let source = FeedSource {
        rx,
        feed,
        stats,
        shutdown_timeout: cfg.shutdown_timeout,
        ready: None,
        closed: false,
        reported_bytes: 0,
    };
    stream::run(engine, source).await;
}

/// A sink's queue, as the engine's source.
struct FeedSource<F: Feed> {
    rx: mpsc::Receiver<F::Msg>,
    feed: F,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
    /// The entry [`Source::wait`] received and encoded.
    ready: Option<Entry>,
    closed: bool,
    /// What this source last added to `SinkStats::buffered_bytes`, which
    /// several engines (the repeater's destinations) share.
    reported_bytes: usize,
}

impl<F: Feed> Source for FeedSource<F> {
    type Tag = ();

    async fn wait(&mut self) -> Input {
        if self.closed {
            std::future::pending::<()>().await;
        }
        if self.ready.is_some() {
            return Input::More;
        }
        // Cancel-safe: `recv` is, and the message is encoded in the same
        // poll that receives it.
        match self.rx.recv().await {
            Some(msg) => {
                self.ready = self.feed.encode(msg);
                Input::More
            }
            None => {
                self.closed = true;
                Input::Closed {
                    deadline: Instant::now() + self.shutdown_timeout,
                }
            }
        }
    }

    fn next(&mut self) -> Option<Entry> {
        if let Some(e) = self.ready.take() {
            return Some(e);
        }
        while let Ok(msg) = self.rx.try_recv() {
            if let Some(e) = self.feed.encode(msg) {
                return Some(e);
            }
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.ready.is_none() && self.rx.is_empty()
    }

    fn connected(&mut self) {
        self.stats.set_connected(true);
    }

    fn failed(&mut self, why: &str, _unsent: Vec<Entry>) {
        incr(&self.stats.errors, 1);
        self.stats.failed(why);
        self.feed.failed();
    }

    fn disconnected(&mut self) {
        self.stats.set_connected(false);
    }

    fn wrote(&mut self, bytes: usize) {
        incr(&self.stats.bytes_sent, bytes as u64);
    }

    fn written(&mut self, entry: Entry, took: Duration) {
        incr(&self.stats.lines_sent, entry.lines);
        self.stats.delivered();
        self.feed.sent(&entry, took);
    }

    fn dropped(&mut self, entries: &[Entry]) {
        incr(&self.stats.dropped, entries.len() as u64);
    }

    fn held(&mut self, bytes: usize) {
        report_buffered(&self.stats, &mut self.reported_bytes, bytes);
    }
}

/// Move `SinkStats::buffered_bytes` from what this engine `reported` last to
/// `now`: several engines (the repeater's destinations) share the gauge.
pub(crate) fn report_buffered(stats: &SinkStats, reported: &mut usize, now: usize) {
    let b = &stats.buffered_bytes;
    if now >= *reported {
        b.fetch_add((now - *reported) as u64, Ordering::Relaxed);
    } else {
        b.fetch_sub((*reported - now) as u64, Ordering::Relaxed);
    }
    *reported = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::testing::{self, eventually, free_addr};
    use crate::stats::get;
    use bytes::Bytes;
    use tokio::net::TcpStream;

    fn entry(s: &str) -> Entry {
        Entry::new(Bytes::copy_from_slice(s.as_bytes()), 1)
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

    fn config(addr: std::net::SocketAddr, buffer_bytes: usize, shutdown: Duration) -> FeedConfig {
        FeedConfig {
            sink: "test".into(),
            addr: addr.to_string(),
            buffer_bytes,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            shutdown_timeout: shutdown,
            spool: None,
            tls: None,
            per_entry: false,
        }
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

    fn spawn(
        cfg: FeedConfig,
    ) -> (
        mpsc::Sender<&'static str>,
        Arc<SinkStats>,
        tokio::task::JoinHandle<()>,
    ) {
        testing::spawn(|stats, rx| run(cfg, stats, rx, Pass))
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
    async fn per_entry_sends_each_entry_on_its_own_connection_and_closes_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = config(addr, 1 << 20, Duration::from_secs(5));
        cfg.per_entry = true;
        let (tx, stats, task) = spawn(cfg);
        for m in ["one 1 1\n", "two 2 1\n", "three 3 1\n"] {
            tx.send(m).await.unwrap();
        }
        // Each connection carries one entry and ends (our FIN), so reading
        // it to the end returns that entry alone.
        let mut got = Vec::new();
        for _ in 0..3 {
            let (conn, _) = listener.accept().await.unwrap();
            got.push(read_all(conn).await);
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(got, ["one 1 1\n", "two 2 1\n", "three 3 1\n"]);
        assert_eq!(get(&stats.lines_sent), 3);
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
        // Let the engine notice the close before it has data again, so the
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
    async fn a_down_destination_at_shutdown_is_spooled_at_once_and_sent_by_the_next_engine() {
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

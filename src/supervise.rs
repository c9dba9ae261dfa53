//! Supervision: a task that panics or fails is restarted with backoff,
//! logged and counted, and the process keeps serving (an OTP supervisor's
//! one-for-one restart, in a few functions).
//!
//! Every long-running task runs under one of three shapes, chosen by what
//! the task owns that must outlive a panic:
//!
//! - **Tasks that own a socket or a queue** (statsd TCP and unix accept
//!   loops, the relay's carbon listeners, the HTTP server and the admin
//!   console, the relay destination writers): [`supervise`] runs each
//!   incarnation on its own tokio task and learns how it ended from the
//!   [`JoinError`](tokio::task::JoinError) (`is_panic`). A normal return is
//!   the task's shutdown and ends the supervision; a panic or an `Err` is
//!   logged at error with the task name and the panic message, counted, and
//!   followed by a new incarnation after the backoff. A listening socket is
//!   kept by the supervisor as a std socket and every incarnation gets a
//!   duplicate of its descriptor ([`supervise_socket`]), so the port, the
//!   backlog and the connections the kernel completed survive; a relay
//!   destination's queue is an `Arc` the writer borrows, so its points
//!   survive too. Aborting the supervisor aborts the incarnation.
//! - **Sinks** ([`sink`]): the sinks themselves are not changed. The
//!   supervisor keeps the sink's real queue receiver and feeds each
//!   incarnation through a one-slot inner channel ([`HOP`]), so the queue
//!   bound still means what it says (the queue, plus one message in the hop
//!   and the one being processed). On a panic it builds the sink again from
//!   its spec with a factory (`SinkConfig::build` with the same settings and the same
//!   counters) and starts it after the backoff. The message the sink was
//!   processing is lost, with whatever the sink held in its own buffer:
//!   the supervisor counts as `dropped` (in the sink's counters) every
//!   message it handed over and cannot prove was finished, one or two, so
//!   the count errs on the high side, never the low. During the backoff
//!   the queue keeps its bound (a full queue drops and counts, as always);
//!   the queue closing (shutdown, or a reload removing the sink) cuts the
//!   backoff short, so the new incarnation delivers what is left within
//!   the shutdown deadline, in order.
//! - **Receive threads and the flusher** (std threads whose state is the
//!   socket, the shard, and the flusher's registry and job receiver): the
//!   panic is caught around the unit of work ([`catch`]: one datagram, one
//!   flush, one job), counted under the task's name, logged, and the
//!   thread goes on. See `listener::udp` and `flusher` for what the
//!   lost unit costs.
//!
//! Backoff ([`Backoff`]): 100 ms, doubling to 30 s, back to 100 ms once an
//! incarnation has run cleanly for 60 s. Counters: [`TaskStats::restarts`]
//! per task, served as `task_restarts` in `/api/stats`,
//! `statsyard_task_restarts_total{task=...}` on `/metrics`, and
//! `<prefix_stats>.statsyard.task_restarts` in the flush self-metrics.
//!
//! Connections (one task each) are not supervised: tokio already confines a
//! panic to its task, the client sees its connection close, and the
//! listener goes on.

use std::any::Any;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

use crate::shutdown::CancellationToken;
use crate::sink::{Sink, SinkError, SinkMsg};
use crate::stats::{get, incr, SinkStats, TaskStats};

/// The first wait before a restart.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An incarnation that ran this long without failing resets the backoff.
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// Messages between a sink's queue and the running sink: one, so a crash
/// loses little and the queue's bound stays the bound.
pub const HOP: usize = 1;

/// The restart backoff: the delivery engines' own ([`crate::deliver::backoff`]),
/// re-exported so that supervisors and their callers name it here.
pub use crate::deliver::backoff::Backoff;

// The supervisor's defaults live with the supervisor, not with the type.
impl Default for Backoff {
    /// [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], reset after [`BACKOFF_RESET`].
    fn default() -> Self {
        Backoff::new(BACKOFF_MIN, BACKOFF_MAX, BACKOFF_RESET)
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// How one incarnation of a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It returned: its shutdown.
    Returned,
    /// It returned an error.
    Failed(String),
    /// It panicked, with this message.
    Panicked(String),
    /// It was cancelled (the runtime is shutting down).
    Cancelled,
}

impl Exit {
    fn of(r: Result<Result<(), String>, JoinError>) -> Exit {
        match r {
            Ok(Ok(())) => Exit::Returned,
            Ok(Err(e)) => Exit::Failed(e),
            Err(e) if e.is_panic() => Exit::Panicked(panic_message(&*e.into_panic())),
            Err(_) => Exit::Cancelled,
        }
    }

    fn why(&self) -> String {
        match self {
            Exit::Returned => "returned before it was asked to stop".into(),
            Exit::Failed(e) => format!("failed: {e}"),
            Exit::Panicked(m) => format!("panicked: {m}"),
            Exit::Cancelled => "cancelled".into(),
        }
    }
}

/// What a supervision did, when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Restarts (each one counted in the task's [`TaskStats::restarts`] too).
    pub restarts: u64,
    /// How the last failed incarnation ended, if one failed.
    pub last_failure: Option<Exit>,
}

/// Log a failure and count it; returns the total.
fn count_failure(task: &TaskStats, why: &str, retry_in: Option<Duration>) -> u64 {
    incr(&task.restarts, 1);
    let total = get(&task.restarts);
    match retry_in {
        Some(d) => tracing::error!(
            task = %task.name,
            restarts = total,
            retry_in_ms = d.as_millis() as u64,
            error = %why,
            "supervised task died; restarting it"
        ),
        None => tracing::error!(
            task = %task.name,
            restarts = total,
            error = %why,
            "supervised task died while stopping; not restarted"
        ),
    }
    total
}

/// Run `make()`'s future until it returns `Ok(())`, starting a new one after
/// a panic or an `Err` with `backoff` between them.
///
/// `stop`, when given, is the task's own stop signal: returning before it is
/// cancelled counts as a failure, and once it is cancelled
/// the backoff is cut short, so a new incarnation can see it and finish its
/// shutdown work (drain a backlog, deliver a queue); an incarnation that
/// fails after `stop` is not replaced.
pub async fn supervise<F, Fut>(
    task: Arc<TaskStats>,
    stop: Option<CancellationToken>,
    mut backoff: Backoff,
    mut make: F,
) -> Summary
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut summary = Summary::default();
    loop {
        let stopping = stop.as_ref().is_some_and(|s| s.is_cancelled());
        let started = Instant::now();
        let handle = AbortOnDropHandle::new(tokio::spawn(make()));
        let exit = match Exit::of(handle.await) {
            // A task with a stop signal returns when it is given: returning
            // before is a failure (a server that gave up on an error).
            Exit::Returned if stop.as_ref().is_some_and(|s| !s.is_cancelled()) => {
                Exit::Failed("returned before it was asked to stop".into())
            }
            e => e,
        };
        if matches!(exit, Exit::Returned | Exit::Cancelled) {
            return summary;
        }
        summary.restarts += 1;
        if stopping {
            count_failure(&task, &exit.why(), None);
            summary.last_failure = Some(exit);
            return summary;
        }
        let wait = backoff.after(started.elapsed());
        count_failure(&task, &exit.why(), Some(wait));
        summary.last_failure = Some(exit);
        match &stop {
            Some(stop) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
            }
            None => tokio::time::sleep(wait).await,
        }
    }
}

/// A socket that can be handed to task after task: the supervisor keeps it
/// as a std socket and gives each incarnation a duplicate of the descriptor
/// (same socket, same port, same backlog).
pub trait Reopen: Sized + Send + 'static {
    type Std: Send + 'static;
    /// Take the socket off the runtime.
    fn into_std(self) -> io::Result<Self::Std>;
    /// A new runtime handle on the same socket.
    fn reopen(std: &Self::Std) -> io::Result<Self>;
}

impl Reopen for tokio::net::TcpListener {
    type Std = std::net::TcpListener;
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::TcpListener::into_std(self)
    }
    fn reopen(std: &Self::Std) -> io::Result<Self> {
        tokio::net::TcpListener::from_std(std.try_clone()?)
    }
}

impl Reopen for tokio::net::UnixListener {
    type Std = std::os::unix::net::UnixListener;
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::UnixListener::into_std(self)
    }
    fn reopen(std: &Self::Std) -> io::Result<Self> {
        tokio::net::UnixListener::from_std(std.try_clone()?)
    }
}

impl Reopen for tokio::net::UdpSocket {
    type Std = std::net::UdpSocket;
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::UdpSocket::into_std(self)
    }
    fn reopen(std: &Self::Std) -> io::Result<Self> {
        tokio::net::UdpSocket::from_std(std.try_clone()?)
    }
}

/// [`supervise`] `run(socket)`, each incarnation on a fresh handle of the
/// same socket. `run` returning is the task's shutdown.
pub async fn supervise_socket<S, F, Fut>(
    task: Arc<TaskStats>,
    stop: Option<CancellationToken>,
    socket: S,
    mut run: F,
) -> Summary
where
    S: Reopen,
    F: FnMut(S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let std = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(task = %task.name, error = %e, "cannot take the socket off the runtime; not listening");
            return Summary::default();
        }
    };
    supervise(task, stop, Backoff::default(), move || {
        let fut = S::reopen(&std).map(&mut run);
        async move {
            match fut {
                Ok(f) => {
                    f.await;
                    Ok(())
                }
                Err(e) => Err(format!("cannot reopen the socket: {e}")),
            }
        }
    })
    .await
}

/// Run `f`, catching a panic: counted under `task` and logged (at most
/// `log` allows), and `None` is returned so the caller goes on with its next
/// unit of work.
pub fn catch<R>(
    task: &TaskStats,
    what: &str,
    log: &mut crate::log_limit::LogLimiter,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            incr(&task.restarts, 1);
            if let Some(suppressed) = log.allow() {
                tracing::error!(
                    task = %task.name,
                    restarts = get(&task.restarts),
                    suppressed,
                    error = %panic_message(&*payload),
                    "panic in {what}; it was abandoned, the task goes on"
                );
            }
            None
        }
    }
}

/// Builds a sink again after it panicked (the same spec, the same counters).
pub type SinkFactory = Box<dyn FnMut() -> Result<Box<dyn Sink>, SinkError> + Send>;

/// Run the sink `first` on `rx`, building it again with `factory` whenever
/// it panics (or stops before its queue closed), until the queue closes and
/// the sink has delivered what it holds. See the module doc.
pub async fn sink(
    first: Box<dyn Sink>,
    mut factory: SinkFactory,
    mut rx: mpsc::Receiver<SinkMsg>,
    stats: Arc<SinkStats>,
    task: Arc<TaskStats>,
    mut backoff: Backoff,
) -> Summary {
    let mut summary = Summary::default();
    let mut next = Some(first);
    // A message taken off the queue during a backoff, for the next incarnation.
    let mut pending: Option<SinkMsg> = None;
    loop {
        let started = Instant::now();
        let built = match next.take() {
            Some(s) => Ok(s),
            // A factory that panics must not take the supervisor (and the
            // queue) with it.
            None => match catch_unwind(AssertUnwindSafe(&mut factory)) {
                Ok(r) => r.map_err(|e| format!("cannot build it again: {e}")),
                Err(p) => Err(format!(
                    "building it again panicked: {}",
                    panic_message(&*p)
                )),
            },
        };
        let fed = match built {
            Ok(s) => feed(s, &mut rx, &mut pending).await,
            Err(e) => Fed {
                exit: Exit::Failed(e),
                closed: false,
                lost: 0,
            },
        };
        match fed.exit {
            Exit::Cancelled => return summary,
            Exit::Returned if fed.closed => return summary,
            _ => {}
        }
        summary.restarts += 1;
        incr(&stats.dropped, fed.lost);
        let why = fed.exit.why();
        summary.last_failure = Some(fed.exit);
        if fed.closed {
            // The queue is closed and empty: nothing left to deliver.
            count_failure(&task, &why, None);
            return summary;
        }
        let wait = backoff.after(started.elapsed());
        count_failure(&task, &why, Some(wait));
        tracing::error!(
            sink = %stats.name,
            lost = fed.lost,
            "sink died: messages it was handed and may not have finished are counted as dropped"
        );
        if !wait_keeping_queue(&mut rx, &mut pending, wait).await {
            return summary;
        }
    }
}

/// How one sink incarnation ended.
struct Fed {
    exit: Exit,
    /// The real queue was closed and empty when it ended.
    closed: bool,
    /// Messages it was handed and may not have finished.
    lost: u64,
}

/// Start `s` on a fresh one-slot channel and feed it from `rx` until it ends.
async fn feed(
    s: Box<dyn Sink>,
    rx: &mut mpsc::Receiver<SinkMsg>,
    pending: &mut Option<SinkMsg>,
) -> Fed {
    let (tx, inner) = mpsc::channel(HOP);
    let mut handle = AbortOnDropHandle::new(tokio::spawn(s.run(inner)));
    let ended = |r: Result<(), JoinError>, lost: u64, closed: bool| Fed {
        exit: Exit::of(r.map(Ok)),
        closed,
        lost,
    };
    // Handed over and not yet taken by the sink (0 or 1), and whether it has
    // taken one that it may still be processing.
    let mut in_hop = 0u64;
    let mut taken = 0u64;
    loop {
        // Room in the hop means the sink took the last message.
        let permit = tokio::select! {
            biased;
            r = &mut handle => return ended(r, in_hop + taken, false),
            p = tx.reserve() => match p {
                Ok(p) => p,
                // The sink dropped its receiver: it is ending.
                Err(_) => return ended((&mut handle).await, in_hop + taken, false),
            },
        };
        if in_hop > 0 {
            // The hop is empty again: that message is the sink's now.
            taken = 1;
        }
        let msg = match pending.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                biased;
                r = &mut handle => return ended(r, taken, false),
                m = rx.recv() => m,
            },
        };
        match msg {
            Some(m) => {
                permit.send(m);
                in_hop = 1;
            }
            None => {
                // The queue closed: the sink's shutdown signal, passed on.
                drop(permit);
                drop(tx);
                return ended(handle.await, taken, true);
            }
        }
    }
}

/// Wait `wait` before a restart while the queue keeps its bound: at most one
/// message is taken off it (and kept for the next incarnation). Returns
/// early when the queue closes, so what is left is delivered in time;
/// `false` when it closed with nothing left.
async fn wait_keeping_queue(
    rx: &mut mpsc::Receiver<SinkMsg>,
    pending: &mut Option<SinkMsg>,
    wait: Duration,
) -> bool {
    const POLL: Duration = Duration::from_millis(50);
    let until = tokio::time::Instant::now() + wait;
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        if pending.is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                m = rx.recv() => match m {
                    Some(m) => *pending = Some(m),
                    None => return false,
                },
            }
        } else {
            if rx.is_closed() {
                return true;
            }
            tokio::time::sleep_until(until.min(now + POLL)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_limit::LogLimiter;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn task(name: &str) -> Arc<TaskStats> {
        Arc::new(TaskStats {
            name: name.into(),
            restarts: AtomicU64::new(0),
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_clean_run() {
        let mut b = Backoff::new(ms(100), ms(1000), Duration::from_secs(60));
        let quick = ms(5);
        let waits: Vec<u64> = (0..6).map(|_| b.after(quick).as_millis() as u64).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        // A long clean run starts over.
        assert_eq!(b.after(Duration::from_secs(60)), ms(100));
        assert_eq!(b.after(quick), ms(200));
        // The defaults (the fields moved to `deliver::backoff`: read
        // through the behaviour).
        let mut d = Backoff::default();
        assert_eq!(d.after(quick), BACKOFF_MIN);
        for _ in 0..20 {
            d.after(quick);
        }
        assert_eq!(d.after(quick), BACKOFF_MAX);
        assert_eq!(d.after(BACKOFF_RESET), BACKOFF_MIN);
    }

    #[test]
    fn panic_messages_are_captured() {
        let t = task("unit");
        let mut log = LogLimiter::new(10, Duration::from_secs(10));
        let r = catch(&t, "a unit", &mut log, || -> u32 { panic!("boom {}", 7) });
        assert_eq!(r, None);
        assert_eq!(get(&t.restarts), 1);
        assert_eq!(catch(&t, "a unit", &mut log, || 5), Some(5));
        assert_eq!(get(&t.restarts), 1);
        let p = catch_unwind(|| panic!("static str")).unwrap_err();
        assert_eq!(panic_message(&*p), "static str");
        let p = catch_unwind(|| std::panic::panic_any(3u8)).unwrap_err();
        assert_eq!(panic_message(&*p), "(a panic without a message)");
    }

    #[tokio::test]
    async fn a_normal_return_is_not_restarted() {
        let t = task("ok");
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let s = supervise(t.clone(), None, Backoff::default(), move || {
            r.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .await;
        assert_eq!(s, Summary::default());
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert_eq!(get(&t.restarts), 0);
    }

    #[tokio::test]
    async fn panics_and_errors_are_restarted_with_the_message() {
        let t = task("flaky");
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let started = Instant::now();
        let s = supervise(
            t.clone(),
            None,
            Backoff::new(ms(10), ms(40), Duration::from_secs(60)),
            move || {
                let n = r.fetch_add(1, Ordering::Relaxed);
                async move {
                    match n {
                        0 => panic!("first run panics"),
                        1 => Err("second run fails".to_string()),
                        2 => panic!("third run panics with {n}"),
                        _ => Ok(()),
                    }
                }
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::Relaxed), 4);
        assert_eq!(s.restarts, 3);
        assert_eq!(get(&t.restarts), 3);
        assert_eq!(
            s.last_failure,
            Some(Exit::Panicked("third run panics with 2".into()))
        );
        // 10 + 20 + 40 ms of backoff.
        assert!(started.elapsed() >= ms(70), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn returning_before_the_stop_signal_is_a_failure() {
        let t = task("early");
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU64::new(0));
        let (r, st) = (runs.clone(), stop.clone());
        let s = supervise(
            t.clone(),
            Some(stop.clone()),
            Backoff::new(ms(5), ms(5), Duration::from_secs(60)),
            move || {
                let n = r.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                async move {
                    if n == 2 {
                        st.cancel();
                    }
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        assert_eq!(s.restarts, 2);
        assert_eq!(
            s.last_failure,
            Some(Exit::Failed("returned before it was asked to stop".into()))
        );
    }

    #[tokio::test]
    async fn stopping_cuts_the_backoff_short_and_ends_the_restarts() {
        let t = task("stopping");
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let st = stop.clone();
        let started = Instant::now();
        let s = supervise(
            t.clone(),
            Some(stop.clone()),
            Backoff::default(),
            move || {
                r.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                async move {
                    // Ask to stop, then die: the restart comes at once, and its
                    // death is the last one.
                    st.cancel();
                    panic!("dies while stopping")
                }
            },
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(runs.load(Ordering::Relaxed), 2);
        assert_eq!(s.restarts, 2);
    }

    /// A sink that panics on every flush after the first `ok`, and counts
    /// the flushes it saw.
    struct Flaky {
        ok: u64,
        seen: Arc<AtomicU64>,
    }

    impl Sink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> crate::sink::BoxFuture {
            Box::pin(async move {
                let mut n = 0;
                while let Some(_m) = rx.recv().await {
                    self.seen.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    if n > self.ok {
                        panic!("flaky sink panics on message {n}");
                    }
                }
            })
        }
    }

    fn flush() -> SinkMsg {
        SinkMsg::Raw(bytes::Bytes::from_static(b"x:1|c"))
    }

    #[tokio::test]
    async fn a_panicking_sink_is_rebuilt_and_its_queue_kept() {
        let seen = Arc::new(AtomicU64::new(0));
        let builds = Arc::new(AtomicU64::new(0));
        let (b, s2) = (builds.clone(), seen.clone());
        // The first incarnation panics on its first message; every rebuilt
        // one takes two, then panics.
        let factory: SinkFactory = Box::new(move || {
            b.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Flaky {
                ok: 2,
                seen: s2.clone(),
            }))
        });
        let stats = Arc::new(SinkStats::default());
        let t = task("sink/flaky");
        let (tx, rx) = mpsc::channel(8);
        let sup = tokio::spawn(sink(
            Box::new(Flaky {
                ok: 0,
                seen: seen.clone(),
            }),
            factory,
            rx,
            stats.clone(),
            t.clone(),
            Backoff::new(ms(5), ms(20), Duration::from_secs(60)),
        ));
        for _ in 0..5 {
            tx.send(flush()).await.unwrap();
        }
        drop(tx);
        let s = tokio::time::timeout(Duration::from_secs(5), sup)
            .await
            .expect("the supervisor ends when the queue closes")
            .unwrap();
        // 1st incarnation: message 1 (panics). 2nd: 2, 3, 4 (panics on 4).
        // 3rd: 5, then the queue closes and it returns.
        assert_eq!(seen.load(Ordering::Relaxed), 5);
        assert_eq!(s.restarts, 2);
        assert_eq!(get(&t.restarts), 2);
        assert_eq!(builds.load(Ordering::Relaxed), 2);
        assert!(matches!(s.last_failure, Some(Exit::Panicked(ref m)) if m.contains("message 3")));
        // Each panic lost the message it was processing, at least; counted.
        let dropped = get(&stats.dropped);
        assert!((2..=4).contains(&dropped), "dropped {dropped}");
    }

    #[tokio::test]
    async fn a_factory_that_fails_is_retried_and_the_queue_waits() {
        let seen = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let (c, s2) = (calls.clone(), seen.clone());
        let factory: SinkFactory = Box::new(move || match c.fetch_add(1, Ordering::Relaxed) {
            0 => panic!("the factory panics once"),
            1 => Err(SinkError::NoRelay { sink: "x".into() }),
            _ => Ok(Box::new(Flaky {
                ok: u64::MAX,
                seen: s2.clone(),
            })),
        });
        let stats = Arc::new(SinkStats::default());
        let t = task("sink/rebuilt");
        let (tx, rx) = mpsc::channel(8);
        let sup = tokio::spawn(sink(
            Box::new(Flaky {
                ok: 0,
                seen: seen.clone(),
            }),
            factory,
            rx,
            stats.clone(),
            t.clone(),
            Backoff::new(ms(5), ms(20), Duration::from_secs(60)),
        ));
        for _ in 0..3 {
            tx.send(flush()).await.unwrap();
        }
        // Let the failures happen before the queue closes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(ms(5)).await;
        }
        drop(tx);
        let s = tokio::time::timeout(Duration::from_secs(5), sup)
            .await
            .unwrap()
            .unwrap();
        // The first sink panicked on message 1; the third build took 2 and 3.
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(s.restarts, 3);
        assert_eq!(get(&t.restarts), 3);
        assert_eq!(get(&stats.dropped), 1);
    }

    #[tokio::test]
    async fn a_sink_that_closes_cleanly_is_not_restarted() {
        let seen = Arc::new(AtomicU64::new(0));
        let factory: SinkFactory = Box::new(|| panic!("never rebuilt"));
        let (tx, rx) = mpsc::channel(4);
        let t = task("sink/fine");
        let sup = tokio::spawn(sink(
            Box::new(Flaky {
                ok: u64::MAX,
                seen: seen.clone(),
            }),
            factory,
            rx,
            Arc::new(SinkStats::default()),
            t.clone(),
            Backoff::default(),
        ));
        for _ in 0..3 {
            tx.send(flush()).await.unwrap();
        }
        drop(tx);
        let s = sup.await.unwrap();
        assert_eq!(s, Summary::default());
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(get(&t.restarts), 0);
    }

    #[tokio::test]
    async fn a_listener_survives_its_accept_loop_panicking() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let t = task("tcp/test");
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicU64::new(0));
        let (a, st) = (accepted.clone(), stop.clone());
        let sup = tokio::spawn(supervise_socket(
            t.clone(),
            Some(stop.clone()),
            l,
            move |l| {
                let (a, st) = (a.clone(), st.clone());
                async move {
                    loop {
                        tokio::select! {
                            _ = st.cancelled() => return,
                            c = l.accept() => {
                                let n = a.fetch_add(1, Ordering::Relaxed);
                                drop(c);
                                if n == 0 {
                                    panic!("accept loop panics on its first connection");
                                }
                            }
                        }
                    }
                }
            },
        ));
        for _ in 0..3 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = c.write_all(b"x").await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepted.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "the restarted loop accepts");
            tokio::time::sleep(ms(10)).await;
        }
        stop.cancel();
        let s = sup.await.unwrap();
        assert_eq!(s.restarts, 1);
        assert_eq!(get(&t.restarts), 1);
    }
}

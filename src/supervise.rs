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
//! - **Sinks** (`crate::sink::supervise`, which builds on this module): the
//!   supervisor keeps the sink's queue and feeds each incarnation through a
//!   one-slot hop ([`HOP`]); after a panic it builds the sink again from its
//!   settings, and counts what the dead incarnation may not have finished.
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
//! Imports: the counters and the shutdown signal only, so that every part
//! can use it.
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

use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

use crate::shutdown::CancellationToken;
use crate::stats::{get, incr, TaskStats};

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
    pub(crate) fn of(r: Result<Result<(), String>, JoinError>) -> Exit {
        match r {
            Ok(Ok(())) => Exit::Returned,
            Ok(Err(e)) => Exit::Failed(e),
            Err(e) if e.is_panic() => Exit::Panicked(panic_message(&*e.into_panic())),
            Err(_) => Exit::Cancelled,
        }
    }

    pub(crate) fn why(&self) -> String {
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
pub(crate) fn count_failure(task: &TaskStats, why: &str, retry_in: Option<Duration>) -> u64 {
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

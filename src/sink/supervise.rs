//! How a sink task is kept running: the third shape of
//! [`crate::supervise`]. The sinks themselves are not changed. The
//! supervisor keeps the sink's real queue receiver and feeds each
//! incarnation through a one-slot inner channel ([`HOP`]), so the queue
//! bound still means what it says (the queue, plus one message in the hop
//! and the one being processed). On a panic it builds the sink again from
//! its settings with a factory (`SinkConfig::build` with the same settings
//! and the same counters) and starts it after the backoff. The message the
//! sink was processing is lost, with whatever the sink held in its own
//! buffer: the supervisor counts as `dropped` (in the sink's counters) every
//! message it handed over and cannot prove was finished, one or two, so the
//! count errs on the high side, never the low. During the backoff the queue
//! keeps its bound (a full queue drops and counts, as always); the queue
//! closing (shutdown, or a reload removing the sink) cuts the backoff short,
//! so the new incarnation delivers what is left within the shutdown
//! deadline, in order.
//!
//! Imports, besides `sink` itself: `stats`, `supervise`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

use super::{Sink, SinkError, SinkMsg};
use crate::stats::{incr, SinkStats, TaskStats};
use crate::supervise::{count_failure, panic_message, Backoff, Exit, Summary, HOP};

/// Builds a sink again after it panicked (the same spec, the same counters).
pub type SinkFactory = Box<dyn FnMut() -> Result<Box<dyn Sink>, SinkError> + Send>;

/// Run the sink `first` on `rx`, building it again with `factory` whenever
/// it panics (or stops before its queue closed), until the queue closes and
/// the sink has delivered what it holds. See the module doc.
pub async fn run(
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
    use crate::stats::get;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn task(name: &str) -> Arc<TaskStats> {
        Arc::new(TaskStats {
            name: name.into(),
            restarts: Default::default(),
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
        let sup = tokio::spawn(run(
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
        let sup = tokio::spawn(run(
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
        let sup = tokio::spawn(run(
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
}

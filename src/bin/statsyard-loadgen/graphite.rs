//! A Graphite plaintext receiver that counts what the statsd server reports.
//!
//! It accepts any number of connections (the reference statsd opens one per
//! flush; statsyard keeps one open) and reads `name value timestamp` lines.
//! Two sums are kept, from the moment [`Receiver::start_counting`] is called:
//! the server's own count of lines it processed (`metrics_received`, summed
//! over flushes), and the sum of the counters the load generator sent.
//!
//! Imports nothing of the library.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which Graphite lines count, and as what.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    /// Exact names of the server's per-flush processed-lines counter.
    pub processed: Vec<String>,
    /// `(prefix, suffix)` of the series that carry the generator's counters.
    pub arrived: Vec<(String, String)>,
}

/// What one Graphite line is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// The server's count of lines processed in one flush.
    Processed(f64),
    /// The count of one of the generator's counters in one flush.
    Arrived(f64),
}

impl Matcher {
    /// The names a reference-compatible statsd uses, for both of its
    /// namespaces: legacy (`stats_counts.<name>`) and not
    /// (`stats.counters.<name>.count`). `stats_prefix` is the server's
    /// `prefixStats`, `prefix` the generator's name prefix.
    pub fn statsd(stats_prefix: &str, prefix: &str) -> Matcher {
        Matcher {
            processed: vec![
                format!("stats_counts.{stats_prefix}.metrics_received"),
                format!("stats.counters.{stats_prefix}.metrics_received.count"),
            ],
            arrived: vec![
                (format!("stats_counts.{prefix}.c."), String::new()),
                (format!("stats.counters.{prefix}.c."), ".count".into()),
            ],
        }
    }

    /// Classify one line (without its newline); `None` for lines that do not
    /// count or are not `name value [timestamp]`.
    pub fn classify(&self, line: &[u8]) -> Option<Sample> {
        let line = std::str::from_utf8(line).ok()?;
        let mut fields = line.split_ascii_whitespace();
        let name = fields.next()?;
        let value: f64 = fields.next()?.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        if self.processed.iter().any(|p| p == name) {
            return Some(Sample::Processed(value));
        }
        let arrived = self.arrived.iter().any(|(prefix, suffix)| {
            name.len() > prefix.len() + suffix.len()
                && name.starts_with(prefix.as_str())
                && name.ends_with(suffix.as_str())
        });
        arrived.then_some(Sample::Arrived(value))
    }
}

/// The sums, shared between the connection threads and the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// When counting started; nothing before it is summed.
    pub counting_since: Option<Instant>,
    /// Every processed-lines sample seen, counting or not, with its arrival.
    pub processed_samples: Vec<(Instant, f64)>,
    /// Sum of the generator's counters since counting started.
    pub arrived: f64,
    /// Whether any counter of the generator was seen since counting started.
    pub arrived_seen: bool,
    /// Graphite lines read in all.
    pub lines: u64,
    /// Connections accepted.
    pub connections: u64,
}

impl Tally {
    /// Sum of the processed-lines samples since counting started, and how
    /// many flushes carried one; `None` when none arrived.
    pub fn processed(&self) -> Option<(f64, usize)> {
        let since = self.counting_since?;
        let after: Vec<f64> = self
            .processed_samples
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, v)| *v)
            .collect();
        (!after.is_empty()).then(|| (after.iter().sum(), after.len()))
    }

    /// Whether a flush that arrived after `t` reported zero processed lines:
    /// the server then had a whole interval without work, so its backlog is
    /// drained and waiting longer would change nothing.
    pub fn idle_flush_after(&self, t: Instant) -> bool {
        self.processed_samples
            .iter()
            .any(|(at, v)| *at > t && *v == 0.0)
    }
}

type Shared = Arc<(Mutex<Tally>, Condvar)>;

/// A running receiver. Its threads live until the process exits.
pub struct Receiver {
    shared: Shared,
    addr: SocketAddr,
}

impl Receiver {
    /// Listen on `addr` and count with `matcher`.
    pub fn start(addr: SocketAddr, matcher: Matcher) -> io::Result<Receiver> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::default();
        let matcher = Arc::new(matcher);
        let accept_shared = shared.clone();
        std::thread::Builder::new()
            .name("graphite-accept".into())
            .spawn(move || accept_loop(listener, matcher, accept_shared))?;
        Ok(Receiver { shared, addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Start summing from now on.
    pub fn start_counting(&self) {
        lock(&self.shared).counting_since = Some(Instant::now());
    }

    /// A copy of the sums.
    pub fn tally(&self) -> Tally {
        lock(&self.shared).clone()
    }

    /// Wait until `done` holds for the tally or `deadline` passes; returns
    /// whether `done` held.
    pub fn wait_until(&self, deadline: Instant, done: impl Fn(&Tally) -> bool) -> bool {
        let cond = &self.shared.1;
        let mut tally = lock(&self.shared);
        loop {
            if done(&tally) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tally = match cond.wait_timeout(tally, deadline - now) {
                Ok((t, _)) => t,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A poisoned lock only means a connection thread panicked mid-update of
/// plain numbers; the sums are still usable.
fn lock(shared: &Shared) -> MutexGuard<'_, Tally> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, matcher: Arc<Matcher>, shared: Shared) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            // EMFILE and the like: back off a little rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        lock(&shared).connections += 1;
        let (matcher, shared) = (matcher.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("graphite-conn".into())
            .spawn(move || read_conn(conn, &matcher, &shared));
        if spawned.is_err() {
            // Out of threads: the connection is dropped; the server retries.
            continue;
        }
    }
}

fn read_conn(conn: TcpStream, matcher: &Matcher, shared: &Shared) {
    let mut reader = BufReader::with_capacity(256 * 1024, conn);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let sample = matcher.classify(text);
        let mut tally = lock(shared);
        tally.lines += 1;
        match sample {
            Some(Sample::Processed(v)) => {
                tally.processed_samples.push((Instant::now(), v));
                drop(tally);
                shared.1.notify_all();
            }
            Some(Sample::Arrived(v)) if tally.counting_since.is_some() => {
                tally.arrived += v;
                tally.arrived_seen = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn classify_lines() {
        let m = Matcher::statsd("statsd", "lg");
        let cases: &[(&str, Option<Sample>)] = &[
            (
                "stats_counts.statsd.metrics_received 1234 1700000000",
                Some(Sample::Processed(1234.0)),
            ),
            (
                "stats.counters.statsd.metrics_received.count 7 1700000000",
                Some(Sample::Processed(7.0)),
            ),
            ("stats.statsd.metrics_received 617 1700000000", None),
            (
                "stats_counts.lg.c.k12 40 1700000000",
                Some(Sample::Arrived(40.0)),
            ),
            (
                "stats_counts.lg.c.k12;env=prod;host=h1 3 1700000000",
                Some(Sample::Arrived(3.0)),
            ),
            (
                "stats.counters.lg.c.k1.count 5 1700000000",
                Some(Sample::Arrived(5.0)),
            ),
            ("stats.counters.lg.c.k1.rate 0.5 1700000000", None),
            ("stats.lg.c.k12 20 1700000000", None),
            ("stats_counts.lg.h.k12 40 1700000000", None),
            ("stats_counts.lgx.c.k12 40 1700000000", None),
            ("stats_counts.lg.c. 40 1700000000", None),
            (
                "stats_counts.lg.c.k1 1.5e3 1",
                Some(Sample::Arrived(1500.0)),
            ),
            ("stats_counts.lg.c.k1 NaN 1", None),
            ("stats_counts.lg.c.k1 abc 1", None),
            ("stats_counts.lg.c.k1", None),
            ("", None),
            (
                "stats_counts.statsd.metrics_received\t9\t1",
                Some(Sample::Processed(9.0)),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(m.classify(line.as_bytes()), *want, "{line}");
        }
        assert_eq!(m.classify(b"stats_counts.lg.c.\xff 1 1"), None);
    }

    #[test]
    fn custom_names() {
        let m = Matcher {
            processed: vec!["brubeck.server.metrics".into()],
            arrived: vec![("lg.c.".into(), String::new())],
        };
        assert_eq!(
            m.classify(b"brubeck.server.metrics 10 1"),
            Some(Sample::Processed(10.0))
        );
        assert_eq!(m.classify(b"lg.c.k3 2 1"), Some(Sample::Arrived(2.0)));
        assert_eq!(m.classify(b"stats_counts.lg.c.k3 2 1"), None);
    }

    #[test]
    fn tally_processed_and_idle() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let tally = Tally {
            counting_since: Some(at(100)),
            processed_samples: vec![
                (at(50), 9.0),
                (at(150), 10.0),
                (at(250), 5.0),
                (at(350), 0.0),
            ],
            ..Tally::default()
        };
        assert_eq!(tally.processed(), Some((15.0, 3)));
        assert!(tally.idle_flush_after(at(300)));
        assert!(!tally.idle_flush_after(at(350)));
        assert!(tally.idle_flush_after(at(10)));
        let not_counting = Tally {
            processed_samples: vec![(at(50), 9.0)],
            ..Tally::default()
        };
        assert_eq!(not_counting.processed(), None);
    }

    /// Several connections, one at a time and at once, some lines split
    /// across writes, the last one without a newline.
    #[test]
    fn receiver_sums_over_connections() {
        let rx = Receiver::start(
            "127.0.0.1:0".parse().unwrap(),
            Matcher::statsd("statsd", "lg"),
        )
        .unwrap();
        let addr = rx.local_addr();
        let send = |chunks: &[&str]| {
            let mut c = TcpStream::connect(addr).unwrap();
            for chunk in chunks {
                c.write_all(chunk.as_bytes()).unwrap();
                c.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // Before counting: the processed sample is kept (with its time) but
        // not summed, counters are ignored.
        send(&["stats_counts.statsd.metrics_received 99 1\nstats_counts.lg.c.k1 99 1\n"]);
        assert!(rx.wait_until(Instant::now() + Duration::from_secs(2), |t| t.lines == 2));
        rx.start_counting();
        let a = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"stats_counts.statsd.metrics_received 40 2\nstats_counts.lg.c.k1 30 2\n")
                .unwrap();
        });
        send(&[
            "stats_counts.lg.c.k2 1",
            "0 3\nstats.lg.c.k2 5 3\n",
            "stats_counts.statsd.metrics_received 12 3",
        ]);
        a.join().unwrap();
        let done = rx.wait_until(Instant::now() + Duration::from_secs(2), |t| t.lines == 7);
        assert!(done, "{:?}", rx.tally());
        let t = rx.tally();
        assert_eq!(t.processed(), Some((52.0, 2)));
        assert_eq!(t.arrived, 40.0);
        assert!(t.arrived_seen);
        assert_eq!(t.connections, 3);
        assert_eq!(t.processed_samples.len(), 3);
    }
}

//! Shared test plumbing: a Graphite receiver on a real TCP socket, servers
//! started in-process on port 0, and the built binary.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use statsyard::config::Config;
use statsyard::server::{self, Running};

/// One line received by [`Graphite`].
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub value: String,
    pub ts: u64,
}

/// A Graphite plaintext receiver: accepts any number of connections and
/// collects every line they send.
pub struct Graphite {
    pub addr: SocketAddr,
    rx: Receiver<Line>,
    pub seen: Vec<Line>,
}

impl Graphite {
    pub fn start() -> Graphite {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind graphite");
        Graphite::on(listener)
    }

    /// Serve on an already-bound listener (to reuse a port that was down).
    pub fn on(listener: TcpListener) -> Graphite {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { return };
                        let mut parts = line.rsplitn(3, ' ');
                        let (Some(ts), Some(value), Some(name)) =
                            (parts.next(), parts.next(), parts.next())
                        else {
                            panic!("malformed graphite line {line:?}");
                        };
                        let ts = ts.parse().expect("graphite timestamp");
                        let l = Line {
                            name: name.into(),
                            value: value.into(),
                            ts,
                        };
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Graphite {
            addr,
            rx,
            seen: Vec::new(),
        }
    }

    /// Collect lines until `done(all lines so far)` holds; panics after `timeout`.
    pub fn until(&mut self, timeout: Duration, mut done: impl FnMut(&[Line]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out waiting for graphite lines; got {} lines: {:#?}",
                    self.seen.len(),
                    &self.seen[self.seen.len().saturating_sub(40)..]
                );
            }
            if let Ok(l) = self.rx.recv_timeout(left.min(Duration::from_millis(50))) {
                self.seen.push(l);
            }
        }
    }

    /// Wait until every `(name, value)` of `want` has arrived; panics after `timeout`.
    pub fn until_all(&mut self, timeout: Duration, want: &[(&str, &str)]) {
        self.until(timeout, |ls| {
            want.iter()
                .all(|(n, v)| ls.iter().any(|l| l.name == *n && l.value == *v))
        });
    }

    /// Wait for a line named `name` and return its value.
    pub fn value_of(&mut self, name: &str, timeout: Duration) -> String {
        self.until(timeout, |ls| ls.iter().any(|l| l.name == name));
        self.seen
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.clone())
            .unwrap()
    }

    /// The sum of every value received so far for `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.seen
            .iter()
            .filter(|l| l.name == name)
            .map(|l| l.value.parse::<f64>().unwrap())
            .sum()
    }

    /// Take whatever arrives within `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if let Ok(l) = self.rx.recv_timeout(left) {
                self.seen.push(l);
            }
        }
    }
}

/// Parse a TOML config for a test.
pub fn config(toml: &str) -> Config {
    let mut c = statsyard::config::toml::from_str(toml, "test.toml").expect("test config is valid");
    // Tests run in parallel: the HTTP server and the admin console listen on
    // ephemeral ports unless the test chose its own address.
    let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for (addr, default_port) in [(&mut c.http, 9102), (&mut c.admin, 8126)] {
        if addr.is_some_and(|a| a.port() == default_port) {
            *addr = Some(ephemeral);
        }
    }
    c
}

/// A config with UDP and TCP on 127.0.0.1:0, a short flush, and one graphite sink.
pub fn graphite_config(graphite: SocketAddr, interval_ms: u64, extra: &str) -> Config {
    config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[flush]
interval = "{interval_ms}ms"
shutdown_timeout = "5s"
{extra}
[[sink]]
type = "graphite"
address = "{graphite}"
backoff_min = "20ms"
backoff_max = "200ms"
"#
    ))
}

/// A config with the given `[statsd]` lines, a 200 ms flush and one graphite sink.
pub fn statsd_config(statsd: &str, graphite: SocketAddr) -> Config {
    config(&format!(
        r#"
[statsd]
{statsd}
[flush]
interval = "200ms"
[[sink]]
type = "graphite"
address = "{graphite}"
"#
    ))
}

/// Start a server on a fresh runtime held by the returned guard.
pub struct Server {
    pub rt: tokio::runtime::Runtime,
    pub running: Option<Running>,
}

impl Server {
    pub fn start(config: Config) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(server::start(config)).expect("server starts");
        Server {
            rt,
            running: Some(running),
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn udp(&self) -> SocketAddr {
        self.running().udp[0]
    }

    pub fn tcp(&self) -> SocketAddr {
        self.running().tcp[0]
    }

    /// Ordered shutdown; returns once the final flush was handed to the sinks
    /// and they finished.
    pub fn stop(mut self) {
        let r = self.running.take().unwrap();
        r.shutdown();
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), r.wait())
                .await
                .expect("shutdown finishes")
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// Send each packet as one datagram.
pub fn send_udp(to: SocketAddr, packets: &[&[u8]]) {
    let bind = if to.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let s = UdpSocket::bind(bind).unwrap();
    for p in packets {
        s.send_to(p, to).unwrap();
    }
}

/// The `statsyard` binary built for this test run.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_statsyard"))
}

/// `secs` as a Duration.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A loopback port for a server that binds its own (the reference statsd,
/// carbon-cache or Prometheus cannot be handed a socket). Ports come from below the kernel's ephemeral
/// range (32768 and up by default), so no outgoing connection of a parallel
/// test can take one between this check and the server's bind; a process-wide
/// counter keeps two differential runs in this process apart.
pub fn free_port(udp: bool) -> io::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    for _ in 0..2_000 {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let free = if udp {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
        } else {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        if free {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

/// [`free_port`] for TCP, for tests that cannot go on without one.
pub fn free_tcp_port() -> u16 {
    free_port(false).expect("a free TCP port below the ephemeral range")
}

/// A `[relay]` section: carbon lines over TCP on port 0, one `forward`
/// cluster named `c` to `dest`.
pub fn relay_section(dest: &str) -> String {
    format!(
        r#"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = []
[[relay.cluster]]
name = "c"
method = "forward"
destinations = ["{dest}"]
"#
    )
}

/// A child process killed when the test ends, pass or fail.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// `statsyard --config FILE`, logging at `info` to the file `log`.
    pub fn statsyard(file: &std::path::Path, log: &std::path::Path) -> Proc {
        let child = bin()
            .args(["--config", &file.display().to_string()])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Proc(child)
    }

    /// Wait until `addr` accepts TCP connections (the server is up).
    pub fn wait_tcp(&self, addr: SocketAddr) {
        let end = Instant::now() + secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "nothing accepts on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let rc = unsafe { libc::kill(self.0.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// SIGTERM, then wait for exit status 0.
    pub fn term(mut self) {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "exit status {status:?}");
                return;
            }
            assert!(Instant::now() < end, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The environment variable that marks a test run by [`in_own_process`].
const OWN_PROCESS: &str = "STATSYARD_TEST_OWN_PROCESS";

/// For tests that measure this process's resident memory (the server runs
/// in-process): `cargo test` runs tests as threads of one process, so
/// another test's allocations would count. Called first thing with the
/// test's path (`module::name`); returns `false` in the process that runs
/// the body, and `true` in the one that ran it (this test binary again,
/// with that test alone) and checked that it passed: the caller returns.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var(OWN_PROCESS).as_deref() == Ok(test) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, test)
        .output()
        .expect("run the test binary again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{text}"
    );
    // A filter that matched nothing also succeeds: make sure it ran.
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
    true
}

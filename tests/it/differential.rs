//! Differential test against the reference statsd (npm `statsd` 0.9.0).
//!
//! For each scenario the reference and statsyard get the same `config.js`
//! (only the ports differ) and the same corpus as the same UDP datagrams; the
//! Graphite lines of two flushes are compared: the flush holding the corpus and
//! the idle flush after it (counters zero, gauges kept, deleted stats gone).
//!
//! - `tests/data/differential/common.txt`: input both must handle identically.
//! - `tests/data/differential/divergent.txt`: input statsyard handles on purpose
//!   differently (each entry names its section of docs/compatibility.md).
//!   statsyard's lines must be exactly the listed ones, and the reference's must
//!   differ from them, so every listed difference is real.
//!
//! Both servers flush every second; a flush is the lines that arrive together
//! on the test's Graphite listener (the reference opens one connection per
//! flush, statsyard keeps one open). The corpus is sent right after a flush, so
//! it all lands in the next one; `packets_received` in that flush proves it.
//!
//! Names that depend on timing are not compared: `*.graphiteStats.*`,
//! `*.processing_time` and `*.timestamp_lag` (with any globalSuffix). Tags in a
//! name are sorted on both sides (statsyard sorts them, the reference keeps the
//! client's order).
//!
//! Environment:
//! - `STATSYARD_REFERENCE_STATSD`: path to the reference's `stats.js` (default
//!   `target/reference-statsd/node_modules/statsd/stats.js`, where `.ci/run`
//!   installs it with `npm install --prefix target/reference-statsd statsd@0.9.0`).
//! - `CI`: when set, a missing `node` or reference fails the test; otherwise the
//!   test says why it skips and passes.
//! - `STATSYARD_DIFFERENTIAL_SELF=1`: run the reference against itself instead of
//!   statsyard, which validates the harness and the corpus split.
//! - `STATSYARD_DIFFERENTIAL_DUMP=1`: print every compared flush.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::free_port;

const COMMON: &str = include_str!("../data/differential/common.txt");
const DIVERGENT: &str = include_str!("../data/differential/divergent.txt");

/// Short enough to keep the whole test within seconds, long enough that the
/// corpus (sent in well under 100 ms) always fits inside one interval.
const FLUSH_INTERVAL_MS: u64 = 1000;
/// Node and statsyard start in well under a second; the first flush follows
/// within 1.5 intervals. Generous because CI shares two cores with builds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// The lines of one flush arrive within a few milliseconds of each other, and
/// flushes are a whole interval apart: a pause this long ends a flush.
const FLUSH_GAP: Duration = Duration::from_millis(150);
/// Datagrams sent back to back before a short pause, so that the receiver's
/// socket buffer never overflows on loopback.
const BURST: usize = 8;
const BURST_PAUSE: Duration = Duration::from_millis(1);

/// Name components that only carry timing and therefore differ on every run.
const TIMING_COMPONENTS: [&str; 3] = ["graphiteStats", "processing_time", "timestamp_lag"];

/// Histogram rules and percentiles of most scenarios: a negative percentile, a
/// fractional one, a rule matching by substring and a catch-all rule with an
/// empty metric.
const TIMER_CONFIG: &str = "  percentThreshold: [90, 99.9, -10],
  histogram: [
    { metric: 'render', bins: [0.01, 0.1, 1, 10, 'inf'] },
    { metric: '', bins: [50, 100, 'inf'] },
  ],
";

/// One server configuration under test.
struct Scenario {
    name: &'static str,
    /// Object-literal entries appended to the generated `config.js`.
    config: &'static str,
    /// The timer entries (`percentThreshold`, `histogram`) of the `config.js`.
    timers: &'static str,
    /// The Graphite name whose value is the number of datagrams in the flush.
    packets_received: &'static str,
    /// The Graphite name whose value is the number of bad lines in the flush.
    bad_lines_seen: &'static str,
}

const LEGACY: Scenario = Scenario {
    name: "legacy",
    config: "",
    timers: TIMER_CONFIG,
    packets_received: "stats_counts.statsd.packets_received",
    bad_lines_seen: "stats_counts.statsd.bad_lines_seen",
};

const PREFIXED: Scenario = Scenario {
    name: "prefixed",
    config: "  graphite: {
    legacyNamespace: false,
    globalPrefix: 'gp',
    prefixCounter: 'cnt',
    prefixTimer: 'tmr',
    prefixGauge: 'gg',
    prefixSet: 'st',
    globalSuffix: 'sfx',
  },
",
    timers: TIMER_CONFIG,
    packets_received: "gp.cnt.statsd.packets_received.count.sfx",
    bad_lines_seen: "gp.cnt.statsd.bad_lines_seen.count.sfx",
};

const DELETE_IDLE: Scenario = Scenario {
    name: "delete-idle",
    config: "  deleteIdleStats: true,
  calculatedTimerMetrics: ['count', 'mean', 'upper_percent', 'histogram'],
  prefixStats: 'mystats',
  flush_counts: false,
",
    timers: TIMER_CONFIG,
    // Without flush_counts only the rate is sent; with a one-second interval
    // the rate equals the count.
    packets_received: "stats.mystats.packets_received",
    bad_lines_seen: "stats.mystats.bad_lines_seen",
};

/// The remaining config paths: names sanitised only on output, a single
/// percentile, empty prefixes and an empty (but set) globalSuffix, which the
/// reference still appends as a lone `.`, and gauges that live two flushes.
const RAW_KEYS: Scenario = Scenario {
    name: "raw-keys",
    config: "  keyNameSanitize: false,
  deleteCounters: true,
  deleteGauges: true,
  gaugesMaxTTL: 2,
  graphite: {
    legacyNamespace: false,
    globalPrefix: '',
    prefixCounter: '',
    prefixGauge: 'g',
    globalSuffix: '',
  },
",
    timers: "  percentThreshold: 50,\n",
    packets_received: "statsd.packets_received.count.",
    bad_lines_seen: "statsd.bad_lines_seen.count.",
};

#[test]
fn common_legacy_namespace() {
    common(&LEGACY);
}

#[test]
fn common_prefixed_namespace() {
    common(&PREFIXED);
}

#[test]
fn common_delete_idle_stats() {
    common(&DELETE_IDLE);
}

#[test]
fn common_raw_keys() {
    common(&RAW_KEYS);
}

#[test]
fn divergent_legacy_namespace() {
    let Some(peers) = Peers::find() else {
        return;
    };
    let entries = parse_divergent(DIVERGENT).unwrap_or_else(|e| panic!("divergent.txt: {e}"));
    let packets: Vec<Vec<u8>> = entries.iter().flat_map(|e| e.packets.clone()).collect();
    let scenario = &LEGACY;
    let mut problems = Vec::new();

    // In self mode there is no statsyard: only check that the reference really
    // differs from every expectation.
    let (reference, statsyard) = if self_mode() {
        let reference = run_server(Impl::Reference, &peers, scenario, &packets);
        (reference, None)
    } else {
        let (r, s) = run_pair(&peers, scenario, &packets, Impl::Statsyard);
        (r, Some(s))
    };
    let reference = reference.unwrap_or_else(|e| panic!("{e}"));
    check_packets(
        "reference",
        scenario,
        &reference,
        packets.len(),
        &mut problems,
    );
    let reference_lines = normalise_flush(&reference.corpus);
    dump("divergent/reference", &reference_lines);

    for entry in &entries {
        let got = entry.select(&reference_lines);
        if got == entry.expect {
            problems.push(format!(
                "[{}] {}: the reference produces exactly statsyard's expected lines, so this is \
                 no difference; move the input to common.txt\n  input: {:?}\n  lines: {:?}",
                entry.section,
                entry.selector,
                entry.inputs(),
                got
            ));
        }
    }

    if let Some(statsyard) = statsyard {
        let statsyard = statsyard.unwrap_or_else(|e| panic!("{e}"));
        check_packets(
            "statsyard",
            scenario,
            &statsyard,
            packets.len(),
            &mut problems,
        );
        let statsyard_lines = normalise_flush(&statsyard.corpus);
        dump("divergent/statsyard", &statsyard_lines);
        for entry in &entries {
            let got = entry.select(&statsyard_lines);
            if got != entry.expect {
                problems.push(format!(
                    "[{}] {}: statsyard's lines differ from divergent.txt\n  input: {:?}\n  \
                     expected: {:?}\n  statsyard: {:?}\n  reference: {:?}",
                    entry.section,
                    entry.selector,
                    entry.inputs(),
                    entry.expect,
                    got,
                    entry.select(&reference_lines)
                ));
            }
        }
        let expected_bad: u64 = entries.iter().map(|e| e.bad).sum();
        let bad = value_of(&statsyard_lines, scenario.bad_lines_seen);
        if bad.as_deref() != Some(expected_bad.to_string().as_str()) {
            problems.push(format!(
                "statsyard counted {bad:?} bad lines in divergent.txt, the entries' `bad` \
                 lines add up to {expected_bad}"
            ));
        }
    }

    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Run the common corpus through both servers with `scenario` and compare.
fn common(scenario: &Scenario) {
    let Some(peers) = Peers::find() else {
        return;
    };
    let packets = parse_corpus(COMMON).unwrap_or_else(|e| panic!("common.txt: {e}"));
    let other = if self_mode() {
        Impl::Reference
    } else {
        Impl::Statsyard
    };
    let (reference, candidate) = run_pair(&peers, scenario, &packets, other);
    let reference = reference.unwrap_or_else(|e| panic!("{e}"));
    let candidate = candidate.unwrap_or_else(|e| panic!("{e}"));
    let other_name = other.name();

    let mut problems = Vec::new();
    check_packets(
        "reference",
        scenario,
        &reference,
        packets.len(),
        &mut problems,
    );
    check_packets(
        other_name,
        scenario,
        &candidate,
        packets.len(),
        &mut problems,
    );
    for (flush, r, c) in [
        ("corpus", &reference.corpus, &candidate.corpus),
        ("idle", &reference.idle, &candidate.idle),
    ] {
        let r = normalise_flush(r);
        let c = normalise_flush(c);
        dump(&format!("{}/{flush}/reference", scenario.name), &r);
        dump(&format!("{}/{flush}/{other_name}", scenario.name), &c);
        if let Some(diff) = diff(&r, &c, other_name) {
            problems.push(format!(
                "scenario `{}`, {flush} flush: the outputs differ (value lists per name):\n{diff}",
                scenario.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The two servers compared; `Reference` on both sides in self mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Reference,
    Statsyard,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Reference => "reference",
            Impl::Statsyard => "statsyard",
        }
    }
}

/// Self mode replaces statsyard with a second reference; it validates the
/// harness and proves nothing about statsyard, so CI refuses it.
fn self_mode() -> bool {
    let on = std::env::var_os("STATSYARD_DIFFERENTIAL_SELF").is_some_and(|v| v == "1");
    assert!(
        !(on && in_ci()),
        "STATSYARD_DIFFERENTIAL_SELF=1 would skip statsyard; it is not allowed in CI"
    );
    on
}

fn dump(label: &str, lines: &[(String, String)]) {
    if std::env::var_os("STATSYARD_DIFFERENTIAL_DUMP").is_some_and(|v| v == "1") {
        let mut out = format!("==== {label}\n");
        for (name, value) in lines {
            let _ = writeln!(out, "{name} {value}");
        }
        eprint!("{out}");
    }
}

/// Where the reference statsd and node are.
struct Peers {
    stats_js: PathBuf,
}

impl Peers {
    /// The peers, or `None` after saying why the test skips. In CI a missing
    /// peer fails the test instead: a skipped differential test proves nothing.
    fn find() -> Option<Peers> {
        let stats_js = std::env::var_os("STATSYARD_REFERENCE_STATSD")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/reference-statsd/node_modules/statsd/stats.js")
            });
        let node_ok = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let missing = if !node_ok {
            Some("`node` is not on PATH".to_string())
        } else if !stats_js.is_file() {
            Some(format!(
                "the reference statsd is not at {} (install it with `npm install --prefix \
                 target/reference-statsd statsd@0.9.0`, or set STATSYARD_REFERENCE_STATSD to \
                 its stats.js)",
                stats_js.display()
            ))
        } else {
            None
        };
        match missing {
            None => Some(Peers { stats_js }),
            Some(why) if in_ci() => panic!("differential test: {why}; CI must provide it"),
            Some(why) => {
                eprintln!("skipping the differential test: {why}");
                None
            }
        }
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// What one server sent to Graphite: the raw `name value timestamp` lines.
struct Captured {
    corpus: Vec<String>,
    idle: Vec<String>,
}

/// Run the reference and `other` side by side (they share nothing but the
/// corpus), which halves the wall time.
fn run_pair(
    peers: &Peers,
    scenario: &Scenario,
    packets: &[Vec<u8>],
    other: Impl,
) -> (Result<Captured, String>, Result<Captured, String>) {
    thread::scope(|s| {
        let r = s.spawn(|| run_server(Impl::Reference, peers, scenario, packets));
        let o = s.spawn(|| run_server(other, peers, scenario, packets));
        let join = |h: thread::ScopedJoinHandle<'_, Result<Captured, String>>| {
            h.join()
                .unwrap_or_else(|_| Err("the server thread panicked".into()))
        };
        (join(r), join(o))
    })
}

/// Start one server, wait for its first flush, send the corpus, and capture
/// the next two flushes.
fn run_server(
    which: Impl,
    peers: &Peers,
    scenario: &Scenario,
    packets: &[Vec<u8>],
) -> Result<Captured, String> {
    let label = format!("{} ({})", which.name(), scenario.name);
    let dir = tempfile::tempdir().map_err(|e| format!("{label}: temp dir: {e}"))?;
    let graphite = GraphiteCapture::start().map_err(|e| format!("{label}: listener: {e}"))?;
    let udp_port = free_port(true).map_err(|e| format!("{label}: udp port: {e}"))?;
    let mgmt_port = free_port(false).map_err(|e| format!("{label}: mgmt port: {e}"))?;
    let config = config_js(scenario, udp_port, mgmt_port, graphite.port);
    let config_path = dir.path().join("config.js");
    std::fs::write(&config_path, config).map_err(|e| format!("{label}: config.js: {e}"))?;

    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let mut cmd = match which {
        Impl::Reference => {
            let mut c = Command::new("node");
            c.arg(&peers.stats_js).arg(&config_path);
            c
        }
        Impl::Statsyard => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_statsyard"));
            c.arg("--statsd-config").arg(&config_path);
            // Scenarios run in parallel: no fixed HTTP port.
            c.args(["--http-address", "127.0.0.1:0"]);
            c
        }
    };
    let open = |p: &Path| File::create(p).map_err(|e| format!("{label}: {}: {e}", p.display()));
    cmd.current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(open(&stdout)?)
        .stderr(open(&stderr)?);
    let mut child = ChildGuard(
        cmd.spawn()
            .map_err(|e| format!("{label}: cannot start: {e}"))?,
    );

    let fail = |what: String, child: &mut ChildGuard| -> String {
        let status = match child.0.try_wait() {
            Ok(Some(s)) => format!("exited with {s}"),
            Ok(None) => "still running".into(),
            Err(e) => format!("status unknown: {e}"),
        };
        format!(
            "{label}: {what} (the server is {status})\n--- stderr (tail):\n{}\n--- stdout (tail):\n{}",
            tail(&stderr),
            tail(&stdout)
        )
    };

    let interval = Duration::from_millis(FLUSH_INTERVAL_MS);
    graphite
        .next_flush(Instant::now() + STARTUP_TIMEOUT)
        .map_err(|e| fail(format!("first flush: {e}"), &mut child))?;
    send_packets(udp_port, packets).map_err(|e| fail(format!("send: {e}"), &mut child))?;
    let corpus = graphite
        .next_flush(Instant::now() + interval * 3)
        .map_err(|e| fail(format!("corpus flush: {e}"), &mut child))?;
    let idle = graphite
        .next_flush(Instant::now() + interval * 3)
        .map_err(|e| fail(format!("idle flush: {e}"), &mut child))?;
    Ok(Captured { corpus, idle })
}

/// The scenario's `config.js`, the same for both servers except the ports.
fn config_js(scenario: &Scenario, udp_port: u16, mgmt_port: u16, graphite_port: u16) -> String {
    format!(
        "{{
  port: {udp_port},
  address: '127.0.0.1',
  mgmt_port: {mgmt_port},
  mgmt_address: '127.0.0.1',
  graphiteHost: '127.0.0.1',
  graphitePort: {graphite_port},
  flushInterval: {FLUSH_INTERVAL_MS},
  backends: ['./backends/graphite'],
{}{}}}
",
        scenario.timers, scenario.config
    )
}

fn send_packets(port: u16, packets: &[Vec<u8>]) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(("127.0.0.1", port))?;
    for (i, p) in packets.iter().enumerate() {
        socket.send(p)?;
        if i % BURST == BURST - 1 {
            thread::sleep(BURST_PAUSE);
        }
    }
    Ok(())
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Kills the server when the test is done or fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Event {
    Line(usize, String),
    Eof(usize),
}

/// A Graphite plaintext receiver: every accepted connection is read line by
/// line on its own thread; the lines are grouped into flushes by
/// [`GraphiteCapture::next_flush`].
struct GraphiteCapture {
    port: u16,
    rx: Receiver<Event>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl GraphiteCapture {
    fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        // Non-blocking so the accept loop can see `stop` and end.
        listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut next_id = 0;
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let tx = tx.clone();
                            let id = next_id;
                            next_id += 1;
                            thread::spawn(move || read_lines(id, stream, tx));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(GraphiteCapture {
            port,
            rx,
            stop,
            accept: Some(accept),
        })
    }

    /// The next flush's lines. A flush ends when every connection that sent
    /// some of its lines has closed (the reference: one connection per flush)
    /// or when no line has arrived for [`FLUSH_GAP`] (statsyard: one long-lived
    /// connection).
    fn next_flush(&self, deadline: Instant) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        let mut conns = BTreeSet::new();
        let mut closed = BTreeSet::new();
        loop {
            let wait = if lines.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                FLUSH_GAP
            };
            match self.rx.recv_timeout(wait) {
                Ok(Event::Line(conn, line)) => {
                    conns.insert(conn);
                    lines.push(line);
                }
                Ok(Event::Eof(conn)) => {
                    if conns.contains(&conn) {
                        closed.insert(conn);
                        if closed == conns {
                            return Ok(lines);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected)
                    if !lines.is_empty() =>
                {
                    return Ok(lines)
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err("no flush arrived on the Graphite listener in time".into())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the Graphite listener stopped".into())
                }
            }
        }
    }
}

impl Drop for GraphiteCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn read_lines(id: usize, stream: TcpStream, tx: Sender<Event>) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.send(Event::Line(id, line)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Event::Eof(id));
}

/// A flush as sorted `(name, value)` pairs: timestamps dropped, timing-only
/// names removed, tags in each name sorted.
fn normalise_flush(raw: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = raw.iter().filter_map(|l| normalise_line(l)).collect();
    out.sort();
    out
}

/// `name value timestamp` → `(name with sorted tags, value)`, or `None` for a
/// timing-only name. The value is everything between the first and the last
/// space, so a value with spaces in it (the reference can print such garbage)
/// still compares as text.
fn normalise_line(line: &str) -> Option<(String, String)> {
    let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
    let value = rest.rsplit_once(' ').map_or(rest, |(v, _ts)| v);
    let (base, tags) = match name.split_once(';') {
        Some((base, tags)) => (base, Some(tags)),
        None => (name, None),
    };
    if base.split('.').any(|c| TIMING_COMPONENTS.contains(&c)) {
        return None;
    }
    let name = match tags {
        Some(tags) => {
            let mut tags: Vec<&str> = tags.split(';').collect();
            tags.sort_unstable();
            format!("{base};{}", tags.join(";"))
        }
        None => base.to_string(),
    };
    Some((name, value.to_string()))
}

fn value_of(lines: &[(String, String)], name: &str) -> Option<String> {
    lines
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Fails when the corpus did not arrive whole in one flush: lost datagrams or
/// a flush in the middle of sending would make every comparison meaningless.
fn check_packets(
    who: &str,
    scenario: &Scenario,
    captured: &Captured,
    sent: usize,
    problems: &mut Vec<String>,
) {
    let got = value_of(
        &normalise_flush(&captured.corpus),
        scenario.packets_received,
    );
    if got.as_deref() != Some(sent.to_string().as_str()) {
        problems.push(format!(
            "{who} ({}): `{}` is {got:?} in the corpus flush but {sent} datagrams were sent: \
             datagrams were lost or the corpus was split across two flushes",
            scenario.name, scenario.packets_received
        ));
    }
}

/// A readable difference of two flushes, per name: the values each side sent.
fn diff(
    reference: &[(String, String)],
    other: &[(String, String)],
    other_name: &str,
) -> Option<String> {
    let mut by_name: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for (n, v) in reference {
        by_name.entry(n).or_default().0.push(v);
    }
    for (n, v) in other {
        by_name.entry(n).or_default().1.push(v);
    }
    let mut out = String::new();
    let mut count = 0;
    for (name, (r, o)) in &by_name {
        // Both lists are in sorted order already (the flushes are sorted).
        if r != o {
            count += 1;
            let show = |v: &Vec<&str>| {
                if v.is_empty() {
                    "(absent)".to_string()
                } else {
                    v.join(", ")
                }
            };
            let _ = writeln!(
                out,
                "  {name}\n      reference: {}\n      {other_name}: {}",
                show(r),
                show(o)
            );
        }
    }
    (count > 0).then(|| format!("{count} names differ\n{out}"))
}

/// The datagrams of a corpus file: every line that is neither blank nor a
/// `#` comment is one datagram, after unescaping (see [`unescape`]).
fn parse_corpus(text: &str) -> Result<Vec<Vec<u8>>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| unescape(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Corpus escapes, so that every byte sequence can be written in a text file
/// and stay visible: `\n`, `\r`, `\t`, `\\`, `\xNN` (one raw byte, even one
/// that is not UTF-8) and `\u{N..}` (a Unicode scalar as UTF-8).
fn unescape(line: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16).map_err(|_| format!("bad \\x{hex}"))?;
                out.push(byte);
            }
            Some('u') => {
                let rest = chars.as_str();
                let body = rest
                    .strip_prefix('{')
                    .and_then(|r| r.split_once('}'))
                    .map(|(hex, _)| hex)
                    .ok_or("\\u needs {hex}")?;
                let c = u32::from_str_radix(body, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad \\u{{{body}}}"))?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                chars = rest[body.len() + 2..].chars();
            }
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// One entry of divergent.txt.
#[derive(Debug)]
struct Entry {
    /// The docs/compatibility.md section that documents the difference.
    section: String,
    /// Which output lines belong to the entry: names containing this text, or
    /// with a leading `=`, exactly the comma-separated names.
    selector: String,
    packets: Vec<Vec<u8>>,
    /// statsyard's lines for the entry, normalised and sorted.
    expect: Vec<(String, String)>,
    /// How many bad lines statsyard counts for the entry.
    bad: u64,
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        match self.selector.strip_prefix('=') {
            Some(names) => names.split(',').any(|n| n == name),
            None => name.contains(&self.selector),
        }
    }

    fn select(&self, lines: &[(String, String)]) -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|(n, _)| self.matches(n))
            .cloned()
            .collect()
    }

    fn inputs(&self) -> Vec<String> {
        self.packets
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}

/// divergent.txt: entries of the form
///
/// ```text
/// entry <section> <selector>
/// send <datagram, escaped as in common.txt>     (one or more)
/// expect <name> <value>                          (zero or more)
/// bad <n>                                        (optional, default 0)
/// ```
fn parse_divergent(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        if keyword == "entry" {
            let (section, selector) = rest
                .split_once(' ')
                .ok_or_else(|| at("entry needs a section and a selector".into()))?;
            entries.push(Entry {
                section: section.into(),
                selector: selector.into(),
                packets: Vec::new(),
                expect: Vec::new(),
                bad: 0,
            });
            continue;
        }
        let entry = entries
            .last_mut()
            .ok_or_else(|| at(format!("`{keyword}` before the first entry")))?;
        match keyword {
            "send" => entry.packets.push(unescape(rest).map_err(at)?),
            "expect" => {
                let (name, value) = normalise_line(&format!("{rest} 0"))
                    .ok_or_else(|| at("expected line has a timing-only name".into()))?;
                if !entry.matches(&name) {
                    return Err(at(format!(
                        "`{name}` is not matched by the entry's selector"
                    )));
                }
                entry.expect.push((name, value));
            }
            "bad" => entry.bad = rest.parse().map_err(|e| at(format!("bad count: {e}")))?,
            other => return Err(at(format!("unknown keyword `{other}`"))),
        }
    }
    for e in &mut entries {
        e.expect.sort();
        if e.packets.is_empty() {
            return Err(format!("entry {} sends nothing", e.selector));
        }
    }
    // Selectors must not overlap, or one entry's lines would count for another.
    for a in &entries {
        for b in &entries {
            if !std::ptr::eq(a, b)
                && !a.selector.starts_with('=')
                && b.selector.contains(&a.selector)
            {
                return Err(format!(
                    "selector {} is part of selector {}",
                    a.selector, b.selector
                ));
            }
        }
    }
    Ok(entries)
}

#[test]
fn corpus_files_parse() {
    let common = parse_corpus(COMMON).expect("common.txt");
    let entries = parse_divergent(DIVERGENT).expect("divergent.txt");
    let lines = |p: &Vec<u8>| p.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    let total: usize = common.iter().map(lines).sum::<usize>()
        + entries
            .iter()
            .flat_map(|e| &e.packets)
            .map(lines)
            .sum::<usize>();
    assert!(total >= 200, "the corpus has only {total} lines");
}

/// Every listed difference points at a real section of docs/compatibility.md.
#[test]
fn divergent_sections_are_documented() {
    let doc = include_str!("../../docs/compatibility.md");
    let entries = parse_divergent(DIVERGENT).expect("divergent.txt");
    assert!(!entries.is_empty());
    for e in &entries {
        let anchor = format!("<a id=\"{}\"></a>", e.section);
        assert!(
            doc.contains(&anchor),
            "divergent.txt section `{}` has no {anchor} in docs/compatibility.md",
            e.section
        );
    }
}

#[test]
fn unescape_cases() {
    for (input, want) in [
        ("a:1|c", &b"a:1|c"[..]),
        ("a\\nb\\r\\n", b"a\nb\r\n"),
        ("\\t\\\\", b"\t\\"),
        ("\\xff\\x41", b"\xffA"),
        ("x\\u{a0}y", "x\u{a0}y".as_bytes()),
        ("\\u{1F600}", "\u{1F600}".as_bytes()),
    ] {
        assert_eq!(unescape(input).as_deref(), Ok(want), "{input}");
    }
    for bad in ["\\q", "\\xZZ", "\\u{110000}", "\\u41"] {
        assert!(unescape(bad).is_err(), "{bad}");
    }
}

#[test]
fn normalise_cases() {
    for (line, want) in [
        ("stats.a 1 1700000000", Some(("stats.a", "1"))),
        ("stats.a;b=2;a=1 0.5 1", Some(("stats.a;a=1;b=2", "0.5"))),
        (
            "gp.cnt.a.rate.sfx;z;y 2 1",
            Some(("gp.cnt.a.rate.sfx;y;z", "2")),
        ),
        (
            "stats.x function Object() { [native code] }1 5",
            Some(("stats.x", "function Object() { [native code] }1")),
        ),
        ("stats.statsd.processing_time 3 1", None),
        ("gp.statsd.processing_time.sfx 3 1", None),
        ("stats.gauges.statsd.timestamp_lag 0 1", None),
        ("statsd.graphiteStats.last_flush 1 1", None),
    ] {
        let got = normalise_line(line);
        assert_eq!(
            got.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
            want,
            "{line}"
        );
    }
}

#[test]
fn diff_reports_every_mismatch() {
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let reference = pairs(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "1"), ("d", "2")]);
    assert_eq!(diff(&reference, &reference, "statsyard"), None);
    let other = pairs(&[("a", "1"), ("b", "5"), ("d", "3"), ("e", "4")]);
    let text = diff(&reference, &other, "statsyard").expect("a diff");
    assert!(text.starts_with("4 names differ"), "{text}");
    for needle in [
        "  b\n      reference: 2\n      statsyard: 5",
        "  c\n      reference: 3\n      statsyard: (absent)",
        "  d\n      reference: 1, 2\n      statsyard: 3",
        "  e\n      reference: (absent)\n      statsyard: 4",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert!(!text.contains("  a\n"), "{text}");
}

#[test]
fn divergent_format_errors() {
    for (text, want) in [
        ("send a:1|c\n", "before the first entry"),
        ("entry s\nsend a:1|c\n", "needs a section and a selector"),
        ("entry s dv.a\n", "sends nothing"),
        ("entry s dv.a\nsend a\nexpect stats.b 1\n", "not matched"),
        ("entry s dv.a\nsend a\nbad x\n", "bad count"),
        ("entry s dv.a\nsend a\nfoo\n", "unknown keyword"),
        (
            "entry s dv.a\nsend a\nentry s dv.ab\nsend b\n",
            "selector dv.a is part of selector dv.ab",
        ),
    ] {
        let err = parse_divergent(text).expect_err(text);
        assert!(err.contains(want), "{text:?}: {err}");
    }
    let ok = parse_divergent(
        "# c\nentry sec =stats.,stats_counts.\nsend :1|c\nexpect stats_counts. 1\nbad 2\n",
    )
    .expect("valid");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].bad, 2);
    assert!(ok[0].matches("stats.") && !ok[0].matches("stats.a"));
}

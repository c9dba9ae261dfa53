//! Hostile input over real sockets: the server never panics, memory stays
//! bounded, every case is counted in a named self-metric, and good lines sent
//! in the same packet or stream still arrive.
//!
//! The limits are small (`max_line_length` 1 KiB, `max_connections` 4,
//! `idle_timeout` 1 s, `max_tags` 16) so that the whole module runs in a
//! few seconds. Memory is read as the VmRSS of the test's process, which runs
//! the server in-process: each test that measures it runs in a process of
//! its own ([`in_own_process`]), so no other test's allocations count.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use statsyard::stats::{get, Stats};

use crate::support::{config, in_own_process, secs, send_udp, Graphite, Server};

/// The statsd side: UDP and TCP with small limits, HTTP and the admin
/// console, the relay's line and pickle listeners forwarding to `relayed`.
fn hostile(graphite: SocketAddr, relayed: SocketAddr) -> statsyard::config::Config {
    config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
max_line_length = 1024
max_connections = 4
idle_timeout = "1s"
max_tags = 16
[flush]
interval = "200ms"
shutdown_timeout = "5s"
[http]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = ["127.0.0.1:0"]
max_line_length = 1024
max_frame_bytes = 65536
max_connections = 3
idle_timeout = "1s"
stats_interval = "0s"
backoff_min = "20ms"
backoff_max = "100ms"
[[relay.cluster]]
name = "c"
method = "forward"
destinations = ["{relayed}"]
[[sink]]
type = "graphite"
address = "{graphite}"
backoff_min = "20ms"
backoff_max = "200ms"
"#
    ))
}

struct Rig {
    graphite: Graphite,
    relayed: Graphite,
    server: Server,
}

impl Rig {
    fn start() -> Rig {
        let graphite = Graphite::start();
        let relayed = Graphite::start();
        let server = Server::start(hostile(graphite.addr, relayed.addr));
        Rig {
            graphite,
            relayed,
            server,
        }
    }

    fn stats(&self) -> &Stats {
        &self.server.running().stats
    }

    /// Wait until `counter` reaches `want`; panics after 10 s.
    fn wait_for(&self, what: &str, counter: impl Fn(&Stats) -> u64, want: u64) {
        self.wait_until(what, |s| {
            let now = counter(s);
            (now >= want)
                .then_some(())
                .ok_or(format!("{now}, expected {want}"))
        });
    }

    /// Wait until `ready` holds (`Err` says what it saw); panics after 10 s.
    fn wait_until(&self, what: &str, ready: impl Fn(&Stats) -> Result<(), String>) {
        let deadline = Instant::now() + secs(10);
        loop {
            match ready(self.stats()) {
                Ok(()) => return,
                Err(seen) => assert!(Instant::now() < deadline, "{what}: {seen}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until no statsd stream connection is open.
    fn wait_no_connections(&self) {
        self.wait_until("connections_open", |s| match get(&s.connections_open) {
            0 => Ok(()),
            n => Err(format!("{n} open")),
        });
    }

    /// A statsd counter's total as the sink received it (`stats_counts.<name>`).
    fn wait_counter(&mut self, name: &str, want: f64) {
        let full = format!("stats_counts.{name}");
        self.graphite.until(secs(10), |ls| {
            ls.iter()
                .filter(|l| l.name == full)
                .map(|l| l.value.parse::<f64>().unwrap())
                .sum::<f64>()
                >= want
        });
        assert_eq!(self.graphite.sum(&full), want, "{name}");
    }
}

/// Resident memory of this process (which runs the server), in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn relaxed(c: &AtomicU64) -> u64 {
    get(c)
}

#[test]
fn statsd_datagrams_of_every_bad_kind_are_counted_and_good_lines_arrive() {
    if in_own_process(
        "hostile::statsd_datagrams_of_every_bad_kind_are_counted_and_good_lines_arrive",
    ) {
        return;
    }
    let mut rig = Rig::start();
    let to = rig.server.udp();
    let rss_before = vm_rss_kib();

    // Each datagram: bad lines, with one good line among them. The comment
    // says how many bad lines (bad_lines_seen) each holds.
    // Numbers as tags keep the line inside one datagram (about 49 KB).
    let many_tags: String = (0..10_000).map(|i| format!("{i},")).collect();
    let tags_line = format!("tags.flood:1|c|#{many_tags}\nh.tags:1|c");
    let cases: Vec<(Vec<u8>, u64)> = vec![
        // Invalid UTF-8: a name of nothing else is empty once sanitised; in
        // a name with valid characters the bad bytes are dropped.
        (
            b"\xff\xfe\xfd:1|c\nh.utf8:1|c\nh.ut\xc3\x28f:1|c".to_vec(),
            1,
        ),
        // No value, no type, no value after the type.
        (b"novalue\nh.shape:1|c\nnotype:1\nempty.type:1|".to_vec(), 3),
        // 1e400 overflows to infinity; NaN and Inf are not numbers to statsd.
        (
            b"big:1e400|c\nnan:NaN|g\ninf:Inf|ms\ninf2:Infinity|c\nh.num:1e300|g".to_vec(),
            4,
        ),
        // Sample rates: 0 and negative are refused; above 1 is accepted and
        // scales down, as in the reference (1 / 2 = 0.5).
        (
            b"sr0:1|c|@0\nsrneg:1|c|@-1\nh.rate:1|c|@2\nsrnan:1|c|@NaN".to_vec(),
            3,
        ),
        // 10,000 tags on one line.
        (tags_line.into_bytes(), 1),
        // Empty names: nothing before the colon, tags alone, a bare type.
        (b":1|c\n;a=b:1|c\n|#a:1\nh.empty:1|c".to_vec(), 3),
    ];
    let mut bad = 0;
    for (packet, n) in &cases {
        send_udp(to, &[packet]);
        bad += n;
    }
    // 64 KiB datagrams (the largest IPv4 UDP payload, 65,507 bytes): a good
    // line at each end and one 65 KB line with no value between them.
    let mut big = b"h.big:1|c\n".to_vec();
    big.resize(65_507 - b"\nh.big:1|c".len(), b'x');
    big.extend_from_slice(b"\nh.big:1|c");
    assert_eq!(big.len(), 65_507);
    // Paced, so that the kernel's receive buffer never overflows (its
    // drops would be counted elsewhere).
    for _ in 0..50 {
        send_udp(to, &[&big]);
        std::thread::sleep(Duration::from_millis(5));
    }
    bad += 50;

    rig.wait_for("bad_lines_seen", |s| relaxed(&s.bad_lines_seen), bad);
    rig.wait_for("too_many_tags", |s| relaxed(&s.too_many_tags), 1);
    for name in ["h.utf8", "h.utf", "h.shape", "h.tags", "h.empty"] {
        rig.wait_counter(name, 1.0);
    }
    rig.wait_counter("h.rate", 0.5);
    rig.wait_counter("h.big", 100.0);
    assert_eq!(
        rig.graphite.value_of("stats.gauges.h.num", secs(5)),
        "1e+300"
    );
    // Exactly the bad lines sent: nothing good was counted as bad.
    assert_eq!(get(&rig.stats().bad_lines_seen), bad);
    assert_eq!(get(&rig.stats().too_many_tags), 1);
    // The same counts reach Graphite as self-metrics.
    rig.wait_counter("statsd.bad_lines_seen", bad as f64);
    rig.wait_counter("statsd.statsyard.too_many_tags", 1.0);
    let rss_after = vm_rss_kib();
    // Bound: 64 MiB of growth (slack for the tests that run in parallel in
    // this process). The datagrams alone are 3.3 MB; the server keeps none
    // of them beyond its receive slots.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    rig.server.stop();
}

#[test]
fn endless_tcp_line_slowloris_and_too_many_connections() {
    if in_own_process("hostile::endless_tcp_line_slowloris_and_too_many_connections") {
        return;
    }
    let mut rig = Rig::start();
    let to = rig.server.tcp();
    let rss_before = vm_rss_kib();

    // A line with no newline that grows without end: 256 MiB of it, then a
    // newline and a good line on the same connection.
    let mut c = TcpStream::connect(to).unwrap();
    c.write_all(b"h.before:1|c\n").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..256 {
        c.write_all(&chunk).unwrap();
    }
    c.write_all(b"\nh.after:1|c\n").unwrap();
    rig.wait_counter("h.before", 1.0);
    rig.wait_counter("h.after", 1.0);
    // Counted once for the line, however long it grew.
    assert_eq!(get(&rig.stats().lines_too_long), 1);
    let rss_after = vm_rss_kib();
    // Bound: 128 MiB of growth, half of what was sent on the one line
    // (the server holds at most max_line_length of it; the slack is for
    // the tests that run in parallel in this process).
    assert!(
        rss_after < rss_before + 128 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB after a 256 MiB line"
    );
    drop(c);
    rig.wait_no_connections();

    // More connections than max_connections (4): the extra 3 are closed at once.
    let held: Vec<TcpStream> = (0..7).map(|_| TcpStream::connect(to).unwrap()).collect();
    rig.wait_for(
        "connections_rejected",
        |s| relaxed(&s.connections_rejected),
        3,
    );
    assert_eq!(get(&rig.stats().connections_rejected), 3);
    assert_eq!(get(&rig.stats().connections_open), 4);
    drop(held);
    rig.wait_no_connections();
    let idle_before = get(&rig.stats().connections_idle_closed);

    // Slowloris: four clients send half a line, then nothing. Each is
    // closed after idle_timeout (1 s), counted, and its partial line dropped.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(to).unwrap();
            s.write_all(b"h.slow:1").unwrap();
            s
        })
        .collect();
    for s in &mut slow {
        s.set_read_timeout(Some(secs(5))).unwrap();
        let mut buf = [0u8; 1];
        // The server closes: end of stream (or a reset), never a timeout.
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("slow client not closed: {other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    rig.wait_for(
        "connections_idle_closed",
        |s| relaxed(&s.connections_idle_closed),
        idle_before + 4,
    );
    // The connection slots are free again: a new client gets through.
    let mut c = TcpStream::connect(to).unwrap();
    c.write_all(b"h.late:1|c\n").unwrap();
    rig.wait_counter("h.late", 1.0);
    rig.graphite.drain_for(Duration::from_millis(300));
    assert_eq!(rig.graphite.sum("stats_counts.h.slow"), 0.0);
    rig.server.stop();
}

/// A pickle frame: 4-byte big-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn good_pickle(name: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let points = vec![(name, (now, 1.0f64))];
    frame(&serde_pickle::to_vec(&points, serde_pickle::SerOptions::new().proto_v2()).unwrap())
}

#[test]
fn garbage_on_http_admin_and_pickle_ports_and_hostile_pickles() {
    if in_own_process("hostile::garbage_on_http_admin_and_pickle_ports_and_hostile_pickles") {
        return;
    }
    let mut rig = Rig::start();
    let running = rig.server.running();
    let (http, admin, pickle, line) = (
        running.http.unwrap(),
        running.admin.unwrap(),
        running.pickle[0],
        running.carbon_tcp[0],
    );
    let relay = rig.stats().relay().expect("relay counters");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // HTTP: garbage gets an error status (or a close), and the server goes on.
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(secs(5))).unwrap();
    // The server may close before it has read everything: then a write fails.
    let _ = c
        .write_all(&garbage)
        .and_then(|()| c.write_all(b"\r\n\r\n"));
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer:?}"
    );
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(secs(5))).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Counted once, whether the parser answered 4xx or closed unanswered;
    // the good request is not. A garbage request line is answered 400.
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(secs(5))).unwrap();
    c.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let http_errors = || get(&rig.stats().http_client_errors);
    let deadline = Instant::now() + secs(5);
    while http_errors() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_errors(), 2);

    // Admin console: garbage lines are answered with ERROR, then a real
    // command still works on the same connection.
    let mut c = TcpStream::connect(admin).unwrap();
    c.set_read_timeout(Some(secs(5))).unwrap();
    let mut junk: Vec<u8> = garbage.iter().map(|&b| b | 0x80).take(200).collect();
    junk.push(b'\n');
    c.write_all(&junk).unwrap();
    c.write_all(b"\x00\x01\x02\nhealth\n").unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + secs(5);
    while !seen.contains("health: up") && Instant::now() < deadline {
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.starts_with("ERROR"), "{seen:?}");
    assert!(seen.contains("health: up"), "{seen:?}");
    assert_eq!(get(&rig.stats().admin_errors), 2);
    // On /metrics and /api/stats too.
    let fetch = |path: &str| {
        let mut c = TcpStream::connect(http).unwrap();
        c.set_read_timeout(Some(secs(5))).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    };
    let metrics = fetch("/metrics");
    assert!(
        metrics.contains("\nstatsyard_admin_errors_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nstatsyard_series_dropped_total 0\n"),
        "{metrics}"
    );
    let api = fetch("/api/stats");
    assert!(api.contains("\"admin_errors\":2"), "{api}");

    // Pickle: garbage whose first bytes read as a huge length is counted as
    // a bad frame, and the connection is closed.
    let mut c = TcpStream::connect(pickle).unwrap();
    c.set_read_timeout(Some(secs(5))).unwrap();
    c.write_all(b"\x7f\xff\xff\xff").unwrap();
    let _ = c.write_all(&garbage);
    let mut buf = [0u8; 16];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    rig.wait_for("badFrame", |_| get(&relay.invalid_frame), 1);
    // Garbage inside a frame of a sane length: counted, the connection goes on.
    let mut c = TcpStream::connect(pickle).unwrap();
    c.write_all(&frame(&garbage[..1000])).unwrap();
    c.write_all(&good_pickle("h.pickle.first")).unwrap();
    rig.relayed.value_of("h.pickle.first", secs(10));
    assert_eq!(get(&relay.invalid_frame), 2);
    drop(c);

    // Frames that ask for code: GLOBAL + REDUCE (os.system), STACK_GLOBAL,
    // INST and OBJ, each counted as a bad frame; a good frame after them on
    // the same connection is still relayed.
    let hostile: [&[u8]; 4] = [
        b"\x80\x02cos\nsystem\n(S'echo pwned'\ntR.",
        b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02hi\x85R.",
        b"(S'echo pwned'\nios\nsystem\n.",
        b"\x80\x02(cos\nsystem\nS'echo pwned'\no.",
    ];
    let mut c = TcpStream::connect(pickle).unwrap();
    for p in hostile {
        c.write_all(&frame(p)).unwrap();
    }
    c.write_all(&good_pickle("h.pickle.good")).unwrap();
    rig.relayed.value_of("h.pickle.good", secs(10));
    assert_eq!(get(&relay.invalid_frame), 6);
    drop(c);

    // A truncated frame: the length says 1000 bytes, 10 come, then the end.
    let mut c = TcpStream::connect(pickle).unwrap();
    let mut t = 1000u32.to_be_bytes().to_vec();
    t.extend_from_slice(b"\x80\x02]q\x00(X\x01");
    c.write_all(&t).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    rig.wait_for("badFrame", |_| get(&relay.invalid_frame), 7);
    drop(c);

    // Garbage on the carbon line port: invalid UTF-8, no timestamp, not
    // numbers; the good line among them is relayed.
    let mut c = TcpStream::connect(line).unwrap();
    c.write_all(b"\xff\xfe 1 2\nno.timestamp 1\nh.line.good 1 1700000000\nnan.value NaN 1700000000\nx y 1700000000\n")
        .unwrap();
    rig.relayed.value_of("h.line.good", secs(10));
    rig.wait_until("relay line checks", |_| {
        let got = [
            get(&relay.invalid_name),
            get(&relay.invalid_missing_timestamp),
            get(&relay.invalid_nan_inf),
            get(&relay.invalid_non_numeric),
        ];
        (got == [1, 1, 1, 1]).then_some(()).ok_or(format!(
            "illegalName, missingTimestamp, nanInf, nonNumeric: {got:?}"
        ))
    });
    drop(c);
    assert_eq!(get(&relay.invalid_frame), 7);
    rig.server.stop();
}

#[test]
fn relay_connections_are_limited_and_idle_ones_closed() {
    let rig = Rig::start();
    let running = rig.server.running();
    let (line, pickle) = (running.carbon_tcp[0], running.pickle[0]);
    let relay = rig.stats().relay().expect("relay counters");

    // max_connections = 3 for line and pickle together.
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(line).unwrap()).collect();
    held.extend((0..3).map(|_| TcpStream::connect(pickle).unwrap()));
    rig.wait_for(
        "connectionsRejected",
        |_| get(&relay.connections_rejected),
        2,
    );
    assert_eq!(get(&relay.connections_rejected), 2);
    assert_eq!(get(&relay.connections_open), 3);

    // The three admitted ones send nothing: closed after idle_timeout (1 s).
    rig.wait_for(
        "connectionsIdleClosed",
        |_| get(&relay.connections_idle_closed),
        3,
    );
    rig.wait_until("relay connections_open", |_| {
        match get(&relay.connections_open) {
            0 => Ok(()),
            n => Err(format!("{n} open")),
        }
    });
    for mut s in held {
        s.set_read_timeout(Some(secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    drop(rig);
}

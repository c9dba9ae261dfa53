//! The disk spool of graphite sinks and relay destinations: a destination
//! that is down gets every point once it is back, across a restart too.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use statsyard::stats::{SinkStats, Stats};

use crate::support::{config, send_udp, Graphite, Line, Server};

/// Wait until `cond` holds, at most `secs` seconds.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A server with one graphite sink (named `g`) to `127.0.0.1:port`, a
/// 200 ms flush, a tiny memory buffer and a spool in `dir`.
fn spooled_server(port: u16, dir: &Path) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "200ms"
shutdown_timeout = "3s"
delete_counters = true
[[sink]]
type = "graphite"
name = "g"
address = "127.0.0.1:{port}"
buffer_bytes = 1
backoff_min = "20ms"
backoff_max = "100ms"
spool_dir = "{}"
spool_bytes = 10485760
"#,
        dir.display()
    )))
}

fn sink(s: &Server) -> Arc<SinkStats> {
    s.running().stats.sink_named("g").expect("sink g")
}

/// Send counter `spool.c<k>` = k + 1 and wait until a flush took it, for
/// each k in `ks`: one counter per flush.
fn counters_over_flushes(s: &Server, ks: std::ops::Range<u32>) {
    let stats: &Arc<Stats> = &s.running().stats;
    for k in ks {
        let received = get(&stats.metrics_received);
        send_udp(s.udp(), &[format!("spool.c{k}:{}|c", k + 1).as_bytes()]);
        wait_for("the counter", 5, || get(&stats.metrics_received) > received);
        let flushes = get(&stats.flushes);
        wait_for("a flush", 5, || get(&stats.flushes) > flushes);
    }
}

/// Files in the sink's spool directory.
fn spool_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("g"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every `stats_counts.spool.c<k>` line, once each, in flush order, and no
/// `(name, value, timestamp)` line twice.
fn check_exactly_once(seen: &[Line], ks: std::ops::Range<u32>) {
    let mut count: HashMap<(&str, &str, u64), usize> = HashMap::new();
    for l in seen {
        *count.entry((&l.name, &l.value, l.ts)).or_default() += 1;
    }
    let mut last = None;
    for k in ks {
        let name = format!("stats_counts.spool.c{k}");
        let at: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, l)| l.name == name)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "{name} arrived {} times", at.len());
        let l = &seen[at[0]];
        assert_eq!(l.value, (k + 1).to_string(), "{name}");
        assert!(last < Some(at[0]), "{name} arrived out of flush order");
        last = Some(at[0]);
    }
    // Counters are deleted after each flush: every counter line is unique.
    for ((name, value, ts), n) in count {
        if name.starts_with("stats_counts.spool.") || name.starts_with("stats.spool.") {
            assert_eq!(n, 1, "{name} {value} {ts} arrived {n} times");
        }
    }
}

/// Flushes a graphite receiver saw: one `statsd.numStats` line each.
fn flushes_seen(seen: &[Line]) -> u64 {
    seen.iter().filter(|l| l.name == "statsd.numStats").count() as u64
}

#[test]
fn a_down_destination_gets_every_flush_once_when_back() {
    let port = crate::support::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let s = spooled_server(port, dir.path());
    let stats = sink(&s);
    counters_over_flushes(&s, 0..6);
    wait_for("spooling", 5, || get(&stats.spool.spooled_entries) >= 5);
    assert!(get(&stats.errors) > 0, "the destination was down");
    assert!(!spool_files(dir.path()).is_empty());

    let mut g = Graphite::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    g.until(Duration::from_secs(10), |seen| {
        seen.iter().any(|l| l.name == "stats_counts.spool.c5")
    });
    wait_for("the spool to drain", 10, || {
        get(&stats.spool.held_entries) == 0 && spool_files(dir.path()).is_empty()
    });
    assert_eq!(
        get(&stats.spool.replayed_entries),
        get(&stats.spool.spooled_entries)
    );
    assert_eq!(get(&stats.dropped), 0);
    assert_eq!(get(&stats.spool.dropped_entries), 0);
    assert_eq!(get(&stats.spool.corrupt_records), 0);
    let http = s.running().http.expect("http");
    let server_stats = Arc::clone(&s.running().stats);
    let (status, _, body) = crate::http::get(http, "/api/stats");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let spooled = &v["sinks"][0]["spool"]["spooled_entries"];
    assert!(spooled.as_u64().is_some_and(|n| n >= 5), "{body}");
    let (_, _, metrics) = crate::http::get(http, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("statsyard_sink_spool_replayed_entries_total{sink=\"g\"} ")),
        "{metrics}"
    );
    s.stop();
    g.drain_for(Duration::from_millis(300));
    check_exactly_once(&g.seen, 0..6);
    // Every flush of the server's life arrived once, none twice.
    assert_eq!(flushes_seen(&g.seen), get(&server_stats.flushes));
    assert!(spool_files(dir.path()).is_empty());
}

#[test]
fn the_spool_outlives_a_restart() {
    let port = crate::support::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let s = spooled_server(port, dir.path());
    counters_over_flushes(&s, 0..4);
    let first = Arc::clone(&s.running().stats);
    let first_sink = sink(&s);
    // The ordered shutdown: the final flush and the memory buffer go to
    // the spool, not to the drop counter.
    s.stop();
    assert_eq!(get(&first_sink.dropped), 0);
    assert!(!spool_files(dir.path()).is_empty());
    let flushed_before = get(&first.flushes);
    assert_eq!(
        get(&first_sink.spool.spooled_entries),
        flushed_before,
        "every flush was spooled"
    );

    let mut g = Graphite::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let s = spooled_server(port, dir.path());
    let stats = sink(&s);
    g.until(Duration::from_secs(10), |seen| {
        seen.iter().any(|l| l.name == "stats_counts.spool.c3")
    });
    wait_for("the spool to drain", 10, || {
        spool_files(dir.path()).is_empty()
    });
    assert_eq!(get(&stats.spool.replayed_entries), flushed_before);
    let second = Arc::clone(&s.running().stats);
    s.stop();
    g.drain_for(Duration::from_millis(300));
    check_exactly_once(&g.seen, 0..4);
    assert_eq!(flushes_seen(&g.seen), flushed_before + get(&second.flushes));
}

#[test]
fn a_torn_segment_tail_is_counted_and_skipped() {
    let port = crate::support::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let s = spooled_server(port, dir.path());
    counters_over_flushes(&s, 0..4);
    s.stop();
    // Walk the records (8-byte magic; each record a 12-byte header whose
    // first u32 is the payload length), then tear the last one in half.
    let mut segs = spool_files(dir.path());
    segs.retain(|f| f.ends_with(".seg"));
    segs.sort();
    let last = dir.path().join("g").join(segs.last().unwrap());
    let bytes = std::fs::read(&last).unwrap();
    let mut off = 8;
    let mut records = Vec::new();
    while off < bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        records.push(String::from_utf8_lossy(&bytes[off + 12..off + 12 + len]).into_owned());
        off += 12 + len;
    }
    assert_eq!(off, bytes.len());
    let torn = records.pop().expect("a record to tear");
    let torn_len = torn.len();
    std::fs::write(&last, &bytes[..bytes.len() - torn_len / 2]).unwrap();

    let mut g = Graphite::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let s = spooled_server(port, dir.path());
    let stats = sink(&s);
    wait_for("the torn record to be counted", 5, || {
        get(&stats.spool.corrupt_records) == 1
    });
    wait_for("the spool to drain", 10, || {
        spool_files(dir.path()).is_empty()
    });
    g.drain_for(Duration::from_millis(500));
    s.stop();
    // The good records arrived, each once; nothing of the torn one did.
    let text: String = g
        .seen
        .iter()
        .map(|l| format!("{} {} {}\n", l.name, l.value, l.ts))
        .collect();
    for r in &records {
        assert_eq!(
            text.matches(r.as_str()).count(),
            1,
            "record {r:?} in {text}"
        );
    }
    for line in torn
        .lines()
        .filter(|l| l.starts_with("stats_counts.spool."))
    {
        assert!(!text.contains(line), "{line} of the torn record arrived");
    }
}
/// A relay with one `forward` cluster `c` to `dest`, spooled in `dir`.
fn spooled_relay(dest: &str, dir: &Path, queue: usize) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[flush]
shutdown_timeout = "3s"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = []
queue = {queue}
backoff_min = "20ms"
backoff_max = "100ms"
on_full = "drop"
[[relay.cluster]]
name = "c"
method = "forward"
destinations = ["{dest}"]
spool_dir = "{}"
"#,
        dir.display()
    )))
}

/// Send `relay.spool.p<i> i 1700000000` for each i in `range` over carbon TCP.
fn send_points(s: &Server, range: std::ops::Range<u32>) {
    use std::io::Write;
    let carbon: SocketAddr = s.running().carbon_tcp[0];
    let mut c = std::net::TcpStream::connect(carbon).unwrap();
    let mut text = String::new();
    for i in range {
        text.push_str(&format!("relay.spool.p{i} {i} 1700000000\n"));
    }
    c.write_all(text.as_bytes()).unwrap();
}

fn points_seen(seen: &[Line]) -> Vec<u32> {
    let mut got: Vec<u32> = seen
        .iter()
        .filter_map(|l| l.name.strip_prefix("relay.spool.p"))
        .map(|k| k.parse().unwrap())
        .collect();
    got.sort_unstable();
    got
}

#[test]
fn a_relay_destination_down_at_shutdown_is_spooled_for_the_next_start() {
    let port = crate::support::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("127.0.0.1:{port}");
    let s = spooled_relay(&dest, dir.path(), 100_000);
    let relay = s.running().stats.relay().expect("relay stats");
    let d = Arc::clone(&relay.destinations[0]);
    wait_for("the destination to be down", 5, || get(&d.errors) > 0);
    send_points(&s, 0..300);
    wait_for("points queued", 5, || get(&d.queued) == 300);
    s.stop();
    assert_eq!(get(&d.dropped), 0, "the queue was spooled, not dropped");
    assert!(get(&d.spool.spooled_entries) > 0);

    let mut g = Graphite::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let s = spooled_relay(&dest, dir.path(), 100_000);
    g.until(Duration::from_secs(10), |seen| seen.len() >= 300);
    let relay = s.running().stats.relay().expect("relay stats");
    let d = Arc::clone(&relay.destinations[0]);
    wait_for("the spool to drain", 10, || {
        get(&d.spool.replayed_entries) > 0 && get(&d.spool.held_entries) == 0
    });
    g.drain_for(Duration::from_millis(300));
    s.stop();
    assert_eq!(points_seen(&g.seen), (0..300).collect::<Vec<_>>());
}

/// A relay destination that is down while points come in, with a queue far
/// too small for them: the overflow goes to its spool, and every point
/// arrives once the destination is back.
#[test]
fn a_relay_destination_spool_delivers_every_point() {
    let port = crate::support::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("127.0.0.1:{port}");
    let s = spooled_relay(&dest, dir.path(), 10);
    let relay = s.running().stats.relay().expect("relay stats");
    let d = Arc::clone(&relay.destinations[0]);
    wait_for("the destination to be down", 5, || get(&d.errors) > 0);
    let n = 500u32;
    send_points(&s, 0..n);
    wait_for("points received", 5, || {
        get(&relay.metrics_received) == u64::from(n)
    });
    wait_for("spooling", 5, || get(&d.spool.spooled_entries) > 0);
    assert_eq!(get(&d.dropped), 0, "nothing dropped for the full queue");

    let mut g = Graphite::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    g.until(Duration::from_secs(10), |seen| seen.len() >= n as usize);
    wait_for("the spool to drain", 10, || get(&d.spool.held_entries) == 0);
    g.drain_for(Duration::from_millis(300));
    s.stop();
    assert_eq!(
        points_seen(&g.seen),
        (0..n).collect::<Vec<_>>(),
        "every point once"
    );
    assert_eq!(
        get(&d.spool.replayed_entries),
        get(&d.spool.spooled_entries)
    );
    assert!(
        std::fs::read_dir(dir.path().join("c").join(format!("127.0.0.1_{port}")))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

/// A relay destination that is up but takes nothing (a receiver that never
/// reads): near the shutdown deadline, what its queue still holds goes to
/// the spool instead of to the drop counter.
#[test]
fn a_stalled_relay_destination_is_spooled_before_the_shutdown_deadline() {
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = stalled.local_addr().unwrap().to_string();
    // Accept and hold the connections, never reading.
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        stalled.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            match stalled.accept() {
                Ok((c, _)) => conns.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        conns.len()
    });
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[flush]
shutdown_timeout = "2s"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = []
queue = 1000000
queue_bytes = 1073741824
on_full = "drop"
[[relay.cluster]]
name = "c"
method = "forward"
destinations = ["{dest}"]
spool_dir = "{}"
"#,
        dir.path().display()
    )));
    let relay = s.running().stats.relay().expect("relay stats");
    let d = Arc::clone(&relay.destinations[0]);
    // Far more than the kernel's socket buffers hold.
    let n = 400_000u32;
    send_points(&s, 0..n);
    wait_for("points received", 30, || {
        get(&relay.metrics_received) == u64::from(n)
    });
    wait_for("the writer to stall", 10, || {
        let q = get(&d.queued);
        std::thread::sleep(Duration::from_millis(200));
        q > 0 && q == get(&d.queued)
    });
    let started = Instant::now();
    s.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(&d.dropped), 0, "spooled, not dropped");
    assert_eq!(get(&relay.metrics_dropped), 0);
    // What was not written out is in the spool, point for point.
    let mut spool = statsyard::spool::Spool::open(
        statsyard::spool::SpoolConfig {
            dir: dir.path().join("c").join(dest.replace(':', "_")),
            max_bytes: 1 << 30,
            segment_bytes: 8 << 20,
        },
        Arc::default(),
        Duration::from_secs(1),
    )
    .unwrap();
    let mut spooled = 0;
    let mut recs = Vec::new();
    while spool.has_unread() {
        recs.clear();
        spool.read(1 << 20, &mut recs);
        spooled += recs.iter().map(|r| r.lines).sum::<u64>();
    }
    assert!(spooled > 0);
    assert_eq!(get(&d.sent) + spooled, u64::from(n));
    drop(held);
}

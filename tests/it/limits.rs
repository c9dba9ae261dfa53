//! Series limits under a flood: 10 million distinct random keys over UDP
//! against `max_series = 100000`. Memory stays under a cap derived from the
//! limit, every refused line is counted, and a series that existed before
//! the flood still counts every value after it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use statsyard::stats::get;

use crate::support::{config, in_own_process, Server};

/// Distinct keys sent in the flood.
const KEYS: u64 = 10_000_000;
/// `[statsd] max_series`.
const MAX_SERIES: u64 = 100_000;
/// Lines per datagram (about 24 bytes each).
const LINES_PER_DATAGRAM: u64 = 1_000;
/// Datagrams sent but not yet read by the server, at most: the sender waits
/// for the server rather than overflow the kernel's receive buffer.
const IN_FLIGHT: u64 = 64;

/// A Graphite receiver that keeps only the sum of one series' values, so
/// that the 100,000 series of every flush cost this process no memory.
struct Summing {
    addr: SocketAddr,
    sum: Arc<Mutex<f64>>,
    lines: Arc<AtomicU64>,
}

impl Summing {
    fn start(name: &'static str) -> Summing {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sum = Arc::new(Mutex::new(0.0));
        let lines = Arc::new(AtomicU64::new(0));
        let (s, n) = (sum.clone(), lines.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (s, n) = (s.clone(), n.clone());
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { return };
                        n.fetch_add(1, Ordering::Relaxed);
                        let mut f = line.split(' ');
                        if f.next() == Some(name) {
                            let v: f64 = f.next().unwrap().parse().unwrap();
                            *s.lock().unwrap() += v;
                        }
                    }
                });
            }
        });
        Summing { addr, sum, lines }
    }

    fn sum(&self) -> f64 {
        *self.sum.lock().unwrap()
    }
}

/// Resident memory of this process (which runs the server), in KiB.
fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// splitmix64: a bijection on u64, so distinct inputs give distinct,
/// random-looking keys.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn ten_million_random_keys_stay_under_the_memory_cap() {
    if in_own_process("limits::ten_million_random_keys_stay_under_the_memory_cap") {
        return;
    }
    let started = Instant::now();
    let graphite = Summing::start("stats_counts.limits.existing");
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
max_series = {MAX_SERIES}
[flush]
interval = "10s"
shutdown_timeout = "10s"
[http]
enabled = false
[admin]
enabled = false
[[sink]]
type = "graphite"
address = "{}"
"#,
        graphite.addr
    )));
    let stats = server.running().stats.clone();
    let to = server.udp();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();

    // A series that exists before the flood.
    tx.send_to(b"limits.existing:1|c", to).unwrap();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait("the first line", &|| get(&stats.metrics_received) == 1);
    let rss_before = vm_rss_kib();

    let mut datagram = Vec::with_capacity(32 * LINES_PER_DATAGRAM as usize);
    let mut sent_datagrams = 1u64;
    let mut rss_peak = rss_before;
    let mut drops = 0;
    for i in 0..KEYS {
        // `r.<16 hex digits>:1|c\n`, written by hand: format! is slow in a
        // debug build, and the sender must outrun the server.
        datagram.extend_from_slice(b"r.");
        let k = mix(i);
        for shift in (0..16).rev() {
            datagram.push(b"0123456789abcdef"[((k >> (shift * 4)) & 0xf) as usize]);
        }
        datagram.extend_from_slice(b":1|c\n");
        if (i + 1) % LINES_PER_DATAGRAM == 0 || i + 1 == KEYS {
            datagram.pop();
            // The server has read all but IN_FLIGHT datagrams (a datagram
            // the kernel dropped is never read: count those as read too;
            // /proc is read only when the wait lasts).
            let mut spins = 0u64;
            while sent_datagrams - (get(&stats.packets_received) + drops) > IN_FLIGHT {
                spins += 1;
                if spins % 10_000 == 0 {
                    drops = kernel_drops(&stats);
                }
                std::thread::yield_now();
            }
            tx.send_to(&datagram, to).unwrap();
            sent_datagrams += 1;
            datagram.clear();
            if sent_datagrams % 1000 == 0 {
                rss_peak = rss_peak.max(vm_rss_kib());
            }
        }
    }
    // Every line is read, except those in datagrams the kernel dropped.
    wait("the flood to be read", &|| {
        get(&stats.metrics_received) - 1 + kernel_drops(&stats) * LINES_PER_DATAGRAM >= KEYS
    });
    let rss_after = vm_rss_kib();
    rss_peak = rss_peak.max(rss_after);
    let lost_lines = kernel_drops(&stats) * LINES_PER_DATAGRAM;
    let read_lines = get(&stats.metrics_received) - 1;
    assert_eq!(read_lines + lost_lines, KEYS);
    // The first MAX_SERIES - 1 keys (one slot is limits.existing's) became
    // series; every other line read was dropped and counted. Lines the
    // kernel dropped may have been either.
    let dropped = get(&stats.series_dropped);
    let admitted = read_lines - dropped;
    assert!(admitted < MAX_SERIES, "{admitted} series admitted");
    assert!(
        admitted + lost_lines >= MAX_SERIES - 1,
        "{admitted} admitted, {lost_lines} lost"
    );
    assert_eq!(get(&stats.bad_lines_seen), 0);

    // The cap: what was there before, 1 KiB per series the limit allows,
    // and 64 MiB for buffers (receive slots, the Graphite sink's output,
    // the admission set's growth). Without the limit, 10 million series
    // would take about 2 GB.
    let cap = rss_before + MAX_SERIES + 64 * 1024;
    assert!(
        rss_peak < cap,
        "VmRSS peaked at {rss_peak} KiB (before {rss_before} KiB, cap {cap} KiB)"
    );

    // The series that existed before the flood counts every value after it.
    for _ in 0..10 {
        tx.send_to(b"limits.existing:1|c", to).unwrap();
    }
    wait("the last lines", &|| {
        get(&stats.metrics_received) == 1 + read_lines + 10
    });
    assert_eq!(get(&stats.series_dropped), dropped);
    // The final flush at shutdown sends what the last interval holds.
    server.stop();
    wait("limits.existing to reach 11", &|| graphite.sum() >= 11.0);
    assert_eq!(graphite.sum(), 11.0);
    eprintln!(
        "{KEYS} keys in {:?}: {dropped} dropped, {} lost in the kernel, VmRSS {rss_before} KiB \
         before, {rss_peak} KiB peak (cap {cap} KiB), {} Graphite lines",
        started.elapsed(),
        lost_lines,
        graphite.lines.load(Ordering::Relaxed)
    );
}

/// Datagrams the kernel dropped on the server's UDP sockets, as of now.
fn kernel_drops(stats: &statsyard::stats::Stats) -> u64 {
    stats.refresh_kernel_drops();
    stats
        .udp_sockets()
        .iter()
        .map(|s| get(&s.kernel_drops))
        .sum()
}

#[test]
fn a_full_prefix_drops_only_its_own_new_series() {
    let graphite = Summing::start("stats_counts.app.k0");
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
max_series = 0
series_limits = [{{ prefix = "app.", max = 10 }}, {{ prefix = "app.big.", max = 100 }}]
[flush]
interval = "200ms"
[http]
enabled = false
[admin]
enabled = false
[[sink]]
type = "graphite"
address = "{}"
"#,
        graphite.addr
    )));
    let stats = server.running().stats.clone();
    let mut lines: Vec<String> = (0..20).map(|i| format!("app.k{i}:1|c")).collect();
    lines.extend((0..50).map(|i| format!("app.big.k{i}:1|c")));
    lines.extend((0..50).map(|i| format!("other.k{i}:1|c")));
    lines.push("app.k0:1|c".into());
    crate::support::send_udp(server.udp(), &[lines.join("\n").as_bytes()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&stats.metrics_received) < lines.len() as u64 {
        assert!(Instant::now() < deadline, "lines not read");
        std::thread::sleep(Duration::from_millis(10));
    }
    // app.k10 to app.k19 are refused; app.big.* has its own limit, other.*
    // none; app.k0 exists and takes its second value.
    assert_eq!(get(&stats.series_dropped), 10);
    assert_eq!(
        stats.series_dropped_by_prefix(),
        vec![("app.".to_string(), 10)]
    );
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while graphite.sum() < 2.0 {
        assert!(Instant::now() < deadline, "app.k0 not flushed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(graphite.sum(), 2.0);
}

/// A reload that raises `max_series` lets new series in at once, on the
/// receive threads that ran before it (the real binary, `POST /-/reload`).
#[test]
fn a_reload_changes_the_limit_live() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let udp_port = crate::support::free_port(true).expect("free UDP port");
    let http_port = crate::support::free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let text = |max: u32| {
        format!(
            r#"
[statsd]
udp = ["{udp}"]
tcp = []
max_series = {max}
[flush]
interval = "200ms"
[http]
address = "{http}"
[admin]
enabled = false
"#
        )
    };
    std::fs::write(&file, text(5)).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(
        crate::support::bin()
            .args(["--config", &file.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = |key: &str| -> u64 {
        let (status, _, body) = crate::http::get(http, "/api/stats");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v[key].as_u64().unwrap()
    };
    let wait_stat = |key: &str, want: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = stat(key);
            if v == want {
                return;
            }
            assert!(Instant::now() < deadline, "{key} is {v}, wanted {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let send = |from: u32, to: u32| {
        let lines: Vec<String> = (from..to).map(|i| format!("k{i}:1|c")).collect();
        crate::support::send_udp(udp, &[lines.join("\n").as_bytes()]);
    };

    send(0, 10);
    wait_stat("metrics_received", 10);
    assert_eq!(stat("series_dropped"), 5);

    std::fs::write(&file, text(12)).unwrap();
    let (status, _, body) = crate::http::raw_request(
        http,
        b"POST /-/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    // Five series held, room for seven more: k10 to k16 get in, k17 to k19
    // do not, and the five dropped before the reload never became series.
    send(10, 20);
    wait_stat("metrics_received", 20);
    assert_eq!(stat("series_dropped"), 5 + 3);
    send(0, 5);
    wait_stat("metrics_received", 25);
    assert_eq!(stat("series_dropped"), 8);
    // As of the next flush (200 ms).
    wait_stat("series_live", 12);
}

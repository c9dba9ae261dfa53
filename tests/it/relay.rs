//! The carbon relay end to end: line and pickle in, plaintext and pickle
//! out, rules, placement, outages, validation counters, `relay --test`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use statsyard::relay::hashing::{Destination, Method, Ring};
use statsyard::stats::relay::RelayStats;

use crate::support::{bin, config, free_tcp_port, relay_section, send_udp, Server};

/// A carbon receiver for tests that can be stopped (listener and every
/// connection closed) and started again on the same port. It understands
/// plaintext lines or pickle frames.
struct Capture {
    addr: SocketAddr,
    pickle: bool,
    points: Arc<Mutex<Vec<(String, f64, i64)>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    /// On a port below the ephemeral range: [`Capture::restart`] binds it
    /// again, and no outgoing connection of a parallel test can take it in
    /// between.
    fn start(pickle: bool) -> Capture {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        Capture::on(addr, pickle, Arc::default())
    }

    fn on(addr: SocketAddr, pickle: bool, points: Arc<Mutex<Vec<(String, f64, i64)>>>) -> Capture {
        let listener = TcpListener::bind(addr).expect("bind capture");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, c, p) = (stop.clone(), conns.clone(), points.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        c.lock().unwrap().push(conn.try_clone().unwrap());
                        let p = p.clone();
                        std::thread::spawn(move || read_conn(conn, pickle, p));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Capture {
            addr,
            pickle,
            points,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Close the listener and every connection.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            a.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listen again on the same port, keeping what was received.
    fn restart(&mut self) {
        *self = Capture::on(self.addr, self.pickle, self.points.clone());
    }

    fn names(&self) -> Vec<String> {
        self.points
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.0.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.points.lock().unwrap().len()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_conn(mut conn: TcpStream, pickle: bool, points: Arc<Mutex<Vec<(String, f64, i64)>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if pickle {
            while buf.len() >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let frame: Vec<(String, (i64, f64))> =
                    serde_pickle::from_slice(&buf[4..4 + len], serde_pickle::DeOptions::new())
                        .expect("a pickle frame");
                buf.drain(..4 + len);
                let mut p = points.lock().unwrap();
                p.extend(frame.into_iter().map(|(n, (t, v))| (n, v, t)));
            }
        } else {
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8(buf[..i].to_vec()).unwrap();
                buf.drain(..=i);
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 3, "{line:?}");
                points.lock().unwrap().push((
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                ));
            }
        }
    }
}

/// Wait until `done` holds, or panic with `what` after `timeout`.
fn wait(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn relay_stats(s: &Server) -> Arc<RelayStats> {
    s.running().stats.relay().expect("a relay runs")
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A config with only a relay listening on port 0.
fn relay_config(body: &str) -> statsyard::config::Config {
    config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[flush]
shutdown_timeout = "5s"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = ["127.0.0.1:0"]
pickle = ["127.0.0.1:0"]
backoff_min = "20ms"
backoff_max = "100ms"
{quiet}
{body}
"#,
        quiet = if body.contains("stats_interval") {
            ""
        } else {
            "stats_interval = \"0s\""
        }
    ))
}

fn send_tcp(to: SocketAddr, data: &[u8]) {
    let mut s = TcpStream::connect(to).unwrap();
    s.write_all(data).unwrap();
}

fn pickle_frame(points: &[(&str, (i64, f64))], proto: u8) -> Vec<u8> {
    let opts = match proto {
        2 => serde_pickle::SerOptions::new().proto_v2(),
        _ => serde_pickle::SerOptions::new(),
    };
    let payload = serde_pickle::to_vec(&points, opts).unwrap();
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend(payload);
    f
}

#[test]
fn line_and_pickle_in_plain_and_pickle_out() {
    let plain = Capture::start(false);
    let pickled = Capture::start(true);
    let s = Server::start(relay_config(&format!(
        r#"
stats_interval = "200ms"
stats_prefix = "relay.self"
[[relay.cluster]]
name = "plain"
method = "forward"
destinations = ["{}"]
[[relay.cluster]]
name = "pickled"
method = "forward"
protocol = "pickle"
destinations = ["{}"]
"#,
        plain.addr, pickled.addr
    )));
    let r = s.running();
    send_tcp(r.carbon_tcp[0], b"tcp.a 1 100\ntcp.b 2.5 101\n");
    send_udp(r.carbon_udp[0], &[b"udp.a 3 102\nudp.b -4 103"]);
    let mut frames = pickle_frame(&[("pk.a", (104, 5.0)), ("pk.b", (105, 6.5))], 2);
    frames.extend(pickle_frame(&[("pk.c", (106, 7.0))], 3));
    send_tcp(r.pickle[0], &frames);
    let want = [
        ("tcp.a", 1.0, 100),
        ("tcp.b", 2.5, 101),
        ("udp.a", 3.0, 102),
        ("udp.b", -4.0, 103),
        ("pk.a", 5.0, 104),
        ("pk.b", 6.5, 105),
        ("pk.c", 7.0, 106),
    ];
    for c in [&plain, &pickled] {
        wait(
            Duration::from_secs(10),
            "every point, both protocols",
            || {
                let got = c.points.lock().unwrap();
                want.iter()
                    .all(|w| got.iter().any(|g| g.0 == w.0 && g.1 == w.1 && g.2 == w.2))
                    && got.iter().any(|g| g.0 == "relay.self.metricsReceived")
            },
        );
    }
    let st = relay_stats(&s);
    assert_eq!(get(&st.frames_received), 2);
    s.stop();
}

#[test]
fn rules_rewrites_blackhole_and_continue() {
    let a = Capture::start(false);
    let b = Capture::start(false);
    let s = Server::start(relay_config(&format!(
        r#"
[[relay.cluster]]
name = "a"
method = "forward"
destinations = ["{}"]
[[relay.cluster]]
name = "b"
method = "forward"
destinations = ["{}"]
[[relay.rule]]
match = '^old\.(\w+)\.(.*)$'
rewrite = 'new.$2.$1'
[[relay.rule]]
match = '^junk\.'
send_to = ["blackhole"]
[[relay.rule]]
match = '^both\.'
send_to = ["a"]
continue = true
[[relay.rule]]
match = '^(both|b)\.'
send_to = ["b"]
[[relay.rule]]
match = '^new\.'
send_to = ["a"]
stop = true
[[relay.rule]]
match = '.'
send_to = ["b"]
"#,
        a.addr, b.addr
    )));
    send_tcp(
        s.running().carbon_tcp[0],
        b"old.x.y 1 1\njunk.z 1 1\nboth.q 1 1\nb.q 1 1\nnew.n 1 1\nother 1 1\nlast.a 1 1\n",
    );
    wait(Duration::from_secs(10), "routed points", || {
        a.names().contains(&"new.y.x".to_string()) && b.names().contains(&"last.a".to_string())
    });
    let mut an = a.names();
    let mut bn = b.names();
    an.sort();
    bn.sort();
    assert_eq!(an, ["both.q", "new.n", "new.y.x"]);
    assert_eq!(bn, ["b.q", "both.q", "last.a", "other"]);
    assert_eq!(get(&relay_stats(&s).metrics_blackholed), 1);
    s.stop();
}

#[test]
fn carbon_ch_replication_2_over_3_goes_where_the_ring_says() {
    let caps: Vec<Capture> = (0..3).map(|_| Capture::start(false)).collect();
    let dests: Vec<String> = caps
        .iter()
        .zip(["a", "b", "c"])
        .map(|(c, i)| format!("{}:{i}", c.addr))
        .collect();
    let s = Server::start(relay_config(&format!(
        r#"
[[relay.cluster]]
name = "ring"
method = "carbon_ch"
replication = 2
diverse_replicas = false
destinations = {dests:?}
"#
    )));
    let names: Vec<String> = (0..300)
        .map(|i| format!("app.server{i}.cpu.load"))
        .collect();
    let mut data = String::new();
    for n in &names {
        data.push_str(&format!("{n} 1 1000\n"));
    }
    send_tcp(s.running().carbon_tcp[0], data.as_bytes());
    wait(Duration::from_secs(10), "600 placements", || {
        caps.iter().map(Capture::len).sum::<usize>() >= 600
    });
    let parsed: Vec<Destination> = dests
        .iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect();
    let ring = Ring::new(Method::CarbonCh, &parsed, 2, false).unwrap();
    let mut want: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut out = Vec::new();
    for n in &names {
        ring.place(n.as_bytes(), &mut out);
        assert_eq!(out.len(), 2);
        for &i in &out {
            want[i].push(n.clone());
        }
    }
    for (i, c) in caps.iter().enumerate() {
        let mut got = c.names();
        got.sort();
        want[i].sort();
        assert_eq!(got, want[i], "destination {i}");
    }
    s.stop();
}

#[test]
fn outage_any_of_delivers_every_point() {
    let mut a = Capture::start(false);
    let b = Capture::start(false);
    let s = Server::start(relay_config(&format!(
        r#"
[[relay.cluster]]
name = "any"
method = "any_of"
destinations = ["{}", "{}"]
"#,
        a.addr, b.addr
    )));
    let to = s.running().carbon_tcp[0];
    let batch = |from: usize| -> String {
        (from..from + 200)
            .map(|i| format!("m.{i} {i} 1000\n"))
            .collect()
    };
    let total = |a: &Capture, b: &Capture| a.len() + b.len();
    send_tcp(to, batch(0).as_bytes());
    wait(Duration::from_secs(10), "first batch", || {
        total(&a, &b) >= 200
    });
    assert!(a.len() > 0 && b.len() > 0, "any_of spreads names");
    a.stop();
    let st = relay_stats(&s);
    wait(Duration::from_secs(10), "a marked down", || {
        get(&st.destinations[0].up) == 0
    });
    send_tcp(to, batch(200).as_bytes());
    wait(Duration::from_secs(10), "second batch via b", || {
        total(&a, &b) >= 400
    });
    a.restart();
    wait(Duration::from_secs(10), "a back up", || {
        get(&st.destinations[0].up) == 1
    });
    send_tcp(to, batch(400).as_bytes());
    wait(Duration::from_secs(10), "third batch", || {
        total(&a, &b) >= 600
    });
    let mut all: Vec<String> = a.names();
    all.extend(b.names());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 600, "every point delivered");
    s.stop();
}

#[test]
fn outage_carbon_ch_holds_points_within_the_bound() {
    let mut a = Capture::start(false);
    let b = Capture::start(false);
    let dests = [format!("{}:a", a.addr), format!("{}:b", b.addr)];
    let s = Server::start(relay_config(&format!(
        r#"
queue = 50
[[relay.cluster]]
name = "ring"
method = "carbon_ch"
diverse_replicas = false
destinations = {dests:?}
"#
    )));
    let parsed: Vec<Destination> = dests
        .iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect();
    let ring = Ring::new(Method::CarbonCh, &parsed, 1, false).unwrap();
    let names: Vec<String> = (0..400).map(|i| format!("h.{i}.x")).collect();
    let mut out = Vec::new();
    let mut for_a = Vec::new();
    for n in &names {
        ring.place(n.as_bytes(), &mut out);
        if out[0] == 0 {
            for_a.push(n.clone());
        }
    }
    assert!(for_a.len() > 60, "enough names for a: {}", for_a.len());

    // Held within the bound: 30 names for a while it is down.
    let st = relay_stats(&s);
    let to = s.running().carbon_tcp[0];
    send_tcp(to, b"warm.up 1 1\n");
    wait(Duration::from_secs(10), "connected", || {
        a.len() + b.len() == 1
    });
    a.stop();
    wait(Duration::from_secs(10), "a marked down", || {
        get(&st.destinations[0].up) == 0
    });
    let mut data = String::new();
    for n in &for_a[..30] {
        data.push_str(&format!("{n} 1 1000\n"));
    }
    send_tcp(to, data.as_bytes());
    wait(Duration::from_secs(10), "30 queued", || {
        get(&st.destinations[0].queued) == 30
    });
    // Past the bound: the rest is dropped and counted.
    let mut data = String::new();
    for n in &for_a[30..] {
        data.push_str(&format!("{n} 1 1000\n"));
    }
    send_tcp(to, data.as_bytes());
    let over = for_a.len() - 50;
    wait(Duration::from_secs(10), "drops counted", || {
        get(&st.destinations[0].dropped) == over as u64
    });
    let before = a.len();
    a.restart();
    wait(Duration::from_secs(10), "queue delivered", || {
        a.len() == before + 50
    });
    let got: Vec<String> = a.names()[before..].to_vec();
    assert_eq!(got, for_a[..50].to_vec(), "the first 50, in order, on a");
    assert_eq!(get(&st.metrics_dropped), over as u64);
    s.stop();
}

#[test]
fn validation_cases_are_counted() {
    let a = Capture::start(false);
    let s = Server::start(relay_config(&format!(
        r#"
max_line_length = 100
allow_inf = false
name_check = "strict"
[[relay.cluster]]
name = "a"
method = "forward"
destinations = ["{}"]
"#,
        a.addr
    )));
    let long = format!("{} 1 1\n", "x".repeat(200));
    let mut data = String::from(
        "ok.1 1 1\nno.ts 1\nnan.v nan 1\ninf.v inf 1\nbad.v abc 1\nbad.ts 1 abc\n\
         too many fields 1 2\n  ok.2\t2   2  \nbad\u{1}name 1 1\nnow.v 1 -1\n",
    );
    data.push_str(&long);
    data.push_str("ok.3 3 3\n");
    send_tcp(s.running().carbon_tcp[0], data.as_bytes());
    // A frame over the limit closes its connection and is counted.
    send_tcp(s.running().pickle[0], &(1u32 << 24).to_be_bytes());
    wait(Duration::from_secs(10), "valid points", || a.len() >= 4);
    let st = relay_stats(&s);
    wait(Duration::from_secs(5), "bad frame", || {
        get(&st.invalid_frame) == 1
    });
    let mut n = a.names();
    n.sort();
    assert_eq!(n, ["now.v", "ok.1", "ok.2", "ok.3"]);
    let now = a
        .points
        .lock()
        .unwrap()
        .iter()
        .find(|p| p.0 == "now.v")
        .unwrap()
        .2;
    assert!(now > 1_600_000_000, "-1 is now: {now}");
    let counts: HashMap<&str, u64> = [
        ("missing", get(&st.invalid_missing_timestamp)),
        ("naninf", get(&st.invalid_nan_inf)),
        ("nonnum", get(&st.invalid_non_numeric)),
        ("ts", get(&st.invalid_timestamp)),
        ("fields", get(&st.invalid_fields)),
        ("name", get(&st.invalid_name)),
        ("long", get(&st.invalid_too_long)),
        ("now", get(&st.timestamp_now)),
    ]
    .into();
    let want: HashMap<&str, u64> = [
        ("missing", 1),
        ("naninf", 2),
        ("nonnum", 1),
        ("ts", 1),
        ("fields", 1),
        ("name", 1),
        ("long", 1),
        ("now", 1),
    ]
    .into();
    assert_eq!(counts, want);
    s.stop();
}

#[test]
fn test_mode_prints_where_names_go() {
    let dests = ["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"];
    let mut child = bin()
        .args(["relay", "--method", "carbon_ch", "--replication", "2"])
        .args(dests)
        .arg("--test")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let names = ["a.b.c", "foo.bar;dc=x", "x.y.z"];
    child
        .stdin
        .take()
        .unwrap()
        .write_all(names.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: Vec<Destination> = dests
        .iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect();
    let ring = Ring::new(Method::CarbonCh, &parsed, 2, true).unwrap();
    let mut want = String::new();
    let mut o = Vec::new();
    for n in names {
        ring.place(n.as_bytes(), &mut o);
        let t: Vec<String> = o.iter().map(|&i| format!("default:{}", dests[i])).collect();
        want.push_str(&format!("{n} -> {}\n", t.join(" ")));
    }
    assert_eq!(text, want);
}

#[test]
fn relay_example_config_is_valid() {
    let f = format!("{}/deploy/examples/relay.toml", env!("CARGO_MANIFEST_DIR"));
    let out = bin().args(["check-config", &f]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn statsd_flush_goes_through_the_relay_sink() {
    let a = Capture::start(false);
    let s = Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "200ms"
[[sink]]
type = "relay"
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = []
stats_interval = "0s"
[[relay.cluster]]
name = "a"
method = "carbon_ch"
destinations = ["{}"]
"#,
        a.addr
    )));
    send_udp(s.udp(), &[b"foo:3|c"]);
    wait(Duration::from_secs(10), "the flushed counter", || {
        a.points
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.0 == "stats_counts.foo" && p.1 == 3.0)
    });
    s.stop();
}

#[test]
fn shutdown_delivers_what_the_queues_hold() {
    let a = Capture::start(true);
    let s = Server::start(relay_config(&format!(
        r#"
[[relay.cluster]]
name = "a"
method = "forward"
protocol = "pickle"
destinations = ["{}"]
"#,
        a.addr
    )));
    let data: String = (0..20_000).map(|i| format!("q.{i} {i} 1000\n")).collect();
    send_tcp(s.running().carbon_tcp[0], data.as_bytes());
    s.stop();
    wait(
        Duration::from_secs(10),
        "every point after shutdown",
        || a.len() == 20_000,
    );
}

#[test]
fn a_slow_destination_blocks_nobody() {
    // Accepts, then never reads: its writer stalls once the socket buffers
    // (a few MiB on loopback) are full, and its queue then overflows.
    let slow = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let (conn, _) = slow.accept().unwrap();
        std::thread::sleep(Duration::from_secs(20));
        drop(conn);
    });
    let fast = Capture::start(false);
    // With flow control on (the default) the stalled one is waited for at
    // most block_timeout once, then dropped past its bound.
    let s = Server::start(relay_config(&format!(
        r#"
queue = 5000
on_full = "block"
block_timeout = "500ms"
[[relay.cluster]]
name = "both"
method = "forward"
destinations = ["{slow_addr}", "{}"]
"#,
        fast.addr
    )));
    // 200-byte lines, so the socket buffers hold few of them; sent in
    // chunks the fast destination keeps up with, so only the slow one lags.
    let pad = "x".repeat(180);
    let (chunks, per) = (40, 2000);
    let mut conn = TcpStream::connect(s.running().carbon_tcp[0]).unwrap();
    for c in 0..chunks {
        let data: String = (c * per..(c + 1) * per)
            .map(|i| format!("s.{pad}.{i} 1 1000\n"))
            .collect();
        conn.write_all(data.as_bytes()).unwrap();
        wait(Duration::from_secs(20), "the fast one keeps up", || {
            fast.len() == (c + 1) * per
        });
    }
    let st = relay_stats(&s);
    assert!(
        get(&st.destinations[0].dropped) > 0,
        "the slow one's queue overflowed, counted"
    );
    assert_eq!(get(&st.destinations[1].dropped), 0);
    drop(s);
    drop(held);
}

/// A plaintext receiver that reads slowly (a pause after every 16 KiB read)
/// and only counts lines.
fn slow_counter(pause: Duration) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            let lines = chunk[..k].iter().filter(|&&b| b == b'\n').count();
                            count.fetch_add(lines, Ordering::SeqCst);
                            std::thread::sleep(pause);
                        }
                    }
                }
            });
        }
    });
    (addr, n)
}

#[test]
fn a_burst_over_one_connection_arrives_complete_with_flow_control() {
    // The destination drains ~16 MiB/s at most; the queue holds 2000 points:
    // without flow control most of the burst would be dropped.
    let (dest, got) = slow_counter(Duration::from_millis(1));
    let s = Server::start(relay_config(&format!(
        r#"
queue = 2000
on_full = "block"
[[relay.cluster]]
name = "one"
method = "carbon_ch"
destinations = ["{dest}"]
"#
    )));
    let total = 300_000;
    let data: String = (0..total).map(|i| format!("b.{i} {i} 1000\n")).collect();
    let to = s.running().carbon_tcp[0];
    let started = Instant::now();
    let sender = std::thread::spawn(move || send_tcp(to, data.as_bytes()));
    wait(Duration::from_secs(20), "the whole burst delivered", || {
        got.load(Ordering::SeqCst) == total
    });
    sender.join().unwrap();
    let st = relay_stats(&s);
    assert_eq!(get(&st.metrics_dropped), 0, "nothing dropped");
    assert_eq!(get(&st.metrics_sent), total as u64);
    eprintln!("burst of {total} delivered in {:?}", started.elapsed());
    s.stop();
}

#[test]
fn a_burst_with_on_full_drop_drops_and_counts() {
    let (dest, got) = slow_counter(Duration::from_millis(5));
    let s = Server::start(relay_config(&format!(
        r#"
queue = 500
on_full = "drop"
[[relay.cluster]]
name = "one"
method = "forward"
destinations = ["{dest}"]
"#
    )));
    // 200-byte lines, far more than the socket buffers hold.
    let pad = "x".repeat(180);
    let total = 50_000;
    let data: String = (0..total)
        .map(|i| format!("d.{pad}.{i} {i} 1000\n"))
        .collect();
    send_tcp(s.running().carbon_tcp[0], data.as_bytes());
    let st = relay_stats(&s);
    wait(
        Duration::from_secs(20),
        "every point sent or dropped",
        || {
            get(&st.metrics_received) == total as u64
                && get(&st.metrics_sent) + get(&st.metrics_dropped) == total as u64
        },
    );
    assert!(get(&st.metrics_dropped) > 0, "the old behaviour: drops");
    wait(Duration::from_secs(20), "what was sent arrived", || {
        got.load(Ordering::SeqCst) as u64 == get(&st.metrics_sent)
    });
    s.stop();
}

#[test]
fn a_down_hashed_destination_never_blocks_a_stream() {
    let mut a = Capture::start(false);
    let b = Capture::start(false);
    let dests = [format!("{}:a", a.addr), format!("{}:b", b.addr)];
    let s = Server::start(relay_config(&format!(
        r#"
queue = 50
on_full = "block"
block_timeout = "1s"
[[relay.cluster]]
name = "ring"
method = "carbon_ch"
diverse_replicas = false
destinations = {dests:?}
"#
    )));
    let parsed: Vec<Destination> = dests
        .iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect();
    let ring = Ring::new(Method::CarbonCh, &parsed, 1, false).unwrap();
    let st = relay_stats(&s);
    let mut conn = TcpStream::connect(s.running().carbon_tcp[0]).unwrap();
    conn.write_all(b"warm.up 1 1\n").unwrap();
    wait(Duration::from_secs(10), "connected", || {
        a.len() + b.len() == 1
    });
    a.stop();
    wait(Duration::from_secs(10), "a marked down", || {
        get(&st.destinations[0].up) == 0
    });
    // One client keeps sending, far more than a's queue holds: b gets all of
    // its share, chunk after chunk, while a's overflow is dropped.
    let mut out = Vec::new();
    let (mut for_a, mut for_b) = (0, b.len());
    let started = Instant::now();
    for c in 0..20 {
        let mut data = String::new();
        for i in 0..500 {
            let n = format!("k.{c}.{i}");
            ring.place(n.as_bytes(), &mut out);
            if out[0] == 0 {
                for_a += 1;
            } else {
                for_b += 1;
            }
            data.push_str(&format!("{n} 1 1000\n"));
        }
        conn.write_all(data.as_bytes()).unwrap();
        wait(Duration::from_secs(10), "b keeps receiving", || {
            b.len() == for_b
        });
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "never waited for the down destination: {:?}",
        started.elapsed()
    );
    assert_eq!(get(&st.destinations[1].dropped), 0);
    assert_eq!(
        get(&st.destinations[0].dropped),
        (for_a - 50) as u64,
        "a held 50, the rest dropped and counted"
    );
    s.stop();
}

#[test]
fn shutdown_never_hangs_on_a_blocked_connection() {
    // A live destination far slower than the client: the connection waits
    // for room when shutdown starts, and must not hold it up.
    let (dest, got) = slow_counter(Duration::from_millis(200));
    let s = Server::start(relay_config(&format!(
        r#"
queue = 1000
on_full = "block"
block_timeout = "30s"
[[relay.cluster]]
name = "one"
method = "forward"
destinations = ["{dest}"]
"#
    )));
    // 200-byte lines: the socket buffers (a few MiB) hold few of them.
    let pad = "x".repeat(180);
    let data: String = (0..100_000)
        .map(|i| format!("w.{pad}.{i} {i} 1000\n"))
        .collect();
    let to = s.running().carbon_tcp[0];
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(to).unwrap();
        let _ = c.write_all(data.as_bytes());
    });
    let st = relay_stats(&s);
    wait(Duration::from_secs(10), "the queue full", || {
        get(&st.destinations[0].queued) >= 1000
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&st.metrics_dropped), 0, "waiting, not dropping");
    // UDP never waits, and is not starved by the waiting stream: it uses the
    // room above the bound.
    send_udp(s.running().carbon_udp[0], &[b"udp.during.burst 1 1000\n"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&st.metrics_dropped), 0, "the datagram queued");
    assert!(got.load(Ordering::SeqCst) < 100_000);
    let started = Instant::now();
    s.stop();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_pickle_burst_arrives_complete_with_flow_control() {
    let (dest, got) = slow_counter(Duration::from_millis(1));
    let s = Server::start(relay_config(&format!(
        r#"
queue = 1000
[[relay.cluster]]
name = "one"
method = "carbon_ch"
destinations = ["{dest}"]
"#
    )));
    // The default is on_full = "block".
    let (frames, per) = (200, 500);
    let names: Vec<String> = (0..frames * per).map(|i| format!("p.{i}")).collect();
    let mut data = Vec::new();
    for f in 0..frames {
        let points: Vec<(&str, (i64, f64))> = (f * per..(f + 1) * per)
            .map(|i| (names[i].as_str(), (1000, i as f64)))
            .collect();
        data.extend(pickle_frame(&points, 2));
    }
    let to = s.running().pickle[0];
    let sender = std::thread::spawn(move || send_tcp(to, &data));
    wait(
        Duration::from_secs(20),
        "every pickled point delivered",
        || got.load(Ordering::SeqCst) == frames * per,
    );
    sender.join().unwrap();
    assert_eq!(get(&relay_stats(&s).metrics_dropped), 0);
    s.stop();
}

#[test]
fn relay_counters_are_on_metrics() {
    let dest = Capture::start(false);
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[http]
address = "127.0.0.1:0"
{}"#,
        relay_section(&dest.addr.to_string())
    )));
    let carbon = server.running().carbon_tcp[0];
    let mut c = TcpStream::connect(carbon).unwrap();
    c.write_all(b"a.b 1 1700000000\na.c 2 1700000000\na.d nan 1700000000\n")
        .unwrap();
    drop(c);
    let http = server.running().http.unwrap();
    let want = [
        "statsyard_relay_points_received_total 2",
        "statsyard_relay_points_invalid_total{reason=\"nan_inf\"} 1",
        &format!(
            "statsyard_relay_destination_sent_total{{destination=\"{}\"}} 2",
            dest.addr
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = crate::http::get(http, "/metrics");
        assert_eq!(status, 200);
        if want.iter().all(|w| body.lines().any(|l| l == *w)) {
            break;
        }
        assert!(Instant::now() < deadline, "want {want:?} in\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
}

#[test]
fn each_destination_may_have_its_own_protocol() {
    let plain = Capture::start(false);
    let pickle = Capture::start(true);
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[relay]
line_tcp = ["127.0.0.1:0"]
line_udp = []
pickle = []
[[relay.cluster]]
name = "both"
method = "forward"
protocol = "plain"
destinations = ["{}", {{ address = "{}", protocol = "pickle" }}]
"#,
        plain.addr, pickle.addr
    )));
    let mut c = TcpStream::connect(server.running().carbon_tcp[0]).unwrap();
    c.write_all(b"mixed.proto 4 1700000000\n").unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain.names().is_empty() || pickle.names().is_empty() {
        assert!(Instant::now() < deadline, "both destinations get the point");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(plain.names(), vec!["mixed.proto".to_string()]);
    assert_eq!(pickle.names(), vec!["mixed.proto".to_string()]);
    server.stop();
}

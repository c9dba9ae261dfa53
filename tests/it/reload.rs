//! Live reload of the real binary: SIGHUP and `POST /-/reload` re-read the
//! TOML file; sinks and percentiles change without losing aggregates, and an
//! invalid file is refused while the old config keeps delivering.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::http::{get, raw_request};
use crate::support::{free_port, free_tcp_port, secs, Graphite, Proc};

/// A config with one statsd UDP listener, HTTP, a 300 ms flush and the given sinks.
fn config(udp: u16, http: u16, percentiles: &str, sinks: &[(&str, SocketAddr)]) -> String {
    let mut s = format!(
        r#"
[statsd]
udp = ["127.0.0.1:{udp}"]
tcp = []
[http]
address = "127.0.0.1:{http}"
[admin]
enabled = false
[flush]
interval = "300ms"
shutdown_timeout = "2s"
percentiles = {percentiles}
"#
    );
    for (name, addr) in sinks {
        s.push_str(&format!(
            "[[sink]]\ntype = \"graphite\"\nname = \"{name}\"\naddress = \"{addr}\"\nbackoff_min = \"20ms\"\nbackoff_max = \"200ms\"\n"
        ));
    }
    s
}

fn sighup(p: &Proc) {
    p.signal(libc::SIGHUP);
}

fn stats(http: SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(http, "/api/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait until `/api/stats` `key` is `n`.
fn wait_stat(http: SocketAddr, key: &str, n: u64) {
    let end = Instant::now() + secs(10);
    loop {
        let v = stats(http)[key].as_u64();
        if v == Some(n) {
            return;
        }
        assert!(Instant::now() < end, "{key} stayed {v:?}, wanted {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post_reload(http: SocketAddr) -> (u16, serde_json::Value) {
    let (status, _, body) = raw_request(
        http,
        b"POST /-/reload HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

fn send_counts(to: SocketAddr, n: usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..n {
        s.send_to(b"reload.c:1|c", to).unwrap();
        // Loopback does not drop, but a burst could overrun the receive buffer.
        std::thread::sleep(Duration::from_millis(1));
    }
}

const COUNT: &str = "stats_counts.reload.c";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn sighup_and_post_reload_change_sinks_and_percentiles_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let mut g1 = Graphite::start();
    let mut g2 = Graphite::start();
    let udp_port = free_port(true).expect("free UDP port");
    let http_port = free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    write(
        &file,
        &config(udp_port, http_port, "[90]", &[("a", g1.addr)]),
    );
    let p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    p.wait_tcp(http);

    // Before: one sink.
    send_counts(udp, 30);
    g1.until(secs(10), |ls| sum(ls, COUNT) == 30.0);

    // Add sink b and change the percentiles; counts in flight at the SIGHUP
    // must still arrive.
    write(
        &file,
        &config(
            udp_port,
            http_port,
            "[50]",
            &[("a", g1.addr), ("b", g2.addr)],
        ),
    );
    send_counts(udp, 20);
    sighup(&p);
    wait_stat(http, "reloads", 1);
    assert_eq!(stats(http)["reload_failures"], 0);
    // The status page's "last reload".
    let s = stats(http);
    assert_eq!(s["last_reload_ok"], true);
    assert!(s["last_reload_unix"].as_u64() > Some(0));
    let msg = s["last_reload_message"].as_str().unwrap();
    assert!(
        msg.contains("[flush] percentiles") && msg.contains("sinks added: b"),
        "{msg}"
    );
    send_counts(udp, 20);
    let t = UdpSocket::bind("127.0.0.1:0").unwrap();
    t.send_to(b"reload.t:5|ms", udp).unwrap();
    g1.until(secs(10), |ls| sum(ls, COUNT) == 70.0);
    g2.until(secs(10), |ls| {
        sum(ls, COUNT) >= 20.0
            && ls
                .iter()
                .any(|l| l.name == "stats.timers.reload.t.upper_50")
    });
    assert!(
        !g2.seen.iter().any(|l| l.name.ends_with(".upper_90")),
        "the new sink got an old-percentile flush"
    );

    // An invalid file is refused; the old config keeps delivering to both.
    write(&file, "[flush]\ninterval = \"soon\"\n");
    sighup(&p);
    wait_stat(http, "reload_failures", 1);
    let s = stats(http);
    assert_eq!(s["last_reload_ok"], false);
    assert!(
        s["last_reload_message"]
            .as_str()
            .unwrap()
            .contains("interval"),
        "{s}"
    );
    let (_, _, page) = get(http, "/");
    assert!(
        page.contains("refused: the old config keeps running"),
        "{page}"
    );
    let (status, body) = post_reload(http);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("interval"),
        "{body}"
    );
    wait_stat(http, "reload_failures", 2);
    let g2_before = sum(&g2.seen, COUNT);
    send_counts(udp, 10);
    g1.until(secs(10), |ls| sum(ls, COUNT) == 80.0);
    g2.until(secs(10), |ls| sum(ls, COUNT) >= g2_before + 10.0);

    // POST /-/reload removes b.
    write(
        &file,
        &config(udp_port, http_port, "[50]", &[("a", g1.addr)]),
    );
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["sinks_removed"],
        serde_json::json!(["b"]),
        "{report}"
    );
    assert_eq!(
        report["sinks_unchanged"],
        serde_json::json!(["a"]),
        "{report}"
    );
    assert_eq!(
        report["restart_required"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(stats(http)["reloads"], 4);
    send_counts(udp, 10);
    g1.until(secs(10), |ls| sum(ls, COUNT) == 90.0);
    // Nothing counted twice across the reloads.
    g1.drain_for(Duration::from_millis(700));
    assert_eq!(sum(&g1.seen, COUNT), 90.0);
    let g2_total = sum(&g2.seen, COUNT);
    assert!(
        g2_total <= 60.0,
        "b got {g2_total}, more than was sent after it was added"
    );

    // The UDP listener moves and a TCP one is added; what the old socket
    // holds is still counted, and both new ones feed the same aggregates.
    let other = free_port(true).expect("free UDP port");
    let tcp_port = free_tcp_port();
    let udp2: SocketAddr = ([127, 0, 0, 1], other).into();
    let tcp: SocketAddr = ([127, 0, 0, 1], tcp_port).into();
    send_counts(udp, 5);
    write(
        &file,
        &config(other, http_port, "[50]", &[("a", g1.addr)])
            .replace("tcp = []", &format!("tcp = [\"127.0.0.1:{tcp_port}\"]")),
    );
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["[statsd] udp", "[statsd] tcp"]),
        "{report}"
    );
    assert_eq!(
        report["restart_required"],
        serde_json::json!([]),
        "{report}"
    );
    send_counts(udp2, 5);
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(tcp).unwrap();
        t.write_all(b"reload.c:1|c\nreload.c:1|c\n").unwrap();
    }
    g1.until(secs(10), |ls| sum(ls, COUNT) == 102.0);
    let udp_sockets = stats(http)["udp_sockets"].to_string();
    assert!(
        udp_sockets.contains(&udp2.to_string()) && !udp_sockets.contains(&udp.to_string()),
        "{udp_sockets}"
    );
    let udp = udp2;
    let (udp_port, g1_total) = (other, 102.0);

    // HTTP moves and the admin console starts: the new addresses are bound
    // before the old one closes, and the answer comes from the old server.
    let http2_port = free_tcp_port();
    let admin_port = free_tcp_port();
    let http2: SocketAddr = ([127, 0, 0, 1], http2_port).into();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let moved = config(udp_port, http2_port, "[50]", &[("a", g1.addr)])
        .replace(
            "[admin]\nenabled = false",
            &format!("[admin]\naddress = \"127.0.0.1:{admin_port}\""),
        )
        .replace("tcp = []", &format!("tcp = [\"127.0.0.1:{tcp_port}\"]"));
    write(&file, &moved);
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    let applied = report["applied"].to_string();
    assert!(
        applied.contains("[http] address") && applied.contains("[admin]"),
        "{report}"
    );
    let (status, _, body) = get(http2, "/health");
    assert_eq!((status, body.as_str()), (200, "up\n"));
    assert!(crate::http::admin(admin, "health", "\n").contains("up"));
    let end = Instant::now() + secs(10);
    while std::net::TcpStream::connect(http).is_ok() {
        assert!(Instant::now() < end, "the old HTTP address still accepts");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats(http2)["reload_failures"], 2);
    send_counts(udp, 3);
    g1.until(secs(10), |ls| sum(ls, COUNT) == g1_total + 3.0);

    // A new address that cannot be bound refuses the whole reload.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    write(
        &file,
        &moved.replace(
            &format!("tcp = [\"127.0.0.1:{tcp_port}\"]"),
            &format!("tcp = [\"127.0.0.1:{tcp_port}\", \"127.0.0.1:{taken_port}\"]"),
        ),
    );
    let (status, body) = post_reload(http2);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot listen on tcp"),
        "{body}"
    );
    assert_eq!(stats(http2)["reload_failures"], 3);
    send_counts(udp, 2);
    g1.until(secs(10), |ls| sum(ls, COUNT) == g1_total + 5.0);
}

fn sum(lines: &[crate::support::Line], name: &str) -> f64 {
    lines
        .iter()
        .filter(|l| l.name == name)
        .map(|l| l.value.parse::<f64>().unwrap())
        .sum()
}

#[test]
fn a_server_without_a_file_refuses_to_reload() {
    let mut g = Graphite::start();
    let server = crate::support::Server::start(crate::support::graphite_config(
        g.addr,
        200,
        "[http]\naddress = \"127.0.0.1:0\"",
    ));
    let http = server.running().http.unwrap();
    let (status, body) = post_reload(http);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("nothing to re-read"));
    assert_eq!(stats(http)["reload_failures"], 1);
    send_counts(server.udp(), 3);
    g.until(secs(10), |ls| sum(ls, COUNT) == 3.0);
    server.stop();
}

fn relay_config(line_tcp: u16, http: u16, dests: &[SocketAddr]) -> String {
    let dests: Vec<String> = dests.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"
[statsd]
udp = []
tcp = []
[http]
address = "127.0.0.1:{http}"
[admin]
enabled = false
[relay]
line_tcp = ["127.0.0.1:{line_tcp}"]
line_udp = []
pickle = []
stats_interval = "0s"
backoff_min = "20ms"
backoff_max = "100ms"
[[relay.cluster]]
name = "c"
method = "forward"
destinations = [{}]
"#,
        dests.join(", ")
    )
}

#[test]
fn sighup_swaps_relay_clusters_for_open_and_new_connections() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    let mut g1 = Graphite::start();
    let mut g2 = Graphite::start();
    let line_port = free_tcp_port();
    let http_port = free_tcp_port();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let line: SocketAddr = ([127, 0, 0, 1], line_port).into();
    write(&file, &relay_config(line_port, http_port, &[g1.addr]));
    let p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    let end = Instant::now() + secs(20);
    let mut conn = loop {
        match std::net::TcpStream::connect(line) {
            Ok(c) => break c,
            Err(_) => {
                assert!(Instant::now() < end, "the relay did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    conn.write_all(b"before 1 1700000000\n").unwrap();
    g1.until(secs(10), |ls| ls.iter().any(|l| l.name == "before"));

    write(&file, &relay_config(line_port, http_port, &[g2.addr]));
    sighup(&p);
    wait_stat(http, "reloads", 1);
    assert_eq!(stats(http)["reload_failures"], 0);
    // The connection opened before the reload follows the new clusters too.
    conn.write_all(b"after.open 2 1700000000\n").unwrap();
    let mut fresh = std::net::TcpStream::connect(line).unwrap();
    fresh.write_all(b"after.new 3 1700000000\n").unwrap();
    g2.until(secs(10), |ls| {
        ["after.open", "after.new"]
            .iter()
            .all(|n| ls.iter().any(|l| l.name == *n))
    });
    g1.drain_for(Duration::from_millis(300));
    assert!(
        !g1.seen.iter().any(|l| l.name.starts_with("after")),
        "{:?}",
        g1.seen
    );

    // A bad rule is refused; the new clusters keep routing.
    let bad = format!(
        "{}[[relay.rule]]\nmatch = \"(\"\nsend_to = [\"c\"]\n",
        relay_config(line_port, http_port, &[g1.addr])
    );
    write(&file, &bad);
    let (status, body) = post_reload(http);
    assert_eq!(status, 400, "{body}");
    conn.write_all(b"after.bad 4 1700000000\n").unwrap();
    g2.until(secs(10), |ls| ls.iter().any(|l| l.name == "after.bad"));

    // The relay listener moves: the new port is bound, the old one closes
    // (its open connection ends after what it sent is read), routing stays.
    let line2_port = free_tcp_port();
    let line2: SocketAddr = ([127, 0, 0, 1], line2_port).into();
    write(&file, &relay_config(line2_port, http_port, &[g2.addr]));
    conn.write_all(b"moved.old 5 1700000000\n").unwrap();
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["[relay] line_tcp"]),
        "{report}"
    );
    let mut c2 = std::net::TcpStream::connect(line2).unwrap();
    c2.write_all(b"moved.new 6 1700000000\n").unwrap();
    g2.until(secs(10), |ls| {
        ["moved.old", "moved.new"]
            .iter()
            .all(|n| ls.iter().any(|l| l.name == *n))
    });
    let end = Instant::now() + secs(10);
    while std::net::TcpStream::connect(line).is_ok() {
        assert!(Instant::now() < end, "the old relay port still accepts");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn post_reload_applies_an_edited_mapping_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let mapping = dir.path().join("mapping.yml");
    let map = |name: &str| {
        format!(
            "mappings:\n- match: \"app.*.hits\"\n  name: \"{name}\"\n  labels:\n    app: \"$1\"\n"
        )
    };
    write(&mapping, &map("app_hits"));
    let udp_port = free_port(true).expect("free UDP port");
    let http_port = free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let g = Graphite::start();
    write(
        &file,
        &format!(
            "{}[prometheus]\nmapping_file = {:?}\n",
            config(udp_port, http_port, "[90]", &[("a", g.addr)]),
            mapping.display().to_string()
        ),
    );
    let _p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    let metrics_until = |want: &str| {
        let end = Instant::now() + secs(10);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            s.send_to(b"app.shop.hits:1|c", udp).unwrap();
            if let Ok(c) = std::net::TcpStream::connect(http) {
                drop(c);
                let (_, _, body) = get(http, "/metrics");
                if body.contains(want) {
                    return;
                }
            }
            assert!(Instant::now() < end, "/metrics never showed {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    metrics_until("app_hits");
    write(&mapping, &map("shop_hits"));
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["[prometheus] mapping_file (contents)"]),
        "{report}"
    );
    metrics_until("shop_hits");
}

/// A UDP statsd server stand-in that collects the packets a repeater sends.
fn packet_sink() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.recv(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn repeater_config(udp: u16, http: u16, to: &[SocketAddr]) -> String {
    let mut s = config(udp, http, "[90]", &[]);
    if !to.is_empty() {
        let list: Vec<String> = to.iter().map(|a| format!("\"{a}\"")).collect();
        s.push_str(&format!(
            "[[sink]]\ntype = \"repeater\"\nname = \"copy\"\ndestinations = [{}]\n",
            list.join(", ")
        ));
    }
    s
}

/// Wait for `packet` at `rx`; other packets are skipped.
fn expect_packet(rx: &std::sync::mpsc::Receiver<Vec<u8>>, packet: &[u8]) {
    let end = Instant::now() + secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(p) if p == packet => return,
            Ok(_) => {}
            Err(_) => panic!("{:?} was not repeated", String::from_utf8_lossy(packet)),
        }
    }
}

#[test]
fn reload_adds_changes_and_removes_a_repeater() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let (a, a_rx) = packet_sink();
    let (b, b_rx) = packet_sink();
    let udp_port = free_port(true).expect("free UDP port");
    let http_port = free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    write(&file, &repeater_config(udp_port, http_port, &[]));
    let p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    p.wait_tcp(http);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();

    // Added by a reload: packets from then on are repeated to a.
    write(&file, &repeater_config(udp_port, http_port, &[a]));
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["sinks_added"],
        serde_json::json!(["copy"]),
        "{report}"
    );
    assert_eq!(
        report["restart_required"],
        serde_json::json!([]),
        "{report}"
    );
    sender.send_to(b"rep.one:1|c", udp).unwrap();
    expect_packet(&a_rx, b"rep.one:1|c");

    // Changed: now to b only.
    write(&file, &repeater_config(udp_port, http_port, &[b]));
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["sinks_changed"],
        serde_json::json!(["copy"]),
        "{report}"
    );
    sender.send_to(b"rep.two:1|c", udp).unwrap();
    expect_packet(&b_rx, b"rep.two:1|c");

    // Removed: nothing is repeated any more, and the server still aggregates.
    write(&file, &repeater_config(udp_port, http_port, &[]));
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["sinks_removed"],
        serde_json::json!(["copy"]),
        "{report}"
    );
    sender.send_to(b"rep.three:1|c", udp).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let late: Vec<Vec<u8>> = a_rx.try_iter().chain(b_rx.try_iter()).collect();
    assert!(
        !late.iter().any(|p| p == b"rep.three:1|c"),
        "a removed repeater still repeats"
    );
    assert!(
        !late.iter().any(|p| p == b"rep.two:1|c"),
        "the changed repeater's old destination got a packet after the change"
    );
    let v = stats(http);
    assert_eq!(v["metrics_received"], 3, "{v}");
    assert_eq!(v["raw_dropped"], 0, "{v}");
}

/// What the front ends show follows a reload: `/api/top`'s window (and so
/// its rates) and the console's `config` lines are the new config's, not
/// the start's.
#[test]
fn the_interval_and_config_lines_the_front_ends_show_follow_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let udp_port = free_port(true).expect("free UDP port");
    let http_port = free_tcp_port();
    let admin_port = free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let text = |interval: &str| {
        format!(
            "[statsd]\nudp = [\"127.0.0.1:{udp_port}\"]\ntcp = []\n\
             [http]\naddress = \"127.0.0.1:{http_port}\"\n\
             [admin]\naddress = \"127.0.0.1:{admin_port}\"\n\
             [flush]\ninterval = \"{interval}\"\n"
        )
    };
    write(&file, &text("10s"));
    let p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    p.wait_tcp(http);
    let top = || -> serde_json::Value {
        let (status, _, body) = get(http, "/api/top?n=1");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(top()["window_seconds"], 10.0);
    let config = crate::http::admin(admin, "config", "admin > address");
    assert!(config.contains("flush > interval: 10000"), "{config}");

    write(&file, &text("2s"));
    let (status, report) = post_reload(http);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], serde_json::json!(["[flush] interval"]));
    assert_eq!(top()["window_seconds"], 2.0);
    let config = crate::http::admin(admin, "config", "admin > address");
    assert!(config.contains("flush > interval: 2000"), "{config}");

    // The rate of a hot series is over the new window: 40 lines in one
    // 2 s interval are 20 per second.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let end = Instant::now() + secs(15);
    loop {
        for _ in 0..40 {
            s.send_to(b"front.hot:1|c", udp).unwrap();
        }
        std::thread::sleep(Duration::from_millis(2100));
        let t = top();
        if t["top"][0]["key"] == "front.hot" && t["top"][0]["lines"].as_u64() == Some(40) {
            assert_eq!(t["top"][0]["lines_per_second"], 20.0, "{t}");
            break;
        }
        assert!(Instant::now() < end, "no full interval of front.hot: {t}");
    }
}

/// The sum of `value` of the `reload.c` counter's InfluxDB lines a
/// capture server took.
fn influx_sum(seen: &crate::stores::Captured) -> f64 {
    seen.lock()
        .unwrap()
        .iter()
        .flat_map(|(_, body)| {
            String::from_utf8_lossy(body)
                .lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix("reload.c,metric_type=counter value=")?;
                    rest.split(',').next()?.parse::<f64>().ok()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

/// An HTTP output reloads like any other: a new `url` takes the next
/// flushes, the old one delivers what it held, nothing is lost, and the
/// output's counters go on.
#[test]
fn sighup_moves_an_influxdb_output_to_a_new_url_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let (a, seen_a) = crate::stores::capture_http();
    let (b, seen_b) = crate::stores::capture_http();
    let udp_port = free_port(true).expect("free UDP port");
    let http_port = free_tcp_port();
    let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let cfg = |to: SocketAddr| {
        format!(
            "{}[[sink]]\ntype = \"influxdb\"\nurl = \"http://{to}\"\ndatabase = \"x\"\n\
             precision = \"ms\"\ncontent_encoding = \"identity\"\n",
            config(udp_port, http_port, "[90]", &[])
        )
    };
    write(&file, &cfg(a));
    let p = Proc::statsyard(&file, &dir.path().join("stderr.log"));
    p.wait_tcp(http);
    send_counts(udp, 30);
    let end = Instant::now() + secs(10);
    while influx_sum(&seen_a) < 30.0 {
        assert!(Instant::now() < end, "A got {}", influx_sum(&seen_a));
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent_before = stats(http)["sinks"][0]["lines_sent"].as_u64().unwrap();
    write(&file, &cfg(b));
    send_counts(udp, 20);
    sighup(&p);
    wait_stat(http, "reloads", 1);
    send_counts(udp, 25);
    let end = Instant::now() + secs(10);
    while influx_sum(&seen_a) + influx_sum(&seen_b) < 75.0 || influx_sum(&seen_b) == 0.0 {
        assert!(
            Instant::now() < end,
            "A {} + B {}",
            influx_sum(&seen_a),
            influx_sum(&seen_b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        influx_sum(&seen_a) + influx_sum(&seen_b),
        75.0,
        "none lost, none twice"
    );
    let after = stats(http)["sinks"][0]["lines_sent"].as_u64().unwrap();
    assert!(
        after > sent_before,
        "the counters go on: {sent_before} then {after}"
    );
    assert_eq!(stats(http)["reload_failures"], 0);
}

//! The statsd server end to end: real UDP/TCP/unix sockets in, a real
//! Graphite TCP receiver out.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{config, graphite_config, secs, send_udp, statsd_config, Graphite, Server};

#[test]
fn udp_counter_reaches_graphite_with_reference_names() {
    let mut g = Graphite::start();
    let server = Server::start(graphite_config(g.addr, 200, ""));
    send_udp(
        server.udp(),
        &[b"foo:1|c\nfoo:2|c|@0.5", b"bar:3|g\nt:5|ms\nu:a|s"],
    );
    // Counter: 1 + 2/0.5 = 5 over 0.2 s.
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.foo" && l.value == "5")
    });
    let rate = g
        .seen
        .iter()
        .find(|l| l.name == "stats.foo" && l.value != "0")
        .map(|l| l.value.clone());
    assert_eq!(rate.as_deref(), Some("25"));
    assert_eq!(g.value_of("stats.gauges.bar", secs(5)), "3");
    assert_eq!(g.value_of("stats.timers.t.upper_90", secs(5)), "5");
    assert_eq!(g.value_of("stats.sets.u.count", secs(5)), "1");
    // foo, bar, t, u and the three statsd.* counters (plus timestamp_lag after the first flush).
    let num_stats: u32 = g.value_of("statsd.numStats", secs(5)).parse().unwrap();
    assert!(num_stats >= 7, "numStats {num_stats}");
    let stats = &server.running().stats;
    assert_eq!(stats.packets_received.load(Ordering::Relaxed), 2);
    assert_eq!(stats.metrics_received.load(Ordering::Relaxed), 5);
    server.stop();
}

#[test]
fn bad_lines_are_counted_and_do_not_hurt_neighbours() {
    let mut g = Graphite::start();
    let server = Server::start(graphite_config(g.addr, 200, ""));
    send_udp(server.udp(), &[b"ok1:1|c\nnot a metric\nbad:x|c\nok2:2|c"]);
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.ok2" && l.value == "2")
    });
    g.until(secs(5), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.ok1" && l.value == "1")
    });
    g.until(secs(5), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.statsd.bad_lines_seen" && l.value == "2")
    });
    server.stop();
}

#[test]
fn tcp_lines_and_overlong_line_dropped_connection_kept() {
    let mut g = Graphite::start();
    let cfg = statsd_config(
        r#"
udp = []
tcp = ["127.0.0.1:0"]
max_line_length = 64
"#,
        g.addr,
    );
    let server = Server::start(cfg);
    let mut c = TcpStream::connect(server.tcp()).unwrap();
    let long = format!("{}:1|c\n", "x".repeat(200));
    c.write_all(b"a:1|c\nb:2|c\n").unwrap();
    c.write_all(long.as_bytes()).unwrap();
    // A partial line, completed by the next write.
    c.write_all(b"c:").unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"3|c\n").unwrap();
    // An overlong line that arrives without its newline first.
    c.write_all("y".repeat(100).as_bytes()).unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"yyy:1|c\nd:4|c\n").unwrap();
    c.flush().unwrap();
    for (name, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        let name = format!("stats_counts.{name}");
        g.until(secs(10), |ls| {
            ls.iter().any(|l| l.name == name && l.value == v)
        });
    }
    assert!(!g
        .seen
        .iter()
        .any(|l| l.name.contains("xxxx") || l.name.contains("yyyy")));
    assert_eq!(
        server
            .running()
            .stats
            .lines_too_long
            .load(Ordering::Relaxed),
        2
    );
    server.stop();
}

#[test]
fn ipv6_and_several_listeners_of_each_kind() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let mut g = Graphite::start();
    let cfg = statsd_config(
        r#"
udp = ["127.0.0.1:0", "[::1]:0"]
tcp = ["127.0.0.1:0", "[::1]:0"]
"#,
        g.addr,
    );
    let server = Server::start(cfg);
    let r = server.running();
    assert_eq!(r.udp.len(), 2);
    assert_eq!(r.tcp.len(), 2);
    assert!(r.udp[1].is_ipv6() && r.tcp[1].is_ipv6());
    send_udp(r.udp[0], &[b"v4:1|c"]);
    send_udp(r.udp[1], &[b"v6:1|c"]);
    TcpStream::connect(r.tcp[0])
        .unwrap()
        .write_all(b"t4:1|c\n")
        .unwrap();
    TcpStream::connect(r.tcp[1])
        .unwrap()
        .write_all(b"t6:1|c\n")
        .unwrap();
    for name in ["v4", "v6", "t4", "t6"] {
        let name = format!("stats_counts.{name}");
        g.until(secs(10), |ls| {
            ls.iter().any(|l| l.name == name && l.value == "1")
        });
    }
    server.stop();
}

#[test]
fn large_datagram_is_read_whole() {
    let mut g = Graphite::start();
    let server = Server::start(graphite_config(g.addr, 200, ""));
    // ~60 KiB in one datagram: 6000 lines of "big:1|c\n" (8 bytes each) plus padding name.
    let mut p = Vec::new();
    for _ in 0..7000 {
        p.extend_from_slice(b"big:1|c\n");
    }
    assert!(p.len() > 50_000 && p.len() < 65_507);
    send_udp(server.udp(), &[&p]);
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.big" && l.value == "7000")
    });
    server.stop();
}

#[test]
fn shutdown_flushes_everything_accepted() {
    let mut g = Graphite::start();
    // A flush interval far beyond the test: only the final flush can deliver.
    let server = Server::start(graphite_config(g.addr, 3_600_000, ""));
    let udp = server.udp();
    let tcp = server.tcp();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    for i in 0..2000 {
        let line = format!("sd.udp:1|c\nsd.k{}:1|c", i % 10);
        s.send_to(line.as_bytes(), udp).unwrap();
        sent += 1;
    }
    let mut c = TcpStream::connect(tcp).unwrap();
    for _ in 0..1000 {
        c.write_all(b"sd.tcp:1|c\n").unwrap();
    }
    c.flush().unwrap();
    // Give the kernel a moment to queue the datagrams, then stop at once.
    std::thread::sleep(Duration::from_millis(100));
    server.stop();
    g.until(secs(10), |ls| {
        ls.iter().any(|l| l.name == "stats_counts.sd.tcp")
            && ls.iter().any(|l| l.name == "stats_counts.sd.udp")
    });
    g.drain_for(Duration::from_millis(200));
    assert_eq!(g.sum("stats_counts.sd.udp"), sent as f64);
    assert_eq!(g.sum("stats_counts.sd.tcp"), 1000.0);
    let keys: f64 = (0..10)
        .map(|i| g.sum(&format!("stats_counts.sd.k{i}")))
        .sum();
    assert_eq!(keys, sent as f64);
}

#[test]
fn graphite_down_then_up_gets_every_flush() {
    // Hold the port with a bound socket that is not listening: connections
    // to it are refused, and no other socket on the machine can take the
    // port before the destination "comes back" (listen() on the same socket).
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = reserved.local_addr().unwrap().as_socket().unwrap();
    let server = Server::start(graphite_config(addr, 200, ""));
    for i in 0..5 {
        send_udp(server.udp(), &[format!("outage:{}|c", i + 1).as_bytes()]);
        std::thread::sleep(Duration::from_millis(250));
    }
    reserved
        .listen(128)
        .expect("listen on the reserved graphite port");
    let mut g = Graphite::on(reserved.into());
    g.until(secs(15), |ls| {
        ls.iter()
            .filter(|l| l.name == "stats_counts.outage")
            .count()
            >= 5
            && (ls
                .iter()
                .filter(|l| l.name == "stats_counts.outage")
                .map(|l| l.value.parse::<f64>().unwrap())
                .sum::<f64>()
                == 15.0)
    });
    server.stop();
}

#[test]
fn unix_socket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statsd.sock");
    let mut g = Graphite::start();
    let cfg = config(&format!(
        r#"
[statsd]
udp = []
tcp = []
unix = [{{ path = "{}", mode = "0600" }}]
[flush]
interval = "200ms"
[[sink]]
type = "graphite"
address = "{}"
"#,
        path.display(),
        g.addr
    ));
    let server = Server::start(cfg);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"via.unix:7|c\n").unwrap();
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.via.unix" && l.value == "7")
    });
    server.stop();
    assert!(!path.exists(), "socket file removed at shutdown");
}

/// A server with the given unix listeners (TOML inline tables) and a graphite sink.
fn unix_server(unix: &str, g: &Graphite) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
unix = [{unix}]
max_line_length = 1024
[flush]
interval = "200ms"
[[sink]]
type = "graphite"
address = "{}"
"#,
        g.addr
    )))
}

/// One DogStatsD `unixstream` frame: the length, 4 bytes little-endian, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn unix_datagram_socket_takes_one_packet_per_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsd.sock");
    let mut g = Graphite::start();
    let server = unix_server(
        &format!(
            r#"{{ path = "{}", type = "datagram", mode = "0620" }}"#,
            path.display()
        ),
        &g,
    );
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o620);
    let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
    c.send_to(b"dg.a:1|c\ndg.a:2|c|#env:prod", &path).unwrap();
    c.send_to(b"dg.a:4|c\ndg.t:5|ms", &path).unwrap();
    // No newline at the end of a datagram is needed, nor a stream to keep.
    g.until_all(
        secs(10),
        &[
            ("stats_counts.dg.a", "5"),
            ("stats_counts.dg.a;env=prod", "2"),
            ("stats.timers.dg.t.upper", "5"),
        ],
    );
    // Two datagrams were two packets.
    let stats = &server.running().stats;
    assert_eq!(stats.packets_received.load(Ordering::Relaxed), 2);
    server.stop();
    assert!(!path.exists(), "socket file removed at shutdown");
}

#[test]
fn unix_stream_length_framing_explicit_and_detected() {
    let dir = tempfile::tempdir().unwrap();
    let explicit = dir.path().join("len.sock");
    let auto = dir.path().join("auto.sock");
    let newline = dir.path().join("nl.sock");
    let mut g = Graphite::start();
    let server = unix_server(
        &format!(
            r#"{{ path = "{}", framing = "length" }}, {{ path = "{}" }}, {{ path = "{}", framing = "newline" }}"#,
            explicit.display(),
            auto.display(),
            newline.display()
        ),
        &g,
    );
    use std::os::unix::net::UnixStream;
    // Frames split anywhere across writes, one holding two lines.
    let mut bytes = frame(b"lf.x:1|c\nlf.x:2|c");
    bytes.extend(frame(b"lf.y:3|g"));
    for path in [&explicit, &auto] {
        let mut c = UnixStream::connect(path).unwrap();
        for chunk in bytes.chunks(3) {
            c.write_all(chunk).unwrap();
            c.flush().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // The auto socket still reads newline-delimited text.
    let mut c = UnixStream::connect(&auto).unwrap();
    c.write_all(b"lf.text:10|c\n").unwrap();
    // A forced newline socket reads a length prefix as part of the first
    // line: a 97-byte payload's prefix is `a\0\0\0`, and the sanitiser
    // keeps the `a`.
    let mut c = UnixStream::connect(&newline).unwrap();
    let payload = format!("lf.framed:1|c\nlf.fill:{}1|c\n", "0".repeat(71));
    assert_eq!(payload.len(), 97);
    c.write_all(&frame(payload.as_bytes())).unwrap();
    c.write_all(b"lf.nl:1|c\n").unwrap();
    g.until_all(
        secs(10),
        &[
            ("stats_counts.lf.x", "6"),
            ("stats.gauges.lf.y", "3"),
            ("stats_counts.lf.text", "10"),
            ("stats_counts.lf.nl", "1"),
            ("stats_counts.alf.framed", "1"),
        ],
    );
    assert!(!g.seen.iter().any(|l| l.name == "stats_counts.lf.framed"));
    // A frame longer than max_line_length closes the connection, counted.
    let mut c = UnixStream::connect(&explicit).unwrap();
    c.write_all(&(5000u32).to_le_bytes()).unwrap();
    c.set_read_timeout(Some(secs(10))).unwrap();
    let mut rest = Vec::new();
    use std::io::Read;
    let _ = c.read_to_end(&mut rest);
    assert_eq!(
        server
            .running()
            .stats
            .lines_too_long
            .load(Ordering::Relaxed),
        1
    );
    server.stop();
}

#[test]
fn repeater_forwards_raw_packets() {
    let dest = UdpSocket::bind("127.0.0.1:0").unwrap();
    dest.set_read_timeout(Some(secs(10))).unwrap();
    let cfg = config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "10s"
[[sink]]
type = "repeater"
destinations = ["{}"]
protocol = "udp"
"#,
        dest.local_addr().unwrap()
    ));
    let server = Server::start(cfg);
    send_udp(server.udp(), &[b"r:1|c\ngarbage line", b"r2:2|ms"]);
    let mut buf = [0u8; 1024];
    let n = dest.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"r:1|c\ngarbage line");
    let n = dest.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"r2:2|ms");
    server.stop();
}

#[test]
fn too_many_connections_are_refused_and_counted() {
    let mut g = Graphite::start();
    let cfg = statsd_config(
        r#"
udp = []
tcp = ["127.0.0.1:0"]
max_connections = 2
"#,
        g.addr,
    );
    let server = Server::start(cfg);
    let held: Vec<_> = (0..2)
        .map(|_| TcpStream::connect(server.tcp()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = TcpStream::connect(server.tcp()).unwrap();
    extra.set_read_timeout(Some(secs(5))).unwrap();
    let mut b = [0u8; 1];
    // Refused: the server closes it at once.
    assert_eq!(std::io::Read::read(&mut extra, &mut b).unwrap_or(0), 0);
    assert_eq!(
        server
            .running()
            .stats
            .connections_rejected
            .load(Ordering::Relaxed),
        1
    );
    // The held ones still work.
    (&held[0]).write_all(b"held:1|c\n").unwrap();
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.held" && l.value == "1")
    });
    server.stop();
}

/// Loss before statsyard reads a datagram is visible: with a tiny receive
/// buffer and a burst, the kernel drops datagrams, and the per-address
/// `statsd.statsyard.udp.<addr>.kernel_drops` counter plus the lines
/// processed account for every datagram sent.
#[test]
fn kernel_drops_are_reported_next_to_lines_processed() {
    let mut g = Graphite::start();
    let cfg = statsd_config(
        r#"
udp = ["127.0.0.1:0"]
tcp = []
udp_recv_buffer = 2048
"#,
        g.addr,
    );
    let server = Server::start(cfg);
    let addr = server.udp();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 20_000u64;
    for _ in 0..sent {
        s.send_to(b"burst:1|c", addr).unwrap();
    }
    let drops_name = format!(
        "stats_counts.statsd.statsyard.udp.127_0_0_1_{}.kernel_drops",
        addr.port()
    );
    g.until(secs(15), |ls| {
        let sum = |n: &str| -> f64 {
            ls.iter()
                .filter(|l| l.name == n)
                .map(|l| l.value.parse::<f64>().unwrap())
                .sum()
        };
        let processed = sum("stats_counts.statsd.metrics_received");
        processed + sum(&drops_name) == sent as f64 && sum("stats_counts.burst") == processed
    });
    assert!(
        g.sum(&drops_name) > 0.0,
        "a 2 KiB buffer must overflow under a 20,000-datagram burst"
    );
    server.stop();
}

/// `gauge_deltas = false` (DogStatsD): a signed gauge value is the value.
#[test]
fn gauge_deltas_off_reads_signed_gauges_as_values() {
    for (deltas, want) in [(true, "7"), (false, "-3")] {
        let mut g = Graphite::start();
        let server = Server::start(statsd_config(
            &format!("udp = [\"127.0.0.1:0\"]\ngauge_deltas = {deltas}"),
            g.addr,
        ));
        send_udp(server.udp(), &[b"temp:10|g\ntemp:-3|g\nup:+2|g"]);
        assert_eq!(g.value_of("stats.gauges.temp", secs(10)), want, "{deltas}");
        // A delta on a gauge that does not exist yet starts it from 0.
        assert_eq!(g.value_of("stats.gauges.up", secs(5)), "2");
        server.stop();
    }
}

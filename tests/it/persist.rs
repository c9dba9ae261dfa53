//! Restart without loss, on the real binary: SIGTERM delivers everything
//! accepted in a final flush; `[flush] state_file` carries gauges (and, with
//! `persist_counters`, the interval's counters) over a restart; `[admin]
//! token` guards the mutating admin commands and `POST /-/reload`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::http::raw_request;
use crate::support::{free_port, free_tcp_port, secs, Graphite, Proc};

/// The binary on `file`, once its statsd UDP listener is up (its
/// "listening" log line was written).
fn start(file: &Path, log: &Path) -> Proc {
    let p = Proc::statsyard(file, log);
    let end = Instant::now() + secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("proto=\"udp\"") || text.contains("proto=udp") {
            return p;
        }
        assert!(Instant::now() < end, "no listening line in {log:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(udp: u16, interval: &str, graphite: SocketAddr, extra_flush: &str) -> String {
    format!(
        r#"
[statsd]
udp = ["127.0.0.1:{udp}"]
tcp = []
[http]
enabled = false
[admin]
enabled = false
[flush]
interval = "{interval}"
shutdown_timeout = "5s"
self_metrics = false
state_file = "state"
{extra_flush}
[[sink]]
type = "graphite"
address = "{graphite}"
backoff_min = "20ms"
"#
    )
}

fn send(to: SocketAddr, lines: &[&[u8]]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for l in lines {
        s.send_to(l, to).unwrap();
    }
}

#[test]
fn sigterm_delivers_everything_and_gauges_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let mut g = Graphite::start();
    let port = free_port(true).expect("free UDP port");
    let udp: SocketAddr = ([127, 0, 0, 1], port).into();
    // A flush interval longer than the test: only the final flush delivers.
    std::fs::write(&file, config(port, "1h", g.addr, "")).unwrap();
    let p = start(&file, &dir.path().join("1.log"));
    let mut lines: Vec<&[u8]> = vec![b"persist.hits:1|c"; 1000];
    lines.extend([&b"persist.depth:42|g"[..], b"persist.depth:+8|g"]);
    lines.extend(vec![&b"persist.lat:5|ms"[..]; 10]);
    send(udp, &lines);
    // No pause: what the kernel holds at SIGTERM is read before the final flush.
    p.term();
    g.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats.timers.persist.lat.count")
            && ls.iter().any(|l| l.name == "stats.gauges.persist.depth")
            && ls.iter().any(|l| l.name == "stats_counts.persist.hits")
    });
    assert_eq!(g.sum("stats_counts.persist.hits"), 1000.0);
    assert_eq!(g.sum("stats.timers.persist.lat.count"), 10.0);
    assert_eq!(g.sum("stats.gauges.persist.depth"), 50.0);
    let state = std::fs::read_to_string(dir.path().join("state")).unwrap();
    assert!(state.contains("g 50.0 - persist.depth\n"), "{state}");
    assert!(!state.contains("\nc "), "{state}");

    // The next process reports the gauge without any client sending it.
    let mut g2 = Graphite::start();
    std::fs::write(&file, config(port, "300ms", g2.addr, "")).unwrap();
    let p = start(&file, &dir.path().join("2.log"));
    let v = g2.value_of("stats.gauges.persist.depth", secs(10));
    assert_eq!(v, "50");
    // An update applies on top of the restored value.
    send(udp, &[b"persist.depth:-10|g"]);
    g2.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats.gauges.persist.depth" && l.value == "40")
    });
    p.term();
    let state = std::fs::read_to_string(dir.path().join("state")).unwrap();
    assert!(state.contains("g 40.0 - persist.depth\n"), "{state}");
}

#[test]
fn persist_counters_carries_the_last_interval_over_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    let mut g = Graphite::start();
    let port = free_port(true).expect("free UDP port");
    let udp: SocketAddr = ([127, 0, 0, 1], port).into();
    std::fs::write(&file, config(port, "1h", g.addr, "persist_counters = true")).unwrap();
    let p = start(&file, &dir.path().join("1.log"));
    send(udp, &vec![&b"carry.hits:1|c"[..]; 500]);
    send(udp, &[b"carry.g:7|g"]);
    p.term();
    // The final flush still went out (the gauge), without the counter's count.
    g.until(secs(10), |ls| {
        ls.iter().any(|l| l.name == "stats.gauges.carry.g")
    });
    g.drain_for(Duration::from_millis(300));
    assert_eq!(g.sum("stats_counts.carry.hits"), 0.0);
    let state = std::fs::read_to_string(dir.path().join("state")).unwrap();
    assert!(state.contains("c 500.0 carry.hits\n"), "{state}");

    let mut g2 = Graphite::start();
    std::fs::write(
        &file,
        config(port, "300ms", g2.addr, "persist_counters = true"),
    )
    .unwrap();
    let p = start(&file, &dir.path().join("2.log"));
    // Restored counters leave the file at once: a crash now cannot count them twice.
    let state = std::fs::read_to_string(dir.path().join("state")).unwrap();
    assert!(!state.contains("carry.hits"), "{state}");
    assert!(state.contains("carry.g"), "{state}");
    let v = g2.value_of("stats_counts.carry.hits", secs(10));
    assert_eq!(v, "500");
    // Counted once: the following flushes report 0.
    g2.drain_for(Duration::from_millis(800));
    assert_eq!(g2.sum("stats_counts.carry.hits"), 500.0);
    p.term();
}

/// A console connection that reads each answer.
struct Console {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Console {
    fn connect(addr: SocketAddr) -> Console {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(secs(10))).unwrap();
        Console {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    /// Send a command and read lines until one contains `until`.
    fn ask(&mut self, cmd: &str, until: &str) -> String {
        self.w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        while !out.contains(until) {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            out.push_str(&line);
        }
        out
    }
}

fn listening(log: &Path, proto: &str) -> SocketAddr {
    let end = Instant::now() + secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if line.contains("listening") && line.contains(&format!("proto={proto}"))
                || line.contains(&format!("proto=\"{proto}\""))
            {
                if let Some(a) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                {
                    return a.trim_matches('"').parse().unwrap();
                }
            }
        }
        assert!(Instant::now() < end, "no {proto} listening line: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn admin_token_guards_mutating_commands_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsyard.toml");
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    let port = free_port(true).expect("free UDP port");
    let (http_port, admin_port) = (free_tcp_port(), free_tcp_port());
    std::fs::write(
        &file,
        format!(
            r#"
[statsd]
udp = ["127.0.0.1:{port}"]
tcp = []
[http]
address = "127.0.0.1:{http_port}"
[admin]
address = "127.0.0.1:{admin_port}"
token_file = "token"
[flush]
interval = "200ms"
"#
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let p = start(&file, &log);
    let admin = listening(&log, "admin");
    let http = listening(&log, "http");
    send(([127, 0, 0, 1], port).into(), &[b"tok.c:1|c"]);

    let mut c = Console::connect(admin);
    // Reading stays open.
    assert!(c.ask("health", "\n").starts_with("health: up"));
    let need = "ERROR: this command needs the admin token";
    assert!(c.ask("delcounters tok.c", "\n").starts_with(need));
    assert!(c.ask("health down", "\n").starts_with(need));
    assert!(c.ask("reload", "\n").starts_with(need));
    assert_eq!(c.ask("auth wrong-token", "\n"), "ERROR: wrong token\n");
    assert!(c.ask("health down", "\n").starts_with(need));
    assert_eq!(c.ask("auth s3cret-token", "\n"), "OK\n");
    assert_eq!(c.ask("health down", "\n"), "health: down\n");
    assert_eq!(c.ask("health up", "\n"), "health: up\n");
    let reloaded = c.ask("reload", "restart required:");
    assert!(reloaded.starts_with("reloaded "), "{reloaded}");
    // Another connection has not authenticated.
    let mut other = Console::connect(admin);
    assert!(other.ask("health down", "\n").starts_with(need));

    // POST /-/reload needs the token as a bearer token.
    let post = |auth: &str| {
        raw_request(
            http,
            format!(
                "POST /-/reload HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let (status, headers, _) = post("");
    assert_eq!(status, 401);
    assert!(
        headers.to_lowercase().contains("www-authenticate: bearer"),
        "{headers}"
    );
    assert_eq!(post("Authorization: Bearer nope-nope\r\n").0, 401);
    let (status, _, body) = post("Authorization: Bearer s3cret-token\r\n");
    assert_eq!(status, 200, "{body}");

    // Every refusal is counted: 4 console commands, 1 wrong token, 1 on the
    // other connection, 2 HTTP requests.
    let (_, _, body) = raw_request(
        http,
        b"GET /api/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["admin_auth_failures"], 8, "{body}");
    let mut rest = String::new();
    let _ = c.w.shutdown(std::net::Shutdown::Write);
    let _ = c.r.read_to_string(&mut rest);
    p.term();
}

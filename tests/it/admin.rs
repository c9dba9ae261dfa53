//! The admin console over real sockets: every command's output, deletion
//! with wildcards, garbage, and a differential run against the reference
//! statsd's console (same input, same commands, outputs compared).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{admin, http_config};
use crate::support::{config, free_tcp_port, secs, send_udp, Server};

/// A console session: several commands on one connection.
struct Console(TcpStream);

impl Console {
    fn connect(addr: SocketAddr) -> Console {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(secs(10))).unwrap();
        Console(s)
    }

    /// Send `command` and read until the answer ends with `until`.
    fn ask(&mut self, command: &str, until: &str) -> String {
        self.0.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !String::from_utf8_lossy(&out).ends_with(until) {
            match self.0.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

const END: &str = "END\n\n";

/// Wait until the console's `counters` shows `key`.
fn wait_for(console: &mut Console, key: &str) {
    let end = Instant::now() + secs(10);
    while Instant::now() < end {
        if console.ask("counters", END).contains(key) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{key} never appeared");
}

/// A long flush interval, so that nothing resets during the test.
fn quiet_config() -> statsyard::config::Config {
    config(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "600s"
shutdown_timeout = "2s"
[http]
enabled = false
[admin]
address = "127.0.0.1:0"
"#,
    )
}

#[test]
fn every_command_has_the_reference_shape() {
    let server = Server::start(quiet_config());
    let addr = server.running().admin.unwrap();
    send_udp(
        server.udp(),
        &[b"a.b:1|c\na.b:2|c|@0.5\nplain:7|c\ng.x:3|g\ng.x:-1|g\nt.x:5|ms\nt.x:1.5|ms\ns.x:u1|s\ns.x:u2|s\ns.x:u1|s"],
    );
    let mut c = Console::connect(addr);
    wait_for(&mut c, "plain");

    assert_eq!(c.ask("counters", END), "{ 'a.b': 5, plain: 7 }\nEND\n\n");
    assert_eq!(c.ask("gauges", END), "{ 'g.x': 2 }\nEND\n\n");
    assert_eq!(c.ask("timers", END), "{ 't.x': [ 5, 1.5 ] }\nEND\n\n");
    let sets = c.ask("sets", END);
    assert!(
        sets == "{ 's.x': Set(2) { 'u1', 'u2' } }\nEND\n\n"
            || sets == "{ 's.x': Set(2) { 'u2', 'u1' } }\nEND\n\n",
        "{sets}"
    );
    assert_eq!(c.ask("health", "\n"), "health: up\n");
    assert_eq!(c.ask("health sideways", "\n"), "health: up\n");
    assert_eq!(c.ask("health down", "\n"), "health: down\n");
    assert_eq!(c.ask("health up", "\n"), "health: up\n");
    assert_eq!(c.ask("bogus", "\n"), "ERROR\n");
    assert_eq!(c.ask("", "\n"), "ERROR\n");
    assert!(c
        .ask("help", "\n\n")
        .starts_with("Commands: stats, counters, timers, gauges, sets,"));

    let stats = c.ask("stats", END);
    let names: Vec<&str> = stats
        .lines()
        .map(|l| l.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        names[..3],
        [
            "uptime",
            "messages.last_msg_seen",
            "messages.bad_lines_seen"
        ],
        "{stats}"
    );
    for l in stats.lines().filter(|l| l.contains(": ")) {
        let v = l.split(": ").nth(1).unwrap();
        assert!(v.parse::<u64>().is_ok(), "{l}");
    }
    assert!(stats.ends_with("\nEND\n\n"), "{stats}");

    let cfg = c.ask("config", "admin > address: ");
    assert!(cfg.starts_with("\nsource: test.toml\n"), "{cfg}");
    for section in ["host", "liveness", "forward", "aggregator"] {
        assert!(cfg.contains(&format!("\n{section}: disabled\n")), "{cfg}");
    }

    // `quit` closes the connection.
    c.0.write_all(b"quit\n").unwrap();
    let mut rest = Vec::new();
    let _ = c.0.read_to_end(&mut rest);
    assert!(rest.is_empty());
    server.stop();
}

#[test]
fn deletion_with_wildcards() {
    let server = Server::start(quiet_config());
    let addr = server.running().admin.unwrap();
    send_udp(
        server.udp(),
        &[b"web.a:1|c\nweb.b.c:1|c\nwebx:1|c\nkeep:1|c\ng.a:1|g\nt.a:1|ms\ns.a:x|s"],
    );
    let mut c = Console::connect(addr);
    wait_for(&mut c, "keep");
    assert_eq!(
        c.ask("delcounters web.* nope", END),
        "deleted: web.a\ndeleted: web.b.c\nmetric nope not found\nEND\n\n"
    );
    assert_eq!(c.ask("counters", END), "{ keep: 1, webx: 1 }\nEND\n\n");
    assert_eq!(c.ask("delcounters keep", END), "deleted: keep\nEND\n\n");
    assert_eq!(c.ask("delgauges g.a", END), "deleted: g.a\nEND\n\n");
    assert_eq!(c.ask("gauges", END), "{}\nEND\n\n");
    assert_eq!(c.ask("deltimers t.*", END), "deleted: t.a\nEND\n\n");
    assert_eq!(c.ask("timers", END), "{}\nEND\n\n");
    assert_eq!(c.ask("delsets s.a", END), "deleted: s.a\nEND\n\n");
    assert_eq!(c.ask("sets", END), "{}\nEND\n\n");
    assert_eq!(c.ask("delsets", END), "END\n\n");
    // A deleted series comes back with its next value.
    send_udp(server.udp(), &[b"keep:4|c"]);
    wait_for(&mut c, "keep: 4");
    server.stop();
}

#[test]
fn garbage_never_hurts_the_console() {
    let server = Server::start(http_config());
    let addr = server.running().admin.unwrap();
    let mut c = Console::connect(addr);
    // An overlong line: one ERROR, then the console goes on.
    let long = "x".repeat(100_000);
    assert_eq!(c.ask(&long, "ERROR\n"), "ERROR\n");
    assert_eq!(c.ask("health", "health: up\n"), "health: up\n");
    let binary = String::from_utf8_lossy(b"\x00\xff\xfe\x01counters").into_owned();
    assert_eq!(c.ask(&binary, "\n"), "ERROR\n");
    assert_eq!(
        c.ask("delcounters ../../etc", END),
        "metric ../../etc not found\nEND\n\n"
    );
    // A command without a newline is still answered, as the reference does.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(secs(10))).unwrap();
    raw.write_all(b"health").unwrap();
    let mut buf = [0u8; 64];
    let n = raw.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"health: up\n");
    // Clients that connect and leave.
    for _ in 0..10 {
        drop(TcpStream::connect(addr).unwrap());
    }
    assert_eq!(admin(addr, "health", "\n"), "health: up\n");
    server.stop();
}

// ---- differential: the reference statsd's console ------------------------

fn reference_stats_js() -> Option<PathBuf> {
    let path = std::env::var_os("STATSYARD_REFERENCE_STATSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/reference-statsd/node_modules/statsd/stats.js")
        });
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if node && path.is_file() {
        return Some(path);
    }
    assert!(
        !in_ci,
        "admin differential test: node or the reference statsd ({}) is missing; CI must provide them",
        path.display()
    );
    eprintln!(
        "skipping the admin differential test: node or {} is missing",
        path.display()
    );
    None
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn differential_against_the_reference_console() {
    let Some(stats_js) = reference_stats_js() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A UDP port for the reference: bind-and-release, as differential.rs does.
    let udp_port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mgmt_port = free_tcp_port();
    let cfg = dir.path().join("config.js");
    std::fs::write(
        &cfg,
        format!(
            "{{ port: {udp_port}, address: '127.0.0.1', mgmt_port: {mgmt_port}, \
             mgmt_address: '127.0.0.1', flushInterval: 600000, backends: [] }}"
        ),
    )
    .unwrap();
    let _reference = Kill(
        Command::new("node")
            .arg(&stats_js)
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts"),
    );
    let reference_mgmt: SocketAddr = format!("127.0.0.1:{mgmt_port}").parse().unwrap();
    let end = Instant::now() + secs(20);
    let mut theirs = loop {
        if let Ok(s) = TcpStream::connect(reference_mgmt) {
            s.set_read_timeout(Some(secs(10))).unwrap();
            break Console(s);
        }
        assert!(Instant::now() < end, "the reference console never listened");
        std::thread::sleep(Duration::from_millis(100));
    };

    let server = Server::start(quiet_config());
    let mut ours = Console::connect(server.running().admin.unwrap());

    // Keys in sorted order, so that the reference's insertion order is ours.
    let mut packet = String::from("a.count:1|c\na.count:2|c|@0.5\nb_gauge:3|g\nb_gauge:+2.5|g\n");
    packet.push_str("c.neg:-0|g\n");
    for i in 0..150 {
        packet.push_str(&format!("t.many:{}|ms\n", (i * 37) % 1000));
    }
    packet.push_str("t.one:1.5|ms\nt.seven:1|ms\nt.seven:22|ms\nt.seven:333|ms\nt.seven:4444|ms\n");
    packet.push_str("t.seven:0.5|ms\nt.seven:6|ms\nt.seven:77|ms\nzz.last:1e3|c\n");
    send_udp(server.udp(), &[packet.as_bytes()]);
    send_udp(
        format!("127.0.0.1:{udp_port}").parse().unwrap(),
        &[packet.as_bytes()],
    );
    wait_for(&mut ours, "zz.last");
    wait_for(&mut theirs, "zz.last");
    // The reference counts its own packets in `counters`; remove those from both.
    theirs.ask("delcounters statsd.*", END);
    ours.ask("delcounters statsd.*", END);

    for (cmd, until) in [
        ("counters", END),
        ("gauges", END),
        ("timers", END),
        ("delcounters a.* nope zz.last", END),
        ("counters", END),
        ("deltimers t.seven t.*", END),
        ("timers", END),
        ("delgauges", END),
        ("health down", "\n"),
        ("health", "\n"),
        ("health UP", "\n"),
        ("nonsense", "\n"),
    ] {
        let (a, b) = (theirs.ask(cmd, until), ours.ask(cmd, until));
        assert_eq!(b, a, "`{cmd}`: statsyard (left) vs the reference (right)");
    }
    // `stats`: the same lines up to the backends' (none here).
    let (a, b) = (theirs.ask("stats", END), ours.ask("stats", END));
    let names = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(": ").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&b), names(&a), "stats: {b:?} vs {a:?}");
    server.stop();
}

//! The `statsyard` binary as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::bin;

#[test]
fn bad_config_names_file_and_key_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[flush]\ninterval = \"0s\"\n").unwrap();
    for args in [
        vec!["check-config".to_string(), f.display().to_string()],
        vec!["--config".to_string(), f.display().to_string()],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("interval"), "{err}");
    }
    let js = dir.path().join("bad.js");
    std::fs::write(&js, "{ flushInterval: 'soon' }").unwrap();
    let out = bin()
        .args(["--statsd-config", &js.display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.js") && err.contains("flushInterval"),
        "{err}"
    );
}

/// Runs the binary with a 500 ms console flush, sends a counter, and then
/// SIGTERM right after a second one: both must be printed, and the exit code is 0.
#[test]
fn console_output_and_sigterm_final_flush() {
    let (child, addr, mut stdout, _dir) = spawn_with_console(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "500ms"
[http]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[[sink]]
type = "console"
"#,
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"foo:1|c", addr).unwrap();
    let out = read_until(&mut stdout, |t| t.contains("stats_counts.foo 1 "));
    assert!(out.contains("stats_counts.foo 1 "), "{out}");
    s.send_to(b"last:1|c", addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(rest.contains("stats_counts.last 1 "), "{rest}");
}

/// Start the binary with `toml`; returns it, its UDP address (from the
/// "listening" log line), its stdout, and the directory of its config.
fn spawn_with_console(
    toml: &str,
) -> (
    std::process::Child,
    std::net::SocketAddr,
    BufReader<std::process::ChildStdout>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, toml).unwrap();
    let mut child = bin()
        .args(["--config", &f.display().to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while addr.is_none() && Instant::now() < deadline {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("listening") && line.contains("udp") {
            addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        }
    }
    let addr = addr.expect("a listening line with addr=");
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, addr, stdout, dir)
}

/// UDP on a free port, a console sink with `sink` lines, nothing else.
fn console_only(interval: &str, sink: &str) -> String {
    format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "{interval}"
[http]
enabled = false
[admin]
enabled = false
[[sink]]
type = "console"
{sink}
"#
    )
}

/// Read stdout until `done(all so far)`, at most 20 s.
fn read_until(
    out: &mut BufReader<std::process::ChildStdout>,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&text) && Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
    }
    text
}

/// The README's tour: each flush is one block, a header, the user's series
/// sorted by key, and one summary line for the self-metrics.
#[test]
fn console_prints_one_sorted_block_per_flush() {
    let (mut child, addr, mut stdout, _dir) = spawn_with_console(&console_only("1s", ""));
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    // One datagram, so that one flush holds all of it.
    s.send_to(b"foo:1|c\nlat:12|ms\nlat:30|ms|@0.5\nq;env=prod:3|g", addr)
        .unwrap();
    let text = read_until(&mut stdout, |t| {
        t.contains("stats.gauges.q;env=prod 3 ")
            && t.lines().last().is_some_and(|l| l.starts_with("# statsd:"))
    });
    let _ = child.kill();
    let _ = child.wait();
    // The block that holds the tour.
    let block: Vec<&str> = text
        .split("# flush ")
        .find(|b| b.contains("stats.gauges.q;env=prod"))
        .unwrap_or_else(|| panic!("no block with the tour in\n{text}"))
        .lines()
        .collect();
    assert!(
        block[0].ends_with(", interval 1s, 3 series"),
        "header {:?}",
        block[0]
    );
    let names: Vec<&str> = block[1..block.len() - 1]
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "stats.foo",
            "stats_counts.foo",
            "stats.timers.lat.count_90",
            "stats.timers.lat.mean_90",
            "stats.timers.lat.upper_90",
            "stats.timers.lat.sum_90",
            "stats.timers.lat.sum_squares_90",
            "stats.timers.lat.std",
            "stats.timers.lat.upper",
            "stats.timers.lat.lower",
            "stats.timers.lat.sum",
            "stats.timers.lat.sum_squares",
            "stats.timers.lat.mean",
            "stats.timers.lat.median",
            "stats.timers.lat.count",
            "stats.timers.lat.count_ps",
            "stats.gauges.q;env=prod",
        ],
        "{text}"
    );
    let summary = block.last().unwrap();
    assert!(
        summary.starts_with("# statsd: 4 lines in 1 packet, 0 bad; ")
            && summary.ends_with("self-metric lines not shown (self_metrics = true)"),
        "{summary}"
    );
    assert!(!text.lines().any(|l| l.contains("statsd.")), "{text}");
}

/// `self_metrics = true` prints the self-metrics after the user's series.
#[test]
fn console_self_metrics_on_request() {
    let (mut child, addr, mut stdout, _dir) =
        spawn_with_console(&console_only("500ms", "self_metrics = true"));
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"foo:1|c", addr).unwrap();
    let text = read_until(&mut stdout, |t| {
        t.contains("stats_counts.foo 1 ") && t.contains("graphiteStats.calculationtime")
    });
    let _ = child.kill();
    let _ = child.wait();
    let block: Vec<&str> = text
        .split("# flush ")
        .find(|b| b.contains("stats_counts.foo 1 "))
        .unwrap()
        .lines()
        .collect();
    assert_eq!(block[1].split(' ').next(), Some("stats.foo"), "{text}");
    assert_eq!(
        block[2].split(' ').next(),
        Some("stats_counts.foo"),
        "{text}"
    );
    assert!(block[3..].iter().all(|l| l.contains("statsd.")), "{text}");
    assert!(block
        .iter()
        .any(|l| l.starts_with("stats_counts.statsd.metrics_received 1 ")));
    assert!(!text.contains("# statsd:"), "{text}");
}

/// A config.js that computes its values, as real ones do: the port from the
/// environment with a fallback, the suffix from the host name, a prefix
/// joined with `+`.
#[test]
fn config_js_with_environment_and_host_name() {
    use crate::support::{free_port, Graphite, Proc};
    let mut g = Graphite::start();
    let udp = free_port(true).unwrap();
    let mgmt = free_port(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("config.js");
    std::fs::write(
        &js,
        r#"{
  port: parseInt(process.env.STATSYARD_IT_PORT) || 8125,
  address: process.env.STATSYARD_IT_UNSET || '127.0.0.1',
  mgmt_port: Number(process.env['STATSYARD_IT_MGMT']),
  mgmt_address: '127.0.0.1',
  graphiteHost: process.env.STATSYARD_IT_GRAPHITE_HOST,
  graphitePort: process.env.STATSYARD_IT_GRAPHITE_PORT,
  flushInterval: 300,
  prefixStats: 'statsd_' + process.env.STATSYARD_IT_ENV,
  graphite: { globalSuffix: require('os').hostname() },
  // An unset variable leaves the key out, as undefined does in the reference.
  dumpMessages: process.env.STATSYARD_IT_UNSET,
}
"#,
    )
    .unwrap();
    let log = dir.path().join("log");
    let child = bin()
        .args(["--statsd-config", &js.display().to_string()])
        .args(["--http-address", "127.0.0.1:0"])
        .env("STATSYARD_IT_PORT", udp.to_string())
        .env("STATSYARD_IT_MGMT", mgmt.to_string())
        .env("STATSYARD_IT_GRAPHITE_HOST", "127.0.0.1")
        .env("STATSYARD_IT_GRAPHITE_PORT", g.addr.port().to_string())
        .env("STATSYARD_IT_ENV", "ci")
        .env_remove("STATSYARD_IT_UNSET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let child = Proc(child);
    child.wait_tcp(format!("127.0.0.1:{mgmt}").parse().unwrap());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"foo:3|c", ("127.0.0.1", udp)).unwrap();
    let name = format!("stats_counts.foo.{host}");
    assert_eq!(g.value_of(&name, Duration::from_secs(20)), "3");
    // The prefix: `statsd_` + the variable.
    g.until(Duration::from_secs(5), |ls| {
        ls.iter()
            .any(|l| l.name == format!("stats_counts.statsd_ci.metrics_received.{host}"))
    });
    child.term();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("WARN"), "{log}");
}

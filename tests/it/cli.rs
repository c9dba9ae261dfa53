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
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
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
    )
    .unwrap();
    let mut child = bin()
        .args(["--config", &f.display().to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bound address is in the "listening" log line.
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
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"foo:1|c", addr).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out.contains("stats_counts.foo 1 ") && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        out.push_str(&line);
    }
    assert!(out.contains("stats_counts.foo 1 "), "{out}");
    s.send_to(b"last:1|c", addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(rest.contains("stats_counts.last 1 "), "{rest}");
}

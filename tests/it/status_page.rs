//! The status page (`GET /`) in a real browser: headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs) loads it from a server with
//! traffic, its JavaScript polls `/api/status`, and the test reads the DOM
//! it left (`--dump-dom`) and saves screenshots under `target/` for the
//! docs (`status-page.png`, and `status-page-phone.png` at a phone's width).
//! Without JavaScript the page shows the same numbers (checked over plain
//! HTTP).
//!
//! Locally, without Chromium, the browser part says so and passes; with `CI`
//! set it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::get;
use crate::support::{config, secs, send_udp, Graphite, Server};

/// Chromium, if installed; fails under CI when it is not.
fn chromium() -> Option<PathBuf> {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return Some(PathBuf::from(c));
        }
    }
    let hint = "install Debian's `chromium` (bash .ci/run does)";
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is missing ({hint})"
    );
    eprintln!("skipping the browser part: chromium is not installed ({hint})");
    None
}

/// Run headless Chromium on `url` with `args`, a fresh profile and the
/// flags a machine without internet needs; its stdout. Killed after 90 s.
fn browse(chromium: &Path, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = Instant::now() + secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?}: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// A server with UDP, HTTP, a Graphite sink that is up and one that is not.
fn server(g: &Graphite) -> Server {
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
max_series = 5000
[flush]
interval = "500ms"
[http]
address = "127.0.0.1:0"
[[sink]]
type = "graphite"
name = "carbon"
address = "{}"
[[sink]]
type = "graphite"
name = "carbon-down"
address = "{down_addr}"
backoff_min = "50ms"
backoff_max = "200ms"
"#,
        g.addr
    )))
}

/// Send traffic until `stop`: a hot series, a tagged one, a bad line.
fn traffic(udp: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            send_udp(
                udp,
                &[
                    b"checkout.hot:1|c\ncheckout.hot:1|c\ncheckout.hot:1|c",
                    b"checkout.latency:12|ms|#route:pay",
                    b"bad.line:x|c",
                ],
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn status_page_in_a_browser() {
    let mut g = Graphite::start();
    let server = server(&g);
    let http = server.running().http.expect("http is on");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(server.udp(), stop.clone());
    // Two flushes with traffic: rates and the top series are known.
    g.until(secs(20), |ls| {
        ls.iter()
            .filter(|l| l.name == "stats_counts.checkout.hot" && l.value != "0")
            .count()
            >= 2
    });

    // Without JavaScript: the numbers at load time.
    let (status, _, page) = get(http, "/");
    assert_eq!(status, 200);
    for want in [
        "<title>statsyard status</title>",
        "<td>checkout.hot</td>",
        "<td>carbon</td><td class=\"ok\">connected</td>",
        "<td>carbon-down</td><td class=\"bad\">not connected</td>",
        "connect failed",
        "bad_value",
        "of 5,000",
        "<polyline id=\"chart-line\" points=\"0.0,",
    ] {
        assert!(page.contains(want), "{want:?} not in the page:\n{page}");
    }
    let ingest = page
        .split("<tr><td>udp 127.0.0.1:")
        .nth(1)
        .expect("the UDP listener's row");
    let lines_per_second: f64 = ingest
        .split("<td class=\"num\">")
        .nth(1)
        .and_then(|c| c.split('<').next())
        .and_then(|c| c.replace(',', "").parse().ok())
        .expect("a lines/s cell");
    assert!(lines_per_second > 0.0, "{ingest}");
    let (status, _, json) = get(http, "/api/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["top"][0]["key"], "checkout.hot", "{json}");
    assert_eq!(json["outputs"][0]["connected"], true);
    assert!(json["listeners"][0]["bad_lines"]["bad_value"].as_u64() > Some(0));
    // The same counters on /metrics.
    let (_, _, metrics) = get(http, "/metrics");
    let udp = format!("udp {}", server.udp());
    for want in [
        format!("statsyard_listener_lines_total{{listener=\"{udp}\"}} "),
        format!("statsyard_listener_bad_lines_total{{listener=\"{udp}\",reason=\"bad_value\"}} "),
        "statsyard_sink_connected{sink=\"carbon\"} 1\n".to_string(),
        "statsyard_sink_connected{sink=\"carbon-down\"} 0\n".to_string(),
    ] {
        assert!(metrics.contains(&want), "{want:?} not in\n{metrics}");
    }

    let Some(chromium) = chromium() else {
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap();
        server.stop();
        return;
    };
    let url = format!("http://{http}/");
    // The DOM after the script polled: `data-polls` counts its redraws.
    let dom = browse(
        &chromium,
        &url,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let polls: u32 = dom
        .split("data-polls=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(polls >= 1, "the script never redrew the page:\n{dom}");
    for want in [
        "live: updated",
        "<td>checkout.hot</td>",
        "<td>carbon</td><td class=\"ok\">connected</td>",
        "<td class=\"bad\">not connected</td>",
        "id=\"s-outputs\"",
        "id=\"s-top\"",
    ] {
        assert!(dom.contains(want), "{want:?} not in the DOM:\n{dom}");
    }
    assert!(!dom.contains("<p id=\"conn\" class=\"bad\">"), "{dom}");

    // Screenshots for docs/http.md.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    for (file, size) in [
        ("status-page.png", "--window-size=1000,1150"),
        ("status-page-phone.png", "--window-size=400,1600"),
    ] {
        let png = target.join(file);
        let _ = std::fs::remove_file(&png);
        browse(
            &chromium,
            &url,
            &[
                "--virtual-time-budget=5000",
                size,
                &format!("--screenshot={}", png.display()),
            ],
        );
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}: no screenshot",
            png.display()
        );
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    server.stop();
}

//! The HTTP server over real sockets: `/health` following the admin console,
//! the `/api/*` endpoints, `/metrics`' content type, and garbage requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{config, secs, send_udp, Server};

/// UDP, HTTP and the admin console on port 0, a 200 ms flush, no sink.
pub fn http_config() -> statsyard::config::Config {
    config(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "200ms"
shutdown_timeout = "2s"
[http]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
"#,
    )
}

/// One HTTP/1.1 exchange with `raw` as the whole request: (status, head, body).
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    // The server closes after answering (`Connection: close`) or on garbage.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// `GET path`: (status, head, body).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Poll `f` until it is true or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One admin console command and its answer (read until `until` appears).
pub fn admin(addr: SocketAddr, command: &str, until: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(secs(10))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&out).contains(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn health_follows_the_admin_console() {
    let server = Server::start(http_config());
    let http = server.running().http.unwrap();
    let console = server.running().admin.unwrap();
    assert_eq!(get(http, "/health").0, 200);
    assert_eq!(get(http, "/health").2, "up\n");
    assert_eq!(admin(console, "health down", "\n"), "health: down\n");
    let (status, _, body) = get(http, "/health");
    assert_eq!((status, body.as_str()), (503, "down\n"));
    assert!(!server.running().front.health.is_up());
    assert_eq!(admin(console, "health UP", "\n"), "health: up\n");
    assert_eq!(get(http, "/health").0, 200);
    server.stop();
}

#[test]
fn api_series_top_stats_and_metrics() {
    let server = Server::start(http_config());
    let http = server.running().http.unwrap();
    send_udp(
        server.udp(),
        &[b"api.hot:1|c\napi.hot:1|c\napi.hot:1|c|@0.5\napi.g:5|g\napi.t:1|ms|#env:prod\nother.s:x|s"],
    );

    // Live: the series are there before any flush has to happen.
    let mut series = serde_json::Value::Null;
    assert!(eventually(secs(10), || {
        series = get_json(http, "/api/series?prefix=api.");
        series["total"] == 3
    }));
    assert_eq!(
        series["series"],
        serde_json::json!([
            { "key": "api.g", "type": "g" },
            { "key": "api.hot", "type": "c" },
            { "key": "api.t;env=prod", "type": "ms" },
        ])
    );
    assert_eq!(series["truncated"], false);
    let one = get_json(http, "/api/series?prefix=api.&limit=1");
    assert_eq!(one["total"], 3);
    assert_eq!(one["truncated"], true);
    assert_eq!(
        one["series"],
        serde_json::json!([{ "key": "api.g", "type": "g" }])
    );
    let all = get_json(http, "/api/series");
    assert!(all["total"].as_u64().unwrap() >= 4, "{all}");

    // Top: the last complete interval, hottest first.
    let mut top = serde_json::Value::Null;
    assert!(eventually(secs(10), || {
        top = get_json(http, "/api/top?n=2");
        top["top"][0]["key"] == "api.hot"
    }));
    assert_eq!(top["top"][0]["type"], "c");
    assert_eq!(top["top"][0]["lines"], 3);
    assert_eq!(top["top"][0]["lines_per_second"], 15.0);
    assert_eq!(top["window_seconds"], 0.2);
    assert_eq!(top["top"].as_array().unwrap().len(), 2);

    let stats = get_json(http, "/api/stats");
    assert_eq!(stats["metrics_received"], 6);
    assert_eq!(stats["packets_received"], 1);
    assert_eq!(stats["health"], "up");
    assert!(stats["flushes"].as_u64().unwrap() >= 1);
    assert!(stats["prometheus"]["series"].is_u64());
    // The exporter runs from start (freed only after idle_timeout).
    assert_eq!(stats["prometheus"]["active"], true, "{stats}");

    let (status, head, _) = get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(get_json(http, "/api/stats")["prometheus"]["active"], true);

    // Bad parameters are 400s with a JSON error.
    for path in [
        "/api/series?limit=0",
        "/api/series?limit=abc",
        "/api/series?limit=1000001",
        "/api/top?n=0",
        "/api/top?n=-1",
        "/api/top?n=100000",
    ] {
        let (status, _, body) = get(http, path);
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert_eq!(get(http, "/nope").0, 404);
    assert_eq!(get(http, "/api").0, 404);
    server.stop();
}

#[test]
fn garbage_requests_get_4xx_and_the_server_lives_on() {
    let server = Server::start(http_config());
    let http = server.running().http.unwrap();
    let garbage: [&[u8]; 6] = [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for g in garbage {
        let (status, head, _) = raw_request(http, g);
        // hyper answers 400 (or 405, 505) to what it can read, and closes
        // the connection on what it cannot.
        assert!(
            status == 0 || (400..500).contains(&status) || status == 505,
            "{:?}: {head}",
            String::from_utf8_lossy(g)
        );
    }
    // A very long request line.
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1 << 20));
    let (status, _, _) = raw_request(http, long.as_bytes());
    assert!(status == 0 || (400..500).contains(&status), "{status}");
    // A client that sends half a request and goes away.
    {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(b"GET /hea").unwrap();
    }
    assert_eq!(get(http, "/health").0, 200);
    server.stop();
}

#[test]
fn health_can_start_down() {
    let mut c = http_config();
    c.health_up = false;
    let server = Server::start(c);
    let http = server.running().http.unwrap();
    assert_eq!(get(http, "/health").0, 503);
    let console = server.running().admin.unwrap();
    assert_eq!(admin(console, "health", "\n"), "health: down\n");
    server.stop();
}

#[test]
fn disabled_servers_are_not_started() {
    let mut c = http_config();
    c.http = None;
    c.admin = None;
    let server = Server::start(c);
    assert!(server.running().http.is_none() && server.running().admin.is_none());
    server.stop();
}

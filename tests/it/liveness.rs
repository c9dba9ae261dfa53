//! `[liveness]` over real sockets: senders on different loopback addresses,
//! one of which stops; what `/api/dark`, `/api/events`, `/metrics`, Graphite
//! and the counters say about it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::get_json;
use crate::support::{config, graphite_config, secs, Graphite, Server};

/// Send `packet` from `from` (an address in 127.0.0.0/8) to `to`.
fn send_from(from: &str, to: SocketAddr, packet: &[u8]) {
    let s = UdpSocket::bind(format!("{from}:0")).unwrap();
    s.send_to(packet, to).unwrap();
}

/// The entry of `/api/dark`'s `list` whose `field` is `name`.
fn entry(dark: &Value, list: &str, field: &str, name: &str) -> Option<Value> {
    dark[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[field] == name)
        .cloned()
}

fn state(dark: &Value, list: &str, field: &str, name: &str) -> Option<String> {
    entry(dark, list, field, name).map(|e| e["state"].as_str().unwrap().to_string())
}

/// Poll `f` every 50 ms until it holds; panic after `timeout`.
fn wait(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The titles of the events `GET /api/events` serves.
fn titles(http: SocketAddr) -> Vec<String> {
    get_json(http, "/api/events")["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_source_that_stops_goes_dark_once_and_comes_back_once() {
    let mut graphite = Graphite::start();
    let s = Server::start(graphite_config(
        graphite.addr,
        200,
        "[http]\naddress = \"127.0.0.1:0\"\n[liveness]\nenabled = true\ndark_after = \"800ms\"\n",
    ));
    let (udp, http) = (s.udp(), s.running().http.unwrap());
    // .2 keeps sending, .3 sends twice and stops, a TCP client once.
    send_from("127.0.0.3", udp, b"a:1|c");
    send_from("127.0.0.3", udp, b"a:1|c");
    let mut tcp = std::net::TcpStream::connect(s.tcp()).unwrap();
    std::io::Write::write_all(&mut tcp, b"b:1|c\n").unwrap();
    let started = Instant::now();
    let keep_up = |until: Duration| {
        while started.elapsed() < until {
            send_from("127.0.0.2", udp, b"a:1|c");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    keep_up(Duration::from_millis(400));
    let d = get_json(http, "/api/dark");
    assert_eq!(
        state(&d, "sources", "source", "127.0.0.3").as_deref(),
        Some("up"),
        "{d}"
    );
    keep_up(Duration::from_millis(2000));
    let d = get_json(http, "/api/dark");
    assert_eq!(
        state(&d, "sources", "source", "127.0.0.3").as_deref(),
        Some("dark"),
        "{d}"
    );
    assert_eq!(
        state(&d, "sources", "source", "127.0.0.2").as_deref(),
        Some("up"),
        "{d}"
    );
    let e = entry(&d, "sources", "source", "127.0.0.3").unwrap();
    assert!(e["silent_seconds"].as_u64().unwrap() >= 1, "{e}");
    assert!(e["last_seen"].as_u64().unwrap() > 1_600_000_000, "{e}");
    // The TCP client's address is the same host: 127.0.0.1, dark too.
    assert_eq!(
        state(&d, "sources", "source", "127.0.0.1").as_deref(),
        Some("dark"),
        "{d}"
    );

    // /metrics: 0 for the dark one, 1 for the live one.
    let (_, _, metrics) = crate::http::get(http, "/metrics");
    assert!(
        metrics.contains("statsyard_source_up{source=\"127.0.0.3\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("statsyard_source_up{source=\"127.0.0.2\"} 1"),
        "{metrics}"
    );

    // Reported once, however many flushes it stays dark.
    keep_up(Duration::from_millis(2600));
    let dark_title = "source 127.0.0.3 went dark";
    let t = titles(http);
    assert_eq!(t.iter().filter(|t| *t == dark_title).count(), 1, "{t:?}");
    assert!(!t.iter().any(|t| t.contains("127.0.0.2")), "{t:?}");

    // Back once.
    send_from("127.0.0.3", udp, b"a:1|c");
    wait(secs(5), "127.0.0.3 back", || {
        titles(http)
            .iter()
            .any(|t| t == "source 127.0.0.3 came back")
    });
    let d = get_json(http, "/api/dark");
    assert_eq!(
        state(&d, "sources", "source", "127.0.0.3").as_deref(),
        Some("up")
    );
    let stats = &s.running().stats.liveness;
    assert_eq!(stats.came_back.load(Ordering::Relaxed), 1);
    assert!(stats.went_dark.load(Ordering::Relaxed) >= 2); // .3 and the TCP client

    // Graphite: the gauge went 1 → 0 → 1.
    let name = "stats.gauges.statsyard_source_up;source=127.0.0.3";
    graphite.until(secs(5), |ls| {
        let v: Vec<&str> = ls
            .iter()
            .filter(|l| l.name == name)
            .map(|l| l.value.as_str())
            .collect();
        v.first() == Some(&"1") && v.contains(&"0") && v.last() == Some(&"1")
    });
    s.stop();
}

#[test]
fn tag_sources_series_ttl_and_the_bound() {
    let s = Server::start(config(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "200ms"
[http]
address = "127.0.0.1:0"
[liveness]
enabled = true
source = "tag:host"
dark_after = "1s"
max_sources = 2
[[liveness.series]]
pattern = "^job\\.backup"
ttl = "600ms"
"#,
    ));
    let (udp, http) = (s.udp(), s.running().http.unwrap());
    let send = |p: &[u8]| send_from("127.0.0.1", udp, p);
    // Three hosts by tag (Graphite tags, DogStatsD tags, an event's h:), a
    // line without the tag, and a job that reports once.
    send(b"cpu;host=web1:1|g\ncpu:1|g|#host:web2\nno.host:1|c\njob.backup.done:1|c|#host:web1");
    send(b"_e{4,4}:boot|done|h:web3");
    wait(secs(5), "two sources", || {
        get_json(http, "/api/dark")["sources"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let d = get_json(http, "/api/dark");
    assert!(entry(&d, "sources", "source", "web1").is_some(), "{d}");
    assert!(entry(&d, "sources", "source", "web2").is_some(), "{d}");
    // The third is over max_sources: counted, not tracked.
    assert!(
        s.running()
            .stats
            .liveness
            .sources_over_limit
            .load(Ordering::Relaxed)
            >= 1
    );
    // The job's series goes dark after its ttl while web1 keeps sending.
    let end = Instant::now() + secs(10);
    loop {
        send(b"cpu;host=web1:1|g\ncpu:1|g|#host:web2");
        let d = get_json(http, "/api/dark");
        let job = "job.backup.done;host=web1";
        if state(&d, "series", "series", job).as_deref() == Some("dark") {
            assert_eq!(
                state(&d, "sources", "source", "web1").as_deref(),
                Some("up")
            );
            assert_eq!(
                entry(&d, "series", "series", job).unwrap()["ttl_seconds"],
                0.6
            );
            break;
        }
        assert!(Instant::now() < end, "the job never went dark: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The gauge follows at the next flushes.
    wait(secs(5), "statsyard_series_up 0", || {
        let (_, _, metrics) = crate::http::get(http, "/metrics");
        metrics.contains("statsyard_series_up{series=\"job.backup.done,host=web1\"} 0")
    });
    assert!(titles(http).contains(&"series job.backup.done;host=web1 went dark".to_string()));
    s.stop();
}

#[test]
fn a_reload_turns_liveness_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    let path = file.clone();
    let base = "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n[http]\naddress = \"127.0.0.1:0\"\n[admin]\nenabled = false\n";
    std::fs::write(&file, base).unwrap();
    let c = statsyard::config::Config::load_toml(&file).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(statsyard::server::start_with(
            c,
            statsyard::server::Source::new(Box::new(move || {
                statsyard::config::Config::load_toml(&file).map_err(|e| e.to_string())
            })),
        ))
        .unwrap();
    let (udp, http) = (running.udp[0], running.http.unwrap());
    send_from("127.0.0.4", udp, b"a:1|c");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_json(http, "/api/dark")["enabled"], false);
    std::fs::write(&path, format!("{base}[liveness]\nenabled = true\n")).unwrap();
    let report = rt.block_on(running.reload.reload()).unwrap();
    assert!(
        report.applied.contains(&"[liveness]".to_string()),
        "{report:?}"
    );
    send_from("127.0.0.4", udp, b"a:1|c");
    wait(secs(5), "the source", || {
        entry(
            &get_json(http, "/api/dark"),
            "sources",
            "source",
            "127.0.0.4",
        )
        .is_some()
    });
    std::fs::write(&path, base).unwrap();
    rt.block_on(running.reload.reload()).unwrap();
    let d = get_json(http, "/api/dark");
    assert_eq!(d["enabled"], false);
    assert!(d["sources"].as_array().unwrap().is_empty(), "{d}");
    running.shutdown();
    rt.block_on(running.wait());
}

/// A source silent for `forget_after` is no longer listed, and its place
/// under `max_sources` is free for another.
#[test]
fn a_silent_source_is_forgotten_and_frees_its_place() {
    let s = Server::start(config(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "200ms"
[http]
address = "127.0.0.1:0"
[liveness]
enabled = true
dark_after = "400ms"
forget_after = "1500ms"
max_sources = 1
"#,
    ));
    let (udp, http) = (s.udp(), s.running().http.unwrap());
    let listed = |name: &str| {
        let d = get_json(http, "/api/dark");
        state(&d, "sources", "source", name)
    };
    send_from("127.0.0.5", udp, b"forget.a:1|c");
    wait(secs(5), "127.0.0.5 listed", || {
        listed("127.0.0.5").is_some()
    });
    // The bound is full: 127.0.0.6 is counted, not tracked.
    send_from("127.0.0.6", udp, b"forget.b:1|c");
    wait(secs(5), "127.0.0.6 over the bound", || {
        s.running()
            .stats
            .liveness
            .sources_over_limit
            .load(Ordering::Relaxed)
            >= 1
    });
    assert_eq!(listed("127.0.0.6"), None);
    wait(secs(5), "127.0.0.5 dark", || {
        listed("127.0.0.5").as_deref() == Some("dark")
    });
    wait(secs(10), "127.0.0.5 forgotten", || {
        listed("127.0.0.5").is_none()
    });
    // Its place is free again.
    send_from("127.0.0.6", udp, b"forget.b:1|c");
    wait(secs(5), "127.0.0.6 listed", || {
        listed("127.0.0.6").as_deref() == Some("up")
    });
    s.stop();
}

//! DogStatsD events and service checks over real sockets: the ring
//! (`/api/events`), the checks (`/api/checks` and their gauges), the bad
//! lines, the repeater (received events as they arrived, statsyard's own as
//! DogStatsD lines) and the console sink of the real binary.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::http::get_json;
use crate::support::{bin, graphite_config, secs, send_udp, Graphite, Proc, Server};

#[test]
fn events_checks_and_bad_lines() {
    let mut graphite = Graphite::start();
    // A statsd server downstream of the repeater.
    let downstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    downstream.set_read_timeout(Some(secs(10))).unwrap();
    let s = Server::start(graphite_config(
        graphite.addr,
        200,
        &format!(
            r#"
[http]
address = "127.0.0.1:0"
[events]
keep = 3
[liveness]
enabled = true
dark_after = "400ms"
[[sink]]
type = "repeater"
destinations = ["{}"]
"#,
            downstream.local_addr().unwrap()
        ),
    ));
    let (udp, http) = (s.udp(), s.running().http.unwrap());
    let packet = b"_e{11,16}:deploy v1.2|rolled out\\nfine|d:1700000000|h:web1|p:low|t:success|#env:prod,team:ops\n\
_sc|db.up|2|h:db1|#env:prod|m:replica lag 30s\n\
_e{5,40}:short|text\n\
_sc|db.up|7\n\
ok:1|c";
    send_udp(udp, &[packet]);

    // The event, in the ring, with every field.
    let deadline = Instant::now() + secs(5);
    let events = loop {
        let e = get_json(http, "/api/events");
        if !e["events"].as_array().unwrap().is_empty() {
            break e;
        }
        assert!(Instant::now() < deadline, "no event");
        std::thread::sleep(Duration::from_millis(50));
    };
    let e = &events["events"][0];
    assert_eq!(e["title"], "deploy v1.2");
    assert_eq!(e["text"], "rolled out\nfine");
    assert_eq!(e["timestamp"], 1_700_000_000);
    assert_eq!(e["host"], "web1");
    assert_eq!(e["priority"], "low");
    assert_eq!(e["alert_type"], "success");
    assert_eq!(e["tags"], serde_json::json!(["env:prod", "team:ops"]));
    assert_eq!(e["origin"], "received");
    assert_eq!(e["source"], "127.0.0.1");

    // The check: listed with its message, and a gauge with its tags.
    let checks = get_json(http, "/api/checks");
    let c = &checks["checks"][0];
    assert_eq!(c["key"], "db.up;env=prod;host=db1");
    assert_eq!(
        (c["status"].clone(), c["state"].clone()),
        (2.into(), "critical".into())
    );
    assert_eq!(c["message"], "replica lag 30s");
    assert_eq!(
        graphite.value_of("stats.gauges.db.up;env=prod;host=db1", secs(5)),
        "2"
    );
    // Two malformed lines (an event shorter than its header, a status 7)
    // are bad lines; the metric next to them is counted.
    graphite.until(secs(5), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.statsd.bad_lines_seen" && l.value == "2")
    });
    assert_eq!(graphite.value_of("stats_counts.ok", secs(5)), "1");

    // The repeater: the packet as it arrived, then (the sender went
    // dark) statsyard's own event as a DogStatsD line.
    let mut buf = vec![0u8; 65536];
    let (n, _) = downstream.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &packet[..]);
    let (n, _) = downstream.recv_from(&mut buf).expect("the dark event");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.starts_with("_e{26,"), "{line}");
    assert!(line.contains(":source 127.0.0.1 went dark|"), "{line}");
    assert!(
        line.contains("|t:error|#source:127.0.0.1,state:dark"),
        "{line}"
    );
    // It parses as the event it is.
    send_udp(udp, &[line.as_bytes()]);

    // The ring keeps the last 3: the oldest (the received one) goes first.
    let deadline = Instant::now() + secs(5);
    loop {
        let ids: Vec<u64> = get_json(http, "/api/events")["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        if ids.first().is_some_and(|&i| i > 1) {
            assert!(ids.len() <= 3, "{ids:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ids:?} {}",
            get_json(http, "/api/events")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let since = get_json(http, "/api/events?since=2&limit=1");
    assert!(since["events"].as_array().unwrap().len() <= 1);
    let stats = get_json(http, "/api/stats");
    assert!(
        stats["events"]["events_received"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert_eq!(stats["events"]["checks_received"], 1);
    s.stop();
}

#[test]
fn the_console_prints_events() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port(true).expect("a free UDP port");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[statsd]\nudp = [\"127.0.0.1:{port}\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n\
             [http]\nenabled = false\n[admin]\nenabled = false\n\
             [[sink]]\ntype = \"console\"\nformat = \"json\"\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let child = bin()
        .args(["--config", &file.display().to_string()])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    let to = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + secs(20);
    let line = loop {
        send_udp(to, &[b"_e{2,2}:hi|yo|t:warning"]);
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("\"type\":\"event\"")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no event printed: {text}");
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["title"].clone(), v["alert_type"].clone()),
        ("hi".into(), "warning".into())
    );
    p.term();
}

//! The forwarding tier over real sockets on loopback: agents (each on its
//! own 127.0.0.x) forward to aggregators, compared with a single server fed
//! the same traffic; an aggregator killed and restarted; one joining.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{config, secs, send_udp, Graphite, Line, Proc, Server};

/// Unix ms now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Wait until the wall clock is `from..to` ms into an interval of `iv` ms;
/// returns the end (Unix ms) of that interval.
fn at_phase(iv: u64, from: u64, to: u64) -> u64 {
    loop {
        let now = now_ms();
        let phase = now % iv;
        if (from..to).contains(&phase) {
            return now - phase + iv;
        }
        let wait = if phase < from { from - phase } else { iv - phase + from };
        std::thread::sleep(Duration::from_millis(wait.max(1)));
    }
}

/// An aggregator on `ip`, port 0, with a graphite sink.
fn aggregator(ip: &str, graphite: SocketAddr, iv_ms: u64, extra: &str) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[http]
enabled = false
[admin]
enabled = false
[flush]
interval = "{iv_ms}ms"
shutdown_timeout = "5s"
[aggregator]
listen = "{ip}:0"
{extra}
[[sink]]
type = "graphite"
address = "{graphite}"
backoff_min = "20ms"
backoff_max = "200ms"
"#
    )))
}

/// An agent on `ip` (UDP, port 0) forwarding to `to`.
fn agent(ip: &str, to: &[SocketAddr], iv_ms: u64, extra: &str) -> Server {
    let dests: Vec<String> = to.iter().map(|a| format!("\"{a}\"")).collect();
    Server::start(config(&format!(
        r#"
[statsd]
udp = ["{ip}:0"]
tcp = []
[http]
enabled = false
[admin]
enabled = false
[flush]
interval = "{iv_ms}ms"
shutdown_timeout = "5s"
[forward]
destinations = [{}]
timeout = "2s"
{extra}
"#,
        dests.join(", ")
    )))
}

/// The traffic of host `h` in one burst: counters with sample rates and a
/// tag, a gauge of its own, set members overlapping the other hosts',
/// timer samples (some sampled).
fn traffic(h: usize) -> Vec<Vec<u8>> {
    let mut p: Vec<String> = Vec::new();
    for i in 0..(10 + h) {
        p.push("fwd.req:1|c|@0.5".into());
        p.push(format!("fwd.bytes:{}|c", 100 * (i + 1)));
    }
    p.push(format!("fwd.host{h}.only:5|c|@0.25"));
    p.push("fwd.tagged:3|c|#env:prod,zone:a".into());
    p.push(format!("fwd.gauge.h{h}:{}|g", 10 * h + 1));
    for i in (h * 5)..(h * 5 + 10) {
        p.push(format!("fwd.users:u{i}|s"));
    }
    for j in 0..20 {
        let rate = if j % 4 == 0 { "|@0.5" } else { "" };
        p.push(format!("fwd.lat:{}|ms{rate}", h * 10 + j));
        p.push(format!("fwd.hist:{}|h", (h * 7 + j) % 13));
    }
    p.into_iter().map(String::into_bytes).collect()
}

/// The lines of `g` stamped `ts` whose name is one of the test's series.
fn flushed(g: &Graphite, ts: u64) -> BTreeMap<String, String> {
    g.seen
        .iter()
        .filter(|l| l.ts == ts && l.name.contains("fwd."))
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Wait until `g` has a line stamped `ts`, then take what follows shortly.
fn wait_flush(g: &mut Graphite, ts: u64, timeout: Duration) {
    g.until(timeout, |ls: &[Line]| ls.iter().any(|l| l.ts == ts));
    g.drain_for(Duration::from_millis(300));
}

#[test]
fn three_agents_and_two_aggregators_flush_what_one_server_does() {
    let iv = 2000;
    let mut g1 = Graphite::start();
    let mut g2 = Graphite::start();
    let mut gs = Graphite::start();
    let a1 = aggregator("127.0.0.11", g1.addr, iv, "grace = \"1500ms\"");
    let a2 = aggregator("127.0.0.12", g2.addr, iv, "grace = \"1500ms\"");
    let to = [a1.running().aggregator.unwrap(), a2.running().aggregator.unwrap()];
    let agents: Vec<Server> = (0..3)
        .map(|h| agent(&format!("127.0.0.{}", 2 + h), &to, iv, ""))
        .collect();
    let single = Server::start(crate::support::graphite_config(
        gs.addr,
        iv,
        "[http]\nenabled = false\n[admin]\nenabled = false",
    ));
    // Two bursts, each inside one interval.
    let mut ends = Vec::new();
    for _ in 0..2 {
        let end = at_phase(iv, 150, 700);
        for (h, a) in agents.iter().enumerate() {
            let packets = traffic(h);
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            send_udp(a.udp(), &refs);
            send_udp(single.udp(), &refs);
        }
        ends.push(end);
        std::thread::sleep(Duration::from_millis(iv));
    }
    for end in &ends {
        let ts = (end + 500) / 1000;
        wait_flush(&mut gs, ts, secs(15));
        wait_flush(&mut g1, ts, secs(15));
        wait_flush(&mut g2, ts, secs(15));
        let want = flushed(&gs, ts);
        let (f1, f2) = (flushed(&g1, ts), flushed(&g2, ts));
        // Sharded: each series on one aggregator (a counter's Graphite
        // lines, a timer's, all on the same one).
        let both: Vec<&String> = f1.keys().filter(|k| f2.contains_key(*k)).collect();
        assert!(both.is_empty(), "on both aggregators: {both:?}");
        assert!(!f1.is_empty() && !f2.is_empty(), "one aggregator got nothing: {f1:?} {f2:?}");
        let mut got = f1.clone();
        got.extend(f2.clone());
        assert!(want.len() > 40, "{want:?}");
        for name in [
            "stats_counts.fwd.req",
            "stats.sets.fwd.users.count",
            "stats.timers.fwd.lat.upper_90",
            "stats.timers.fwd.lat.count",
            "stats.gauges.fwd.gauge.h2",
        ] {
            assert!(want.contains_key(name), "{name} not in {want:?}");
        }
        assert_eq!(got, want, "interval ending {end}");
        // 3 hosts x (10+h) x 2: 66 requests; 20 distinct users.
        assert_eq!(want["stats_counts.fwd.req"], "66");
        assert_eq!(want["stats.sets.fwd.users.count"], "20");
    }
    // The aggregators flushed early (every agent had sent its interval).
    let early: u64 = [&a1, &a2]
        .iter()
        .map(|a| a.running().stats.aggregator().flushed_early.load(Ordering::Relaxed))
        .sum();
    assert!(early >= 2, "{early} early flushes");
    let forwarded: u64 = agents
        .iter()
        .map(|a| a.running().stats.forward().series.load(Ordering::Relaxed))
        .sum();
    assert!(forwarded > 0);
}

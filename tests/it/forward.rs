//! The forwarding tier over real sockets on loopback: agents (each on its
//! own 127.0.0.x) forward to aggregators, compared with a single server fed
//! the same traffic; an aggregator killed and restarted; one joining.

use std::collections::BTreeMap;
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
        let wait = if phase < from {
            from - phase
        } else {
            iv - phase + from
        };
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
    let to = [
        a1.running().aggregator.unwrap(),
        a2.running().aggregator.unwrap(),
    ];
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
        assert!(
            !f1.is_empty() && !f2.is_empty(),
            "one aggregator got nothing: {f1:?} {f2:?}"
        );
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
        .map(|a| {
            a.running()
                .stats
                .aggregator()
                .flushed_early
                .load(Ordering::Relaxed)
        })
        .sum();
    assert!(early >= 2, "{early} early flushes");
    let forwarded: u64 = agents
        .iter()
        .map(|a| a.running().stats.forward().series.load(Ordering::Relaxed))
        .sum();
    assert!(forwarded > 0);
    // Both roles' self-metrics, as /metrics renders them...
    let metrics = |s: &Server| {
        let mut out = Vec::new();
        statsyard::stats::render::prometheus(&s.running().stats, None, &mut out);
        String::from_utf8(out).unwrap()
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
    };
    let agent = metrics(&agents[0]);
    assert!(value(&agent, "statsyard_forward_series_total") > 0.0);
    assert!(value(&agent, "statsyard_forward_bytes_total") > 0.0);
    assert_eq!(value(&agent, "statsyard_forward_dropped_series_total"), 0.0);
    let merged: f64 = [&a1, &a2]
        .iter()
        .map(|a| value(&metrics(a), "statsyard_aggregator_series_merged_total"))
        .sum();
    // Read after the merges: an interval may be on its way meanwhile, but
    // nothing is merged that was not forwarded, nor merged twice.
    let forwarded_since: u64 = agents
        .iter()
        .map(|a| a.running().stats.forward().series.load(Ordering::Relaxed))
        .sum();
    assert!(
        merged > 0.0 && merged <= forwarded_since as f64,
        "{merged} merged of {forwarded_since}"
    );
    assert!(value(&metrics(&a1), "statsyard_aggregator_merge_seconds_total") > 0.0);
    // ...and in the aggregators' Graphite output.
    let graphite_merged = g1
        .seen
        .iter()
        .chain(g2.seen.iter())
        .filter(|l| l.name.ends_with("statsyard.aggregator.series"))
        .filter_map(|l| l.value.parse::<f64>().ok())
        .sum::<f64>();
    assert!(graphite_merged > 0.0, "no statsyard.aggregator.series line");
}

/// POST a body to `/v1/forward` at `to` over a plain HTTP/1.1 connection;
/// the answer's status, or `None` if the connection failed.
fn post(to: SocketAddr, body: &[u8], encoding: Option<&str>) -> Option<u16> {
    let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let enc = encoding
        .map(|e| format!("Content-Encoding: {e}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/forward HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.get(9..12)?.parse().ok()
}

/// A message from a fake agent, in protobuf (and snappy).
fn batch(
    agent: &str,
    start: u64,
    iv: u64,
    part: u32,
    last: bool,
) -> statsyard::forward::proto::Batch {
    statsyard::forward::proto::Batch {
        version: statsyard::forward::proto::VERSION,
        agent: agent.into(),
        interval_start_ms: start,
        interval_ms: iv,
        part,
        last,
        flushed_unix_ms: now_ms(),
        series: Vec::new(),
    }
}

#[test]
fn bad_messages_are_refused_counted_and_the_aggregator_goes_on() {
    use statsyard::forward::proto::{body, Series};
    let mut g = Graphite::start();
    let iv = 1000;
    let a = aggregator(
        "127.0.0.31",
        g.addr,
        iv,
        "grace = \"200ms\"\nmax_message_bytes = 131072",
    );
    let to = a.running().aggregator.unwrap();
    let start = now_ms() / iv * iv;
    // Garbage, truncated snappy, another version, a bad key, too large.
    assert_eq!(post(to, b"not protobuf at all", None), Some(400));
    assert_eq!(post(to, b"\x10\x00\x01", Some("snappy")), Some(400));
    assert_eq!(post(to, b"x", Some("gzip")), Some(415));
    let mut v9 = batch("t/1", start, iv, 0, true);
    v9.version = 9;
    assert_eq!(post(to, &body(&v9, true).0, Some("snappy")), Some(400));
    let mut bad_key = batch("t/1", start, iv, 0, true);
    bad_key.series.push(Series {
        key: b"evil\nstats.injected 1 1".to_vec(),
        ..Series::default()
    });
    assert_eq!(post(to, &body(&bad_key, true).0, Some("snappy")), Some(400));
    assert_eq!(post(to, &vec![0u8; 200_000], None), Some(413));
    // A good one after all that is merged and flushed.
    let mut good = batch("t/1", start, iv, 0, true);
    good.series.push(Series {
        key: b"fwd.ok".to_vec(),
        counter: 7.0,
        ..Series::default()
    });
    let (bytes, _) = body(&good, true);
    assert_eq!(post(to, &bytes, Some("snappy")), Some(200));
    // Sent twice (a lost answer): merged once.
    assert_eq!(post(to, &bytes, Some("snappy")), Some(200));
    g.until_all(secs(10), &[("stats_counts.fwd.ok", "7")]);
    let s = a.running().stats.aggregator();
    assert_eq!(s.refused_decode.load(Ordering::Relaxed), 3);
    assert_eq!(s.refused_version.load(Ordering::Relaxed), 1);
    assert_eq!(s.refused_invalid.load(Ordering::Relaxed), 1);
    assert_eq!(s.refused_too_large.load(Ordering::Relaxed), 1);
    assert_eq!(s.duplicates.load(Ordering::Relaxed), 1);
    assert!(!g.seen.iter().any(|l| l.name.contains("injected")));
    g.drain_for(Duration::from_millis(1500));
    assert_eq!(g.sum("stats_counts.fwd.ok"), 7.0, "counted once");
}

/// An aggregator subprocess's config: fixed port, journal, graphite sink.
fn aggregator_file(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    graphite: SocketAddr,
    iv: u64,
) -> std::path::PathBuf {
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(
        &f,
        format!(
            r#"
[statsd]
udp = []
tcp = []
[http]
enabled = false
[admin]
enabled = false
[flush]
interval = "{iv}ms"
shutdown_timeout = "5s"
[aggregator]
listen = "127.0.0.1:{port}"
grace = "1500ms"
journal_dir = "{name}-journal"
[[sink]]
type = "graphite"
address = "{graphite}"
backoff_min = "20ms"
backoff_max = "200ms"
"#
        ),
    )
    .unwrap();
    f
}

#[test]
fn an_aggregator_killed_and_restarted_loses_and_doubles_nothing() {
    killed_and_restarted(false);
}

/// The same with `on_down = "spool"`: the agents keep the down aggregator's
/// series (in memory, then on disk) and send them when it is back.
#[test]
fn with_on_down_spool_a_restarted_aggregator_gets_its_own_series_late() {
    killed_and_restarted(true);
}

fn killed_and_restarted(spool: bool) {
    let iv = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (mut ga, mut gb) = (Graphite::start(), Graphite::start());
    let (pa, pb) = (
        crate::support::free_tcp_port(),
        crate::support::free_tcp_port(),
    );
    let (fa, fb) = (
        aggregator_file(dir.path(), "a", pa, ga.addr, iv),
        aggregator_file(dir.path(), "b", pb, gb.addr, iv),
    );
    let to_a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
    let to_b: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
    let a = Proc::statsyard(&fa, &dir.path().join("a.log"));
    let mut b = Proc::statsyard(&fb, &dir.path().join("b.log"));
    a.wait_tcp(to_a);
    b.wait_tcp(to_b);
    let agents: Vec<Server> = (0..2)
        .map(|h| {
            let extra = if spool {
                format!(
                    "on_down = \"spool\"\nspool_dir = {:?}\n",
                    dir.path().join(format!("spool-{h}")).display().to_string()
                )
            } else {
                String::new()
            };
            agent(
                &format!("127.0.0.{}", 41 + h + 10 * usize::from(spool)),
                &[to_a, to_b],
                iv,
                &extra,
            )
        })
        .collect();
    // A straggler B always waits for: B flushes on its grace, so it
    // always holds acknowledged state that only its journal keeps.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let straggler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut part = 0;
            while !stop.load(Ordering::Relaxed) {
                let start = now_ms() / iv * iv;
                let b = batch("straggler/1", start, iv, part, false);
                let _ = post(
                    to_b,
                    &statsyard::forward::proto::body(&b, true).0,
                    Some("snappy"),
                );
                part += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let series = 40;
    let mut rounds = 0u64;
    let started = Instant::now();
    let mut killed = false;
    let mut restarted = false;
    while started.elapsed() < Duration::from_secs(8) {
        for a in &agents {
            let packets: Vec<Vec<u8>> = (0..series)
                .map(|i| format!("kill.c{i}:1|c").into_bytes())
                .collect();
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            send_udp(a.udp(), &refs);
        }
        rounds += 1;
        if !killed && started.elapsed() > Duration::from_millis(2500) {
            // B holds acknowledged, unflushed state now (the straggler).
            b.signal(libc::SIGKILL);
            let _ = b.0.wait();
            killed = true;
        }
        if killed && !restarted && started.elapsed() > Duration::from_millis(4500) {
            b = Proc::statsyard(&fb, &dir.path().join("b2.log"));
            b.wait_tcp(to_b);
            restarted = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the agents see B again, then stop them: their final flush goes
    // out before they exit.
    std::thread::sleep(Duration::from_millis(2500));
    let rerouted: u64 = agents
        .iter()
        .map(|a| a.running().stats.forward().rerouted.load(Ordering::Relaxed))
        .sum();
    let delayed: u64 = agents
        .iter()
        .map(|a| a.running().stats.forward().delayed.load(Ordering::Relaxed))
        .sum();
    for a in agents {
        a.stop();
    }
    stop.store(true, Ordering::Relaxed);
    straggler.join().unwrap();
    a.term();
    b.term();
    ga.drain_for(Duration::from_millis(500));
    gb.drain_for(Duration::from_millis(500));
    let log = std::fs::read_to_string(dir.path().join("b2.log")).unwrap();
    assert!(
        log.contains("journal replayed"),
        "B replayed nothing:\n{log}"
    );
    if spool {
        assert!(delayed > 0, "nothing was kept for B while it was down");
        assert_eq!(rerouted, 0, "on_down = \"spool\" reroutes nothing");
    } else {
        assert!(rerouted > 0, "nothing was rerouted while B was down");
    }
    // Every counter's total over the run, both aggregators together.
    for i in 0..series {
        let name = format!("stats_counts.kill.c{i}");
        let total = ga.sum(&name) + gb.sum(&name);
        assert_eq!(
            total,
            (rounds * 2) as f64,
            "{name}: A {} + B {}",
            ga.sum(&name),
            gb.sum(&name)
        );
    }
}

#[test]
fn a_third_aggregator_joining_moves_a_third_and_counts_nothing_twice() {
    let iv = 1500;
    let mut gs: Vec<Graphite> = (0..3).map(|_| Graphite::start()).collect();
    let aggs: Vec<Server> = (0..3)
        .map(|i| {
            aggregator(
                &format!("127.0.0.{}", 51 + i),
                gs[i].addr,
                iv,
                "grace = \"1s\"",
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = aggs
        .iter()
        .map(|a| a.running().aggregator.unwrap())
        .collect();
    let agent_text = |n: usize, ip: &str| {
        let dests: Vec<String> = addrs[..n].iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[statsd]\nudp = [\"{ip}\"]\ntcp = []\n[http]\nenabled = false\n[admin]\nenabled = false\n\
             [flush]\ninterval = \"{iv}ms\"\nshutdown_timeout = \"5s\"\n\
             [forward]\ndestinations = [{}]\ntimeout = \"2s\"\n",
            dests.join(", ")
        )
    };
    // Agents on fixed UDP ports (a reload keeps the listener).
    let texts: Vec<std::sync::Arc<std::sync::Mutex<String>>> = (0..2)
        .map(|h| {
            let port = crate::support::free_port(true).unwrap();
            std::sync::Arc::new(std::sync::Mutex::new(agent_text(
                2,
                &format!("127.0.0.{}:{port}", 61 + h),
            )))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agents: Vec<statsyard::server::Running> = texts
        .iter()
        .map(|t| {
            let text = t.clone();
            let c = config(&t.lock().unwrap());
            let load: statsyard::server::LoadFn = Box::new(move || {
                statsyard::config::toml::from_str(&text.lock().unwrap(), "agent.toml")
                    .map_err(|e| e.to_string())
            });
            rt.block_on(statsyard::server::start_with(
                c,
                statsyard::server::Source::new(load),
            ))
            .unwrap()
        })
        .collect();
    let series = 300;
    // Which aggregator each series' count came from, per interval.
    let burst = |gs: &mut [Graphite]| -> BTreeMap<usize, Vec<(usize, f64)>> {
        let end = at_phase(iv, 150, 600);
        for a in &agents {
            let packets: Vec<Vec<u8>> = (0..series)
                .map(|i| format!("mem.c{i}:1|c").into_bytes())
                .collect();
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            send_udp(a.udp[0], &refs);
        }
        let ts = (end + 500) / 1000;
        for g in gs.iter_mut() {
            wait_flush(g, ts, secs(15));
        }
        let mut owners: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
        for (gi, g) in gs.iter().enumerate() {
            for l in g
                .seen
                .iter()
                .filter(|l| l.ts == ts && l.name.starts_with("stats_counts.mem.c"))
            {
                let v: f64 = l.value.parse().unwrap();
                if v != 0.0 {
                    let i: usize = l.name["stats_counts.mem.c".len()..].parse().unwrap();
                    owners.entry(i).or_default().push((gi, v));
                }
            }
        }
        owners
    };
    let before = burst(&mut gs);
    // The third joins: the agents' destinations, reloaded live.
    for t in &texts {
        let mut text = t.lock().unwrap();
        let ip = text
            .split("udp = [\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        *text = agent_text(3, &ip);
    }
    for a in &agents {
        let report = rt.block_on(a.reload.reload()).unwrap();
        assert_eq!(report.applied, vec!["[forward]"], "{report:?}");
    }
    // Two intervals after the change.
    std::thread::sleep(Duration::from_millis(iv));
    let after = burst(&mut gs);
    let mut moved = 0;
    for (when, owners) in [("before", &before), ("after", &after)] {
        assert_eq!(owners.len(), series, "{when}: every series flushed");
        for (i, o) in owners.iter() {
            // Once, with both agents' counts: nothing counted twice.
            assert_eq!(o, &vec![(o[0].0, 2.0)], "{when}: series {i}");
        }
    }
    for i in 0..series {
        let (b, a) = (before[&i][0].0, after[&i][0].0);
        assert!(b < 2, "series {i} on the third before it joined");
        if a != b {
            assert_eq!(a, 2, "series {i} moved between the first two");
            moved += 1;
        }
    }
    // About a third (100 of 300), within what chance allows.
    assert!((60..=140).contains(&moved), "{moved} of {series} moved");
    for a in agents {
        a.shutdown();
        rt.block_on(a.wait());
    }
}

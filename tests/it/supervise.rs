//! Supervision over real sockets: a sink that panics on every flush is
//! restarted (and counted), while the other sinks keep delivering every flush
//! and the server keeps serving and shuts down cleanly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statsyard::server::ExtraSink;
use statsyard::sink::{BoxFuture, Sink, SinkMsg};
use tokio::sync::mpsc;

use crate::http::get;
use crate::support::{config, secs, send_udp, Graphite, Server};

/// Panics on every flush it is given; counts the flushes it saw.
struct Boom {
    seen: Arc<AtomicU64>,
}

impl Sink for Boom {
    fn name(&self) -> &str {
        "boom"
    }

    fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        Box::pin(async move {
            while let Some(msg) = rx.recv().await {
                if let SinkMsg::Flush(_) = msg {
                    self.seen.fetch_add(1, Ordering::Relaxed);
                    panic!("injected fault: the boom sink panics on every flush");
                }
            }
        })
    }
}

fn stats_json(http: std::net::SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(http, "/api/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Every flush's `stats_counts.sv.c`: (timestamp, value), sorted.
fn flushes(g: &Graphite) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> = g
        .seen
        .iter()
        .filter(|l| l.name == "stats_counts.sv.c")
        .map(|l| (l.ts, l.value.parse::<f64>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    v
}

#[test]
fn a_panicking_sink_is_restarted_while_the_others_deliver_every_flush() {
    let mut a = Graphite::start();
    let mut b = Graphite::start();
    let cfg = config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "1s"
shutdown_timeout = "3s"
[http]
address = "127.0.0.1:0"
[admin]
enabled = false
[[sink]]
type = "graphite"
name = "good-a"
address = "{}"
[[sink]]
type = "graphite"
name = "good-b"
address = "{}"
"#,
        a.addr, b.addr
    ));
    let seen = Arc::new(AtomicU64::new(0));
    let builds = Arc::new(AtomicU64::new(0));
    let (s, n) = (seen.clone(), builds.clone());
    let boom = ExtraSink {
        name: "boom".into(),
        queue: 4,
        build: Box::new(move |_stats| {
            n.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Boom { seen: s.clone() }))
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(statsyard::server::start_with_extra_sinks(cfg, vec![boom]))
        .expect("server starts");
    let server = Server {
        rt,
        running: Some(running),
    };
    let udp = server.udp();
    let http = server.running().http.expect("http enabled");

    // One value per round, each in its own flush: the good sinks must see
    // every one, in a flush of its own.
    let rounds = [1u64, 2, 3, 4, 5];
    for (i, v) in rounds.iter().enumerate() {
        send_udp(udp, &[format!("sv.c:{v}|c").as_bytes()]);
        for g in [&mut a, &mut b] {
            let want = *v as f64;
            let deadline = Instant::now() + secs(10);
            loop {
                if flushes(g).iter().any(|(_, x)| *x == want) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {i}: value {v} never reached a good sink: {:?}",
                    flushes(g)
                );
                g.drain_for(Duration::from_millis(100));
            }
        }
    }

    // The boom sink panicked at each flush it got and was built again.
    let deadline = Instant::now() + secs(15);
    let restarts = loop {
        let st = stats_json(http);
        let r = st["task_restarts"]["sink/boom"].as_u64().unwrap_or(0);
        if r >= 2 {
            break r;
        }
        assert!(Instant::now() < deadline, "boom restarts: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(builds.load(Ordering::Relaxed) >= 2);
    assert!(seen.load(Ordering::Relaxed) >= 2);

    let st = stats_json(http);
    let sinks = st["sinks"].as_array().unwrap();
    let sink = |name: &str| sinks.iter().find(|s| s["name"] == name).unwrap().clone();
    for good in ["good-a", "good-b"] {
        let s = sink(good);
        assert_eq!(s["dropped"], 0, "{s}");
        assert_eq!(s["queue_dropped"], 0, "{s}");
        assert_eq!(st["task_restarts"][format!("sink/{good}")], 0, "{st}");
    }
    // What the boom sink lost is counted, never silent.
    assert!(
        sink("boom")["dropped"].as_u64().unwrap() >= restarts,
        "{st}"
    );
    // Every other task is registered, with no restarts.
    assert_eq!(st["task_restarts"]["flusher"], 0, "{st}");
    assert_eq!(st["task_restarts"][format!("udp/{udp}")], 0, "{st}");
    assert_eq!(st["task_restarts"]["http"], 0, "{st}");

    let (status, _, metrics) = get(http, "/metrics");
    assert_eq!(status, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("statsyard_task_restarts_total{task=\"sink/boom\"}"))
        .unwrap_or_else(|| panic!("no boom restarts in /metrics:\n{metrics}"));
    let on_metrics: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(on_metrics >= restarts, "{line}");

    // Still serving: one more value reaches both good sinks after the restarts.
    send_udp(udp, &[b"sv.c:100|c"]);
    for g in [&mut a, &mut b] {
        g.until(secs(10), |ls| {
            ls.iter()
                .any(|l| l.name == "stats_counts.sv.c" && l.value == "100")
        });
    }
    let (status, _, _) = get(http, "/health");
    assert_eq!(status, 200);

    // Ordered shutdown, boom sink included, within the bound of `stop`.
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < secs(15), "{:?}", started.elapsed());

    // Both good sinks got every flush (the final one included) with the
    // same values: each value in its own flush, nothing lost, nothing doubled.
    a.drain_for(Duration::from_millis(300));
    b.drain_for(Duration::from_millis(300));
    let (fa, fb) = (flushes(&a), flushes(&b));
    assert_eq!(fa, fb);
    assert!(fa.len() >= 7, "{fa:?}");
    let mut values: Vec<f64> = fa.iter().map(|(_, v)| *v).filter(|v| *v != 0.0).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 100.0]);
    for g in [&a, &b] {
        assert_eq!(g.sum("stats_counts.sv.c"), 115.0);
        // The restarts reach Graphite too, in the flush self-metrics.
        let r = g.sum("stats_counts.statsd.statsyard.task_restarts");
        assert!(r >= restarts as f64, "{r} < {restarts}");
    }
}

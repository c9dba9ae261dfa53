//! Prometheus: the exposition checked by `promtool`, a real Prometheus
//! scraping a real server, and a statsd_exporter mapping file end to end.
//!
//! The peers (Debian's `prometheus` package: `/usr/bin/prometheus`,
//! `/usr/bin/promtool`) are installed by `.ci/run`. Without them the tests
//! say so and pass, except under `CI`, where they fail.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::metric::MetricRef;
use statsyard::parse::{Handler, ParseError, ParseOptions, StatsdParser};
use statsyard::sink::prometheus::exporter::{Exporter, PromOptions};
use statsyard::sink::prometheus::mapping::Mapping;
use statsyard::sink::prometheus::options::ObserverType;

use crate::support::{config, free_tcp_port, relay_section, send_udp, Server};

/// The peer binary, or `None` (after saying why) when it is missing outside CI.
pub fn peer(name: &str) -> Option<PathBuf> {
    crate::stores::peer_of(name, "prometheus")
}

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/prometheus")
        .join(file)
}

/// `promtool check metrics` on `text`: its exit status and output.
fn promtool_check(promtool: &Path, text: &[u8]) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text)
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool finishes");
    let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
    msg.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), msg)
}

struct ToShard<'a>(&'a mut Shard);

impl Handler for ToShard<'_> {
    fn metric(&mut self, m: MetricRef<'_>) {
        self.0.insert(&m);
    }
    fn bad_line(&mut self, line: &[u8], err: ParseError) {
        panic!("corpus line {:?}: {err}", String::from_utf8_lossy(line));
    }
}

/// The corpus fed through an exporter, one flush per paragraph so that the
/// conflicting lines come after the series they conflict with.
fn corpus_exposition(opts: PromOptions) -> (Exporter, Vec<u8>) {
    let text = std::fs::read_to_string(data("corpus.statsd")).unwrap();
    let agg = AggregateOptions::default();
    let mut registry = Registry::new(&agg);
    let mut exporter = Exporter::new(opts);
    let mut parser = StatsdParser::new(ParseOptions::default());
    for paragraph in text.split("\n\n") {
        let mut shard = Shard::new(&agg);
        for line in paragraph.lines().filter(|l| !l.starts_with('#')) {
            parser.parse_packet(line.as_bytes(), &mut ToShard(&mut shard));
        }
        registry.merge(shard.take());
        exporter.observe(&registry, Instant::now());
        registry.end_interval();
    }
    let mut out = Vec::new();
    exporter.render(&mut out);
    (exporter, out)
}

#[test]
fn promtool_accepts_the_corpus_exposition() {
    let Some(promtool) = peer("promtool") else {
        return;
    };
    for observer in [ObserverType::Summary, ObserverType::Histogram] {
        let (exporter, text) = corpus_exposition(PromOptions {
            observer,
            ..PromOptions::default()
        });
        let shown = String::from_utf8_lossy(&text).into_owned();
        assert_eq!(exporter.conflicts(), 4, "{shown}");
        for want in [
            "requests_total 5\n",
            "api_requests_total{env=\"dev\",host=\"web-2\"} 1\n",
            "api_requests_total{env=\"qa\",host=\"web-3\"} 1\n",
            "api_requests_total{env=\"stage\",host=\"web-4\"} 1\n",
            "api_errors_total 1\n",
            "_9lives 1\n",
            "unique_users 2\n",
        ] {
            assert!(shown.contains(want), "{want:?} not in\n{shown}");
        }
        let (ok, msg) = promtool_check(&promtool, &text);
        assert!(ok, "promtool check metrics ({observer:?}):\n{msg}\n{shown}");
    }
}

/// A minimal HTTP/1.0 GET (so that no server answers chunked): status and
/// body; status 0 if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    crate::stores::request(addr, "GET", path, b"")
}

/// A server with UDP on loopback and HTTP on ephemeral ports, a `flush_ms`
/// flush, and `extra` (sections, sinks).
pub fn http_server(flush_ms: u64, extra: &str) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[flush]
interval = "{flush_ms}ms"
shutdown_timeout = "2s"
[http]
enabled = true
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
{extra}
"#
    )))
}

fn http_addr(server: &Server) -> SocketAddr {
    server.running().http.expect("http is enabled")
}

/// Poll `/metrics` until `done` holds, up to `timeout`; the last body.
fn metrics_until(addr: SocketAddr, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn promtool_accepts_a_real_servers_metrics() {
    let Some(promtool) = peer("promtool") else {
        return;
    };
    // A relay too, so that its families are checked as well.
    let server = http_server(100, &relay_section("127.0.0.1:1"));
    // The exporter observes from the first scrape on.
    assert_eq!(http_get(http_addr(&server), "/metrics").0, 200);
    let text = std::fs::read_to_string(data("corpus.statsd")).unwrap();
    for paragraph in text.split("\n\n") {
        for line in paragraph.lines().filter(|l| !l.starts_with('#')) {
            send_udp(server.udp(), &[line.as_bytes()]);
        }
        // Separate flushes, so that the conflicting lines come last.
        std::thread::sleep(Duration::from_millis(300));
    }
    let body = metrics_until(http_addr(&server), Duration::from_secs(10), |b| {
        b.contains("unique_users ") && b.contains("statsyard_packets_received_total")
    });
    assert!(body.contains("statsyard_relay_destination_up{"), "{body}");
    assert!(body.contains("api_requests_total{"), "{body}");
    let (ok, msg) = promtool_check(&promtool, body.as_bytes());
    assert!(ok, "promtool check metrics:\n{msg}\n{body}");
    server.stop();
}

fn prom_stats(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(addr, "/api/stats");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["prometheus"].clone()
}

/// Poll `/api/stats` (which is no scrape) until `done` holds, up to 10 s.
fn prom_stats_until(
    addr: SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = prom_stats(addr);
        if done(&p) || Instant::now() > deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_exporter_runs_from_start_and_is_freed_after_idle_timeout() {
    let server = http_server(100, "[prometheus]\nidle_timeout = \"1500ms\"\n");
    let addr = http_addr(&server);
    // Sent before any scrape: the first scrape shows it.
    send_udp(server.udp(), &[b"life.g:5|g\nlife.c:2|c"]);
    let body = metrics_until(addr, Duration::from_secs(10), |b| {
        b.contains("life_c_total 2\n")
    });
    assert!(body.contains("\nlife_g 5\n"), "{body}");
    assert!(body.contains("statsyard_prometheus_active 1\n"), "{body}");
    let p = prom_stats(addr);
    assert_eq!(p["active"], true, "{p}");
    // Ours and statsd's own (packets_received, timestamp_lag...).
    assert!(p["series"].as_u64() >= Some(2), "{p}");

    // Not scraped for idle_timeout: freed (/api/stats does not count).
    let p = prom_stats_until(addr, |p| p["active"] == false);
    assert_eq!(p["active"], false, "{p}");
    assert_eq!(p["series"], 0, "{p}");

    // Scraped again: active again, the gauge seeded at once, and the
    // counter restarted (a reset to Prometheus).
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\nlife_g 5\n"), "{body}");
    assert!(body.contains("statsyard_prometheus_active 1\n"), "{body}");
    assert!(!body.contains("life_c_total"), "{body}");
    send_udp(server.udp(), &[b"life.c:1|c"]);
    let body = metrics_until(addr, Duration::from_secs(10), |b| {
        b.contains("life_c_total 1\n")
    });
    assert!(body.contains("life_c_total 1\n"), "{body}");
    server.stop();
}

#[test]
fn mapping_file_through_a_real_server() {
    let mapping = data("mapping.yml");
    let (_, unsupported) = Mapping::from_file(&mapping).expect("the fixture parses");
    assert_eq!(unsupported, ["mappings[5].some_future_key"]);
    let server = http_server(
        100,
        &format!(
            "[prometheus]\nmapping_file = {:?}\n",
            mapping.display().to_string()
        ),
    );
    // The exporter observes from the first scrape on.
    assert_eq!(http_get(http_addr(&server), "/metrics").0, 200);
    send_udp(
        server.udp(),
        &[
            b"app.shop.requests:3|c|#region:eu",
            b"db.orders.query_time:50|ms\ndb.orders.query_time:500|ms",
            b"queue.depth:7|g\nqueue.depth:2|c",
            b"debug.noise:1|c",
            b"job.backup.duration:2000|ms",
            b"other.latency:40|ms",
        ],
    );
    let body = metrics_until(http_addr(&server), Duration::from_secs(10), |b| {
        b.contains("job_duration") && b.contains("other_latency")
    });
    for want in [
        "# HELP app_requests_total Requests by app.\n",
        "app_requests_total{app=\"shop\",region=\"eu\"} 3\n",
        "# TYPE db_query_seconds histogram\n",
        "db_query_seconds_bucket{table=\"orders\",le=\"0.01\"} 0\n",
        "db_query_seconds_bucket{table=\"orders\",le=\"0.1\"} 1\n",
        "db_query_seconds_bucket{table=\"orders\",le=\"1\"} 2\n",
        "db_query_seconds_count{table=\"orders\"} 2\n",
        "queue_depth_mapped 7\n",
        "queue_depth_total 2\n",
        "job_duration{job=\"backup\",quantile=\"0.9\"} 2\n",
        // Unmapped timers take the defaults' quantiles.
        "other_latency{quantile=\"0.99\"} 0.04\n",
    ] {
        assert!(body.contains(want), "{want:?} not in\n{body}");
    }
    assert!(!body.contains("debug_noise"), "{body}");
    assert!(!body.contains("\ndropped"), "{body}");
    server.stop();
}

/// The Prometheus child, killed (by its own pid) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(bin: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: statsyard\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The values of an instant query's result vector, with their labels.
    fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        query_result(self.addr, q)
    }

    /// Poll `q` until `ok` accepts its result, up to `deadline`.
    fn wait_for(
        &self,
        q: &str,
        deadline: Instant,
        ok: impl Fn(&[(serde_json::Value, f64)]) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        loop {
            let r = self.query(q);
            if ok(&r) {
                return r;
            }
            if Instant::now() > deadline {
                panic!("{q}: {r:?}\nprometheus log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result vector of an instant PromQL query to the Prometheus at
/// `addr`, with labels; empty if it does not answer.
pub fn query_result(addr: SocketAddr, q: &str) -> Vec<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let (status, body) = match TcpStream::connect(addr) {
        Ok(_) => http_get(addr, &path),
        Err(_) => return Vec::new(),
    };
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let value = r["value"][1].as_str()?.parse().ok()?;
                    Some((r["metric"].clone(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_counters_gauges_summaries_and_labels() {
    let Some(bin) = peer("prometheus") else {
        return;
    };
    let start = Instant::now();
    let server = http_server(250, "");
    let prom = Prometheus::start(&bin, http_addr(&server));
    let deadline = start + Duration::from_secs(35);

    // 20 increments a second for the whole test, a gauge, a steady timer.
    let udp = server.udp();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send_udp(
                    udp,
                    &[b"shop.orders:1|c|#env:prod,region:eu\nroom.temp:21.5|g|#room:lab\nshop.latency:100|ms"],
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let rate = prom.wait_for("rate(shop_orders_total{env=\"prod\"}[5s])", deadline, |r| {
        r.len() == 1 && r[0].1 > 0.0
    });
    // Labels come from the tags, and the rate is about what was sent
    // (wide bounds: two cores are shared with other work).
    assert_eq!(rate[0].0["region"], "eu", "{rate:?}");
    assert!((5.0..=40.0).contains(&rate[0].1), "{rate:?}");

    let gauge = prom.wait_for("room_temp", deadline, |r| r.len() == 1);
    assert_eq!(gauge[0].0["room"], "lab", "{gauge:?}");
    assert_eq!(gauge[0].1, 21.5);

    let q = prom.wait_for("shop_latency{quantile=\"0.5\"}", deadline, |r| {
        r.len() == 1 && r[0].1.is_finite()
    });
    assert_eq!(q[0].1, 0.1, "{q:?}");

    let up = prom.wait_for("up{job=\"statsyard\"}", deadline, |r| r.len() == 1);
    assert_eq!(up[0].1, 1.0, "scrapes fail:\n{}", prom.log());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    drop(prom);
    server.stop();
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
}

/// One series, two outputs: Graphite gets the reference statsd's sanitised
/// key, `/metrics` the label values and the name as the client sent them.
#[test]
fn label_values_as_sent_on_metrics_sanitised_in_graphite() {
    let mut g = crate::support::Graphite::start();
    let server = http_server(
        200,
        &format!(
            "[[sink]]\ntype = \"graphite\"\naddress = \"{}\"\nbackoff_min = \"20ms\"\n",
            g.addr
        ),
    );
    send_udp(
        server.udp(),
        &[b"api.req:1|c|#route:/x,tag1:foo:bar\napi.req:2|c|#route:-x,tag1:foobar"],
    );
    send_udp(server.udp(), &[b"request_time.get/threads:5|g"]);
    // Graphite: one series, the reference's names and sum.
    g.until(Duration::from_secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.api.req;route=-x;tag1=foobar" && l.value == "3")
            && ls
                .iter()
                .any(|l| l.name == "stats.gauges.request_time.get-threads" && l.value == "5")
    });
    // /metrics: named after the first form received.
    let want = [
        "api_req_total{route=\"/x\",tag1=\"foo:bar\"} 3",
        "request_time_get_threads 5",
    ];
    let body = metrics_until(http_addr(&server), Duration::from_secs(10), |b| {
        want.iter().all(|w| b.lines().any(|l| l == *w))
    });
    for w in want {
        assert!(body.lines().any(|l| l == w), "{w} not in\n{body}");
    }
    assert!(!body.contains("route=\"-x\""), "{body}");
    server.stop();
}

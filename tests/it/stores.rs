//! The outputs into the stores users run, each against the real thing
//! started by the test on a free loopback port: InfluxDB 1.x (Debian's
//! `influxdb`: `influxd`), VictoriaMetrics (Debian's `victoria-metrics`),
//! Prometheus with its remote-write receiver (Debian's `prometheus`). The
//! peers are installed by `.ci/run`; without them the tests say so and
//! pass, except under `CI`, where they fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::prometheus::urlencode;
use crate::support::{free_tcp_port, send_udp, Server};

/// `/usr/bin/<name>` from Debian's `package`, or `None` (after saying why)
/// when it is missing outside CI.
pub fn peer_of(name: &str, package: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/bin").join(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing; .ci/run installs Debian's {package} package",
            path.display()
        );
    }
    eprintln!(
        "skipping: {} is not installed (apt-get install {package})",
        path.display()
    );
    None
}

/// One HTTP/1.0 request (so that no server answers chunked): status and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Poll `f` every 200 ms until it gives `Some`, up to `timeout`; panics
/// with `what` and `log` otherwise.
pub fn poll<T>(
    timeout: Duration,
    what: &str,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A peer process, killed (by its own pid) when dropped, with its data
/// directory and log.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Peer {
    fn spawn(cmd: &mut Command, addr: SocketAddr, dir: tempfile::TempDir) -> Peer {
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("the peer starts");
        let p = Peer { child, addr, dir };
        poll(
            Duration::from_secs(30),
            "the peer listens",
            || p.log(),
            || TcpStream::connect(addr).ok(),
        );
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    /// InfluxDB 1.x on `port` (every other listener off or on a free
    /// port too), with the database `db` created.
    pub fn influxd(bin: &Path, port: u16, db: &str) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n",
            rpc = free_tcp_port()
        );
        let path = dir.path().join("influxdb.conf");
        std::fs::write(&path, conf).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let p = Peer::spawn(Command::new(bin).arg("-config").arg(&path), addr, dir);
        poll(
            Duration::from_secs(30),
            "CREATE DATABASE",
            || p.log(),
            || {
                let q = format!(
                    "/query?q={}",
                    urlencode(&format!("CREATE DATABASE \"{db}\""))
                );
                (request(addr, "POST", &q, b"").0 == 200).then_some(())
            },
        );
        p
    }

    /// The values of column `col` of an InfluxQL query's first series.
    pub fn influx_query(&self, db: &str, q: &str) -> Vec<serde_json::Value> {
        let path = format!("/query?db={db}&q={}", urlencode(q));
        let (status, body) = request(self.addr, "GET", &path, b"");
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["results"][0]["series"][0]["values"][0]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// VictoriaMetrics on `port`.
    pub fn victoria_metrics(bin: &Path, port: u16) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(format!(
            "-storageDataPath={}",
            dir.path().join("data").display()
        ))
        .arg(format!("-httpListenAddr={addr}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.latencyOffset=1s")
        .arg("-loggerLevel=WARN");
        Peer::spawn(&mut cmd, addr, dir)
    }

    /// VictoriaMetrics' raw samples of the series `selector` matches:
    /// (labels, last value).
    pub fn vm_export(&self, selector: &str) -> Vec<(serde_json::Value, f64)> {
        let _ = request(self.addr, "GET", "/internal/force_flush", b"");
        let path = format!("/api/v1/export?match[]={}", urlencode(selector));
        let (status, body) = request(self.addr, "GET", &path, b"");
        if status != 200 {
            return Vec::new();
        }
        body.lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let last = v["values"].as_array()?.last()?.as_f64()?;
                Some((v["metric"].clone(), last))
            })
            .collect()
    }

    /// Prometheus with the remote-write receiver on `port`, scraping nothing.
    pub fn prometheus_receiver(bin: &Path, port: u16) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver");
        Peer::spawn(&mut cmd, addr, dir)
    }

    /// An instant PromQL query: (labels, value) per result.
    pub fn prom_query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        crate::prometheus::query_result(self.addr, q)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with UDP on loopback, a `flush_ms` flush, HTTP on, and `sink`.
pub fn server_with(flush_ms: u64, sink: &str) -> Server {
    crate::prometheus::http_server(flush_ms, sink)
}

/// The counters of the sink `name` in `/api/stats`.
pub fn sink_stats(server: &Server, name: &str) -> serde_json::Value {
    let addr = server.running().http.expect("http is on");
    let (_, body) = request(addr, "GET", "/api/stats", b"");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or_default()
}

/// Send `line` `n` times, a few per datagram.
pub fn send_n(server: &Server, line: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let packet = vec![line; chunk.len()].join("\n");
        send_udp(server.udp(), &[packet.as_bytes()]);
    }
}

#[test]
fn influxdb_1x_gets_counters_gauges_and_timers() {
    let Some(bin) = peer_of("influxd", "influxdb") else {
        return;
    };
    let influx = Peer::influxd(&bin, free_tcp_port(), "statsyard");
    // An integer field that statsyard's float `value` will conflict with:
    // InfluxDB refuses those points (400, "partial write") for good.
    let (status, body) = request(
        influx.addr,
        "POST",
        "/write?db=statsyard",
        b"bars.influx.bad,metric_type=gauge value=1i",
    );
    assert_eq!(status, 204, "{body}");
    // 200 ms flushes: millisecond precision keeps every flush's point.
    let server = server_with(
        200,
        &format!(
            "[[sink]]\ntype = \"influxdb\"\nurl = \"http://{}\"\ndatabase = \"statsyard\"\n\
             precision = \"ms\"\n",
            influx.addr
        ),
    );
    send_n(&server, "bars.influx.hits:1|c|#env:prod", 25);
    send_udp(
        server.udp(),
        &[b"bars.influx.temp:21.5|g|#env:prod\nbars.influx.lat:1|ms\nbars.influx.lat:2|ms\n\
            bars.influx.lat:3|ms\nbars.influx.lat:4|ms\nbars.influx.lat:5|ms\nbars.influx.lat:6|ms\n\
            bars.influx.lat:7|ms\nbars.influx.lat:8|ms\nbars.influx.lat:9|ms\nbars.influx.lat:10|ms"],
    );
    std::thread::sleep(Duration::from_millis(300));
    send_n(&server, "bars.influx.hits:1|c|#env:prod", 25);
    let q = "SELECT sum(\"value\") FROM \"bars.influx.hits\" WHERE \"env\"='prod'";
    let sum = poll(
        Duration::from_secs(20),
        q,
        || influx.log(),
        || {
            let r = influx.influx_query("statsyard", q);
            (r.get(1).and_then(|v| v.as_f64()) == Some(50.0)).then_some(50.0)
        },
    );
    assert_eq!(sum, 50.0);
    // A DogStatsD event: a point of the `events` measurement, its tags as
    // tags (a bare one as `true`), title and text as string fields.
    send_udp(
        server.udp(),
        &[b"_e{6,13}:deploy|v1.2 to 3\\nok|h:web1|t:success|#env:prod,canary"],
    );
    let q = "SELECT \"title\", \"text\", \"canary\", \"env\" FROM \"events\" \
             WHERE \"host\"='web1' AND \"alert_type\"='success'";
    let row = poll(
        Duration::from_secs(20),
        q,
        || influx.log(),
        || {
            let r = influx.influx_query("statsyard", q);
            (r.len() == 5).then_some(r)
        },
    );
    assert_eq!(row[1], "deploy", "{row:?}");
    assert_eq!(row[2], "v1.2 to 3\\nok", "{row:?}");
    assert_eq!(row[3], "true", "{row:?}");
    assert_eq!(row[4], "prod", "{row:?}");
    let last = |q: &str| {
        poll(
            Duration::from_secs(10),
            q,
            || influx.log(),
            || {
                influx
                    .influx_query("statsyard", q)
                    .get(1)
                    .and_then(|v| v.as_f64())
            },
        )
    };
    assert_eq!(
        last("SELECT last(\"value\") FROM \"bars.influx.temp\" WHERE \"metric_type\"='gauge'"),
        21.5
    );
    assert_eq!(
        last("SELECT max(\"90_percentile\") FROM \"bars.influx.lat\""),
        9.0
    );
    assert_eq!(last("SELECT max(\"upper\") FROM \"bars.influx.lat\""), 10.0);
    assert_eq!(last("SELECT max(\"count\") FROM \"bars.influx.lat\""), 10.0);
    let s = sink_stats(&server, "influxdb");
    assert_eq!(s["refused"], 0, "{s}");
    assert!(s["lines_sent"].as_u64() > Some(3), "{s}");
    // The conflicting point: refused, counted, not retried; the next
    // flushes go on.
    send_udp(server.udp(), &[b"bars.influx.bad:2|g"]);
    let s = poll(
        Duration::from_secs(10),
        "refused",
        || influx.log(),
        || {
            let s = sink_stats(&server, "influxdb");
            (s["refused"].as_u64() > Some(0)).then_some(s)
        },
    );
    assert_eq!(s["retries"], 0, "{s}");
    send_n(&server, "bars.influx.after:1|c", 3);
    let q = "SELECT sum(\"value\") FROM \"bars.influx.after\"";
    poll(
        Duration::from_secs(10),
        q,
        || influx.log(),
        || {
            let r = influx.influx_query("statsyard", q);
            (r.get(1).and_then(|v| v.as_f64()) == Some(3.0)).then_some(())
        },
    );
    server.stop();
}

#[test]
fn influxdb_down_then_back_gets_everything_from_the_spool() {
    let Some(bin) = peer_of("influxd", "influxdb") else {
        return;
    };
    let port = free_tcp_port();
    let spool = tempfile::tempdir().unwrap();
    let sink = format!(
        "[[sink]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:{port}\"\n\
         database = \"statsyard\"\nprecision = \"ms\"\nbuffer_bytes = 1\n\
         backoff_min = \"50ms\"\nbackoff_max = \"200ms\"\nspool_dir = {:?}\n",
        spool.path().display().to_string()
    );
    // The store is down: flushes go to the spool, and what is held at
    // shutdown stays there for the next start.
    let server = server_with(200, &sink);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        send_n(&server, "bars.spool.hits:1|c|#env:prod", 5);
        sent += 5;
        std::thread::sleep(Duration::from_millis(200));
        let s = sink_stats(&server, "influxdb");
        if sent >= 20 && s["spool"]["spooled_entries"].as_u64() > Some(0) {
            assert!(s["errors"].as_u64() > Some(0), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing spooled: {s}");
    }
    server.stop();

    // The store is back, and statsyard starts again on the same spool.
    let influx = Peer::influxd(&bin, port, "statsyard");
    let server = server_with(200, &sink);
    send_n(&server, "bars.spool.hits:1|c|#env:prod", 30);
    let want = (sent + 30) as f64;
    let q = "SELECT sum(\"value\") FROM \"bars.spool.hits\" WHERE \"env\"='prod'";
    poll(
        Duration::from_secs(30),
        q,
        || influx.log(),
        || {
            let r = influx.influx_query("statsyard", q);
            (r.get(1).and_then(|v| v.as_f64()) == Some(want)).then_some(())
        },
    );
    let s = poll(
        Duration::from_secs(10),
        "the spool drains",
        String::new,
        || {
            let s = sink_stats(&server, "influxdb");
            (s["spool"]["held_entries"] == 0).then_some(s)
        },
    );
    assert!(s["spool"]["replayed_entries"].as_u64() > Some(0), "{s}");
    server.stop();
}

#[test]
fn victoria_metrics_takes_the_influx_line_protocol() {
    let Some(bin) = peer_of("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let vm = Peer::victoria_metrics(&bin, free_tcp_port());
    // InfluxDB 1.x's API, and 2.x's with a token (which VictoriaMetrics
    // takes without checking it).
    let server = server_with(
        200,
        &format!(
            "[[sink]]\ntype = \"influxdb\"\nurl = \"http://{0}\"\ndatabase = \"statsyard\"\n\
             precision = \"ms\"\n\
             [[sink]]\ntype = \"influxdb\"\nname = \"v2\"\nurl = \"http://{0}\"\norg = \"o\"\n\
             bucket = \"b2\"\ntoken = \"t\"\nprecision = \"ms\"\n",
            vm.addr
        ),
    );
    send_n(&server, "bars.vm.hits:1|c|#env:prod", 50);
    send_udp(server.udp(), &[b"bars.vm.temp:21.5|g"]);
    // VictoriaMetrics names a field `<measurement>_<field>`.
    let sel = "{__name__=\"bars.vm.hits_value\",env=\"prod\",db=\"statsyard\"}";
    poll(
        Duration::from_secs(20),
        sel,
        || vm.log(),
        || (sum_all(&vm, sel) == 50.0).then_some(()),
    );
    let g = poll(
        Duration::from_secs(20),
        "bars.vm.temp_value",
        || vm.log(),
        || vm.vm_export("bars.vm.temp_value").first().map(|r| r.1),
    );
    assert_eq!(g, 21.5);
    // The 2.x API's requests were taken.
    let s = sink_stats(&server, "v2");
    assert!(s["lines_sent"].as_u64() > Some(2), "{s}");
    assert_eq!(s["refused"], 0, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    server.stop();
}

/// The sum of every sample of the series `selector` matches in VictoriaMetrics.
fn sum_all(vm: &Peer, selector: &str) -> f64 {
    let _ = request(vm.addr, "GET", "/internal/force_flush", b"");
    let path = format!("/api/v1/export?match[]={}", urlencode(selector));
    let (_, body) = request(vm.addr, "GET", &path, b"");
    body.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| {
            v["values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|x| x.as_f64())
        })
        .sum()
}

/// The sink table of a remote-write output to `url`.
fn remote_write(url: &str) -> String {
    format!("[[sink]]\ntype = \"prometheus_remote_write\"\nurl = \"{url}\"\n")
}

#[test]
fn prometheus_remote_write_into_a_real_prometheus() {
    let Some(bin) = peer_of("prometheus", "prometheus") else {
        return;
    };
    let prom = Peer::prometheus_receiver(&bin, free_tcp_port());
    let server = server_with(
        200,
        &remote_write(&format!("http://{}/api/v1/write", prom.addr)),
    );
    send_n(&server, "bars.rw.hits:1|c|#env:prod", 25);
    send_udp(
        server.udp(),
        &[b"bars.rw.temp:21.5|g|#room:lab\nbars.rw.lat:100|ms\nbars.rw.lat:100|ms"],
    );
    std::thread::sleep(Duration::from_millis(300));
    send_n(&server, "bars.rw.hits:1|c|#env:prod", 25);
    let q = "bars_rw_hits_total{env=\"prod\"}";
    poll(
        Duration::from_secs(20),
        q,
        || prom.log(),
        || {
            let r = prom.prom_query(q);
            (r.len() == 1 && r[0].1 == 50.0).then_some(())
        },
    );
    let r = poll(
        Duration::from_secs(10),
        "bars_rw_temp",
        || prom.log(),
        || {
            let r = prom.prom_query("bars_rw_temp");
            (!r.is_empty()).then_some(r)
        },
    );
    assert_eq!(r[0].0["room"], "lab", "{r:?}");
    assert_eq!(r[0].1, 21.5);
    // Timers in seconds, as on /metrics; the window's quantile, so read it
    // while the timer still has samples: the last non-NaN value.
    let q = "max_over_time(bars_rw_lat{quantile=\"0.5\"}[1m])";
    let r = poll(
        Duration::from_secs(10),
        q,
        || prom.log(),
        || {
            let r = prom.prom_query(q);
            (r.len() == 1 && r[0].1.is_finite()).then_some(r)
        },
    );
    assert_eq!(r[0].1, 0.1, "{r:?}");
    let count = prom.prom_query("bars_rw_lat_count");
    assert_eq!(count[0].1, 2.0, "{count:?}");
    let s = sink_stats(&server, "prometheus_remote_write");
    assert_eq!(s["refused"], 0, "{s}\n{}", prom.log());
    assert_eq!(s["queue_dropped"], 0, "{s}");
    server.stop();
}

/// A series that expires (`[prometheus] ttl`) gets a staleness marker, so
/// Prometheus stops returning it at once, as when a scraped series goes,
/// not after its 5-minute lookback.
#[test]
fn prometheus_remote_write_marks_expired_series_stale() {
    let Some(bin) = peer_of("prometheus", "prometheus") else {
        return;
    };
    let prom = Peer::prometheus_receiver(&bin, free_tcp_port());
    let server = server_with(
        200,
        &format!(
            "[prometheus]\nttl = \"2s\"\n{}",
            remote_write(&format!("http://{}/api/v1/write", prom.addr))
        ),
    );
    send_udp(server.udp(), &[b"bars.rw.gone:7|g\nbars.rw.gone_lat:5|ms"]);
    let seen = poll(
        Duration::from_secs(20),
        "bars_rw_gone",
        || prom.log(),
        || {
            let r = prom.prom_query("bars_rw_gone");
            (r.len() == 1).then_some(r)
        },
    );
    assert_eq!(seen[0].1, 7.0, "{seen:?}");
    let sent = Instant::now();
    // Kept alive: a series that keeps getting values never goes stale.
    let keep = || send_udp(server.udp(), &[b"bars.rw.kept:1|g"]);
    keep();
    poll(
        Duration::from_secs(20),
        "bars_rw_gone and the timer's series stale",
        || prom.log(),
        || {
            keep();
            let gone = prom.prom_query("bars_rw_gone").is_empty()
                && prom.prom_query("bars_rw_gone_lat_count").is_empty()
                && prom.prom_query("bars_rw_gone_lat").is_empty();
            std::thread::sleep(Duration::from_millis(200));
            gone.then_some(())
        },
    );
    // Gone because of the marker: well inside Prometheus' 5-minute lookback.
    assert!(sent.elapsed() < Duration::from_secs(60));
    assert_eq!(prom.prom_query("bars_rw_kept").len(), 1);
    // What was stored before it is still there: the marker ends the series.
    let r = prom.prom_query("max_over_time(bars_rw_gone[5m])");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 7.0);
    let s = sink_stats(&server, "prometheus_remote_write");
    assert_eq!(s["refused"], 0, "{s}\n{}", prom.log());
    server.stop();
}

#[test]
fn prometheus_remote_write_into_victoria_metrics() {
    let Some(bin) = peer_of("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let vm = Peer::victoria_metrics(&bin, free_tcp_port());
    let server = server_with(
        200,
        &remote_write(&format!("http://{}/api/v1/write", vm.addr)),
    );
    send_n(&server, "bars.rwvm.hits:1|c|#env:prod", 50);
    let sel = "bars_rwvm_hits_total{env=\"prod\"}";
    poll(
        Duration::from_secs(20),
        sel,
        || vm.log(),
        || {
            let r = vm.vm_export(sel);
            (r.len() == 1 && r[0].1 == 50.0).then_some(())
        },
    );
    server.stop();
}

/// One request a [`capture_http`] server took: its header lines (names in
/// lower case) and its body.
pub type Captured = std::sync::Arc<std::sync::Mutex<Vec<(Vec<String>, Vec<u8>)>>>;

/// An HTTP/1.1 server on loopback that answers every request 204 and keeps
/// it (keep-alive connections, `Content-Length` bodies).
pub fn capture_http() -> (SocketAddr, Captured) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Captured = Default::default();
    let keep = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = std::io::BufReader::new(conn);
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        head.push(match line.split_once(':') {
                            Some((k, v)) => format!("{}:{}", k.to_ascii_lowercase(), v),
                            None => line,
                        });
                    }
                    let len = head
                        .iter()
                        .find_map(|h| h.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    keep.lock().unwrap().push((head, body));
                    if out
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// What remote write puts on the wire, read by a plain HTTP server: the
/// protocol's headers, the credentials from `bearer_token_file`, the
/// configured headers, label values as sent, and the mapping file applied.
#[test]
fn prometheus_remote_write_requests_carry_headers_credentials_and_mapped_series() {
    use prost::Message;
    use statsyard::sink::prometheus_remote_write::proto::WriteRequest;
    let (addr, seen) = capture_http();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mapping = dir.path().join("mapping.yml");
    std::fs::write(
        &mapping,
        "mappings:\n  - match: \"bars.rw.mapped.*\"\n    name: \"rw_mapped\"\n    labels:\n      svc: \"$1\"\n",
    )
    .unwrap();
    let server = server_with(
        200,
        &format!(
            "[prometheus]\nmapping_file = {:?}\n[[sink]]\ntype = \"prometheus_remote_write\"\n\
             url = \"http://{addr}/api/v1/write\"\nbearer_token_file = {:?}\n\
             headers = {{ \"X-Scope-OrgID\" = \"team-a\" }}\n",
            mapping.display().to_string(),
            token.display().to_string()
        ),
    );
    send_udp(
        server.udp(),
        &[b"bars.rw.mapped.api:3|c\nbars.rw.route:1|c|#route:/x/y"],
    );
    // The request's header lines, the labels and value of every series of
    // every request so far.
    type Labels = Vec<(String, String)>;
    let decoded = || -> Vec<(Vec<String>, Labels, f64)> {
        let mut out = Vec::new();
        for (head, body) in seen.lock().unwrap().iter() {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .expect("a snappy block");
            let req = WriteRequest::decode(&raw[..]).expect("a WriteRequest");
            for ts in req.timeseries {
                let labels = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone()));
                let value = ts.samples.last().map_or(f64::NAN, |s| s.value);
                out.push((head.clone(), labels.collect(), value));
            }
        }
        out
    };
    let find = |name: &str| {
        let wanted = ("__name__".to_string(), name.to_string());
        decoded().into_iter().find(|(_, l, _)| l.contains(&wanted))
    };
    let (head, mapped, value) = poll(
        Duration::from_secs(20),
        "rw_mapped_total",
        String::new,
        || find("rw_mapped_total"),
    );
    assert_eq!(value, 3.0);
    assert!(mapped.contains(&("svc".into(), "api".into())), "{mapped:?}");
    let (_, route, value) = poll(
        Duration::from_secs(10),
        "bars_rw_route_total",
        String::new,
        || find("bars_rw_route_total"),
    );
    assert_eq!(value, 1.0);
    assert!(
        route.contains(&("route".into(), "/x/y".into())),
        "label values as sent: {route:?}"
    );
    // Labels sorted by name, as remote write requires.
    let names: Vec<&String> = route.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for h in [
        "content-type: application/x-protobuf",
        "content-encoding: snappy",
        "x-prometheus-remote-write-version: 0.1.0",
        "authorization: Bearer s3cret-token",
        "x-scope-orgid: team-a",
    ] {
        assert!(head.iter().any(|l| l == h), "{h:?} not in {head:?}");
    }
    assert!(
        head.iter().any(|l| l.starts_with("user-agent: statsyard/")),
        "{head:?}"
    );
    server.stop();
}

//! The outputs side by side: each built through the output surface from its
//! `[[sink]]` table (as the server builds it), handed one flush, and run to
//! the end of its delivery on a single-threaded runtime, against a
//! destination that takes everything at once (a TCP or HTTP server that
//! discards, librdkafka's in-process mock cluster). Reported: wall time,
//! the CPU time of the output's thread, points per second, and bytes on
//! the wire per point (compressed bodies; Kafka: message payloads, before
//! librdkafka's compression).
//!
//! Then, if Debian's `influxd` and `prometheus` are installed, a flush of
//! 1,000,000 counter series into each, started here on loopback ports:
//! the time until the store has acknowledged every point; and the same
//! into VictoriaMetrics (Debian's `victoria-metrics`), over both protocols.
//!
//! ```sh
//! cargo bench --bench outputs              # 200,000 series, 3 rounds
//! cargo bench --bench outputs -- 100000 1  # series, rounds
//! cargo bench --bench outputs -- 1000 1 victoria-metrics  # only that store's 1M runs
//! ```

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::flush::compute::{compute, ComputeOptions};
use statsyard::flush::naming::Naming;
use statsyard::flush::FlushBatch;
use statsyard::metric::{MetricRef, MetricType, Value};
use statsyard::sink::prometheus::PrometheusConfig;
use statsyard::sink::{BuildCx, FlushView, Kinds, SinkMsg, ValidateCx};
use statsyard::stats::{get, SinkStats};

/// `n` series: 60 % counters, 20 % gauges, 20 % timers of 5 samples, two
/// tags each.
fn registry(n: usize, mix: bool) -> Registry {
    let opts = AggregateOptions {
        limits: Default::default(),
        ..AggregateOptions::default()
    };
    let mut shard = Shard::new(&opts);
    let mut key = Vec::new();
    for i in 0..n {
        let kind = match (mix, i % 10) {
            (false, _) | (true, 0..=5) => MetricType::Counter,
            (true, 6 | 7) => MetricType::Gauge,
            _ => MetricType::Timer,
        };
        key.clear();
        key.extend_from_slice(
            format!(
                "app_{:03}.req_{};env=prod;host=h{:04}",
                i % 1000,
                kind,
                i / 1000
            )
            .as_bytes(),
        );
        let samples = if kind == MetricType::Timer { 5 } else { 1 };
        for s in 0..samples {
            shard.insert(&MetricRef {
                key: &key,
                kind,
                value: Value::Number((i % 97 + s) as f64),
                sample_rate: 1.0,
                timestamp: None,
            });
        }
    }
    let mut r = Registry::new(&opts);
    r.merge(shard.take());
    r
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Run {
    wall: Duration,
    /// CPU time the store (a peer process) spent meanwhile.
    store_cpu: Option<Duration>,
    cpu: Duration,
    points: u64,
    bytes: u64,
    dropped: u64,
}

/// Build the output `kind` from `table`, hand it `flushes` flushes of
/// `batch` (its observer too), one after the other once the last is
/// delivered, then close its queue: one [`Run`] per flush. With one flush,
/// the run ends when the output has delivered everything and stopped;
/// with more, a flush is delivered when the points sent grew and nothing
/// is held any more (HTTP outputs, which encode a flush whole before they
/// send it).
fn run(
    kind: &str,
    table: &str,
    reg: &Registry,
    batch: &Arc<FlushBatch>,
    flushes: usize,
    store: Option<u32>,
) -> Vec<Run> {
    let store_cpu = || store.map(process_cpu);
    let kinds = Kinds::default();
    let k = kinds.get(kind).expect("a built-in kind");
    let mut keys: Vec<String> = ["type", "name", "queue"].map(String::from).into();
    keys.extend(k.keys());
    let prometheus = PrometheusConfig {
        options: statsyard::sink::prometheus::exporter::PromOptions {
            max_series: 10_000_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let cx = ValidateCx {
        file: "bench.toml",
        index: 0,
        name: kind,
        kind,
        keys,
        has_relay: false,
        prometheus: &prometheus,
    };
    let config = k
        .validate(toml::from_str(table).expect("toml"), &cx)
        .expect("valid");
    let stats = Arc::new(SinkStats::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let built = config
            .build(&BuildCx {
                name: kind.into(),
                naming: Naming::default(),
                stats: stats.clone(),
                shutdown_timeout: Duration::from_secs(120),
                relay: None,
                sent_keys: None,
            })
            .expect("built");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(built.sink.expect("a task").run(rx));
        let mut observer = built.observer;
        let mut tx = Some(tx);
        let mut runs = Vec::new();
        // What happened since `t0`, `c0`, `s0` and the counts `before`.
        let since = |(t0, c0, s0): (Instant, Duration, Option<Duration>), before: (u64, u64)| Run {
            wall: t0.elapsed(),
            store_cpu: store_cpu().zip(s0).map(|(a, b)| a - b),
            cpu: thread_cpu() - c0,
            points: get(&stats.lines_sent) - before.0,
            bytes: get(&stats.bytes_sent) - before.1,
            dropped: get(&stats.dropped) + get(&stats.refused),
        };
        let mut task = Some(task);
        for i in 0..flushes {
            // Each flush is the next interval's, 10 s later, as in a running
            // server: a store sees new points, not the same ones rewritten.
            let batch = &if i == 0 {
                batch.clone()
            } else {
                Arc::new(FlushBatch {
                    timestamp: batch.timestamp + 10 * i as u64,
                    ..(**batch).clone()
                })
            };
            let before = (get(&stats.lines_sent), get(&stats.bytes_sent));
            let start = (Instant::now(), thread_cpu(), store_cpu());
            if let Some(o) = observer.as_mut() {
                o.observe(&FlushView {
                    batch,
                    registry: reg,
                    now: std::time::Instant::now(),
                });
            }
            if let Some(t) = &tx {
                t.send(SinkMsg::Flush(batch.clone())).await.unwrap();
            }
            if i + 1 == flushes {
                // The last: close the queue and wait for the output to end.
                tx = None;
                observer = None;
                if let Some(t) = task.take() {
                    t.await.unwrap();
                }
            } else {
                while get(&stats.lines_sent) == before.0 || get(&stats.buffered_bytes) > 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            runs.push(since(start, before));
        }
        drop((tx, observer));
        runs
    })
}

/// User and system CPU time of the process `pid` so far.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) and its `)`:
    // state, ppid, ... with utime and stime the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A TCP server that reads and discards everything.
fn tcp_discard() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c: TcpStream = c;
                let mut buf = vec![0u8; 1 << 16];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// An HTTP server that answers 204 to every request, on its own thread.
fn http_discard() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            l.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let app = axum::Router::new()
                .fallback(|_b: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT });
            axum::serve(l, app).await.unwrap();
        });
    });
    addr
}

fn report(label: &str, series: usize, r: &Run) {
    let points = r.points.max(1) as f64;
    println!(
        "{label:<34} {:>9.0} ms wall {:>9.0} ms cpu {:>10.0} points/s (cpu) {:>8.1} B/point  points {} series {} lost {}",
        r.wall.as_secs_f64() * 1e3,
        r.cpu.as_secs_f64() * 1e3,
        points / r.cpu.as_secs_f64(),
        r.bytes as f64 / points,
        r.points,
        series,
        r.dropped,
    );
    if let Some(c) = r.store_cpu {
        println!("{:<34} store cpu {:.1} s", "", c.as_secs_f64());
    }
}

/// A peer process on a free loopback port, killed when dropped (its data
/// directory, the second field, deleted then).
struct Peer(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} does not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// InfluxDB 1.x on `port`; `data` adds to its `[data]` section.
fn influxd(port: u16, data: &str) -> Option<Peer> {
    let peer = spawn_peer("/usr/bin/influxd", port, |dir| {
        let d = dir.display();
        let conf = dir.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n[meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 {data}\n[monitor]\n  store-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n",
                free_port()
            ),
        )
        .unwrap();
        vec!["-config".into(), conf.display().to_string()]
    })?;
    let _ = create_db(format!("127.0.0.1:{port}").parse().unwrap());
    Some(peer)
}

/// `CREATE DATABASE bench` over a raw HTTP/1.0 POST.
fn create_db(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "POST /query?q=CREATE%20DATABASE%20bench HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(())
}

/// Start `bin` (if installed) with the arguments `args` makes from its
/// temporary directory, and wait until it listens on `port`.
fn spawn_peer(bin: &str, port: u16, args: impl FnOnce(&Path) -> Vec<String>) -> Option<Peer> {
    let bin = Path::new(bin);
    if !bin.exists() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args(args(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    Some(Peer(child, dir))
}

fn prometheus(port: u16) -> Option<Peer> {
    spawn_peer("/usr/bin/prometheus", port, |dir| {
        let conf = dir.join("prometheus.yml");
        std::fs::write(&conf, "global:\n  scrape_interval: 1m\n").unwrap();
        vec![
            format!("--config.file={}", conf.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
        ]
    })
}

/// VictoriaMetrics on `port`: it takes InfluxDB's line protocol (`/write`)
/// and Prometheus remote write (`/api/v1/write`).
fn victoria_metrics(port: u16) -> Option<Peer> {
    spawn_peer("/usr/bin/victoria-metrics", port, |dir| {
        vec![
            format!("-storageDataPath={}", dir.join("data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-retentionPeriod=100y".into(),
            "-loggerLevel=WARN".into(),
        ]
    })
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(200_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    // Words among the arguments choose the stores of the 1M runs (`influxd`,
    // `prometheus`, `victoria-metrics`); none: all that are installed.
    let stores: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
        .collect();
    let wanted = |s: &str| stores.is_empty() || stores.iter().any(|w| w == s);
    let reg = registry(series, true);
    let batch = Arc::new(compute(&reg, &ComputeOptions::default(), 1_700_000_000));
    let tcp = tcp_discard();
    let http = http_discard();
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    mock.create_topic("bench", 4, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let kafka = |format: &str| {
        format!(
            "brokers = [{brokers:?}]\ntopic = \"bench\"\nformat = \"{format}\"\n\
             queue_messages = 10000000\nqueue_bytes = 2147483647\ncompression = \"lz4\"\nacks = \"1\"\n"
        )
    };
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "graphite (text)",
            "graphite",
            format!("address = \"{tcp}\""),
        ),
        (
            "influxdb (gzip)",
            "influxdb",
            format!("url = \"http://{http}\"\ndatabase = \"bench\""),
        ),
        (
            "prometheus_remote_write (snappy)",
            "prometheus_remote_write",
            format!("url = \"http://{http}/api/v1/write\""),
        ),
        ("kafka (graphite, lz4)", "kafka", kafka("graphite")),
        ("kafka (influx, lz4)", "kafka", kafka("influx")),
        ("kafka (json, lz4)", "kafka", kafka("json")),
    ];
    println!(
        "{series} series (60% counters, 20% gauges, 20% timers of 5 samples), {rounds} round(s)"
    );
    for round in 1..=rounds {
        println!("round {round}");
        for (label, kind, table) in &cases {
            let r = run(kind, table, &reg, &batch, 1, None);
            report(label, series, &r[0]);
        }
    }

    // A million counter series into the real stores.
    let reg = registry(1_000_000, false);
    let batch = Arc::new(compute(&reg, &ComputeOptions::default(), 1_700_000_000));
    // The store's own settings matter most: InfluxDB 1.x fsyncs its WAL
    // on every write unless `wal-fsync-delay` batches the syncs.
    let unlimited = "  max-series-per-database = 0";
    let delayed = "  max-series-per-database = 0\n  wal-fsync-delay = \"100ms\"";
    let big = "batch_points = 20000\nbatch_bytes = 8388608";
    for (label, data, extra) in [
        ("influxd (fsync per write)", unlimited, ""),
        ("influxd (wal-fsync-delay 100ms)", delayed, ""),
        ("influxd (fsync 100ms, 20k/req)", delayed, big),
    ] {
        if !wanted("influxd") {
            break;
        }
        let port = free_port();
        let Some(influx) = influxd(port, data) else {
            println!("influxd not installed: skipped");
            break;
        };
        let table = format!(
            "url = \"http://127.0.0.1:{port}\"\ndatabase = \"bench\"\nprecision = \"ms\"\n{extra}"
        );
        let pid = Some(influx.0.id());
        for (i, r) in run("influxdb", &table, &reg, &batch, 2, pid)
            .iter()
            .enumerate()
        {
            report(&format!("1M -> {label}, flush {}", i + 1), 1_000_000, r);
        }
    }
    let port = free_port();
    let prom = if wanted("prometheus") {
        prometheus(port)
    } else {
        None
    };
    if let Some(prom) = prom {
        let table = format!("url = \"http://127.0.0.1:{port}/api/v1/write\"");
        let pid = Some(prom.0.id());
        for (i, r) in run("prometheus_remote_write", &table, &reg, &batch, 3, pid)
            .iter()
            .enumerate()
        {
            report(&format!("1M -> prometheus, flush {}", i + 1), 1_000_000, r);
        }
    } else if wanted("prometheus") {
        println!("prometheus not installed: skipped");
    }
    // The same requests into a store that keeps up on this machine.
    for (label, kind, table) in [
        (
            "victoria-metrics (influx line protocol)",
            "influxdb",
            "url = \"http://127.0.0.1:{port}\"\ndatabase = \"bench\"\nprecision = \"ms\"",
        ),
        (
            "victoria-metrics (remote write)",
            "prometheus_remote_write",
            "url = \"http://127.0.0.1:{port}/api/v1/write\"",
        ),
    ] {
        if !wanted("victoria-metrics") {
            break;
        }
        let port = free_port();
        let Some(vm) = victoria_metrics(port) else {
            println!("victoria-metrics not installed: skipped");
            break;
        };
        let table = table.replace("{port}", &port.to_string());
        let pid = Some(vm.0.id());
        for (i, r) in run(kind, &table, &reg, &batch, 3, pid).iter().enumerate() {
            report(&format!("1M -> {label}, flush {}", i + 1), 1_000_000, r);
        }
    }
}

//! Real statsd client libraries against a real server: the Python `statsd`
//! package (PyPI) over UDP, TCP and a pipeline, the Python `datadog` package
//! over unix datagram and stream sockets, and the npm `hot-shots` client
//! with DogStatsD tags. The values must reach Graphite with the reference's
//! names and `/metrics` with tags as labels.
//!
//! `.ci/run` installs both under `target/clients/`; locally, without them,
//! the tests say so and pass, and with `CI` set they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::http::get;
use crate::support::{config, secs, Graphite, Server};

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/clients")
}

/// Whether `what` is installed; fails under CI when it is not.
fn installed(what: &str, path: &Path) -> bool {
    if path.exists() {
        return true;
    }
    let hint = "run `bash .ci/run`, or see the client lines in it";
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing at {} ({hint})",
        path.display()
    );
    eprintln!("skipping: {what} is not installed ({hint})");
    false
}

/// A server with UDP, TCP, HTTP on port 0 and a Graphite sink.
fn start(g: &Graphite) -> Server {
    Server::start(config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[flush]
interval = "300ms"
self_metrics = false
[http]
address = "127.0.0.1:0"
[[sink]]
type = "graphite"
address = "{}"
"#,
        g.addr
    )))
}

/// Run `cmd`, which must succeed; its stdout.
fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `/metrics` until every wanted line is there.
fn metrics_have(server: &Server, wanted: &[&str]) {
    let http = server.running().http.expect("http is on");
    let deadline = Instant::now() + secs(10);
    loop {
        let (status, _, body) = get(http, "/metrics");
        assert_eq!(status, 200);
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|w| !body.lines().any(|l| l == **w))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics lacks {missing:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PYTHON_CLIENT: &str = r#"
import sys
import statsd

host, udp, tcp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = statsd.StatsClient(host, udp, prefix="py")
c.incr("hits")
c.incr("hits", 4)
c.decr("hits", 2)
c.gauge("temp", 20)
c.gauge("temp", 5, delta=True)
c.timing("lat", 100)
c.timing("lat", 300)
c.set("users", "a")
c.set("users", "b")
c.set("users", "a")
with c.pipeline() as p:
    p.incr("piped", 2)
    p.incr("piped", 3)
t = statsd.TCPStatsClient(host, tcp, prefix="pytcp")
t.incr("hits", 7)
t.close()
"#;

#[test]
fn python_statsd_client() {
    let lib = clients_dir().join("python");
    if !installed("the Python statsd package", &lib.join("statsd")) {
        return;
    }
    let mut g = Graphite::start();
    let server = start(&g);
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &lib).args([
        "-c",
        PYTHON_CLIENT,
        "127.0.0.1",
        &server.udp().port().to_string(),
        &server.tcp().port().to_string(),
    ]);
    run(cmd, "the python client");
    let want = [
        ("stats_counts.py.hits", "3"),
        ("stats.gauges.py.temp", "25"),
        ("stats.timers.py.lat.upper", "300"),
        ("stats.timers.py.lat.count", "2"),
        ("stats.sets.py.users.count", "2"),
        ("stats_counts.py.piped", "5"),
        ("stats_counts.pytcp.hits", "7"),
    ];
    g.until(secs(10), |ls| {
        want.iter()
            .all(|(n, v)| ls.iter().any(|l| l.name == *n && l.value == *v))
    });
    metrics_have(
        &server,
        &[
            "py_hits_total 3",
            "py_temp 25",
            "py_users 2",
            "pytcp_hits_total 7",
        ],
    );
    server.stop();
}

const NODE_CLIENT: &str = r#"
const StatsD = require("hot-shots");
const [host, port] = [process.argv[1], Number(process.argv[2])];
const c = new StatsD({
  host, port, prefix: "hs.", globalTags: { env: "ci" },
  errorHandler: (e) => { console.error(e); process.exitCode = 1; },
});
c.increment("requests", 2, ["route:home"]);
c.increment("requests", 3, ["route:home"]);
c.gauge("queue", 7, ["q:jobs"]);
c.timing("latency", 42, ["route:home"]);
c.histogram("size", 10);
c.distribution("dist", 5);
c.set("visitors", "u1");
c.close((err) => { if (err) { console.error(err); process.exit(1); } });
"#;

#[test]
fn node_hot_shots_client_with_dogstatsd_tags() {
    let modules = clients_dir().join("node_modules");
    if !installed("the npm hot-shots client", &modules.join("hot-shots")) {
        return;
    }
    let mut g = Graphite::start();
    let server = start(&g);
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", &modules).args([
        "-e",
        NODE_CLIENT,
        "127.0.0.1",
        &server.udp().port().to_string(),
    ]);
    run(cmd, "the hot-shots client");
    // Tags become `;k=v` at the end of the reference's Graphite names, sorted.
    let want = [
        ("stats_counts.hs.requests;env=ci;route=home", "5"),
        ("stats.gauges.hs.queue;env=ci;q=jobs", "7"),
        ("stats.timers.hs.latency.upper;env=ci;route=home", "42"),
        ("stats.timers.hs.size.upper;env=ci", "10"),
        ("stats.timers.hs.dist.upper;env=ci", "5"),
        ("stats.sets.hs.visitors.count;env=ci", "1"),
    ];
    g.until(secs(10), |ls| {
        want.iter()
            .all(|(n, v)| ls.iter().any(|l| l.name == *n && l.value == *v))
    });
    // And labels on /metrics.
    metrics_have(
        &server,
        &[
            r#"hs_requests_total{env="ci",route="home"} 5"#,
            r#"hs_queue{env="ci",q="jobs"} 7"#,
            r#"hs_visitors{env="ci"} 1"#,
        ],
    );
    server.stop();
}

const DATADOG_CLIENT: &str = r#"
import sys
from datadog.dogstatsd import DogStatsd

path, ns = sys.argv[1], sys.argv[2]
c = DogStatsd(socket_path=path, namespace=ns, constant_tags=["env:ci"],
              disable_telemetry=True)
c.increment("hits", 2, tags=["route:home"])
c.increment("hits", 3, tags=["route:home"])
c.gauge("temp", 20)
c.gauge("temp", -3)
c.histogram("size", 10)
c.distribution("dist", 5)
c.timing("lat", 42)
c.set("users", "u1")
kind = {1: "stream", 2: "datagram"}.get(int(c._socket_kind or 0), str(c._socket_kind))
c.close_socket()
print(kind)
"#;

/// The datadog Python client over unix sockets: a datagram socket (its
/// first choice), a stream socket it falls back to (length-prefixed frames,
/// detected), and a stream socket named with `unixstream://`. Its signed
/// gauge is a value with `gauge_deltas = false`.
#[test]
fn python_datadog_client_over_unix_sockets() {
    let lib = clients_dir().join("python");
    if !installed("the Python datadog package", &lib.join("datadog")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gram = dir.path().join("dsd.sock");
    let stream = dir.path().join("dsd-stream.sock");
    let framed = dir.path().join("dsd-framed.sock");
    let mut g = Graphite::start();
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
unix = [
  {{ path = "{}", type = "datagram" }},
  {{ path = "{}" }},
  {{ path = "{}", framing = "length" }},
]
gauge_deltas = false
[flush]
interval = "300ms"
self_metrics = false
[http]
address = "127.0.0.1:0"
[[sink]]
type = "graphite"
address = "{}"
"#,
        gram.display(),
        stream.display(),
        framed.display(),
        g.addr
    )));
    for (path, ns, kind) in [
        (gram.display().to_string(), "gram", "datagram"),
        (stream.display().to_string(), "fallback", "stream"),
        (
            format!("unixstream://{}", framed.display()),
            "framed",
            "stream",
        ),
    ] {
        let mut cmd = Command::new("python3");
        cmd.env("PYTHONPATH", &lib)
            .args(["-c", DATADOG_CLIENT, &path, ns]);
        let out = run(cmd, &format!("the datadog client on {path}"));
        assert_eq!(out.trim(), kind, "the client's socket kind on {path}");
        let want = [
            (format!("stats_counts.{ns}.hits;env=ci;route=home"), "5"),
            (format!("stats.gauges.{ns}.temp;env=ci"), "-3"),
            (format!("stats.timers.{ns}.size.upper;env=ci"), "10"),
            (format!("stats.timers.{ns}.dist.upper;env=ci"), "5"),
            (format!("stats.timers.{ns}.lat.upper;env=ci"), "42"),
            (format!("stats.sets.{ns}.users.count;env=ci"), "1"),
        ];
        let want: Vec<(&str, &str)> = want.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        g.until_all(secs(10), &want);
    }
    metrics_have(
        &server,
        &[
            r#"gram_hits_total{env="ci",route="home"} 5"#,
            r#"fallback_temp{env="ci"} -3"#,
            r#"framed_users{env="ci"} 1"#,
        ],
    );
    // Nothing was misread.
    let bad = server
        .running()
        .stats
        .bad_lines_seen
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(bad, 0);
    server.stop();
}

//! End to end with real carbon-caches (graphite-carbon): `statsyard relay`
//! takes points over plaintext and pickle and sends them, with carbon_ch and
//! two carbon-caches as destinations, over plaintext or pickle. The points
//! are read back from the whisper files with `whisper-fetch`; each must be
//! in the cache carbon's ring names, with its value, and nowhere else.
//!
//! Peers: `carbon-cache` and `whisper-fetch` on PATH. Without them the
//! tests skip, unless `CI` is set: then they fail.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use statsyard::relay::hashing::{Destination, Method, Ring};

use crate::support::{bin, free_tcp_port, Proc};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Whether the peers are here; panics in CI when they are not.
fn peers() -> bool {
    for prog in ["carbon-cache", "whisper-fetch"] {
        if !on_path(prog) {
            if in_ci() {
                panic!("carbon-cache test: {prog} is missing; CI must install graphite-carbon");
            }
            eprintln!("carbon-cache test skipped: {prog} is missing");
            return false;
        }
    }
    true
}

fn wait_for(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn accepting(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// One carbon-cache in the foreground with its own config and storage.
struct CarbonCache {
    line: SocketAddr,
    pickle: SocketAddr,
    data: PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl CarbonCache {
    fn start() -> CarbonCache {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (line, pickle, query) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
        let data = root.join("whisper");
        let conf = format!(
            "[cache]\n\
             STORAGE_DIR = {storage}\n\
             LOCAL_DATA_DIR = {data}\n\
             WHITELISTS_DIR = {storage}/lists\n\
             LOG_DIR = {storage}/log\n\
             PID_DIR = {storage}\n\
             USER =\n\
             ENABLE_LOGROTATION = False\n\
             MAX_CACHE_SIZE = inf\n\
             MAX_UPDATES_PER_SECOND = 100000\n\
             MAX_CREATES_PER_MINUTE = inf\n\
             LINE_RECEIVER_INTERFACE = 127.0.0.1\n\
             LINE_RECEIVER_PORT = {line}\n\
             ENABLE_UDP_LISTENER = False\n\
             PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
             PICKLE_RECEIVER_PORT = {pickle}\n\
             CACHE_QUERY_INTERFACE = 127.0.0.1\n\
             CACHE_QUERY_PORT = {query}\n\
             LOG_LISTENER_CONN_SUCCESS = False\n\
             ENABLE_TAGS = False\n",
            storage = root.display(),
            data = data.display(),
        );
        std::fs::write(root.join("carbon.conf"), conf).unwrap();
        // One-second points kept for an hour: the test's points are recent.
        std::fs::write(
            root.join("storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 1s:1h\n",
        )
        .unwrap();
        let log = std::fs::File::create(root.join("carbon.out")).unwrap();
        let child = Command::new("carbon-cache")
            .arg(format!("--config={}", root.join("carbon.conf").display()))
            .args(["--nodaemon", "start"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start carbon-cache");
        let cache = CarbonCache {
            line: SocketAddr::from(([127, 0, 0, 1], line)),
            pickle: SocketAddr::from(([127, 0, 0, 1], pickle)),
            data,
            _proc: Proc(child),
            _dir: dir,
        };
        wait_for(Duration::from_secs(30), "carbon-cache to listen", || {
            accepting(cache.line) && accepting(cache.pickle)
        });
        cache
    }

    fn whisper_file(&self, name: &str) -> PathBuf {
        let mut p = self.data.clone();
        for part in name.split('.') {
            p.push(part);
        }
        p.set_extension("wsp");
        p
    }
}

/// The value whisper holds for `name` at `ts`, if any.
fn fetch(file: &Path, ts: i64) -> Option<f64> {
    if !file.exists() {
        return None;
    }
    let out = Command::new("whisper-fetch")
        .arg(format!("--from={}", ts - 1))
        .arg(format!("--until={}", ts))
        .arg(file)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (t, v) = l.split_once('\t')?;
        (t.trim().parse::<i64>().ok()? == ts)
            .then(|| v.trim().parse::<f64>().ok())
            .flatten()
    })
}

/// `statsyard relay` to `dests`; returns it with its line and pickle addresses.
fn start_relay(protocol: &str, dests: &[String]) -> (Proc, SocketAddr, SocketAddr) {
    let (line, pickle) = (free_tcp_port(), free_tcp_port());
    let line = SocketAddr::from(([127, 0, 0, 1], line));
    let pickle = SocketAddr::from(([127, 0, 0, 1], pickle));
    let child = bin()
        .arg("relay")
        .args(["--listen", &line.to_string()])
        .args(["--pickle-listen", &pickle.to_string()])
        .args(["--method", "carbon_ch", "--protocol", protocol])
        .args(["--http-address", "off"])
        .args(dests)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start statsyard relay");
    let proc = Proc(child);
    wait_for(Duration::from_secs(20), "statsyard relay to listen", || {
        accepting(line) && accepting(pickle)
    });
    (proc, line, pickle)
}

fn pickle_frame(points: &[(String, (i64, f64))]) -> Vec<u8> {
    let body = serde_pickle::to_vec(&points, serde_pickle::SerOptions::new().proto_v2()).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Points in over plaintext and pickle, out with `protocol`, checked in whisper.
fn round_trip(protocol: &str) {
    if !peers() {
        return;
    }
    let caches = [CarbonCache::start(), CarbonCache::start()];
    let dest_port = |c: &CarbonCache| {
        if protocol == "pickle" {
            c.pickle.port()
        } else {
            c.line.port()
        }
    };
    // Two caches on one host: carbon needs instances to tell them apart.
    let dests: Vec<String> = caches
        .iter()
        .zip(["a", "b"])
        .map(|(c, i)| format!("127.0.0.1:{}:{i}", dest_port(c)))
        .collect();
    let (_relay, line, pickle) = start_relay(protocol, &dests);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = now - 30;
    let mut points = Vec::new();
    let mut text = String::new();
    for i in 0..20 {
        let name = format!("e2e.{protocol}.line.m{i}");
        let value = i as f64 + 0.5;
        text.push_str(&format!("{name} {value} {ts}\n"));
        points.push((name, value));
    }
    let mut pickled = Vec::new();
    for i in 0..20 {
        let name = format!("e2e.{protocol}.pickle.m{i}");
        let value = -(i as f64) - 0.25;
        pickled.push((name.clone(), (ts, value)));
        points.push((name, value));
    }
    let mut conn = TcpStream::connect(line).unwrap();
    conn.write_all(text.as_bytes()).unwrap();
    drop(conn);
    let mut conn = TcpStream::connect(pickle).unwrap();
    conn.write_all(&pickle_frame(&pickled)).unwrap();
    drop(conn);

    let ring_dests: Vec<Destination> = dests.iter().map(|d| d.parse().unwrap()).collect();
    let ring = Ring::new(Method::CarbonCh, &ring_dests, 1, true).unwrap();
    let mut placed = Vec::new();
    let mut per_cache = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(40);
    for (name, value) in &points {
        ring.place(name.as_bytes(), &mut placed);
        let home = placed[0];
        per_cache[home] += 1;
        let file = caches[home].whisper_file(name);
        let got = loop {
            if let Some(v) = fetch(&file, ts) {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached carbon-cache {} ({})",
                dests[home],
                file.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(got, *value, "{name} in whisper");
        assert!(
            !caches[1 - home].whisper_file(name).exists(),
            "{name} also reached the other cache"
        );
    }
    // Both caches got a share: the test exercised placement, not one path.
    assert!(per_cache.iter().all(|&n| n > 0), "placement {per_cache:?}");
}

#[test]
fn relay_to_carbon_cache_over_plaintext() {
    round_trip("plain");
}

#[test]
fn relay_to_carbon_cache_over_pickle() {
    round_trip("pickle");
}

//! statsd_exporter's own test tables, run against `/metrics` of a real
//! server with the config docs/migrating-from-statsd_exporter.md recommends.
//!
//! `tests/data/statsd_exporter/cases.txt` holds the cases of statsd_exporter's
//! `pkg/line/line_test.go`, `pkg/mapper/mapper_test.go` and
//! `pkg/exporter/exporter_test.go` that a statsd line and a mapping file can
//! express, with what statsyard must export for them. A case either gives
//! statsd_exporter's result (counters with statsyard's documented `_total`)
//! or says `differs <anchor>`: statsyard's result differs on purpose, and
//! the anchor names the section of docs/migrating-from-statsd_exporter.md
//! that says why. The file's header describes the format.
//!
//! Each case runs on a server of its own (UDP in, `/metrics` out, a 100 ms
//! flush, `self_metrics = false`, `[prometheus] ttl = "0s"`, the case's
//! mapping file); a case with a mapping statsd_exporter refuses runs
//! `statsyard check-config` instead, which must refuse it too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::http::get;
use crate::support::{bin, config, send_udp, Server};

const CASES: &str = include_str!("../data/statsd_exporter/cases.txt");
const GUIDE: &str = include_str!("../../docs/migrating-from-statsd_exporter.md");

/// One step of a case, in file order.
#[derive(Debug, Clone)]
enum Step {
    /// A sample line `/metrics` must have, exactly.
    Expect(String),
    /// No sample of this metric name.
    Absent(String),
    /// Let this many milliseconds pass.
    Wait(u64),
}

#[derive(Debug, Clone, Default)]
struct Case {
    /// `<table> <test name>`, for messages.
    title: String,
    /// Extra `[statsd]` lines.
    statsd: Vec<String>,
    /// The mapping file, if any.
    mapping: Option<String>,
    /// Lines to send, one datagram each.
    send: Vec<Vec<u8>>,
    steps: Vec<Step>,
    /// check-config must refuse the mapping with this in its message.
    bad_mapping: Option<String>,
    /// The anchor of the documented difference, if any.
    differs: Option<String>,
    /// Send the lines again every 40 ms while the steps run: summary
    /// quantiles cover the last flush window only.
    repeat: bool,
}

/// `\xNN`, `\n`, `\\` in a `send` line.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        if kw == "case" {
            cases.push(Case {
                title: rest.to_string(),
                ..Case::default()
            });
            continue;
        }
        let c = cases
            .last_mut()
            .unwrap_or_else(|| panic!("cases.txt:{}: `{kw}` before a case", n + 1));
        match kw {
            "statsd" => c.statsd.push(rest.to_string()),
            "mapping" => {
                let mut yaml = String::new();
                for (_, l) in lines.by_ref() {
                    if l == "end" {
                        break;
                    }
                    yaml.push_str(l.strip_prefix("  ").unwrap_or(l));
                    yaml.push('\n');
                }
                c.mapping = Some(yaml);
            }
            "send" => c.send.push(unescape(rest)),
            "expect" => c.steps.push(Step::Expect(rest.to_string())),
            "absent" => c.steps.push(Step::Absent(rest.to_string())),
            "wait" => c.steps.push(Step::Wait(rest.parse().unwrap())),
            "bad-mapping" => c.bad_mapping = Some(rest.to_string()),
            "differs" => c.differs = Some(rest.to_string()),
            "repeat" => c.repeat = true,
            other => panic!("cases.txt:{}: unknown keyword `{other}`", n + 1),
        }
    }
    cases
}

/// The sample lines of `/metrics` (no comments, no self-metrics).
fn samples(http: SocketAddr) -> Vec<String> {
    let (status, _, body) = get(http, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("statsyard_"))
        .map(str::to_string)
        .collect()
}

fn stat(http: SocketAddr, name: &str) -> f64 {
    let (_, _, body) = get(http, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Whether `sample` is of metric `name` (`name` then a space or labels).
fn is_of(sample: &str, name: &str) -> bool {
    sample
        .strip_prefix(name)
        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
}

/// Run one case; what went wrong, if anything.
fn run(case: &Case, dir: &Path) -> Result<(), String> {
    let mapping_line = match &case.mapping {
        Some(yaml) => {
            let f = dir.join("mapping.yml");
            std::fs::write(&f, yaml).unwrap();
            format!("mapping_file = \"{}\"", f.display())
        }
        None => String::new(),
    };
    let toml = format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
{}
[flush]
interval = "100ms"
self_metrics = false
[http]
address = "127.0.0.1:0"
[admin]
enabled = false
[prometheus]
ttl = "0s"
{mapping_line}
"#,
        case.statsd.join("\n")
    );
    if let Some(want) = &case.bad_mapping {
        let f = dir.join("statsyard.toml");
        std::fs::write(&f, &toml).unwrap();
        let out = bin()
            .args(["check-config", &f.display().to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Err("check-config accepted a mapping statsd_exporter refuses".into());
        }
        if !err.contains(want.as_str()) {
            return Err(format!(
                "check-config refused it, but not with {want:?}: {err}"
            ));
        }
        return Ok(());
    }
    let server = Server::start(config(&toml));
    let http = server.running().http.expect("http is on");
    let lines: usize = case
        .send
        .iter()
        .map(|p| p.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
        .sum();
    let packets: Vec<&[u8]> = case.send.iter().map(Vec::as_slice).collect();
    send_udp(server.udp(), &packets);
    // Everything was received, then two flushes passed: the exporter saw it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(http, "statsyard_lines_received_total") < lines as f64 {
        if Instant::now() > deadline {
            return Err(format!("the server did not receive the {lines} lines"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let flushes = stat(http, "statsyard_flushes_total");
    while stat(http, "statsyard_flushes_total") < flushes + 2.0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let repeater = case.repeat.then(|| {
        let (stop, udp, send) = (stop.clone(), server.udp(), case.send.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let packets: Vec<&[u8]> = send.iter().map(Vec::as_slice).collect();
                send_udp(udp, &packets);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    });
    let mut problems = Vec::new();
    for step in &case.steps {
        let holds = |s: &[String]| match step {
            Step::Expect(line) => s.iter().any(|l| l == line),
            Step::Absent(name) => !s.iter().any(|l| is_of(l, name)),
            Step::Wait(_) => true,
        };
        match step {
            Step::Wait(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            _ => {
                // A wait may leave a flush to come: allow a few.
                let deadline = Instant::now() + Duration::from_millis(600);
                let mut s = samples(http);
                while !holds(&s) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                    s = samples(http);
                }
                if !holds(&s) {
                    problems.push(format!(
                        "{step:?} does not hold; /metrics:\n  {}",
                        s.join("\n  ")
                    ));
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = repeater {
        r.join().unwrap();
    }
    server.stop();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn statsd_exporter_test_tables() {
    let cases = parse(CASES);
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    // Every difference is documented.
    let anchors: BTreeSet<&str> = GUIDE
        .split("<a id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    for c in &cases {
        if let Some(a) = &c.differs {
            assert!(
                anchors.contains(a.as_str()),
                "{}: no <a id=\"{a}\"> in docs/migrating-from-statsd_exporter.md",
                c.title
            );
        }
        assert!(
            c.bad_mapping.is_some() || !c.steps.is_empty(),
            "{}: checks nothing",
            c.title
        );
    }
    // Four at a time: each is mostly waiting for flushes.
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let dir = tempfile::tempdir().unwrap();
                if let Err(e) = run(case, dir.path()) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("[{}] {e}", case.title));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let matched = cases.iter().filter(|c| c.differs.is_none()).count();
    eprintln!(
        "statsd_exporter cases: {} ({matched} as statsd_exporter, {} documented differences)",
        cases.len(),
        cases.len() - matched
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

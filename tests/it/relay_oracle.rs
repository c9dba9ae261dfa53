//! Placement oracle: statsyard's `relay::hashing` against the placements of
//! carbon's own Python router (graphite-carbon) and of carbon-c-relay's `-t`
//! test mode, for the same names and destination lists. Any difference fails.
//!
//! Peers: `carbon-cache` (its shebang names the Python that has carbon's
//! modules; tests/oracle/carbon_placement.py runs under it) and
//! `carbon-c-relay`. Without them the tests skip, unless `CI` is set: then
//! they fail.

use std::io::Write;
use std::process::{Command, Stdio};

use statsyard::relay::hashing::{Destination, Method, Ring};

/// Names per case for carbon's router (the brief asks for at least 10,000).
const CARBON_NAMES: usize = 10_000;
/// Names per case for carbon-c-relay.
const C_RELAY_NAMES: usize = 10_000;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skip (outside CI) or fail (in CI) for a missing peer.
fn missing(why: &str) {
    if in_ci() {
        panic!("placement oracle: {why}; CI must install it (see .ci/run)");
    }
    eprintln!("placement oracle skipped: {why}");
}

fn find_on_path(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The interpreter carbon's own scripts run with, from `carbon-cache`'s
/// shebang: it is the one whose site-packages hold carbon.
fn carbon_python() -> Option<String> {
    let script = find_on_path("carbon-cache")?;
    let text = std::fs::read_to_string(script).ok()?;
    let first = text.lines().next()?;
    let interp = first.strip_prefix("#!")?.trim();
    let mut parts = interp.split_whitespace();
    let prog = parts.next()?;
    // `#!/usr/bin/env python3` names the program in the second word.
    if prog.ends_with("/env") {
        parts.next().map(str::to_string)
    } else {
        Some(prog.to_string())
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn word(&mut self, alphabet: &[&str], max: usize) -> String {
        let len = 1 + self.below(max);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

const ASCII: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "k", "m", "n", "p", "r", "s", "t", "x", "z", "0", "1",
    "2", "7", "9", "_", "-", "A", "Q",
];
const UNICODE: &[&str] = &["é", "ß", "日", "本", "ж", "😀", "a", "b", "1"];

/// Random metric names: dotted paths of 1 to 6 segments, a quarter of them
/// tagged (`name;k=v;k2=v2`, tags in random order), one in eight with
/// non-ASCII characters (which carbon-c-relay hashes as signed chars).
fn names(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let alphabet = if rng.below(8) == 0 { UNICODE } else { ASCII };
            let segments = 1 + rng.below(6);
            let mut name = (0..segments)
                .map(|_| rng.word(alphabet, 12))
                .collect::<Vec<_>>()
                .join(".");
            if rng.below(4) == 0 {
                for _ in 0..1 + rng.below(3) {
                    let k = rng.word(ASCII, 6);
                    let v = rng.word(alphabet, 8);
                    name.push_str(&format!(";{k}={v}"));
                }
            }
            name
        })
        .collect()
}

/// Destination lists: one node, plain hosts, duplicate hosts told apart by
/// instances, a quote in an instance (Python repr picks `"`), IPv6, many nodes.
fn carbon_dest_lists() -> Vec<Vec<&'static str>> {
    vec![
        vec!["127.0.0.1:2004"],
        vec!["10.0.0.1:2004", "10.0.0.2:2004", "10.0.0.3:2004"],
        vec![
            "10.0.0.1:2004:a",
            "10.0.0.1:2104:b",
            "10.0.0.2:2004:a",
            "10.0.0.2:2104:b",
            "10.0.0.3:2004:c",
        ],
        vec![
            "carbon-1.example.org:2004",
            "carbon-2.example.org:2004:x",
            "carbon-3.example.org:2004:it's",
            "[::1]:2004:v6",
        ],
        vec![
            "192.168.1.10:2004:1",
            "192.168.1.10:2104:2",
            "192.168.1.10:2204:3",
            "192.168.1.11:2004:1",
            "192.168.1.11:2104:2",
            "192.168.1.11:2204:3",
            "192.168.1.12:2004:1",
            "192.168.1.12:2104:2",
            "192.168.1.12:2204:3",
            "192.168.1.13:2004",
            "192.168.1.14:2004",
            "192.168.1.15:2004",
        ],
    ]
}

fn parse_dests(list: &[&str]) -> Vec<Destination> {
    list.iter()
        .map(|s| Destination::parse(s).expect("test destination"))
        .collect()
}

#[test]
fn carbon_ch_and_fnv1a_ch_match_carbon() {
    let Some(python) = carbon_python() else {
        return missing("carbon-cache (graphite-carbon) is not installed");
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/carbon_placement.py"
    );
    let names = names(0x5eed_cafe, CARBON_NAMES);

    struct Case {
        method: Method,
        dests: Vec<&'static str>,
        replication: usize,
        diverse: bool,
    }
    let mut cases = Vec::new();
    for method in [Method::CarbonCh, Method::Fnv1aCh] {
        for dests in carbon_dest_lists() {
            for replication in 1..=3 {
                for diverse in [true, false] {
                    cases.push(Case {
                        method,
                        dests: dests.clone(),
                        replication,
                        diverse,
                    });
                }
            }
        }
    }
    let request = serde_json::json!({
        "names": names,
        "cases": cases.iter().map(|c| serde_json::json!({
            "method": c.method.as_str(),
            "dests": c.dests,
            "replication": c.replication,
            "diverse": c.diverse,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    let body = serde_json::to_vec(&request).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Write from a thread: the oracle's output could fill the pipe first.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output().expect("oracle output");
    writer.join().unwrap().expect("write to oracle");
    assert!(
        output.status.success(),
        "carbon oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<Vec<Vec<usize>>> =
        serde_json::from_slice(&output.stdout).expect("oracle JSON");
    assert_eq!(expected.len(), cases.len());

    let mut out = Vec::new();
    let mut compared = 0;
    for (case, want) in cases.iter().zip(&expected) {
        let dests = parse_dests(&case.dests);
        let ring = Ring::new(case.method, &dests, case.replication, case.diverse).unwrap();
        for (name, want) in names.iter().zip(want) {
            ring.place(name.as_bytes(), &mut out);
            assert_eq!(
                &out, want,
                "{} {:?} replication {} diverse {}: name {name:?}",
                case.method, case.dests, case.replication, case.diverse
            );
            compared += 1;
        }
    }
    assert_eq!(compared, cases.len() * CARBON_NAMES);
}

/// carbon-c-relay `-t` placements for `names`: per name, the `host:port` of
/// each destination, in order.
fn c_relay_placements(
    relay: &std::path::Path,
    method: &str,
    dests: &[&str],
    replication: usize,
    names: &[String],
) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("relay.conf");
    // c-relay writes destinations as host:port=instance.
    let members: Vec<String> = parse_dests(dests)
        .iter()
        .map(|d| match &d.instance {
            Some(i) => format!("        {}:{}={i}\n", d.host, d.port),
            None => format!("        {}:{}\n", d.host, d.port),
        })
        .collect();
    let text = format!(
        "cluster c\n    {method} replication {replication}\n{}    ;\nmatch * send to c;\n",
        members.concat()
    );
    std::fs::write(&conf, text).unwrap();
    let mut child = Command::new(relay)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run carbon-c-relay");
    let mut input = String::new();
    for n in names {
        input.push_str(n);
        input.push_str(" 1 1\n");
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("carbon-c-relay output");
    writer.join().unwrap().expect("write to carbon-c-relay");
    let text = String::from_utf8_lossy(&output.stdout);

    // Each routed name prints "match", "    * -> NAME", "    METHOD(c)" and
    // one indented "host:port" line per destination.
    let mut result = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let header = format!("{method}(c)");
    for line in text.lines() {
        let t = line.trim();
        if line.starts_with("    * -> ") {
            if let Some(done) = current.take() {
                result.push(done);
            }
            current = Some(Vec::new());
        } else if t == header || t.is_empty() || line == "match" {
            continue;
        } else if line.starts_with("        ") {
            if let Some(c) = current.as_mut() {
                c.push(t.to_string());
            }
        }
    }
    if let Some(done) = current.take() {
        result.push(done);
    }
    result
}

#[test]
fn c_relay_methods_match_carbon_c_relay() {
    let Some(relay) = find_on_path("carbon-c-relay") else {
        return missing("carbon-c-relay is not installed");
    };
    let names = names(0xc0ff_ee00, C_RELAY_NAMES);
    // c-relay prints host:port only, so every destination here has its own.
    let lists: Vec<Vec<&str>> = vec![
        vec!["10.0.0.1:2004", "10.0.0.2:2004", "10.0.0.3:2004"],
        vec![
            "10.0.0.1:2004:a",
            "10.0.0.1:2104:b",
            "10.0.0.2:2004:a",
            "10.0.0.2:2104:b",
        ],
        vec![
            "10.1.0.1:2004:3",
            "10.1.0.2:2004:1",
            "10.1.0.3:2004",
            "10.1.0.4:2004:10",
            "10.1.0.5:2004",
            "10.1.0.6:2004:2",
        ],
    ];
    let mut out = Vec::new();
    for (method, c_name) in [
        (Method::CarbonCRelayCh, "carbon_ch"),
        (Method::JumpFnv1aCh, "jump_fnv1a_ch"),
    ] {
        for list in &lists {
            let dests = parse_dests(list);
            for replication in 1..=3 {
                let want = c_relay_placements(&relay, c_name, list, replication, &names);
                assert_eq!(
                    want.len(),
                    names.len(),
                    "carbon-c-relay -t printed {} placements for {} names",
                    want.len(),
                    names.len()
                );
                let ring = Ring::new(method, &dests, replication, false).unwrap();
                for (name, want) in names.iter().zip(&want) {
                    ring.place(name.as_bytes(), &mut out);
                    let got: Vec<String> = out
                        .iter()
                        .map(|&i| format!("{}:{}", dests[i].host, dests[i].port))
                        .collect();
                    assert_eq!(
                        &got, want,
                        "{method} {list:?} replication {replication}: name {name:?}"
                    );
                }
            }
        }
    }
}

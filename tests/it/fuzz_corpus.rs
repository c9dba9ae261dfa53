//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same target bodies the fuzzers run (`fuzz/src/lib.rs`, included here), on
//! the stable toolchain and without libFuzzer, so that every input that ever
//! crashed a parser, and every input that reached new code, stays fixed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// The fuzzers run on an 8 MiB main thread; a debug build needs more stack
/// for the same depth, so replay on a thread with room to spare.
const STACK: usize = 64 << 20;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Run `body` on every file of `target`'s corpus; name the files that panic.
fn replay(target: &'static str, body: fn(&[u8])) {
    let started = Instant::now();
    let files = corpus(target);
    assert!(files.len() >= 2, "{target}: corpus is missing");
    let failed = std::thread::Builder::new()
        .name(format!("replay-{target}"))
        .stack_size(STACK)
        .spawn(move || {
            let mut failed = Vec::new();
            for f in &files {
                let data = std::fs::read(f).unwrap();
                if std::panic::catch_unwind(|| body(&data)).is_err() {
                    failed.push(f.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
            failed
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(failed.is_empty(), "{target}: {failed:?} panicked");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{target}: replay took {:?}",
        started.elapsed()
    );
}

#[test]
fn statsd_packet() {
    replay("statsd_packet", targets::statsd_packet);
}

#[test]
fn statsd_roundtrip() {
    replay("statsd_roundtrip", targets::statsd_roundtrip);
}

#[test]
fn carbon_line() {
    replay("carbon_line", targets::carbon_line);
}

#[test]
fn pickle_frame() {
    replay("pickle_frame", targets::pickle_frame);
}

#[test]
fn config_js() {
    replay("config_js", targets::config_js);
}

#[test]
fn config_toml() {
    replay("config_toml", targets::config_toml);
}

#[test]
fn mapping_yaml() {
    replay("mapping_yaml", targets::mapping_yaml);
}

/// The round trip's formatter writes what the parser reads back.
#[test]
fn statsd_format() {
    use statsyard::metric::MetricType;
    use targets::{format_statsd, Owned, OwnedValue};
    let m = |kind, value, sample_rate, timestamp| Owned {
        key: b"a.b;env=prod".to_vec(),
        kind,
        value,
        sample_rate,
        timestamp,
    };
    let line = |o: &Owned| format_statsd(o).map(|l| String::from_utf8(l).unwrap());
    assert_eq!(
        line(&m(
            MetricType::Counter,
            OwnedValue::Number(1.5),
            0.25,
            Some(1_700_000_000)
        ))
        .unwrap(),
        "a.b;env=prod:1.5|c|@0.25|T1700000000"
    );
    assert_eq!(
        line(&m(
            MetricType::Gauge,
            OwnedValue::GaugeDelta(-3.0),
            1.0,
            None
        ))
        .unwrap(),
        "a.b;env=prod:-3|g"
    );
    assert_eq!(
        line(&m(
            MetricType::Gauge,
            OwnedValue::GaugeDelta(0.0),
            1.0,
            None
        ))
        .unwrap(),
        "a.b;env=prod:+0|g"
    );
    // An absolute negative gauge has no one-line form.
    assert_eq!(
        line(&m(MetricType::Gauge, OwnedValue::Number(-1.0), 1.0, None)),
        None
    );
    for l in [
        "a.b;env=prod:1.5|c|@0.25|T1700000000",
        "g:-0|g",
        "s:x|s",
        "t:1e-7|ms",
    ] {
        targets::statsd_roundtrip(l.as_bytes());
    }
}

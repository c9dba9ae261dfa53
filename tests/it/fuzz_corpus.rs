//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same target bodies the fuzzers run (`fuzz/src/lib.rs`, included here), on
//! the stable toolchain and without libFuzzer, so that every input that ever
//! crashed a parser, and every input that reached new code, stays fixed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// The stack the fuzzers run with (their main thread's 8 MiB), so that an
/// input that overflowed it there overflows here too.
const STACK: usize = 8 << 20;

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
fn dogstatsd_event() {
    replay("dogstatsd_event", targets::dogstatsd_event);
}

#[test]
fn dogstatsd_check() {
    replay("dogstatsd_check", targets::dogstatsd_check);
}

#[test]
fn forward_message() {
    replay("forward_message", targets::forward_message);
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

/// What agents really send, from their own encoder: every type, a set and
/// an exact timer cut over several parts, histograms with negative
/// samples, raw and snappy. Each is accepted and merges, and the target
/// holds on it.
#[test]
fn forward_message_real_bodies() {
    use statsyard::aggregate::{GaugeState, IntervalState, Timer};
    use statsyard::forward::proto;
    use statsyard::metric::MetricType;

    let mut st = IntervalState::new(100);
    st.add_counter(b"c;env=prod", 10.0);
    let absolute = GaugeState {
        absolute: Some((4.5, 1_700_000_005_000)),
        delta: 0.0,
    };
    st.add_gauge(b"g", &absolute);
    let delta = GaugeState {
        absolute: None,
        delta: -2.0,
    };
    st.add_gauge(b"gd", &delta);
    st.add_timer(
        b"t",
        Timer::from_exact(MetricType::Timer, 4.0, vec![1.0, 2.0, 3.0]),
    );
    // 120 samples: past the bound of 100, a histogram.
    for kind in [MetricType::Histogram, MetricType::Distribution] {
        for _ in 0..2 {
            let samples = (0..60).map(|i| f64::from(i) * 1.5 - 20.0).collect();
            st.add_timer(
                kind.as_str().as_bytes(),
                Timer::from_exact(kind, 60.0, samples),
            );
        }
    }
    let lat = (0..5_000).map(f64::from).collect();
    st.add_timer(b"lat", Timer::from_exact(MetricType::Timer, 5_000.0, lat));
    let users: Vec<Vec<u8>> = (0..5_000)
        .map(|i| format!("user-{i}").into_bytes())
        .collect();
    st.add_members(b"users", users.iter().map(Vec::as_slice));

    let mut series = Vec::new();
    proto::series_of(&st, |_, s| series.push(s));
    let header = proto::Header {
        agent: "host-a/00ff".into(),
        interval_start_ms: targets::FORWARD_FLUSHED_UNTIL,
        interval_ms: 10_000,
        flushed_unix_ms: targets::FORWARD_FLUSHED_UNTIL + 10_001,
    };
    let parts = proto::parts(&header, series, 16 << 10);
    assert!(parts.len() > 4, "{} parts", parts.len());
    let mut merged = IntervalState::new(100);
    for b in &parts {
        for snappy in [false, true] {
            let (bytes, _) = proto::body(b, snappy);
            targets::forward_message(&bytes);
            let got = proto::decode(&bytes, snappy, 8 << 20).unwrap();
            assert_eq!(&got, b);
            got.merge_into(&mut merged).unwrap();
        }
    }
    assert_eq!(merged.len(), st.len());
}

/// The corpus keeps a message of every series type that is accepted and
/// merged (a histogram too), raw and snappy, so that the replay goes
/// through the whole merge and not only the refusals.
#[test]
fn forward_corpus_has_accepted_messages_of_every_type() {
    use statsyard::aggregate::IntervalState;
    use statsyard::forward::proto::{self, Kind};
    use std::collections::BTreeSet;

    let mut seen = BTreeSet::new();
    for f in corpus("forward_message") {
        let data = std::fs::read(&f).unwrap();
        for snappy in [false, true] {
            let Ok(b) = proto::decode(&data, snappy, 8 << 20) else {
                continue;
            };
            let kinds: Vec<(i32, bool)> = b
                .series
                .iter()
                .map(|s| (s.kind, s.timer.as_ref().is_some_and(|t| t.hdr.is_some())))
                .collect();
            if b.merge_into(&mut IntervalState::new(4)).is_ok() {
                seen.extend(kinds.into_iter().map(|k| (snappy, k)));
            }
        }
    }
    for snappy in [false, true] {
        for kind in 0..6 {
            assert!(
                seen.contains(&(snappy, (kind, false))) || seen.contains(&(snappy, (kind, true))),
                "no accepted {:?} (snappy: {snappy})",
                Kind::try_from(kind)
            );
        }
        assert!(
            seen.contains(&(snappy, (Kind::Histogram as i32, true))),
            "no accepted histogram (snappy: {snappy})"
        );
    }
}

/// The pickle frames the fuzzer found crashing the process (a stack
/// overflow, gigabytes of memory, a panic in a sort) are now bad frames:
/// counted, and the connection goes on to the next frame.
#[test]
fn hostile_pickle_frames_are_counted_bad_frames() {
    use std::io::Write;
    use std::sync::atomic::Ordering;

    use crate::support::{config, Graphite, Server};

    let mut graphite = Graphite::start();
    let s = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
[flush]
shutdown_timeout = "5s"
[relay]
line_tcp = []
line_udp = []
pickle = ["127.0.0.1:0"]
stats_interval = "0s"
[[relay.cluster]]
name = "c"
method = "forward"
destinations = ["{}"]
"#,
        graphite.addr
    )));
    let frame = |payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    };
    // 100 000 lists deep.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    // A list of 200 ints referenced 5000 times.
    let mut wide = b"\x80\x02]q\x00(".to_vec();
    wide.extend(std::iter::repeat_n(&b"K\x01"[..], 200).flatten());
    wide.extend_from_slice(b"e]");
    wide.extend(std::iter::repeat_n(&b"h\x00a"[..], 5000).flatten());
    wide.push(b'.');
    // [('s', (1, {nan, 1.0}))], protocol 4.
    let nan_set = b"\x80\x04\x95\x24\0\0\0\0\0\0\0]\x94\x8c\x01s\x94K\x01\x8f\x94(G\x3f\xf0\0\0\0\0\0\0G\x7f\xf8\0\0\0\0\0\0\x90\x86\x94\x86\x94a.";
    let good = serde_pickle::to_vec(
        &vec![("fuzz.after", (1_700_000_000i64, 2.5f64))],
        serde_pickle::SerOptions::new().proto_v2(),
    )
    .unwrap();
    let mut stream = Vec::new();
    for payload in [&deep[..], &wide, nan_set, &good] {
        stream.extend(frame(payload));
    }
    let mut conn = std::net::TcpStream::connect(s.running().pickle[0]).unwrap();
    conn.write_all(&stream).unwrap();

    assert_eq!(
        graphite.value_of("fuzz.after", Duration::from_secs(10)),
        "2.5"
    );
    let stats = s.running().stats.relay().expect("a relay runs");
    assert_eq!(stats.invalid_frame.load(Ordering::Relaxed), 3);
    drop(conn);
    s.stop();
}

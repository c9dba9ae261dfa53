//! The bodies of the fuzz targets, one function per target taking the raw
//! input. `fuzz_targets/*.rs` hand them to libFuzzer; the root package's
//! `tests/it/fuzz_corpus.rs` includes this file and replays `corpus/` with
//! them on the stable toolchain, so every input that once crashed stays
//! fixed. Only the public API of statsyard and std may be used here.
//!
//! A target panics when an invariant of the parser is broken; a refused
//! input is never a failure.

use statsyard::aggregate::Shard;
use statsyard::config;
use statsyard::events::Event;
use statsyard::metric::{MetricRef, MetricType, Value};
use statsyard::parse::carbon::{self, CarbonLineOptions, NameCheck, Timestamp};
use statsyard::parse::event::{self as dog, Dog};
use statsyard::parse::pickle;
use statsyard::parse::tags::TagDialects;
use statsyard::parse::{Handler, PacketCounts, ParseError, ParseOptions, StatsdParser};
use statsyard::sink::prometheus::mapping::{Mapping, MetricClass};

/// An owned copy of one value the statsd parser handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub key: Vec<u8>,
    pub kind: MetricType,
    pub value: OwnedValue,
    pub sample_rate: f64,
    pub timestamp: Option<u64>,
}

/// [`Value`], owned.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Number(f64),
    GaugeDelta(f64),
    SetMember(Vec<u8>),
}

/// Collects what the parser hands out and checks each value on the way.
#[derive(Default)]
struct Collect {
    metrics: Vec<Owned>,
    bad: u64,
    shard: Shard,
}

impl Handler for Collect {
    fn metric(&mut self, m: MetricRef<'_>) {
        assert!(!m.key.is_empty(), "empty key");
        assert!(
            m.sample_rate.is_finite() && m.sample_rate > 0.0,
            "sample rate {}",
            m.sample_rate
        );
        let value = match m.value {
            Value::Number(v) => {
                assert!(v.is_finite(), "value {v}");
                assert!(
                    !(m.kind == MetricType::Timer && v < 0.0),
                    "negative timer {v}"
                );
                OwnedValue::Number(v)
            }
            Value::GaugeDelta(v) => {
                assert!(v.is_finite(), "delta {v}");
                assert_eq!(m.kind, MetricType::Gauge, "a delta is for a gauge");
                OwnedValue::GaugeDelta(v)
            }
            Value::SetMember(b) => {
                assert_eq!(m.kind, MetricType::Set, "a member is for a set");
                assert!(!b.is_empty(), "empty member");
                OwnedValue::SetMember(b.to_vec())
            }
        };
        // The real aggregation code takes every accepted value.
        self.shard.insert(&m);
        self.metrics.push(Owned {
            key: m.key.to_vec(),
            kind: m.kind,
            value,
            sample_rate: m.sample_rate,
            timestamp: m.timestamp,
        });
    }

    fn bad_line(&mut self, line: &[u8], _err: ParseError) {
        assert!(!line.contains(&b'\n'), "a bad line holds a newline");
        self.bad += 1;
    }
}

/// The option sets the statsd targets run with: the default (sanitise,
/// every tag dialect) and the reference's (no dialects), raw keys too.
fn statsd_options() -> [ParseOptions; 3] {
    [
        ParseOptions::default(),
        ParseOptions {
            sanitize: true,
            tag_dialects: TagDialects::NONE,
            ..ParseOptions::default()
        },
        ParseOptions {
            sanitize: false,
            tag_dialects: TagDialects::ALL,
            ..ParseOptions::default()
        },
    ]
}

/// Parse `packet` and return the values, checking the counts.
fn parse_statsd(opts: ParseOptions, packet: &[u8]) -> Vec<Owned> {
    let mut parser = StatsdParser::new(opts);
    let mut h = Collect::default();
    let counts: PacketCounts = parser.parse_packet(packet, &mut h);
    assert_eq!(counts.metrics, h.metrics.len() as u64, "metrics counted");
    assert_eq!(counts.bad, h.bad, "bad lines counted");
    let lines = packet
        .split(|&b| b == b'\n')
        .filter(|l| !l.strip_suffix(b"\r").unwrap_or(l).is_empty())
        .count() as u64;
    assert_eq!(counts.lines, lines, "lines counted");
    assert!(
        counts.metrics + counts.bad + counts.events >= counts.lines,
        "a line is neither accepted nor refused: {counts:?}"
    );
    let snapshot = h.shard.take();
    assert!(snapshot.len() <= h.metrics.len());
    h.metrics
}

/// Target `statsd_packet`: one UDP packet (or TCP chunk) of statsd lines.
pub fn statsd_packet(data: &[u8]) {
    for opts in statsd_options() {
        let whole = parse_statsd(opts.clone(), data);
        // A packet is its lines: parsing them one by one gives the same.
        let mut parser = StatsdParser::new(opts);
        let mut h = Collect::default();
        for line in data.split(|&b| b == b'\n') {
            parser.parse_line(line, &mut h);
        }
        assert_eq!(whole, h.metrics, "packet and line by line differ");
    }
}

/// Format one parsed value back into a statsd line, or `None` when the
/// protocol cannot say it in one line (an absolute negative gauge, which a
/// client has to send as `0` and then a delta).
pub fn format_statsd(m: &Owned) -> Option<Vec<u8>> {
    let mut out = m.key.clone();
    out.push(b':');
    match &m.value {
        OwnedValue::Number(v) => {
            if m.kind == MetricType::Gauge && v.is_sign_negative() {
                return None;
            }
            out.extend_from_slice(format!("{v}").as_bytes());
        }
        OwnedValue::GaugeDelta(v) => {
            let sign = if v.is_sign_negative() { "-" } else { "+" };
            out.extend_from_slice(format!("{sign}{}", v.abs()).as_bytes());
        }
        OwnedValue::SetMember(b) => out.extend_from_slice(b),
    }
    out.push(b'|');
    out.extend_from_slice(m.kind.as_str().as_bytes());
    if m.sample_rate != 1.0 {
        out.extend_from_slice(format!("|@{}", m.sample_rate).as_bytes());
    }
    if let Some(ts) = m.timestamp {
        out.extend_from_slice(format!("|T{ts}").as_bytes());
    }
    Some(out)
}

/// Target `statsd_roundtrip`: parse, format each value as a line, parse the
/// line again; the second parse must give back exactly the same value.
/// Keys are sanitised (the default), so they are canonical and re-read as
/// themselves.
pub fn statsd_roundtrip(data: &[u8]) {
    for opts in [
        ParseOptions::default(),
        ParseOptions {
            sanitize: true,
            tag_dialects: TagDialects::NONE,
            ..ParseOptions::default()
        },
    ] {
        for m in parse_statsd(opts.clone(), data) {
            let Some(line) = format_statsd(&m) else {
                continue;
            };
            let again = parse_statsd(opts.clone(), &line);
            assert_eq!(
                again,
                std::slice::from_ref(&m),
                "round trip through {:?}",
                String::from_utf8_lossy(&line)
            );
        }
    }
}

/// The first line of `data`, as a listener hands lines to the parser.
fn first_line(data: &[u8]) -> &[u8] {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(data);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Target `dogstatsd_event`: a DogStatsD event line. An accepted event's
/// title and text are exactly as long as its header says and its title is
/// not empty; its DogStatsD line (what the repeater sends on) parses back
/// to the same event; the statsd parser counts it as an event, once.
pub fn dogstatsd_event(data: &[u8]) {
    let line = first_line(data);
    let mut prefixed = b"_e{".to_vec();
    prefixed.extend_from_slice(line.strip_prefix(b"_e{").unwrap_or(line));
    for line in [line, &prefixed[..]] {
        let Ok(Dog::Event(e)) = dog::parse(line) else {
            continue;
        };
        assert!(!e.title.is_empty(), "empty title");
        let close = line.iter().position(|&b| b == b'}').expect("a header");
        let lengths = String::from_utf8_lossy(&line[3..close]).into_owned();
        let (a, b) = lengths.split_once(',').expect("two lengths");
        assert_eq!(
            (a.parse::<usize>().ok(), b.parse::<usize>().ok()),
            (Some(e.title.len()), Some(e.text.len())),
            "lengths differ from the header"
        );
        let owned = Event::received(&e, 1, None);
        let out = owned.to_dogstatsd();
        let Ok(Dog::Event(again)) = dog::parse(&out) else {
            panic!(
                "its line does not parse: {:?}",
                String::from_utf8_lossy(&out)
            );
        };
        assert_eq!(Event::received(&again, 1, None), owned, "round trip");
        let counts =
            StatsdParser::new(ParseOptions::default()).parse_line(line, &mut Collect::default());
        assert_eq!((counts.events, counts.bad, counts.metrics), (1, 0, 0));
    }
}

/// Target `dogstatsd_check`: a DogStatsD service check line. An accepted
/// check has a name and a status of 0 to 3; the statsd parser turns it
/// into exactly one gauge of that value (or refuses it as a bad line when
/// its name sanitises to nothing or it has too many tags).
pub fn dogstatsd_check(data: &[u8]) {
    let line = first_line(data);
    let mut prefixed = b"_sc|".to_vec();
    prefixed.extend_from_slice(line.strip_prefix(b"_sc|").unwrap_or(line));
    for line in [line, &prefixed[..]] {
        let Ok(Dog::Check(c)) = dog::parse(line) else {
            continue;
        };
        assert!(!c.name.is_empty(), "empty name");
        for opts in statsd_options() {
            let mut h = Collect::default();
            let counts = StatsdParser::new(opts).parse_line(line, &mut h);
            if counts.bad == 1 {
                assert_eq!((counts.events, counts.metrics), (0, 0));
                continue;
            }
            assert_eq!((counts.events, counts.metrics), (1, 1));
            assert_eq!(h.metrics.len(), 1);
            let m = &h.metrics[0];
            assert_eq!(m.kind, MetricType::Gauge);
            assert_eq!(m.value, OwnedValue::Number(c.status as u8 as f64));
        }
    }
}

/// The option sets the carbon target runs with: carbon's defaults, and
/// every switch flipped.
fn carbon_options() -> [CarbonLineOptions; 2] {
    [
        CarbonLineOptions::default(),
        CarbonLineOptions {
            minus_one_is_now: false,
            allow_missing_timestamp: true,
            allow_inf: false,
            max_line_length: 0,
            name_check: NameCheck::Strict,
        },
    ]
}

/// Target `carbon_line`: carbon plaintext lines. Each accepted point is
/// formatted back as `path value timestamp` and must parse to itself, and
/// normalising a tagged name twice must change nothing the second time.
pub fn carbon_line(data: &[u8]) {
    for opts in carbon_options() {
        for line in data.split(|&b| b == b'\n') {
            let Ok(p) = carbon::parse_line(line, &opts) else {
                continue;
            };
            assert!(!p.name.is_empty(), "empty name");
            assert!(!p.value.is_nan(), "NaN value");
            assert!(opts.allow_inf || p.value.is_finite(), "inf value");
            let ts = match p.timestamp {
                // Without a timestamp, or with carbon's `-1`.
                Timestamp::Now if opts.minus_one_is_now => "-1".to_string(),
                Timestamp::Now => {
                    assert!(opts.allow_missing_timestamp, "now without a way to say it");
                    String::new()
                }
                Timestamp::At(t) => {
                    assert!(t.is_finite(), "timestamp {t}");
                    assert!(!(opts.minus_one_is_now && t.trunc() == -1.0));
                    format!("{t}")
                }
            };
            let text = format!("{} {} {ts}", String::from_utf8_lossy(p.name), p.value);
            let again = carbon::parse_line(
                text.as_bytes(),
                &CarbonLineOptions {
                    max_line_length: 0,
                    ..opts
                },
            )
            .unwrap_or_else(|e| panic!("round trip through {text:?}: {e}"));
            assert_eq!(again, p, "round trip through {text:?}");

            if let Ok(n) = carbon::try_normalize_tags(p.name) {
                let twice = carbon::try_normalize_tags(&n)
                    .unwrap_or_else(|e| panic!("normalised name {n:?} does not parse: {e}"));
                assert_eq!(twice, n, "normalising is not idempotent");
            }
        }
    }
}

/// Target `pickle_frame`: the bytes of a pickle connection. They are read
/// as one payload, then as a stream of length-prefixed frames.
pub fn pickle_frame(data: &[u8]) {
    let check = |payload: &[u8]| {
        for opts in carbon_options() {
            let mut points = Vec::new();
            let mut skipped = 0usize;
            if pickle::decode_frame_into(payload, &opts, &mut points, &mut |_| skipped += 1).is_ok()
            {
                for p in &points {
                    assert!(!p.value.is_nan(), "NaN value");
                    if let Timestamp::At(t) = p.timestamp {
                        assert!(t.is_finite(), "timestamp {t}");
                    }
                }
            }
        }
    };
    check(data);
    let mut buf = data;
    while let Ok(Some(frame)) = pickle::next_frame(buf, pickle::DEFAULT_MAX_FRAME) {
        assert!(frame.consumed >= 4 && frame.consumed <= buf.len());
        check(frame.payload);
        buf = &buf[frame.consumed..];
    }
}

/// Target `config_js`: a reference `config.js`.
pub fn config_js(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::etsy::from_str(text, "config.js");
    }
}

/// Target `config_toml`: a statsyard.toml.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::toml::from_str(text, "statsyard.toml");
    }
}

/// Target `mapping_yaml`: a statsd_exporter mapping file. When it loads,
/// a few names are mapped through it.
pub fn mapping_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((mapping, _unsupported)) = Mapping::from_yaml(text) else {
        return;
    };
    for name in [
        "a",
        "a.b.c",
        "test.dispatcher.FooProcessor.send.success",
        "",
    ] {
        for class in [
            MetricClass::Counter,
            MetricClass::Gauge,
            MetricClass::Observer,
        ] {
            let _ = mapping.map(name, class);
        }
    }
}

//! The bodies of the fuzz targets, one function per target taking the raw
//! input. `fuzz_targets/*.rs` hand them to libFuzzer; the root package's
//! `tests/it/fuzz_corpus.rs` includes this file and replays `corpus/` with
//! them on the stable toolchain, so every input that once crashed stays
//! fixed. Only the public API of statsyard and std may be used here.
//!
//! A target panics when an invariant of the parser is broken; a refused
//! input is never a failure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use statsyard::aggregate::{AggregateOptions, IntervalState, Registry, Shard};
use statsyard::config;
use statsyard::events::Event;
use statsyard::flush::compute::{self, Bin, ComputeOptions, HistogramRule, Percentile};
use statsyard::flusher::{FlusherHandle, Inflow};
use statsyard::forward::aggregator::{AggregatorSide, Outcome, Pending, Rejected};
use statsyard::forward::proto::{self, Batch, Kind, Refusal};
use statsyard::forward::RawAggregator;
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

/// The aggregator's interval in `forward_message`, ms.
const FORWARD_IV_MS: u64 = 10_000;

/// Samples a timer keeps exactly in `forward_message`: few, so that two
/// entries of one key merge past the bound into a histogram.
const FORWARD_EXACT: usize = 4;

/// `forward_message` flushes the intervals ending by this (Unix ms)
/// before a message comes, so a message for one of them is late (merged
/// into the next flush); the seeds have intervals on both sides.
pub const FORWARD_FLUSHED_UNTIL: u64 = 1_700_000_000_000;

/// Target `forward_message`: the body of a POST to the aggregator's
/// `/v1/forward`, read as protobuf and as snappy, with the aggregator's
/// default `max_message_bytes`. A decoded message is one this aggregator
/// speaks; re-encoded (raw and snappy) it decodes to the same bytes; its
/// merge either takes every series (their keys valid, set members and
/// timer samples all there) or refuses it as invalid and takes none. The
/// aggregator's own intake ([`Pending::accept`], as the HTTP handler calls
/// it) answers exactly that, merges a message sent twice once, and what it
/// merged goes into a real [`Registry`] and is flushed. Under the fuzzer
/// (`fuzz_targets/forward_message.rs`), one input may also hold only so
/// many bytes at once.
pub fn forward_message(data: &[u8]) {
    let max = RawAggregator::default().max_message_bytes;
    for snappy in [false, true] {
        let decoded = proto::decode(data, snappy, max);
        if let Ok(b) = &decoded {
            check_forward_batch(b);
        }
        forward_intake(data, snappy, max, decoded);
    }
}

/// What merging a batch gives, comparable: the series entries taken, or
/// the refusal's reason.
fn merge_outcome(b: &Batch) -> (Result<usize, &'static str>, IntervalState) {
    let mut st = IntervalState::new(FORWARD_EXACT);
    let r = b.clone().merge_into(&mut st).map_err(|r| r.reason());
    (r, st)
}

fn check_forward_batch(b: &Batch) {
    assert_eq!(b.version, proto::VERSION, "another version accepted");
    assert_ne!(b.interval_ms, 0, "an interval of 0 ms accepted");
    assert!(
        !b.agent.is_empty() && b.agent.len() <= 256,
        "agent id of {} bytes accepted",
        b.agent.len()
    );

    // Re-encoded, raw and snappy, it decodes to the same message. Compared
    // as encodings: a NaN is not equal to itself. Not bounded by `max`: a
    // canonical encoding can be longer than the one that came (a negative
    // kind sent in 5 bytes is 10 in prost's).
    let (raw, raw_len) = proto::body(b, false);
    assert_eq!(raw_len, raw.len());
    let (z, z_len) = proto::body(b, true);
    assert_eq!(z_len, raw.len());
    for (bytes, snappy) in [(&raw, false), (&z, true)] {
        let again = proto::decode(bytes, snappy, usize::MAX)
            .unwrap_or_else(|e| panic!("re-encoded (snappy: {snappy}), refused: {e}"));
        assert_eq!(
            proto::body(&again, false).0,
            raw,
            "re-encoded (snappy: {snappy}), decodes differently"
        );
        // The same series, so the same merge.
        assert_eq!(merge_outcome(&again).0, merge_outcome(b).0);
    }

    let (merged, st) = merge_outcome(b);
    let n = match merged {
        Err(reason) => {
            assert_eq!(reason, "invalid");
            assert!(st.is_empty(), "a refused message merged something");
            return;
        }
        Ok(n) => n,
    };
    assert_eq!(n, b.series.len(), "series entries counted");

    // What each type's series should hold after the merge: every key, every
    // distinct member of a set, every sample of a timer (entries of one key
    // merged; `None` when the samples claimed overflow a u64).
    let mut counters = BTreeSet::new();
    let mut gauges = BTreeSet::new();
    let mut timers: HashMap<&[u8], Option<u64>> = HashMap::new();
    // Members compare as the strings they decode to (as the reference's
    // JavaScript does): invalid UTF-8 is U+FFFD.
    let mut sets: HashMap<&[u8], HashSet<String>> = HashMap::new();
    for s in &b.series {
        let kind = Kind::try_from(s.kind).expect("an unknown kind merged");
        let key = &s.key[..];
        match kind {
            Kind::Counter => {
                counters.insert(key);
            }
            Kind::Gauge => {
                gauges.insert(key);
            }
            Kind::Set => sets.entry(key).or_default().extend(
                s.members
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned()),
            ),
            Kind::Timer | Kind::Histogram | Kind::Distribution => {
                let t = s.timer.as_ref().expect("a timer without samples merged");
                let len = t.hdr.as_ref().map_or(t.exact.len() as u64, |h| h.n);
                let total = timers.entry(key).or_insert(Some(0));
                *total = total.and_then(|x| x.checked_add(len));
            }
        }
    }
    fn keys<'a>(it: impl Iterator<Item = &'a [u8]>) -> BTreeSet<&'a [u8]> {
        it.collect()
    }
    assert_eq!(keys(st.counters().map(|(k, _)| k.as_bytes())), counters);
    assert_eq!(keys(st.gauges().map(|(k, _)| k.as_bytes())), gauges);
    assert_eq!(st.timers().count(), timers.len(), "timer series");
    for (k, t) in st.timers() {
        let want = timers
            .get(k.as_bytes())
            .expect("a timer merged from nowhere");
        if let Some(want) = want {
            assert_eq!(t.len(), *want, "samples of a timer");
        }
    }
    assert_eq!(st.sets().count(), sets.len(), "set series");
    for (k, m) in st.sets() {
        let want = sets.get(k.as_bytes()).expect("a set merged from nowhere");
        assert_eq!(m.len(), want.len(), "members of a set");
    }
    for s in &b.series {
        assert!(
            !s.key.is_empty() && s.key.iter().all(|&c| c > b' ' && c != 0x7f),
            "key {:?} merged",
            String::from_utf8_lossy(&s.key)
        );
    }
}

/// The option sets a flush of forwarded state is computed with: the
/// default, and percentiles from both ends with histogram bins.
fn forward_compute_options() -> [ComputeOptions; 2] {
    [
        ComputeOptions::default(),
        ComputeOptions {
            percentiles: vec![
                Percentile { value: 99.9 },
                Percentile { value: -10.0 },
                Percentile { value: 50.0 },
            ],
            histograms: vec![HistogramRule {
                metric: String::new(),
                bins: vec![Bin::Limit(-1.0), Bin::Limit(0.5), Bin::Limit(1e9), Bin::Inf],
            }],
            ..ComputeOptions::default()
        },
    ]
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The aggregator's intake of one body: a fresh [`Pending`] (no journal)
/// whose intervals up to [`FORWARD_FLUSHED_UNTIL`] were flushed.
fn forward_intake(data: &[u8], snappy: bool, max: usize, decoded: Result<Batch, Refusal>) {
    let stats = Arc::new(statsyard::stats::forward::AggregatorStats::default());
    // The receiver stays alive so that an early-flush request is queued.
    let (flusher, _rx) = FlusherHandle::channel();
    let pending = Pending::open(
        FORWARD_IV_MS,
        None,
        max,
        FORWARD_EXACT,
        stats.clone(),
        flusher,
    )
    .expect("a Pending without a journal");
    let mut side = AggregatorSide(pending.clone());
    assert!(side.take_due(FORWARD_FLUSHED_UNTIL).is_none());
    let got = pending.accept(data, snappy);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);

    let batch = match decoded {
        Err(r) => {
            let counter = match &r {
                Refusal::TooLarge(_) => &stats.refused_too_large,
                Refusal::Decode(_) => &stats.refused_decode,
                Refusal::Version(_) => &stats.refused_version,
                Refusal::Invalid(_) => &stats.refused_invalid,
            };
            assert_eq!(load(counter), 1, "refusal counted");
            assert_eq!(got, Err(Rejected::Refused(r)));
            assert_eq!(load(&stats.accepted), 0);
            return;
        }
        Ok(b) => b,
    };
    // The aggregator refuses intervals more than an hour ahead of its clock;
    // too close to that to tell, nothing is checked.
    let horizon = unix_ms() + 3_600_000;
    if batch.interval_start_ms.abs_diff(horizon) < 600_000 {
        return;
    }
    if batch.interval_start_ms > horizon {
        assert!(
            matches!(got, Err(Rejected::Refused(Refusal::Invalid(_)))),
            "{got:?}"
        );
        return;
    }
    let (merged, st) = merge_outcome(&batch);
    let n = match merged {
        Err(_) => {
            assert!(
                matches!(got, Err(Rejected::Refused(Refusal::Invalid(_)))),
                "{got:?}"
            );
            assert_eq!(load(&stats.refused_invalid), 1);
            return;
        }
        Ok(n) => n as u64,
    };
    assert_eq!(got, Ok(Outcome::Merged));
    assert_eq!(load(&stats.series), n);
    let start = batch.interval_start_ms;
    let late = start - start % FORWARD_IV_MS + FORWARD_IV_MS <= FORWARD_FLUSHED_UNTIL;
    assert_eq!(load(&stats.late_series), if late { n } else { 0 }, "late");
    // Sent again (its answer lost): taken once.
    assert_eq!(pending.accept(data, snappy), Ok(Outcome::Duplicate));
    assert_eq!(load(&stats.duplicates), 1);
    assert_eq!(load(&stats.accepted), 2);

    // The final flush takes every interval, as the flusher does.
    let taken = side
        .take_due(u64::MAX)
        .expect("an accepted message leaves an interval to flush");
    assert_eq!(taken.len(), st.len(), "series pending");
    side.flushed(u64::MAX, false);
    let opts = AggregateOptions {
        timer_exact_samples: FORWARD_EXACT,
        ..AggregateOptions::default()
    };
    let mut reg = Registry::new(&opts);
    reg.merge_state(taken);
    assert_eq!(reg.len(), st.len(), "series in the registry");
    for c in forward_compute_options() {
        let f = compute::compute(&reg, &c, 1_700_000_000);
        assert_eq!(
            f.counters.len() + f.gauges.len() + f.timers.len() + f.sets.len(),
            reg.len(),
            "series flushed"
        );
    }
    reg.end_interval();
}

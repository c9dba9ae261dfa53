//! The forwarding protocol: protobuf messages (hand-written with prost's
//! derive, no protoc step; `docs/forward.proto` is the same schema for
//! other implementations, and a test keeps the two in step), snappy block
//! compression, POSTed over HTTP to `/v1/forward`.
//!
//! One [`Batch`] is one part of one agent's interval for one aggregator:
//! the agent's id, the interval (start and length in ms), the part number
//! and whether it is the agent's last part of that interval to that
//! aggregator, and the series with their mergeable state. An interval's
//! state for one aggregator is cut into parts under `max_message_bytes`
//! (before compression); a series too big for one part (a set with very
//! many members, a timer with many exact samples) is cut into several
//! entries of the same key, which merge back exactly (sets are unions,
//! timers pool samples and add counts).
//!
//! [`encode`] turns forwarded state into parts, [`decode`] checks a body
//! and [`Batch::merge_into`] folds a part into an aggregator's state; every
//! way a message can be wrong is a [`Refusal`], never a panic.
//!
//! Imports, besides `forward` itself: `aggregate`, `metric`.

use crate::aggregate::{GaugeState, HdrParts, HdrSamples, IntervalState, Timer, TimerSamples};
use crate::metric::MetricType;

/// The protocol version this build speaks (`Batch.version`, and the `v1`
/// of the path).
pub const VERSION: u32 = 1;

/// The path agents POST to.
pub const PATH: &str = "/v1/forward";

/// The content type of a body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// One part of one agent's interval for one aggregator.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Batch {
    /// [`VERSION`].
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The agent: its host name and its process's instance id
    /// (`host/0123abcd...`): a restarted agent is a new agent.
    #[prost(string, tag = "2")]
    pub agent: String,
    /// The interval's start, Unix ms (a multiple of its length).
    #[prost(uint64, tag = "3")]
    pub interval_start_ms: u64,
    /// The interval's length, ms.
    #[prost(uint64, tag = "4")]
    pub interval_ms: u64,
    /// The part's number in the interval, from 0.
    #[prost(uint32, tag = "5")]
    pub part: u32,
    /// The agent's last part of the interval to this aggregator.
    #[prost(bool, tag = "6")]
    pub last: bool,
    /// When the agent flushed the interval, Unix ms (for the merge lag).
    #[prost(uint64, tag = "7")]
    pub flushed_unix_ms: u64,
    #[prost(message, repeated, tag = "8")]
    pub series: Vec<Series>,
}

/// A series' type on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Kind {
    Counter = 0,
    Gauge = 1,
    Timer = 2,
    Histogram = 3,
    Distribution = 4,
    Set = 5,
}

/// One series' state in one interval.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Series {
    /// The canonical key: the name, then `;tag=value` sorted.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(enumeration = "Kind", tag = "2")]
    pub kind: i32,
    /// A counter's sum, already scaled by its sample rates.
    #[prost(double, tag = "3")]
    pub counter: f64,
    #[prost(message, optional, tag = "4")]
    pub gauge: Option<Gauge>,
    /// A set's members (exact).
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub members: Vec<Vec<u8>>,
    /// A timer's, histogram's or distribution's samples.
    #[prost(message, optional, tag = "6")]
    pub timer: Option<TimerState>,
}

/// A gauge: the last absolute value and when it was written (the latest
/// wins), and/or the sum of deltas sent without one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    #[prost(bool, tag = "1")]
    pub has_absolute: bool,
    #[prost(double, tag = "2")]
    pub absolute: f64,
    /// Unix ms.
    #[prost(uint64, tag = "3")]
    pub written_ms: u64,
    #[prost(double, tag = "4")]
    pub delta: f64,
}

/// A timer-like series: its count (the sum of 1 / sample rate) and its
/// samples, exact or as a histogram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimerState {
    #[prost(double, tag = "1")]
    pub count: f64,
    /// Every sample, while the agent kept them exactly.
    #[prost(double, repeated, tag = "2")]
    pub exact: Vec<f64>,
    /// Past the exact bound: the histogram and the exact moments.
    #[prost(message, optional, tag = "3")]
    pub hdr: Option<Hdr>,
}

/// A histogram (HdrHistogram's V2 encoding, in microseconds, negative
/// samples apart) with the exact moments.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hdr {
    #[prost(bytes = "vec", tag = "1")]
    pub positive: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub negative: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub n: u64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, tag = "6")]
    pub min: f64,
    #[prost(double, tag = "7")]
    pub max: f64,
    #[prost(double, tag = "8")]
    pub mean: f64,
    #[prost(double, tag = "9")]
    pub m2: f64,
}

/// Why a message was refused; the aggregator answers with a 4xx and
/// counts it by [`Refusal::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Larger than `max_message_bytes`, compressed or not.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// Not snappy, not protobuf, or not a `Batch`.
    #[error("undecodable message: {0}")]
    Decode(String),
    /// Another protocol version.
    #[error("protocol version {0}, this aggregator speaks {VERSION}")]
    Version(u32),
    /// A field that makes no sense (an interval of 0 ms, a key with
    /// control characters, a histogram whose counts do not add up...).
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Refusal {
    /// The reason's label in the self-metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "too_large",
            Refusal::Decode(_) => "decode",
            Refusal::Version(_) => "version",
            Refusal::Invalid(_) => "invalid",
        }
    }
}

/// What every part of one agent's interval says besides its series.
#[derive(Debug, Clone)]
pub struct Header {
    pub agent: String,
    pub interval_start_ms: u64,
    pub interval_ms: u64,
    pub flushed_unix_ms: u64,
}

/// The wire kind of a metric type.
pub fn kind_of(t: MetricType) -> Kind {
    match t {
        MetricType::Counter => Kind::Counter,
        MetricType::Gauge => Kind::Gauge,
        MetricType::Timer => Kind::Timer,
        MetricType::Histogram => Kind::Histogram,
        MetricType::Distribution => Kind::Distribution,
        MetricType::Set => Kind::Set,
    }
}

fn type_of(k: Kind) -> MetricType {
    match k {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Timer => MetricType::Timer,
        Kind::Histogram => MetricType::Histogram,
        Kind::Distribution => MetricType::Distribution,
        Kind::Set => MetricType::Set,
    }
}

/// Bytes of a `Batch` besides its series, at most (agent ids are short).
const HEADER_BYTES: usize = 512;

/// Bytes one series entry takes in a `Batch`.
fn entry_len(s: &Series) -> usize {
    prost::encoding::message::encoded_len(8, s)
}

/// One series of `st`, as wire entries, each under `budget` bytes when it
/// can be cut (sets by members, exact timers by samples).
fn push_series(out: &mut Vec<Series>, s: Series, budget: usize) {
    if entry_len(&s) <= budget {
        out.push(s);
        return;
    }
    let (key, kind) = (s.key.clone(), s.kind);
    let base = |_: &Series| Series {
        key: key.clone(),
        kind,
        ..Series::default()
    };
    if !s.members.is_empty() {
        let mut cur = base(&s);
        let fixed = entry_len(&cur);
        let mut len = fixed;
        for m in s.members {
            let l = prost::encoding::bytes::encoded_len(5, &m);
            if len + l > budget && !cur.members.is_empty() {
                out.push(std::mem::replace(&mut cur, base(&Series::default())));
                len = fixed;
            }
            len += l;
            cur.members.push(m);
        }
        out.push(cur);
        return;
    }
    if let Some(t) = s
        .timer
        .as_ref()
        .filter(|t| t.hdr.is_none() && !t.exact.is_empty())
    {
        // 9 bytes a sample, packed; the count goes with the first chunk.
        let per = (budget.saturating_sub(entry_len(&base(&s)) + 32) / 9).max(1);
        for (i, chunk) in t.exact.chunks(per).enumerate() {
            let mut e = base(&s);
            e.timer = Some(TimerState {
                count: if i == 0 { t.count } else { 0.0 },
                exact: chunk.to_vec(),
                hdr: None,
            });
            out.push(e);
        }
        return;
    }
    // Cannot be cut (a histogram is a few KB): alone, over the budget.
    out.push(s);
}

/// Every series of `st` as a wire entry, handed to `sink` with its key
/// (which decides the destination).
pub fn series_of(st: &IntervalState, mut sink: impl FnMut(&[u8], Series)) {
    for (k, v) in st.counters() {
        sink(
            k.as_bytes(),
            Series {
                key: k.as_bytes().to_vec(),
                kind: Kind::Counter as i32,
                counter: v,
                ..Series::default()
            },
        );
    }
    for (k, g) in st.gauges() {
        let (has_absolute, absolute, written_ms) = match g.absolute {
            Some((v, t)) => (true, v, t),
            None => (false, 0.0, 0),
        };
        sink(
            k.as_bytes(),
            Series {
                key: k.as_bytes().to_vec(),
                kind: Kind::Gauge as i32,
                gauge: Some(Gauge {
                    has_absolute,
                    absolute,
                    written_ms,
                    delta: g.delta,
                }),
                ..Series::default()
            },
        );
    }
    for (k, t) in st.timers() {
        let timer = match t.samples() {
            TimerSamples::Exact(v) => TimerState {
                count: t.count(),
                exact: v.to_vec(),
                hdr: None,
            },
            TimerSamples::Hist(h) => {
                let p = h.to_parts();
                TimerState {
                    count: t.count(),
                    exact: Vec::new(),
                    hdr: Some(Hdr {
                        positive: p.positive,
                        negative: p.negative,
                        n: p.n,
                        sum: p.sum,
                        sum_squares: p.sum_squares,
                        min: p.min,
                        max: p.max,
                        mean: p.mean,
                        m2: p.m2,
                    }),
                }
            }
        };
        sink(
            k.as_bytes(),
            Series {
                key: k.as_bytes().to_vec(),
                kind: kind_of(t.kind()) as i32,
                timer: Some(timer),
                ..Series::default()
            },
        );
    }
    for (k, m) in st.sets() {
        sink(
            k.as_bytes(),
            Series {
                key: k.as_bytes().to_vec(),
                kind: Kind::Set as i32,
                members: m.iter().map(<[u8]>::to_vec).collect(),
                ..Series::default()
            },
        );
    }
}

/// Cut one destination's series into parts of at most `max_bytes` each
/// (before compression); at least one part (an empty last part still
/// tells the aggregator the agent's interval is complete).
pub fn parts(header: &Header, series: Vec<Series>, max_bytes: usize) -> Vec<Batch> {
    let budget = max_bytes.saturating_sub(HEADER_BYTES).max(1024);
    let mut entries = Vec::with_capacity(series.len());
    for s in series {
        push_series(&mut entries, s, budget);
    }
    let new = |part: u32| Batch {
        version: VERSION,
        agent: header.agent.clone(),
        interval_start_ms: header.interval_start_ms,
        interval_ms: header.interval_ms,
        part,
        last: false,
        flushed_unix_ms: header.flushed_unix_ms,
        series: Vec::new(),
    };
    let mut out = vec![new(0)];
    let mut len = 0;
    for e in entries {
        let l = entry_len(&e);
        let cur = out.last_mut().expect("at least one part");
        if len + l > budget && !cur.series.is_empty() {
            let part = out.len() as u32;
            out.push(new(part));
            len = 0;
        }
        len += l;
        out.last_mut().expect("at least one part").series.push(e);
    }
    if let Some(b) = out.last_mut() {
        b.last = true;
    }
    out
}

/// A part's body: protobuf, then snappy's block format when `snappy`.
pub fn body(b: &Batch, snappy: bool) -> (Vec<u8>, usize) {
    let raw = prost::Message::encode_to_vec(b);
    let len = raw.len();
    if !snappy {
        return (raw, len);
    }
    match snap::raw::Encoder::new().compress_vec(&raw) {
        Ok(c) => (c, len),
        // Only for inputs beyond snappy's 4 GiB block limit, far above
        // any `max_message_bytes`: send it uncompressed.
        Err(_) => (raw, len),
    }
}

/// Check and decode a body (`snappy`: it came with `Content-Encoding:
/// snappy`), bounded by `max_bytes` before and after decompression.
pub fn decode(body: &[u8], snappy: bool, max_bytes: usize) -> Result<Batch, Refusal> {
    if body.len() > max_bytes {
        return Err(Refusal::TooLarge(max_bytes));
    }
    let raw;
    let bytes = if snappy {
        let n = snap::raw::decompress_len(body).map_err(|e| Refusal::Decode(e.to_string()))?;
        if n > max_bytes {
            return Err(Refusal::TooLarge(max_bytes));
        }
        raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|e| Refusal::Decode(e.to_string()))?;
        &raw[..]
    } else {
        body
    };
    let b: Batch = prost::Message::decode(bytes).map_err(|e| Refusal::Decode(e.to_string()))?;
    if b.version != VERSION {
        return Err(Refusal::Version(b.version));
    }
    if b.interval_ms == 0 || b.interval_ms > MAX_INTERVAL_MS {
        return Err(Refusal::Invalid(format!(
            "interval_ms {} is not in 1..={MAX_INTERVAL_MS}",
            b.interval_ms
        )));
    }
    if b.interval_start_ms > MAX_START_MS {
        return Err(Refusal::Invalid(format!(
            "interval_start_ms {} is past the year 9999",
            b.interval_start_ms
        )));
    }
    if b.agent.is_empty() || b.agent.len() > 256 {
        return Err(Refusal::Invalid("agent id empty or over 256 bytes".into()));
    }
    Ok(b)
}

/// The longest interval a message may say it covers: a day (statsyard's
/// own `[flush] interval` is far shorter).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;

/// The latest interval start a message may carry: 9999-12-31 (Unix ms), so
/// that the aggregator's arithmetic on it cannot overflow.
pub const MAX_START_MS: u64 = 253_402_300_799_000;

/// A key the registry could hold: not empty, no whitespace or control
/// characters (which would break Graphite lines downstream).
fn check_key(key: &[u8]) -> Result<(), Refusal> {
    if key.is_empty() || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Refusal::Invalid(format!(
            "key {:?}: empty, or has whitespace or control characters",
            String::from_utf8_lossy(&key[..key.len().min(64)])
        )));
    }
    Ok(())
}

impl Batch {
    /// Check every series, then fold them into `st`; returns how many
    /// series entries it held. Nothing is merged if any is wrong.
    pub fn merge_into(self, st: &mut IntervalState) -> Result<usize, Refusal> {
        let mut timers = Vec::new();
        for s in &self.series {
            check_key(&s.key)?;
            let kind = Kind::try_from(s.kind)
                .map_err(|_| Refusal::Invalid(format!("unknown series type {}", s.kind)))?;
            if type_of(kind).is_timer_like() {
                let t = s
                    .timer
                    .as_ref()
                    .ok_or_else(|| Refusal::Invalid("a timer without samples".into()))?;
                let timer = match &t.hdr {
                    Some(h) => {
                        let parts = HdrParts {
                            positive: h.positive.clone(),
                            negative: h.negative.clone(),
                            n: h.n,
                            sum: h.sum,
                            sum_squares: h.sum_squares,
                            min: h.min,
                            max: h.max,
                            mean: h.mean,
                            m2: h.m2,
                        };
                        let hist = HdrSamples::from_parts(&parts).map_err(Refusal::Invalid)?;
                        Timer::from_hist(type_of(kind), t.count, hist)
                    }
                    None => Timer::from_exact(type_of(kind), t.count, t.exact.clone()),
                };
                timers.push(Some(timer));
            } else {
                timers.push(None);
            }
        }
        let n = self.series.len();
        for (s, timer) in self.series.into_iter().zip(timers) {
            match Kind::try_from(s.kind).unwrap_or(Kind::Counter) {
                Kind::Counter => st.add_counter(&s.key, s.counter),
                Kind::Gauge => {
                    let g = s.gauge.unwrap_or_default();
                    st.add_gauge(
                        &s.key,
                        &GaugeState {
                            absolute: g.has_absolute.then_some((g.absolute, g.written_ms)),
                            delta: g.delta,
                        },
                    );
                }
                Kind::Set => st.add_members(&s.key, s.members.iter().map(Vec::as_slice)),
                Kind::Timer | Kind::Histogram | Kind::Distribution => {
                    if let Some(t) = timer {
                        st.add_timer(&s.key, t);
                    }
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            agent: "host-a/00ff".into(),
            interval_start_ms: 1_700_000_000_000,
            interval_ms: 10_000,
            flushed_unix_ms: 1_700_000_010_001,
        }
    }

    /// Every field of `docs/forward.proto` is a field of the Rust messages
    /// with the same number and wire type, and the other way round: the
    /// document is the schema other implementations can trust.
    #[test]
    fn the_proto_file_matches_the_messages() {
        use prost::Message;
        let doc = include_str!("../../docs/forward.proto");
        // (message, field, the encoding of a message with only that field set).
        type Enc = fn() -> Vec<u8>;
        let fields: &[(&str, &str, Enc)] = &[
            ("Batch", "version", || {
                Batch {
                    version: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "agent", || {
                Batch {
                    agent: "a".into(),
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "interval_start_ms", || {
                Batch {
                    interval_start_ms: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "interval_ms", || {
                Batch {
                    interval_ms: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "part", || {
                Batch {
                    part: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "last", || {
                Batch {
                    last: true,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "flushed_unix_ms", || {
                Batch {
                    flushed_unix_ms: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Batch", "series", || {
                Batch {
                    series: vec![Series::default()],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "key", || {
                Series {
                    key: vec![1],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "kind", || {
                Series {
                    kind: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "counter", || {
                Series {
                    counter: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "gauge", || {
                Series {
                    gauge: Some(Gauge::default()),
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "members", || {
                Series {
                    members: vec![vec![1]],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Series", "timer", || {
                Series {
                    timer: Some(TimerState::default()),
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Gauge", "has_absolute", || {
                Gauge {
                    has_absolute: true,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Gauge", "absolute", || {
                Gauge {
                    absolute: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Gauge", "written_ms", || {
                Gauge {
                    written_ms: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Gauge", "delta", || {
                Gauge {
                    delta: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("TimerState", "count", || {
                TimerState {
                    count: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("TimerState", "exact", || {
                TimerState {
                    exact: vec![1.0],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("TimerState", "hdr", || {
                TimerState {
                    hdr: Some(Hdr::default()),
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "positive", || {
                Hdr {
                    positive: vec![1],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "negative", || {
                Hdr {
                    negative: vec![1],
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "n", || {
                Hdr {
                    n: 1,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "sum", || {
                Hdr {
                    sum: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "sum_squares", || {
                Hdr {
                    sum_squares: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "min", || {
                Hdr {
                    min: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "max", || {
                Hdr {
                    max: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "mean", || {
                Hdr {
                    mean: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            ("Hdr", "m2", || {
                Hdr {
                    m2: 1.0,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
        ];
        // The .proto's fields: `<type> <name> = <n>;` inside `message X {`.
        let mut documented = Vec::new();
        let mut message = None;
        for line in doc.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("message ") {
                message = rest.split_whitespace().next().map(str::to_string);
                continue;
            }
            if line.starts_with('}') {
                message = None;
                continue;
            }
            let (Some(m), Some((decl, num))) = (&message, line.split_once('=')) else {
                continue;
            };
            if line.starts_with("//") {
                continue;
            }
            let words: Vec<&str> = decl.split_whitespace().collect();
            let num: u32 = num
                .trim()
                .trim_end_matches(';')
                .trim()
                .parse()
                .expect("a field number");
            let ty = words[words.len() - 2];
            // Repeated scalars are packed: length-delimited.
            let ty = if words[0] == "repeated" { "bytes" } else { ty };
            documented.push((
                m.clone(),
                words[words.len() - 1].to_string(),
                num,
                ty.to_string(),
            ));
        }
        assert_eq!(documented.len(), fields.len(), "{documented:?}");
        for (m, f, enc) in fields {
            let (_, _, num, ty) = documented
                .iter()
                .find(|(dm, df, ..)| dm == m && df == f)
                .unwrap_or_else(|| panic!("{m}.{f} is not in docs/forward.proto"));
            let bytes = enc();
            let key = bytes[0] as u32;
            assert_eq!(key >> 3, *num, "{m}.{f}: field number");
            let wire = match ty.as_str() {
                "double" => 1,
                "uint32" | "uint64" | "bool" | "Kind" => 0,
                _ => 2,
            };
            assert_eq!(key & 7, wire, "{m}.{f}: wire type of {ty}");
        }
        assert!(doc.contains(&format!("package statsyard.forward.v{VERSION};")));
    }

    fn state() -> IntervalState {
        let mut st = IntervalState::new(100);
        st.add_counter(b"c;env=prod", 10.0);
        st.add_gauge(
            b"g",
            &GaugeState {
                absolute: Some((4.5, 1_700_000_005_000)),
                delta: 0.0,
            },
        );
        st.add_gauge(
            b"gd",
            &GaugeState {
                absolute: None,
                delta: -2.0,
            },
        );
        st.add_timer(
            b"t",
            Timer::from_exact(MetricType::Timer, 4.0, vec![1.0, 2.0, 3.0]),
        );
        let mut big = Timer::from_exact(MetricType::Histogram, 0.0, Vec::new());
        big.merge(
            Timer::from_exact(
                MetricType::Histogram,
                500.0,
                (0..500).map(f64::from).collect(),
            ),
            100,
        );
        st.add_timer(b"h", big);
        st.add_members(b"s", [&b"a"[..], b"b", b"c"]);
        st
    }

    fn round_trip(st: &IntervalState, max: usize) -> IntervalState {
        let mut series = Vec::new();
        series_of(st, |_, s| series.push(s));
        let batches = parts(&header(), series, max);
        let mut out = IntervalState::new(100);
        for (i, b) in batches.iter().enumerate() {
            assert_eq!(b.part as usize, i);
            assert_eq!(b.last, i + 1 == batches.len());
            let (bytes, raw) = body(b, true);
            assert!(raw <= max.max(HEADER_BYTES + 1024) || b.series.len() == 1);
            let got = decode(&bytes, true, 1 << 30).unwrap();
            assert_eq!(&got, b);
            got.merge_into(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn every_type_goes_over_the_wire_and_back_exactly() {
        let st = state();
        let out = round_trip(&st, 4 << 20);
        let mut a: Vec<_> = st.counters().map(|(k, v)| (k.clone(), v)).collect();
        let mut b: Vec<_> = out.counters().map(|(k, v)| (k.clone(), v)).collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b);
        let g = |s: &IntervalState, k: &[u8]| {
            *s.gauges().find(|(key, _)| key.as_bytes() == k).unwrap().1
        };
        assert_eq!(g(&st, b"g"), g(&out, b"g"));
        assert_eq!(g(&st, b"gd"), g(&out, b"gd"));
        let t = |s: &IntervalState, k: &[u8]| {
            let t = s
                .timers()
                .find(|(key, _)| key.as_bytes() == k)
                .unwrap()
                .1
                .clone();
            let samples = match t.samples() {
                TimerSamples::Exact(v) => {
                    let mut v = v.to_vec();
                    v.sort_by(f64::total_cmp);
                    (v, None)
                }
                TimerSamples::Hist(h) => {
                    let mut runs = Vec::new();
                    h.runs(&mut runs);
                    (Vec::new(), Some((runs, h.sum(), h.min(), h.max(), h.std())))
                }
            };
            (t.kind(), t.count(), samples)
        };
        assert_eq!(t(&st, b"t"), t(&out, b"t"));
        assert_eq!(t(&st, b"h"), t(&out, b"h"));
        assert!(t(&out, b"h").2 .1.is_some(), "past the bound: a histogram");
        let members = |s: &IntervalState| {
            let mut m: Vec<Vec<u8>> = s
                .sets()
                .flat_map(|(_, m)| m.iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
                .collect();
            m.sort();
            m
        };
        assert_eq!(members(&st), members(&out));
    }

    #[test]
    fn big_sets_and_exact_timers_are_cut_and_merge_back() {
        let mut st = IntervalState::new(100_000);
        let members: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("user-{i}").into_bytes())
            .collect();
        st.add_members(b"users", members.iter().map(Vec::as_slice));
        st.add_timer(
            b"lat",
            Timer::from_exact(
                MetricType::Timer,
                40_000.0,
                (0..20_000).map(f64::from).collect(),
            ),
        );
        let mut series = Vec::new();
        series_of(&st, |_, s| series.push(s));
        let batches = parts(&header(), series, 64 << 10);
        assert!(batches.len() > 4, "{} parts", batches.len());
        for b in &batches {
            assert!(prost::Message::encoded_len(b) <= 64 << 10);
        }
        let out = round_trip(&st, 64 << 10);
        assert_eq!(out.sets().next().unwrap().1.len(), 20_000);
        let (_, t) = out.timers().next().unwrap();
        assert_eq!((t.count(), t.len()), (40_000.0, 20_000));
    }

    #[test]
    fn an_empty_interval_is_one_empty_last_part() {
        let b = parts(&header(), Vec::new(), 4 << 20);
        assert_eq!(b.len(), 1);
        assert!(b[0].last && b[0].series.is_empty());
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let good = parts(&header(), Vec::new(), 1 << 20).remove(0);
        let (bytes, _) = body(&good, true);
        assert!(decode(&bytes, true, 1 << 20).is_ok());
        assert_eq!(decode(&bytes, true, 3).unwrap_err().reason(), "too_large");
        assert_eq!(
            decode(b"\x10\x00\x01", true, 1 << 20).unwrap_err().reason(),
            "decode"
        );
        assert_eq!(
            decode(b"\x0a\xff", false, 1 << 20).unwrap_err().reason(),
            "decode"
        );
        // A tiny body that claims a huge decompressed length.
        let claim = [0xff, 0xff, 0xff, 0x7f, 0x00];
        assert_eq!(
            decode(&claim, true, 1 << 20).unwrap_err().reason(),
            "too_large"
        );
        let mut v2 = good.clone();
        v2.version = 2;
        assert_eq!(
            decode(&body(&v2, true).0, true, 1 << 20).unwrap_err(),
            Refusal::Version(2)
        );
        for (interval_ms, start) in [
            (0, good.interval_start_ms),
            (MAX_INTERVAL_MS + 1, good.interval_start_ms),
            // Found by the forward_message fuzz target: past u64::MAX / 11,
            // the aggregator's expiry of the message's id overflowed.
            (1 << 62, good.interval_start_ms),
            (good.interval_ms, MAX_START_MS + 1),
        ] {
            let mut b = good.clone();
            b.interval_ms = interval_ms;
            b.interval_start_ms = start;
            assert_eq!(
                decode(&body(&b, false).0, false, 1 << 20)
                    .unwrap_err()
                    .reason(),
                "invalid"
            );
        }
        let bad_series = |s: Series| {
            let mut b = good.clone();
            b.series.push(s);
            b.merge_into(&mut IntervalState::new(10)).unwrap_err()
        };
        let key = |k: &[u8]| Series {
            key: k.to_vec(),
            ..Series::default()
        };
        assert_eq!(bad_series(key(b"a b")).reason(), "invalid");
        assert_eq!(bad_series(key(b"a\nb")).reason(), "invalid");
        assert_eq!(bad_series(key(b"")).reason(), "invalid");
        assert_eq!(
            bad_series(Series {
                kind: 99,
                ..key(b"k")
            })
            .reason(),
            "invalid"
        );
        assert_eq!(
            bad_series(Series {
                kind: Kind::Timer as i32,
                ..key(b"k")
            })
            .reason(),
            "invalid"
        );
        let hdr = |n| Series {
            kind: Kind::Timer as i32,
            timer: Some(TimerState {
                count: 1.0,
                exact: Vec::new(),
                hdr: Some(Hdr {
                    positive: vec![1, 2, 3],
                    n,
                    ..Hdr::default()
                }),
            }),
            ..key(b"k")
        };
        assert_eq!(bad_series(hdr(1)).reason(), "invalid");
        // A histogram header asking for another precision is refused
        // before anything is allocated.
        let mut h = crate::aggregate::HdrSamples::from_parts(&HdrParts::default());
        assert!(h.is_err());
        let real = {
            let mut t = Timer::from_exact(MetricType::Timer, 0.0, Vec::new());
            t.merge(
                Timer::from_exact(MetricType::Timer, 3.0, vec![1.0, 2.0, 3.0]),
                1,
            );
            match t.samples() {
                TimerSamples::Hist(h) => h.to_parts(),
                TimerSamples::Exact(_) => panic!("past the bound"),
            }
        };
        let mut p = real.clone();
        p.positive[15] = 5;
        h = crate::aggregate::HdrSamples::from_parts(&p);
        assert!(h.unwrap_err().contains("precision"));
        assert!(crate::aggregate::HdrSamples::from_parts(&real).is_ok());
        let mut p = real;
        p.n = 4;
        assert!(crate::aggregate::HdrSamples::from_parts(&p).is_err());
    }
}

//! The statsd line protocol, with the DogStatsD and Graphite-tag extensions.
//!
//! Zero-copy: values borrow from the packet; the key borrows from the packet
//! when it is already canonical and from reused buffers otherwise (see
//! [`super::tags`]), so parsing never allocates once those buffers have grown.
//!
//! # Grammar
//!
//! A packet is lines separated by `\n`; one trailing `\r` per line is
//! dropped and empty lines are skipped. A line is
//!
//! ```text
//! line     = name ":" segment *(":" segment)
//! segment  = values ["|" type *("|" field)]
//! values   = value *(":" value)                  ; DogStatsD 1.1 multi-value
//! type     = "c" / "g" / "ms" / "h" / "d" / "s"  ; JavaScript whitespace around it ignored
//! field    = "@" rate / "#" tags / "T" unix-seconds
//!          / "c:" container-id / "e:" external-data / "card:" cardinality
//! ```
//!
//! - `name` is everything before the first `:` and may carry Graphite tags
//!   (`name;k=v`) and, per [`ParseOptions::tag_dialects`], InfluxDB
//!   (`name,k=v`), Librato (`name#k=v`) or SignalFX (`name[k=v]`) tags; see
//!   [`TagDialects`].
//! - After a type, `|` starts a field and `:` starts the next segment
//!   (the reference's `a:1|c:2|ms`). `#`, `c:`, `e:` and `card:` fields may contain `:`, so
//!   they run to the next `|`; the others end at `|` or `:`.
//! - `#` tags, from any segment, apply to the key of the whole line, as in the
//!   reference; several `#` fields add up. When a segment has several
//!   `@rate` fields the first wins (the reference reads only that one).
//!
//! # Errors and counting
//!
//! Every rejection calls [`Handler::bad_line`] once and counts once in
//! [`PacketCounts::bad`]: once per line for problems of the line (no `:`, an
//! empty name, an event or service check), once per segment for problems of
//! the type or a field, and once per value for a bad value. Whatever is
//! rejected, the other values, segments and lines are still parsed.
//!
//! # Events and service checks
//!
//! A line starting `_e{` or `_sc|` is a DogStatsD event or service check
//! ([`super::event`]): an event goes to [`Handler::event`]; a service
//! check becomes a gauge (0 OK, 1 warning, 2 critical, 3 unknown) under the
//! key the line `name:status|g|#tags` would have (its `h:` host as a `host`
//! tag when the tags have none), handed to [`Handler::metric`] and then,
//! with the check, to [`Handler::service_check`].
//!
//! Imports, besides `parse` itself: `metric`.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till};
use nom::combinator::{all_consuming, opt, recognize};
use nom::multi::fold_many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::event::{self, Dog, Event, EventError, ServiceCheck};
use super::number::{js_trim, parse_js_number};
use super::sanitize::is_plain;
use super::tags::{key_name, split_dialect, KeyBuilder, TagDialects};
use crate::metric::{MetricRef, MetricType, Value};

/// Options that change how lines are read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseOptions {
    /// The reference's `keyNameSanitize`: rewrite keys as it does
    /// (whitespace runs to `_`, `/` to `-`, drop bytes outside `[A-Za-z0-9_.;=-]`).
    pub sanitize: bool,
    /// Tags written in the name in the InfluxDB, Librato or SignalFX way
    /// (`[statsd] tag_dialects`); all by default, none under a config.js.
    pub tag_dialects: TagDialects,
    /// Most tags on one line (`[statsd] max_tags`), counted in the canonical
    /// key (empty tags dropped, duplicates kept); a line with more is
    /// rejected with [`ParseError::TooManyTags`]. 0: no limit.
    pub max_tags: usize,
    /// A gauge value written with a sign (`g:-3|g`) is a change of the
    /// current value, as in the reference statsd (`[statsd] gauge_deltas`,
    /// the default). Off, it is the value itself, as DogStatsD means it.
    pub gauge_deltas: bool,
}

/// The default `[statsd] max_tags`: far more than any client sends (a
/// DogStatsD client adds a handful of global tags), few enough that one line
/// cannot make a key of thousands of labels.
pub const DEFAULT_MAX_TAGS: usize = 64;

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            sanitize: true,
            tag_dialects: TagDialects::ALL,
            max_tags: DEFAULT_MAX_TAGS,
            gauge_deltas: true,
        }
    }
}

/// Why a line (or one value of a multi-value line) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The line has no `:`, so no value.
    #[error("no value (expected name:value|type)")]
    MissingValue,
    /// A segment has no `|type`.
    #[error("no type (expected name:value|type)")]
    MissingType,
    /// The type is not one of `c`, `g`, `ms`, `h`, `d`, `s`.
    #[error("unknown metric type")]
    UnknownType,
    /// The value of a counter, gauge, timer, histogram or distribution is not
    /// a finite decimal number.
    #[error("value is not a finite number")]
    BadValue,
    /// A timer (`ms`) value is below zero.
    #[error("negative timer value")]
    NegativeTimer,
    /// `|@rate` is not a finite number above zero.
    #[error("bad sample rate (expected |@rate with 0 < rate)")]
    BadSampleRate,
    /// The name is empty once sanitised (tags alone do not make a name).
    #[error("empty metric name")]
    EmptyName,
    /// A field after the type is none of `@rate`, `#tags`, `c:container`, `Ttimestamp`.
    #[error("unrecognised field after the type")]
    BadField,
    /// `|T` is not followed by unix seconds (digits only, fitting in 64 bits).
    #[error("bad timestamp (expected |T<unix seconds>)")]
    BadTimestamp,
    /// The line is a malformed DogStatsD event (`_e{`) or service check (`_sc|`).
    #[error("{0}")]
    BadEvent(EventError),
    /// The line has more tags than `max_tags`.
    #[error("more tags than max_tags")]
    TooManyTags,
}

/// What the parser hands each value and each rejected line to.
pub trait Handler {
    /// One accepted value. The key and any set member borrow from the packet
    /// or the parser: copy them to keep them.
    fn metric(&mut self, m: MetricRef<'_>);
    /// One rejection; `line` is the whole line it came from, without its
    /// line ending.
    fn bad_line(&mut self, line: &[u8], err: ParseError);
    /// The key `key` of the next values was rewritten (sanitised, or its
    /// invalid UTF-8 replaced) from `sent`, the name and tags as the client
    /// sent them. Called once per line, before its first value, only for a
    /// rewritten key. Prometheus keeps label values as sent
    /// (`crate::sink::prometheus::sent`); the aggregation key stays the
    /// rewritten one, which Graphite needs.
    fn sent_as(&mut self, _key: &[u8], _sent: &[u8]) {}
    /// One DogStatsD event; ignored unless the handler wants events.
    fn event(&mut self, _event: &Event<'_>) {}
    /// One service check, after its gauge (whose key is `key`) went to
    /// [`Handler::metric`]; ignored unless the handler wants checks.
    fn service_check(&mut self, _check: &ServiceCheck<'_>, _key: &[u8]) {}
}

/// Counts for one packet, in the reference's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Non-empty lines (the reference's `metrics_received`).
    pub lines: u64,
    /// Values handed to [`Handler::metric`].
    pub metrics: u64,
    /// Rejected lines or values (the reference's `bad_lines_seen`).
    pub bad: u64,
    /// Events and service checks accepted (a check's gauge also counts
    /// in `metrics`).
    pub events: u64,
}

impl std::ops::AddAssign for PacketCounts {
    fn add_assign(&mut self, other: PacketCounts) {
        self.lines += other.lines;
        self.metrics += other.metrics;
        self.bad += other.bad;
        self.events += other.events;
    }
}

/// A reusable parser; one per receive thread or connection.
#[derive(Debug, Default)]
pub struct StatsdParser {
    opts: ParseOptions,
    /// Buffers for keys that must be rewritten, reused from line to line.
    keys: KeyBuilder,
}

impl StatsdParser {
    /// A parser with buffers sized for typical keys.
    pub fn new(opts: ParseOptions) -> Self {
        StatsdParser {
            opts,
            keys: KeyBuilder::with_capacity(256),
        }
    }

    /// Parse every line of a packet (`\n` or `\r\n` separated).
    pub fn parse_packet<H: Handler>(&mut self, packet: &[u8], h: &mut H) -> PacketCounts {
        let mut counts = PacketCounts::default();
        let mut rest = packet;
        while !rest.is_empty() {
            // The common line is read in the same pass that finds its end.
            if let Some((m, used)) = self.plain(rest) {
                h.metric(m);
                counts.lines += 1;
                counts.metrics += 1;
                rest = &rest[used..];
                continue;
            }
            let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                counts += self.parse_general(line, h);
            }
            rest = tail;
        }
        counts
    }

    /// Parse one line, given without its `\n` (a trailing `\r` is dropped).
    /// An empty line counts as nothing.
    pub fn parse_line<H: Handler>(&mut self, line: &[u8], h: &mut H) -> PacketCounts {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return PacketCounts::default();
        }
        match self.plain(line) {
            Some((m, used)) if used == line.len() => {
                h.metric(m);
                PacketCounts {
                    lines: 1,
                    metrics: 1,
                    ..PacketCounts::default()
                }
            }
            _ => self.parse_general(line, h),
        }
    }

    /// [`plain_line`] with the options that apply to it.
    #[inline]
    fn plain<'a>(&self, input: &'a [u8]) -> Option<(MetricRef<'a>, usize)> {
        let (mut m, used) = plain_line(input)?;
        m.value = gauge_value(m.value, self.opts.gauge_deltas);
        Some((m, used))
    }

    /// Any non-empty line, without its line ending: the whole grammar.
    fn parse_general<H: Handler>(&mut self, line: &[u8], h: &mut H) -> PacketCounts {
        let mut counts = PacketCounts {
            lines: 1,
            ..PacketCounts::default()
        };
        let reject = |counts: &mut PacketCounts, h: &mut H, err| {
            counts.bad += 1;
            h.bad_line(line, err);
        };

        if event::is_event_or_check(line) {
            match event::parse(line) {
                Ok(Dog::Event(e)) => {
                    counts.events += 1;
                    h.event(&e);
                }
                Ok(Dog::Check(c)) => match self.check_key(&c) {
                    Ok(key) => {
                        counts.events += 1;
                        counts.metrics += 1;
                        h.metric(MetricRef {
                            key,
                            kind: MetricType::Gauge,
                            value: Value::Number(c.status as u8 as f64),
                            sample_rate: 1.0,
                            timestamp: c.timestamp.and_then(|t| u64::try_from(t).ok()),
                        });
                        h.service_check(&c, key);
                    }
                    Err(err) => reject(&mut counts, h, err),
                },
                Err(err) => reject(&mut counts, h, ParseError::BadEvent(err)),
            }
            return counts;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            reject(&mut counts, h, ParseError::MissingValue);
            return counts;
        };
        let (mut name, rest) = (&line[..colon], &line[colon + 1..]);

        // Tags may sit in any segment but belong to the key of every value,
        // so collect them first. Most lines have no `#` at all.
        let sanitize = self.opts.sanitize;
        self.keys.reset();
        // Tags in the name (InfluxDB, Librato, SignalFX): the key starts as
        // the name without them, then they are added like DogStatsD tags.
        if self.opts.tag_dialects.any() {
            if let Some(split) = split_dialect(name, self.opts.tag_dialects) {
                self.keys.set_name(split.before, split.after);
                self.keys.push_tag_field(split.before, split.tags);
                name = split.before;
            }
        }
        if rest.contains(&b'#') {
            for seg in segments(rest) {
                for field in fields(seg.fields) {
                    if let Field::Tags(tags) = field {
                        self.keys.push_tag_field(name, tags);
                    }
                }
            }
        }
        let (key, mut sent) = self.keys.build_sent(name, sanitize);
        let name_len = key_name(key).len();
        if name_len == 0 {
            reject(&mut counts, h, ParseError::EmptyName);
            return counts;
        }
        if too_many_tags(key, name_len, self.opts.max_tags) {
            reject(&mut counts, h, ParseError::TooManyTags);
            return counts;
        }

        for seg in segments(rest) {
            let (kind, sample_rate, timestamp) = match segment_meta(&seg) {
                Ok(meta) => meta,
                Err(err) => {
                    reject(&mut counts, h, err);
                    continue;
                }
            };
            for raw in seg.values.split(|&b| b == b':') {
                match value(kind, raw) {
                    Ok(value) => {
                        if let Some(sent) = sent.take() {
                            h.sent_as(key, sent);
                        }
                        let value = gauge_value(value, self.opts.gauge_deltas);
                        counts.metrics += 1;
                        h.metric(MetricRef {
                            key,
                            kind,
                            value,
                            sample_rate,
                            timestamp,
                        });
                    }
                    Err(err) => reject(&mut counts, h, err),
                }
            }
        }
        counts
    }
}

/// The line most clients send, `name:value|type` or
/// `name:value|type|@rate`, with a name that already is its canonical key
/// (only [plain](is_plain) bytes: nothing to sanitise, no tags), at the
/// start of `input`: read in one pass that also finds the line's end,
/// without the lexer, the key builder and the tag scans. Returns the value
/// and the bytes the line took with its line ending (`\n`, `\r\n`, or a
/// `\r` at the end of the input).
///
/// `None` for every other line, and for a line of this shape whose value,
/// type or rate is not valid: the general path then reads it and says what
/// is wrong. For every line it reads, the result is the general path's,
/// which the tests check line by line.
#[inline]
fn plain_line(input: &[u8]) -> Option<(MetricRef<'_>, usize)> {
    let colon = input.iter().position(|&b| !is_plain(b))?;
    if colon == 0 || input[colon] != b':' {
        return None;
    }
    let name = &input[..colon];
    // The value runs to the `|`; a second value or the line's end first
    // is not this shape.
    let mut i = colon + 1;
    loop {
        match input.get(i)? {
            b'|' => break,
            b':' | b'\n' => return None,
            _ => i += 1,
        }
    }
    let raw = &input[colon + 1..i];
    // A token (the type, the rate) runs to the next separator or line end.
    let token = |from: usize| {
        let len = input[from..]
            .iter()
            .position(|&b| matches!(b, b'|' | b':' | b'\n' | b'\r'))
            .unwrap_or(input.len() - from);
        (&input[from..from + len], from + len)
    };
    let (ty, mut i) = token(i + 1);
    let kind = match ty {
        b"c" => MetricType::Counter,
        b"g" => MetricType::Gauge,
        b"ms" => MetricType::Timer,
        b"h" => MetricType::Histogram,
        b"d" => MetricType::Distribution,
        b"s" => MetricType::Set,
        _ => return None,
    };
    let mut sample_rate = 1.0;
    if input.get(i) == Some(&b'|') {
        if input.get(i + 1) != Some(&b'@') {
            return None;
        }
        let (rate, end) = token(i + 2);
        sample_rate = parse_js_number(rate).filter(|&r| r > 0.0)?;
        i = end;
    }
    let used = match input.get(i) {
        None => i,
        Some(b'\n') => i + 1,
        Some(b'\r') => match input.get(i + 1) {
            None => i + 1,
            Some(b'\n') => i + 2,
            // `\r` inside the line: whitespace the general path trims.
            Some(_) => return None,
        },
        // Another field, or another segment.
        Some(_) => return None,
    };
    let value = value(kind, raw).ok()?;
    let m = MetricRef {
        key: name,
        kind,
        value,
        sample_rate,
        timestamp: None,
    };
    Some((m, used))
}

/// `deltas` off (`[statsd] gauge_deltas = false`): a signed gauge is its
/// value, not a change.
#[inline]
fn gauge_value(v: Value<'_>, deltas: bool) -> Value<'_> {
    match v {
        Value::GaugeDelta(n) if !deltas => Value::Number(n),
        v => v,
    }
}

impl StatsdParser {
    /// The key of a service check's gauge: its name with its tags (and its
    /// host as a `host` tag when they have none), as a metric line's.
    fn check_key<'k>(&'k mut self, c: &ServiceCheck<'k>) -> Result<&'k [u8], ParseError> {
        self.keys.reset();
        for tag in &c.tags {
            self.keys.push_tag_field(c.name, tag);
        }
        if let Some(host) = c.host.filter(|h| !h.is_empty()) {
            if !c
                .tags
                .iter()
                .any(|t| t.starts_with(b"host:") || *t == b"host")
            {
                self.keys.push_tag(c.name, b"host", host);
            }
        }
        let key = self.keys.build(c.name, self.opts.sanitize);
        let name_len = key_name(key).len();
        if name_len == 0 {
            return Err(ParseError::EmptyName);
        }
        if too_many_tags(key, name_len, self.opts.max_tags) {
            return Err(ParseError::TooManyTags);
        }
        Ok(key)
    }
}

/// Whether a canonical key (one `;` before each tag) has more than `max`
/// tags (0: no limit). Untagged keys (most) have nothing after the name to scan.
fn too_many_tags(key: &[u8], name_len: usize, max: usize) -> bool {
    max > 0 && key.len() > name_len && key[name_len..].iter().filter(|&&b| b == b';').count() > max
}

/// The type, sample rate and timestamp of a segment.
fn segment_meta(seg: &Segment<'_>) -> Result<(MetricType, f64, Option<u64>), ParseError> {
    let kind = match seg.kind.map(js_trim) {
        None => return Err(ParseError::MissingType),
        Some(b"c") => MetricType::Counter,
        Some(b"g") => MetricType::Gauge,
        Some(b"ms") => MetricType::Timer,
        Some(b"h") => MetricType::Histogram,
        Some(b"d") => MetricType::Distribution,
        Some(b"s") => MetricType::Set,
        Some(_) => return Err(ParseError::UnknownType),
    };
    let mut sample_rate = None;
    let mut timestamp = None;
    for field in fields(seg.fields) {
        match field {
            // The reference reads only the first field after the type, so the
            // first rate wins; later ones must still be valid.
            Field::SampleRate(raw) => {
                let rate = parse_js_number(raw)
                    .filter(|&r| r > 0.0)
                    .ok_or(ParseError::BadSampleRate)?;
                sample_rate = sample_rate.or(Some(rate));
            }
            Field::Timestamp(raw) => {
                let (_, ts) = all_consuming(nom::character::complete::u64::<_, NomError<'_>>)
                    .parse(raw)
                    .map_err(|_| ParseError::BadTimestamp)?;
                timestamp = Some(ts);
            }
            Field::Tags(_) | Field::Origin => {}
            Field::Unknown => return Err(ParseError::BadField),
        }
    }
    Ok((kind, sample_rate.unwrap_or(1.0), timestamp))
}

/// One value of a segment whose type is `kind`.
fn value(kind: MetricType, raw: &[u8]) -> Result<Value<'_>, ParseError> {
    if kind == MetricType::Set {
        // The reference stores `fields[0] || '0'`.
        return Ok(Value::SetMember(if raw.is_empty() { b"0" } else { raw }));
    }
    let n = parse_js_number(raw).ok_or(ParseError::BadValue)?;
    Ok(match kind {
        // The reference tests the untrimmed value with /^[-+]/.
        MetricType::Gauge if matches!(raw.first(), Some(b'+' | b'-')) => Value::GaugeDelta(n),
        MetricType::Timer if n < 0.0 => return Err(ParseError::NegativeTimer),
        _ => Value::Number(n),
    })
}

type NomError<'a> = nom::error::Error<&'a [u8]>;
type Res<'a, O> = IResult<&'a [u8], O, NomError<'a>>;

/// One `:`-separated segment of the part of a line after the name.
#[derive(Debug, PartialEq)]
struct Segment<'a> {
    /// The values, still `:`-separated.
    values: &'a [u8],
    /// The type, if there was a `|`.
    kind: Option<&'a [u8]>,
    /// The fields after the type, each with its leading `|`.
    fields: &'a [u8],
}

/// A field after the type.
#[derive(Debug, PartialEq)]
enum Field<'a> {
    /// `@rate`: the rate.
    SampleRate(&'a [u8]),
    /// `#tags`: the comma-separated tags.
    Tags(&'a [u8]),
    /// DogStatsD origin detection, which statsyard does not use: `c:` the
    /// container id, `e:` external data and `card:` the tag cardinality
    /// (sent by current Datadog clients, e.g. hot-shots in Datadog mode).
    Origin,
    /// `Tseconds`: the seconds.
    Timestamp(&'a [u8]),
    /// Anything else.
    Unknown,
}

fn is_pipe(b: u8) -> bool {
    b == b'|'
}

fn is_pipe_or_colon(b: u8) -> bool {
    b == b'|' || b == b':'
}

/// A field, without its leading `|`.
fn field(input: &[u8]) -> Res<'_, Field<'_>> {
    alt((
        preceded(tag("#"), take_till(is_pipe)).map(Field::Tags),
        // An empty container id is malformed (DogStatsD refuses it too).
        preceded(tag("c:"), take_till(is_pipe)).map(|id: &[u8]| {
            if id.is_empty() {
                Field::Unknown
            } else {
                Field::Origin
            }
        }),
        preceded(tag("e:"), take_till(is_pipe)).map(|_| Field::Origin),
        preceded(tag("card:"), take_till(is_pipe)).map(|_| Field::Origin),
        take_till(is_pipe_or_colon).map(|f: &[u8]| match f.split_first() {
            Some((b'@', rate)) => Field::SampleRate(rate),
            Some((b'T', ts)) => Field::Timestamp(ts),
            _ => Field::Unknown,
        }),
    ))
    .parse(input)
}

/// A segment. It always stops at the end of the input or before the `:`
/// that starts the next segment.
fn segment(input: &[u8]) -> Res<'_, Segment<'_>> {
    let (input, values) = take_till(is_pipe)(input)?;
    let (input, kind) = opt(preceded(tag("|"), take_till(is_pipe_or_colon))).parse(input)?;
    let (input, fields) =
        recognize(fold_many0(preceded(tag("|"), field), || (), |(), _| ())).parse(input)?;
    Ok((
        input,
        Segment {
            values,
            kind,
            fields,
        },
    ))
}

/// The segments of `rest`, the part of a line after the name's `:`.
fn segments(rest: &[u8]) -> impl Iterator<Item = Segment<'_>> {
    let mut rest = Some(rest);
    std::iter::from_fn(move || {
        let (tail, seg) = segment(rest.take()?).ok()?;
        rest = tail.strip_prefix(b":");
        Some(seg)
    })
}

/// The fields of a segment's `fields`.
fn fields(mut input: &[u8]) -> impl Iterator<Item = Field<'_>> {
    std::iter::from_fn(move || {
        let (tail, f) = preceded(tag("|"), field).parse(input).ok()?;
        input = tail;
        Some(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricType::*;
    use ParseError::*;

    /// An owned copy of what the parser handed out.
    #[derive(Debug, Clone, PartialEq)]
    enum Got {
        Metric {
            key: String,
            kind: MetricType,
            value: V,
            rate: f64,
            ts: Option<u64>,
        },
        Bad(ParseError),
    }

    #[derive(Debug, Clone, PartialEq)]
    enum V {
        N(f64),
        Delta(f64),
        Member(Vec<u8>),
    }

    fn m(key: &str, kind: MetricType, value: V) -> Got {
        Got::Metric {
            key: key.to_owned(),
            kind,
            value,
            rate: 1.0,
            ts: None,
        }
    }
    fn n(key: &str, kind: MetricType, v: f64) -> Got {
        m(key, kind, V::N(v))
    }
    fn c(key: &str, v: f64) -> Got {
        n(key, Counter, v)
    }
    fn s(key: &str, member: &[u8]) -> Got {
        m(key, Set, V::Member(member.to_vec()))
    }
    fn bad(e: ParseError) -> Got {
        Got::Bad(e)
    }

    impl Got {
        fn rate(mut self, r: f64) -> Got {
            if let Got::Metric { rate, .. } = &mut self {
                *rate = r;
            }
            self
        }
        fn ts(mut self, t: u64) -> Got {
            if let Got::Metric { ts, .. } = &mut self {
                *ts = Some(t);
            }
            self
        }
    }

    #[derive(Default)]
    struct Collect {
        got: Vec<Got>,
        bad_lines: Vec<Vec<u8>>,
    }

    impl Handler for Collect {
        fn metric(&mut self, m: MetricRef<'_>) {
            let value = match m.value {
                Value::Number(v) => V::N(v),
                Value::GaugeDelta(v) => V::Delta(v),
                Value::SetMember(b) => V::Member(b.to_vec()),
            };
            self.got.push(Got::Metric {
                key: String::from_utf8_lossy(m.key).into_owned(),
                kind: m.kind,
                value,
                rate: m.sample_rate,
                ts: m.timestamp,
            });
        }
        fn bad_line(&mut self, line: &[u8], err: ParseError) {
            self.got.push(Got::Bad(err));
            self.bad_lines.push(line.to_vec());
        }
    }

    fn run(opts: ParseOptions, packet: &[u8]) -> (Vec<Got>, PacketCounts, Vec<Vec<u8>>) {
        let mut p = StatsdParser::new(opts);
        let mut h = Collect::default();
        let counts = p.parse_packet(packet, &mut h);
        (h.got, counts, h.bad_lines)
    }

    /// Each case is one line: what it yields, in order. The counts must agree.
    fn check(opts: ParseOptions, cases: &[(&[u8], Vec<Got>)]) {
        for (line, want) in cases {
            let (got, counts, _) = run(opts.clone(), line);
            let shown = String::from_utf8_lossy(line);
            assert_eq!(&got, want, "{shown:?}");
            let metrics = want
                .iter()
                .filter(|g| matches!(g, Got::Metric { .. }))
                .count() as u64;
            let want_counts = PacketCounts {
                lines: 1,
                metrics,
                bad: want.len() as u64 - metrics,
                events: 0,
            };
            assert_eq!(counts, want_counts, "{shown:?}");
        }
    }

    #[test]
    fn too_many_tags() {
        let opts = ParseOptions {
            max_tags: 2,
            ..ParseOptions::default()
        };
        check(
            opts.clone(),
            &[
                (b"a:1|c|#x:1,y:2", vec![c("a;x=1;y=2", 1.0)]),
                (b"a:1|c|#x:1,y:2,z", vec![bad(TooManyTags)]),
                // Graphite, dialect and DogStatsD tags count together.
                (b"a;p=1,q=2:1|c|#x", vec![bad(TooManyTags)]),
                (b"a;p=1:1|c|#x", vec![c("a;p=1;x", 1.0)]),
                // Empty tags are not tags.
                (b"a:1|c|#x,,,y,", vec![c("a;x;y", 1.0)]),
            ],
        );
        let many: String = (0..10_000).map(|i| format!("t{i}:v,")).collect();
        let line = format!("a:1|c|#{many}");
        check(
            ParseOptions::default(),
            &[(line.as_bytes(), vec![bad(TooManyTags)])],
        );
        let unlimited = ParseOptions {
            max_tags: 0,
            ..ParseOptions::default()
        };
        let (got, _, _) = run(unlimited, line.as_bytes());
        assert!(matches!(&got[..], [Got::Metric { .. }]), "{got:?}");
    }

    #[test]
    fn basic_forms() {
        check(
            ParseOptions::default(),
            &[
                (b"a:1|c", vec![c("a", 1.0)]),
                (b"a.b-c_d:2.5|c", vec![c("a.b-c_d", 2.5)]),
                (b"a:1|c|@0.1", vec![c("a", 1.0).rate(0.1)]),
                (b"a:1|c|@.5", vec![c("a", 1.0).rate(0.5)]),
                (b"a:1|c|@2", vec![c("a", 1.0).rate(2.0)]),
                (b"a:-3|c", vec![c("a", -3.0)]),
                (b"a:5|g", vec![n("a", Gauge, 5.0)]),
                (b"a:+5|g", vec![m("a", Gauge, V::Delta(5.0))]),
                (b"a:-5|g", vec![m("a", Gauge, V::Delta(-5.0))]),
                (b"a:-0|g", vec![m("a", Gauge, V::Delta(-0.0))]),
                // The reference tests the sign before trimming.
                (b"a: -5|g", vec![n("a", Gauge, -5.0)]),
                (b"a:1.5|g|@0.5", vec![n("a", Gauge, 1.5).rate(0.5)]),
                (b"a:320|ms", vec![n("a", Timer, 320.0)]),
                (b"a:0|ms", vec![n("a", Timer, 0.0)]),
                (b"a:-0|ms", vec![n("a", Timer, -0.0)]),
                (b"a:320|ms|@0.1", vec![n("a", Timer, 320.0).rate(0.1)]),
                (b"a:-1|h", vec![n("a", Histogram, -1.0)]),
                (b"a:7|d", vec![n("a", Distribution, 7.0)]),
                (b"a:foo|s", vec![s("a", b"foo")]),
                (b"a:42|s", vec![s("a", b"42")]),
                (b"a: x y |s", vec![s("a", b" x y ")]),
                (b"a:\xff\xfe|s", vec![s("a", b"\xff\xfe")]),
                (b"a:|s", vec![s("a", b"0")]),
                // Numbers as JavaScript's Number() reads them.
                (b"a:+5|c", vec![c("a", 5.0)]),
                (b"a:.5|c", vec![c("a", 0.5)]),
                (b"a:5.|c", vec![c("a", 5.0)]),
                (b"a:1e3|c", vec![c("a", 1000.0)]),
                (b"a: 1\t|c", vec![c("a", 1.0)]),
                // The type is trimmed, as the reference's fields[1].trim().
                (b"a:1| c |@0.5", vec![c("a", 1.0).rate(0.5)]),
                (b"a:1|ms ", vec![n("a", Timer, 1.0)]),
            ],
        );
    }

    #[test]
    fn multi_value() {
        check(
            ParseOptions::default(),
            &[
                // The reference's form: segments with their own type and rate.
                (b"a:1|c:2|ms", vec![c("a", 1.0), n("a", Timer, 2.0)]),
                (
                    b"a:1|c|@0.5:2|ms:3|g",
                    vec![
                        c("a", 1.0).rate(0.5),
                        n("a", Timer, 2.0),
                        n("a", Gauge, 3.0),
                    ],
                ),
                // DogStatsD 1.1: values sharing one type and rate.
                (
                    b"a:1:2:3|ms|@0.5",
                    vec![
                        n("a", Timer, 1.0).rate(0.5),
                        n("a", Timer, 2.0).rate(0.5),
                        n("a", Timer, 3.0).rate(0.5),
                    ],
                ),
                (b"a:x:y|s", vec![s("a", b"x"), s("a", b"y")]),
                (
                    b"a:+1:2|g",
                    vec![m("a", Gauge, V::Delta(1.0)), n("a", Gauge, 2.0)],
                ),
                // Both at once.
                (
                    b"a:1:2|c:3|ms",
                    vec![c("a", 1.0), c("a", 2.0), n("a", Timer, 3.0)],
                ),
                // A bad value does not affect its neighbours.
                (b"a:1:x:3|c", vec![c("a", 1.0), bad(BadValue), c("a", 3.0)]),
                (b"a:1:-2|ms", vec![n("a", Timer, 1.0), bad(NegativeTimer)]),
                (b"a:1|x:2|c", vec![bad(UnknownType), c("a", 2.0)]),
                (b"a:1|c:2", vec![c("a", 1.0), bad(MissingType)]),
                (b"a:1|c:", vec![c("a", 1.0), bad(MissingType)]),
                (b"a::1|c", vec![bad(BadValue), c("a", 1.0)]),
                (b"a:1|c|@0:2|c", vec![bad(BadSampleRate), c("a", 2.0)]),
                (b"a:1|c|zz:2|c", vec![bad(BadField), c("a", 2.0)]),
            ],
        );
    }

    #[test]
    fn dogstatsd_fields() {
        check(
            ParseOptions::default(),
            &[
                (b"a:1|c|#env:prod", vec![c("a;env=prod", 1.0)]),
                (
                    b"a:1|c|#host:x,env:prod,role",
                    vec![c("a;env=prod;host=x;role", 1.0)],
                ),
                (
                    b"a:1|c|@0.5|#env:prod",
                    vec![c("a;env=prod", 1.0).rate(0.5)],
                ),
                (
                    b"a:1|c|#env:prod|@0.5",
                    vec![c("a;env=prod", 1.0).rate(0.5)],
                ),
                (b"a:1|c|T1700000000", vec![c("a", 1.0).ts(1_700_000_000)]),
                (
                    b"a:1|ms|#t:1|T5|@0.5|c:abc:def",
                    vec![n("a;t=1", Timer, 1.0).rate(0.5).ts(5)],
                ),
                (b"a:1|c|c:0123456789abcdef|#t:1", vec![c("a;t=1", 1.0)]),
                // An empty container id is malformed.
                (b"a:1|c|#t:1|c:", vec![bad(BadField)]),
                // Origin detection as current Datadog clients send it.
                (
                    b"a:1|c|#t:1|c:ci-123|card:low|e:it-false,cn-x,pu-y",
                    vec![c("a;t=1", 1.0)],
                ),
                (b"a:2|g|card:high|T5", vec![n("a", Gauge, 2.0).ts(5)]),
                (b"a:1|c|#", vec![c("a", 1.0)]),
                (b"a:1|c|#,,", vec![c("a", 1.0)]),
                // The first rate wins, as in the reference.
                (b"a:1|c|@0.5|@0.25", vec![c("a", 1.0).rate(0.5)]),
                (b"a:1|c|#t|@0.5|@0.25", vec![c("a;t", 1.0).rate(0.5)]),
                // Tags of any segment belong to the whole line.
                (
                    b"a:1|c:2|ms|#t:1",
                    vec![c("a;t=1", 1.0), n("a;t=1", Timer, 2.0)],
                ),
                (b"a:1|c|#t:1:2|ms|#u", vec![bad(BadField)]),
                (b"a:1|c|#k:v:3|ms", vec![bad(BadField)]),
                (b"a:1|c|#b:2:3|ms|#a:1", vec![bad(BadField)]),
                (
                    b"a:1|c|#b:2|T1:3|ms|#a:1",
                    vec![c("a;a=1;b=2", 1.0).ts(1), n("a;a=1;b=2", Timer, 3.0)],
                ),
                // Graphite tags in the name, with and without DogStatsD tags.
                (b"a;k=v;l=w:1|c", vec![c("a;k=v;l=w", 1.0)]),
                // Bytewise on the whole tag: `2` sorts before `=`.
                (b"a;k=v;k2=v2:1|c", vec![c("a;k2=v2;k=v", 1.0)]),
                (b"a;z=1;b=2:1|c", vec![c("a;b=2;z=1", 1.0)]),
                (b"name;a=1:1|c|#b:2", vec![c("name;a=1;b=2", 1.0)]),
                (b"name;c=1:1|c|#b:2,a", vec![c("name;a;b=2;c=1", 1.0)]),
                (b"a;;x=1;:1|c", vec![c("a;x=1", 1.0)]),
            ],
        );
    }

    #[test]
    fn errors() {
        check(
            ParseOptions::default(),
            &[
                (b"a", vec![bad(MissingValue)]),
                (b"a|c", vec![bad(MissingValue)]),
                (b"a:1", vec![bad(MissingType)]),
                (b"a:", vec![bad(MissingType)]),
                (b"a:1:2", vec![bad(MissingType)]),
                (b"a:1|", vec![bad(UnknownType)]),
                (b"a:1|x", vec![bad(UnknownType)]),
                (b"a:1|C", vec![bad(UnknownType)]),
                (b"a:1|msx", vec![bad(UnknownType)]),
                (b"a:|c", vec![bad(BadValue)]),
                (b"a: |c", vec![bad(BadValue)]),
                (b"a:|g", vec![bad(BadValue)]),
                (b"a:|ms", vec![bad(BadValue)]),
                (b"a:abc|c", vec![bad(BadValue)]),
                (b"a:0x10|c", vec![bad(BadValue)]),
                (b"a:Infinity|g", vec![bad(BadValue)]),
                (b"a:NaN|g", vec![bad(BadValue)]),
                (b"a:inf|ms", vec![bad(BadValue)]),
                (b"a:1e400|c", vec![bad(BadValue)]),
                (b"a:1,5|c", vec![bad(BadValue)]),
                (b"a:-1|ms", vec![bad(NegativeTimer)]),
                (b"a:-0.001|ms", vec![bad(NegativeTimer)]),
                (b"a:1|c|@0", vec![bad(BadSampleRate)]),
                (b"a:1|c|@0.0", vec![bad(BadSampleRate)]),
                (b"a:1|c|@-0.5", vec![bad(BadSampleRate)]),
                (b"a:1|c|@", vec![bad(BadSampleRate)]),
                (b"a:1|c|@x", vec![bad(BadSampleRate)]),
                (b"a:1|c|@1e400", vec![bad(BadSampleRate)]),
                (b"a:1|c|@Infinity", vec![bad(BadSampleRate)]),
                (b"a:1|c|0.5", vec![bad(BadField)]),
                (b"a:1|c|", vec![bad(BadField)]),
                (b"a:1|c||@0.5", vec![bad(BadField)]),
                (b"a:1|c|x", vec![bad(BadField)]),
                (b"a:1|c|T", vec![bad(BadTimestamp)]),
                (b"a:1|c|T-1", vec![bad(BadTimestamp)]),
                (b"a:1|c|T1.5", vec![bad(BadTimestamp)]),
                (b"a:1|c|T99999999999999999999", vec![bad(BadTimestamp)]),
                (b":1|c", vec![bad(EmptyName)]),
                (b"!!!:1|c", vec![bad(EmptyName)]),
                (b";a=1:1|c", vec![bad(EmptyName)]),
                (b":1|c|#a:1", vec![bad(EmptyName)]),
                // A line-level error counts once, however many values.
                (b":1|c:2|c:3:4|c", vec![bad(EmptyName)]),
                (
                    b"_e{5,9}:title|text",
                    vec![bad(BadEvent(EventError::TooShort))],
                ),
                (
                    b"_e{5,4}:title|text|p:x",
                    vec![bad(BadEvent(EventError::BadPriority))],
                ),
                (b"_sc|x:1|c", vec![bad(BadEvent(EventError::BadStatus))]),
                (b"_sc|!!!|0", vec![bad(EmptyName)]),
                // A segment-level error counts once for all its values.
                (b"a:1:2:3|x", vec![bad(UnknownType)]),
                (b"a:1:2|c|@0", vec![bad(BadSampleRate)]),
            ],
        );
    }

    #[test]
    fn events_and_service_checks() {
        #[derive(Default)]
        struct Dogs {
            got: Vec<Got>,
            events: Vec<String>,
            checks: Vec<(String, String)>,
        }
        impl Handler for Dogs {
            fn metric(&mut self, m: MetricRef<'_>) {
                let Value::Number(v) = m.value else {
                    panic!("{m:?}")
                };
                let mut g = n(&String::from_utf8_lossy(m.key), m.kind, v);
                if let Some(t) = m.timestamp {
                    g = g.ts(t);
                }
                self.got.push(g);
            }
            fn bad_line(&mut self, _: &[u8], err: ParseError) {
                self.got.push(Got::Bad(err));
            }
            fn event(&mut self, e: &Event<'_>) {
                self.events.push(event::unescape(e.title));
            }
            fn service_check(&mut self, c: &ServiceCheck<'_>, key: &[u8]) {
                let msg = c.message.map(event::unescape).unwrap_or_default();
                self.checks
                    .push((String::from_utf8_lossy(key).into_owned(), msg));
            }
        }
        let mut p = StatsdParser::new(ParseOptions::default());
        let mut h = Dogs::default();
        let counts = p.parse_packet(
            b"_e{5,4}:title|text\n_sc|app.up|2|d:5|h:web 1|#env:prod|m:down\n\
              _sc|db.up|0|h:x|#host:db1\n_e{1,1}:x\n",
            &mut h,
        );
        assert_eq!(
            counts,
            PacketCounts {
                lines: 4,
                metrics: 2,
                bad: 1,
                events: 3,
            }
        );
        assert_eq!(h.events, vec!["title"]);
        assert_eq!(
            h.got,
            vec![
                n("app.up;env=prod;host=web_1", Gauge, 2.0).ts(5),
                n("db.up;host=db1", Gauge, 0.0),
                bad(BadEvent(EventError::TooShort)),
            ]
        );
        assert_eq!(
            h.checks,
            vec![
                ("app.up;env=prod;host=web_1".to_string(), "down".to_string()),
                ("db.up;host=db1".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn sanitising() {
        check(
            ParseOptions::default(),
            &[
                (b"my key:1|c", vec![c("my_key", 1.0)]),
                (b"a  \t b:1|c", vec![c("a_b", 1.0)]),
                (b"a/b/c:1|c", vec![c("a-b-c", 1.0)]),
                (b"a!@$%^&*()b:1|c", vec![c("ab", 1.0)]),
                ("caf\u{e9}.x:1|c".as_bytes(), vec![c("caf.x", 1.0)]),
                ("a\u{A0}b:1|c".as_bytes(), vec![c("a_b", 1.0)]),
                (
                    "a\u{2028}b\u{3000}c\u{FEFF}d:1|c".as_bytes(),
                    vec![c("a_b_c_d", 1.0)],
                ),
                ("a\u{85}\u{200B}b:1|c".as_bytes(), vec![c("ab", 1.0)]),
                (b"a\xff\xfeb:1|c", vec![c("ab", 1.0)]),
                (b"a \xff b:1|c", vec![c("a__b", 1.0)]),
                // Tags are appended before sanitising, then the whole key is sanitised.
                (b"a:1|c|#host:web 1", vec![c("a;host=web_1", 1.0)]),
                (b"a:1|c|#url:/x/y", vec![c("a;url=-x-y", 1.0)]),
                (b"a:1|c|#k:v:w", vec![c("a;k=vw", 1.0)]),
                (b"a:1|c|#k;x:v", vec![c("a;k_x=v", 1.0)]),
                (b"a:1|c|#!!!,b", vec![c("a;b", 1.0)]),
                (b"a:1|c|#b,a b", vec![c("a;a_b;b", 1.0)]),
            ],
        );
    }

    #[test]
    fn no_sanitising() {
        let opts = ParseOptions {
            sanitize: false,
            ..ParseOptions::default()
        };
        check(
            opts.clone(),
            &[
                (b"my key/x:1|c", vec![c("my key/x", 1.0)]),
                (b"a!:1|c|#k:v:w,b", vec![c("a!;b;k=v:w", 1.0)]),
                (b"a;z;y:1|c", vec![c("a;y;z", 1.0)]),
                (b" :1|c", vec![c(" ", 1.0)]),
                (b":1|c", vec![bad(EmptyName)]),
            ],
        );
        // As in the reference, which decodes the packet first, every invalid
        // UTF-8 sequence in a key is U+FFFD.
        let (got, _, _) = run(opts, b"a\xff:1|c\na\xfe:1|c");
        assert_eq!(got, vec![c("a\u{FFFD}", 1.0), c("a\u{FFFD}", 1.0)]);
    }

    /// A rewritten key is reported once per line with what the client sent,
    /// before its first value; a key sent as stored is not.
    #[test]
    fn sent_as_reports_rewritten_keys() {
        #[derive(Default)]
        struct Sent(Vec<(String, String)>, usize);
        impl Handler for Sent {
            fn metric(&mut self, _: MetricRef<'_>) {
                self.1 += 1;
            }
            fn bad_line(&mut self, _: &[u8], _: ParseError) {}
            fn sent_as(&mut self, key: &[u8], sent: &[u8]) {
                assert_eq!(self.1, 0, "before the first value");
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                self.0.push((s(key), s(sent)));
            }
        }
        type Case<'a> = (ParseOptions, &'a [u8], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (ParseOptions::default(), b"plain.name:1|c|#b:2,a:1", &[]),
            (
                ParseOptions::default(),
                b"route:1|c:2|ms|#path:/x,env:my prod",
                &[("route;env=my_prod;path=-x", "route;path=/x;env=my prod")],
            ),
            (
                ParseOptions::default(),
                b"rt.get/a:1|c",
                &[("rt.get-a", "rt.get/a")],
            ),
            (
                ParseOptions::default(),
                b"f,t1=a/b:1|c",
                &[("f;t1=a-b", "f;t1=a/b")],
            ),
            (
                ParseOptions {
                    sanitize: false,
                    ..ParseOptions::default()
                },
                b"a\xff:1|c",
                &[("a\u{FFFD}", "a\u{FFFD}")],
            ),
            // No value accepted: nothing to report.
            (ParseOptions::default(), b"a/b:x|c", &[]),
        ];
        for (opts, line, want) in cases {
            let mut h = Sent::default();
            StatsdParser::new(opts.clone()).parse_packet(line, &mut h);
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .collect();
            assert_eq!(h.0, want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    /// `gauge_deltas = false`: a sign is part of the value (DogStatsD).
    #[test]
    fn gauge_deltas_off() {
        let opts = ParseOptions {
            gauge_deltas: false,
            ..ParseOptions::default()
        };
        check(
            opts,
            &[
                (b"g:-3|g", vec![n("g", Gauge, -3.0)]),
                (b"g:+3|g", vec![n("g", Gauge, 3.0)]),
                (b"g:3|g", vec![n("g", Gauge, 3.0)]),
                (b"g:1:-2|g", vec![n("g", Gauge, 1.0), n("g", Gauge, -2.0)]),
                // Only gauges have deltas.
                (b"c:-3|c", vec![c("c", -3.0)]),
            ],
        );
    }

    /// Every tag dialect gives the DogStatsD line's key.
    #[test]
    fn tag_dialects() {
        let want = || vec![c("api.hits;env=prod;host=a", 1.0)];
        check(
            ParseOptions::default(),
            &[
                (b"api.hits:1|c|#host:a,env:prod", want()),
                (b"api.hits;host=a;env=prod:1|c", want()),
                (b"api.hits,host=a,env=prod:1|c", want()),
                (b"api.hits#host=a,env=prod:1|c", want()),
                (b"api.hits[host=a,env=prod]:1|c", want()),
                (b"api[host=a,env=prod].hits:1|c", want()),
                (b"api.hits,host=a:1|c|#env:prod", want()),
                (b"api.hits[env=prod]:1|c|#host:a", want()),
                // Tags only: no name.
                (b"[host=a]:1|c", vec![bad(EmptyName)]),
                (b",host=a:1|c", vec![bad(EmptyName)]),
            ],
        );
        // Off (a config.js import): the reference's names.
        check(
            ParseOptions {
                tag_dialects: TagDialects::NONE,
                ..ParseOptions::default()
            },
            &[
                (b"api.hits,host=a:1|c", vec![c("api.hitshost=a", 1.0)]),
                (b"api.hits[host=a]:1|c", vec![c("api.hitshost=a", 1.0)]),
                (b"api.hits:1|c|#host:a", vec![c("api.hits;host=a", 1.0)]),
            ],
        );
    }

    #[test]
    fn packets() {
        // (packet, lines, metrics, bad)
        let cases: &[(&[u8], u64, u64, u64)] = &[
            (b"", 0, 0, 0),
            (b"\n\n", 0, 0, 0),
            (b"\r\n", 0, 0, 0),
            (b"a:1|c", 1, 1, 0),
            (b"a:1|c\n", 1, 1, 0),
            (b"a:1|c\r\n", 1, 1, 0),
            (b"a:1|c\nb:2|g\n\nc:3|ms", 3, 3, 0),
            (b"a:1|c\r\nb:2|g\r\n", 2, 2, 0),
            (b"a:1|c\nbroken\nb:2|g", 3, 2, 1),
            (b"a:1|c\nb:x|c\nc:1|c:2|zz\nd:5|s", 4, 3, 2),
            (b"a:1|c|#t:1\r\nb:1|c", 2, 2, 0),
            // Only one `\r` is a line ending.
            (b"a:1|c\r\r\n", 1, 1, 0),
        ];
        for (packet, lines, metrics, bad) in cases {
            let (_, counts, _) = run(ParseOptions::default(), packet);
            let want = PacketCounts {
                lines: *lines,
                metrics: *metrics,
                bad: *bad,
                events: 0,
            };
            assert_eq!(counts, want, "{:?}", String::from_utf8_lossy(packet));
        }
    }

    #[test]
    fn neighbours_unaffected() {
        let (got, _, bad_lines) = run(
            ParseOptions::default(),
            b"a:1|c|#t:1\r\nnope\r\nb:2|ms:x|ms\nc:1|c|@0.5\r\n",
        );
        assert_eq!(
            got,
            vec![
                c("a;t=1", 1.0),
                bad(MissingValue),
                n("b", Timer, 2.0),
                bad(BadValue),
                c("c", 1.0).rate(0.5),
            ]
        );
        // bad_line gets the whole line, without its line ending.
        assert_eq!(bad_lines, vec![b"nope".to_vec(), b"b:2|ms:x|ms".to_vec()]);
    }

    #[test]
    fn trailing_cr_only_once() {
        // A second `\r` is part of the line: whitespace in the type, trimmed.
        let (got, _, _) = run(ParseOptions::default(), b"a:1|c\r\r\n");
        assert_eq!(got, vec![c("a", 1.0)]);
        let (got, _, _) = run(ParseOptions::default(), b"a:1|c|#t:1\r\r\n");
        assert_eq!(got, vec![c("a;t=1_", 1.0)]);
    }

    /// A handler that checks where each key lives.
    struct Where<'p> {
        packet: &'p [u8],
        borrowed: usize,
        copied: usize,
    }

    impl Handler for Where<'_> {
        fn metric(&mut self, m: MetricRef<'_>) {
            if self.packet.as_ptr_range().contains(&m.key.as_ptr()) {
                self.borrowed += 1;
            } else {
                self.copied += 1;
            }
        }
        fn bad_line(&mut self, _: &[u8], _: ParseError) {}
    }

    #[test]
    fn no_key_allocation_when_warm() {
        let packet: &[u8] = b"plain.key:1|c\n\
            a;k=v;z=1:2|ms\n\
            zig zag/x:3|g\n\
            tagged:4|c|#z:1,a:2,m\n\
            c;z=1;a=2:5|c:6|s\n\
            longer.name.with.some.depth;b=2:7|h|#a:1,c:3,env:production,host:web-01\n";
        let mut p = StatsdParser::new(ParseOptions::default());
        let mut h = Where {
            packet,
            borrowed: 0,
            copied: 0,
        };
        p.parse_packet(packet, &mut h);
        let cap = p.keys.capacity();
        for _ in 0..3 {
            h.borrowed = 0;
            h.copied = 0;
            let counts = p.parse_packet(packet, &mut h);
            assert_eq!(counts.metrics, 7);
            assert_eq!(p.keys.capacity(), cap, "key buffers grew");
        }
        // The first two lines are already canonical: their keys borrow the packet.
        assert_eq!((h.borrowed, h.copied), (2, 5));
    }

    /// A fixed-seed generator of lines of the plain shape, built from
    /// parts that are mostly valid, with any byte of an alphabet of name
    /// bytes, separators, number bytes, types and tag syntax thrown in.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// Up to `most` bytes from `from`, one in eight from `ODD`.
        fn part(&mut self, line: &mut Vec<u8>, from: &[u8], most: usize) {
            const ODD: &[u8] = b"ab.=_-;,#[]:|@ .019+-eEcgmshdT\r\n\xff";
            for _ in 0..self.below(most + 1) {
                let set = if self.below(8) == 0 { ODD } else { from };
                line.push(set[self.below(set.len())]);
            }
        }

        fn line(&mut self, line: &mut Vec<u8>) {
            self.part(line, b"ab.=_-", 6);
            line.push(b':');
            self.part(line, b"0123456789.-+e ", 5);
            line.push(b'|');
            let ty: &[&[u8]] = &[b"c", b"g", b"ms", b"h", b"d", b"s", b"x", b""];
            line.extend_from_slice(ty[self.below(ty.len())]);
            if self.below(2) == 0 {
                line.extend_from_slice(b"|@");
                self.part(line, b"0123456789.", 4);
            }
            if self.below(6) == 0 {
                self.part(line, b":|#@c", 3);
            }
        }
    }

    /// Packets of such lines with every kind of line ending read as they
    /// were read line by line through the general path before the fast
    /// path existed: split at `\n`, one `\r` dropped, empty lines skipped.
    #[test]
    fn packets_read_as_line_by_line() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut packet = Vec::new();
        for _ in 0..50_000 {
            packet.clear();
            for _ in 0..rng.below(5) {
                rng.line(&mut packet);
                let ends: &[&[u8]] = &[b"\n", b"\r\n", b"\r\r\n", b"\n\n", b"\r", b""];
                packet.extend_from_slice(ends[rng.below(ends.len())]);
            }
            let (got, counts, bad_lines) = run(ParseOptions::default(), &packet);
            let mut p = StatsdParser::new(ParseOptions::default());
            let mut h = Collect::default();
            let mut want_counts = PacketCounts::default();
            for line in packet.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if !line.is_empty() {
                    want_counts += p.parse_general(line, &mut h);
                }
            }
            let shown = String::from_utf8_lossy(&packet);
            assert_eq!(got, h.got, "{shown:?}");
            assert_eq!(counts, want_counts, "{shown:?}");
            assert_eq!(bad_lines, h.bad_lines, "{shown:?}");
        }
    }

    /// The fast path reads a line exactly as the general path does, for
    /// every line it takes: a list of edge cases, then random lines over the
    /// bytes that matter to either path.
    #[test]
    fn plain_lines_read_as_the_general_path_reads_them() {
        let general = |opts: &ParseOptions, line: &[u8]| {
            let mut p = StatsdParser::new(opts.clone());
            let mut h = Collect::default();
            let counts = p.parse_general(line, &mut h);
            (h.got, counts)
        };
        let fast = |line: &[u8]| {
            plain_line(line).map(|(m, used)| {
                assert_eq!(used, line.len(), "{:?}", String::from_utf8_lossy(line));
                let mut h = Collect::default();
                h.metric(m);
                h.got
            })
        };
        let all_opts = [
            ParseOptions::default(),
            ParseOptions {
                sanitize: false,
                tag_dialects: TagDialects::NONE,
                max_tags: 0,
                gauge_deltas: true,
            },
        ];
        let mut taken = 0;
        let mut compare = |line: &[u8]| {
            if line.contains(&b'\n') {
                return;
            }
            let Some(got) = fast(line) else { return };
            taken += 1;
            for opts in &all_opts {
                let (want, counts) = general(opts, line);
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(line));
                assert_eq!(
                    counts,
                    PacketCounts {
                        lines: 1,
                        metrics: 1,
                        ..PacketCounts::default()
                    }
                );
            }
        };
        let cases: &[&[u8]] = &[
            b"a:1|c",
            b"a.b-c_d=e:1|c",
            b"=:1|c",
            b"a:-0|c",
            b"a:+1|g",
            b"a:-1|g",
            b"a: 1|g",
            b"a:1.5e3|ms",
            b"a:1|ms|@0.5",
            b"a:1|h|@1",
            b"a:1|d|@.1",
            b"a:1|c|@ 0.5 ",
            b"a:x|s",
            b"a:|s",
            b"a:x:y|s",
            b"a:1|c|@0",
            b"a:1|c|@x",
            b"a:1|c|#t",
            b"a:1|c:2|c",
            b"a:1|cc",
            b"a:1| c",
            b"a;t=1:1|c",
            b"a b:1|c",
            b"a,b=1:1|c",
            b"a:1|c|@0.5|@0.1",
            b"a:1|c|T12",
            b"a:1",
            b":1|c",
            b"_e{1,1}:a|b",
            b"a:-1|ms",
            b"a:0x10|c",
            b"a:1|c|@0.5:2|c",
            b"a:1|c|",
            b"a:1|@0.5",
        ];
        for line in cases {
            compare(line);
        }
        // A fixed-seed generator: lines of the plain shape built from parts
        // that are mostly valid, with any byte of an alphabet of name bytes,
        // separators, number bytes, types and tag syntax thrown in.
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut line = Vec::new();
        for _ in 0..300_000 {
            line.clear();
            rng.line(&mut line);
            compare(&line);
        }
        assert!(taken > 10_000, "the fast path took {taken} lines");
    }

    #[test]
    fn segment_lexing() {
        let seg =
            |values: &'static [u8], kind: Option<&'static [u8]>, fields: &'static [u8]| Segment {
                values,
                kind,
                fields,
            };
        let cases: &[(&[u8], Vec<Segment<'static>>)] = &[
            (b"", vec![seg(b"", None, b"")]),
            (b"1:2", vec![seg(b"1:2", None, b"")]),
            (b"1|c", vec![seg(b"1", Some(b"c"), b"")]),
            (
                b"1|c:2|ms",
                vec![seg(b"1", Some(b"c"), b""), seg(b"2", Some(b"ms"), b"")],
            ),
            (b"1:2|ms|@0.5", vec![seg(b"1:2", Some(b"ms"), b"|@0.5")]),
            (
                b"1|c|#a:b|c:x:y|T1:2|g",
                vec![
                    seg(b"1", Some(b"c"), b"|#a:b|c:x:y|T1"),
                    seg(b"2", Some(b"g"), b""),
                ],
            ),
            (
                b"1|c:",
                vec![seg(b"1", Some(b"c"), b""), seg(b"", None, b"")],
            ),
        ];
        for (rest, want) in cases {
            let got: Vec<_> = segments(rest).collect();
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(rest));
        }
        let got: Vec<_> = fields(b"|@0.5|#a:b,c|c:x:y|T12|zz|").collect();
        assert_eq!(
            got,
            vec![
                Field::SampleRate(b"0.5"),
                Field::Tags(b"a:b,c"),
                Field::Origin,
                Field::Timestamp(b"12"),
                Field::Unknown,
                Field::Unknown,
            ]
        );
    }
}

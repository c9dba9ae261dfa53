//! The carbon plaintext line, `path value timestamp`, read as carbon 1.1.7's
//! receivers read it (`carbon/protocols.py`: `MetricLineReceiver`,
//! `MetricDatagramReceiver` and `MetricReceiver.metricReceived`), which is
//! also what carbon-relay.py accepts.
//!
//! carbon does `line.decode('utf-8').strip().split()`, insists on exactly
//! three fields, converts value and timestamp with Python's `float()`, then
//! drops NaN values and stamps timestamp `-1` with the current time. Each
//! decision, with the error it maps to here:
//!
//! | input | carbon 1.1.7 | statsyard default |
//! |---|---|---|
//! | invalid UTF-8 | `decode` raises; the line is lost | [`CarbonError::InvalidUtf8`] |
//! | tabs, several spaces, leading/trailing whitespace, `\r` | Python's `split()` on Unicode whitespace: accepted | accepted, same whitespace set |
//! | blank line | "invalid line" logged | [`CarbonError::Empty`] |
//! | `path value` (no timestamp) | invalid line | [`CarbonError::MissingTimestamp`] (or stamped now with `allow_missing_timestamp`) |
//! | `path` alone | invalid line | [`CarbonError::MissingValue`] |
//! | four or more fields | invalid line | [`CarbonError::ExtraFields`] |
//! | value not a Python float (`abc`, `0x10`, `1,5`) | invalid line | [`CarbonError::InvalidValue`] |
//! | value `nan` | silently dropped | [`CarbonError::NanValue`] |
//! | value `inf`, `-inf`, `1e999` | passed on to the stores | accepted (`allow_inf`); [`CarbonError::InfValue`] when off |
//! | timestamp not a float | invalid line | [`CarbonError::InvalidTimestamp`] |
//! | timestamp `nan`/`inf` | `int()` raises outside the handler; the line is lost | [`CarbonError::TimestampNotFinite`] |
//! | timestamp whose `int()` is `-1` (`-1`, `-1.5`) | current time | [`Timestamp::Now`] (`minus_one_is_now`) |
//! | fractional timestamp | kept as a float; carbon sends it on with `%d` (truncated) | [`Timestamp::At`] with the float |
//! | line longer than 16384 bytes | Twisted's `LineOnlyReceiver` drops the connection | [`CarbonError::LineTooLong`] (`max_line_length`) |
//! | odd characters in the path (`/`, `..`, controls) | not checked | accepted; [`CarbonError::IllegalName`] with `NameCheck::Strict` |
//!
//! Python's `float()` grammar is reproduced: optional sign, decimal digits
//! with an optional fraction and exponent, `_` between digits, and
//! `inf`/`infinity`/`nan` in any case. Non-ASCII digits, which Python also
//! accepts, are refused.
//!
//! Tagged names (`name;k=v;k2=v2`) pass through untouched;
//! [`normalize_tags`] sorts them as carbon's `TaggedSeries` does for
//! `TAG_RELAY_NORMALIZED`.
//!
//! Imports nothing of the crate outside `parse`.

use std::borrow::Cow;

/// When a point is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timestamp {
    /// carbon's `-1` (or a missing timestamp, when allowed): the receiver
    /// stamps it with the time it arrived.
    Now,
    /// Seconds since the epoch as sent (possibly fractional).
    At(f64),
}

impl Timestamp {
    /// Whole seconds, `now` standing for [`Timestamp::Now`]. Fractions are
    /// truncated toward zero, as carbon's `%d` does when it sends a point on.
    pub fn resolve(self, now: i64) -> i64 {
        match self {
            Timestamp::Now => now,
            // `as` saturates; finite timestamps are guaranteed by the parser.
            Timestamp::At(t) => t.trunc() as i64,
        }
    }
}

/// One carbon point, borrowing its name from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarbonPoint<'a> {
    /// The metric path, tags included, as sent (valid UTF-8).
    pub name: &'a [u8],
    /// The value; never NaN.
    pub value: f64,
    /// The timestamp.
    pub timestamp: Timestamp,
}

/// How strictly metric paths are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameCheck {
    /// carbon's behaviour: any non-whitespace UTF-8 goes.
    #[default]
    Off,
    /// Refuse what would make a bad whisper path: control characters, `/`,
    /// `\`, an empty path, and empty segments (`a..b`, a leading or trailing
    /// `.`). Tags after the first `;` are not checked.
    Strict,
}

/// What the line parser accepts; `Default` is carbon 1.1.7's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarbonLineOptions {
    /// Take a timestamp whose integer part is `-1` as "now" (carbon: yes).
    pub minus_one_is_now: bool,
    /// Accept `path value` and stamp it now (carbon: no, the line is invalid).
    pub allow_missing_timestamp: bool,
    /// Pass `inf` and `-inf` values on (carbon: yes; only NaN is dropped).
    pub allow_inf: bool,
    /// Longest accepted line in bytes, without its `\n`; 0 for no limit
    /// (carbon: Twisted's `LineOnlyReceiver.MAX_LENGTH`, 16384).
    pub max_line_length: usize,
    /// How metric paths are checked (carbon: not at all).
    pub name_check: NameCheck,
}

impl Default for CarbonLineOptions {
    fn default() -> Self {
        CarbonLineOptions {
            minus_one_is_now: true,
            allow_missing_timestamp: false,
            allow_inf: true,
            max_line_length: 16384,
            name_check: NameCheck::Off,
        }
    }
}

/// Why a carbon line (or pickled point) was refused. Each variant is one
/// self-metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CarbonError {
    /// The line is empty or only whitespace.
    #[error("empty line")]
    Empty,
    /// The line is longer than `max_line_length`.
    #[error("line longer than the limit")]
    LineTooLong,
    /// The line is not valid UTF-8 (carbon decodes lines as UTF-8).
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// Only a path: no value and no timestamp.
    #[error("missing value and timestamp")]
    MissingValue,
    /// `path value` without a timestamp.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// More than three whitespace-separated fields.
    #[error("more than three fields")]
    ExtraFields,
    /// The value is not a number as Python's `float()` reads it.
    #[error("value is not a number")]
    InvalidValue,
    /// The value is NaN (carbon drops these).
    #[error("value is NaN")]
    NanValue,
    /// The value is infinite and `allow_inf` is off.
    #[error("value is infinite")]
    InfValue,
    /// The timestamp is not a number as Python's `float()` reads it.
    #[error("timestamp is not a number")]
    InvalidTimestamp,
    /// The timestamp is NaN or infinite.
    #[error("timestamp is not finite")]
    TimestampNotFinite,
    /// The path is refused by `NameCheck::Strict`.
    #[error("illegal metric name")]
    IllegalName,
}

/// Whitespace for Python's `str.split()`: Unicode White_Space plus the
/// information separators U+001C to U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Parse one line (without its `\n`; a trailing `\r` is whitespace).
pub fn parse_line<'a>(
    line: &'a [u8],
    opts: &CarbonLineOptions,
) -> Result<CarbonPoint<'a>, CarbonError> {
    if opts.max_line_length != 0 && line.len() > opts.max_line_length {
        return Err(CarbonError::LineTooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| CarbonError::InvalidUtf8)?;
    let mut fields = text.split(is_py_space).filter(|f| !f.is_empty());
    let name = fields.next().ok_or(CarbonError::Empty)?;
    let value = fields.next().ok_or(CarbonError::MissingValue)?;
    let timestamp = fields.next();
    if fields.next().is_some() {
        return Err(CarbonError::ExtraFields);
    }
    // carbon converts the timestamp first (`(float(timestamp), float(value))`).
    let timestamp = match timestamp {
        Some(t) => Some(py_float(t.as_bytes()).ok_or(CarbonError::InvalidTimestamp)?),
        None if opts.allow_missing_timestamp => None,
        None => return Err(CarbonError::MissingTimestamp),
    };
    let value = py_float(value.as_bytes()).ok_or(CarbonError::InvalidValue)?;
    let timestamp = match timestamp {
        Some(t) => resolve_timestamp(t, opts)?,
        None => Timestamp::Now,
    };
    check_value(value, opts)?;
    check_name(name.as_bytes(), opts)?;
    Ok(CarbonPoint {
        name: name.as_bytes(),
        value,
        timestamp,
    })
}

/// `metricReceived`'s checks on a value, shared with the pickle receiver.
pub(crate) fn check_value(value: f64, opts: &CarbonLineOptions) -> Result<(), CarbonError> {
    if value.is_nan() {
        return Err(CarbonError::NanValue);
    }
    if value.is_infinite() && !opts.allow_inf {
        return Err(CarbonError::InfValue);
    }
    Ok(())
}

/// `metricReceived`'s timestamp rules, shared with the pickle receiver.
pub(crate) fn resolve_timestamp(
    t: f64,
    opts: &CarbonLineOptions,
) -> Result<Timestamp, CarbonError> {
    if !t.is_finite() {
        return Err(CarbonError::TimestampNotFinite);
    }
    // `int(t) == -1` truncates toward zero: -1.9 counts as -1.
    if opts.minus_one_is_now && t.trunc() == -1.0 {
        return Ok(Timestamp::Now);
    }
    Ok(Timestamp::At(t))
}

/// The [`NameCheck`] on a path, shared with the pickle receiver.
pub(crate) fn check_name(name: &[u8], opts: &CarbonLineOptions) -> Result<(), CarbonError> {
    if opts.name_check == NameCheck::Off {
        return Ok(());
    }
    let path = name.split(|&b| b == b';').next().unwrap_or_default();
    if path.is_empty()
        || path
            .iter()
            .any(|&b| b < 0x20 || b == 0x7f || b == b'/' || b == b'\\')
        || path.split(|&b| b == b'.').any(<[u8]>::is_empty)
    {
        return Err(CarbonError::IllegalName);
    }
    Ok(())
}

/// Python's `float(s)` for an already stripped ASCII-or-not field: `None`
/// where Python raises `ValueError`. Overflow gives ±inf, as in Python.
pub fn py_float(s: &[u8]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    if !s.contains(&b'_') {
        return parse_plain(s);
    }
    // Underscores are allowed only between two digits; copy without them.
    let mut buf = [0u8; 128];
    if s.len() > buf.len() {
        return None;
    }
    let mut n = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'_' {
            let before = i > 0 && s[i - 1].is_ascii_digit();
            let after = s.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        } else {
            buf[n] = b;
            n += 1;
        }
    }
    parse_plain(&buf[..n])
}

/// Python's float grammar without underscores. std's parser accepts the
/// same language (decimal with optional fraction and exponent, `inf`,
/// `infinity`, `nan`, any case, optional sign) and rounds correctly; the
/// explicit check keeps out anything std might accept beyond it.
fn parse_plain(s: &[u8]) -> Option<f64> {
    let body = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    let special = body.eq_ignore_ascii_case(b"inf")
        || body.eq_ignore_ascii_case(b"infinity")
        || body.eq_ignore_ascii_case(b"nan");
    if !special && !is_decimal(body) {
        return None;
    }
    // The bytes are ASCII here (checked above), hence valid UTF-8.
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `(d+ (. d*)? | . d+) ([eE] [+-]? d+)?`
fn is_decimal(s: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let int = digits(s);
    let mut i = int;
    let mut frac = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac = digits(&s[i..]);
        i += frac;
    }
    if int == 0 && frac == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(&s[i..]);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == s.len()
}

/// Why [`try_normalize_tags`] could not parse a tagged name; carbon's
/// `TaggedSeries.parse_carbon` raises the same cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Nothing before the first `;`.
    #[error("no metric name before the tags")]
    EmptyName,
    /// The name is only `~` characters, which carbon strips.
    #[error("metric name is empty once leading '~' are stripped")]
    EmptyNameTag,
    /// A tag segment without `=` or with an empty tag.
    #[error("tag segment without a tag name or '='")]
    BadSegment,
    /// A tag with an empty value.
    #[error("tag with an empty value")]
    EmptyValue,
    /// A tag name containing `!` or `^` (carbon's prohibited characters).
    #[error("tag name with a prohibited character")]
    ProhibitedChar,
    /// A tag value starting with `~`.
    #[error("tag value starting with '~'")]
    TildeValue,
}

/// The name as carbon's `TaggedSeries.parse(name).path` writes it (what
/// carbon-relay sends with `TAG_RELAY_NORMALIZED`): leading `~` stripped
/// from the name, tags sorted by their `tag=value` text, a repeated tag
/// keeping its last value, a `name` tag replaced by the name. Like
/// carbon-relay, a name that does not parse is passed on unchanged; use
/// [`try_normalize_tags`] to count those. Borrowed when already normal.
pub fn normalize_tags(name: &[u8]) -> Cow<'_, [u8]> {
    try_normalize_tags(name).unwrap_or(Cow::Borrowed(name))
}

/// [`normalize_tags`], with carbon's reason when the name does not parse.
pub fn try_normalize_tags(name: &[u8]) -> Result<Cow<'_, [u8]>, TagError> {
    let mut segments = name.split(|&b| b == b';');
    // `split` always yields at least one item.
    let metric = segments.next().unwrap_or_default();
    if metric.is_empty() {
        return Err(TagError::EmptyName);
    }
    let start = metric.iter().take_while(|&&b| b == b'~').count();
    let stripped = &metric[start..];
    if stripped.is_empty() {
        return Err(TagError::EmptyNameTag);
    }
    if !name.contains(&b';') {
        return Ok(if start == 0 {
            Cow::Borrowed(name)
        } else {
            Cow::Borrowed(stripped)
        });
    }
    // (tag, whole "tag=value" segment), validated as carbon does.
    let mut tags: Vec<(&[u8], &[u8])> = Vec::new();
    for segment in segments {
        let eq = segment.iter().position(|&b| b == b'=');
        let Some(eq) = eq.filter(|&e| e > 0) else {
            return Err(TagError::BadSegment);
        };
        let (tag, value) = (&segment[..eq], &segment[eq + 1..]);
        if value.is_empty() {
            return Err(TagError::EmptyValue);
        }
        if tag.iter().any(|&b| b == b'!' || b == b'^') {
            return Err(TagError::ProhibitedChar);
        }
        if value[0] == b'~' {
            return Err(TagError::TildeValue);
        }
        if tag == b"name" {
            // carbon sets tags['name'] to the metric after the loop.
            continue;
        }
        // A dict: a repeated tag keeps its last value.
        if let Some(slot) = tags.iter_mut().find(|(t, _)| *t == tag) {
            slot.1 = segment;
        } else {
            tags.push((tag, segment));
        }
    }
    // Sorted as the strings ";tag=value" are (UTF-8 byte order is code
    // point order).
    tags.sort_by(|a, b| a.1.cmp(b.1));
    let mut out = Vec::with_capacity(name.len());
    out.extend_from_slice(stripped);
    for (_, seg) in &tags {
        out.push(b';');
        out.extend_from_slice(seg);
    }
    Ok(if out == name {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<CarbonPoint<'_>, CarbonError> {
        parse_line(line.as_bytes(), &CarbonLineOptions::default())
    }

    #[test]
    fn lines_as_carbon_reads_them() {
        use CarbonError::*;
        use Timestamp::*;
        let ok = |line: &str, name: &str, value: f64, ts: Timestamp| {
            let p = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(p.name, name.as_bytes(), "{line:?}");
            assert_eq!(p.value, value, "{line:?}");
            assert_eq!(p.timestamp, ts, "{line:?}");
        };
        ok("a.b 1 1700000000", "a.b", 1.0, At(1_700_000_000.0));
        ok("a.b\t1.5\t1700000000", "a.b", 1.5, At(1_700_000_000.0));
        ok("  a.b   -2e3  17 \r", "a.b", -2000.0, At(17.0));
        ok("a.b 1_000 17", "a.b", 1000.0, At(17.0));
        ok("a.b .5 17.9", "a.b", 0.5, At(17.9));
        ok("a.b 5. +17", "a.b", 5.0, At(17.0));
        ok("a.b inf 17", "a.b", f64::INFINITY, At(17.0));
        ok("a.b -Infinity 17", "a.b", f64::NEG_INFINITY, At(17.0));
        ok("a.b 1e999 17", "a.b", f64::INFINITY, At(17.0));
        ok("a.b 1 -1", "a.b", 1.0, Now);
        ok("a.b 1 -1.9", "a.b", 1.0, Now);
        ok("a.b 1 -2", "a.b", 1.0, At(-2.0));
        ok("a.b;k=v;j=w 1 2", "a.b;k=v;j=w", 1.0, At(2.0));
        ok("a.b\u{a0}1\u{3000}2", "a.b", 1.0, At(2.0));
        ok("a.b\x1c1 2", "a.b", 1.0, At(2.0));
        ok("été.日本 3 4", "été.日本", 3.0, At(4.0));
        ok("a//b 3 4", "a//b", 3.0, At(4.0));

        let err = |line: &str, e: CarbonError| assert_eq!(parse(line), Err(e), "{line:?}");
        err("", Empty);
        err("  \t ", Empty);
        err("a.b", MissingValue);
        err("a.b 1", MissingTimestamp);
        err("a.b 1 2 3", ExtraFields);
        err("a.b x 2", InvalidValue);
        err("a.b 0x10 2", InvalidValue);
        err("a.b 1,5 2", InvalidValue);
        err("a.b 1__0 2", InvalidValue);
        err("a.b _1 2", InvalidValue);
        err("a.b 1e 2", InvalidValue);
        err("a.b . 2", InvalidValue);
        err("a.b nan 2", NanValue);
        err("a.b -NaN 2", NanValue);
        err("a.b 1 x", InvalidTimestamp);
        err("a.b 1 nan", TimestampNotFinite);
        err("a.b 1 inf", TimestampNotFinite);
        assert_eq!(
            parse_line(b"a.\xff 1 2", &CarbonLineOptions::default()),
            Err(InvalidUtf8)
        );
        let long = format!("{} 1 2", "a".repeat(16384));
        assert_eq!(parse(&long), Err(LineTooLong));
    }

    #[test]
    fn options_change_the_defaults() {
        let o = CarbonLineOptions {
            minus_one_is_now: false,
            allow_missing_timestamp: true,
            allow_inf: false,
            max_line_length: 0,
            name_check: NameCheck::Strict,
        };
        let p = parse_line(b"a.b 1", &o).unwrap();
        assert_eq!(p.timestamp, Timestamp::Now);
        let p = parse_line(b"a.b 1 -1", &o).unwrap();
        assert_eq!(p.timestamp, Timestamp::At(-1.0));
        assert_eq!(parse_line(b"a.b inf 1", &o), Err(CarbonError::InfValue));
        for bad in [
            "a..b 1 2",
            ".a 1 2",
            "a. 1 2",
            "a/b 1 2",
            "a\\b 1 2",
            ";k=v 1 2",
            "a\x01b 1 2",
        ] {
            assert_eq!(
                parse_line(bad.as_bytes(), &o),
                Err(CarbonError::IllegalName),
                "{bad:?}"
            );
        }
        assert!(parse_line(b"a.b;k=v..w 1 2", &o).is_ok());
        let long = format!("{} 1 2", "a".repeat(20000));
        assert!(parse_line(long.as_bytes(), &o).is_ok());
    }

    #[test]
    fn resolve_truncates_like_carbon() {
        assert_eq!(Timestamp::At(17.9).resolve(5), 17);
        assert_eq!(Timestamp::At(-2.5).resolve(5), -2);
        assert_eq!(Timestamp::Now.resolve(5), 5);
    }

    // Expected values from carbon's TaggedSeries.parse(name).path.
    #[test]
    fn tags_normalised_like_carbon() {
        let n = |s: &str| String::from_utf8(normalize_tags(s.as_bytes()).into_owned()).unwrap();
        assert_eq!(n("a.b"), "a.b");
        assert_eq!(n("~a.b"), "a.b");
        assert_eq!(n("a.b;z=1;a=2"), "a.b;a=2;z=1");
        assert_eq!(n("a.b;a=2;a=1"), "a.b;a=1");
        assert_eq!(n("a.b;ab=1;a=2"), "a.b;a=2;ab=1");
        assert_eq!(n("a.b;a_b=1;a=2"), "a.b;a=2;a_b=1");
        assert_eq!(n("a.b;name=x;k=v"), "a.b;k=v");
        assert_eq!(n("~~x;k=v"), "x;k=v");
        // Invalid: passed on unchanged, like carbon-relay.
        for bad in [
            "a.b;k", "a.b;=v", "a.b;k=", "a.b;k!=v", "a.b;k=~v", ";k=v", "~",
        ] {
            assert_eq!(n(bad), bad);
            assert!(try_normalize_tags(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(matches!(normalize_tags(b"a.b;a=1;b=2"), Cow::Borrowed(_)));
    }
}

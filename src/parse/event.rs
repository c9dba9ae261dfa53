//! DogStatsD events and service checks, as the DogStatsD datagram format
//! defines them. No I/O: bytes in, borrowed values out.
//!
//! ```text
//! event   = "_e{" title-length "," text-length "}:" title "|" text *("|" field)
//! field   = "d:" unix-seconds / "h:" hostname / "k:" aggregation-key
//!         / "p:" ("normal" / "low") / "s:" source-type
//!         / "t:" ("error" / "warning" / "info" / "success") / "#" tags
//! check   = "_sc|" name "|" status *("|" check-field)     ; status 0, 1, 2 or 3
//! check-field = "d:" unix-seconds / "h:" hostname / "#" tags / "m:" message
//! ```
//!
//! - The lengths count bytes of the title and the text as sent; `\n` in
//!   them (a backslash and an `n`, how clients escape a newline) is a
//!   newline, which the consumer unescapes ([`unescape`]).
//! - As in the Datadog agent, fields are split at `|`, so a check's
//!   message (`m:`, which the protocol puts last) ends at the next `|`;
//!   several `#` fields add up; a field the protocol does not name (origin
//!   detection's `c:`, `e:`, `card:`, anything newer) is skipped.
//! - Unlike the agent, which logs a bad optional field and keeps the rest,
//!   a value the protocol does not allow (`p:urgent`, `d:soon`) refuses the
//!   whole line: it is a counted bad line, like a bad metric field.
//!
//! Imports nothing of the crate outside `parse`.

/// An event or a service check, borrowed from the line.
#[derive(Debug, Clone, PartialEq)]
pub enum Dog<'a> {
    Event(Event<'a>),
    Check(ServiceCheck<'a>),
}

/// A DogStatsD event (`_e{...}`), borrowed from the line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event<'a> {
    /// As sent: `\n` escapes are still there ([`unescape`]).
    pub title: &'a [u8],
    /// As sent, like the title.
    pub text: &'a [u8],
    /// `d:`: when it happened, in Unix seconds.
    pub timestamp: Option<i64>,
    /// `h:`.
    pub host: Option<&'a [u8]>,
    /// `k:`: events with the same key are grouped.
    pub aggregation_key: Option<&'a [u8]>,
    /// `p:`.
    pub priority: Priority,
    /// `s:`.
    pub source_type: Option<&'a [u8]>,
    /// `t:`.
    pub alert_type: AlertType,
    /// `#` tags, each `key:value` or a bare `key`; empty ones are left out.
    pub tags: Vec<&'a [u8]>,
}

/// A DogStatsD service check (`_sc|...`), borrowed from the line.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCheck<'a> {
    pub name: &'a [u8],
    pub status: CheckStatus,
    /// `d:`: when the check ran, in Unix seconds.
    pub timestamp: Option<i64>,
    /// `h:`.
    pub host: Option<&'a [u8]>,
    /// `#` tags, as for events.
    pub tags: Vec<&'a [u8]>,
    /// `m:`.
    pub message: Option<&'a [u8]>,
}

/// An event's `p:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// An event's `t:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertType {
    Error,
    Warning,
    #[default]
    Info,
    Success,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Error => "error",
            AlertType::Warning => "warning",
            AlertType::Info => "info",
            AlertType::Success => "success",
        }
    }
}

/// A service check's status, which its gauge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl CheckStatus {
    /// `ok`, `warning`, `critical` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Unknown => "unknown",
        }
    }
}

/// Why an event or a service check was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The header is not `_e{<title length>,<text length>}:`.
    #[error("event header is not _e{{title_length,text_length}}:")]
    BadHeader,
    /// The title length is 0.
    #[error("event title is empty")]
    EmptyTitle,
    /// Fewer bytes follow the header than its lengths say.
    #[error("event is shorter than its header says")]
    TooShort,
    /// The title (or the text, when fields follow) does not end with `|`.
    #[error("event title or text is not followed by |")]
    NoSeparator,
    /// `d:` is not a whole number of seconds.
    #[error("bad event or service check timestamp (expected d:<unix seconds>)")]
    BadTimestamp,
    /// `p:` is not `normal` or `low`.
    #[error("bad event priority (expected p:normal or p:low)")]
    BadPriority,
    /// `t:` is not `error`, `warning`, `info` or `success`.
    #[error("bad event alert type (expected t:error, warning, info or success)")]
    BadAlertType,
    /// A service check without both a name and a status.
    #[error("service check is not _sc|name|status")]
    CheckFormat,
    /// A service check with an empty name.
    #[error("empty service check name")]
    EmptyName,
    /// The status is not 0, 1, 2 or 3.
    #[error("bad service check status (expected 0, 1, 2 or 3)")]
    BadStatus,
}

/// Whether `line` is an event or a service check by its first bytes (the
/// only thing that tells them from a metric line).
#[inline]
pub fn is_event_or_check(line: &[u8]) -> bool {
    line.starts_with(b"_e{") || line.starts_with(b"_sc|")
}

/// Parse an event or a service check line (without its line ending); call
/// only when [`is_event_or_check`] holds.
pub fn parse(line: &[u8]) -> Result<Dog<'_>, EventError> {
    if let Some(rest) = line.strip_prefix(b"_sc|") {
        parse_check(rest).map(Dog::Check)
    } else {
        parse_event(line).map(Dog::Event)
    }
}

/// `_e{tl,xl}:title|text|fields...`.
fn parse_event(line: &[u8]) -> Result<Event<'_>, EventError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(EventError::BadHeader)?;
    let (header, body) = (&line[..colon], &line[colon + 1..]);
    let lengths = header
        .strip_prefix(b"_e{")
        .and_then(|h| h.strip_suffix(b"}"))
        .ok_or(EventError::BadHeader)?;
    let comma = lengths
        .iter()
        .position(|&b| b == b',')
        .ok_or(EventError::BadHeader)?;
    let title_len = length(&lengths[..comma])?;
    let text_len = length(&lengths[comma + 1..])?;
    if title_len == 0 {
        return Err(EventError::EmptyTitle);
    }
    let text_end = title_len
        .checked_add(1)
        .and_then(|n| n.checked_add(text_len))
        .filter(|&end| end <= body.len())
        .ok_or(EventError::TooShort)?;
    if body[title_len] != b'|' {
        return Err(EventError::NoSeparator);
    }
    let mut e = Event {
        title: &body[..title_len],
        text: &body[title_len + 1..text_end],
        ..Event::default()
    };
    let fields = match &body[text_end..] {
        [] => return Ok(e),
        [b'|', fields @ ..] => fields,
        _ => return Err(EventError::NoSeparator),
    };
    for field in fields.split(|&b| b == b'|') {
        if let Some(v) = field.strip_prefix(b"d:") {
            e.timestamp = Some(seconds(v)?);
        } else if let Some(v) = field.strip_prefix(b"h:") {
            e.host = Some(v);
        } else if let Some(v) = field.strip_prefix(b"k:") {
            e.aggregation_key = Some(v);
        } else if let Some(v) = field.strip_prefix(b"p:") {
            e.priority = match v {
                b"normal" => Priority::Normal,
                b"low" => Priority::Low,
                _ => return Err(EventError::BadPriority),
            };
        } else if let Some(v) = field.strip_prefix(b"s:") {
            e.source_type = Some(v);
        } else if let Some(v) = field.strip_prefix(b"t:") {
            e.alert_type = match v {
                b"error" => AlertType::Error,
                b"warning" => AlertType::Warning,
                b"info" => AlertType::Info,
                b"success" => AlertType::Success,
                _ => return Err(EventError::BadAlertType),
            };
        } else if let Some(v) = field.strip_prefix(b"#") {
            push_tags(&mut e.tags, v);
        }
    }
    Ok(e)
}

/// `name|status|fields...` (after `_sc|`).
fn parse_check(rest: &[u8]) -> Result<ServiceCheck<'_>, EventError> {
    let mut fields = rest.split(|&b| b == b'|');
    let name = fields.next().ok_or(EventError::CheckFormat)?;
    let status = fields.next().ok_or(EventError::CheckFormat)?;
    if name.is_empty() {
        return Err(EventError::EmptyName);
    }
    let status = match status {
        b"0" => CheckStatus::Ok,
        b"1" => CheckStatus::Warning,
        b"2" => CheckStatus::Critical,
        b"3" => CheckStatus::Unknown,
        _ => return Err(EventError::BadStatus),
    };
    let mut c = ServiceCheck {
        name,
        status,
        timestamp: None,
        host: None,
        tags: Vec::new(),
        message: None,
    };
    for field in fields {
        if let Some(v) = field.strip_prefix(b"d:") {
            c.timestamp = Some(seconds(v)?);
        } else if let Some(v) = field.strip_prefix(b"h:") {
            c.host = Some(v);
        } else if let Some(v) = field.strip_prefix(b"m:") {
            c.message = Some(v);
        } else if let Some(v) = field.strip_prefix(b"#") {
            push_tags(&mut c.tags, v);
        }
    }
    Ok(c)
}

/// A header length: decimal digits only.
fn length(raw: &[u8]) -> Result<usize, EventError> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return Err(EventError::BadHeader);
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EventError::BadHeader)
}

/// `d:`: an optionally signed whole number of seconds.
fn seconds(raw: &[u8]) -> Result<i64, EventError> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(EventError::BadTimestamp);
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(EventError::BadTimestamp)
}

fn push_tags<'a>(tags: &mut Vec<&'a [u8]>, field: &'a [u8]) {
    tags.extend(field.split(|&b| b == b',').filter(|t| !t.is_empty()));
}

/// The text of a title, a text or a message: `\n` (backslash, `n`) as a
/// newline, invalid UTF-8 as U+FFFD.
pub fn unescape(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace("\\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventError::*;

    fn event(line: &[u8]) -> Result<Event<'_>, EventError> {
        match parse(line)? {
            Dog::Event(e) => Ok(e),
            Dog::Check(c) => panic!("a check: {c:?}"),
        }
    }

    fn check(line: &[u8]) -> Result<ServiceCheck<'_>, EventError> {
        match parse(line)? {
            Dog::Check(c) => Ok(c),
            Dog::Event(e) => panic!("an event: {e:?}"),
        }
    }

    #[test]
    fn events() {
        let e = event(b"_e{5,4}:title|text").unwrap();
        assert_eq!((e.title, e.text), (&b"title"[..], &b"text"[..]));
        assert_eq!(
            (e.priority, e.alert_type),
            (Priority::Normal, AlertType::Info)
        );
        let e = event(
            b"_e{9,11}:disk full|sda1 at 99%|d:1700000000|h:web1|k:disk|p:low|s:nagios|t:error|#env:prod,team:ops|#role",
        )
        .unwrap();
        assert_eq!(e.title, b"disk full");
        assert_eq!(e.text, b"sda1 at 99%");
        assert_eq!(e.timestamp, Some(1_700_000_000));
        assert_eq!(e.host, Some(&b"web1"[..]));
        assert_eq!(e.aggregation_key, Some(&b"disk"[..]));
        assert_eq!(e.priority, Priority::Low);
        assert_eq!(e.source_type, Some(&b"nagios"[..]));
        assert_eq!(e.alert_type, AlertType::Error);
        assert_eq!(e.tags, vec![&b"env:prod"[..], b"team:ops", b"role"]);
        // The lengths, not the `|`, delimit title and text.
        let e = event(b"_e{3,5}:a|b|c|d|e").unwrap();
        assert_eq!((e.title, e.text), (&b"a|b"[..], &b"c|d|e"[..]));
        let e = event(b"_e{1,0}:x|").unwrap();
        assert_eq!(e.text, b"");
        // Unknown fields (origin detection, newer clients) are skipped.
        let e = event(b"_e{1,1}:x|y|c:abc|card:low|zz|#t").unwrap();
        assert_eq!(e.tags, vec![&b"t"[..]]);
        assert_eq!(unescape(b"line 1\\nline 2"), "line 1\nline 2");
        // Negative timestamps are whole seconds too.
        assert_eq!(event(b"_e{1,1}:x|y|d:-5").unwrap().timestamp, Some(-5));
    }

    #[test]
    fn bad_events() {
        for (line, err) in [
            (&b"_e{5,4}title|text"[..], BadHeader),
            (b"_e{5}:title|text", BadHeader),
            (b"_e{,4}:title|text", BadHeader),
            (b"_e{5,}:title|text", BadHeader),
            (b"_e{-5,4}:title|text", BadHeader),
            (b"_e{5,4:title|text", BadHeader),
            (b"_e{99999999999999999999999,1}:x|y", BadHeader),
            (b"_e{0,4}:|text", EmptyTitle),
            (b"_e{5,9}:title|text", TooShort),
            (b"_e{9,4}:title|text", TooShort),
            (b"_e{18446744073709551615,1}:x|y", TooShort),
            (b"_e{4,4}:title|text", NoSeparator),
            (b"_e{5,3}:title|text", NoSeparator),
            (b"_e{5,4}:title|text|d:soon", BadTimestamp),
            (b"_e{5,4}:title|text|d:", BadTimestamp),
            (b"_e{5,4}:title|text|d:1.5", BadTimestamp),
            (b"_e{5,4}:title|text|p:urgent", BadPriority),
            (b"_e{5,4}:title|text|t:fatal", BadAlertType),
        ] {
            assert_eq!(parse(line), Err(err), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn service_checks() {
        let c = check(b"_sc|app.up|0").unwrap();
        assert_eq!((c.name, c.status), (&b"app.up"[..], CheckStatus::Ok));
        let c = check(b"_sc|db.up|2|d:1700000000|h:db1|#env:prod,role:primary|m:replica lag 30s")
            .unwrap();
        assert_eq!(c.status, CheckStatus::Critical);
        assert_eq!(c.timestamp, Some(1_700_000_000));
        assert_eq!(c.host, Some(&b"db1"[..]));
        assert_eq!(c.tags, vec![&b"env:prod"[..], b"role:primary"]);
        assert_eq!(c.message, Some(&b"replica lag 30s"[..]));
        assert_eq!(check(b"_sc|x|1").unwrap().status, CheckStatus::Warning);
        assert_eq!(check(b"_sc|x|3").unwrap().status, CheckStatus::Unknown);
        // The message ends at the next `|`, as in the agent.
        assert_eq!(check(b"_sc|x|0|m:a|b").unwrap().message, Some(&b"a"[..]));
        for (line, err) in [
            (&b"_sc|"[..], CheckFormat),
            (b"_sc|name", CheckFormat),
            (b"_sc||0", EmptyName),
            (b"_sc|name|4", BadStatus),
            (b"_sc|name|ok", BadStatus),
            (b"_sc|name|", BadStatus),
            (b"_sc|name|00", BadStatus),
            (b"_sc|name|0|d:x", BadTimestamp),
        ] {
            assert_eq!(parse(line), Err(err), "{}", String::from_utf8_lossy(line));
        }
    }
}

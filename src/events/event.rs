//! The owned event and service-check record, and their forms: the
//! DogStatsD line and JSON.
//!
//! Imports, besides `events` itself: `parse`.

use serde_json::{json, Value};

use crate::parse::event::{self as wire, AlertType, CheckStatus, Priority};

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A DogStatsD `_e{` line a client sent; `source` is who sent it (its
    /// address, or the unix socket), when known.
    Received { source: Option<String> },
    /// statsyard's own: a source or a series went dark or came back.
    Liveness,
}

/// One event, owned: what the ring keeps and what outputs receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Set by the [`super::Hub`]: 1, 2, 3... in the order events arrived
    /// (`GET /api/events?since=`).
    pub id: u64,
    /// When statsyard took it, in Unix seconds.
    pub received: u64,
    /// `d:`, or when it was received.
    pub timestamp: i64,
    pub title: String,
    pub text: String,
    pub host: Option<String>,
    pub aggregation_key: Option<String>,
    pub priority: Priority,
    pub source_type: Option<String>,
    pub alert_type: AlertType,
    /// `key:value` or `key`, as DogStatsD writes them.
    pub tags: Vec<String>,
    pub origin: Origin,
}

fn text(raw: &[u8]) -> String {
    wire::unescape(raw)
}

fn opt(raw: Option<&[u8]>) -> Option<String> {
    raw.filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(r).into_owned())
}

impl Event {
    /// A parsed event, received at `now` (Unix seconds) from `source`.
    pub fn received(e: &wire::Event<'_>, now: u64, source: Option<String>) -> Event {
        Event {
            id: 0,
            received: now,
            timestamp: e.timestamp.unwrap_or(now as i64),
            title: text(e.title),
            text: text(e.text),
            host: opt(e.host),
            aggregation_key: opt(e.aggregation_key),
            priority: e.priority,
            source_type: opt(e.source_type),
            alert_type: e.alert_type,
            tags: e
                .tags
                .iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect(),
            origin: Origin::Received { source },
        }
    }

    /// Whether statsyard made it (rather than a client sending it).
    pub fn is_own(&self) -> bool {
        self.origin == Origin::Liveness
    }

    /// The event as a DogStatsD line, without a line ending: newlines in
    /// the title and text escaped as `\n`, `|` and `,` left out of the
    /// fields that cannot hold them.
    pub fn to_dogstatsd(&self) -> Vec<u8> {
        let escape = |s: &str| s.replace('\n', "\\n");
        let field = |s: &str| s.replace(['|', '\n'], "");
        let (title, body) = (escape(&self.title), escape(&self.text));
        let mut out = format!(
            "_e{{{},{}}}:{title}|{body}|d:{}",
            title.len(),
            body.len(),
            self.timestamp
        );
        for (prefix, v) in [
            ("h:", &self.host),
            ("k:", &self.aggregation_key),
            ("s:", &self.source_type),
        ] {
            if let Some(v) = v {
                out.push('|');
                out.push_str(prefix);
                out.push_str(&field(v));
            }
        }
        if self.priority != Priority::Normal {
            out.push_str("|p:");
            out.push_str(self.priority.as_str());
        }
        if self.alert_type != AlertType::Info {
            out.push_str("|t:");
            out.push_str(self.alert_type.as_str());
        }
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| field(t).replace(',', ""))
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            out.push_str("|#");
            out.push_str(&tags.join(","));
        }
        out.into_bytes()
    }

    /// The event as JSON (`GET /api/events`, the console's `json` format).
    pub fn to_json(&self) -> Value {
        let (origin, source) = match &self.origin {
            Origin::Received { source } => ("received", source.clone()),
            Origin::Liveness => ("liveness", None),
        };
        json!({
            "id": self.id,
            "type": "event",
            "received": self.received,
            "timestamp": self.timestamp,
            "title": self.title,
            "text": self.text,
            "host": self.host,
            "aggregation_key": self.aggregation_key,
            "priority": self.priority.as_str(),
            "source_type": self.source_type,
            "alert_type": self.alert_type.as_str(),
            "tags": self.tags,
            "origin": origin,
            "source": source,
        })
    }
}

/// A service check's latest state (`GET /api/checks`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRecord {
    /// The key of its gauge (name and tags), which identifies it.
    pub key: String,
    pub name: String,
    pub status: CheckStatus,
    pub message: Option<String>,
    pub host: Option<String>,
    pub tags: Vec<String>,
    /// `d:`, or when it was received (Unix seconds).
    pub timestamp: i64,
    /// When it was last received (Unix seconds).
    pub last_seen: u64,
}

impl CheckRecord {
    /// A parsed check whose gauge has key `key`, received at `now`.
    pub fn new(c: &wire::ServiceCheck<'_>, key: &[u8], now: u64) -> CheckRecord {
        CheckRecord {
            key: String::from_utf8_lossy(key).into_owned(),
            name: String::from_utf8_lossy(c.name).into_owned(),
            status: c.status,
            message: c.message.map(text),
            host: opt(c.host),
            tags: c
                .tags
                .iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect(),
            timestamp: c.timestamp.unwrap_or(now as i64),
            last_seen: now,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key,
            "name": self.name,
            "status": self.status as u8,
            "state": self.status.as_str(),
            "message": self.message,
            "host": self.host,
            "tags": self.tags,
            "timestamp": self.timestamp,
            "last_seen": self.last_seen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::event::{parse, Dog};

    fn owned(line: &[u8]) -> Event {
        let Ok(Dog::Event(e)) = parse(line) else {
            panic!("not an event: {}", String::from_utf8_lossy(line))
        };
        Event::received(&e, 100, None)
    }

    #[test]
    fn dogstatsd_line_round_trips() {
        for line in [
            &b"_e{5,4}:title|text"[..],
            b"_e{9,12}:disk full|sda1\\nat 99%|d:1700000000|h:web1|k:disk|p:low|s:nagios|t:error|#env:prod,role",
            b"_e{3,3}:a|b|c|d|t:success",
        ] {
            let e = owned(line);
            let again = owned(&e.to_dogstatsd());
            assert_eq!(again, e, "{}", String::from_utf8_lossy(&e.to_dogstatsd()));
        }
        let e = owned(b"_e{5,4}:title|text");
        assert_eq!(e.to_dogstatsd(), b"_e{5,4}:title|text|d:100");
        assert_eq!(owned(b"_e{1,4}:x|a\\nb").text, "a\nb");
    }

    #[test]
    fn json_forms() {
        let e = owned(b"_e{1,1}:x|y|h:web1|t:warning|#a:b");
        let j = e.to_json();
        assert_eq!(j["alert_type"], "warning");
        assert_eq!(j["host"], "web1");
        assert_eq!(j["tags"][0], "a:b");
        assert_eq!(j["origin"], "received");
        let Ok(Dog::Check(c)) = parse(b"_sc|db.up|2|m:lag\\nhigh") else {
            panic!()
        };
        let r = CheckRecord::new(&c, b"db.up", 7);
        let j = r.to_json();
        assert_eq!(
            (j["status"].clone(), j["state"].clone()),
            (json!(2), json!("critical"))
        );
        assert_eq!(j["message"], "lag\nhigh");
        assert_eq!(j["timestamp"], 7);
    }
}

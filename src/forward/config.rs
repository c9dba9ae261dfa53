//! `[forward]` (the agent role) and `[aggregator]` (the global tier's
//! role): their tables ([`RawForward`], [`RawAggregator`], whose `///` docs
//! are the user docs) and validated settings ([`ForwardConfig`],
//! [`AggregatorConfig`]).
//!
//! Imports, besides `forward` itself: `check`, `config`, `metric`, `spool`,
//! `tls`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::{
    bad, check_address, check_nonzero, parse_listen_addr, relative_to, AllowList, Bad,
};
use crate::config::listen::RawListen;
use crate::metric::MetricType;
use crate::tls::{RawTlsClient, TlsClient, TlsServer};

/// The default aggregator port.
pub const DEFAULT_PORT: u16 = 8190;

/// `[forward]`: this statsyard is an agent: at each flush it sends the
/// mergeable state of the forwarded series to the aggregators, each series
/// to one aggregator chosen by its key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawForward {
    /// The aggregators: `host:port` each, or `dns:name:port`, whose every
    /// A/AAAA answer is an aggregator (a Kubernetes headless Service).
    pub destinations: Vec<String>,
    /// How often `dns:` destinations are resolved again.
    #[serde(with = "humantime_serde")]
    pub resolve_interval: Duration,
    /// Types forwarded (`counter`, `gauge`, `timer`, `histogram`,
    /// `distribution`, `set`); the others are flushed here, to this
    /// statsyard's own sinks, as a per-host statsd would.
    pub types: Vec<String>,
    /// A series tagged `<scope_tag>:local` stays here and one tagged
    /// `<scope_tag>:global` is forwarded, whatever `types` says; the tag
    /// is removed from the series either way.
    pub scope_tag: String,
    /// What happens to an aggregator's share while it is down (its
    /// requests fail): `reroute` (to the next aggregator for each series)
    /// or `spool` (kept, on disk past `buffer_bytes`, and sent in order
    /// when it is back).
    pub on_down: String,
    /// Directory of the per-aggregator disk spools (relative to this
    /// file's directory); needed by `on_down = "spool"`. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<String>,
    /// Bytes each aggregator's spool keeps at most (1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_bytes: Option<u64>,
    /// Bytes of messages held in memory per aggregator while it is slow or
    /// down; past this the oldest go to the spool, or are dropped (counted).
    pub buffer_bytes: usize,
    /// How long one request (connect, send, answer) may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Bytes of one message before compression, at most: an interval's
    /// state for one aggregator is cut into parts under it.
    pub max_message_bytes: usize,
    /// `snappy` or `none`.
    pub compression: String,
    /// TLS to the aggregators; unset: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTlsClient>,
}

/// Every type, in the order `types` lists them by default.
pub const TYPES: [(&str, MetricType); 6] = [
    ("counter", MetricType::Counter),
    ("gauge", MetricType::Gauge),
    ("timer", MetricType::Timer),
    ("histogram", MetricType::Histogram),
    ("distribution", MetricType::Distribution),
    ("set", MetricType::Set),
];

impl Default for RawForward {
    fn default() -> Self {
        RawForward {
            destinations: Vec::new(),
            resolve_interval: Duration::from_secs(30),
            types: TYPES.iter().map(|(n, _)| n.to_string()).collect(),
            scope_tag: "statsyard_scope".into(),
            on_down: "reroute".into(),
            spool_dir: None,
            spool_bytes: None,
            buffer_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_message_bytes: 4 << 20,
            compression: "snappy".into(),
            tls: None,
        }
    }
}

/// `[aggregator]`: this statsyard takes agents' forwarded state, merges it
/// with what its own listeners get, and flushes it to its sinks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAggregator {
    /// Where agents POST their state: `IP:port`, or `{ address, tls }`
    /// (with `client_ca_file`, agents must present a certificate: mutual TLS).
    pub listen: RawListen,
    /// Networks whose agents may connect; `[]` allows every one.
    pub allow: Vec<String>,
    /// How long after an interval's end it is flushed at the latest,
    /// waiting for agents' state (an interval every known agent has sent
    /// is flushed at once). Unset: 2 s, or a fifth of the interval if that
    /// is shorter.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub grace: Option<Duration>,
    /// Bytes of one message, compressed or not, at most; larger ones are
    /// refused (413) and counted. Keep it at least the agents' own.
    pub max_message_bytes: usize,
    /// Where accepted messages are journalled before they are
    /// acknowledged, replayed at start and deleted once flushed (relative
    /// to this file's directory); `""`: none, and a crash loses what was
    /// acknowledged but not yet flushed.
    pub journal_dir: String,
}

impl Default for RawAggregator {
    fn default() -> Self {
        RawAggregator {
            listen: RawListen::Address(format!("0.0.0.0:{DEFAULT_PORT}")),
            allow: Vec::new(),
            grace: None,
            max_message_bytes: 8 << 20,
            journal_dir: String::new(),
        }
    }
}

/// A `[forward] destinations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `host:port`: one aggregator (a name is resolved at each connection).
    Fixed(String),
    /// `dns:name:port`: every address the name resolves to.
    Dns { name: String, port: u16 },
}

/// What happens to a down aggregator's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    Reroute,
    Spool,
}

/// `[forward]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    pub destinations: Vec<Destination>,
    pub resolve_interval: Duration,
    /// The forwarded types.
    pub types: Vec<MetricType>,
    pub scope_tag: String,
    pub on_down: OnDown,
    /// The spools' directory and each one's bound.
    pub spool: Option<(PathBuf, u64)>,
    pub buffer_bytes: usize,
    pub timeout: Duration,
    pub max_message_bytes: usize,
    pub snappy: bool,
    pub tls: Option<TlsClient>,
}

/// `[aggregator]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatorConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsServer>,
    pub allow: AllowList,
    pub grace: Duration,
    pub max_message_bytes: usize,
    pub journal_dir: Option<PathBuf>,
}

/// The smallest `max_message_bytes`: a key may be 64 KiB.
const MIN_MESSAGE_BYTES: usize = 128 << 10;

impl ForwardConfig {
    /// Check `raw`; `file` is the config file (relative paths).
    pub fn validate(raw: &RawForward, file: &str) -> Result<ForwardConfig, Bad> {
        if raw.destinations.is_empty() {
            return Err(bad("forward.destinations", "list at least one aggregator"));
        }
        let mut destinations = Vec::new();
        for (i, d) in raw.destinations.iter().enumerate() {
            let key = format!("forward.destinations[{i}]");
            let dest = match d.strip_prefix("dns:") {
                Some(rest) => {
                    let (name, port) = rest
                        .rsplit_once(':')
                        .ok_or_else(|| bad(&key, format!("{d:?}: dns:name:port")))?;
                    let port: u16 = port
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad(&key, format!("{d:?}: not a port")))?;
                    check_address(&format!("{name}:{port}")).map_err(|r| bad(&key, r))?;
                    Destination::Dns {
                        name: name.to_string(),
                        port,
                    }
                }
                None => {
                    check_address(d).map_err(|r| bad(&key, r))?;
                    Destination::Fixed(d.clone())
                }
            };
            if destinations.contains(&dest) {
                return Err(bad(key, format!("{d:?} is listed twice")));
            }
            destinations.push(dest);
        }
        check_nonzero(raw.resolve_interval).map_err(|r| bad("forward.resolve_interval", r))?;
        check_nonzero(raw.timeout).map_err(|r| bad("forward.timeout", r))?;
        let mut types = Vec::new();
        for (i, t) in raw.types.iter().enumerate() {
            let ty = TYPES
                .iter()
                .find(|(n, _)| n == t)
                .map(|(_, ty)| *ty)
                .ok_or_else(|| {
                    bad(
                        format!("forward.types[{i}]"),
                        format!(
                            "{t:?}: one of counter, gauge, timer, histogram, distribution, set"
                        ),
                    )
                })?;
            if types.contains(&ty) {
                return Err(bad(
                    format!("forward.types[{i}]"),
                    format!("{t:?} is listed twice"),
                ));
            }
            types.push(ty);
        }
        if raw.scope_tag.is_empty()
            || !raw
                .scope_tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(bad(
                "forward.scope_tag",
                "a tag name: letters, digits, `_`, `-` and `.`",
            ));
        }
        let on_down = match raw.on_down.as_str() {
            "reroute" => OnDown::Reroute,
            "spool" => OnDown::Spool,
            o => {
                return Err(bad(
                    "forward.on_down",
                    format!("{o:?}: \"reroute\" or \"spool\""),
                ))
            }
        };
        let spool = match (&raw.spool_dir, raw.spool_bytes) {
            (Some(d), _) if d.is_empty() => {
                return Err(bad(
                    "forward.spool_dir",
                    "must not be empty (leave it out for no spool)",
                ))
            }
            (Some(d), b) => {
                let b = b.unwrap_or(crate::spool::DEFAULT_MAX_BYTES);
                if b < 64 * 1024 {
                    return Err(bad("forward.spool_bytes", "must be at least 65536"));
                }
                Some((relative_to(file, d), b))
            }
            (None, Some(_)) => return Err(bad("forward.spool_bytes", "needs `spool_dir` too")),
            (None, None) => None,
        };
        if on_down == OnDown::Spool && spool.is_none() {
            return Err(bad("forward.on_down", "\"spool\" needs forward.spool_dir"));
        }
        if raw.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(bad(
                "forward.max_message_bytes",
                format!("must be at least {MIN_MESSAGE_BYTES}"),
            ));
        }
        if raw.buffer_bytes < raw.max_message_bytes {
            return Err(bad(
                "forward.buffer_bytes",
                "must be at least max_message_bytes",
            ));
        }
        let snappy = match raw.compression.as_str() {
            "snappy" => true,
            "none" => false,
            o => {
                return Err(bad(
                    "forward.compression",
                    format!("{o:?}: \"snappy\" or \"none\""),
                ))
            }
        };
        let tls = raw
            .tls
            .as_ref()
            .map(|t| TlsClient::load(t, file))
            .transpose()
            .map_err(|r| bad("forward.tls", r))?;
        Ok(ForwardConfig {
            destinations,
            resolve_interval: raw.resolve_interval,
            types,
            scope_tag: raw.scope_tag.clone(),
            on_down,
            spool,
            buffer_bytes: raw.buffer_bytes,
            timeout: raw.timeout,
            max_message_bytes: raw.max_message_bytes,
            snappy,
            tls,
        })
    }
}

impl AggregatorConfig {
    /// Check `raw`; `interval` is the flush interval.
    pub fn validate(
        raw: &RawAggregator,
        file: &str,
        interval: Duration,
    ) -> Result<AggregatorConfig, Bad> {
        let listen =
            parse_listen_addr(raw.listen.address()).map_err(|r| bad("aggregator.listen", r))?;
        let tls = raw
            .listen
            .tls()
            .map(|t| {
                TlsServer::load(
                    relative_to(file, &t.cert_file),
                    relative_to(file, &t.key_file),
                    t.client_ca_file.as_deref().map(|p| relative_to(file, p)),
                    None,
                )
            })
            .transpose()
            .map_err(|r| bad("aggregator.listen.tls", r))?;
        let grace = raw
            .grace
            .unwrap_or_else(|| Duration::from_secs(2).min(interval / 5));
        if grace > Duration::from_secs(3600) {
            return Err(bad("aggregator.grace", "at most 1h"));
        }
        if raw.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(bad(
                "aggregator.max_message_bytes",
                format!("must be at least {MIN_MESSAGE_BYTES}"),
            ));
        }
        Ok(AggregatorConfig {
            listen,
            tls,
            allow: AllowList::parse(&raw.allow, "aggregator.allow")?,
            grace,
            max_message_bytes: raw.max_message_bytes,
            journal_dir: (!raw.journal_dir.is_empty()).then(|| relative_to(file, &raw.journal_dir)),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::toml::from_str;

    #[test]
    fn defaults_and_checks() {
        let c = from_str(
            "[forward]\ndestinations = [\"10.0.0.1:8190\", \"dns:agg.svc:8190\"]\n[aggregator]\n",
            "t.toml",
        )
        .unwrap();
        let f = c.forward.unwrap();
        assert_eq!(f.types.len(), 6);
        assert_eq!(f.on_down, super::OnDown::Reroute);
        assert!(f.snappy);
        let a = c.aggregator.unwrap();
        assert_eq!(a.grace, std::time::Duration::from_secs(2));
        assert_eq!(a.listen.port(), 8190);
        assert_eq!(c.timing.grace, a.grace);
        crate::config::assert_invalid(
            from_str,
            "t.toml",
            &[
                ("[forward]\n", "forward.destinations", "at least one"),
                (
                    "[forward]\ndestinations = [\"dns:x\"]",
                    "forward.destinations[0]",
                    "dns:name:port",
                ),
                (
                    "[forward]\ndestinations = [\"a:1\", \"a:1\"]",
                    "forward.destinations[1]",
                    "twice",
                ),
                (
                    "[forward]\ndestinations = [\"a:1\"]\ntypes = [\"meter\"]",
                    "forward.types[0]",
                    "one of",
                ),
                (
                    "[forward]\ndestinations = [\"a:1\"]\non_down = \"spool\"",
                    "forward.on_down",
                    "spool_dir",
                ),
                (
                    "[forward]\ndestinations = [\"a:1\"]\nmax_message_bytes = 10",
                    "forward.max_message_bytes",
                    "at least",
                ),
                (
                    "[forward]\ndestinations = [\"a:1\"]\n[flush]\nalign = false",
                    "flush.align",
                    "forward",
                ),
                (
                    "[aggregator]\nlisten = \"x\"",
                    "aggregator.listen",
                    "IP:port",
                ),
            ],
        );
    }
}

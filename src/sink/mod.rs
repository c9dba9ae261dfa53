//! Sinks: where flushes (and, for the repeater, raw packets) go.
//!
//! Every sink runs as its own task fed by its own bounded queue, so a slow or
//! dead destination never holds up the flusher, ingest, or another sink. The
//! queue closing is the shutdown signal: a sink then delivers what it still
//! holds, within its shutdown deadline, and returns.

pub mod console;
pub mod graphite;
pub mod repeater;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::flush::naming::Naming;
use crate::flush::FlushBatch;
use crate::stats::SinkStats;

/// What a sink's queue carries.
#[derive(Debug, Clone)]
pub enum SinkMsg {
    /// One flush's results.
    Flush(Arc<FlushBatch>),
    /// One received statsd packet, exactly as it arrived (repeater only).
    Raw(Bytes),
}

/// A boxed future, for trait objects.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One destination. Built from a [`SinkSpec`], then `run` until its queue closes.
pub trait Sink: Send {
    /// The configured name, used in logs and self-metrics.
    fn name(&self) -> &str;
    /// Whether this sink wants [`SinkMsg::Raw`] packets rather than flushes.
    fn wants_raw(&self) -> bool {
        false
    }
    /// Consume messages until the queue closes, then deliver what is held
    /// (bounded by the shutdown deadline) and return.
    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture;
}

/// A configured sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Unique among sinks; defaults to the type (`graphite`, `graphite-2`, ...).
    pub name: String,
    /// Capacity of the sink's queue, in messages. A full queue drops the newest
    /// message and counts it.
    pub queue: usize,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Console(console::ConsoleConfig),
    Graphite(graphite::GraphiteConfig),
    Repeater(repeater::RepeaterConfig),
    /// Flushed lines go through the relay's rules and clusters
    /// ([`crate::relay::sink::RelaySink`], built by the server, which owns the relay).
    Relay,
}

/// Errors building a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A destination address that cannot be used.
    #[error("sink {sink}: bad address {addr:?}: {reason}")]
    BadAddress {
        sink: String,
        addr: String,
        reason: String,
    },
    /// A `relay` sink without a relay to route through.
    #[error("sink {sink}: a relay sink needs a [relay] section")]
    NoRelay { sink: String },
    /// An I/O error setting the sink up.
    #[error("sink {sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
}

/// A destination address: `host:port`, an IPv6 host in brackets, port 1-65535.
/// Host names are resolved by the sink when it connects.
pub fn check_address(s: &str) -> Result<(), String> {
    let usage = "(expected host:port, e.g. \"graphite.example.com:2003\" or \"[::1]:2003\")";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port {usage}"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{s:?}: {port:?} is not a port number 1-65535 {usage}"
            ))
        }
    }
    if let Some(inner) = host.strip_prefix('[') {
        match inner.strip_suffix(']') {
            Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            _ => Err(format!("{s:?}: bad IPv6 address in brackets {usage}")),
        }
    } else if host.is_empty() {
        Err(format!("{s:?} has no host {usage}"))
    } else if host.contains(':') {
        Err(format!("{s:?}: write an IPv6 address in brackets {usage}"))
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err(format!("{s:?}: {host:?} is not a host name {usage}"))
    }
}

/// Letters, digits, '-' and '_' in non-empty dot-separated labels of at most
/// 63 bytes, 253 in all; one trailing dot allowed.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    host.len() <= 253 && name.split('.').all(label_ok)
}

/// Build the sink a spec describes.
pub fn build(
    spec: &SinkSpec,
    naming: &Naming,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
) -> Result<Box<dyn Sink>, SinkError> {
    let bad = |addr: &str, reason: String| SinkError::BadAddress {
        sink: spec.name.clone(),
        addr: addr.to_string(),
        reason,
    };
    let sink: Box<dyn Sink> = match &spec.kind {
        SinkKind::Console(c) => Box::new(console::ConsoleSink::new(
            spec.name.clone(),
            c.clone(),
            naming.clone(),
            stats,
        )),
        SinkKind::Graphite(g) => {
            check_address(&g.address).map_err(|r| bad(&g.address, r))?;
            Box::new(graphite::GraphiteSink::new(
                spec.name.clone(),
                g.clone(),
                naming.clone(),
                stats,
                shutdown_timeout,
            ))
        }
        SinkKind::Repeater(r) => {
            for d in &r.destinations {
                check_address(d).map_err(|why| bad(d, why))?;
            }
            Box::new(repeater::RepeaterSink::new(
                spec.name.clone(),
                r.clone(),
                stats,
                shutdown_timeout,
            ))
        }
        SinkKind::Relay => {
            return Err(SinkError::NoRelay {
                sink: spec.name.clone(),
            })
        }
    };
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: SinkKind) -> SinkSpec {
        SinkSpec {
            name: "s".into(),
            queue: 16,
            kind,
        }
    }

    fn graphite(addr: &str) -> SinkKind {
        SinkKind::Graphite(graphite::GraphiteConfig {
            address: addr.into(),
            protocol: graphite::GraphiteProtocol::Text,
            buffer_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            spool: None,
        })
    }

    fn repeater(dests: &[&str]) -> SinkKind {
        SinkKind::Repeater(repeater::RepeaterConfig {
            destinations: dests.iter().map(|d| d.to_string()).collect(),
            protocol: repeater::RepeaterProtocol::Udp,
            backoff_max: Duration::from_secs(10),
        })
    }

    #[test]
    fn builds_each_kind_and_checks_addresses() {
        let console = SinkKind::Console(console::ConsoleConfig {
            format: console::ConsoleFormat::Text,
        });
        // (kind, Ok(wants_raw) or Err(bad address))
        let cases: Vec<(SinkKind, Result<bool, &str>)> = vec![
            (console, Ok(false)),
            (graphite("localhost:2003"), Ok(false)),
            (graphite("[::1]:2004"), Ok(false)),
            (graphite("localhost"), Err("localhost")),
            (repeater(&["127.0.0.1:8125", "statsd-2:8125"]), Ok(true)),
            (
                repeater(&["127.0.0.1:8125", "statsd 2:8125"]),
                Err("statsd 2:8125"),
            ),
        ];
        for (kind, want) in cases {
            let got = build(
                &spec(kind.clone()),
                &Naming::default(),
                Arc::new(SinkStats::default()),
                Duration::from_secs(1),
            );
            match (got, want) {
                (Ok(s), Ok(raw)) => {
                    assert_eq!(s.name(), "s");
                    assert_eq!(s.wants_raw(), raw, "{kind:?}");
                }
                (Err(SinkError::BadAddress { sink, addr, .. }), Err(bad)) => {
                    assert_eq!(sink, "s");
                    assert_eq!(addr, bad);
                }
                (got, want) => panic!("{kind:?}: got {:?}, want {want:?}", got.err()),
            }
        }
    }
}

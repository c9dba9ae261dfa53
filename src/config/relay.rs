//! `[relay]` validated into [`RelayConfig`] (the `statsyard relay` flags
//! build the same thing).
//!
//! Imports, besides `config` itself: `check`, `parse`, `relay`, `sys`, `tls`.

use std::net::SocketAddr;

use super::raw::RawRelay;
use crate::parse::carbon::{CarbonLineOptions, NameCheck};
use crate::relay::config::{
    CarbonInputOptions, ClusterConfig, ClusterMethod, RelayConfig, RuleAction, RuleConfig,
};
use crate::relay::destination::{OnFull, Protocol, Tuning};
use crate::relay::hashing::{Destination, Ring};

/// A validation failure: the key below `relay.` and the reason.
pub type Bad = (String, String);

/// Validate `[relay]`. `listen` parses a listen address.
pub fn validate(
    r: &RawRelay,
    file: &str,
    listen: impl Fn(&[String], &str) -> Result<Vec<SocketAddr>, Bad>,
) -> Result<RelayConfig, Bad> {
    let b = |k: &str, why: String| (format!("relay.{k}"), why);
    let addrs = |l: &[crate::config::raw::RawListen]| -> Vec<String> {
        l.iter().map(|e| e.address().to_string()).collect()
    };
    let line_tcp = listen(&addrs(&r.line_tcp), "relay.line_tcp")?;
    let line_udp = listen(&r.line_udp, "relay.line_udp")?;
    let pickle = listen(&addrs(&r.pickle), "relay.pickle")?;
    let allow =
        crate::check::AllowList::parse(&r.allow, "relay.allow").map_err(|e| (e.key, e.reason))?;
    for (k, v) in [
        ("max_line_length", r.max_line_length),
        ("max_frame_bytes", r.max_frame_bytes),
        ("max_connections", r.max_connections),
        ("queue", r.queue),
        ("queue_bytes", r.queue_bytes),
        ("batch", r.batch),
    ] {
        if v == 0 {
            return Err(b(k, "must be at least 1".into()));
        }
    }
    if r.connect_timeout.is_zero() {
        return Err(b("connect_timeout", "must be more than 0s".into()));
    }
    if r.backoff_min.is_zero() || r.backoff_max < r.backoff_min {
        return Err(b(
            "backoff_max",
            "backoff_min must be more than 0s and backoff_max at least backoff_min".into(),
        ));
    }
    let on_full = match r.on_full.as_str() {
        "block" => OnFull::Block,
        "drop" => OnFull::Drop,
        other => return Err(b("on_full", format!("{other:?} is not `block` or `drop`"))),
    };
    if r.block_timeout.is_zero() {
        return Err(b("block_timeout", "must be more than 0s".into()));
    }
    let name_check = match r.name_check.as_str() {
        "off" => NameCheck::Off,
        "strict" => NameCheck::Strict,
        other => {
            return Err(b(
                "name_check",
                format!("{other:?} is not `off` or `strict`"),
            ))
        }
    };
    let mut clusters: Vec<ClusterConfig> = Vec::new();
    for (i, c) in r.cluster.iter().enumerate() {
        let k = |f: &str| format!("cluster[{i}].{f}");
        if c.name.is_empty() || c.name == "blackhole" {
            return Err(b(
                &k("name"),
                "must be non-empty and not `blackhole`".into(),
            ));
        }
        if clusters.iter().any(|x| x.name == c.name) {
            return Err(b(&k("name"), format!("{:?} is used twice", c.name)));
        }
        let method = ClusterMethod::parse(&c.method).map_err(|e| b(&k("method"), e))?;
        if c.destinations.is_empty() {
            return Err(b(
                &k("destinations"),
                "needs at least one destination".into(),
            ));
        }
        let mut dests = Vec::new();
        for (j, d) in c.destinations.iter().enumerate() {
            dests.push(
                Destination::parse(d.address())
                    .map_err(|e| b(&format!("cluster[{i}].destinations[{j}]"), e.to_string()))?,
            );
        }
        if c.replication == 0 {
            return Err(b(&k("replication"), "must be at least 1".into()));
        }
        if let ClusterMethod::Hash(m) = method {
            Ring::new(m, &dests, c.replication, c.diverse_replicas)
                .map_err(|e| b(&k("destinations"), e.to_string()))?;
        }
        let protocol = parse_protocol(&c.protocol).map_err(|e| b(&k("protocol"), e))?;
        let mut tls = Vec::new();
        for (j, d) in c.destinations.iter().enumerate() {
            let t = match d.tls().or(c.tls.as_ref()) {
                None => None,
                Some(raw) => {
                    let key = match d.tls() {
                        Some(_) => format!("cluster[{i}].destinations[{j}].tls"),
                        None => k("tls"),
                    };
                    Some(crate::tls::TlsClient::load(raw, file).map_err(|e| b(&key, e))?)
                }
            };
            tls.push(t);
        }
        let mut protocols = Vec::new();
        for (j, d) in c.destinations.iter().enumerate() {
            protocols.push(match d.protocol() {
                None => protocol,
                Some(p) => parse_protocol(p)
                    .map_err(|e| b(&format!("cluster[{i}].destinations[{j}].protocol"), e))?,
            });
        }
        // Relative to the config file: resolved by the caller, which knows it.
        let spool = crate::check::spool_config(
            "",
            c.spool_dir.as_deref(),
            c.spool_bytes,
            &[&c.name],
            &format!("relay.{}", k("spool_dir")),
            &format!("relay.{}", k("spool_bytes")),
        )
        .map_err(|e| b(e.key.trim_start_matches("relay."), e.reason))?;
        clusters.push(ClusterConfig {
            name: c.name.clone(),
            spool,
            method,
            destinations: dests,
            protocols,
            tls,
            replication: c.replication,
            diverse: c.diverse_replicas,
            protocol,
        });
    }
    if clusters.is_empty() {
        return Err(b("cluster", "the relay needs at least one cluster".into()));
    }
    let mut rules = Vec::new();
    for (i, rr) in r.rule.iter().enumerate() {
        let k = |f: &str| format!("rule[{i}].{f}");
        regex::bytes::Regex::new(&rr.pattern).map_err(|e| b(&k("match"), e.to_string()))?;
        if rr.continue_ && rr.stop {
            return Err(b(
                &k("stop"),
                "`continue` and `stop` exclude each other".into(),
            ));
        }
        let action = match (&rr.send_to, &rr.rewrite) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(b(
                    &k("send_to"),
                    "a rule has exactly one of `send_to` and `rewrite`".into(),
                ))
            }
            (None, Some(rw)) => RuleAction::Rewrite(rw.clone()),
            (Some(to), None) => {
                if to.iter().any(|t| t == "blackhole") {
                    if to.len() > 1 {
                        return Err(b(&k("send_to"), "`blackhole` stands alone".into()));
                    }
                    RuleAction::Blackhole
                } else if to.is_empty() {
                    return Err(b(&k("send_to"), "needs at least one cluster".into()));
                } else {
                    let mut idx = Vec::new();
                    for t in to {
                        let c = clusters.iter().position(|c| &c.name == t).ok_or_else(|| {
                            b(&k("send_to"), format!("no cluster is named {t:?}"))
                        })?;
                        idx.push(c);
                    }
                    RuleAction::Send(idx)
                }
            }
        };
        rules.push(RuleConfig {
            pattern: rr.pattern.clone(),
            action,
            continue_: rr.continue_,
        });
    }
    Ok(RelayConfig {
        line_tcp,
        line_udp,
        pickle,
        allow,
        line: CarbonInputOptions {
            line: CarbonLineOptions {
                minus_one_is_now: r.minus_one_is_now,
                allow_missing_timestamp: r.allow_missing_timestamp,
                allow_inf: r.allow_inf,
                max_line_length: r.max_line_length,
                name_check,
            },
            max_connections: r.max_connections,
            idle_timeout: (!r.idle_timeout.is_zero()).then_some(r.idle_timeout),
        },
        max_frame_bytes: r.max_frame_bytes,
        normalize_tags: r.normalize_tags,
        tuning: Tuning {
            queue: r.queue,
            queue_bytes: r.queue_bytes,
            batch: r.batch,
            connect_timeout: r.connect_timeout,
            backoff_min: r.backoff_min,
            backoff_max: r.backoff_max,
            on_full,
            block_timeout: r.block_timeout,
        },
        stats_prefix: r
            .stats_prefix
            .replace("{host}", &crate::sys::short_hostname()),
        stats_interval: (!r.stats_interval.is_zero()).then_some(r.stats_interval),
        clusters,
        rules,
    })
}

/// `plain` (also `text`, `line`) or `pickle`.
fn parse_protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "plain" | "text" | "line" => Ok(Protocol::Plain),
        "pickle" => Ok(Protocol::Pickle),
        p => Err(format!("{p:?} is not `plain` or `pickle`")),
    }
}

//! The relay's validated settings (built from `[relay]` by
//! `crate::config::relay`, or from the `statsyard relay` flags): listeners,
//! line checks, clusters and rules. Pure data; the router, the listeners and
//! the destinations read it.
//!
//! Imports, besides `relay` itself: `check`, `parse`, `spool`, `tls`.

use std::net::SocketAddr;
use std::time::Duration;

use super::destination::{Protocol, Tuning};
use super::hashing::{Destination, Method};
use crate::parse::carbon::CarbonLineOptions;
use crate::spool::SpoolConfig;

/// A validated relay.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Carbon plaintext over TCP.
    pub line_tcp: Vec<SocketAddr>,
    /// Carbon plaintext over UDP.
    pub line_udp: Vec<SocketAddr>,
    /// Carbon pickle over TCP.
    pub pickle: Vec<SocketAddr>,
    /// Networks whose clients the carbon listeners serve.
    pub allow: crate::check::AllowList,
    /// Line checks (also applied to pickled points; `max_line_length`
    /// included) and the TCP listeners' `max_connections` and `idle_timeout`.
    pub line: CarbonInputOptions,
    pub max_frame_bytes: usize,
    pub normalize_tags: bool,
    pub tuning: Tuning,
    /// With `{host}` already replaced.
    pub stats_prefix: String,
    /// `None`: the relay does not send its own metrics.
    pub stats_interval: Option<Duration>,
    pub clusters: Vec<ClusterConfig>,
    pub rules: Vec<RuleConfig>,
}

/// A destination cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub method: ClusterMethod,
    pub destinations: Vec<Destination>,
    /// Each destination's protocol: its own, or the cluster's.
    pub protocols: Vec<Protocol>,
    /// Each destination's TLS: its own, or the cluster's; `None`: plaintext.
    pub tls: Vec<Option<crate::tls::TlsClient>>,
    pub replication: usize,
    pub diverse: bool,
    pub protocol: Protocol,
    /// The cluster's spool directory (`spool_dir/<cluster>`); each
    /// destination uses a subdirectory of it. `None`: no spool.
    pub spool: Option<SpoolConfig>,
}

/// How a cluster chooses destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMethod {
    /// Consistent hashing.
    Hash(Method),
    /// Every destination gets every point.
    Forward,
    /// One destination per name (hash-sticky), another while it is down.
    AnyOf,
    /// The first destination that is up, in the order listed.
    Failover,
}

impl ClusterMethod {
    /// From a config name.
    pub fn parse(s: &str) -> Result<ClusterMethod, String> {
        Ok(match s {
            "forward" => ClusterMethod::Forward,
            "any_of" => ClusterMethod::AnyOf,
            "failover" => ClusterMethod::Failover,
            m => ClusterMethod::Hash(m.parse().map_err(|_| {
                format!(
                    "unknown method {m:?} (expected carbon_ch, fnv1a_ch, jump_fnv1a_ch, \
                     carbon_c_relay_ch, forward, any_of or failover)"
                )
            })?),
        })
    }
}

/// A rule, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// A regular expression (checked to compile).
    pub pattern: String,
    pub action: RuleAction,
    /// Evaluate the next rules after a match.
    pub continue_: bool,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleAction {
    /// Send to these clusters (indices into [`RelayConfig::clusters`]).
    Send(Vec<usize>),
    /// Drop, counted as blackholed.
    Blackhole,
    /// Replace the name (capture groups allowed), then go on with the next rule.
    Rewrite(String),
}

/// What the relay's listeners check: the line checks, and the TCP
/// connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CarbonInputOptions {
    /// Line checks (also applied to pickled points), `max_line_length` included.
    pub line: CarbonLineOptions,
    /// Most open line and pickle TCP connections together; 0 is no limit.
    pub max_connections: usize,
    /// Close a TCP connection that sent nothing for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
}

//! Configuration: a raw serde layer ([`raw`]) read from TOML ([`toml`]) or
//! from the reference statsd's `config.js` ([`etsy`]), validated into
//! [`Config`]. Everything downstream sees only `Config`.
//!
//! Each output kind validates its own `[[sink]]` table
//! ([`crate::sink::SinkKind`]), the Prometheus exporter its `[prometheus]`
//! section; [`check`] holds the checks they all share. Validated types of a
//! component are the component's own (`crate::relay::config`,
//! `crate::sink::*`): this module imports them, they never import it (but
//! for [`check`] and [`listen`], leaves).
//!
//! A bad config fails at start naming the file, the key and the reason.
//!
//! Owns the config file formats and their validation into [`Config`]. Imports:
//! the validated types of each component (listeners, outputs, relay,
//! forwarding, host, liveness, events, TLS) and the pure parts they need
//! ([`crate::flush::Timing`], parse options); never the runtime, the flusher or
//! a listener's running parts.

pub mod diff;
pub mod etsy;
pub mod listen;
pub mod raw;
pub mod relay;
pub mod toml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::aggregate::AggregateOptions;
use crate::flush::compute::ComputeOptions;
use crate::flush::naming::Naming;
pub use crate::listener::stream::Framing;
use crate::parse::ParseOptions;
use crate::sink::prometheus::PrometheusConfig;
use crate::sink::SinkSpec;

/// The embedded default config, used when no file is given.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from: a path, or `<embedded default>`.
    pub source: String,
    pub listen: ListenConfig,
    pub parse: ParseOptions,
    pub aggregate: AggregateOptions,
    /// Also holds the flush interval.
    pub compute: ComputeOptions,
    /// When flushes happen (`[flush] align`, the aggregator's `grace`).
    pub timing: crate::flush::Timing,
    pub naming: Naming,
    pub sinks: Vec<SinkSpec>,
    /// How long shutdown may take to deliver the final flush.
    pub shutdown_timeout: Duration,
    /// Add statsyard's own counters to every flush (`flush.self_metrics`).
    pub self_metrics: bool,
    pub log: LogConfig,
    /// The HTTP server's address; `None` when it is disabled.
    pub http: Option<SocketAddr>,
    /// The admin console's address; `None` when it is disabled.
    pub admin: Option<SocketAddr>,
    /// TLS of the TCP listeners that have it (statsd, carbon line and pickle).
    pub tls: Vec<(diff::ListenAddr, crate::tls::TlsServer)>,
    /// HTTPS, basic auth and headers of the HTTP server (`web_config_file`).
    pub web: Option<crate::web_config::WebConfig>,
    /// Networks whose clients the HTTP server serves.
    pub http_allow: crate::check::AllowList,
    /// Networks whose clients the admin console serves.
    pub admin_allow: crate::check::AllowList,
    /// The `health` state at start (`[admin] health`, config.js `healthStatus`).
    pub health_up: bool,
    /// The token mutating admin commands and `POST /-/reload` require
    /// (`[admin] token` or `token_file`); `None` requires none.
    pub admin_token: Option<String>,
    /// Gauges (and counters) saved at shutdown, restored at start (`[flush] state_file`).
    pub state: Option<StateConfig>,
    /// What `/metrics` exports.
    pub prometheus: PrometheusConfig,
    /// The carbon relay (`[relay]`, or `statsyard relay` flags); `None` runs none.
    pub relay: Option<crate::relay::config::RelayConfig>,
    /// Host statistics (`[host]`); `None` when off.
    pub host: Option<crate::host::HostConfig>,
    /// Going dark (`[liveness]`); `None` when off.
    pub liveness: Option<crate::liveness::LivenessConfig>,
    /// `[events]`.
    pub events: crate::events::EventsConfig,
    /// The agent role (`[forward]`); `None` when off.
    pub forward: Option<crate::forward::ForwardConfig>,
    /// The aggregator role (`[aggregator]`); `None` when off.
    pub aggregator: Option<crate::forward::AggregatorConfig>,
    /// Things the user should know that are not errors (keys of a `config.js`
    /// that statsyard does not implement, ...): logged once at start.
    pub warnings: Vec<String>,
}

/// `[flush] state_file` and `persist_counters`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// The state file (relative paths are taken from the config file's directory).
    pub path: PathBuf,
    /// Also carry the last interval's counters over the restart.
    pub counters: bool,
}

/// statsd listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub unix: Vec<UnixListen>,
    /// Longest accepted TCP/unix line, in bytes; longer ones are dropped and counted.
    pub max_line_length: usize,
    /// SO_RCVBUF for UDP sockets; `None` keeps the kernel default.
    pub udp_recv_buffer: Option<usize>,
    /// Receive threads per UDP address, each on its own SO_REUSEPORT socket.
    pub udp_threads: usize,
    /// Datagrams read per `recvmmsg` call.
    pub udp_batch: usize,
    /// Open stream connections at most; more are refused and counted.
    pub max_connections: usize,
    /// Close a stream connection idle this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// Networks whose clients the UDP and TCP listeners serve.
    pub allow: crate::check::AllowList,
}

/// A unix socket listener.
#[derive(Debug, Clone, PartialEq)]
pub struct UnixListen {
    pub path: PathBuf,
    /// File mode applied after binding (the reference's `socket_mod`).
    pub mode: Option<u32>,
    /// A stream socket and its framing, or a datagram socket.
    pub kind: UnixKind,
}

/// What kind of unix socket a listener binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixKind {
    /// Connections, each read with this framing.
    Stream(Framing),
    /// One packet per datagram (DogStatsD's `unixgram`).
    Datagram,
}

/// Logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A `tracing` filter directive: `info`, `debug`, `statsyard=debug,warn`...
    pub level: String,
    pub json: bool,
    /// The reference's `dumpMessages`: log every received line at info.
    pub dump_messages: bool,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML / JavaScript object syntax, or a key has the wrong type.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// A key has a value statsyard cannot use.
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

impl Config {
    /// The embedded default config.
    pub fn embedded() -> Config {
        // The embedded file is checked by a unit test, so this cannot fail.
        toml::from_str(DEFAULT_TOML, "<embedded default>").expect("embedded config is valid")
    }

    /// Load a statsyard TOML file.
    pub fn load_toml(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        toml::from_str(&text, &path.display().to_string())
    }

    /// Load a reference statsd `config.js`.
    pub fn load_statsd_js(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        etsy::from_str(&text, &path.display().to_string())
    }

    /// The flush interval.
    pub fn flush_interval(&self) -> Duration {
        self.compute.interval
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Shared by the TOML and config.js tests: `parse(text, file)` must fail with
/// [`ConfigError::Invalid`] naming `file` and `key`, with `reason` in the
/// message, and display as `file: key `key`: ...`.
#[cfg(test)]
pub(crate) fn assert_invalid(
    parse: fn(&str, &str) -> Result<Config, ConfigError>,
    file: &str,
    cases: &[(&str, &str, &str)],
) {
    for (text, key, reason) in cases {
        let e = parse(text, file).expect_err(text);
        match &e {
            ConfigError::Invalid {
                file: f,
                key: k,
                reason: r,
            } => {
                assert_eq!(f, file);
                assert_eq!(k, key, "{text}: {e}");
                assert!(r.contains(reason), "{text}: {e}");
            }
            other => panic!("{text}: not Invalid: {other}"),
        }
        assert!(
            e.to_string().starts_with(&format!("{file}: key `{key}`: ")),
            "{e}"
        );
    }
}

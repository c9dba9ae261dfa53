//! The serde shape of statsyard.toml; every field's `///` doc is its user doc.
//!
//! These structs only describe the file: every field has its default here (the
//! `Default` impls), and [`super::toml`] validates them into a
//! [`Config`](super::Config). The `config.js` import ([`super::etsy`]) fills the
//! same structs, so both formats share one validation.
//!
//! Imports, besides `config` itself: `aggregate`, `events`, `forward`, `host`,
//! `liveness`, `parse`, `sink`, `tls`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole statsyard.toml.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// The statsd listeners and how received lines are read.
    pub statsd: RawStatsd,
    /// The flush: interval, timer statistics, what is kept between flushes.
    pub flush: RawFlush,
    /// Graphite names, as the reference statsd builds them.
    pub naming: RawNaming,
    /// statsyard's own logging.
    pub log: RawLog,
    /// Where flushes go; zero or more `[[sink]]` tables.
    pub sink: Vec<RawSink>,
    /// The HTTP server: `/metrics`, `/health`, `/api/*`.
    pub http: RawHttp,
    /// The reference statsd's TCP admin console.
    pub admin: RawAdmin,
    /// What `/metrics` exports and how.
    pub prometheus: crate::sink::prometheus::RawPrometheus,
    /// The carbon relay; absent means no relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RawRelay>,
    /// Host statistics (CPU, memory, disk, network, processes...).
    pub host: crate::host::RawHost,
    /// Sources and series that stop sending.
    pub liveness: crate::liveness::RawLiveness,
    /// DogStatsD events and service checks.
    pub events: crate::events::RawEvents,
    /// The agent role: forward series to aggregators; absent means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<crate::forward::RawForward>,
    /// The aggregator role: take agents' forwarded state; absent means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<crate::forward::RawAggregator>,
}

/// `[http]`: the HTTP server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Listen address (`IP:port`).
    pub address: String,
    /// A Prometheus exporter-toolkit web config file (YAML: TLS, basic
    /// auth, response headers), relative to this file; `""` for none.
    pub web_config_file: String,
    /// Networks whose clients may connect (`"10.0.0.0/8"`, `"::1/128"`, or
    /// an address alone); `[]` allows every client.
    pub allow: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            enabled: true,
            address: "127.0.0.1:9102".into(),
            web_config_file: String::new(),
            allow: Vec::new(),
        }
    }
}

/// `[admin]`: the reference statsd's TCP management console.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    /// Serve the console at all.
    pub enabled: bool,
    /// Listen address (`IP:port`).
    pub address: String,
    /// The `health` state at start: `up` or `down` (`/health` follows it).
    pub health: String,
    /// A shared secret that mutating commands (`del*`, `health up|down`,
    /// `reload`, and `POST /-/reload` over HTTP) require; `""` requires none.
    pub token: String,
    /// A file holding the token (its first line), instead of `token`.
    pub token_file: String,
    /// Networks whose clients may connect; `[]` allows every client.
    pub allow: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            enabled: true,
            address: "127.0.0.1:8126".into(),
            health: "up".into(),
            token: String::new(),
            token_file: String::new(),
            allow: Vec::new(),
        }
    }
}

/// `[statsd]`: listeners and ingest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStatsd {
    /// UDP listen addresses (`IP:port`, IPv6 as `[::]:8125`); `[]` disables UDP.
    pub udp: Vec<String>,
    /// TCP listeners: `IP:port`, or `{ address = "IP:port", tls = { ... } }`
    /// for TLS; `[]` disables TCP. Lines end with `\n`.
    pub tcp: Vec<RawListen>,
    /// Networks whose clients may send (UDP) or connect (TCP); `[]` allows
    /// every client. Unix sockets are not checked.
    pub allow: Vec<String>,
    /// Unix socket listeners: stream (newline-delimited or DogStatsD's
    /// length-prefixed framing) or datagram (DogStatsD's `unixgram`).
    pub unix: Vec<RawUnix>,
    /// Longest accepted TCP/unix line, in bytes; longer lines are dropped and counted.
    pub max_line_length: usize,
    /// SO_RCVBUF for UDP sockets, in bytes; 0 keeps the kernel default.
    pub udp_recv_buffer: usize,
    /// Receive threads (each with its own SO_REUSEPORT socket) per UDP address.
    pub udp_threads: usize,
    /// Datagrams read per `recvmmsg` call on each receive thread.
    pub udp_batch: usize,
    /// Most open TCP/unix connections; further ones are refused and counted.
    pub max_connections: usize,
    /// Close a TCP/unix connection idle this long; `"0s"` (the default) never
    /// does, because common statsd TCP clients do not reconnect when closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Rewrite metric names on ingress like the reference's `keyNameSanitize`.
    pub key_name_sanitize: bool,
    /// Samples kept exactly per timer series per interval before switching to a histogram.
    pub timer_exact_samples: usize,
    /// Log every received line (the reference's `dumpMessages`).
    pub dump_messages: bool,
    /// Tag syntaxes read besides DogStatsD `|#k:v` and Graphite `;k=v`:
    /// any of `influxdb` (`name,k=v`), `librato` (`name#k=v`), `signalfx`
    /// (`name[k=v]`).
    pub tag_dialects: Vec<String>,
    /// Most live series (counters, gauges, timers and sets together); a line
    /// that would create one more is dropped and counted. 0: no limit.
    pub max_series: usize,
    /// Per-prefix series limits; the longest matching prefix applies.
    pub series_limits: Vec<RawSeriesLimit>,
    /// Most tags on one line; a line with more is dropped and counted. 0: no limit.
    pub max_tags: usize,
    /// A signed gauge value (`g:-3|g`) changes the current value, as in the
    /// reference statsd; `false` sets it, as DogStatsD clients mean it.
    pub gauge_deltas: bool,
}

pub use super::listen::{RawListen, RawListenTable, RawTls};

/// A `[statsd] series_limits` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeriesLimit {
    /// Compared with the start of the key (`name;tag=v;...`).
    pub prefix: String,
    /// Most live series whose key starts with `prefix`.
    pub max: usize,
}

impl Default for RawStatsd {
    fn default() -> Self {
        RawStatsd {
            udp: vec!["0.0.0.0:8125".into()],
            tcp: vec!["0.0.0.0:8125".into()],
            allow: Vec::new(),
            unix: Vec::new(),
            max_line_length: 65_536,
            udp_recv_buffer: 32 * 1024 * 1024,
            udp_threads: 1,
            udp_batch: 32,
            max_connections: 10_000,
            idle_timeout: Duration::ZERO,
            key_name_sanitize: true,
            timer_exact_samples: 10_000,
            dump_messages: false,
            tag_dialects: vec!["influxdb".into(), "librato".into(), "signalfx".into()],
            max_series: crate::aggregate::DEFAULT_MAX_SERIES,
            series_limits: Vec::new(),
            max_tags: crate::parse::statsd::DEFAULT_MAX_TAGS,
            gauge_deltas: true,
        }
    }
}

/// A `[[statsd.unix]]` listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnix {
    /// Socket path.
    pub path: String,
    /// File mode applied after binding, as an octal string (`"0660"`); unset keeps the umask's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `stream` (the default: connections, like TCP) or `datagram` (one
    /// packet per datagram, DogStatsD's `unixgram`, like UDP).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A stream socket's framing: `newline` (lines end with `\n`, as over
    /// TCP), `length` (DogStatsD's `unixstream`: each payload after its
    /// 4-byte little-endian length) or `auto` (the default: each
    /// connection's first four bytes tell which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<String>,
}

/// `[flush]`: the interval and what each flush computes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFlush {
    /// Flush interval (the reference's `flushInterval`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timer percentiles (`percentThreshold`); negative values are top-N%.
    pub percentiles: Vec<f64>,
    /// Timer histograms (`histogram`); the first rule whose `metric` is in the key wins.
    pub histogram: Vec<RawHistogram>,
    /// Timer statistics to emit (`calculatedTimerMetrics`); empty emits all.
    pub calculated_timer_metrics: Vec<String>,
    /// Default for the four `delete_*` keys (`deleteIdleStats`).
    pub delete_idle_stats: bool,
    /// Drop idle counters instead of sending 0 (`deleteCounters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_counters: Option<bool>,
    /// Drop idle timers instead of sending 0 (`deleteTimers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_timers: Option<bool>,
    /// Drop idle sets instead of sending 0 (`deleteSets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_sets: Option<bool>,
    /// Drop idle gauges instead of repeating them (`deleteGauges`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_gauges: Option<bool>,
    /// Flushes a gauge may stay idle before `delete_gauges` drops it (`gaugesMaxTTL`); < 1 is 1.
    pub gauges_max_ttl: i64,
    /// Time allowed at shutdown to deliver the final flush.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Add statsyard's own counters (kernel UDP drops per listener, dropped
    /// lines, refused connections, sink drops) to every flush, under
    /// `<prefix_stats>.statsyard.`. Off when loading a reference `config.js`.
    pub self_metrics: bool,
    /// Where gauges (and, with `persist_counters`, counters) are saved at
    /// shutdown and restored from at start; `""` saves nothing.
    pub state_file: String,
    /// Save the counters of the last interval to `state_file` at shutdown
    /// instead of flushing them, and count them in the first interval after
    /// the restart.
    pub persist_counters: bool,
    /// Start intervals at multiples of their length on the wall clock and
    /// stamp each flush with its interval's end (off when loading a
    /// reference `config.js`, which flushes an interval after its start).
    pub align: bool,
}

impl Default for RawFlush {
    fn default() -> Self {
        RawFlush {
            interval: Duration::from_secs(10),
            percentiles: vec![90.0],
            histogram: Vec::new(),
            calculated_timer_metrics: Vec::new(),
            delete_idle_stats: false,
            delete_counters: None,
            delete_timers: None,
            delete_sets: None,
            delete_gauges: None,
            gauges_max_ttl: 1,
            shutdown_timeout: Duration::from_secs(10),
            self_metrics: true,
            state_file: String::new(),
            persist_counters: false,
            align: true,
        }
    }
}

/// A `[[flush.histogram]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistogram {
    /// Timers whose name contains this string use this rule (`""` matches all).
    pub metric: String,
    /// Ascending non-inclusive upper bin limits; `"inf"` last catches the rest. `[]` = no histogram.
    pub bins: Vec<RawBin>,
}

/// A histogram bin limit: a number or `"inf"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawBin {
    /// A finite upper limit.
    Limit(f64),
    /// `"inf"`: everything left.
    Inf,
}

impl<'de> Deserialize<'de> for RawBin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `#[serde(untagged)]`: it accepts
        // integers and floats alike and says what it expected.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawBin;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or \"inf\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawBin, E> {
                Ok(RawBin::Limit(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawBin, E> {
                Ok(RawBin::Limit(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawBin, E> {
                Ok(RawBin::Limit(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawBin, E> {
                if v == "inf" {
                    Ok(RawBin::Inf)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RawBin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawBin::Limit(v) => s.serialize_f64(*v),
            RawBin::Inf => s.serialize_str("inf"),
        }
    }
}

/// `[naming]`: the reference's `graphite.*` options plus `prefixStats` and `flush_counts`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNaming {
    /// The reference's `graphite.legacyNamespace`.
    pub legacy_namespace: bool,
    /// `graphite.globalPrefix` (used when `legacy_namespace = false`).
    pub global_prefix: String,
    /// `graphite.prefixCounter` (used when `legacy_namespace = false`).
    pub prefix_counter: String,
    /// `graphite.prefixTimer` (used when `legacy_namespace = false`).
    pub prefix_timer: String,
    /// `graphite.prefixGauge` (used when `legacy_namespace = false`).
    pub prefix_gauge: String,
    /// `graphite.prefixSet` (used when `legacy_namespace = false`).
    pub prefix_set: String,
    /// `graphite.globalSuffix`: when set (even to `""`) every name gets `.<suffix>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_suffix: Option<String>,
    /// `prefixStats`: the namespace of statsyard's own statsd metrics.
    pub prefix_stats: String,
    /// `flush_counts`: also send raw counter counts (`stats_counts.*` or `.count`).
    pub flush_counts: bool,
}

impl Default for RawNaming {
    fn default() -> Self {
        RawNaming {
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: None,
            prefix_stats: "statsd".into(),
            flush_counts: true,
        }
    }
}

/// `[log]`: statsyard's own logs (on stderr).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// A `tracing` filter directive (`info`, `debug`, `statsyard=debug,warn`); `RUST_LOG` overrides.
    pub level: String,
    /// `text` or `json`.
    pub format: RawLogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: RawLogFormat::Text,
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A `[[sink]]`: its `type`, `name` and `queue`, and the rest of the table,
/// which the type's kind reads and checks ([`crate::sink::SinkKind`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RawSink {
    /// The output kind: `console`, `graphite`, `repeater`, `relay`...
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique name for logs and self-metrics; defaults to the type, then `type-2`, `type-3`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Queue capacity in messages (the kind's default: 64 flushes, 65536
    /// packets for the repeater).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    /// The kind's own keys.
    #[serde(flatten)]
    pub options: toml::Table,
}

impl RawSink {
    /// A sink of this type with every other key unset.
    pub fn new(kind: &str) -> RawSink {
        RawSink {
            kind: kind.to_string(),
            name: None,
            queue: None,
            options: toml::Table::new(),
        }
    }

    /// Set one of the kind's keys.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> RawSink {
        self.options.insert(key.to_string(), value.into());
        self
    }
}

/// `[relay]`: the carbon relay (line and pickle in, clusters out).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRelay {
    /// Carbon plaintext over TCP: `IP:port`, or `{ address, tls }`.
    pub line_tcp: Vec<RawListen>,
    /// Carbon plaintext over UDP: listen addresses.
    pub line_udp: Vec<String>,
    /// Carbon pickle over TCP: `IP:port`, or `{ address, tls }`.
    pub pickle: Vec<RawListen>,
    /// Networks whose clients may send (UDP) or connect (TCP); `[]` allows
    /// every client.
    pub allow: Vec<String>,
    /// Longest plaintext line in bytes; longer lines are dropped and counted.
    pub max_line_length: usize,
    /// Largest pickle frame in bytes; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Most open line and pickle TCP connections together; more are refused and counted.
    pub max_connections: usize,
    /// Close a line or pickle TCP connection idle this long; `"0s"` never does.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Sort the tags of tagged names (`name;k=v`) as carbon does.
    pub normalize_tags: bool,
    /// Accept a line without timestamp, stamped with the current time.
    pub allow_missing_timestamp: bool,
    /// Pass infinite values on (carbon does); off drops and counts them.
    pub allow_inf: bool,
    /// Take timestamp `-1` as "now" (carbon does); off keeps it as sent.
    pub minus_one_is_now: bool,
    /// `off` (carbon: any non-whitespace UTF-8 name) or `strict`.
    pub name_check: String,
    /// Points each destination queues at most.
    pub queue: usize,
    /// Bytes each destination queues at most (names plus 64 per point).
    pub queue_bytes: usize,
    /// Points per write (and per pickle frame) at most.
    pub batch: usize,
    /// How long a connection attempt may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The first reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// `block`: a TCP line or pickle connection whose point a live
    /// destination has no room for waits (carbon's flow control); `drop`:
    /// the point is dropped and counted. UDP never waits.
    pub on_full: String,
    /// A destination holding points that took none for this long is stalled:
    /// nobody waits for it, its overflow is dropped and counted.
    #[serde(with = "humantime_serde")]
    pub block_timeout: Duration,
    /// Prefix of the relay's own metrics; `{host}` is the short host name.
    pub stats_prefix: String,
    /// How often the relay sends its own metrics through itself; `"0s"` never.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// Destination clusters.
    pub cluster: Vec<RawCluster>,
    /// Match and rewrite rules, in order.
    pub rule: Vec<RawRule>,
}

impl Default for RawRelay {
    fn default() -> Self {
        RawRelay {
            line_tcp: vec!["0.0.0.0:2003".into()],
            line_udp: vec!["0.0.0.0:2003".into()],
            pickle: vec!["0.0.0.0:2004".into()],
            allow: Vec::new(),
            max_line_length: 16_384,
            max_frame_bytes: 1 << 20,
            max_connections: 10_000,
            idle_timeout: Duration::ZERO,
            normalize_tags: false,
            allow_missing_timestamp: false,
            allow_inf: true,
            minus_one_is_now: true,
            name_check: "off".into(),
            queue: 100_000,
            queue_bytes: 64 << 20,
            batch: 500,
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            on_full: "block".into(),
            block_timeout: Duration::from_secs(1),
            stats_prefix: "carbon.relays.{host}".into(),
            stats_interval: Duration::from_secs(60),
            cluster: Vec::new(),
            rule: Vec::new(),
        }
    }
}

/// A `[[relay.cluster]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Name used by rules.
    pub name: String,
    /// `carbon_ch`, `fnv1a_ch`, `jump_fnv1a_ch`, `carbon_c_relay_ch`, `forward`, `any_of` or `failover`.
    pub method: String,
    /// `host:port[:instance]` of each destination, or
    /// `{ address = "host:port[:instance]", protocol = "pickle" }` to give one
    /// destination its own protocol.
    pub destinations: Vec<RawDestination>,
    /// Destinations each point goes to (hashed methods).
    #[serde(default = "one")]
    pub replication: usize,
    /// Replicas on distinct hosts (carbon's `DIVERSE_REPLICAS`).
    #[serde(default = "yes")]
    pub diverse_replicas: bool,
    /// `plain` or `pickle`.
    #[serde(default = "plain")]
    pub protocol: String,
    /// Directory of the destinations' disk spools (relative to the config
    /// file's directory); each destination uses `<spool_dir>/<cluster>/<host_port>`.
    /// Unset: no spool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<String>,
    /// Bytes each destination's spool keeps at most (1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_bytes: Option<u64>,
    /// TLS to every destination of the cluster (a destination's own `tls`
    /// wins); unset: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::RawTlsClient>,
}

/// A relay destination: its address, or a table with its own protocol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawDestination {
    /// `host:port[:instance]`, with the cluster's protocol.
    Address(String),
    /// A destination with its own settings.
    Table(RawDestinationTable),
}

/// `{ address = "...", protocol = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestinationTable {
    /// `host:port[:instance]`.
    pub address: String,
    /// `plain` or `pickle`; the cluster's `protocol` when absent.
    pub protocol: Option<String>,
    /// TLS to this destination; the cluster's `tls` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::RawTlsClient>,
}

impl RawDestination {
    /// The `host:port[:instance]` part.
    pub fn address(&self) -> &str {
        match self {
            RawDestination::Address(a) => a,
            RawDestination::Table(t) => &t.address,
        }
    }

    /// Its own protocol, if it has one.
    pub fn protocol(&self) -> Option<&str> {
        match self {
            RawDestination::Address(_) => None,
            RawDestination::Table(t) => t.protocol.as_deref(),
        }
    }

    /// Its own TLS, if it has one.
    pub fn tls(&self) -> Option<&crate::tls::RawTlsClient> {
        match self {
            RawDestination::Address(_) => None,
            RawDestination::Table(t) => t.tls.as_ref(),
        }
    }
}

impl From<&str> for RawDestination {
    fn from(s: &str) -> Self {
        RawDestination::Address(s.to_string())
    }
}

impl From<String> for RawDestination {
    fn from(s: String) -> Self {
        RawDestination::Address(s)
    }
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn plain() -> String {
    "plain".into()
}

/// A `[[relay.rule]]`: a match that sends to clusters, or a rewrite.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Regular expression searched for in the metric name.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Cluster names (or `blackhole`) the matching points go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_to: Option<Vec<String>>,
    /// Replacement for the matched name (`$1`, `${name}` capture groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Keep evaluating the following rules after this match.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// Stop here: the following rules are not evaluated (the default for a match).
    #[serde(default)]
    pub stop: bool,
}

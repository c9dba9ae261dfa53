//! Self-metrics: plain atomics, owned by the server and passed down by `Arc`.
//! No globals. Totals only ever grow; the flusher turns them into per-interval
//! deltas for the reference's `statsd.*` counters.
//!
//! Every stats struct lives here with its table ([`table::Metric`] rows):
//! [`Stats`] ([`PROCESS`]), [`SinkStats`] ([`SINK`]), [`TaskStats`],
//! [`UdpSocketStats`], [`spool::SpoolStats`], [`relay::RelayStats`],
//! [`prometheus::PromStats`] and [`collector`]'s host, liveness and event
//! counters. [`render`] turns the tables into each format:
//! `/metrics`, `/api/stats`, Graphite self-metrics and the admin `stats`
//! command. This folder imports nothing of the rest of the crate but the
//! Prometheus text writer; every component imports its counters from here.

pub mod atomic;
pub mod collector;
pub mod forward;
pub mod history;
pub mod listener;
pub mod prometheus;
pub mod relay;
pub mod render;
pub mod spool;
pub mod table;

pub use atomic::{get, incr, unix_now};
use table::{Kind, Metric};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// UDP datagrams, and TCP/unix reads that held at least one full line.
    pub packets_received: AtomicU64,
    /// Non-empty lines (the reference's `metrics_received`).
    pub metrics_received: AtomicU64,
    /// Rejected lines or values (the reference's `bad_lines_seen`).
    pub bad_lines_seen: AtomicU64,
    /// TCP/unix lines longer than `max_line_length`, dropped.
    pub lines_too_long: AtomicU64,
    /// Stream connections accepted.
    pub connections_accepted: AtomicU64,
    /// Stream connections refused because `max_connections` were open.
    pub connections_rejected: AtomicU64,
    /// Stream connections open now.
    pub connections_open: AtomicU64,
    /// Raw packets dropped because a raw sink's queue was full.
    pub raw_dropped: AtomicU64,
    /// Flushes done.
    pub flushes: AtomicU64,
    /// Duration of the last flush compute, in microseconds.
    pub last_flush_micros: AtomicU64,
    /// Unix seconds at start.
    pub started_unix: AtomicU64,
    /// Unix seconds when the flusher last saw new lines (at a flush or an
    /// admin/API request, so to within one interval); the start time before.
    pub last_msg_seen: AtomicU64,
    /// Reloads asked for (SIGHUP, `POST /-/reload`), refused ones included.
    pub reloads: AtomicU64,
    /// Reloads refused (invalid config, a sink that cannot be built...).
    pub reload_failures: AtomicU64,
    /// Admin console and `POST /-/reload` requests refused for a missing or wrong token.
    pub admin_auth_failures: AtomicU64,
    /// HTTP answers with a 4xx status, and HTTP connections that sent bytes
    /// but were closed unanswered (garbage).
    pub http_client_errors: AtomicU64,
    /// HTTP connections closed at once because `MAX_CONNECTIONS` were open.
    pub http_connections_rejected: AtomicU64,
    /// Values dropped because they would have created a new series past
    /// `max_series` or a `series_limits` prefix (all causes; per prefix in
    /// [`Stats::series_dropped_by_prefix`]).
    pub series_dropped: AtomicU64,
    /// Series counted against `max_series` as of the last flush (0 without
    /// limits).
    pub series_live: AtomicU64,
    /// Lines with more than `max_tags` tags, dropped (also in `bad_lines_seen`).
    pub too_many_tags: AtomicU64,
    /// Stream connections closed because they sent nothing for `idle_timeout`.
    pub connections_idle_closed: AtomicU64,
    /// Admin console lines answered with `ERROR` (unknown commands, bad
    /// arguments, overlong lines).
    pub admin_errors: AtomicU64,
    /// TLS handshakes that failed or timed out (the connection is closed).
    pub tls_handshake_failures: AtomicU64,
    /// Of those, client certificates missing or refused (mutual TLS).
    pub tls_client_certs_refused: AtomicU64,
    /// HTTP requests refused for missing or wrong basic-auth credentials.
    pub http_auth_failures: AtomicU64,
    /// Datagrams and connections refused because their source is not in the
    /// listener's `allow` list.
    pub refused_by_allow: AtomicU64,
    /// Unix seconds of the last reload asked for; 0 before any.
    pub last_reload_unix: AtomicU64,
    /// Whether the last reload was applied (1) or refused (0); 1 before any.
    pub last_reload_ok: AtomicU64,
    /// What the last reload did, or why it was refused.
    last_reload_message: Mutex<String>,
    /// Ingest totals at each of the last flushes (the status page's chart).
    pub history: history::History,
    series_dropped_by_prefix: Mutex<Vec<(String, u64)>>,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
    udp_sockets: Mutex<Vec<Arc<UdpSocketStats>>>,
    listeners: Mutex<Vec<Arc<listener::ListenerStats>>>,
    relay: Mutex<Option<Arc<relay::RelayStats>>>,
    /// Supervised tasks, by name ([`crate::supervise`]).
    tasks: Mutex<Vec<Arc<TaskStats>>>,
    /// The host collector's (`[host]`).
    pub host: Arc<collector::HostStats>,
    /// Liveness's (`[liveness]`).
    pub liveness: Arc<collector::LivenessStats>,
    /// Events and service checks.
    pub events: Arc<collector::EventStats>,
    /// The agent's (`[forward]`), while it runs.
    forward: Mutex<Option<Arc<forward::ForwardStats>>>,
    /// The aggregator's (`[aggregator]`), while it runs.
    aggregator: Mutex<Option<Arc<forward::AggregatorStats>>>,
}

impl Stats {
    /// Fresh counters, with the start time set to now.
    pub fn new() -> Arc<Self> {
        let now = unix_now();
        Arc::new(Stats {
            started_unix: AtomicU64::new(now),
            last_msg_seen: AtomicU64::new(now),
            last_reload_ok: AtomicU64::new(1),
            ..Stats::default()
        })
    }

    /// Note a reload's outcome: applied (`ok`) or refused, and what it did
    /// or why.
    pub fn reloaded(&self, ok: bool, message: String) {
        self.last_reload_unix.store(unix_now(), Ordering::Relaxed);
        self.last_reload_ok.store(u64::from(ok), Ordering::Relaxed);
        *self
            .last_reload_message
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = message;
    }

    /// What the last reload did, or why it was refused; empty before any.
    pub fn last_reload_message(&self) -> String {
        self.last_reload_message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Add `n` to the values dropped under the `series_limits` prefix
    /// `prefix` (not to [`Stats::series_dropped`], which the caller counts).
    pub fn add_series_dropped_under(&self, prefix: &str, n: u64) {
        let mut v = self
            .series_dropped_by_prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match v.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, total)) => *total += n,
            None => v.push((prefix.to_string(), n)),
        }
    }

    /// Values dropped per `series_limits` prefix, for the prefixes that
    /// dropped any, in the order they first did.
    pub fn series_dropped_by_prefix(&self) -> Vec<(String, u64)> {
        self.series_dropped_by_prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Register a sink's counters under its name.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        let s = Arc::new(SinkStats {
            name: name.to_string(),
            ..SinkStats::default()
        });
        // A poisoned lock only means another thread panicked while pushing;
        // the Vec itself is still whole.
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.clone());
        s
    }

    /// Register a UDP socket, so its kernel drop counter can be read.
    pub fn udp_socket(&self, addr: SocketAddr, inode: Option<u64>) -> Arc<UdpSocketStats> {
        let s = Arc::new(UdpSocketStats {
            addr,
            inode,
            kernel_drops: AtomicU64::new(0),
        });
        self.udp_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.clone());
        s
    }

    /// Forget the sockets of a UDP address a reload removed.
    pub fn remove_udp_socket(&self, addr: SocketAddr) {
        self.udp_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.addr != addr);
    }

    /// Every registered UDP socket.
    pub fn udp_sockets(&self) -> Vec<Arc<UdpSocketStats>> {
        self.udp_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the kernel's receive-drop counter of every registered UDP
    /// socket from /proc/net/udp and /proc/net/udp6: datagrams the kernel
    /// threw away because the socket buffer was full, before statsyard could
    /// read them. Returns the sockets whose counter grew, with the growth.
    pub fn refresh_kernel_drops(&self) -> Vec<(Arc<UdpSocketStats>, u64)> {
        let sockets = self.udp_sockets();
        if sockets.iter().all(|s| s.inode.is_none()) {
            return Vec::new();
        }
        let mut table = String::new();
        for f in ["/proc/net/udp", "/proc/net/udp6"] {
            if let Ok(t) = std::fs::read_to_string(f) {
                table.push_str(&t);
            }
        }
        let drops = proc_net_udp_drops(&table);
        let mut grew = Vec::new();
        for s in sockets {
            let Some(now) = s.inode.and_then(|i| drops.get(&i).copied()) else {
                continue;
            };
            let before = s.kernel_drops.swap(now, Ordering::Relaxed);
            if now > before {
                grew.push((s, now - before));
            }
        }
        grew
    }

    /// The counters of the statsd listener `proto addr`, registered the
    /// first time (the receive threads of one UDP address share them; a
    /// listener a reload keeps keeps its counts).
    pub fn listener(&self, proto: &'static str, addr: &str) -> Arc<listener::ListenerStats> {
        let mut v = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = v.iter().find(|l| l.proto == proto && l.addr == addr) {
            return l.clone();
        }
        let l = Arc::new(listener::ListenerStats::new(proto, addr));
        v.push(l.clone());
        l
    }

    /// Forget a listener a reload removed.
    pub fn remove_listener(&self, proto: &str, addr: &str) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| !(l.proto == proto && l.addr == addr));
    }

    /// Every statsd listener's counters, in the order they started.
    pub fn listeners(&self) -> Vec<Arc<listener::ListenerStats>> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Register the relay's counters (at most one relay per process).
    pub fn set_relay(&self, relay: Arc<relay::RelayStats>) {
        *self.relay.lock().unwrap_or_else(|e| e.into_inner()) = Some(relay);
    }

    /// The relay's counters, if this process runs a relay.
    pub fn relay(&self) -> Option<Arc<relay::RelayStats>> {
        self.relay.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The agent's counters (registered the first time).
    pub fn forward(&self) -> Arc<forward::ForwardStats> {
        self.forward
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Default::default)
            .clone()
    }

    /// The agent's counters, if this process forwards.
    pub fn forward_if_on(&self) -> Option<Arc<forward::ForwardStats>> {
        self.forward
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The aggregator's counters (registered the first time).
    pub fn aggregator(&self) -> Arc<forward::AggregatorStats> {
        self.aggregator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Default::default)
            .clone()
    }

    /// The aggregator's counters, if this process is one.
    pub fn aggregator_if_on(&self) -> Option<Arc<forward::AggregatorStats>> {
        self.aggregator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A sink's counters by name, if it is registered.
    pub fn sink_named(&self, name: &str) -> Option<Arc<SinkStats>> {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Counters for a sink that is not registered yet (a reload builds sinks
    /// before it knows it will go ahead); see [`Stats::register_sink`].
    pub fn unregistered_sink(name: &str) -> SinkStats {
        SinkStats {
            name: name.to_string(),
            ..SinkStats::default()
        }
    }

    /// Register `s` unless it already is.
    pub fn register_sink(&self, s: Arc<SinkStats>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if !sinks.iter().any(|k| Arc::ptr_eq(k, &s)) {
            sinks.push(s);
        }
    }

    /// Forget a removed sink's counters (a reload removed it).
    pub fn remove_sink(&self, name: &str) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.name != name);
    }

    /// Every registered sink's counters.
    pub fn sinks(&self) -> Vec<Arc<SinkStats>> {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The counters of the supervised task `name`, registered the first
    /// time (a task started again by a reload keeps its counts).
    pub fn task(&self, name: &str) -> Arc<TaskStats> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tasks.iter().find(|t| t.name == name) {
            return t.clone();
        }
        let t = Arc::new(TaskStats {
            name: name.to_string(),
            restarts: AtomicU64::new(0),
        });
        tasks.push(t.clone());
        t
    }

    /// Every supervised task's counters.
    pub fn tasks(&self) -> Vec<Arc<TaskStats>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One supervised task's counters ([`crate::supervise`]).
#[derive(Debug)]
pub struct TaskStats {
    /// `sink/graphite`, `udp/0.0.0.0:8125`, `flusher`, ...
    pub name: String,
    /// Panics and failures the supervisor recovered from: a restart, or a
    /// unit of work (a datagram, a flush) abandoned while the task went on.
    pub restarts: AtomicU64,
}

/// One UDP socket's kernel-side counters.
#[derive(Debug)]
pub struct UdpSocketStats {
    pub addr: SocketAddr,
    /// Names the socket in /proc/net/udp; `None` where it cannot be read.
    pub inode: Option<u64>,
    /// Datagrams the kernel dropped on this socket (its receive buffer was
    /// full), as of the last [`Stats::refresh_kernel_drops`].
    pub kernel_drops: AtomicU64,
}

/// inode → drops, from the text of /proc/net/udp(6): the inode is the 10th
/// whitespace-separated field and the drop counter the 13th.
fn proc_net_udp_drops(table: &str) -> std::collections::HashMap<u64, u64> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode = f.get(9)?.parse().ok()?;
            let drops = f.get(12)?.parse().ok()?;
            Some((inode, drops))
        })
        .collect()
}

/// Per-sink counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub name: String,
    /// Messages dropped because the sink's queue was full.
    pub queue_dropped: AtomicU64,
    /// Flushes written out completely.
    pub flushes_sent: AtomicU64,
    /// Flushes (or raw packets) discarded by the sink: buffer bound, shutdown deadline.
    pub dropped: AtomicU64,
    /// Metric lines (or raw packets) written.
    pub lines_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Connect or write failures.
    pub errors: AtomicU64,
    /// Bytes held in memory, waiting for the destination.
    pub buffered_bytes: AtomicU64,
    /// The sink's disk spool (all zero without one).
    pub spool: Arc<spool::SpoolStats>,
    /// Requests sent again after a failed try (HTTP outputs).
    pub retries: AtomicU64,
    /// Points dropped for good because the destination refused them: a 4xx
    /// answer, or a 5xx on every try (HTTP outputs).
    pub refused: AtomicU64,
    /// 1 while connected to the destination (the console: while its last
    /// write succeeded); 0 before the first connection and after a failure.
    pub connected: AtomicU64,
    /// Unix seconds when the sink last delivered a flush (or packets)
    /// completely; 0: never.
    pub last_flush_unix: AtomicU64,
    /// Unix seconds of the last connect or write failure; 0: none.
    pub last_error_unix: AtomicU64,
    /// The last failure, as logged.
    last_error: Mutex<String>,
}

impl SinkStats {
    /// The destination took something: connected, and now the last success.
    pub fn delivered(&self) {
        self.connected.store(1, Ordering::Relaxed);
        self.last_flush_unix.store(unix_now(), Ordering::Relaxed);
    }

    /// Connected (or not) to the destination.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(u64::from(up), Ordering::Relaxed);
    }

    /// A connect or write failure: no longer connected; `what` is kept as
    /// the last error.
    pub fn failed(&self, what: impl Into<String>) {
        self.connected.store(0, Ordering::Relaxed);
        self.last_error_unix.store(unix_now(), Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = what.into();
    }

    /// The last failure's message; empty when there was none.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Every process-wide counter, in export order (`statsyard_*` on
/// `/metrics`, top-level keys of `/api/stats`).
pub const PROCESS: &[Metric<Stats>] = &[
    Metric::new("packets_received", "packets_received_total", Kind::Counter,
        "UDP datagrams and stream reads holding at least one full line.",
        |s: &Stats| get(&s.packets_received)),
    Metric::new("metrics_received", "lines_received_total", Kind::Counter,
        "Non-empty statsd lines received (the reference's metrics_received).",
        |s: &Stats| get(&s.metrics_received)),
    Metric::new("bad_lines_seen", "bad_lines_total", Kind::Counter,
        "Lines or values rejected by the parser (the reference's bad_lines_seen).",
        |s: &Stats| get(&s.bad_lines_seen)),
    Metric::new("last_msg_seen", "last_message_seen_seconds", Kind::Gauge,
        "When lines last arrived, in Unix seconds, to within one flush interval.",
        |s: &Stats| get(&s.last_msg_seen)),
    Metric::new("http_client_errors", "http_client_errors_total", Kind::Counter,
        "HTTP answers with a 4xx status, and HTTP connections closed unanswered after sending garbage.",
        |s: &Stats| get(&s.http_client_errors)),
    Metric::new("http_connections_rejected", "http_connections_rejected_total", Kind::Counter,
        "HTTP connections closed at once because 1024 were open.",
        |s: &Stats| get(&s.http_connections_rejected)),
    Metric::new("admin_auth_failures", "admin_auth_failures_total", Kind::Counter,
        "Admin console commands and POST /-/reload refused for a missing or wrong token.",
        |s: &Stats| get(&s.admin_auth_failures)),
    Metric::new("lines_too_long", "lines_too_long_total", Kind::Counter,
        "Stream lines longer than max_line_length, dropped.",
        |s: &Stats| get(&s.lines_too_long)).graphite(),
    Metric::new("connections_accepted", "connections_accepted_total", Kind::Counter,
        "Stream connections accepted.",
        |s: &Stats| get(&s.connections_accepted)),
    Metric::new("connections_rejected", "connections_rejected_total", Kind::Counter,
        "Stream connections refused because max_connections were open.",
        |s: &Stats| get(&s.connections_rejected)).graphite(),
    Metric::new("connections_open", "connections_open", Kind::Gauge,
        "Stream connections open now.",
        |s: &Stats| get(&s.connections_open)),
    Metric::new("raw_dropped", "raw_dropped_total", Kind::Counter,
        "Raw packets dropped because a raw sink's queue was full.",
        |s: &Stats| get(&s.raw_dropped)).graphite(),
    Metric::new("sink_dropped", "sink_dropped_sum", Kind::Counter,
        "Flushes and packets dropped by every sink, queue and buffer together.",
        |s: &Stats| s.sinks().iter().map(|k| get(&k.queue_dropped) + get(&k.dropped)).sum()).graphite_only(),
    Metric::new("task_restarts", "task_restarts_sum", Kind::Counter,
        "Restarts of every supervised task together.",
        |s: &Stats| s.tasks().iter().map(|t| get(&t.restarts)).sum()).graphite_only(),
    Metric::new("flushes", "flushes_total", Kind::Counter,
        "Flushes done.",
        |s: &Stats| get(&s.flushes)),
    Metric::new("last_flush_micros", "flush_duration_seconds", Kind::Gauge,
        "How long the last flush's compute took.",
        |s: &Stats| get(&s.last_flush_micros)).scaled(1e-6),
    Metric::new("reloads", "reloads_total", Kind::Counter,
        "Reloads asked for (SIGHUP, POST /-/reload), refused ones included.",
        |s: &Stats| get(&s.reloads)),
    Metric::new("reload_failures", "reload_failures_total", Kind::Counter,
        "Reloads refused (an invalid config, a sink that cannot be built...); the old config kept running.",
        |s: &Stats| get(&s.reload_failures)),
    Metric::new("started_unix", "start_time_seconds", Kind::Gauge,
        "When statsyard started, in Unix seconds.",
        |s: &Stats| get(&s.started_unix)),
    Metric::new("series_live", "series_live", Kind::Gauge,
        "Series counted against max_series and series_limits, as of the last flush (0 without limits).",
        |s: &Stats| get(&s.series_live)),
    Metric::new("series_dropped", "series_dropped_total", Kind::Counter,
        "Values dropped because they would have created a new series past max_series or a series_limits prefix.",
        |s: &Stats| get(&s.series_dropped)).graphite(),
    Metric::new("too_many_tags", "too_many_tags_total", Kind::Counter,
        "Lines with more than max_tags tags, dropped (also in bad_lines_total).",
        |s: &Stats| get(&s.too_many_tags)).graphite(),
    Metric::new("connections_idle_closed", "connections_idle_closed_total", Kind::Counter,
        "Stream connections closed because they sent nothing for idle_timeout.",
        |s: &Stats| get(&s.connections_idle_closed)).graphite(),
    Metric::new("tls_handshake_failures", "tls_handshake_failures_total", Kind::Counter,
        "TLS handshakes that failed or timed out (the connection was closed).",
        |s: &Stats| get(&s.tls_handshake_failures)),
    Metric::new("tls_client_certs_refused", "tls_client_certs_refused_total", Kind::Counter,
        "TLS clients whose certificate was missing or refused (mutual TLS).",
        |s: &Stats| get(&s.tls_client_certs_refused)),
    Metric::new("http_auth_failures", "http_auth_failures_total", Kind::Counter,
        "HTTP requests refused for missing or wrong basic-auth credentials (web config file).",
        |s: &Stats| get(&s.http_auth_failures)),
    Metric::new("refused_by_allow", "refused_by_allow_total", Kind::Counter,
        "Datagrams and connections refused because their source is not in the listener's allow list.",
        |s: &Stats| get(&s.refused_by_allow)),
    Metric::new("admin_errors", "admin_errors_total", Kind::Counter,
        "Admin console lines answered with ERROR (unknown commands, bad arguments, overlong lines).",
        |s: &Stats| get(&s.admin_errors)).graphite(),
    Metric::new("last_reload_unix", "last_reload_time_seconds", Kind::Gauge,
        "When the last reload was asked for, in Unix seconds; 0 before any.",
        |s: &Stats| get(&s.last_reload_unix)),
    Metric::new("last_reload_ok", "last_reload_success", Kind::Flag,
        "Whether the last reload was applied (1) or refused (0); 1 before any.",
        |s: &Stats| get(&s.last_reload_ok)),
];

/// Every per-sink counter, in export order (`statsyard_sink_*{sink="..."}`,
/// the `sinks` list of `/api/stats`, `<sink>.<key>` in the admin console).
/// The sink's spool follows ([`spool::SPOOL`]).
pub const SINK: &[Metric<SinkStats>] = &[
    Metric::new(
        "flushes_sent",
        "sink_flushes_total",
        Kind::Counter,
        "Flushes a sink wrote out completely.",
        |k: &SinkStats| get(&k.flushes_sent),
    )
    .admin()
    .graphite(),
    Metric::new(
        "lines_sent",
        "sink_lines_total",
        Kind::Counter,
        "Metric lines or raw packets a sink wrote.",
        |k: &SinkStats| get(&k.lines_sent),
    )
    .admin()
    .graphite(),
    Metric::new(
        "bytes_sent",
        "sink_bytes_total",
        Kind::Counter,
        "Bytes a sink wrote.",
        |k: &SinkStats| get(&k.bytes_sent),
    )
    .admin()
    .graphite(),
    Metric::new(
        "errors",
        "sink_errors_total",
        Kind::Counter,
        "Connect or write failures of a sink.",
        |k: &SinkStats| get(&k.errors),
    )
    .admin()
    .graphite(),
    Metric::new(
        "dropped",
        "sink_dropped_total",
        Kind::Counter,
        "Flushes or raw packets a sink discarded (buffer bound, shutdown deadline).",
        |k: &SinkStats| get(&k.dropped),
    )
    .admin()
    .graphite(),
    Metric::new(
        "queue_dropped",
        "sink_queue_dropped_total",
        Kind::Counter,
        "Messages dropped because a sink's queue was full.",
        |k: &SinkStats| get(&k.queue_dropped),
    )
    .admin()
    .graphite(),
    Metric::new(
        "buffered_bytes",
        "sink_buffered_bytes",
        Kind::Gauge,
        "Bytes a sink holds in memory, waiting for its destination (its queue depth).",
        |k: &SinkStats| get(&k.buffered_bytes),
    )
    .graphite(),
    Metric::new(
        "retries",
        "sink_retries_total",
        Kind::Counter,
        "Requests an HTTP output sent again after a failed try (network error, 429, 5xx).",
        |k: &SinkStats| get(&k.retries),
    )
    .admin()
    .graphite(),
    Metric::new(
        "refused",
        "sink_refused_total",
        Kind::Counter,
        "Points a sink dropped for good because the destination refused them (a 4xx answer, a 5xx on every try, a message the broker rejected).",
        |k: &SinkStats| get(&k.refused),
    )
    .admin()
    .graphite(),
    Metric::new(
        "connected",
        "sink_connected",
        Kind::Flag,
        "Whether a sink is connected to its destination (the console: whether its last write succeeded).",
        |k: &SinkStats| get(&k.connected),
    ),
    Metric::new(
        "last_flush_unix",
        "sink_last_flush_time_seconds",
        Kind::Gauge,
        "When a sink last delivered a flush (or packets) completely, in Unix seconds; 0: never.",
        |k: &SinkStats| get(&k.last_flush_unix),
    ),
    Metric::new(
        "last_error_unix",
        "sink_last_error_time_seconds",
        Kind::Gauge,
        "When a sink last failed to connect or write, in Unix seconds; 0: never.",
        |k: &SinkStats| get(&k.last_error_unix),
    ),
];

/// A supervised task's counter (`statsyard_task_restarts_total{task="..."}`,
/// the `task_restarts` object of `/api/stats`).
pub const TASK: &[Metric<TaskStats>] = &[Metric::new(
    "restarts",
    "task_restarts_total",
    Kind::Counter,
    "Panics and failures of a supervised task that it was restarted after (or, for UDP receive threads and the flusher, that abandoned one datagram, flush or job).",
    |t: &TaskStats| get(&t.restarts),
)];

/// A UDP socket's counter (`statsyard_kernel_drops_total{socket="..."}`,
/// the `udp_sockets` list of `/api/stats`, and per address in Graphite).
pub const UDP_SOCKET: &[Metric<UdpSocketStats>] = &[Metric::new(
    "kernel_drops",
    "kernel_drops_total",
    Kind::Counter,
    "Datagrams the kernel dropped on a UDP socket because its receive buffer was full.",
    |u: &UdpSocketStats| get(&u.kernel_drops),
)
.graphite()];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_drops_by_inode() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
 2: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0\n";
        let d = proc_net_udp_drops(t);
        assert_eq!(d.get(&4242), Some(&17));
        assert_eq!(d.get(&99), Some(&0));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn kernel_drops_of_a_real_socket_are_found() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let stats = Stats::new();
        let inode = crate::listener::udp::inode(&sock);
        stats.udp_socket(sock.local_addr().unwrap(), inode);
        // A fresh socket has dropped nothing, and is found in the table.
        assert!(stats.refresh_kernel_drops().is_empty());
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if !table.is_empty() {
            assert!(proc_net_udp_drops(&table).contains_key(&inode.unwrap()));
        }
    }
}

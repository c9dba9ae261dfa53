//! Self-metrics: plain atomics, owned by the server and passed down by `Arc`.
//! No globals. Totals only ever grow; the flusher turns them into per-interval
//! deltas for the reference's `statsd.*` counters.

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
    series_dropped_by_prefix: Mutex<Vec<(String, u64)>>,
    sinks: Mutex<Vec<Arc<SinkStats>>>,
    udp_sockets: Mutex<Vec<Arc<UdpSocketStats>>>,
    relay: Mutex<Option<Arc<crate::relay::stats::RelayStats>>>,
    /// Supervised tasks, by name ([`crate::supervise`]).
    tasks: Mutex<Vec<Arc<TaskStats>>>,
}

impl Stats {
    /// Fresh counters, with the start time set to now.
    pub fn new() -> Arc<Self> {
        let now = unix_now();
        Arc::new(Stats {
            started_unix: AtomicU64::new(now),
            last_msg_seen: AtomicU64::new(now),
            ..Stats::default()
        })
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

    /// The counters of refused or cut-off input added with the limits, by
    /// their self-metric names (the `/api/stats` keys and, under
    /// `<prefix_stats>.statsyard.`, the Graphite names).
    pub fn limit_counters(&self) -> [(&'static str, u64); 4] {
        [
            ("series_dropped", get(&self.series_dropped)),
            ("too_many_tags", get(&self.too_many_tags)),
            (
                "connections_idle_closed",
                get(&self.connections_idle_closed),
            ),
            ("admin_errors", get(&self.admin_errors)),
        ]
    }

    /// [`Stats::limit_counters`] plus one `series_dropped_prefix.<prefix>`
    /// per prefix that dropped any, as Graphite self-metric names: the
    /// prefix with every character but `A-Z a-z 0-9 _ -` made `_`, so that
    /// `app.` stays one path node (`series_dropped_prefix.app_`).
    pub fn limit_self_metrics(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .limit_counters()
            .iter()
            .map(|(n, c)| (n.to_string(), *c))
            .collect();
        for (prefix, n) in self.series_dropped_by_prefix() {
            let node: String = prefix
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            v.push((format!("series_dropped_prefix.{node}"), n));
        }
        v
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

    /// Register the relay's counters (at most one relay per process).
    pub fn set_relay(&self, relay: Arc<crate::relay::stats::RelayStats>) {
        *self.relay.lock().unwrap_or_else(|e| e.into_inner()) = Some(relay);
    }

    /// The relay's counters, if this process runs a relay. Their names and
    /// values for export: [`crate::relay::stats::RelayStats::values`].
    pub fn relay(&self) -> Option<Arc<crate::relay::stats::RelayStats>> {
        self.relay.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
    pub spool: Arc<crate::spool::SpoolStats>,
    /// Requests sent again after a failed try (HTTP outputs).
    pub retries: AtomicU64,
    /// Points dropped for good because the destination refused them: a 4xx
    /// answer, or a 5xx on every try (HTTP outputs).
    pub refused: AtomicU64,
}

/// Unix time in whole seconds, rounded as the reference rounds it.
pub fn unix_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64 / 1000.0).round() as u64
}

/// Shorthand for a relaxed increment.
#[inline]
pub fn incr(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Shorthand for a relaxed read.
#[inline]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

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

//! Live reload (SIGHUP, `POST /-/reload`): re-read the config the process was
//! started with, work out what changed, and apply what can change without a
//! restart, keeping the registry and the shards (so aggregates in flight are
//! not lost).
//!
//! The protocol, in order, so that a refused reload changes nothing:
//!
//! 1. Load the new config with the same loader as at start ([`Source`]). An
//!    invalid file is refused here: the old config keeps running.
//! 2. [`plan`] it against the running config: which sinks are added, removed,
//!    changed or unchanged, and which keys only a restart can apply (the
//!    running config keeps its old value for those, so the next reload names
//!    them again until the process restarts).
//! 3. Check and build everything that can fail (new sinks, the log filter)
//!    before anything is touched.
//! 4. Hand the flusher its new compute options and sink queues in one message
//!    ([`FlusherMsg::Reconfigure`]): the next flush goes to the new set. A
//!    removed or changed sink loses its queue's sender, which is its shutdown
//!    signal: it delivers what it holds within `shutdown_timeout` and stops,
//!    as at shutdown. Unchanged sinks are not touched.
//! 5. Replace the Prometheus exporter if its options changed, and set the log
//!    level.
//!
//! Statsd and relay listeners are added and removed, and the HTTP and admin
//! addresses move, live too: new sockets are bound before anything changes
//! (a bind that fails refuses the reload), removed ones stop after, reading
//! what they already hold as at shutdown. Repeater sinks and the listeners'
//! tuning keys need a restart; see [`plan`] and docs/configuration.md
//! "Reloading".
//!
//! Like `server.rs`, whose wiring it changes at run time, this module sees
//! every part (sinks, relay, flusher, HTTP); nothing else depends on it but
//! `server.rs`, `main.rs` and the `/-/reload` route.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::aggregate::Shard;
use crate::config::Config;
use crate::flush::flusher::{FlusherBusy, FlusherHandle, Reconfigure, SinkQueue};
use crate::http::prometheus::live::Live;
use crate::http::Shared;
use crate::listener::stream::StreamCtx;
use crate::listener::{carbon, tcp, udp, unix, Ingest, SharedShard};
use crate::relay::router::Router;
use crate::relay::RelayRuntime;
use crate::server::spawn_listener;
use crate::shutdown::CancellationToken;
use crate::sink::{SinkError, SinkKind, SinkSpec};
use crate::stats::{incr, Stats};
use crate::supervise::supervise_socket;

/// Loads the config again, exactly as at start (flags re-applied).
pub type LoadFn = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
/// Sets the log filter (a `tracing` directive such as `info` or `statsyard=debug`).
pub type LogFn = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where a reload reads its config from, and how it sets the log level;
/// built by `main.rs`, which knows the command line.
#[derive(Default)]
pub struct Source {
    load: Option<LoadFn>,
    /// Why there is nothing to re-read, when `load` is `None`.
    why_not: String,
    set_log_level: Option<LogFn>,
}

impl Source {
    /// Re-read with `load`.
    pub fn new(load: LoadFn) -> Source {
        Source {
            load: Some(load),
            why_not: String::new(),
            set_log_level: None,
        }
    }

    /// Nothing to re-read (the embedded default, flags alone, or an
    /// in-process server); every reload is refused with `why`.
    pub fn none(why: impl Into<String>) -> Source {
        Source {
            load: None,
            why_not: why.into(),
            set_log_level: None,
        }
    }

    /// Apply `[log] level` with `f` on reload. Without it the level is a
    /// restart-only key.
    pub fn with_log_level(mut self, f: LogFn) -> Source {
        self.set_log_level = Some(f);
        self
    }
}

/// Why a reload was refused. The old config keeps running in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The process was not started from a file it could read again.
    #[error("nothing to re-read: {0}")]
    NoSource(String),
    /// The file could not be read or is not a valid config.
    #[error("{0}")]
    Invalid(String),
    /// A new or changed sink could not be built.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The new `[log] level` is not a valid filter.
    #[error("[log] level {level:?}: {reason}")]
    LogLevel { level: String, reason: String },
    /// A new HTTP or admin address cannot be bound.
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The new relay rules or clusters cannot be built.
    #[error(transparent)]
    Relay(#[from] crate::relay::router::RouterError),
    /// The flusher could not take the new options (busy or stopped).
    #[error(transparent)]
    Flusher(#[from] FlusherBusy),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl ReloadError {
    /// Whether the new config is at fault (4xx) rather than the server (5xx).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ReloadError::NoSource(_)
                | ReloadError::Invalid(_)
                | ReloadError::Sink(_)
                | ReloadError::Relay(_)
                | ReloadError::Bind { .. }
                | ReloadError::LogLevel { .. }
        )
    }
}

/// What a reload did; `POST /-/reload` answers with it as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReloadReport {
    /// The file that was read.
    pub source: String,
    /// Live settings that changed and were applied (`[flush] percentiles`, ...).
    pub applied: Vec<String>,
    pub sinks_added: Vec<String>,
    pub sinks_removed: Vec<String>,
    pub sinks_changed: Vec<String>,
    pub sinks_unchanged: Vec<String>,
    /// Keys that changed but only take effect after a restart; the old
    /// values keep running.
    pub restart_required: Vec<String>,
}

/// What a reload will do, computed from the running and the new config alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The config that will run: the new one, with the old values of the
    /// restart-only keys.
    pub effective: Config,
    pub report: ReloadReport,
    /// Sinks to build and start (added and changed), in config order.
    pub start: Vec<SinkSpec>,
    /// Sinks whose queue to close (removed and changed).
    pub stop: Vec<String>,
    /// The relay's routing (rules, clusters, queues) changed: build a new router.
    pub relay_changed: bool,
}

/// Repeater sinks are fed by the listeners' raw tap, not by the flusher.
fn is_raw(s: &SinkSpec) -> bool {
    matches!(s.kind, SinkKind::Repeater(_))
}

/// Whether `name` is a repeater sink of `config`.
fn is_raw_name(config: &Config, name: &str) -> bool {
    config.sinks.iter().any(|s| s.name == name && is_raw(s))
}

/// Diff `old` (running) against `new` (just loaded).
pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut restart = Vec::new();
    let mut eff = new.clone();
    // Restart-only keys: note a change, keep the running value.
    macro_rules! keep {
        ($($field:ident).+, $key:expr) => {
            if old.$($field).+ != new.$($field).+ {
                restart.push($key.to_string());
                eff.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    // A unix path in both lists with a new mode would be bound by the new
    // listener, then unlinked by the old one as it stops.
    if old.listen.unix.iter().any(|o| {
        new.listen
            .unix
            .iter()
            .any(|n| n.path == o.path && n.mode != o.mode)
    }) {
        restart.push("[statsd] unix (mode)".to_string());
        eff.listen.unix = old.listen.unix.clone();
    }
    keep!(listen.max_line_length, "[statsd] max_line_length");
    keep!(listen.udp_recv_buffer, "[statsd] udp_recv_buffer");
    keep!(listen.udp_threads, "[statsd] udp_threads");
    keep!(listen.udp_batch, "[statsd] udp_batch");
    keep!(listen.max_connections, "[statsd] max_connections");
    keep!(listen.idle_timeout, "[statsd] idle_timeout");
    keep!(
        parse,
        "[statsd] key_name_sanitize / tag_dialects / max_tags"
    );
    // The graphite sinks sanitise names exactly when ingest does not: the two
    // must follow the same `key_name_sanitize`.
    if new.parse != old.parse {
        eff.naming.sanitize_names = old.naming.sanitize_names;
    }
    keep!(
        aggregate.timer_exact_samples,
        "[statsd] timer_exact_samples"
    );
    keep!(log.dump_messages, "[statsd] dump_messages");
    keep!(log.json, "[log] format");
    keep!(naming.prefix_stats, "[naming] prefix_stats");
    keep!(shutdown_timeout, "[flush] shutdown_timeout");
    keep!(state, "[flush] state_file / persist_counters");
    // `/metrics` is fed by the flusher only when HTTP ran at start.
    if old.http.is_none() && new.http.is_some() {
        restart.push("[http] enabled".to_string());
        eff.http = None;
    }
    keep!(health_up, "[admin] health");
    let mut relay_changed = false;
    let mut relay_listeners = Vec::new();
    match (&old.relay, &new.relay) {
        (Some(o), Some(n)) => {
            let mut e = n.clone();
            // The line checks the relay listeners hold are fixed at start.
            macro_rules! keep_relay {
                ($field:ident, $key:expr) => {
                    if o.$field != n.$field {
                        restart.push($key.to_string());
                        e.$field = o.$field.clone();
                    }
                };
            }
            keep_relay!(
                line,
                "[relay] max_line_length / allow_missing_timestamp / allow_inf / minus_one_is_now / name_check / max_connections / idle_timeout"
            );
            keep_relay!(max_frame_bytes, "[relay] max_frame_bytes");
            // Listeners alone do not need a new routing table.
            let mut same_listeners = o.clone();
            same_listeners.line_tcp = e.line_tcp.clone();
            same_listeners.line_udp = e.line_udp.clone();
            same_listeners.pickle = e.pickle.clone();
            relay_changed = e != same_listeners;
            for (a, b, key) in [
                (&o.line_tcp, &e.line_tcp, "[relay] line_tcp"),
                (&o.line_udp, &e.line_udp, "[relay] line_udp"),
                (&o.pickle, &e.pickle, "[relay] pickle"),
            ] {
                if a != b {
                    relay_listeners.push(key);
                }
            }
            eff.relay = Some(e);
        }
        (None, None) => {}
        _ => {
            restart.push("[relay]".to_string());
            eff.relay = old.relay.clone();
        }
    }

    let mut report = ReloadReport {
        source: new.source.clone(),
        restart_required: restart,
        ..ReloadReport::default()
    };
    let mut applied = |cond: bool, key: &str| {
        if cond {
            report.applied.push(key.to_string());
        }
    };
    let (oc, nc) = (&old.compute, &eff.compute);
    applied(oc.interval != nc.interval, "[flush] interval");
    applied(oc.percentiles != nc.percentiles, "[flush] percentiles");
    applied(oc.histograms != nc.histograms, "[flush] histogram");
    applied(
        oc.calculated_timer_metrics != nc.calculated_timer_metrics,
        "[flush] calculated_timer_metrics",
    );
    applied(
        old.aggregate.limits != eff.aggregate.limits,
        "[statsd] max_series / series_limits",
    );
    applied(
        crate::aggregate::AggregateOptions {
            limits: eff.aggregate.limits.clone(),
            ..old.aggregate.clone()
        } != eff.aggregate,
        "[flush] delete_* / gauges_max_ttl",
    );
    applied(old.self_metrics != eff.self_metrics, "[flush] self_metrics");
    applied(old.naming != eff.naming, "[naming]");
    applied(old.prometheus != eff.prometheus, "[prometheus]");
    applied(old.log.level != eff.log.level, "[log] level");
    applied(old.listen.udp != eff.listen.udp, "[statsd] udp");
    applied(old.listen.tcp != eff.listen.tcp, "[statsd] tcp");
    applied(old.listen.unix != eff.listen.unix, "[statsd] unix");
    applied(old.http != eff.http, "[http] address");
    applied(old.admin != eff.admin, "[admin] enabled / address");
    applied(old.admin_token != eff.admin_token, "[admin] token");
    applied(
        relay_changed,
        "[relay] rules / clusters / tuning / normalize_tags / stats_*",
    );
    for key in relay_listeners {
        applied(true, key);
    }

    // Sinks are matched by name. Every flush sink formats names itself, so a
    // naming change rebuilds them all (not the repeaters, which copy packets).
    let naming_changed = old.naming != eff.naming;
    let mut start = Vec::new();
    let mut stop = Vec::new();
    for s in eff.sinks.iter() {
        match old.sinks.iter().find(|o| o.name == s.name) {
            None => {
                report.sinks_added.push(s.name.clone());
                start.push(s.clone());
            }
            Some(o) if o != s || (naming_changed && !is_raw(s)) => {
                report.sinks_changed.push(s.name.clone());
                stop.push(s.name.clone());
                start.push(s.clone());
            }
            Some(_) => report.sinks_unchanged.push(s.name.clone()),
        }
    }
    for o in old.sinks.iter() {
        if !eff.sinks.iter().any(|s| s.name == o.name) {
            report.sinks_removed.push(o.name.clone());
            stop.push(o.name.clone());
        }
    }
    Plan {
        effective: eff,
        report,
        start,
        stop,
        relay_changed,
    }
}

/// The running server's reload state, shared by the SIGHUP loop and the
/// HTTP route.
pub struct Reloader {
    source: Source,
    /// The running config; the async lock makes reloads one at a time.
    current: tokio::sync::Mutex<Config>,
    stats: Arc<Stats>,
    flusher: FlusherHandle,
    exporter: Arc<Live>,
    /// Set when a relay runs: `relay` sinks route through it.
    router: Option<Arc<Router>>,
    /// Every sink task ever started; shutdown waits for them all.
    sink_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The running relay; a reload that changes it swaps in a new one.
    relay: Arc<Mutex<Option<RelayRuntime>>>,
    /// What the HTTP server and the admin console serve.
    shared: Shared,
    /// The mapping file's bytes as last loaded: a config that names the same
    /// file is equal, so its contents tell whether it was edited.
    mapping: Mutex<Option<Vec<u8>>>,
    /// Stops the running HTTP server / admin console (a child of `token`).
    fronts: Mutex<[Option<CancellationToken>; 2]>,
    stops: Mutex<ListenerStops>,
    streams: StreamParts,
    udp_threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    token: CancellationToken,
}

/// The two servers whose address a reload can move.
#[derive(Debug, Clone, Copy)]
pub enum Front {
    Http = 0,
    Admin = 1,
}

impl Front {
    fn proto(self) -> &'static str {
        match self {
            Front::Http => "http",
            Front::Admin => "admin",
        }
    }
}

/// Bind a TCP listener for HTTP or the admin console (as `server::start` does).
pub fn bind_front(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// The bytes of `[prometheus] mapping_file`, if one is set and readable
/// (the config loader has just read it; an unreadable one was refused there).
fn read_mapping(c: &Config) -> Option<Vec<u8>> {
    c.prometheus
        .mapping_file
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
}

/// A statsd listener, by its configured address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
    /// Relay carbon plaintext over TCP.
    CarbonTcp(SocketAddr),
    /// Relay carbon plaintext over UDP.
    CarbonUdp(SocketAddr),
    /// Relay pickle over TCP.
    Pickle(SocketAddr),
}

/// The token that stops each statsd listener (a child of the server's).
#[derive(Default)]
pub struct ListenerStops(Vec<(ListenAddr, CancellationToken)>);

impl ListenerStops {
    /// The stop token of `addr` (shared by the SO_REUSEPORT sockets of one
    /// UDP address), made from `parent` the first time.
    pub fn token(&mut self, parent: &CancellationToken, addr: ListenAddr) -> CancellationToken {
        if let Some((_, t)) = self.0.iter().find(|(a, _)| *a == addr) {
            return t.clone();
        }
        let t = parent.child_token();
        self.0.push((addr, t.clone()));
        t
    }

    /// Stop the listener of `addr`; `false` if there is none.
    fn stop(&mut self, addr: &ListenAddr) -> bool {
        match self.0.iter().position(|(a, _)| a == addr) {
            Some(i) => {
                self.0.swap_remove(i).1.cancel();
                true
            }
            None => false,
        }
    }
}

/// What every stream listener shares, kept to start new ones.
pub struct StreamParts {
    pub shard: SharedShard,
    pub connections: Arc<tokio::sync::Semaphore>,
    pub tracker: tokio_util::task::TaskTracker,
    /// The repeaters' queues, which a reload replaces.
    pub raw: crate::listener::RawTap,
}

/// What a reload needs to add and remove statsd listeners.
pub struct ListenerParts {
    pub stops: ListenerStops,
    pub streams: StreamParts,
    /// Every UDP receive thread; shutdown joins them.
    pub udp_threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

/// New statsd listeners, bound by a reload before anything changes.
#[derive(Default)]
struct NewListeners {
    udp: Vec<(SocketAddr, std::net::UdpSocket, SharedShard)>,
    tcp: Vec<(SocketAddr, TcpListener)>,
    unix: Vec<(std::path::PathBuf, tokio::net::UnixListener)>,
    /// Relay TCP listeners: line or pickle.
    carbon_tcp: Vec<(ListenAddr, TcpListener)>,
    carbon_udp: Vec<(SocketAddr, tokio::net::UdpSocket)>,
    stop: Vec<ListenAddr>,
}

/// What [`Reloader::new`] takes from the server.
pub struct Parts {
    pub config: Config,
    pub stats: Arc<Stats>,
    pub flusher: FlusherHandle,
    pub exporter: Arc<Live>,
    pub router: Option<Arc<Router>>,
    pub sink_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    pub relay: Arc<Mutex<Option<RelayRuntime>>>,
    pub shared: Shared,
    pub listeners: ListenerParts,
    pub token: CancellationToken,
}

impl Reloader {
    pub fn new(source: Source, p: Parts) -> Reloader {
        let mapping = read_mapping(&p.config);
        Reloader {
            source,
            current: tokio::sync::Mutex::new(p.config),
            stats: p.stats,
            flusher: p.flusher,
            exporter: p.exporter,
            router: p.router,
            sink_tasks: p.sink_tasks,
            relay: p.relay,
            shared: p.shared,
            mapping: Mutex::new(mapping),
            fronts: Mutex::new([None, None]),
            stops: Mutex::new(p.listeners.stops),
            streams: p.listeners.streams,
            udp_threads: p.listeners.udp_threads,
            token: p.token,
        }
    }

    /// Serve HTTP (with `POST /-/reload`) or the admin console on `l`, and
    /// stop the one serving before, if any (its requests in flight finish).
    pub fn serve(self: &Arc<Self>, front: Front, l: TcpListener) -> std::io::Result<SocketAddr> {
        let addr = l.local_addr()?;
        tracing::info!(proto = front.proto(), %addr, "listening");
        let stop = self.token.child_token();
        // Supervised: a panic serves again on the same socket after the backoff.
        let task = self.stats.task(front.proto());
        let (shared, st) = (self.shared.clone(), stop.clone());
        match front {
            Front::Http => {
                let me = self.clone();
                tokio::spawn(supervise_socket(task, Some(stop.clone()), l, move |l| {
                    crate::http::server::serve_with_reload(
                        l,
                        shared.clone(),
                        me.clone(),
                        st.clone(),
                    )
                }))
            }
            Front::Admin => {
                let console = crate::http::admin::Console {
                    shared,
                    reload: Some(self.clone()),
                };
                tokio::spawn(supervise_socket(task, Some(stop.clone()), l, move |l| {
                    crate::http::admin::serve(l, console.clone(), st.clone())
                }))
            }
        };
        self.stop_front(front, Some(stop));
        Ok(addr)
    }

    /// Stop the server of `front`, and remember `next` as the one running now.
    fn stop_front(&self, front: Front, next: Option<CancellationToken>) {
        let old = std::mem::replace(
            &mut self.fronts.lock().unwrap_or_else(|e| e.into_inner())[front as usize],
            next,
        );
        if let Some(old) = old {
            old.cancel();
        }
    }

    /// Reload, counting and logging the outcome.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        incr(&self.stats.reloads, 1);
        match self.try_reload().await {
            Ok(r) => {
                tracing::info!(
                    source = %r.source,
                    applied = ?r.applied,
                    sinks_added = ?r.sinks_added,
                    sinks_removed = ?r.sinks_removed,
                    sinks_changed = ?r.sinks_changed,
                    "config reloaded"
                );
                if !r.restart_required.is_empty() {
                    tracing::warn!(
                        keys = ?r.restart_required,
                        "config reloaded, but these changes need a restart; their old values keep running"
                    );
                }
                Ok(r)
            }
            Err(e) => {
                incr(&self.stats.reload_failures, 1);
                tracing::error!(error = %e, "reload refused; the old config keeps running");
                Err(e)
            }
        }
    }

    async fn try_reload(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        if self.token.is_cancelled() {
            return Err(ReloadError::ShuttingDown);
        }
        let Some(load) = &self.source.load else {
            return Err(ReloadError::NoSource(self.source.why_not.clone()));
        };
        let mut current = self.current.lock().await;
        // Reading a file is quick; a blocking read here is fine.
        let new = load().map_err(ReloadError::Invalid)?;
        for w in &new.warnings {
            tracing::warn!(source = %new.source, "{w}");
        }
        let mut plan = plan(&current, &new);
        let mapping = read_mapping(&plan.effective);
        let mapping_edited = current.prometheus == plan.effective.prometheus
            && mapping != *self.mapping.lock().unwrap_or_else(|e| e.into_inner());
        if mapping_edited {
            plan.report
                .applied
                .push("[prometheus] mapping_file (contents)".into());
        }
        if current.log.level != plan.effective.log.level {
            if self.source.set_log_level.is_none() {
                // No way to apply it (RUST_LOG set, or an in-process server).
                plan.report.applied.retain(|k| k != "[log] level");
                plan.report.restart_required.push("[log] level".into());
                plan.effective.log.level = current.log.level.clone();
            } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&plan.effective.log.level)
            {
                return Err(ReloadError::LogLevel {
                    level: plan.effective.log.level.clone(),
                    reason: e.to_string(),
                });
            }
        }
        let eff = &plan.effective;
        // The new routing table, built before anything changes.
        let new_router = match (&eff.relay, &self.router) {
            (Some(rc), Some(first)) if plan.relay_changed => {
                Some(Arc::new(Router::replacing(rc, first)?))
            }
            _ => None,
        };

        // Build every new sink before anything changes: one that fails refuses the reload.
        let mut built = Vec::new();
        for spec in &plan.start {
            // A changed sink keeps its counters: same name, same series.
            let sink_stats = self
                .stats
                .sink_named(&spec.name)
                .unwrap_or_else(|| Arc::new(Stats::unregistered_sink(&spec.name)));
            if matches!(spec.kind, SinkKind::Relay) && self.router.is_none() {
                return Err(SinkError::NoRelay {
                    sink: spec.name.clone(),
                }
                .into());
            }
            let mut factory = crate::server::sink_factory(
                spec,
                &eff.naming,
                sink_stats.clone(),
                eff.shutdown_timeout,
                self.router.clone(),
            );
            let s = factory()?;
            built.push((s, factory, spec.queue.max(1), sink_stats));
        }
        // New addresses are bound before the old ones close; a bind that
        // fails (in use, no permission) refuses the reload.
        let mut fronts = Vec::new();
        for (front, old, new) in [
            (Front::Http, current.http, eff.http),
            (Front::Admin, current.admin, eff.admin),
        ] {
            if old == new {
                continue;
            }
            let l = match new {
                Some(addr) => Some(bind_front(addr).map_err(|source| ReloadError::Bind {
                    proto: front.proto(),
                    addr: addr.to_string(),
                    source,
                })?),
                None => None,
            };
            fronts.push((front, l));
        }
        let listeners = self.bind_listeners(&current, eff)?;
        let mut add = Vec::new();
        let mut add_raw = Vec::new();
        let mut receivers = Vec::new();
        for (s, factory, queue, sink_stats) in built {
            let (tx, rx) = mpsc::channel(queue);
            if s.wants_raw() {
                add_raw.push((s.name().to_string(), tx));
            } else {
                add.push(SinkQueue {
                    tx,
                    stats: sink_stats.clone(),
                });
            }
            receivers.push((s, factory, rx, sink_stats));
        }
        self.flusher
            .reconfigure(Reconfigure {
                compute: eff.compute.clone(),
                aggregate: eff.aggregate.clone(),
                self_metrics: eff.self_metrics,
                remove: plan.stop.clone(),
                add,
                shards: listeners.udp.iter().map(|(_, _, s)| s.clone()).collect(),
            })
            .await?;
        // From here on nothing can fail: the flusher already feeds the new set.
        // The repeaters: kept ones keep their queue, removed and changed ones
        // close theirs once every listener has taken the new list.
        if !add_raw.is_empty() || plan.stop.iter().any(|n| is_raw_name(&current, n)) {
            let (now, _) = self.streams.raw.current();
            let mut next: Vec<_> = now
                .iter()
                .filter(|(name, _)| !plan.stop.contains(name))
                .cloned()
                .collect();
            next.extend(add_raw);
            self.streams.raw.replace(next);
        }
        for name in &plan.report.sinks_removed {
            self.stats.remove_sink(name);
            tracing::info!(sink = %name, "sink removed: delivering what it holds, then stopping");
        }
        for name in &plan.report.sinks_changed {
            tracing::info!(sink = %name, "sink changed: the old one delivers what it holds, the new one takes the next flush");
        }
        {
            let mut tasks = self.sink_tasks.lock().unwrap_or_else(|e| e.into_inner());
            // Finished tasks (removed sinks that drained) need not be kept.
            tasks.retain(|t| !t.is_finished());
            for (s, factory, rx, sink_stats) in receivers {
                self.stats.register_sink(sink_stats.clone());
                tasks.push(crate::server::spawn_sink(
                    s,
                    factory,
                    rx,
                    sink_stats,
                    &self.stats,
                ));
            }
        }
        if let (Some(next), Some(first), Some(rc)) = (new_router, &self.router, &eff.relay) {
            self.swap_relay(first, next, rc, eff.shutdown_timeout);
        }
        self.start_listeners(listeners, eff);
        for (front, l) in fronts {
            match l.map(|l| self.serve(front, l)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::error!(proto = front.proto(), error = %e, "cannot serve"),
                None => {
                    tracing::info!(proto = front.proto(), "stopped by the reload");
                    self.stop_front(front, None);
                }
            }
        }
        *self.mapping.lock().unwrap_or_else(|e| e.into_inner()) = mapping;
        if current.prometheus != eff.prometheus || mapping_edited {
            // A fresh exporter: Prometheus sees counter resets, which `rate()`
            // handles; the statsd aggregates themselves are untouched.
            self.exporter.reconfigure(eff.prometheus.options.clone());
        }
        if current.admin_token != eff.admin_token {
            self.shared.admin_token.set(eff.admin_token.as_deref());
        }
        if current.log.level != eff.log.level {
            if let Some(set) = &self.source.set_log_level {
                // Checked above; a failure now would leave the old level, which is safe.
                if let Err(e) = set(&eff.log.level) {
                    tracing::error!(error = %e, "cannot set the log level");
                }
            }
        }
        *current = plan.effective.clone();
        Ok(plan.report)
    }
}

impl Reloader {
    /// Bind the statsd listeners `eff` adds to `cur`, and note the ones it removes.
    fn bind_listeners(&self, cur: &Config, eff: &Config) -> Result<NewListeners, ReloadError> {
        let bind_err = |proto: &'static str, addr: String| {
            move |source| ReloadError::Bind {
                proto,
                addr,
                source,
            }
        };
        let (o, n) = (&cur.listen, &eff.listen);
        let mut new = NewListeners::default();
        for a in n.udp.iter().filter(|a| !o.udp.contains(a)) {
            let group = udp::bind_group(*a, n.udp_threads, n.udp_recv_buffer)
                .map_err(bind_err("udp", a.to_string()))?;
            for socket in group {
                let shard = Arc::new(Mutex::new(Shard::new(&eff.aggregate)));
                new.udp.push((*a, socket, shard));
            }
        }
        for a in n.tcp.iter().filter(|a| !o.tcp.contains(a)) {
            new.tcp
                .push((*a, tcp::bind(*a).map_err(bind_err("tcp", a.to_string()))?));
        }
        for u in n.unix.iter().filter(|u| !o.unix.contains(u)) {
            let l = unix::bind(&u.path, u.mode)
                .map_err(bind_err("unix", u.path.display().to_string()))?;
            new.unix.push((u.path.clone(), l));
        }
        if let (Some(or), Some(nr)) = (&cur.relay, &eff.relay) {
            for (o, n, proto, key) in [
                (
                    &or.line_tcp,
                    &nr.line_tcp,
                    "carbon tcp",
                    ListenAddr::CarbonTcp as fn(SocketAddr) -> ListenAddr,
                ),
                (&or.pickle, &nr.pickle, "pickle tcp", ListenAddr::Pickle),
            ] {
                for a in n.iter().filter(|a| !o.contains(a)) {
                    let l = tcp::bind(*a).map_err(bind_err(proto, a.to_string()))?;
                    new.carbon_tcp.push((key(*a), l));
                }
                new.stop
                    .extend(o.iter().filter(|a| !n.contains(a)).map(|a| key(*a)));
            }
            for a in nr.line_udp.iter().filter(|a| !or.line_udp.contains(a)) {
                let u = carbon::bind_udp(*a).map_err(bind_err("carbon udp", a.to_string()))?;
                new.carbon_udp.push((*a, u));
            }
            new.stop.extend(
                or.line_udp
                    .iter()
                    .filter(|a| !nr.line_udp.contains(a))
                    .map(|a| ListenAddr::CarbonUdp(*a)),
            );
        }
        new.stop.extend(
            o.udp
                .iter()
                .filter(|a| !n.udp.contains(a))
                .map(|a| ListenAddr::Udp(*a)),
        );
        new.stop.extend(
            o.tcp
                .iter()
                .filter(|a| !n.tcp.contains(a))
                .map(|a| ListenAddr::Tcp(*a)),
        );
        new.stop.extend(
            o.unix
                .iter()
                .filter(|u| !n.unix.contains(u))
                .map(|u| ListenAddr::Unix(u.path.clone())),
        );
        Ok(new)
    }

    /// Start the listeners [`Reloader::bind_listeners`] bound (their shards
    /// are already the flusher's), then stop the removed ones: a UDP thread
    /// reads what the kernel holds first; stream connections of a removed
    /// listener end as at shutdown.
    fn start_listeners(&self, new: NewListeners, eff: &Config) {
        let raw = self.streams.raw.clone();
        let mut stops = self.stops.lock().unwrap_or_else(|e| e.into_inner());
        for (conf, socket, shard) in new.udp {
            let ingest = Ingest::new(
                &eff.parse,
                shard,
                self.stats.clone(),
                raw.clone(),
                eff.log.dump_messages,
            );
            let addr = socket.local_addr().unwrap_or(conf);
            self.stats.udp_socket(addr, udp::inode(&socket));
            let stop = stops.token(&self.token, ListenAddr::Udp(conf));
            let task = self.stats.task(&format!("udp/{addr}"));
            match udp::spawn(socket, ingest, stop, eff.listen.udp_batch, task) {
                Ok(h) => {
                    tracing::info!(proto = "udp", %addr, "listening");
                    self.udp_threads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(h);
                }
                Err(e) => {
                    tracing::error!(proto = "udp", %addr, error = %e, "cannot start a receive thread")
                }
            }
        }
        let ctx = |stop: CancellationToken| {
            Arc::new(StreamCtx {
                parse: eff.parse.clone(),
                shard: self.streams.shard.clone(),
                stats: self.stats.clone(),
                raw: raw.clone(),
                dump_messages: eff.log.dump_messages,
                max_line_length: eff.listen.max_line_length,
                idle_timeout: eff.listen.idle_timeout,
                connections: self.streams.connections.clone(),
                tracker: self.streams.tracker.clone(),
                token: stop,
            })
        };
        for (conf, l) in new.tcp {
            tracing::info!(proto = "tcp", addr = %conf, "listening");
            let stop = stops.token(&self.token, ListenAddr::Tcp(conf));
            let c = ctx(stop.clone());
            let addr = l.local_addr().unwrap_or(conf);
            let task = self.stats.task(&format!("tcp/{addr}"));
            spawn_listener(&self.streams.tracker, task, stop, l, move |l| {
                tcp::accept_loop(l, c.clone())
            });
        }
        for (path, l) in new.unix {
            tracing::info!(proto = "unix", addr = %path.display(), "listening");
            let stop = stops.token(&self.token, ListenAddr::Unix(path.clone()));
            let c = ctx(stop.clone());
            let task = self.stats.task(&format!("unix/{}", path.display()));
            spawn_listener(&self.streams.tracker, task, stop, l, move |l| {
                unix::accept_loop(l, path.clone(), c.clone())
            });
        }
        if let (Some(router), Some(rc)) = (&self.router, &eff.relay) {
            // The first router: it forwards to the live one.
            let cctx = |stop: CancellationToken| {
                Arc::new(carbon::CarbonCtx {
                    router: router.clone(),
                    opts: rc.line,
                    max_frame_bytes: rc.max_frame_bytes,
                    tracker: self.streams.tracker.clone(),
                    token: stop,
                })
            };
            for (key, l) in new.carbon_tcp {
                let kind = match key {
                    ListenAddr::Pickle(_) => carbon::StreamKind::Pickle,
                    _ => carbon::StreamKind::Line,
                };
                tracing::info!(listener = ?key, "relay listening");
                let task = self.stats.task(&match (&key, l.local_addr()) {
                    (ListenAddr::Pickle(_), Ok(a)) => format!("pickle-tcp/{a}"),
                    (_, Ok(a)) => format!("carbon-tcp/{a}"),
                    (_, Err(_)) => format!("{key:?}"),
                });
                let stop = stops.token(&self.token, key);
                let c = cctx(stop.clone());
                spawn_listener(&self.streams.tracker, task, stop, l, move |l| {
                    carbon::accept_loop(l, kind, c.clone())
                });
            }
            for (conf, u) in new.carbon_udp {
                tracing::info!(proto = "carbon udp", addr = %conf, "relay listening");
                let stop = stops.token(&self.token, ListenAddr::CarbonUdp(conf));
                let c = cctx(stop.clone());
                let addr = u.local_addr().unwrap_or(conf);
                let task = self.stats.task(&format!("carbon-udp/{addr}"));
                spawn_listener(&self.streams.tracker, task, stop, u, move |u| {
                    carbon::udp_loop(u, c.clone())
                });
            }
        }
        for addr in &new.stop {
            if stops.stop(addr) {
                tracing::info!(listener = ?addr, "listener removed by the reload");
            }
            if let ListenAddr::Udp(a) = addr {
                self.stats.remove_udp_socket(*a);
            }
        }
    }

    /// Start `next`'s writers, send every point to it from now on, and let
    /// the old router's writers deliver what their queues hold within
    /// `deadline`; what they cannot is counted as dropped (as at shutdown).
    fn swap_relay(
        &self,
        first: &Arc<Router>,
        next: Arc<Router>,
        rc: &crate::config::relay::RelayConfig,
        deadline: std::time::Duration,
    ) {
        let runtime = RelayRuntime::start(next.clone(), rc, &self.stats);
        if !Arc::ptr_eq(&first.live().stats, &next.stats) {
            self.stats.set_relay(next.stats.clone());
        }
        if first.replace(next).is_err() {
            // Reloads hold `current`, so no other reload raced this one.
            tracing::error!("relay router was replaced concurrently; keeping the other");
        }
        let old = self
            .relay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(runtime);
        if let Some(old) = old {
            let drained = tokio::spawn(old.shutdown(deadline));
            // Shutdown waits for it with the sinks.
            self.sink_tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(drained);
        }
        tracing::info!("relay rules and clusters replaced; the old queues drain");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml::from_str;

    fn cfg(extra: &str) -> Config {
        let base = "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[http]\nenabled = false\n[admin]\nenabled = false\n";
        from_str(&format!("{base}{extra}"), "test.toml").expect("valid")
    }

    const G1: &str = "[[sink]]\ntype = \"graphite\"\nname = \"a\"\naddress = \"127.0.0.1:2003\"\n";
    const G2: &str = "[[sink]]\ntype = \"graphite\"\nname = \"b\"\naddress = \"127.0.0.1:2004\"\n";

    #[test]
    fn same_config_changes_nothing() {
        let c = cfg(G1);
        let p = plan(&c, &c);
        assert_eq!(p.effective, c);
        assert!(p.start.is_empty() && p.stop.is_empty());
        assert!(p.report.applied.is_empty() && p.report.restart_required.is_empty());
        assert_eq!(p.report.sinks_unchanged, vec!["a"]);
    }

    #[test]
    fn sinks_added_removed_changed() {
        let old = cfg(&format!("{G1}{G2}"));
        let g2b = G2.replace("2004", "2005");
        let g3 = "[[sink]]\ntype = \"console\"\nname = \"c\"\n";
        let new = cfg(&format!("{g2b}{g3}"));
        let p = plan(&old, &new);
        assert_eq!(p.report.sinks_added, vec!["c"]);
        assert_eq!(p.report.sinks_changed, vec!["b"]);
        assert_eq!(p.report.sinks_removed, vec!["a"]);
        assert_eq!(p.stop, vec!["b", "a"]);
        let started: Vec<_> = p.start.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(started, vec!["b", "c"]);
    }

    #[test]
    fn live_keys_applied_restart_keys_kept() {
        let old = cfg(G1);
        let new = cfg(&format!(
            "{G1}[flush]\npercentiles = [50, 99]\n[naming]\nprefix_stats = \"other\"\n"
        ));
        let p = plan(&old, &new);
        assert!(p
            .report
            .applied
            .contains(&"[flush] percentiles".to_string()));
        assert_eq!(p.report.restart_required, vec!["[naming] prefix_stats"]);
        assert_eq!(p.effective.naming.prefix_stats, old.naming.prefix_stats);
        assert_eq!(p.effective.compute.percentiles, new.compute.percentiles);
    }

    #[test]
    fn http_can_move_but_not_start() {
        let old = cfg("");
        let mut new = old.clone();
        new.http = Some("127.0.0.1:9999".parse().unwrap());
        new.admin = Some("127.0.0.1:9998".parse().unwrap());
        let p = plan(&old, &new);
        assert_eq!(p.report.restart_required, vec!["[http] enabled"]);
        assert_eq!(p.report.applied, vec!["[admin] enabled / address"]);
        assert_eq!(p.effective.http, None);
        let p = plan(&new, &old);
        assert!(p.report.restart_required.is_empty());
        assert_eq!(p.effective.http, None);
    }

    #[test]
    fn listeners_change_live_but_their_tuning_does_not() {
        let old = cfg("");
        let mut new = old.clone();
        new.listen.tcp.push("127.0.0.1:8125".parse().unwrap());
        new.listen.udp_threads += 1;
        let p = plan(&old, &new);
        assert_eq!(p.report.applied, vec!["[statsd] tcp"]);
        assert_eq!(p.report.restart_required, vec!["[statsd] udp_threads"]);
        assert_eq!(p.effective.listen.tcp, new.listen.tcp);
        assert_eq!(p.effective.listen.udp_threads, old.listen.udp_threads);
    }

    #[test]
    fn a_unix_socket_mode_change_needs_a_restart() {
        let mut old = cfg("");
        old.listen.unix.push(crate::config::UnixListen {
            path: "/run/s.sock".into(),
            mode: Some(0o660),
        });
        let mut new = old.clone();
        new.listen.unix[0].mode = Some(0o600);
        let p = plan(&old, &new);
        assert_eq!(p.report.restart_required, vec!["[statsd] unix (mode)"]);
        assert_eq!(p.effective.listen.unix, old.listen.unix);
    }
}

//! The running server: one wiring path for the start and every reload.
//!
//! A change of config is a [`Plan`] (pure, [`diff::plan`]): which
//! listeners, outputs and front ends to add and remove, and what else
//! changes. The start is the change from nothing, applied to an empty
//! [`Runtime`]; a reload is the change from the running config, applied to
//! the running one. Either way, [`Runtime::prepare`] first does everything
//! that can fail (build the relay's router and the outputs, bind every new
//! socket) and changes nothing, so a change that cannot run is refused
//! whole; then [`Runtime::commit`] applies it and cannot fail.
//!
//! - [`listeners`]: bind, start and stop every listener kind.
//! - [`outputs`]: build and start outputs (the [`crate::sink`] surface).
//! - [`crate::flusher`]: the flusher thread, which merges the shards into
//!   the registry and hands each flush to the outputs.
//! - [`reload`]: where a reload reads its config from, one at a time.
//! - Values statsyard makes itself go into its own shard, which the
//!   flusher merges like a listener's: the host collector's
//!   ([`crate::host`], a thread started and replaced from the diff) and
//!   liveness's gauges ([`crate::liveness`], judged at every flush by an
//!   observer among the flusher's outputs). Events go through the
//!   [`crate::events::Hub`], which the outputs that take events are wired to.
//! - The front ends (HTTP, the admin console) are served here too; what
//!   they read is [`crate::front::Front`], whose [`Settings`] (the interval,
//!   the `config` lines) every change updates.
//!
//! Every long-running task runs under [`crate::supervise`]: a panic
//! restarts the task, or abandons the one unit of work, and is counted.
//!
//! The shutdown, in order ([`Runtime::shutdown`]): listeners stop reading
//! and drain what the kernel holds (bounded) and the host collector stops,
//! the raw tap closes (the repeaters' queues close), the flusher runs the
//! final flush and exits (the flush outputs' queues close), the events hub
//! lets go of its queues, sinks deliver what they hold within
//! `shutdown_timeout`, then the relay delivers its queues.
//!
//! This module sees every part; only `crate::server` and `main.rs` see it.
//!
//! Owns the running server's parts and the one path that changes them. Imports
//! everything it wires (listeners, outputs, front ends, the flusher, the
//! forwarding roles, host, liveness, events); only [`crate::server`] imports
//! it.

pub mod listeners;
pub mod outputs;
pub mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::aggregate::{Registry, Shard};
use crate::config::diff::{self, ListenAddr, Plan, RelayChange, EXPORTER};
use crate::config::Config;
use crate::events::Hub;
use crate::flusher::{Flusher, FlusherBusy, FlusherHandle, FlusherMsg, Output, Reconfigure};
use crate::front::{Front, Settings};
use crate::gate::Gate;
use crate::host::HostTask;
use crate::listener::{SharedShard, SideCtx};
use crate::liveness::{LiveObserver, Liveness};
use crate::relay::router::Router;
use crate::relay::RelayRuntime;
use crate::shutdown::{with_deadline, CancellationToken};
use crate::sink::prometheus::sent::SentKeys;
use crate::sink::BuildCx;
use crate::sink::SinkError;
use crate::stats::Stats;
use crate::supervise::supervise_socket;
use listeners::{Bound, Listeners, Started, TlsConfigs};
use outputs::{ExtraSink, Outputs, Prepared};
use reload::{Reloader, Source};

/// Why a change (the start, or a reload) was refused. At a reload, the old
/// config keeps running in every case.
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
    /// A new address cannot be bound (in use, no permission, no such address).
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
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A listener's TLS settings cannot be used (the certificate files
    /// changed since they were checked).
    #[error("TLS of {listener}: {reason}")]
    Tls { listener: String, reason: String },
    /// An output that is not in the config has the name of another output.
    #[error("sink {0}: another sink has this name")]
    SinkName(String),
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
                | ReloadError::SinkName(_)
                | ReloadError::Tls { .. }
        )
    }
}

impl From<ReloadError> for crate::front::Refused {
    fn from(e: ReloadError) -> Self {
        crate::front::Refused {
            config: e.is_config(),
            message: e.to_string(),
        }
    }
}

/// How long listeners get to drain what the kernel already holds at shutdown.
const LISTENER_DRAIN: Duration = Duration::from_secs(5);

/// The two servers whose address a change can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrontEnd {
    Http = 0,
    Admin = 1,
}

impl FrontEnd {
    fn proto(self) -> &'static str {
        match self {
            FrontEnd::Http => "http",
            FrontEnd::Admin => "admin",
        }
    }
}

/// What [`Runtime::prepare`] built and bound, for [`Runtime::commit`].
pub struct Change {
    /// A new router (the relay starts, or its routing changed).
    router: Option<Arc<Router>>,
    outputs: Vec<Prepared>,
    fronts: Vec<(FrontEnd, Option<TcpListener>)>,
    bound: Bound,
    /// TLS of the new listeners and of the kept ones whose TLS changed.
    tls: TlsConfigs,
    /// The HTTP server's new TLS, when its web config changed.
    web_tls: Option<Option<Arc<rustls::ServerConfig>>>,
}

/// Everything that runs, and the config it runs.
pub struct Runtime {
    /// The running config: the effective one of the last change.
    config: Option<Config>,
    stats: Arc<Stats>,
    /// The server's token; every task stops on one of its children.
    token: CancellationToken,
    front: Arc<Front>,
    flusher: FlusherHandle,
    /// The receiver the flusher thread takes when it starts.
    flusher_rx: Option<std::sync::mpsc::Receiver<FlusherMsg>>,
    flusher_thread: Option<std::thread::JoinHandle<()>>,
    listeners: Listeners,
    outputs: Outputs,
    /// The first router: listeners and `relay` sinks hold it, and it
    /// forwards to the live one after a reload replaced it.
    router: Option<Arc<Router>>,
    relay: Option<RelayRuntime>,
    /// Stops the running HTTP server and admin console, and where each listens.
    fronts: [Option<(CancellationToken, Option<SocketAddr>)>; 2],
    /// Their allow-lists (and HTTP's TLS), kept across moves and reloads.
    gates: [Arc<Gate>; 2],
    /// How rewritten keys were sent, noted by ingest for the Prometheus
    /// exporter; only when HTTP (so `/metrics`) runs from the start.
    sent: Option<Arc<SentKeys>>,
    /// The values statsyard makes itself (host statistics, liveness gauges).
    own_shard: SharedShard,
    liveness: Arc<Liveness>,
    hub: Arc<Hub>,
    /// The host collector, while `[host]` is on.
    host: Option<HostTask>,
    /// The agent role's handle for reloads, while `[forward]` is on.
    forwarder: Option<crate::forward::agent::Forwarder>,
    /// The aggregator role, while `[aggregator]` is on.
    aggregator: Option<AggregatorRuntime>,
}

/// The aggregator role's running parts.
struct AggregatorRuntime {
    pending: Arc<crate::forward::aggregator::Pending>,
    gate: Arc<Gate>,
    /// Stops its listener (first thing at shutdown).
    stop: CancellationToken,
}

/// A started server.
pub struct Running {
    /// Bound UDP addresses, in config order (useful with port 0).
    pub udp: Vec<SocketAddr>,
    /// Bound TCP addresses, in config order.
    pub tcp: Vec<SocketAddr>,
    /// Bound unix socket paths.
    pub unix: Vec<PathBuf>,
    /// The HTTP server's bound address, when it is enabled.
    pub http: Option<SocketAddr>,
    /// The admin console's bound address, when it is enabled.
    pub admin: Option<SocketAddr>,
    /// The aggregator listener's bound address (`[aggregator] listen`).
    pub aggregator: Option<SocketAddr>,
    /// What the front ends share: `health`, the settings in effect...
    pub front: Arc<Front>,
    /// Bound relay carbon-line TCP addresses, in config order.
    pub carbon_tcp: Vec<SocketAddr>,
    /// Bound relay carbon-line UDP addresses.
    pub carbon_udp: Vec<SocketAddr>,
    /// Bound relay pickle addresses.
    pub pickle: Vec<SocketAddr>,
    pub stats: Arc<Stats>,
    /// Reloads the config (SIGHUP, `POST /-/reload`).
    pub reload: Arc<Reloader>,
    token: CancellationToken,
    done: JoinHandle<()>,
}

impl Running {
    /// Begin the ordered shutdown; [`Running::wait`] returns when it is over.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Wait until the server has shut down (after [`Running::shutdown`] or a
    /// signal handled by [`crate::server::run`]).
    pub async fn wait(self) {
        if let Err(e) = self.done.await {
            tracing::error!(error = %e, "shutdown task failed");
        }
    }
}

/// Start a server: the change from nothing to `config`, plus outputs that
/// are not in the config. Binds every socket and builds every output before
/// it spawns anything, so a config that cannot run fails whole, with
/// nothing left behind.
pub async fn start(
    config: Config,
    source: Source,
    extra: Vec<ExtraSink>,
) -> Result<Running, ReloadError> {
    for w in &config.warnings {
        tracing::warn!(source = %config.source, "{w}");
    }
    let stats = Stats::new();
    let token = CancellationToken::new();
    let (flusher, flusher_rx) = FlusherHandle::channel();
    // Prometheus label values stay as sent: for /metrics and remote write
    // (which render the same exporter), when either runs from the start.
    let prometheus_out = config.http.is_some()
        || config
            .sinks
            .iter()
            .any(|s| s.kind == crate::sink::prometheus_remote_write::KIND);
    let sent =
        prometheus_out.then(|| Arc::new(SentKeys::new(config.prometheus.options.max_series)));
    let liveness = Arc::new(Liveness::new(stats.liveness.clone()));
    let hub = Arc::new(Hub::new(stats.events.clone()));
    let side = SideCtx {
        liveness: liveness.clone(),
        hub: hub.clone(),
    };
    let front = Arc::new(Front::new(
        stats.clone(),
        flusher.clone(),
        config.health_up,
        side.clone(),
    ));
    let mut rt = Runtime {
        config: None,
        listeners: Listeners::new(&config, sent.clone(), side),
        sent,
        stats: stats.clone(),
        token: token.clone(),
        front: front.clone(),
        flusher,
        flusher_rx: Some(flusher_rx),
        flusher_thread: None,
        outputs: Outputs::default(),
        router: None,
        relay: None,
        fronts: [None, None],
        gates: [
            Arc::new(Gate::new("http", stats.clone())),
            Arc::new(Gate::new("admin", stats.clone())),
        ],
        own_shard: Arc::new(std::sync::Mutex::new(Shard::new(&config.aggregate))),
        liveness,
        hub,
        host: None,
        forwarder: None,
        aggregator: None,
    };
    let plan = diff::plan(None, &config);
    let mut prepared = rt.prepare(&plan)?;
    for e in extra {
        if diff::outputs(&config).iter().any(|s| s.name == e.name)
            || prepared.outputs.iter().any(|p| p.name() == e.name)
        {
            return Err(ReloadError::SinkName(e.name));
        }
        prepared.outputs.push(outputs::prepare_extra(e, &stats)?);
    }
    // The forwarding roles: built before the flusher, which takes their
    // halves; their sockets and tasks start with it.
    let roles = rt.start_roles(&config)?;
    let aggregator_addr = roles.listener.as_ref().and_then(|l| l.local_addr().ok());
    rt.start_flusher(&config, roles.outflow, roles.inflow)?;
    if let Some(l) = roles.listener {
        rt.serve_aggregator(l);
    }
    let started = rt.commit(plan, prepared).await;
    let fronts = (
        rt.front_addr(FrontEnd::Http),
        rt.front_addr(FrontEnd::Admin),
    );
    let reloader = Arc::new(Reloader::new(source, rt));
    front.set_reloader(reloader.clone());

    let shutdown_timeout = config.shutdown_timeout;
    let (t, r) = (token.clone(), reloader.clone());
    let done = tokio::spawn(async move {
        t.cancelled().await;
        // A reload in progress finishes first; none starts after this.
        let mut rt = r.runtime().lock().await;
        rt.shutdown(shutdown_timeout).await;
    });
    let addrs = |f: fn(&ListenAddr) -> bool| -> Vec<SocketAddr> {
        started
            .iter()
            .filter(|(k, _)| f(k))
            .flat_map(|(_, a)| {
                // One per address, not per SO_REUSEPORT socket.
                let mut a = a.clone();
                a.dedup();
                a
            })
            .collect()
    };
    Ok(Running {
        udp: addrs(|k| matches!(k, ListenAddr::Udp(_))),
        tcp: addrs(|k| matches!(k, ListenAddr::Tcp(_))),
        unix: config.listen.unix.iter().map(|u| u.path.clone()).collect(),
        http: fronts.0,
        admin: fronts.1,
        aggregator: aggregator_addr,
        front,
        carbon_tcp: addrs(|k| matches!(k, ListenAddr::CarbonTcp(_))),
        carbon_udp: addrs(|k| matches!(k, ListenAddr::CarbonUdp(_))),
        pickle: addrs(|k| matches!(k, ListenAddr::Pickle(_))),
        stats,
        reload: reloader,
        token,
        done,
    })
}

impl Runtime {
    /// The running config (`None` only before the start is committed).
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Everything of `plan` that can fail: the relay's new router, the new
    /// outputs, the new front-end and listener sockets. Nothing runs yet and
    /// nothing running is touched; dropping the result undoes it.
    pub fn prepare(&self, plan: &Plan) -> Result<Change, ReloadError> {
        let eff = &plan.effective;
        let router = match (&eff.relay, plan.relay, &self.router) {
            (Some(rc), RelayChange::Start, _) => Some(Arc::new(Router::new(rc)?)),
            (Some(rc), RelayChange::Replace, Some(first)) => {
                Some(Arc::new(Router::replacing(rc, first)?))
            }
            _ => None,
        };
        // Outputs route through the first router, which follows the live one.
        let relay = self.router.clone().or_else(|| router.clone());
        let mut outputs = Vec::with_capacity(plan.start.len());
        for spec in &plan.start {
            // A changed sink keeps its counters: same name, same series.
            let stats = self
                .stats
                .sink_named(&spec.name)
                .unwrap_or_else(|| Arc::new(Stats::unregistered_sink(&spec.name)));
            let cx = BuildCx {
                name: spec.name.clone(),
                naming: eff.naming.clone(),
                stats,
                shutdown_timeout: eff.shutdown_timeout,
                relay: relay.clone(),
                sent_keys: self.sent.clone(),
            };
            outputs.push(outputs::prepare(spec, cx)?);
        }
        // New addresses are bound before the old ones close.
        let mut fronts = Vec::new();
        for (end, new) in [(FrontEnd::Http, plan.http), (FrontEnd::Admin, plan.admin)] {
            let Some(new) = new else { continue };
            let l = match new {
                Some(addr) => Some(bind_front(addr).map_err(|source| ReloadError::Bind {
                    proto: end.proto(),
                    addr: addr.to_string(),
                    source,
                })?),
                None => None,
            };
            fronts.push((end, l));
        }
        let bound = listeners::bind(&plan.listen, eff)?;
        let mut tls = Vec::new();
        for key in plan.listen.iter().chain(&plan.tls) {
            let built = eff
                .tls
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, t)| t.server_config())
                .transpose()
                .map_err(|reason| ReloadError::Tls {
                    listener: key.key(),
                    reason,
                })?;
            tls.push((key.clone(), built));
        }
        let web_tls = if plan.web {
            let built = eff
                .web
                .as_ref()
                .and_then(|w| w.tls.as_ref())
                .map(|t| t.server_config())
                .transpose()
                .map_err(|reason| ReloadError::Tls {
                    listener: "[http] web_config_file".into(),
                    reason,
                })?;
            Some(built)
        } else {
            None
        };
        Ok(Change {
            router,
            outputs,
            fronts,
            bound,
            tls,
            web_tls,
        })
    }

    /// Start the forwarding roles `c` asks for: the agent's forwarder task
    /// (which the shutdown waits for with the sinks), the aggregator's
    /// pending state (its journal replayed) and bound listener. Their
    /// flusher halves go to [`Runtime::start_flusher`].
    fn start_roles(&mut self, c: &Config) -> Result<Roles, ReloadError> {
        let mut roles = Roles {
            outflow: None,
            inflow: None,
            listener: None,
        };
        if let Some(f) = &c.forward {
            let (side, forwarder, task) = crate::forward::agent::start(
                f,
                c.aggregate.timer_exact_samples,
                c.shutdown_timeout,
                self.stats.clone(),
            );
            self.outputs.track(task);
            self.forwarder = Some(forwarder);
            roles.outflow = Some(Box::new(side));
        }
        if let Some(a) = &c.aggregator {
            let listener = bind_front(a.listen).map_err(|source| ReloadError::Bind {
                proto: "aggregator",
                addr: a.listen.to_string(),
                source,
            })?;
            let pending = crate::forward::aggregator::Pending::open(
                c.compute.interval.as_millis() as u64,
                a.journal_dir.as_deref(),
                a.max_message_bytes,
                c.aggregate.timer_exact_samples,
                self.stats.aggregator(),
                self.flusher.clone(),
            )
            .map_err(|e| {
                ReloadError::Invalid(format!(
                    "[aggregator] journal_dir {}: {e}",
                    a.journal_dir
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ))
            })?;
            let gate = Arc::new(Gate::new("aggregator", self.stats.clone()));
            gate.set_allow(a.allow.clone());
            let tls = a
                .tls
                .as_ref()
                .map(|t| t.server_config())
                .transpose()
                .map_err(|reason| ReloadError::Tls {
                    listener: "[aggregator] listen".into(),
                    reason,
                })?;
            gate.set_tls(tls);
            roles.inflow = Some(Box::new(crate::forward::aggregator::AggregatorSide(
                pending.clone(),
            )));
            roles.listener = Some(listener);
            self.aggregator = Some(AggregatorRuntime {
                pending,
                gate,
                stop: self.token.child_token(),
            });
        }
        Ok(roles)
    }

    /// Serve `/v1/forward` on the aggregator's listener.
    fn serve_aggregator(&mut self, l: TcpListener) {
        let Some(a) = &self.aggregator else { return };
        if let Ok(addr) = l.local_addr() {
            tracing::info!(proto = "aggregator", %addr, "listening");
        }
        let task = self.stats.task("aggregator");
        let (stats, gate, stop) = (self.stats.clone(), a.gate.clone(), a.stop.clone());
        let app = crate::forward::aggregator::router(a.pending.clone());
        tokio::spawn(supervise_socket(task, Some(stop.clone()), l, move |l| {
            crate::http::server::run(l, stats.clone(), gate.clone(), app.clone(), stop.clone())
        }));
    }

    /// Spawn the flusher thread with the registry (restored from the state
    /// file), the stream shard and the forwarding roles; the first commit
    /// gives it the rest.
    fn start_flusher(
        &mut self,
        c: &Config,
        outflow: Option<Box<dyn crate::flusher::Outflow>>,
        inflow: Option<Box<dyn crate::flusher::Inflow>>,
    ) -> Result<(), ReloadError> {
        let Some(rx) = self.flusher_rx.take() else {
            return Ok(());
        };
        let mut registry = Registry::new(&c.aggregate);
        if let Some(state) = &c.state {
            restore_state(&mut registry, state);
        }
        // Liveness is judged at every flush, whatever its settings (off, it
        // does nothing): an observer for the life of the flusher.
        let liveness = Output {
            name: crate::liveness::OBSERVER.to_string(),
            queue: None,
            observer: Some(Box::new(LiveObserver::new(
                self.liveness.clone(),
                self.hub.clone(),
                self.own_shard.clone(),
                self.stats.clone(),
            ))),
        };
        let flusher = Flusher::new(
            vec![self.listeners.stream_shard(), self.own_shard.clone()],
            registry,
            c.compute.clone(),
            vec![liveness],
            self.stats.clone(),
            &c.naming.prefix_stats,
            c.self_metrics,
        )
        .with_state(c.state.clone())
        .with_roles(outflow, inflow);
        self.flusher_thread = Some(flusher.spawn(rx).map_err(ReloadError::Thread)?);
        Ok(())
    }

    /// Apply `plan` with what [`Runtime::prepare`] made of it. Cannot fail:
    /// from here on the running server changes.
    pub async fn commit(&mut self, plan: Plan, p: Change) -> Started {
        let eff = plan.effective;
        let old = self.config.take();
        // The relay first: the outputs and listeners below route through it.
        match (p.router, plan.relay, &eff.relay) {
            (Some(router), RelayChange::Start, Some(rc)) => {
                self.stats.set_relay(router.stats.clone());
                self.relay = Some(RelayRuntime::start(router.clone(), rc, &self.stats));
                self.router = Some(router);
            }
            (Some(next), RelayChange::Replace, Some(rc)) => {
                self.swap_relay(next, rc, eff.shutdown_timeout)
            }
            _ => {}
        }
        let removed: Vec<String> = plan.stop.clone();
        let wiring = self.outputs.start(p.outputs, &self.stats);
        // The flusher feeds the new set from its next flush on; a removed or
        // changed sink loses its queue's sender, which is its signal to
        // deliver what it holds and stop.
        let r = self
            .flusher
            .reconfigure(Reconfigure {
                compute: eff.compute.clone(),
                timing: eff.timing,
                aggregate: eff.aggregate.clone(),
                self_metrics: eff.self_metrics,
                remove: removed.clone(),
                add: wiring.flush,
                shards: p.bound.shards(),
            })
            .await;
        if let Err(e) = r {
            // Only a flusher that has stopped refuses (the shutdown).
            tracing::error!(error = %e, "the flusher did not take the new outputs");
        }
        // The repeaters: kept ones keep their queue; removed and changed ones
        // close theirs once every listener has taken the new list.
        if !wiring.raw.is_empty() || !removed.is_empty() {
            let (now, _) = self.listeners.raw.current();
            let mut next: Vec<_> = now
                .iter()
                .filter(|(name, _)| !removed.contains(name))
                .cloned()
                .collect();
            next.extend(wiring.raw);
            self.listeners.raw.replace(next);
        }
        for name in &plan.report.sinks_removed {
            self.stats.remove_sink(name);
            tracing::info!(sink = %name, "sink removed: delivering what it holds, then stopping");
        }
        for name in &plan.report.sinks_changed {
            tracing::info!(sink = %name, "sink changed: the old one delivers what it holds, the new one takes the next flush");
        }
        if wiring.scrape.is_some() || removed.iter().any(|n| n == EXPORTER) {
            self.front.set_scrape(wiring.scrape);
        }
        self.listeners.refresh(&eff, &p.tls);
        // Events: kept outputs keep their queue, removed ones let go of it.
        if !wiring.events.is_empty() || !removed.is_empty() {
            let mut outs: Vec<_> = self
                .hub
                .outputs()
                .iter()
                .filter(|o| !removed.contains(&o.name))
                .cloned()
                .collect();
            outs.extend(wiring.events);
            self.hub.set_outputs(outs);
        }
        self.hub.set_limits(eff.events.keep, eff.events.max_checks);
        self.liveness.configure(eff.liveness.as_ref());
        if plan.forward {
            if let (Some(fw), Some(f)) = (&self.forwarder, &eff.forward) {
                fw.reconfigure(f);
            }
        }
        if let (Some(a), Some(ac)) = (&self.aggregator, &eff.aggregator) {
            a.pending.set(
                eff.compute.interval.as_millis() as u64,
                ac.max_message_bytes,
            );
            if plan.aggregator {
                a.gate.set_allow(ac.allow.clone());
                match ac.tls.as_ref().map(|t| t.server_config()).transpose() {
                    Ok(t) => a.gate.set_tls(t),
                    Err(e) => {
                        tracing::error!(error = %e, "[aggregator] TLS: keeping the old settings")
                    }
                }
            }
        }
        if let Some(host) = plan.host {
            self.restart_host(host);
        }
        let started = self.listeners.start(
            p.bound,
            &eff,
            &p.tls,
            &self.stats,
            &self.token,
            self.router.as_ref(),
        );
        let [http_gate, admin_gate] = &self.gates;
        http_gate.set_allow(eff.http_allow.clone());
        admin_gate.set_allow(eff.admin_allow.clone());
        if let Some(t) = p.web_tls {
            http_gate.set_tls(t);
            self.front.set_web(eff.web.clone());
        }
        self.listeners.stop(&plan.unlisten, &self.stats);
        for (end, l) in p.fronts {
            match l {
                Some(l) => self.serve(end, l),
                None => {
                    tracing::info!(proto = end.proto(), "stopped by the reload");
                    self.stop_front(end, None);
                }
            }
        }
        if old.as_ref().map(|o| &o.admin_token) != Some(&eff.admin_token) {
            self.front.admin_token.set(eff.admin_token.as_deref());
        }
        let limits = &eff.aggregate.limits;
        self.front.set_settings(Settings {
            interval: eff.compute.interval,
            config_lines: crate::admin::config_lines(&eff),
            max_series: limits.max_series,
            series_limits: limits
                .prefixes
                .iter()
                .map(|p| (p.prefix.clone(), p.max))
                .collect(),
        });
        self.config = Some(eff);
        started
    }

    /// Stop the host collector, and start one for `c` (a start or a reload
    /// that changed `[host]`). The old one ends after the collection it may
    /// be in, off the runtime.
    fn restart_host(&mut self, c: Option<crate::host::HostConfig>) {
        if let Some(old) = self.host.take() {
            tokio::task::spawn_blocking(move || old.stop());
        }
        let Some(c) = c else { return };
        let (prefix, interval) = (c.prefix.clone(), c.interval);
        match HostTask::start(c, self.own_shard.clone(), self.stats.clone()) {
            Ok(t) => {
                tracing::info!(%prefix, interval = ?interval, "host statistics on");
                self.host = Some(t);
            }
            Err(e) => tracing::error!(error = %e, "cannot start the host collector"),
        }
    }

    /// Start `next`'s writers, send every point to it from now on, and let
    /// the old router's writers deliver what their queues hold within
    /// `deadline`; what they cannot is counted as dropped (as at shutdown).
    fn swap_relay(
        &mut self,
        next: Arc<Router>,
        rc: &crate::relay::config::RelayConfig,
        deadline: Duration,
    ) {
        let Some(first) = &self.router else { return };
        let runtime = RelayRuntime::start(next.clone(), rc, &self.stats);
        if !Arc::ptr_eq(&first.live().stats, &next.stats) {
            self.stats.set_relay(next.stats.clone());
        }
        if first.replace(next).is_err() {
            // Changes hold the runtime's lock, so none raced this one.
            tracing::error!("relay router was replaced concurrently; keeping the other");
        }
        if let Some(old) = self.relay.replace(runtime) {
            // Shutdown waits for it with the sinks.
            self.outputs.track(tokio::spawn(old.shutdown(deadline)));
        }
        tracing::info!("relay rules and clusters replaced; the old queues drain");
    }

    /// Serve HTTP or the admin console on `l`, and stop the one serving
    /// before, if any (its requests in flight finish).
    fn serve(&mut self, end: FrontEnd, l: TcpListener) {
        let addr = l.local_addr().ok();
        match addr {
            Some(a) => tracing::info!(proto = end.proto(), addr = %a, "listening"),
            None => tracing::info!(proto = end.proto(), "listening"),
        }
        let stop = self.token.child_token();
        // Supervised: a panic serves again on the same socket after the backoff.
        let task = self.stats.task(end.proto());
        let (front, st) = (self.front.clone(), stop.clone());
        let gate = self.gates[end as usize].clone();
        match end {
            FrontEnd::Http => {
                tokio::spawn(supervise_socket(task, Some(stop.clone()), l, move |l| {
                    crate::http::server::serve(l, front.clone(), gate.clone(), st.clone())
                }))
            }
            FrontEnd::Admin => {
                tokio::spawn(supervise_socket(task, Some(stop.clone()), l, move |l| {
                    crate::admin::serve(l, front.clone(), gate.clone(), st.clone())
                }))
            }
        };
        self.stop_front(end, Some((stop, addr)));
    }

    /// Stop the server of `end`, and remember `next` as the one running now.
    fn stop_front(&mut self, end: FrontEnd, next: Option<(CancellationToken, Option<SocketAddr>)>) {
        if let Some((old, _)) = std::mem::replace(&mut self.fronts[end as usize], next) {
            old.cancel();
        }
    }

    /// Where `end` listens, if it runs.
    fn front_addr(&self, end: FrontEnd) -> Option<SocketAddr> {
        self.fronts[end as usize].as_ref().and_then(|(_, a)| *a)
    }

    /// The ordered shutdown (see the module doc).
    async fn shutdown(&mut self, shutdown_timeout: Duration) {
        // Agents' messages stop first (they go on to another aggregator or
        // wait): what was accepted is flushed by the final flush.
        if let Some(a) = &self.aggregator {
            a.stop.cancel();
        }
        if !self.listeners.drain(LISTENER_DRAIN).await {
            tracing::warn!("listeners did not stop in time; flushing what they gave");
        }
        if let Some(host) = self.host.take() {
            let _ = tokio::task::spawn_blocking(move || host.stop()).await;
        }
        // The final flush. `stop` waits if the flusher's job queue is full:
        // off the runtime.
        let (handle, thread) = (self.flusher.clone(), self.flusher_thread.take());
        let _ = tokio::task::spawn_blocking(move || {
            handle.stop();
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
        // The final flush judged liveness for the last time: no event comes
        // after it, so the hub lets go of the outputs' queues.
        self.hub.close();
        // Sinks deliver what they hold, within the deadline.
        let tasks = self.outputs.take_tasks();
        let delivered = with_deadline(shutdown_timeout + Duration::from_secs(1), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        if delivered.is_none() {
            tracing::error!("sinks did not finish within shutdown_timeout");
        }
        // The relay delivers what its queues hold, within the deadline.
        if let Some(r) = self.relay.take() {
            r.shutdown(shutdown_timeout).await;
        }
        tracing::info!("stopped");
    }
}

/// What [`Runtime::start_roles`] made for the flusher and the listener.
struct Roles {
    outflow: Option<Box<dyn crate::flusher::Outflow>>,
    inflow: Option<Box<dyn crate::flusher::Inflow>>,
    listener: Option<TcpListener>,
}

/// Bind a TCP listener for HTTP or the admin console.
fn bind_front(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Restore the gauges (and counters) saved at the last shutdown. A state file
/// that cannot be read is logged, never fatal. Restored counters are removed
/// from the file at once, so that a crash before the next shutdown cannot
/// count them twice.
fn restore_state(registry: &mut Registry, conf: &crate::config::StateConfig) {
    let path = conf.path.display();
    let loaded = match crate::state::load(&conf.path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%path, error = %e, "cannot read the state file; starting without it");
            return;
        }
    };
    if loaded.bad_lines > 0 {
        tracing::warn!(%path, lines = loaded.bad_lines, "state file: unreadable lines skipped");
    }
    let mut state = loaded.state;
    for (key, value, ttl) in &state.gauges {
        registry.restore_gauge(key, *value, *ttl);
    }
    for (key, value) in &state.counters {
        registry.restore_counter(key, *value);
    }
    tracing::info!(
        %path,
        gauges = state.gauges.len(),
        counters = state.counters.len(),
        "state restored"
    );
    if !state.counters.is_empty() {
        state.counters.clear();
        if let Err(e) = crate::state::save(&conf.path, &state) {
            tracing::warn!(%path, error = %e, "cannot rewrite the state file without its counters");
        }
    }
}

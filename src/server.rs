//! Wires listeners, shards, the flusher and sinks together, and owns the
//! ordered shutdown described in [`crate::shutdown`].
//!
//! [`start`] binds every socket and builds every sink before it spawns
//! anything, so a config that cannot run fails whole, with nothing left behind.
//!
//! Every long-running task it spawns (sinks, listeners, the flusher's work,
//! relay writers, HTTP and the console) runs under [`crate::supervise`]: a
//! panic restarts the task, or abandons the one unit of work, and is counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::aggregate::{Registry, Shard};
use crate::config::Config;
use crate::flush::flusher::{Flusher, FlusherHandle, SinkQueue};
use crate::flush::naming::Naming;
use crate::http::prometheus::live::Live;
use crate::http::{Health, Shared};
use crate::listener::stream::StreamCtx;
use crate::listener::{carbon, tcp, udp, unix, Ingest, RawTap, SharedShard};
use crate::shutdown::{with_deadline, CancellationToken};
use crate::sink::{self, SinkError};
use crate::stats::{SinkStats, Stats, TaskStats};
use crate::supervise::{self, Backoff, Reopen, SinkFactory};

/// How long listeners get to drain what the kernel already holds at shutdown.
const LISTENER_DRAIN: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener address could not be bound (in use, no permission, no such address).
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A sink could not be built from its config.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The relay's routing table could not be built.
    #[error(transparent)]
    Relay(#[from] crate::relay::router::RouterError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// An [`ExtraSink`] has the name of another sink.
    #[error("sink {0}: another sink has this name")]
    SinkName(String),
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
    /// The `health` state that the console sets and `/health` reports.
    pub health: Arc<Health>,
    /// Bound relay carbon-line TCP addresses, in config order.
    pub carbon_tcp: Vec<SocketAddr>,
    /// Bound relay carbon-line UDP addresses.
    pub carbon_udp: Vec<SocketAddr>,
    /// Bound relay pickle addresses.
    pub pickle: Vec<SocketAddr>,
    pub stats: Arc<Stats>,
    /// Reloads the config (SIGHUP, `POST /-/reload`).
    pub reload: Arc<crate::reload::Reloader>,
    token: CancellationToken,
    done: JoinHandle<()>,
}

impl Running {
    /// Begin the ordered shutdown; [`Running::wait`] returns when it is over.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Wait until the server has shut down (after [`Running::shutdown`] or a signal
    /// handled by [`run`]).
    pub async fn wait(self) {
        if let Err(e) = self.done.await {
            tracing::error!(error = %e, "shutdown task failed");
        }
    }
}

/// A sink that is not in the config, added by the embedding program (or a
/// test) with [`start_with_extra_sinks`]. It runs like a configured sink:
/// its own bounded queue, under the supervisor, with its counters in
/// `/api/stats` under `name`. A reload never touches it.
pub struct ExtraSink {
    /// Unique among sinks.
    pub name: String,
    /// Capacity of its queue, in messages.
    pub queue: usize,
    /// Builds the sink, at start and again after it panicked.
    pub build: BuildSink,
}

/// Builds an [`ExtraSink`] with its counters.
pub type BuildSink =
    Box<dyn FnMut(Arc<SinkStats>) -> Result<Box<dyn sink::Sink>, SinkError> + Send>;

/// Builds a configured sink again after it panicked: the same spec, the
/// same naming, the same counters.
pub(crate) fn sink_factory(
    spec: &sink::SinkSpec,
    naming: &Naming,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
    router: Option<Arc<crate::relay::router::Router>>,
) -> SinkFactory {
    let (spec, naming) = (spec.clone(), naming.clone());
    Box::new(move || match (&spec.kind, &router) {
        (sink::SinkKind::Relay, Some(router)) => Ok(Box::new(crate::relay::sink::RelaySink::new(
            spec.name.clone(),
            router.clone(),
            naming.clone(),
            stats.clone(),
        ))),
        _ => sink::build(&spec, &naming, stats.clone(), shutdown_timeout),
    })
}

/// Run a sink on its queue under the supervisor (restarted from `factory`
/// if it panics); the task ends when the queue has closed and the sink has
/// delivered what it holds.
pub(crate) fn spawn_sink(
    s: Box<dyn sink::Sink>,
    factory: SinkFactory,
    rx: mpsc::Receiver<sink::SinkMsg>,
    sink_stats: Arc<SinkStats>,
    stats: &Stats,
) -> JoinHandle<()> {
    let task = stats.task(&format!("sink/{}", s.name()));
    tracing::info!(sink = s.name(), "sink started");
    tokio::spawn(async move {
        supervise::sink(s, factory, rx, sink_stats, task, Backoff::default()).await;
    })
}

/// Run a listener's loop on `tracker` under the supervisor: restarted on
/// the same socket if it panics, until it returns (its `stop` token).
pub(crate) fn spawn_listener<S, F, Fut>(
    tracker: &TaskTracker,
    task: Arc<TaskStats>,
    stop: CancellationToken,
    socket: S,
    run: F,
) where
    S: Reopen,
    F: FnMut(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tracker.spawn(supervise::supervise_socket(task, Some(stop), socket, run));
}

/// Start the server and run it until SIGINT or SIGTERM, then shut down in order.
pub async fn run(config: Config) -> Result<(), ServerError> {
    run_with(
        config,
        crate::reload::Source::none("no config file to re-read"),
    )
    .await
}

/// [`run`], reloading from `source` on SIGHUP.
pub async fn run_with(config: Config, source: crate::reload::Source) -> Result<(), ServerError> {
    // Watch SIGHUP before anything starts: its default action ends the
    // process, and `systemctl reload` may come at any time.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let running = start_with(config, source).await?;
    reload_on_sighup_until_stopped(&running, hup).await;
    tracing::info!("signal received, shutting down");
    running.shutdown();
    running.wait().await;
    Ok(())
}

/// Reload on every SIGHUP until SIGINT or SIGTERM. A refused reload is
/// logged and counted by the reloader; the server keeps running either way.
async fn reload_on_sighup_until_stopped(
    running: &Running,
    hup: std::io::Result<tokio::signal::unix::Signal>,
) {
    let mut hup = match hup {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; reload with POST /-/reload");
            crate::shutdown::signal().await;
            return;
        }
    };
    let stop = crate::shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = running.reload.reload().await;
            }
        }
    }
}

/// Bind, build and spawn everything the config describes (no reload source).
pub async fn start(config: Config) -> Result<Running, ServerError> {
    start_with(config, crate::reload::Source::none("started in-process")).await
}

/// [`start`], plus sinks that are not in the config (see [`ExtraSink`]).
pub async fn start_with_extra_sinks(
    config: Config,
    extra: Vec<ExtraSink>,
) -> Result<Running, ServerError> {
    start_inner(
        config,
        crate::reload::Source::none("started in-process"),
        extra,
    )
    .await
}

/// [`start`], with the reload source that SIGHUP and `POST /-/reload` use.
pub async fn start_with(
    config: Config,
    source: crate::reload::Source,
) -> Result<Running, ServerError> {
    start_inner(config, source, Vec::new()).await
}

async fn start_inner(
    config: Config,
    source: crate::reload::Source,
    extra: Vec<ExtraSink>,
) -> Result<Running, ServerError> {
    for w in &config.warnings {
        tracing::warn!(source = %config.source, "{w}");
    }
    let stats = Stats::new();
    let token = CancellationToken::new();

    // Phase 1: everything that can fail, nothing spawned yet.
    let listen = &config.listen;
    let mut udp_sockets = Vec::new();
    for addr in &listen.udp {
        let group = udp::bind_group(*addr, listen.udp_threads, listen.udp_recv_buffer).map_err(
            |source| ServerError::Bind {
                proto: "udp",
                addr: addr.to_string(),
                source,
            },
        )?;
        udp_sockets.extend(group.into_iter().map(|s| (*addr, s)));
    }
    let mut tcp_listeners = Vec::new();
    for addr in &listen.tcp {
        let l = tcp::bind(*addr).map_err(|source| ServerError::Bind {
            proto: "tcp",
            addr: addr.to_string(),
            source,
        })?;
        tcp_listeners.push((*addr, l));
    }
    let mut unix_listeners = Vec::new();
    for u in &listen.unix {
        let l = unix::bind(&u.path, u.mode).map_err(|source| ServerError::Bind {
            proto: "unix",
            addr: u.path.display().to_string(),
            source,
        })?;
        unix_listeners.push((l, u.path.clone()));
    }
    let bind_tcp = |proto: &'static str, addr: SocketAddr| {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| ServerError::Bind {
                proto,
                addr: addr.to_string(),
                source,
            })
    };
    let http_listener = config.http.map(|a| bind_tcp("http", a)).transpose()?;
    let admin_listener = config.admin.map(|a| bind_tcp("admin", a)).transpose()?;
    let mut relay = None;
    if let Some(rc) = &config.relay {
        let router = Arc::new(crate::relay::router::Router::new(rc)?);
        stats.set_relay(router.stats.clone());
        let bind_err = |proto: &'static str, addr: &SocketAddr| {
            let addr = addr.to_string();
            move |source| ServerError::Bind {
                proto,
                addr,
                source,
            }
        };
        let mut line_tcp = Vec::new();
        for a in &rc.line_tcp {
            line_tcp.push(tcp::bind(*a).map_err(bind_err("carbon tcp", a))?);
        }
        let mut pickle = Vec::new();
        for a in &rc.pickle {
            pickle.push(tcp::bind(*a).map_err(bind_err("pickle tcp", a))?);
        }
        let mut line_udp = Vec::new();
        for a in &rc.line_udp {
            line_udp.push(carbon::bind_udp(*a).map_err(bind_err("carbon udp", a))?);
        }
        relay = Some((router, rc.clone(), line_tcp, pickle, line_udp));
    }
    let mut sinks = Vec::new();
    for spec in &config.sinks {
        let sink_stats = stats.sink(&spec.name);
        let mut factory = sink_factory(
            spec,
            &config.naming,
            sink_stats.clone(),
            config.shutdown_timeout,
            relay.as_ref().map(|(router, ..)| router.clone()),
        );
        let s = factory()?;
        sinks.push((s, factory, spec.queue.max(1), sink_stats));
    }
    let mut names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    for mut e in extra {
        if names.contains(&e.name) {
            return Err(ServerError::SinkName(e.name));
        }
        names.push(e.name.clone());
        let sink_stats = stats.sink(&e.name);
        let s = (e.build)(sink_stats.clone())?;
        let again = sink_stats.clone();
        let factory: SinkFactory = Box::new(move || (e.build)(again.clone()));
        sinks.push((s, factory, e.queue.max(1), sink_stats));
    }
    let reload_router = relay.as_ref().map(|(router, ..)| router.clone());

    // Phase 2: spawn. Sinks first, so their queues exist.
    let mut sink_tasks = Vec::new();
    let mut flush_queues = Vec::new();
    let mut raw_queues = Vec::new();
    for (s, factory, queue, sink_stats) in sinks {
        let (tx, rx) = mpsc::channel(queue);
        if s.wants_raw() {
            raw_queues.push((s.name().to_string(), tx));
        } else {
            flush_queues.push(SinkQueue {
                tx,
                stats: sink_stats.clone(),
            });
        }
        sink_tasks.push(spawn_sink(s, factory, rx, sink_stats, &stats));
    }
    let raw = RawTap::new(raw_queues);

    let mut shards: Vec<SharedShard> = Vec::new();
    let mut udp_threads = Vec::new();
    let mut udp_addrs = Vec::new();
    // Each statsd listener stops on its own token, so a reload can remove it.
    let mut stops = crate::reload::ListenerStops::default();
    for (conf_addr, socket) in udp_sockets {
        let addr = socket.local_addr().map_err(ServerError::Thread)?;
        let shard = Arc::new(Mutex::new(Shard::new(&config.aggregate)));
        shards.push(shard.clone());
        let ingest = Ingest::new(
            &config.parse,
            shard,
            stats.clone(),
            raw.clone(),
            config.log.dump_messages,
        );
        stats.udp_socket(addr, udp::inode(&socket));
        udp_threads.push(
            udp::spawn(
                socket,
                ingest,
                stops.token(&token, crate::reload::ListenAddr::Udp(conf_addr)),
                listen.udp_batch,
                stats.task(&format!("udp/{addr}")),
            )
            .map_err(ServerError::Thread)?,
        );
        // One line per address, not per SO_REUSEPORT socket.
        if udp_addrs.last() != Some(&addr) {
            tracing::info!(proto = "udp", %addr, threads = listen.udp_threads, "listening");
            udp_addrs.push(addr);
        }
    }

    // Stream connections share one shard: they are many and mostly quiet.
    let stream_shard = Arc::new(Mutex::new(Shard::new(&config.aggregate)));
    shards.push(stream_shard.clone());
    let tracker = TaskTracker::new();
    let streams = crate::reload::StreamParts {
        shard: stream_shard,
        connections: Arc::new(Semaphore::new(listen.max_connections)),
        tracker: tracker.clone(),
        raw: raw.clone(),
    };
    let ctx = |stop: CancellationToken| {
        Arc::new(StreamCtx {
            parse: config.parse.clone(),
            shard: streams.shard.clone(),
            stats: stats.clone(),
            raw: raw.clone(),
            dump_messages: config.log.dump_messages,
            max_line_length: listen.max_line_length,
            idle_timeout: listen.idle_timeout,
            connections: streams.connections.clone(),
            tracker: tracker.clone(),
            token: stop,
        })
    };
    let mut tcp_addrs = Vec::new();
    for (conf_addr, l) in tcp_listeners {
        let addr = l.local_addr().map_err(ServerError::Thread)?;
        tracing::info!(proto = "tcp", %addr, "listening");
        tcp_addrs.push(addr);
        let stop = stops.token(&token, crate::reload::ListenAddr::Tcp(conf_addr));
        let c = ctx(stop.clone());
        let task = stats.task(&format!("tcp/{addr}"));
        spawn_listener(&tracker, task, stop, l, move |l| {
            tcp::accept_loop(l, c.clone())
        });
    }
    let mut unix_paths = Vec::new();
    for (l, path) in unix_listeners {
        tracing::info!(proto = "unix", addr = %path.display(), "listening");
        unix_paths.push(path.clone());
        let stop = stops.token(&token, crate::reload::ListenAddr::Unix(path.clone()));
        let c = ctx(stop.clone());
        let task = stats.task(&format!("unix/{}", path.display()));
        spawn_listener(&tracker, task, stop, l, move |l| {
            unix::accept_loop(l, path.clone(), c.clone())
        });
    }
    let mut carbon_tcp = Vec::new();
    let mut carbon_udp = Vec::new();
    let mut pickle_addrs = Vec::new();
    let relay_runtime = match relay {
        None => None,
        Some((router, rc, line_tcp, pickle, line_udp)) => {
            let runtime = crate::relay::RelayRuntime::start(router.clone(), &rc, &stats);
            // One context per listener, each with its own stop token, so a
            // reload can remove it.
            let cctx = |stop: CancellationToken| {
                Arc::new(carbon::CarbonCtx {
                    router: router.clone(),
                    opts: rc.line,
                    max_frame_bytes: rc.max_frame_bytes,
                    tracker: tracker.clone(),
                    token: stop,
                })
            };
            use crate::reload::ListenAddr;
            for (listeners, conf, kind, list) in [
                (
                    line_tcp,
                    &rc.line_tcp,
                    carbon::StreamKind::Line,
                    &mut carbon_tcp,
                ),
                (
                    pickle,
                    &rc.pickle,
                    carbon::StreamKind::Pickle,
                    &mut pickle_addrs,
                ),
            ] {
                for (l, conf) in listeners.into_iter().zip(conf) {
                    let addr = l.local_addr().map_err(ServerError::Thread)?;
                    let proto = match kind {
                        carbon::StreamKind::Line => "carbon tcp",
                        carbon::StreamKind::Pickle => "pickle tcp",
                    };
                    tracing::info!(proto, %addr, "relay listening");
                    list.push(addr);
                    let key = match kind {
                        carbon::StreamKind::Line => ListenAddr::CarbonTcp(*conf),
                        carbon::StreamKind::Pickle => ListenAddr::Pickle(*conf),
                    };
                    let stop = stops.token(&token, key);
                    let c = cctx(stop.clone());
                    let task = stats.task(&format!("{}/{addr}", proto.replace(' ', "-")));
                    spawn_listener(&tracker, task, stop, l, move |l| {
                        carbon::accept_loop(l, kind, c.clone())
                    });
                }
            }
            for (u, conf) in line_udp.into_iter().zip(&rc.line_udp) {
                let addr = u.local_addr().map_err(ServerError::Thread)?;
                tracing::info!(proto = "carbon udp", %addr, "relay listening");
                carbon_udp.push(addr);
                let stop = stops.token(&token, ListenAddr::CarbonUdp(*conf));
                let c = cctx(stop.clone());
                let task = stats.task(&format!("carbon-udp/{addr}"));
                spawn_listener(&tracker, task, stop, u, move |u| {
                    carbon::udp_loop(u, c.clone())
                });
            }
            Some(runtime)
        }
    };
    // Shutdown empties the tap once the listeners stopped, so that the
    // repeaters' queues close and they deliver what they hold.
    let raw_tap = raw;

    let mut registry = Registry::new(&config.aggregate);
    if let Some(state) = &config.state {
        restore_state(&mut registry, state);
    }
    let flusher = Flusher::new(
        shards,
        registry,
        config.compute.clone(),
        flush_queues,
        stats.clone(),
        &config.naming.prefix_stats,
        config.self_metrics,
    )
    .with_state(config.state.clone());
    // Idle until the first scrape of `/metrics` (docs/prometheus.md).
    let exporter = Arc::new(Live::new(config.prometheus.options.clone()));
    // The exporter keeps per-series state: fed only when `/metrics` is served.
    let flusher = if config.http.is_some() {
        flusher.with_exporter(exporter.clone())
    } else {
        flusher
    };
    let (flusher_handle, flusher_rx) = FlusherHandle::channel();
    let flusher = flusher.spawn(flusher_rx).map_err(ServerError::Thread)?;
    let stop_flusher = flusher_handle.clone();
    // Reloads add sink tasks; shutdown waits for every one.
    let sink_tasks = Arc::new(Mutex::new(sink_tasks));
    let udp_threads = Arc::new(Mutex::new(udp_threads));
    // A reload may swap the relay for one with new rules and clusters.
    let relay_runtime = Arc::new(Mutex::new(relay_runtime));
    // HTTP and the admin console read the state through the flusher; they
    // stop accepting at the first step of the shutdown.
    let health = Arc::new(Health::new(config.health_up));
    let shared = Shared {
        stats: stats.clone(),
        health: health.clone(),
        flusher: flusher_handle.clone(),
        exporter: exporter.clone(),
        interval: config.compute.interval,
        config_lines: Arc::new(crate::http::admin::config_lines(&config)),
        admin_token: Arc::new(crate::http::AdminToken::new(config.admin_token.as_deref())),
    };
    let reloader = Arc::new(crate::reload::Reloader::new(
        source,
        crate::reload::Parts {
            config: config.clone(),
            stats: stats.clone(),
            flusher: flusher_handle,
            exporter,
            router: reload_router,
            sink_tasks: sink_tasks.clone(),
            relay: relay_runtime.clone(),
            shared,
            listeners: crate::reload::ListenerParts {
                stops,
                streams,
                udp_threads: udp_threads.clone(),
            },
            token: token.clone(),
        },
    ));
    // The reloader runs them, so that a reload can move them.
    use crate::reload::Front;
    let http_addr = http_listener
        .map(|l| reloader.serve(Front::Http, l))
        .transpose()
        .map_err(ServerError::Thread)?;
    let admin_addr = admin_listener
        .map(|l| reloader.serve(Front::Admin, l))
        .transpose()
        .map_err(ServerError::Thread)?;

    let shutdown_timeout = config.shutdown_timeout;
    let t = token.clone();
    let done = tokio::spawn(async move {
        t.cancelled().await;
        // 2. Listeners drain what the kernel holds, then stop.
        tracker.close();
        let udp_threads =
            std::mem::take(&mut *udp_threads.lock().unwrap_or_else(|e| e.into_inner()));
        let udp_done = tokio::task::spawn_blocking(move || {
            for h in udp_threads {
                let _ = h.join();
            }
        });
        let drained = with_deadline(LISTENER_DRAIN, async {
            let _ = udp_done.await;
            tracker.wait().await;
        })
        .await;
        if drained.is_none() {
            tracing::warn!("listeners did not stop in time; flushing what they gave");
        }
        raw_tap.close();
        // 3. The final flush.
        // `stop` waits if the flusher's job queue is full: off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            stop_flusher.stop();
            flusher.join()
        })
        .await;
        // 4. Sinks deliver what they hold, within the deadline.
        let sink_tasks = std::mem::take(&mut *sink_tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let delivered = with_deadline(shutdown_timeout + Duration::from_secs(1), async {
            for t in sink_tasks {
                let _ = t.await;
            }
        })
        .await;
        if delivered.is_none() {
            tracing::error!("sinks did not finish within shutdown_timeout");
        }
        // 5. The relay delivers what its queues hold, within the deadline.
        let relay_runtime = relay_runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = relay_runtime {
            r.shutdown(shutdown_timeout).await;
        }
        tracing::info!("stopped");
    });

    Ok(Running {
        udp: udp_addrs,
        tcp: tcp_addrs,
        unix: unix_paths,
        http: http_addr,
        admin: admin_addr,
        health,
        carbon_tcp,
        carbon_udp,
        pickle: pickle_addrs,
        stats,
        reload: reloader,
        token,
        done,
    })
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
        registry.add_counter(key, *value);
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

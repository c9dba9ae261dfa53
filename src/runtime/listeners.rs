//! Every listener kind, bound and started the same way at start and at a
//! reload: [`bind`] (everything that can fail, before anything changes),
//! then [`Listeners::start`]; [`Listeners::stop`] for the ones a reload
//! removes, and [`Listeners::drain`] at shutdown.
//!
//! Each listener stops on its own token (a child of the server's), so a
//! reload can remove it: a UDP thread reads what the kernel holds first;
//! stream connections of a removed listener end as at shutdown.
//!
//! Imports, besides `runtime` itself: `aggregate`, `check`, `config`, `gate`,
//! `listener`, `relay`, `shutdown`, `sink`, `stats`, `supervise`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::ReloadError;
use crate::aggregate::Shard;
use crate::check::AllowList;
use crate::config::diff::ListenAddr;
use crate::config::Config;
use crate::config::UnixKind;
use crate::gate::Gate;
use crate::listener::stream::{Framing, StreamCtx};
use crate::listener::{carbon, tcp, udp, unix, unixgram, Ingest, RawTap, SharedShard, SideCtx};
use crate::relay::router::Router;
use crate::shutdown::CancellationToken;
use crate::sink::prometheus::sent::SentKeys;
use crate::stats::listener::ListenerStats;
use crate::stats::Stats;
use crate::supervise::supervise_socket;

/// A listener's socket(s), bound.
enum Socket {
    /// One per receive thread (SO_REUSEPORT), each with its own shard.
    Udp(Vec<(std::net::UdpSocket, SharedShard)>),
    Tcp(TcpListener),
    Unix(UnixListener, Framing),
    /// A unix datagram socket, read by its own thread into its own shard.
    Unixgram(std::os::unix::net::UnixDatagram, SharedShard),
    Carbon(TcpListener, carbon::StreamKind),
    CarbonUdp(UdpSocket),
}

/// Listeners bound by [`bind`], not started yet.
pub struct Bound(Vec<(ListenAddr, Socket)>);

impl Bound {
    /// The shards of the new UDP receive threads: the flusher merges them
    /// from the next flush on.
    pub fn shards(&self) -> Vec<SharedShard> {
        self.0
            .iter()
            .flat_map(|(_, s)| match s {
                Socket::Udp(group) => group.iter().map(|(_, sh)| sh.clone()).collect(),
                Socket::Unixgram(_, sh) => vec![sh.clone()],
                _ => Vec::new(),
            })
            .collect()
    }
}

/// Bind `addrs` as `c` describes them. The first that fails refuses the
/// whole change; the ones bound before it are closed again.
pub fn bind(addrs: &[ListenAddr], c: &Config) -> Result<Bound, ReloadError> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let err = |source| ReloadError::Bind {
            proto: a.proto(),
            addr: match a {
                ListenAddr::Unix(p) | ListenAddr::Unixgram(p) => p.display().to_string(),
                ListenAddr::Udp(s)
                | ListenAddr::Tcp(s)
                | ListenAddr::CarbonTcp(s)
                | ListenAddr::CarbonUdp(s)
                | ListenAddr::Pickle(s) => s.to_string(),
            },
            source,
        };
        let l = &c.listen;
        let socket = match a {
            ListenAddr::Udp(addr) => Socket::Udp(
                udp::bind_group(*addr, l.udp_threads, l.udp_recv_buffer)
                    .map_err(err)?
                    .into_iter()
                    .map(|s| (s, Arc::new(Mutex::new(Shard::new(&c.aggregate)))))
                    .collect(),
            ),
            ListenAddr::Tcp(addr) => Socket::Tcp(tcp::bind(*addr).map_err(err)?),
            ListenAddr::Unix(path) => {
                let u = l.unix.iter().find(|u| u.path == *path);
                let framing = match u.map(|u| u.kind) {
                    Some(UnixKind::Stream(f)) => f,
                    _ => Framing::Auto,
                };
                let mode = u.and_then(|u| u.mode);
                Socket::Unix(unix::bind(path, mode).map_err(err)?, framing)
            }
            ListenAddr::Unixgram(path) => {
                let mode = l.unix.iter().find(|u| u.path == *path).and_then(|u| u.mode);
                Socket::Unixgram(
                    unixgram::bind(path, mode).map_err(err)?,
                    Arc::new(Mutex::new(Shard::new(&c.aggregate))),
                )
            }
            ListenAddr::CarbonTcp(addr) => {
                Socket::Carbon(tcp::bind(*addr).map_err(err)?, carbon::StreamKind::Line)
            }
            ListenAddr::Pickle(addr) => {
                Socket::Carbon(tcp::bind(*addr).map_err(err)?, carbon::StreamKind::Pickle)
            }
            ListenAddr::CarbonUdp(addr) => Socket::CarbonUdp(carbon::bind_udp(*addr).map_err(err)?),
        };
        out.push((a.clone(), socket));
    }
    Ok(Bound(out))
}

/// Where started listeners are, as bound (with port 0, the port the kernel
/// chose): one entry per listener, one address per UDP receive thread's
/// socket.
pub type Started = Vec<(ListenAddr, Vec<SocketAddr>)>;

/// TLS settings built for listeners (by [`super::Runtime::prepare`]).
pub type TlsConfigs = Vec<(ListenAddr, Option<Arc<rustls::ServerConfig>>)>;

/// The allow-list that applies to a listener.
fn allow_of(c: &Config, key: &ListenAddr) -> AllowList {
    match key {
        // Unix sockets have no network address: file permissions (`mode`)
        // guard them, and the list never refuses their clients.
        ListenAddr::Udp(_) | ListenAddr::Tcp(_) | ListenAddr::Unix(_) | ListenAddr::Unixgram(_) => {
            c.listen.allow.clone()
        }
        ListenAddr::CarbonTcp(_) | ListenAddr::CarbonUdp(_) | ListenAddr::Pickle(_) => c
            .relay
            .as_ref()
            .map(|r| r.allow.clone())
            .unwrap_or_default(),
    }
}

/// The running listeners and what they share.
pub struct Listeners {
    stops: Vec<(ListenAddr, CancellationToken)>,
    /// Each listener's allow-list and TLS, which a reload changes in place.
    gates: Vec<(ListenAddr, Arc<Gate>)>,
    /// The per-listener counters each listener registered, to forget them
    /// when a reload removes it.
    counted: Vec<(ListenAddr, Arc<ListenerStats>)>,
    /// Every UDP and unix datagram receive thread; [`Listeners::drain`] joins them.
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    /// Stream connections share one shard: they are many and mostly quiet.
    stream_shard: SharedShard,
    /// One permit per open statsd stream connection (`max_connections`).
    connections: Arc<Semaphore>,
    /// Accept loops and connections, so shutdown waits for them to drain.
    tracker: TaskTracker,
    /// The repeaters' queues: every statsd listener copies its packets there.
    pub raw: RawTap,
    /// Where ingest notes rewritten keys for the Prometheus exporter.
    sent: Option<Arc<SentKeys>>,
    /// Liveness and events, for every ingest.
    side: SideCtx,
}

impl Listeners {
    /// No listener yet; `c` fixes what only a restart changes (the stream
    /// connections' bound and the stream shard's options).
    pub fn new(c: &Config, sent: Option<Arc<SentKeys>>, side: SideCtx) -> Listeners {
        Listeners {
            sent,
            stops: Vec::new(),
            gates: Vec::new(),
            counted: Vec::new(),
            udp_threads: Vec::new(),
            stream_shard: Arc::new(Mutex::new(Shard::new(&c.aggregate))),
            connections: Arc::new(Semaphore::new(c.listen.max_connections)),
            tracker: TaskTracker::new(),
            raw: RawTap::default(),
            side,
        }
    }

    /// The shard every stream connection feeds.
    pub fn stream_shard(&self) -> SharedShard {
        self.stream_shard.clone()
    }

    /// Start what [`bind`] bound (its UDP shards are already the
    /// flusher's), with its TLS from `tls`. `router` feeds the carbon
    /// listeners.
    pub fn start(
        &mut self,
        bound: Bound,
        c: &Config,
        tls: &TlsConfigs,
        stats: &Arc<Stats>,
        parent: &CancellationToken,
        router: Option<&Arc<Router>>,
    ) -> Started {
        let mut started = Vec::new();
        for (key, socket) in bound.0 {
            let stop = parent.child_token();
            self.stops.push((key.clone(), stop.clone()));
            let gate = Arc::new(Gate::new(
                format!("{} {}", key.proto(), shown(None, &key)),
                stats.clone(),
            ));
            gate.set_allow(allow_of(c, &key));
            if let Some((_, t)) = tls.iter().find(|(k, _)| *k == key) {
                gate.set_tls(t.clone());
            }
            self.gates.push((key.clone(), gate.clone()));
            let addrs = match socket {
                Socket::Udp(group) => self.start_udp(&key, group, c, stats, stop, gate),
                Socket::Tcp(l) => {
                    let addr = l.local_addr().ok();
                    let counted = self.count(&key, stats, "tcp", shown(addr, &key));
                    let ctx =
                        self.stream_ctx(c, stats, Framing::Newline, counted, stop.clone(), gate);
                    let name = format!("tcp/{}", shown(addr, &key));
                    self.spawn(stats, &name, stop, l, move |l| {
                        tcp::accept_loop(l, ctx.clone())
                    });
                    addr.into_iter().collect()
                }
                Socket::Unix(l, framing) => {
                    let ListenAddr::Unix(path) = key.clone() else {
                        continue;
                    };
                    let counted = self.count(&key, stats, "unix", path.display().to_string());
                    let ctx = self.stream_ctx(c, stats, framing, counted, stop.clone(), gate);
                    let name = format!("unix/{}", path.display());
                    self.spawn(stats, &name, stop, l, move |l| {
                        unix::accept_loop(l, path.clone(), ctx.clone())
                    });
                    Vec::new()
                }
                Socket::Unixgram(socket, shard) => {
                    let ListenAddr::Unixgram(path) = key.clone() else {
                        continue;
                    };
                    let counted = self.count(&key, stats, "unixgram", path.display().to_string());
                    let ingest = self.thread_ingest(c, shard, stats, &counted);
                    let task = stats.task(&format!("unixgram/{}", path.display()));
                    match unixgram::spawn(socket, path.clone(), ingest, stop, task) {
                        Ok(h) => self.udp_threads.push(h),
                        Err(e) => tracing::error!(
                            proto = "unixgram",
                            path = %path.display(),
                            error = %e,
                            "cannot start a receive thread"
                        ),
                    }
                    Vec::new()
                }
                Socket::Carbon(l, kind) => {
                    let addr = l.local_addr().ok();
                    let Some(ctx) = self.carbon_ctx(c, router, stop.clone(), gate) else {
                        continue;
                    };
                    let proto = key.proto().replace(' ', "-");
                    let name = format!("{proto}/{}", shown(addr, &key));
                    self.spawn(stats, &name, stop, l, move |l| {
                        carbon::accept_loop(l, kind, ctx.clone())
                    });
                    addr.into_iter().collect()
                }
                Socket::CarbonUdp(u) => {
                    let addr = u.local_addr().ok();
                    let Some(ctx) = self.carbon_ctx(c, router, stop.clone(), gate) else {
                        continue;
                    };
                    let name = format!("carbon-udp/{}", shown(addr, &key));
                    self.spawn(stats, &name, stop, u, move |u| {
                        carbon::udp_loop(u, ctx.clone())
                    });
                    addr.into_iter().collect()
                }
            };
            match addrs.first() {
                Some(a) => tracing::info!(proto = key.proto(), addr = %a, "listening"),
                None => tracing::info!(proto = key.proto(), listener = ?key, "listening"),
            }
            started.push((key, addrs));
        }
        started
    }

    /// One receive thread per socket of the group, each into its own shard.
    fn start_udp(
        &mut self,
        key: &ListenAddr,
        group: Vec<(std::net::UdpSocket, SharedShard)>,
        c: &Config,
        stats: &Arc<Stats>,
        stop: CancellationToken,
        gate: Arc<Gate>,
    ) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for (socket, shard) in group {
            let addr = match (socket.local_addr(), key) {
                (Ok(a), _) => a,
                (Err(_), ListenAddr::Udp(a)) => *a,
                (Err(_), _) => continue,
            };
            let counted = self.count(key, stats, "udp", addr.to_string());
            let ingest = self.thread_ingest(c, shard, stats, &counted);
            stats.udp_socket(addr, udp::inode(&socket));
            let task = stats.task(&format!("udp/{addr}"));
            let (batch, gate) = (c.listen.udp_batch, gate.clone());
            match udp::spawn(socket, ingest, gate, stop.clone(), batch, task) {
                Ok(h) => self.udp_threads.push(h),
                Err(e) => {
                    tracing::error!(proto = "udp", %addr, error = %e, "cannot start a receive thread")
                }
            }
            addrs.push(addr);
        }
        addrs
    }

    /// The ingest of a receive thread (UDP, unix datagram) into `shard`.
    fn thread_ingest(
        &self,
        c: &Config,
        shard: SharedShard,
        stats: &Arc<Stats>,
        counted: &Arc<ListenerStats>,
    ) -> Ingest {
        Ingest::new(
            &c.parse,
            shard,
            stats.clone(),
            self.raw.clone(),
            c.log.dump_messages,
        )
        .counted_in(counted)
        .recording_sent(self.sent.clone())
        .with_side(&self.side)
    }

    /// The counters of the listener `proto addr` (`key` in the config).
    fn count(
        &mut self,
        key: &ListenAddr,
        stats: &Stats,
        proto: &'static str,
        addr: String,
    ) -> Arc<ListenerStats> {
        let l = stats.listener(proto, &addr);
        if !self.counted.iter().any(|(_, c)| Arc::ptr_eq(c, &l)) {
            self.counted.push((key.clone(), l.clone()));
        }
        l
    }

    fn stream_ctx(
        &self,
        c: &Config,
        stats: &Arc<Stats>,
        framing: Framing,
        listener: Arc<ListenerStats>,
        stop: CancellationToken,
        gate: Arc<Gate>,
    ) -> Arc<StreamCtx> {
        Arc::new(StreamCtx {
            parse: c.parse.clone(),
            shard: self.stream_shard.clone(),
            stats: stats.clone(),
            raw: self.raw.clone(),
            dump_messages: c.log.dump_messages,
            max_line_length: c.listen.max_line_length,
            framing,
            listener,
            sent: self.sent.clone(),
            idle_timeout: c.listen.idle_timeout,
            connections: self.connections.clone(),
            tracker: self.tracker.clone(),
            token: stop,
            gate,
            side: self.side.clone(),
        })
    }

    /// `None` without a relay (the config check makes that impossible).
    fn carbon_ctx(
        &self,
        c: &Config,
        router: Option<&Arc<Router>>,
        stop: CancellationToken,
        gate: Arc<Gate>,
    ) -> Option<Arc<carbon::CarbonCtx>> {
        let (Some(router), Some(rc)) = (router, &c.relay) else {
            tracing::error!("a carbon listener without a relay; not listening");
            return None;
        };
        Some(Arc::new(carbon::CarbonCtx {
            router: router.clone(),
            opts: rc.line,
            max_frame_bytes: rc.max_frame_bytes,
            tracker: self.tracker.clone(),
            token: stop,
            gate,
        }))
    }

    /// A change kept these listeners: give them the allow-lists of `c`,
    /// and the new TLS of those in `tls` (a rotated certificate, TLS turned
    /// on or off). Connections already open keep what they were accepted with.
    pub fn refresh(&self, c: &Config, tls: &TlsConfigs) {
        for (key, gate) in &self.gates {
            gate.set_allow(allow_of(c, key));
            if let Some((_, t)) = tls.iter().find(|(k, _)| k == key) {
                gate.set_tls(t.clone());
            }
        }
    }

    /// The gate of a statsd UDP address (its allow-list), for the receive
    /// threads.
    pub fn gate(&self, key: &ListenAddr) -> Option<Arc<Gate>> {
        self.gates
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, g)| g.clone())
    }

    /// Run an accept loop on the tracker under the supervisor: restarted on
    /// the same socket if it panics, until `stop`.
    fn spawn<S, F, Fut>(
        &self,
        stats: &Stats,
        name: &str,
        stop: CancellationToken,
        socket: S,
        run: F,
    ) where
        S: crate::supervise::Reopen,
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let task = stats.task(name);
        self.tracker
            .spawn(supervise_socket(task, Some(stop), socket, run));
    }

    /// Stop the listeners of `addrs`; each reads what it already holds first.
    pub fn stop(&mut self, addrs: &[ListenAddr], stats: &Stats) {
        for addr in addrs {
            if let Some(i) = self.stops.iter().position(|(a, _)| a == addr) {
                self.stops.swap_remove(i).1.cancel();
                tracing::info!(listener = ?addr, "listener removed by the reload");
            }
            self.gates.retain(|(a, _)| a != addr);
            if let ListenAddr::Udp(a) = addr {
                stats.remove_udp_socket(*a);
            }
            self.counted.retain(|(a, l)| {
                if a == addr {
                    stats.remove_listener(l.proto, &l.addr);
                }
                a != addr
            });
        }
    }

    /// At shutdown, once the server's token is cancelled: wait (up to
    /// `deadline`) for the receive threads to read what the kernel holds and
    /// for stream connections to end; then close the raw tap so that the
    /// repeaters' queues close. Returns whether they stopped in time.
    pub async fn drain(&mut self, deadline: std::time::Duration) -> bool {
        self.tracker.close();
        let threads = std::mem::take(&mut self.udp_threads);
        let udp_done = tokio::task::spawn_blocking(move || {
            for h in threads {
                let _ = h.join();
            }
        });
        let tracker = self.tracker.clone();
        let drained = crate::shutdown::with_deadline(deadline, async {
            let _ = udp_done.await;
            tracker.wait().await;
        })
        .await;
        self.raw.close();
        drained.is_some()
    }
}

/// A listener's address for a task name: as bound, else as configured.
fn shown(bound: Option<SocketAddr>, key: &ListenAddr) -> String {
    match (bound, key) {
        (Some(a), _) => a.to_string(),
        (None, k) => format!("{k:?}"),
    }
}

//! The agent role (`[forward]`): which series are forwarded, and how each
//! interval's forwarded state reaches the aggregators.
//!
//! Two halves, so that an aggregator that is down or slow never holds up
//! ingest or the flush:
//!
//! - [`AgentSide`], on the flusher thread (a [`crate::flusher::Outflow`]):
//!   at each merge it moves the forwarded series out of the shards'
//!   snapshots into the interval's [`IntervalState`] ([`Rules`] decide:
//!   `types`, and the scope tag per series, which it strips); at the
//!   interval's end it hands the state to the forwarder's bounded queue
//!   (a full queue drops the interval, counted) and starts the next.
//! - [`run`], a tokio task: it keeps the aggregators known (`host:port`
//!   destinations, and the answers of `dns:` ones, re-resolved every
//!   `resolve_interval`), places every series with the [`Ring`] (skipping
//!   aggregators that are down under `on_down = "reroute"`), cuts each
//!   aggregator's share into messages ([`super::proto`]) off the runtime's
//!   threads, and queues them on each aggregator's delivery engine
//!   ([`crate::deliver::http`]: one request in flight, retries with
//!   backoff, a memory bound, the spool behind it, a shutdown deadline).
//!
//! Every aggregator gets at least one message per interval (an empty last
//! part if none of the interval's series is its), so that it knows the
//! agent's interval is complete and can flush before its grace runs out.
//!
//! An aggregator is *down* from a failed request until a request succeeds
//! (the engine keeps retrying what it holds, which is how it comes back).
//!
//! Imports, besides `forward` itself: `aggregate`, `deliver`, `flusher`,
//! `log_limit`, `metric`, `spool`, `stats`, `sys`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderValue;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{Destination, ForwardConfig, OnDown};
use super::proto::{self, Header, Series};
use super::ring::Ring;
use crate::aggregate::{IntervalState, Route, Snapshot};
use crate::deliver::http::{Body, Encoder, HttpConfig, HttpOutput};
use crate::metric::MetricType;
use crate::stats::forward::ForwardStats;
use crate::stats::{get, incr, SinkStats, Stats};

/// Intervals waiting to be sent at most; past this the newest is dropped
/// (counted) rather than memory growing while the forwarder is stuck.
pub const QUEUE_INTERVALS: usize = 4;

/// Which series are forwarded, and the scope tag to strip.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Forwarded, by type ([`MetricType::index`]).
    forwarded: [bool; MetricType::COUNT],
    /// `;<scope_tag>=`, as it appears in a canonical key.
    finder: memchr::memmem::Finder<'static>,
}

impl Rules {
    pub fn new(c: &ForwardConfig) -> Rules {
        let mut forwarded = [false; MetricType::COUNT];
        for t in &c.types {
            forwarded[t.index()] = true;
        }
        Rules {
            forwarded,
            finder: memchr::memmem::Finder::new(format!(";{}=", c.scope_tag).as_bytes())
                .into_owned(),
        }
    }

    /// Where a series goes, and its key without the scope tag if it had one.
    pub fn route(&self, key: &[u8], kind: MetricType) -> (Route, Option<Vec<u8>>) {
        let by_type = if self.forwarded[kind.index()] {
            Route::Forward
        } else {
            Route::Local
        };
        let Some(at) = self.finder.find(key) else {
            return (by_type, None);
        };
        let start = at + self.finder.needle().len();
        let end = key[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(key.len(), |p| start + p);
        let to = match &key[start..end] {
            b"local" => Route::Local,
            b"global" => Route::Forward,
            _ => by_type,
        };
        let mut stripped = Vec::with_capacity(key.len() - (end - at));
        stripped.extend_from_slice(&key[..at]);
        stripped.extend_from_slice(&key[end..]);
        (to, Some(stripped))
    }
}

/// One interval's forwarded state, on its way to the forwarder.
pub struct Interval {
    pub header: Header,
    pub state: IntervalState,
}

/// The agent's half on the flusher thread (see the module doc).
pub struct AgentSide {
    rules: Arc<RwLock<Rules>>,
    state: IntervalState,
    timer_exact_samples: usize,
    agent: String,
    tx: mpsc::Sender<Interval>,
    stats: Arc<ForwardStats>,
    log: crate::log_limit::LogLimiter,
}

impl AgentSide {
    pub fn new(
        rules: Arc<RwLock<Rules>>,
        timer_exact_samples: usize,
        agent: String,
        tx: mpsc::Sender<Interval>,
        stats: Arc<ForwardStats>,
    ) -> AgentSide {
        AgentSide {
            rules,
            state: IntervalState::new(timer_exact_samples),
            timer_exact_samples,
            agent,
            tx,
            stats,
            log: crate::log_limit::LogLimiter::new(1, Duration::from_secs(60)),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl crate::flusher::Outflow for AgentSide {
    fn split(&mut self, snap: Snapshot) -> Snapshot {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        snap.split_into(&mut self.state, unix_ms(), &mut |k, t| rules.route(k, t))
    }

    fn split_state(&mut self, st: IntervalState) -> IntervalState {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        st.split_into(&mut self.state, &mut |k, t| rules.route(k, t))
    }

    fn interval_done(&mut self, start_ms: u64, len_ms: u64) {
        let state = std::mem::replace(
            &mut self.state,
            IntervalState::new(self.timer_exact_samples),
        );
        let n = state.len() as u64;
        let interval = Interval {
            header: Header {
                agent: self.agent.clone(),
                interval_start_ms: start_ms,
                interval_ms: len_ms,
                flushed_unix_ms: unix_ms(),
            },
            state,
        };
        if self.tx.try_send(interval).is_err() {
            incr(&self.stats.dropped, n);
            if let Some(suppressed) = self.log.allow() {
                tracing::error!(
                    series = n,
                    suppressed,
                    "forwarding is {QUEUE_INTERVALS} intervals behind: this interval's forwarded series are dropped"
                );
            }
        }
    }
}

/// The agent's id in its messages: the host name and a per-process
/// instance id, so that a restarted agent is a new agent.
pub fn agent_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{}/{:016x}", crate::sys::short_hostname(), h.finish())
}

/// Bodies pass through the engine as they are.
struct Passthrough;

impl Encoder for Passthrough {
    type Msg = Body;
    fn encode(&mut self, msg: Body, out: &mut Vec<Body>) {
        out.push(msg);
    }
}

/// One aggregator: its delivery engine's queue, counters and task.
struct Member {
    tx: mpsc::Sender<Body>,
    stats: Arc<SinkStats>,
    task: JoinHandle<()>,
}

impl Member {
    /// Down: a request failed and none succeeded since.
    fn down(&self) -> bool {
        get(&self.stats.connected) == 0 && get(&self.stats.errors) > 0
    }
}

/// The forwarder's settings that its engines are built from.
#[derive(Clone)]
struct Engines {
    config: Arc<ForwardConfig>,
    shutdown_timeout: Duration,
}

fn sink_name(addr: &str) -> String {
    format!("forward/{addr}")
}

impl Engines {
    /// Start the delivery engine for the aggregator at `addr`.
    fn start(&self, addr: &str, stats: &Stats) -> Result<Member, String> {
        let c = &self.config;
        let name = sink_name(addr);
        let spool = c
            .spool
            .as_ref()
            .map(|(dir, bytes)| crate::spool::SpoolConfig {
                dir: dir.join(crate::stats::render::graphite_node(addr)),
                max_bytes: *bytes,
                segment_bytes: (*bytes / 8).clamp(64 << 10, 8 << 20),
            });
        // With `server_name`, the engine sends to the member's address
        // and checks the name (`deliver::http::tls_target`).
        let scheme = if c.tls.is_some() { "https" } else { "http" };
        let cfg = HttpConfig {
            sink: name.clone(),
            url: format!("{scheme}://{addr}{}", proto::PATH),
            auth: None,
            headers: Vec::new(),
            buffer_bytes: c.buffer_bytes,
            connect_timeout: c.timeout,
            request_timeout: c.timeout,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            // A 5xx is the aggregator's own trouble (a journal it cannot
            // write): try a while, then give up and count the part.
            max_retries: 10,
            shutdown_timeout: self.shutdown_timeout,
            spool,
            tls: c.tls.clone(),
        };
        let out = HttpOutput::new(cfg).map_err(|e| e.to_string())?;
        let sink_stats = match stats.sink_named(&name) {
            Some(s) => s,
            None => stats.sink(&name),
        };
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(out.run(sink_stats.clone(), rx, Passthrough));
        Ok(Member {
            tx,
            stats: sink_stats,
            task,
        })
    }
}

/// What the runtime keeps of a running forwarder.
pub struct Forwarder {
    pub rules: Arc<RwLock<Rules>>,
    settings: watch::Sender<Arc<ForwardConfig>>,
}

impl Forwarder {
    /// New `[forward]` settings (a reload): the rules at once, the rest at
    /// the forwarder's next turn.
    pub fn reconfigure(&self, c: &ForwardConfig) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Rules::new(c);
        let _ = self.settings.send(Arc::new(c.clone()));
    }
}

/// Start the agent: its flusher half (for [`crate::flusher::Flusher::with_roles`]),
/// its handle for reloads, and the forwarder task (for the shutdown to wait on).
pub fn start(
    c: &ForwardConfig,
    timer_exact_samples: usize,
    shutdown_timeout: Duration,
    stats: Arc<Stats>,
) -> (AgentSide, Forwarder, JoinHandle<()>) {
    let rules = Arc::new(RwLock::new(Rules::new(c)));
    let (tx, rx) = mpsc::channel(QUEUE_INTERVALS);
    let fstats = stats.forward();
    let agent = agent_id();
    tracing::info!(%agent, destinations = c.destinations.len(), "forwarding to aggregators");
    let side = AgentSide::new(rules.clone(), timer_exact_samples, agent, tx, fstats);
    let (settings, watch) = watch::channel(Arc::new(c.clone()));
    let task = tokio::spawn(run(rx, watch, stats, shutdown_timeout));
    (side, Forwarder { rules, settings }, task)
}

/// The current members: `host:port` destinations as written, `dns:` ones
/// as their last answers.
async fn resolve(
    c: &ForwardConfig,
    last: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for d in &c.destinations {
        match d {
            Destination::Fixed(a) => {
                out.insert(a.clone(), vec![a.clone()]);
            }
            Destination::Dns { name, port } => {
                let key = format!("dns:{name}:{port}");
                match tokio::net::lookup_host((name.as_str(), *port)).await {
                    Ok(addrs) => {
                        let mut v: Vec<String> = addrs.map(|a| a.to_string()).collect();
                        v.sort();
                        v.dedup();
                        out.insert(key, v);
                    }
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "cannot resolve an aggregator name; keeping its last answer");
                        out.insert(key.clone(), last.get(&key).cloned().unwrap_or_default());
                    }
                }
            }
        }
    }
    out
}

/// The forwarder task (see the module doc). Ends when the flusher has
/// handed over its last interval and every engine has delivered (or
/// spooled) what it holds within the shutdown deadline.
async fn run(
    mut rx: mpsc::Receiver<Interval>,
    mut settings: watch::Receiver<Arc<ForwardConfig>>,
    stats: Arc<Stats>,
    shutdown_timeout: Duration,
) {
    let fstats = stats.forward();
    let mut config = settings.borrow_and_update().clone();
    let mut engines = Engines {
        config: config.clone(),
        shutdown_timeout,
    };
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let mut answers = resolve(&config, &BTreeMap::new()).await;
    sync_members(&answers, &mut members, &engines, &stats);
    let mut next_resolve = tokio::time::Instant::now() + config.resolve_interval;
    let mut settings_open = true;
    loop {
        tokio::select! {
            iv = rx.recv() => match iv {
                Some(iv) => send(iv, &members, &config, &fstats).await,
                None => break,
            },
            _ = tokio::time::sleep_until(next_resolve) => {
                answers = resolve(&config, &answers).await;
                sync_members(&answers, &mut members, &engines, &stats);
                next_resolve = tokio::time::Instant::now() + config.resolve_interval;
            }
            changed = settings.changed(), if settings_open => {
                if changed.is_err() {
                    settings_open = false;
                    continue;
                }
                let new = settings.borrow_and_update().clone();
                let rebuild = new.tls != config.tls
                    || new.timeout != config.timeout
                    || new.buffer_bytes != config.buffer_bytes;
                config = new;
                engines.config = config.clone();
                if rebuild {
                    // New engines take the next interval; the old ones
                    // deliver what they hold, then stop.
                    for (addr, m) in std::mem::take(&mut members) {
                        drop(m.tx);
                        stats.remove_sink(&sink_name(&addr));
                    }
                }
                answers = resolve(&config, &answers).await;
                sync_members(&answers, &mut members, &engines, &stats);
                next_resolve = tokio::time::Instant::now() + config.resolve_interval;
            }
        }
        let up = members.values().filter(|m| !m.down()).count();
        fstats
            .destinations
            .store(members.len() as u64, std::sync::atomic::Ordering::Relaxed);
        fstats
            .destinations_up
            .store(up as u64, std::sync::atomic::Ordering::Relaxed);
    }
    // The flusher is gone: let every engine deliver what it holds.
    let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut members)
        .into_values()
        .map(|m| {
            drop(m.tx);
            m.task
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Start engines for new members, stop those gone.
fn sync_members(
    answers: &BTreeMap<String, Vec<String>>,
    members: &mut BTreeMap<String, Member>,
    engines: &Engines,
    stats: &Stats,
) {
    let want: std::collections::BTreeSet<&String> = answers.values().flatten().collect();
    let gone: Vec<String> = members
        .keys()
        .filter(|k| !want.contains(k))
        .cloned()
        .collect();
    for addr in gone {
        if let Some(m) = members.remove(&addr) {
            drop(m.tx);
            stats.remove_sink(&sink_name(&addr));
            tracing::info!(aggregator = %addr, "aggregator left: it delivers what it holds, its series move");
        }
    }
    for addr in want {
        if members.contains_key(addr) {
            continue;
        }
        match engines.start(addr, stats) {
            Ok(m) => {
                tracing::info!(aggregator = %addr, "aggregator joined");
                members.insert(addr.clone(), m);
            }
            Err(e) => {
                tracing::error!(aggregator = %addr, error = %e, "cannot set up delivery to an aggregator")
            }
        }
    }
}

/// Place, cut and queue one interval.
async fn send(
    iv: Interval,
    members: &BTreeMap<String, Member>,
    config: &ForwardConfig,
    fstats: &Arc<ForwardStats>,
) {
    if members.is_empty() {
        incr(&fstats.dropped, iv.state.len() as u64);
        tracing::error!(
            series = iv.state.len(),
            "no aggregator known: the interval's forwarded series are dropped"
        );
        return;
    }
    let names: Vec<String> = members.keys().cloned().collect();
    let down: Vec<bool> = members.values().map(Member::down).collect();
    let reroute = config.on_down == OnDown::Reroute;
    let (max, snappy) = (config.max_message_bytes, config.snappy);
    let started = Instant::now();
    let n_series = iv.state.len() as u64;
    let placed = tokio::task::spawn_blocking(move || {
        let ring = Ring::new(names.iter().cloned());
        let mut shares: Vec<Vec<Series>> = vec![Vec::new(); names.len()];
        let (mut rerouted, mut delayed) = (0u64, 0u64);
        let all_down = down.iter().all(|d| *d);
        proto::series_of(&iv.state, |key, s| {
            let Some(own) = ring.place(key, |_| false) else {
                return;
            };
            let to = if reroute && down[own] && !all_down {
                rerouted += 1;
                ring.place(key, |i| down[i]).unwrap_or(own)
            } else {
                if down[own] {
                    delayed += 1;
                }
                own
            };
            shares[to].push(s);
        });
        let bodies: Vec<Vec<(Body, usize)>> = shares
            .into_iter()
            .map(|share| {
                proto::parts(&iv.header, share, max)
                    .iter()
                    .map(|b| {
                        let (data, raw) = proto::body(b, snappy);
                        let body = Body {
                            data: Bytes::from(data),
                            content_type: HeaderValue::from_static(proto::CONTENT_TYPE),
                            content_encoding: snappy.then(|| HeaderValue::from_static("snappy")),
                            points: b.series.len() as u64,
                        };
                        (body, raw)
                    })
                    .collect()
            })
            .collect();
        (bodies, rerouted, delayed)
    })
    .await;
    let Ok((bodies, rerouted, delayed)) = placed else {
        incr(&fstats.dropped, n_series);
        tracing::error!(
            series = n_series,
            "encoding an interval failed; its forwarded series are lost"
        );
        return;
    };
    fstats.encode_micros.store(
        started.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    incr(&fstats.rerouted, rerouted);
    incr(&fstats.delayed, delayed);
    incr(&fstats.intervals, 1);
    for (m, parts) in members.values().zip(bodies) {
        for (body, raw) in parts {
            let (points, len) = (body.points, body.data.len() as u64);
            match m.tx.try_send(body) {
                Ok(()) => {
                    incr(&fstats.series, points);
                    incr(&fstats.messages, 1);
                    incr(&fstats.bytes, len);
                    incr(&fstats.bytes_raw, raw as u64);
                }
                Err(_) => {
                    incr(&fstats.dropped, points);
                    incr(&m.stats.queue_dropped, 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(types: &str) -> Rules {
        let c = crate::config::toml::from_str(
            &format!("[forward]\ndestinations = [\"127.0.0.1:1\"]\ntypes = {types}\n"),
            "t.toml",
        )
        .unwrap();
        Rules::new(c.forward.as_ref().unwrap())
    }

    #[test]
    fn types_choose_and_the_scope_tag_overrides_and_is_stripped() {
        let r = rules("[\"timer\", \"set\"]");
        assert_eq!(r.route(b"a", MetricType::Counter), (Route::Local, None));
        assert_eq!(
            r.route(b"a;env=x", MetricType::Timer),
            (Route::Forward, None)
        );
        assert_eq!(
            r.route(b"a;statsyard_scope=global", MetricType::Counter),
            (Route::Forward, Some(b"a".to_vec()))
        );
        assert_eq!(
            r.route(b"a;env=x;statsyard_scope=local;z=1", MetricType::Set),
            (Route::Local, Some(b"a;env=x;z=1".to_vec()))
        );
        // An unknown scope value is stripped, and the type decides.
        assert_eq!(
            r.route(b"a;statsyard_scope=other", MetricType::Timer),
            (Route::Forward, Some(b"a".to_vec()))
        );
        // A tag that only starts like it is another tag.
        assert_eq!(
            r.route(b"a;statsyard_scoped=local", MetricType::Counter),
            (Route::Local, None)
        );
    }

    #[test]
    fn the_split_moves_forwarded_series_and_keeps_the_rest_local() {
        use crate::aggregate::{AggregateOptions, Registry, Shard};
        use crate::metric::{MetricRef, Value};
        let opts = AggregateOptions::default();
        let mut shard = Shard::new(&opts);
        let m = |key: &'static [u8], kind, value| MetricRef {
            key,
            kind,
            value,
            sample_rate: 1.0,
            timestamp: None,
        };
        for v in [
            m(b"req", MetricType::Counter, Value::Number(2.0)),
            m(
                b"req;statsyard_scope=local",
                MetricType::Counter,
                Value::Number(3.0),
            ),
            m(b"lat", MetricType::Timer, Value::Number(7.0)),
            m(b"users", MetricType::Set, Value::SetMember(b"u1")),
            m(b"temp", MetricType::Gauge, Value::Number(21.0)),
        ] {
            shard.insert(&v);
        }
        let r = rules("[\"counter\", \"timer\", \"set\"]");
        let mut out = IntervalState::new(100);
        let local = shard
            .take()
            .split_into(&mut out, 42, &mut |k, t| r.route(k, t));
        let mut reg = Registry::new(&opts);
        reg.merge(local);
        // Local: the scope-tagged counter (tag stripped) and the gauge.
        assert_eq!(reg.counter(b"req"), Some(3.0));
        assert_eq!(reg.gauge(b"temp"), Some(21.0));
        assert!(reg.timer(b"lat").is_none());
        // Forwarded: the plain counter, the timer, the set.
        let c: Vec<_> = out.counters().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(c, vec![("req".to_string(), 2.0)]);
        assert_eq!(out.timers().count(), 1);
        assert_eq!(out.sets().count(), 1);
        assert_eq!(out.gauges().count(), 0);
    }
}

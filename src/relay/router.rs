//! Where each point goes: rules (regex match → clusters, `continue`, `stop`,
//! `blackhole`), rewrites with capture groups, and the clusters' methods.
//!
//! Rules are evaluated in order against the point's name. A rewrite rule
//! replaces every match in the name (capture groups as `$1` or `${name}`)
//! and evaluation goes on with the new name. A match rule sends the point to
//! its clusters (or drops it, for `blackhole`) and, unless it has
//! `continue`, ends the evaluation: the first match wins. A point that no
//! match rule takes is counted as non-matched and dropped. Without any match
//! rule every point goes to every cluster.
//!
//! Cluster methods:
//! - the hashed ones ([`Method`](super::hashing::Method)) place the point with [`Ring::place`] on
//!   `replication` destinations; while one is down its points wait in its
//!   queue (up to the bound), so they land on the same carbon-cache later;
//! - `forward` sends to every destination;
//! - `any_of` picks one destination by a hash of the name (FNV-1a, so a name
//!   always lands on the same one while it is up), and the next one that is
//!   up when it is not;
//! - `failover` sends to the first destination in the listed order that is up.
//!
//! [`Router::route`] never waits: a full queue drops the point and counts it.
//! The stream receivers use [`Router::route_stream`] instead, which with
//! `on_full = "block"` refuses a point that a live destination has no room
//! for and says which one to wait for ([`Wait`]); see
//! [`super::destination`] for what "live" means.
//!
//! Imports, besides `relay` itself: `deliver`, `parse`, `shutdown`, `stats`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use regex::bytes::Regex;

use super::config::{ClusterMethod, RelayConfig, RuleAction};
use super::destination::spool_subdir;
use super::destination::{DestQueue, Item, OnFull, HELD};
use super::hashing::{HashError, Ring};
use super::Point;
use crate::stats::incr;
use crate::stats::relay::RelayStats;

/// Why a router could not be built (the config validation checks all of
/// these first, so they only show for configs built in code).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A hashed cluster's ring could not be built.
    #[error("cluster {cluster}: {source}")]
    Ring {
        cluster: String,
        #[source]
        source: HashError,
    },
    /// A destination's TLS settings cannot be used (its files changed
    /// since they were checked).
    #[error("destination {destination}: TLS: {reason}")]
    Tls { destination: String, reason: String },
    /// A rule's regular expression does not compile.
    #[error("rule {pattern:?}: {source}")]
    Regex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

struct Rule {
    re: Regex,
    action: RuleAction,
    continue_: bool,
}

struct Cluster {
    name: String,
    method: ClusterMethod,
    ring: Option<Ring>,
    /// Indices into [`Router::dests`].
    dests: Vec<usize>,
}

/// A point a stream receiver must hold back: destination `dest` has no room
/// for a name of `name_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub dest: usize,
    pub name_len: usize,
    /// The address of the router that `dest` indexes: after a reload
    /// ([`Router::replace`]) the caller may hold a newer router than the one
    /// that answered.
    router: usize,
}

/// Where [`Router::decide`] sends a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Destination `dest` (index into [`Router::dests`]) of cluster `cluster`.
    Dest { cluster: usize, dest: usize },
    /// A `blackhole` rule took it.
    Blackhole,
    /// No match rule took it.
    Unmatched,
}

/// The routing table and every destination queue.
pub struct Router {
    rules: Vec<Rule>,
    clusters: Vec<Cluster>,
    /// With no match rule at all, every point goes to every cluster.
    all_clusters: bool,
    normalize_tags: bool,
    /// `on_full = "block"`.
    block: bool,
    /// Every destination of every cluster, in config order.
    pub dests: Vec<Arc<DestQueue>>,
    pub stats: Arc<RelayStats>,
    /// Set by a config reload: every point routed here from then on goes to
    /// the successor. The listeners and `relay` sinks keep the first router,
    /// so this chain (one link per reload that changed the relay) is how
    /// they reach the live one without being restarted.
    successor: std::sync::OnceLock<Arc<Router>>,
}

thread_local! {
    /// Placement scratch, so routing allocates nothing per point for it.
    static SCRATCH: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Router {
    /// Build the routing table and one queue per destination.
    pub fn new(cfg: &RelayConfig) -> Result<Router, RouterError> {
        Router::with_stats(cfg, None)
    }

    /// [`Router::new`] for a reload: `old`'s counters are kept when the
    /// destinations are the same (so totals do not restart), new ones made
    /// otherwise.
    pub fn replacing(cfg: &RelayConfig, old: &Router) -> Result<Router, RouterError> {
        Router::with_stats(cfg, Some(old.live().stats.clone()))
    }

    fn with_stats(cfg: &RelayConfig, keep: Option<Arc<RelayStats>>) -> Result<Router, RouterError> {
        let mut names = Vec::new();
        for c in &cfg.clusters {
            names.extend(c.destinations.iter().map(|d| d.to_string()));
        }
        let stats = match keep {
            Some(k)
                if k.destinations.len() == names.len()
                    && k.destinations.iter().zip(&names).all(|(d, n)| d.name == *n) =>
            {
                k
            }
            _ => Arc::new(RelayStats::new(names)),
        };
        let mut dests = Vec::new();
        let mut clusters = Vec::new();
        for c in &cfg.clusters {
            let ring = match c.method {
                ClusterMethod::Hash(m) => Some(
                    Ring::new(m, &c.destinations, c.replication, c.diverse).map_err(|source| {
                        RouterError::Ring {
                            cluster: c.name.clone(),
                            source,
                        }
                    })?,
                ),
                _ => None,
            };
            let mut idx = Vec::new();
            for (j, (d, protocol)) in c.destinations.iter().zip(&c.protocols).enumerate() {
                idx.push(dests.len());
                let mut q = DestQueue::new(
                    d.host.clone(),
                    d.port,
                    *protocol,
                    cfg.tuning.queue,
                    cfg.tuning.queue_bytes,
                    cfg.tuning.block_timeout,
                    stats.destinations[dests.len()].clone(),
                );
                if let Some(Some(t)) = c.tls.get(j) {
                    let connect = crate::deliver::transport::TlsConnect {
                        config: t.client_config().map_err(|reason| RouterError::Tls {
                            destination: d.to_string(),
                            reason: reason.clone(),
                        })?,
                        server_name: t.server_name(&d.host).map_err(|reason| RouterError::Tls {
                            destination: d.to_string(),
                            reason,
                        })?,
                    };
                    q = q.with_tls(connect);
                }
                if let Some(sp) = &c.spool {
                    // Each destination of the cluster its own directory.
                    let mut sp = sp.clone();
                    sp.dir.push(spool_subdir(&d.to_string()));
                    q = q.with_spool(sp);
                }
                dests.push(Arc::new(q));
            }
            clusters.push(Cluster {
                name: c.name.clone(),
                method: c.method,
                ring,
                dests: idx,
            });
        }
        let mut rules = Vec::new();
        for r in &cfg.rules {
            let re = Regex::new(&r.pattern).map_err(|source| RouterError::Regex {
                pattern: r.pattern.clone(),
                source,
            })?;
            rules.push(Rule {
                re,
                action: r.action.clone(),
                continue_: r.continue_,
            });
        }
        let all_clusters = !rules
            .iter()
            .any(|r| !matches!(r.action, RuleAction::Rewrite(_)));
        Ok(Router {
            rules,
            clusters,
            all_clusters,
            normalize_tags: cfg.normalize_tags,
            block: cfg.tuning.on_full == OnFull::Block,
            dests,
            stats,
            successor: std::sync::OnceLock::new(),
        })
    }

    /// The router points go to now: the last of this one's successors, or itself.
    pub fn live(&self) -> &Router {
        let mut r = self;
        while let Some(next) = r.successor.get() {
            r = next;
        }
        r
    }

    /// Send every point routed through this router (or any it replaced) to
    /// `next` from now on. Reloads are serialised, so the live router has no
    /// successor yet; if it had, `next` is handed back.
    pub fn replace(&self, next: Arc<Router>) -> Result<(), Arc<Router>> {
        self.live().successor.set(next)
    }

    /// Route one point: queue it for every destination it goes to. Never
    /// waits. In block mode the stream receivers keep a live destination's
    /// queue at its bound while they wait, so input that cannot wait (UDP,
    /// the relay sink, self-metrics, streams during shutdown) may use the
    /// room between the bound and twice it.
    pub fn route(&self, name: &[u8], value: f64, timestamp: i64) {
        let r = self.live();
        r.route_with(name, value, timestamp, r.block);
    }

    /// Route one point from a stream receiver. In block mode, when a live
    /// destination it goes to has no room, nothing is queued and the point
    /// is handed back with what to wait for ([`Router::wait`]), after which
    /// the caller routes it again. `block = false` (shutting down) routes it
    /// as [`Router::route`] does.
    pub fn route_stream(
        &self,
        name: &[u8],
        value: f64,
        timestamp: i64,
        block: bool,
    ) -> Option<Wait> {
        if let Some(next) = self.successor.get() {
            return next.route_stream(name, value, timestamp, block);
        }
        if !self.block || !block {
            self.route(name, value, timestamp);
            return None;
        }
        // Placement runs twice only while some live destination is full.
        if self.dests.iter().any(|d| d.is_full() && d.is_live()) {
            let mut wait = None;
            self.decide(name, |final_name, t| {
                if let Target::Dest { dest, .. } = t {
                    if wait.is_none() && self.dests[dest].must_wait(final_name.len()) {
                        wait = Some(Wait {
                            dest,
                            name_len: final_name.len(),
                            router: self as *const Router as usize,
                        });
                    }
                }
            });
            if wait.is_some() {
                return wait;
            }
        }
        self.route_with(name, value, timestamp, true);
        None
    }

    /// Wait for what [`Router::route_stream`] returned, or for `closing`.
    pub async fn wait(&self, w: Wait, closing: &crate::shutdown::CancellationToken) {
        // The router that answered is this one or one of its successors.
        let mut r = self;
        while r as *const Router as usize != w.router {
            match r.successor.get() {
                Some(next) => r = next,
                None => return,
            }
        }
        if let Some(d) = r.dests.get(w.dest) {
            d.wait_for_room(w.name_len, closing).await;
        }
    }

    fn route_with(&self, name: &[u8], value: f64, timestamp: i64, overshoot: bool) {
        incr(&self.stats.metrics_received, 1);
        let mut point: Option<Point> = None;
        self.decide(name, |final_name, t| match t {
            Target::Dest { cluster, dest } => {
                let p = point.get_or_insert_with(|| Point {
                    name: Bytes::copy_from_slice(final_name),
                    value,
                    timestamp,
                });
                let movable = matches!(
                    self.clusters[cluster].method,
                    ClusterMethod::AnyOf | ClusterMethod::Failover
                );
                let item = Item {
                    point: p.clone(),
                    cluster: if movable { cluster as u32 } else { HELD },
                };
                self.dests[dest].push_with(item, &self.stats, overshoot);
            }
            Target::Blackhole => incr(&self.stats.metrics_blackholed, 1),
            Target::Unmatched => incr(&self.stats.metrics_unrouted, 1),
        });
    }

    /// Evaluate the rules for `name` and call `f(final name, target)` for
    /// each place the point goes (the name after rewrites).
    pub fn decide(&self, name: &[u8], mut f: impl FnMut(&[u8], Target)) {
        let mut name: Cow<[u8]> = if self.normalize_tags {
            crate::parse::carbon::normalize_tags(name)
        } else {
            Cow::Borrowed(name)
        };
        let mut matched = false;
        for rule in &self.rules {
            if !rule.re.is_match(&name) {
                continue;
            }
            match &rule.action {
                RuleAction::Rewrite(rep) => {
                    let new = rule.re.replace_all(&name, rep.as_bytes()).into_owned();
                    name = Cow::Owned(new);
                    continue;
                }
                RuleAction::Blackhole => f(&name, Target::Blackhole),
                RuleAction::Send(cs) => {
                    for &c in cs {
                        self.cluster_targets(c, &name, &mut f);
                    }
                }
            }
            matched = true;
            if !rule.continue_ {
                return;
            }
        }
        if matched {
            return;
        }
        if self.all_clusters {
            for c in 0..self.clusters.len() {
                self.cluster_targets(c, &name, &mut f);
            }
        } else {
            f(&name, Target::Unmatched);
        }
    }

    fn cluster_targets(&self, c: usize, name: &[u8], f: &mut impl FnMut(&[u8], Target)) {
        let cl = &self.clusters[c];
        match (&cl.ring, cl.method) {
            (Some(ring), _) => SCRATCH.with(|s| {
                // Re-entrancy is impossible: `f` only queues points.
                let mut out = s.borrow_mut();
                ring.place(name, &mut out);
                for &i in out.iter() {
                    f(
                        name,
                        Target::Dest {
                            cluster: c,
                            dest: cl.dests[i],
                        },
                    );
                }
            }),
            (None, ClusterMethod::Forward) | (None, ClusterMethod::Hash(_)) => {
                for &d in &cl.dests {
                    f(
                        name,
                        Target::Dest {
                            cluster: c,
                            dest: d,
                        },
                    );
                }
            }
            (None, _) => f(
                name,
                Target::Dest {
                    cluster: c,
                    dest: self.pick(c, name, usize::MAX),
                },
            ),
        }
    }

    /// The destination an `any_of` or `failover` cluster uses for `name` now,
    /// never `avoid` unless nothing else is up.
    fn pick(&self, c: usize, name: &[u8], avoid: usize) -> usize {
        let cl = &self.clusters[c];
        let n = cl.dests.len();
        let start = match cl.method {
            ClusterMethod::AnyOf => (fnv1a64(name) % n as u64) as usize,
            _ => 0,
        };
        for k in 0..n {
            let d = cl.dests[(start + k) % n];
            if d != avoid && self.dests[d].is_up() {
                return d;
            }
        }
        // Nothing is up: keep it where the name belongs, to wait there.
        cl.dests[start]
    }

    /// Send a point that a down destination gave back to another
    /// destination of its cluster.
    pub fn reroute(&self, from: usize, item: Item) {
        let c = item.cluster as usize;
        let Some(cl) = self.clusters.get(c) else {
            return;
        };
        let to = self.pick(c, &item.point.name, from);
        if to != from {
            incr(&self.stats.metrics_rerouted, 1);
        } else {
            tracing::trace!(cluster = %cl.name, "no destination up; point stays queued");
        }
        self.dests[to].push(item, &self.stats);
    }

    /// One line per name for `statsyard relay --test`: the name, its
    /// rewritten form if a rule changed it, and every destination (or
    /// `blackhole` / `no match`).
    pub fn explain(&self, name: &[u8]) -> String {
        let mut out = String::from_utf8_lossy(name).into_owned();
        let mut renamed: Option<String> = None;
        let mut targets: Vec<String> = Vec::new();
        self.decide(name, |n, t| {
            if n != name && renamed.is_none() {
                renamed = Some(String::from_utf8_lossy(n).into_owned());
            }
            targets.push(match t {
                Target::Dest { cluster, dest } => {
                    format!(
                        "{}:{}",
                        self.clusters[cluster].name, self.stats.destinations[dest].name
                    )
                }
                Target::Blackhole => "blackhole".into(),
                Target::Unmatched => "no match".into(),
            });
        });
        if let Some(r) = renamed {
            out.push_str(" (as ");
            out.push_str(&r);
            out.push(')');
        }
        out.push_str(" -> ");
        out.push_str(&targets.join(" "));
        out
    }
}

/// 64-bit FNV-1a: the sticky choice of `any_of`.
fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::config::{ClusterConfig, RuleConfig};
    use crate::relay::destination::{Protocol, Tuning};
    use crate::relay::hashing::{Destination, Method};
    use std::time::Duration;

    fn cfg(clusters: Vec<ClusterConfig>, rules: Vec<RuleConfig>) -> RelayConfig {
        RelayConfig {
            line_tcp: vec![],
            line_udp: vec![],
            pickle: vec![],
            allow: Default::default(),
            line: Default::default(),
            max_frame_bytes: 100,
            normalize_tags: true,
            tuning: Tuning {
                queue: 10,
                queue_bytes: 1 << 20,
                batch: 10,
                connect_timeout: Duration::from_secs(1),
                backoff_min: Duration::from_secs(1),
                backoff_max: Duration::from_secs(1),
                on_full: crate::relay::destination::OnFull::Block,
                block_timeout: Duration::from_secs(1),
            },
            stats_prefix: "p".into(),
            stats_interval: None,
            clusters,
            rules,
        }
    }

    fn cluster(name: &str, method: ClusterMethod, dests: &[&str], rep: usize) -> ClusterConfig {
        ClusterConfig {
            name: name.into(),
            method,
            destinations: dests
                .iter()
                .map(|d| Destination::parse(d).unwrap())
                .collect(),
            protocols: vec![Protocol::Plain; dests.len()],
            tls: vec![None; dests.len()],
            replication: rep,
            diverse: true,
            protocol: Protocol::Plain,
            spool: None,
        }
    }

    fn rule(p: &str, action: RuleAction, continue_: bool) -> RuleConfig {
        RuleConfig {
            pattern: p.into(),
            action,
            continue_,
        }
    }

    #[test]
    fn rules_rewrites_blackhole_continue() {
        let r = Router::new(&cfg(
            vec![
                cluster("a", ClusterMethod::Forward, &["h1:1"], 1),
                cluster("b", ClusterMethod::Forward, &["h2:1"], 1),
            ],
            vec![
                rule(r"^old\.(.*)$", RuleAction::Rewrite("new.$1".into()), false),
                rule(r"^drop\.", RuleAction::Blackhole, false),
                rule(r"^both\.", RuleAction::Send(vec![0]), true),
                rule(r"^(both|b)\.", RuleAction::Send(vec![1]), false),
                rule(r"^new\.", RuleAction::Send(vec![0]), false),
            ],
        ))
        .unwrap();
        assert_eq!(r.explain(b"old.x"), "old.x (as new.x) -> a:h1:1");
        assert_eq!(r.explain(b"drop.x"), "drop.x -> blackhole");
        assert_eq!(r.explain(b"both.x"), "both.x -> a:h1:1 b:h2:1");
        assert_eq!(r.explain(b"b.x"), "b.x -> b:h2:1");
        assert_eq!(r.explain(b"zzz"), "zzz -> no match");
        assert_eq!(
            r.explain(b"x;b=1;a=2"),
            "x;b=1;a=2 (as x;a=2;b=1) -> no match"
        );
    }

    #[test]
    fn hashed_clusters_place_like_the_ring() {
        let dests = ["h1:1", "h2:1", "h3:1"];
        let r = Router::new(&cfg(
            vec![cluster(
                "c",
                ClusterMethod::Hash(Method::CarbonCh),
                &dests,
                2,
            )],
            vec![],
        ))
        .unwrap();
        let parsed: Vec<Destination> = dests
            .iter()
            .map(|d| Destination::parse(d).unwrap())
            .collect();
        let ring = Ring::new(Method::CarbonCh, &parsed, 2, true).unwrap();
        let mut out = Vec::new();
        for n in ["a", "b.c", "foo.bar.baz"] {
            ring.place(n.as_bytes(), &mut out);
            let mut got = Vec::new();
            r.decide(n.as_bytes(), |_, t| {
                if let Target::Dest { dest, .. } = t {
                    got.push(dest)
                }
            });
            assert_eq!(got, out);
        }
    }

    #[test]
    fn any_of_and_failover_avoid_down_destinations() {
        let r = Router::new(&cfg(
            vec![
                cluster("a", ClusterMethod::AnyOf, &["h1:1", "h2:1", "h3:1"], 1),
                cluster("f", ClusterMethod::Failover, &["h4:1", "h5:1"], 1),
            ],
            vec![],
        ))
        .unwrap();
        let first = r.pick(0, b"x", usize::MAX);
        assert_eq!(r.pick(0, b"x", usize::MAX), first, "sticky");
        r.dests[first]
            .stats
            .up
            .store(0, std::sync::atomic::Ordering::Relaxed);
        r.dests[first].mark(false);
        assert_ne!(r.pick(0, b"x", usize::MAX), first);
        assert_eq!(r.pick(1, b"x", usize::MAX), 3);
        r.dests[3].mark(false);
        assert_eq!(r.pick(1, b"x", usize::MAX), 4);
    }
}

//! What a config change does, worked out from the running config and the
//! new one alone (pure: no I/O; the runtime applies it). Start is the change from nothing
//! ([`plan`] with no running config): every listener, output and front end
//! is added. A reload is the change from the running config: some are added,
//! some removed, some changed, and some keys only a restart can apply (the
//! running config keeps its old value for those, so the next reload names
//! them again until the process restarts).
//!
//! Imports: the config and the output surface's specs; nothing that runs.
//! (Vector calls this a `ConfigDiff`; `ConfigDiff::initial` is our
//! `plan(None, ..)`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::Config;
use crate::sink::SinkSpec;

/// The name of the Prometheus exporter among the outputs. Not a valid
/// `[[sink]]` name (they are letters, digits, `_` and `-`), so no sink can
/// take it.
pub const EXPORTER: &str = "/metrics";

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

/// A listener, by its configured address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// statsd over UDP.
    Udp(SocketAddr),
    /// statsd over TCP.
    Tcp(SocketAddr),
    /// statsd over a unix stream socket.
    Unix(PathBuf),
    /// statsd over a unix datagram socket.
    Unixgram(PathBuf),
    /// Relay carbon plaintext over TCP.
    CarbonTcp(SocketAddr),
    /// Relay carbon plaintext over UDP.
    CarbonUdp(SocketAddr),
    /// Relay pickle over TCP.
    Pickle(SocketAddr),
}

impl ListenAddr {
    /// What logs and errors call it.
    pub fn proto(&self) -> &'static str {
        match self {
            ListenAddr::Udp(_) => "udp",
            ListenAddr::Tcp(_) => "tcp",
            ListenAddr::Unix(_) => "unix",
            ListenAddr::Unixgram(_) => "unixgram",
            ListenAddr::CarbonTcp(_) => "carbon tcp",
            ListenAddr::CarbonUdp(_) => "carbon udp",
            ListenAddr::Pickle(_) => "pickle tcp",
        }
    }

    /// The config key it comes from, and its address (`[statsd] tcp
    /// 0.0.0.0:8125`).
    pub fn key(&self) -> String {
        match self {
            ListenAddr::Udp(a) => format!("[statsd] udp {a}"),
            ListenAddr::Tcp(a) => format!("[statsd] tcp {a}"),
            ListenAddr::Unix(p) | ListenAddr::Unixgram(p) => {
                format!("[statsd] unix {}", p.display())
            }
            ListenAddr::CarbonTcp(a) => format!("[relay] line_tcp {a}"),
            ListenAddr::CarbonUdp(a) => format!("[relay] line_udp {a}"),
            ListenAddr::Pickle(a) => format!("[relay] pickle {a}"),
        }
    }

    /// Every listener a config describes, in config order.
    pub fn all(c: &Config) -> Vec<ListenAddr> {
        let mut v: Vec<ListenAddr> = Vec::new();
        v.extend(c.listen.udp.iter().map(|a| ListenAddr::Udp(*a)));
        v.extend(c.listen.tcp.iter().map(|a| ListenAddr::Tcp(*a)));
        v.extend(c.listen.unix.iter().map(|u| match u.kind {
            crate::config::UnixKind::Stream(_) => ListenAddr::Unix(u.path.clone()),
            crate::config::UnixKind::Datagram => ListenAddr::Unixgram(u.path.clone()),
        }));
        if let Some(r) = &c.relay {
            v.extend(r.line_tcp.iter().map(|a| ListenAddr::CarbonTcp(*a)));
            v.extend(r.pickle.iter().map(|a| ListenAddr::Pickle(*a)));
            v.extend(r.line_udp.iter().map(|a| ListenAddr::CarbonUdp(*a)));
        }
        v
    }
}

/// What happens to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayChange {
    /// Nothing (none runs, or its routing is unchanged).
    Keep,
    /// Start it (the start of a server with a `[relay]`).
    Start,
    /// New rules, clusters or tuning: a new router takes over.
    Replace,
}

/// What a change does, computed from the running and the new config alone.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config that will run: the new one, with the old values of the
    /// restart-only keys.
    pub effective: Config,
    pub report: ReloadReport,
    /// Outputs to build and start (added and changed), in config order; the
    /// Prometheus exporter ([`EXPORTER`]) among them when it changes.
    pub start: Vec<SinkSpec>,
    /// Outputs to stop, by name (removed and changed).
    pub stop: Vec<String>,
    /// Listeners to bind and start.
    pub listen: Vec<ListenAddr>,
    /// Listeners to stop.
    pub unlisten: Vec<ListenAddr>,
    /// Listeners that stay, with new TLS settings (a rotated certificate,
    /// TLS turned on or off): swapped in place, not rebound.
    pub tls: Vec<ListenAddr>,
    /// The HTTP server's web config (TLS, users, headers) changed.
    pub web: bool,
    /// The HTTP server's new address (`Some(None)`: stop it), if it changes.
    pub http: Option<Option<SocketAddr>>,
    /// The admin console's new address, if it changes.
    pub admin: Option<Option<SocketAddr>>,
    pub relay: RelayChange,
    /// The host collector's new settings (`Some(None)`: stop it), if they change.
    pub host: Option<Option<crate::host::HostConfig>>,
    /// `[forward]` changed in what applies live (destinations, types...).
    pub forward: bool,
    /// `[aggregator]` changed in what applies live (allow, TLS, grace...).
    pub aggregator: bool,
}

/// The outputs a config runs: its `[[sink]]`s, and the Prometheus exporter
/// while HTTP serves `/metrics`.
pub fn outputs(c: &Config) -> Vec<SinkSpec> {
    let mut v = c.sinks.clone();
    if c.http.is_some() {
        v.push(SinkSpec {
            name: EXPORTER.to_string(),
            queue: 1,
            kind: "prometheus",
            config: Arc::new(c.prometheus.clone()),
        });
    }
    v
}

/// The change from `old` (running; `None` at start) to `new` (just loaded).
pub fn plan(old: Option<&Config>, new: &Config) -> Plan {
    let Some(old) = old else {
        return Plan {
            effective: new.clone(),
            report: ReloadReport {
                source: new.source.clone(),
                sinks_added: new.sinks.iter().map(|s| s.name.clone()).collect(),
                ..ReloadReport::default()
            },
            start: outputs(new),
            stop: Vec::new(),
            listen: ListenAddr::all(new),
            unlisten: Vec::new(),
            tls: Vec::new(),
            web: new.web.is_some(),
            http: new.http.map(Some),
            admin: new.admin.map(Some),
            host: new.host.is_some().then(|| new.host.clone()),
            forward: false,
            aggregator: false,
            relay: if new.relay.is_some() {
                RelayChange::Start
            } else {
                RelayChange::Keep
            },
        };
    };
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
    // A unix path in both lists with a new mode, type or framing would be
    // bound by the new listener, then unlinked by the old one as it stops.
    if old
        .listen
        .unix
        .iter()
        .any(|o| new.listen.unix.iter().any(|n| n.path == o.path && n != o))
    {
        restart.push("[statsd] unix (mode / type / framing)".to_string());
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
        "[statsd] key_name_sanitize / tag_dialects / max_tags / gauge_deltas"
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
    keep!(health_up, "[admin] health");
    let mut relay = RelayChange::Keep;
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
            if e != same_listeners {
                relay = RelayChange::Replace;
            }
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

    // The roles: turning one on or off needs a restart (the flusher is
    // built around them); inside, everything applies live but the spool,
    // the listener's address and the journal.
    let mut forward = false;
    match (&old.forward, &new.forward) {
        (Some(o), Some(n)) => {
            let mut e = n.clone();
            if o.spool != n.spool {
                restart.push("[forward] spool_dir / spool_bytes".to_string());
                e.spool = o.spool.clone();
            }
            forward = e != *o;
            eff.forward = Some(e);
        }
        (None, None) => {}
        _ => {
            restart.push("[forward]".to_string());
            eff.forward = old.forward.clone();
        }
    }
    let mut aggregator = false;
    match (&old.aggregator, &new.aggregator) {
        (Some(o), Some(n)) => {
            let mut e = n.clone();
            if o.listen != n.listen {
                restart.push("[aggregator] listen (address)".to_string());
                e.listen = o.listen;
            }
            if o.journal_dir != n.journal_dir {
                restart.push("[aggregator] journal_dir".to_string());
                e.journal_dir = o.journal_dir.clone();
            }
            aggregator = e != *o;
            eff.aggregator = Some(e);
        }
        (None, None) => {}
        _ => {
            restart.push("[aggregator]".to_string());
            eff.aggregator = old.aggregator.clone();
        }
    }
    eff.timing.grace = eff
        .aggregator
        .as_ref()
        .map_or(std::time::Duration::ZERO, |a| a.grace);

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
    applied(old.timing.align != eff.timing.align, "[flush] align");
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
    applied(
        !old.prometheus.same_options(&eff.prometheus),
        "[prometheus]",
    );
    applied(
        old.prometheus.same_options(&eff.prometheus) && old.prometheus != eff.prometheus,
        "[prometheus] mapping_file (contents)",
    );
    applied(old.log.level != eff.log.level, "[log] level");
    applied(old.listen.udp != eff.listen.udp, "[statsd] udp");
    applied(old.listen.tcp != eff.listen.tcp, "[statsd] tcp");
    applied(old.listen.unix != eff.listen.unix, "[statsd] unix");
    applied(
        old.http != eff.http,
        if old.http.is_none() {
            "[http] enabled"
        } else {
            "[http] address"
        },
    );
    applied(old.admin != eff.admin, "[admin] enabled / address");
    applied(old.admin_token != eff.admin_token, "[admin] token");
    applied(old.web != eff.web, "[http] web_config_file");
    applied(old.http_allow != eff.http_allow, "[http] allow");
    applied(old.admin_allow != eff.admin_allow, "[admin] allow");
    applied(old.listen.allow != eff.listen.allow, "[statsd] allow");
    applied(
        old.relay.as_ref().map(|r| &r.allow) != eff.relay.as_ref().map(|r| &r.allow),
        "[relay] allow",
    );
    applied(old.host != eff.host, "[host]");
    applied(old.liveness != eff.liveness, "[liveness]");
    applied(old.events != eff.events, "[events]");
    applied(forward, "[forward]");
    applied(aggregator, "[aggregator]");
    applied(
        relay == RelayChange::Replace,
        "[relay] rules / clusters / tuning / normalize_tags / stats_*",
    );
    for key in relay_listeners {
        applied(true, key);
    }

    // Outputs are matched by name. Every flush output that writes Graphite
    // names formats them itself, so a naming change rebuilds them all (not
    // the repeaters, which copy packets).
    let naming_changed = old.naming != eff.naming;
    let mut start = Vec::new();
    let mut stop = Vec::new();
    let (before, after) = (outputs(old), outputs(&eff));
    for s in &after {
        let listed = s.name != EXPORTER;
        match before.iter().find(|o| o.name == s.name) {
            None => {
                if listed {
                    report.sinks_added.push(s.name.clone());
                }
                start.push(s.clone());
            }
            Some(o) if o != s || (naming_changed && s.config.uses_naming()) => {
                if listed {
                    report.sinks_changed.push(s.name.clone());
                }
                stop.push(s.name.clone());
                start.push(s.clone());
            }
            Some(_) => {
                if listed {
                    report.sinks_unchanged.push(s.name.clone())
                }
            }
        }
    }
    for o in &before {
        if !after.iter().any(|s| s.name == o.name) {
            if o.name != EXPORTER {
                report.sinks_removed.push(o.name.clone());
            }
            stop.push(o.name.clone());
        }
    }
    let (was, now) = (ListenAddr::all(old), ListenAddr::all(&eff));
    let listen = now.iter().filter(|a| !was.contains(a)).cloned().collect();
    let unlisten = was.iter().filter(|a| !now.contains(a)).cloned().collect();
    let tls_of =
        |c: &Config, k: &ListenAddr| c.tls.iter().find(|(a, _)| a == k).map(|(_, t)| t.clone());
    let tls: Vec<ListenAddr> = now
        .iter()
        .filter(|a| was.contains(a) && tls_of(old, a) != tls_of(&eff, a))
        .cloned()
        .collect();
    for a in &tls {
        report.applied.push(format!("{} tls", a.key()));
    }
    Plan {
        report,
        start,
        stop,
        listen,
        unlisten,
        tls,
        web: old.web != eff.web,
        http: (old.http != eff.http).then_some(eff.http),
        admin: (old.admin != eff.admin).then_some(eff.admin),
        relay,
        host: (old.host != eff.host).then(|| eff.host.clone()),
        forward,
        aggregator,
        effective: eff,
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
        let p = plan(Some(&c), &c);
        assert_eq!(p.effective, c);
        assert!(p.start.is_empty() && p.stop.is_empty());
        assert!(p.listen.is_empty() && p.unlisten.is_empty());
        assert!(p.report.applied.is_empty() && p.report.restart_required.is_empty());
        assert_eq!(p.report.sinks_unchanged, vec!["a"]);
        assert_eq!((p.http, p.admin, p.relay), (None, None, RelayChange::Keep));
    }

    #[test]
    fn start_is_the_change_from_nothing() {
        let mut c = cfg(G1);
        c.http = Some("127.0.0.1:9102".parse().unwrap());
        let p = plan(None, &c);
        assert_eq!(p.effective, c);
        let started: Vec<_> = p.start.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(started, vec!["a", EXPORTER]);
        assert_eq!(
            p.listen,
            vec![ListenAddr::Udp("127.0.0.1:0".parse().unwrap())]
        );
        assert_eq!(p.http, Some(c.http));
        assert_eq!(p.admin, None);
        assert!(p.report.restart_required.is_empty());
    }

    #[test]
    fn sinks_added_removed_changed() {
        let old = cfg(&format!("{G1}{G2}"));
        let g2b = G2.replace("2004", "2005");
        let g3 = "[[sink]]\ntype = \"console\"\nname = \"c\"\n";
        let new = cfg(&format!("{g2b}{g3}"));
        let p = plan(Some(&old), &new);
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
        let p = plan(Some(&old), &new);
        assert!(p
            .report
            .applied
            .contains(&"[flush] percentiles".to_string()));
        assert_eq!(p.report.restart_required, vec!["[naming] prefix_stats"]);
        assert_eq!(p.effective.naming.prefix_stats, old.naming.prefix_stats);
        assert_eq!(p.effective.compute.percentiles, new.compute.percentiles);
    }

    #[test]
    fn http_starts_moves_and_stops_live() {
        let old = cfg("");
        let mut new = old.clone();
        new.http = Some("127.0.0.1:9999".parse().unwrap());
        new.admin = Some("127.0.0.1:9998".parse().unwrap());
        let p = plan(Some(&old), &new);
        assert!(p.report.restart_required.is_empty());
        assert_eq!(
            p.report.applied,
            vec!["[http] enabled", "[admin] enabled / address"]
        );
        assert_eq!(p.http, Some(new.http));
        // `/metrics` comes with HTTP: the exporter starts with it.
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].name, EXPORTER);
        assert!(p.report.sinks_added.is_empty());
        let p = plan(Some(&new), &old);
        assert_eq!(p.http, Some(None));
        assert_eq!(p.stop, vec![EXPORTER]);
    }

    #[test]
    fn listeners_change_live_but_their_tuning_does_not() {
        let old = cfg("");
        let mut new = old.clone();
        new.listen.tcp.push("127.0.0.1:8125".parse().unwrap());
        new.listen.udp_threads += 1;
        let p = plan(Some(&old), &new);
        assert_eq!(p.report.applied, vec!["[statsd] tcp"]);
        assert_eq!(p.report.restart_required, vec!["[statsd] udp_threads"]);
        assert_eq!(p.effective.listen.tcp, new.listen.tcp);
        assert_eq!(p.effective.listen.udp_threads, old.listen.udp_threads);
        assert_eq!(
            p.listen,
            vec![ListenAddr::Tcp("127.0.0.1:8125".parse().unwrap())]
        );
        assert!(p.unlisten.is_empty());
    }

    #[test]
    fn forward_and_aggregator_apply_live_but_not_on_or_off() {
        let agent = "[forward]\ndestinations = [\"127.0.0.1:8190\"]\n";
        let old = cfg(agent);
        let new = cfg("[forward]\ndestinations = [\"127.0.0.1:8190\", \"127.0.0.2:8190\"]\n");
        let p = plan(Some(&old), &new);
        assert!(p.forward);
        assert_eq!(p.report.applied, vec!["[forward]"]);
        assert!(p.report.restart_required.is_empty());
        assert_eq!(p.effective.forward, new.forward);
        let p = plan(Some(&old), &cfg(""));
        assert_eq!(p.report.restart_required, vec!["[forward]"]);
        assert_eq!(p.effective.forward, old.forward);
        let a = cfg("[aggregator]\nlisten = \"127.0.0.1:8190\"\ngrace = \"1s\"\n");
        let b = cfg("[aggregator]\nlisten = \"127.0.0.1:8191\"\ngrace = \"3s\"\n");
        let p = plan(Some(&a), &b);
        assert!(p.aggregator);
        assert_eq!(
            p.report.restart_required,
            vec!["[aggregator] listen (address)"]
        );
        assert_eq!(p.effective.aggregator.as_ref().unwrap().listen.port(), 8190);
        assert_eq!(p.effective.timing.grace, std::time::Duration::from_secs(3));
    }

    #[test]
    fn a_unix_socket_mode_or_type_change_needs_a_restart() {
        use crate::config::{Framing, UnixKind};
        let mut old = cfg("");
        old.listen.unix.push(crate::config::UnixListen {
            path: "/run/s.sock".into(),
            mode: Some(0o660),
            kind: UnixKind::Stream(Framing::Auto),
        });
        let changes: [fn(&mut crate::config::UnixListen); 3] = [
            |u| u.mode = Some(0o600),
            |u| u.kind = UnixKind::Datagram,
            |u| u.kind = UnixKind::Stream(Framing::Newline),
        ];
        for change in changes {
            let mut new = old.clone();
            change(&mut new.listen.unix[0]);
            let p = plan(Some(&old), &new);
            assert_eq!(
                p.report.restart_required,
                vec!["[statsd] unix (mode / type / framing)"]
            );
            assert_eq!(p.effective.listen.unix, old.listen.unix);
            assert!(p.listen.is_empty() && p.unlisten.is_empty());
        }
        // A new path of the other type is a new listener.
        let mut new = old.clone();
        new.listen.unix.push(crate::config::UnixListen {
            path: "/run/g.sock".into(),
            mode: None,
            kind: UnixKind::Datagram,
        });
        let p = plan(Some(&old), &new);
        assert_eq!(p.listen, vec![ListenAddr::Unixgram("/run/g.sock".into())]);
    }
}

//! statsyard.toml → [`Config`]: parse into [`RawConfig`], then
//! validate. [`validate`] is shared with the `config.js` import, which fills a
//! `RawConfig` too.
//!
//! Imports, besides `config` itself: `aggregate`, `check`, `events`, `flush`,
//! `forward`, `host`, `liveness`, `parse`, `sink`, `tls`, `web_config`.

use std::collections::HashMap;

use std::path::PathBuf;

use super::diff::ListenAddr;
use super::raw::{RawBin, RawConfig, RawLogFormat, RawSeriesLimit, RawSink, RawTls};
use super::{Config, ConfigError, Framing, ListenConfig, LogConfig, UnixKind, UnixListen};
use crate::aggregate::{AggregateOptions, PrefixLimit, SeriesLimits};
use crate::check::AllowList;
use crate::check::{
    bad, check_interval, check_nonzero, check_percentile, listen_addrs, parse_listen_addr,
    parse_mode, relative_to, Bad,
};
use crate::flush::compute::{Bin, ComputeOptions, HistogramRule, Percentile};
use crate::flush::naming::Naming;
use crate::parse::tags::TagDialects;
use crate::parse::ParseOptions;
use crate::sink::prometheus::PrometheusConfig;
use crate::sink::{Kinds, SinkSpec, ValidateCx};
use crate::tls::TlsServer;
use crate::web_config::WebConfig;

/// The timer statistics `calculated_timer_metrics` may name: the reference's
/// timer_data keys, with `_percent` standing for every percentile's variant.
pub const TIMER_METRICS: &[&str] = &[
    "count",
    "count_ps",
    "lower",
    "upper",
    "mean",
    "median",
    "std",
    "sum",
    "sum_squares",
    "histogram",
    "count_percent",
    "mean_percent",
    "upper_percent",
    "lower_percent",
    "sum_percent",
    "sum_squares_percent",
];

/// Parse and validate TOML text; `file` names it in errors.
pub fn from_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    from_str_with(text, file, &Kinds::default())
}

/// [`from_str`], with an embedding program's output kinds besides the
/// built-in ones.
pub fn from_str_with(text: &str, file: &str, kinds: &Kinds) -> Result<Config, ConfigError> {
    let raw: RawConfig = ::toml::from_str(text).map_err(|e| {
        // The toml crate's message names the line and column and quotes the
        // line; the key path is added because that line alone does not say
        // which key it is in a multi-line array or under a `[table]` header.
        let path = e
            .span()
            .and_then(|span| key_path(text, span.start))
            .map(|p| format!("key `{p}`: "))
            .unwrap_or_default();
        ConfigError::Syntax {
            file: file.to_string(),
            message: format!("{path}{}", e.to_string().trim_end()),
        }
    })?;
    validate_with(raw, file, Vec::new(), kinds)
}

/// The dotted path (`flush.histogram[0].bins[1]`) of the key or array element
/// with the smallest span of source text that contains byte `pos`, if the
/// text parses. The whole tree is searched: a `[table]`'s span covers only its
/// header, not the keys under it.
fn key_path(text: &str, pos: usize) -> Option<String> {
    use ::toml::de::{DeTable, DeValue};
    use ::toml::Spanned;
    use std::ops::Range;

    struct Search {
        pos: usize,
        path: Vec<String>,
        best: Option<(usize, String)>,
    }
    impl Search {
        fn consider(&mut self, span: Range<usize>) {
            if span.contains(&self.pos)
                && self.best.as_ref().is_none_or(|(len, _)| span.len() <= *len)
            {
                let mut p = String::new();
                for seg in &self.path {
                    if !p.is_empty() && !seg.starts_with('[') {
                        p.push('.');
                    }
                    p.push_str(seg);
                }
                self.best = Some((span.len(), p));
            }
        }
        fn table(&mut self, t: &DeTable<'_>) {
            for (k, v) in t.iter() {
                self.path.push(k.get_ref().to_string());
                self.consider(k.span());
                self.value(v);
                self.path.pop();
            }
        }
        fn value(&mut self, v: &Spanned<DeValue<'_>>) {
            self.consider(v.span());
            match v.get_ref() {
                DeValue::Table(t) => self.table(t),
                DeValue::Array(a) => {
                    for (i, e) in a.iter().enumerate() {
                        self.path.push(format!("[{i}]"));
                        self.value(e);
                        self.path.pop();
                    }
                }
                _ => {}
            }
        }
    }

    let doc = DeTable::parse(text).ok()?;
    let mut search = Search {
        pos,
        path: Vec::new(),
        best: None,
    };
    search.table(doc.get_ref());
    search.best.map(|(_, p)| p).filter(|p| !p.is_empty())
}

/// Validate a raw config into a [`Config`]. Errors name `file` and the TOML
/// key path (`flush.interval`, `sink[1].address`; list indexes count from 0).
pub fn validate(raw: RawConfig, file: &str, warnings: Vec<String>) -> Result<Config, ConfigError> {
    validate_with(raw, file, warnings, &Kinds::default())
}

/// [`validate`], with these output kinds.
pub fn validate_with(
    raw: RawConfig,
    file: &str,
    warnings: Vec<String>,
    kinds: &Kinds,
) -> Result<Config, ConfigError> {
    validate_inner(raw, file, warnings, kinds).map_err(|b| ConfigError::Invalid {
        file: file.to_string(),
        key: b.key,
        reason: b.reason,
    })
}

fn validate_inner(
    raw: RawConfig,
    file: &str,
    mut warnings: Vec<String>,
    kinds: &Kinds,
) -> Result<Config, Bad> {
    let s = raw.statsd;
    let udp = listen_addrs(&s.udp, "statsd.udp")?;
    let tcp_addrs: Vec<String> = s.tcp.iter().map(|e| e.address().to_string()).collect();
    let tcp = listen_addrs(&tcp_addrs, "statsd.tcp")?;
    let mut tls = Vec::new();
    for (i, (e, addr)) in s.tcp.iter().zip(&tcp).enumerate() {
        if let Some(t) = e.tls() {
            tls.push((
                ListenAddr::Tcp(*addr),
                tls_server(t, file, &format!("statsd.tcp[{i}].tls"))?,
            ));
        }
    }
    let mut unix = Vec::with_capacity(s.unix.len());
    for (i, u) in s.unix.iter().enumerate() {
        if u.path.is_empty() {
            return Err(bad(format!("statsd.unix[{i}].path"), "must not be empty"));
        }
        if unix
            .iter()
            .any(|x: &UnixListen| x.path.as_os_str() == u.path.as_str())
        {
            return Err(bad(
                format!("statsd.unix[{i}].path"),
                format!("{:?} is listed twice", u.path),
            ));
        }
        let mode = match &u.mode {
            None => None,
            Some(m) => Some(parse_mode(m).map_err(|r| bad(format!("statsd.unix[{i}].mode"), r))?),
        };
        let framing = match u.framing.as_deref() {
            None | Some("auto") => Framing::Auto,
            Some("newline") => Framing::Newline,
            Some("length") => Framing::Length,
            Some(other) => {
                return Err(bad(
                    format!("statsd.unix[{i}].framing"),
                    format!("{other:?}: expected \"auto\", \"newline\" or \"length\""),
                ))
            }
        };
        let kind = match u.kind.as_deref() {
            None | Some("stream") => UnixKind::Stream(framing),
            Some("datagram") if u.framing.is_none() => UnixKind::Datagram,
            Some("datagram") => {
                return Err(bad(
                    format!("statsd.unix[{i}].framing"),
                    "a datagram socket has no framing: each datagram is one packet",
                ))
            }
            Some(other) => {
                return Err(bad(
                    format!("statsd.unix[{i}].type"),
                    format!("{other:?}: expected \"stream\" or \"datagram\""),
                ))
            }
        };
        unix.push(UnixListen {
            path: PathBuf::from(&u.path),
            mode,
            kind,
        });
    }
    if s.max_line_length == 0 {
        return Err(bad("statsd.max_line_length", "must be at least 1"));
    }
    if s.max_connections == 0 {
        return Err(bad("statsd.max_connections", "must be at least 1"));
    }
    if !(1..=64).contains(&s.udp_threads) {
        return Err(bad("statsd.udp_threads", "must be from 1 to 64"));
    }
    if !(1..=1024).contains(&s.udp_batch) {
        return Err(bad("statsd.udp_batch", "must be from 1 to 1024"));
    }
    let listen = ListenConfig {
        udp,
        tcp,
        unix,
        max_line_length: s.max_line_length,
        udp_recv_buffer: (s.udp_recv_buffer > 0).then_some(s.udp_recv_buffer),
        udp_threads: s.udp_threads,
        udp_batch: s.udp_batch,
        max_connections: s.max_connections,
        idle_timeout: (!s.idle_timeout.is_zero()).then_some(s.idle_timeout),
        allow: AllowList::parse(&s.allow, "statsd.allow")?,
    };

    let f = raw.flush;
    check_interval(f.interval).map_err(|r| bad("flush.interval", r))?;
    let mut percentiles = Vec::with_capacity(f.percentiles.len());
    for (i, &p) in f.percentiles.iter().enumerate() {
        check_percentile(p).map_err(|r| bad(format!("flush.percentiles[{i}]"), r))?;
        percentiles.push(Percentile { value: p });
    }
    let mut histograms = Vec::with_capacity(f.histogram.len());
    for (i, h) in f.histogram.iter().enumerate() {
        let bins = check_bins(&h.bins).map_err(|r| bad(format!("flush.histogram[{i}].bins"), r))?;
        histograms.push(HistogramRule {
            metric: h.metric.clone(),
            bins,
        });
    }
    for (i, m) in f.calculated_timer_metrics.iter().enumerate() {
        if !TIMER_METRICS.contains(&m.as_str()) {
            return Err(bad(
                format!("flush.calculated_timer_metrics[{i}]"),
                format!(
                    "unknown timer metric {m:?} (known: {})",
                    TIMER_METRICS.join(", ")
                ),
            ));
        }
    }
    check_nonzero(f.shutdown_timeout).map_err(|r| bad("flush.shutdown_timeout", r))?;
    let compute = ComputeOptions {
        interval: f.interval,
        percentiles,
        histograms,
        calculated_timer_metrics: (!f.calculated_timer_metrics.is_empty())
            .then_some(f.calculated_timer_metrics),
    };
    let aggregate = AggregateOptions {
        timer_exact_samples: s.timer_exact_samples,
        delete_counters: f.delete_counters.unwrap_or(f.delete_idle_stats),
        delete_timers: f.delete_timers.unwrap_or(f.delete_idle_stats),
        delete_sets: f.delete_sets.unwrap_or(f.delete_idle_stats),
        delete_gauges: f.delete_gauges.unwrap_or(f.delete_idle_stats),
        // The reference forces anything below 1 to 1; above u32 is "forever" anyway.
        gauges_max_ttl: f.gauges_max_ttl.clamp(1, i64::from(u32::MAX)) as u32,
        limits: series_limits(s.max_series, &s.series_limits)?,
        link: Default::default(),
    };

    let n = raw.naming;
    let naming = Naming {
        legacy_namespace: n.legacy_namespace,
        global_prefix: n.global_prefix,
        prefix_counter: n.prefix_counter,
        prefix_timer: n.prefix_timer,
        prefix_gauge: n.prefix_gauge,
        prefix_set: n.prefix_set,
        global_suffix: n.global_suffix,
        prefix_stats: n.prefix_stats,
        flush_counts: n.flush_counts,
        // The reference's graphite backend sanitises names itself exactly when
        // ingress sanitising is off.
        sanitize_names: !s.key_name_sanitize,
    };

    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&raw.log.level) {
        return Err(bad(
            "log.level",
            format!("not a tracing filter directive: {e}"),
        ));
    }
    let log = LogConfig {
        level: raw.log.level,
        json: raw.log.format == RawLogFormat::Json,
        dump_messages: s.dump_messages,
    };

    let mut tag_dialects: Vec<String> = Vec::with_capacity(s.tag_dialects.len());
    for (i, d) in s.tag_dialects.iter().enumerate() {
        let key = format!("statsd.tag_dialects[{i}]");
        if !TAG_DIALECTS.contains(&d.as_str()) {
            return Err(bad(
                key,
                format!(
                    "unknown tag dialect {d:?} (known: {})",
                    TAG_DIALECTS.join(", ")
                ),
            ));
        }
        if tag_dialects.contains(d) {
            return Err(bad(key, format!("{d:?} is listed twice")));
        }
        tag_dialects.push(d.clone());
    }

    let http = if raw.http.enabled {
        Some(parse_listen_addr(&raw.http.address).map_err(|r| bad("http.address", r))?)
    } else {
        None
    };
    let admin = if raw.admin.enabled {
        Some(parse_listen_addr(&raw.admin.address).map_err(|r| bad("admin.address", r))?)
    } else {
        None
    };
    let health_up = match raw.admin.health.as_str() {
        "up" => true,
        "down" => false,
        other => {
            return Err(bad(
                "admin.health",
                format!("{other:?} is not \"up\" or \"down\""),
            ))
        }
    };
    let admin_token = admin_token(&raw.admin, file)?;
    let web = if raw.http.web_config_file.is_empty() {
        None
    } else {
        let path = relative_to(file, &raw.http.web_config_file);
        let (web, more) = WebConfig::load(&path).map_err(|r| bad("http.web_config_file", r))?;
        warnings.extend(more);
        Some(web)
    };
    let state = if f.state_file.is_empty() {
        if f.persist_counters {
            return Err(bad(
                "flush.persist_counters",
                "needs flush.state_file: the counters are saved there",
            ));
        }
        None
    } else {
        Some(crate::config::StateConfig {
            path: relative_to(file, &f.state_file),
            counters: f.persist_counters,
        })
    };
    let prometheus = PrometheusConfig::validate(&raw.prometheus, file, &mut warnings)?;

    let relay = match &raw.relay {
        None => None,
        Some(r) => {
            let mut rc = super::relay::validate(r, file, |l, k| {
                listen_addrs(l, k).map_err(|b| (b.key, b.reason))
            })
            .map_err(|(key, reason)| bad(key, reason))?;
            for c in &mut rc.clusters {
                if let Some(sp) = &mut c.spool {
                    sp.dir = relative_to(file, &sp.dir.to_string_lossy());
                }
            }
            for (list, addrs, key, which) in [
                (
                    &r.line_tcp,
                    &rc.line_tcp,
                    "relay.line_tcp",
                    ListenAddr::CarbonTcp as fn(_) -> _,
                ),
                (&r.pickle, &rc.pickle, "relay.pickle", ListenAddr::Pickle),
            ] {
                for (i, (e, addr)) in list.iter().zip(addrs).enumerate() {
                    if let Some(t) = e.tls() {
                        tls.push((
                            which(*addr),
                            tls_server(t, file, &format!("{key}[{i}].tls"))?,
                        ));
                    }
                }
            }
            Some(rc)
        }
    };
    let host = crate::host::HostConfig::validate(&raw.host, compute.interval)?;
    let liveness = crate::liveness::LivenessConfig::validate(&raw.liveness, compute.interval)?;
    let events = crate::events::EventsConfig::validate(&raw.events)?;
    let forward = raw
        .forward
        .as_ref()
        .map(|f| crate::forward::ForwardConfig::validate(f, file))
        .transpose()?;
    let aggregator = raw
        .aggregator
        .as_ref()
        .map(|a| crate::forward::AggregatorConfig::validate(a, file, compute.interval))
        .transpose()?;
    if (forward.is_some() || aggregator.is_some()) && !f.align {
        return Err(bad(
            "flush.align",
            "[forward] and [aggregator] need aligned intervals: agents and aggregators cut the same ones",
        ));
    }
    let sinks = sinks(raw.sink, file, relay.is_some(), &prometheus, kinds)?;
    // With HTTP on, flushes feed /metrics even without a sink.
    // An agent forwards its series: its own sinks are optional.
    if sinks.is_empty() && relay.is_none() && http.is_none() && forward.is_none() {
        warnings.push("no sink is configured: flushes are computed and then discarded".to_string());
    }

    Ok(Config {
        source: file.to_string(),
        listen,
        parse: ParseOptions {
            sanitize: s.key_name_sanitize,
            // Every name was checked above.
            tag_dialects: TagDialects::from_names(&tag_dialects)
                .map_err(|e| bad("statsd.tag_dialects", e.to_string()))?,
            max_tags: s.max_tags,
            gauge_deltas: s.gauge_deltas,
        },
        aggregate,
        compute,
        timing: crate::flush::Timing {
            align: f.align,
            // An aggregator waits for its agents' state of each interval.
            grace: aggregator
                .as_ref()
                .map_or(std::time::Duration::ZERO, |a| a.grace),
        },
        naming,
        sinks,
        shutdown_timeout: f.shutdown_timeout,
        self_metrics: f.self_metrics,
        log,
        http,
        admin,
        tls,
        web,
        http_allow: AllowList::parse(&raw.http.allow, "http.allow")?,
        admin_allow: AllowList::parse(&raw.admin.allow, "admin.allow")?,
        health_up,
        admin_token,
        state,
        prometheus,
        relay,
        host,
        liveness,
        events,
        forward,
        aggregator,
        warnings,
    })
}

/// `[statsd] max_series` and `series_limits`, checked: prefixes non-empty
/// and distinct, each `max` at least 1.
fn series_limits(max_series: usize, raw: &[RawSeriesLimit]) -> Result<SeriesLimits, Bad> {
    let mut prefixes: Vec<PrefixLimit> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        if l.prefix.is_empty() {
            return Err(bad(
                format!("statsd.series_limits[{i}].prefix"),
                "must not be empty (max_series limits every series)",
            ));
        }
        if prefixes.iter().any(|p| p.prefix == l.prefix) {
            return Err(bad(
                format!("statsd.series_limits[{i}].prefix"),
                format!("{:?} is listed twice", l.prefix),
            ));
        }
        if l.max == 0 {
            return Err(bad(
                format!("statsd.series_limits[{i}].max"),
                "must be at least 1",
            ));
        }
        prefixes.push(PrefixLimit {
            prefix: l.prefix.clone(),
            max: l.max,
        });
    }
    Ok(SeriesLimits {
        max_series,
        prefixes,
    })
}

/// The tag dialects `[statsd] tag_dialects` accepts.
const TAG_DIALECTS: [&str; 3] = ["influxdb", "librato", "signalfx"];

/// A listener's `tls = { ... }`: the files read and checked now (relative
/// to the config file), so a bad certificate fails at start, or refuses a
/// reload, naming the key.
fn tls_server(t: &RawTls, file: &str, key: &str) -> Result<TlsServer, Bad> {
    TlsServer::load(
        relative_to(file, &t.cert_file),
        relative_to(file, &t.key_file),
        t.client_ca_file.as_deref().map(|p| relative_to(file, p)),
        None,
    )
    .map_err(|r| bad(key, r))
}

/// `[admin] token` or `token_file` (its first line, trimmed).
fn admin_token(a: &crate::config::raw::RawAdmin, file: &str) -> Result<Option<String>, Bad> {
    let token = match (a.token.is_empty(), a.token_file.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {
            return Err(bad(
                "admin.token_file",
                "set either admin.token or admin.token_file, not both",
            ))
        }
        (false, true) => a.token.trim().to_string(),
        (true, false) => {
            let path = relative_to(file, &a.token_file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    "admin.token_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
    };
    if token.len() < 8 {
        let key = if a.token.is_empty() {
            "admin.token_file"
        } else {
            "admin.token"
        };
        return Err(bad(key, "the token must be at least 8 characters"));
    }
    Ok(Some(token))
}

/// Histogram bins: finite and strictly ascending, `inf` only last.
pub(super) fn check_bins(bins: &[RawBin]) -> Result<Vec<Bin>, String> {
    let mut out = Vec::with_capacity(bins.len());
    let mut prev: Option<f64> = None;
    for (i, b) in bins.iter().enumerate() {
        match *b {
            RawBin::Inf if i + 1 == bins.len() => out.push(Bin::Inf),
            RawBin::Inf => return Err("\"inf\" may only be the last bin".to_string()),
            RawBin::Limit(v) if !v.is_finite() => {
                return Err(format!("bin {v} is not finite (use \"inf\" last)"))
            }
            RawBin::Limit(v) => {
                if let Some(p) = prev.filter(|&p| v <= p) {
                    return Err(format!("bins must be ascending, but {v} follows {p}"));
                }
                prev = Some(v);
                out.push(Bin::Limit(v));
            }
        }
    }
    Ok(out)
}

/// The `[[sink]]` tables, each checked by its kind.
fn sinks(
    raw: Vec<RawSink>,
    file: &str,
    has_relay: bool,
    prometheus: &PrometheusConfig,
    kinds: &Kinds,
) -> Result<Vec<SinkSpec>, Bad> {
    let mut out: Vec<SinkSpec> = Vec::with_capacity(raw.len());
    // How many sinks of each type came so far: the default name's number.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("sink[{i}].{k}");
        let Some(kind) = kinds.get(&s.kind) else {
            return Err(bad(
                key("type"),
                format!("unknown sink type {:?} (known: {})", s.kind, kinds.names()),
            ));
        };
        let ordinal = {
            let n = seen.entry(s.kind.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let name = match &s.name {
            Some(n) => {
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(bad(
                        key("name"),
                        format!("{n:?}: use letters, digits, '_' and '-'"),
                    ));
                }
                n.clone()
            }
            None if ordinal == 1 => kind.name().to_string(),
            None => format!("{}-{ordinal}", kind.name()),
        };
        if let Some(j) = out.iter().position(|o| o.name == name) {
            return Err(bad(
                key("name"),
                format!("sink name {name:?} is already used by sink[{j}]; give each sink a unique `name`"),
            ));
        }
        let queue = s.queue.unwrap_or_else(|| kind.default_queue());
        if queue == 0 {
            return Err(bad(key("queue"), "must be at least 1"));
        }
        let mut keys: Vec<String> = ["type", "name", "queue"].map(String::from).into();
        keys.extend(kind.keys());
        let cx = ValidateCx {
            file,
            index: i,
            name: &name,
            kind: kind.name(),
            keys,
            has_relay,
            prometheus,
        };
        let config = kind.validate(s.options, &cx)?;
        out.push(SinkSpec {
            name,
            queue,
            kind: kind.name(),
            config,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{
        RawAdmin, RawFlush, RawHistogram, RawHttp, RawLog, RawNaming, RawStatsd, RawUnix,
    };
    use crate::config::raw::{RawCluster, RawRelay, RawRule};
    use crate::sink::console::{ConsoleConfig, ConsoleFormat};
    use crate::sink::graphite::{GraphiteConfig, GraphiteProtocol};
    use crate::sink::prometheus::options::ObserverType;
    use crate::sink::repeater::{RepeaterConfig, RepeaterProtocol};
    use crate::sink::SinkConfig;
    use crate::spool::SpoolConfig;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    fn spec(name: &str, queue: usize, kind: &'static str, c: impl SinkConfig) -> SinkSpec {
        SinkSpec {
            name: name.into(),
            queue,
            kind,
            config: Arc::new(c),
        }
    }

    fn ok(text: &str) -> Config {
        match from_str(text, "test.toml") {
            Ok(c) => c,
            Err(e) => panic!("{text:?} failed: {e}"),
        }
    }

    #[test]
    fn embedded_default() {
        let c = Config::embedded();
        assert_eq!(c.source, "<embedded default>");
        let any: SocketAddr = "0.0.0.0:8125".parse().unwrap();
        assert_eq!(c.listen.udp, vec![any]);
        assert_eq!(c.listen.tcp, vec![any]);
        assert_eq!(c.flush_interval(), Duration::from_secs(10));
        assert_eq!(
            c.sinks,
            vec![spec(
                "console",
                64,
                "console",
                ConsoleConfig {
                    format: ConsoleFormat::Text,
                    self_metrics: false,
                }
            )]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn empty_file_takes_every_default() {
        let c = ok("");
        let any: SocketAddr = "0.0.0.0:8125".parse().unwrap();
        assert_eq!(
            c.listen,
            ListenConfig {
                udp: vec![any],
                tcp: vec![any],
                unix: vec![],
                max_line_length: 65_536,
                udp_recv_buffer: Some(32 * 1024 * 1024),
                udp_threads: 1,
                udp_batch: 32,
                max_connections: 10_000,
                idle_timeout: None,
                allow: AllowList::default(),
            }
        );
        assert_eq!(
            c.parse,
            ParseOptions {
                sanitize: true,
                tag_dialects: TagDialects::ALL,
                max_tags: 64,
                gauge_deltas: true,
            }
        );
        assert_eq!(c.aggregate, AggregateOptions::default());
        assert_eq!(c.compute, ComputeOptions::default());
        // The naming defaults are the reference's; ingress sanitising is on,
        // so the graphite side does not sanitise again.
        assert_eq!(c.naming, Naming::default());
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(
            c.log,
            LogConfig {
                level: "info".into(),
                json: false,
                dump_messages: false
            }
        );
        assert!(c.sinks.is_empty());
        // HTTP is on by default: flushes feed /metrics, nothing to warn about.
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = ok("[http]\nenabled = false\n");
        assert_eq!(
            c.warnings,
            vec!["no sink is configured: flushes are computed and then discarded"]
        );
    }

    #[test]
    fn the_raw_defaults_match_the_option_defaults() {
        // The option structs' own defaults and the file's defaults must agree,
        // or `Config::default`-style code elsewhere would disagree with the docs.
        let c = ok("");
        assert_eq!(c.compute, ComputeOptions::default());
        assert_eq!(c.aggregate, AggregateOptions::default());
        assert_eq!(c.parse, ParseOptions::default());
    }

    #[test]
    fn example_files_parse() {
        let full = ok(include_str!("../../deploy/examples/statsyard.toml"));
        assert_eq!(full.sinks.len(), 4, "{:?}", full.sinks);
        assert!(full.warnings.is_empty(), "{:?}", full.warnings);
        let graphite = ok(include_str!("../../deploy/examples/graphite.toml"));
        assert!(graphite.sinks[0].config_of::<GraphiteConfig>().is_some());
        assert!(graphite.warnings.is_empty(), "{:?}", graphite.warnings);
    }

    #[test]
    fn full_example_sets_every_value() {
        let c = ok(include_str!("../../deploy/examples/statsyard.toml"));
        assert_eq!(c.listen.unix[0].mode, Some(0o660));
        assert_eq!(c.listen.udp.len(), 2);
        assert_eq!(
            c.compute.percentiles,
            vec![
                Percentile { value: 90.0 },
                Percentile { value: 99.9 },
                Percentile { value: -10.0 }
            ]
        );
        assert_eq!(
            c.compute.histograms[0].bins.last(),
            Some(&Bin::Inf),
            "{:?}",
            c.compute.histograms
        );
        let names: Vec<&str> = c.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["console", "carbon", "carbon-pickle", "repeater"]);
    }

    #[test]
    fn values_are_mapped() {
        let c = ok(r#"
            [statsd]
            udp = ["127.0.0.1:9125", "[::1]:9125"]
            tcp = []
            unix = [{ path = "/run/s.sock", mode = "0660" }, { path = "rel.sock" },
                    { path = "g.sock", type = "datagram" }, { path = "l.sock", framing = "length" }]
            udp_recv_buffer = 0
            idle_timeout = "0s"
            key_name_sanitize = false
            timer_exact_samples = 5
            dump_messages = true
            [flush]
            interval = "250ms"
            percentiles = [95, 99.5, -10]
            histogram = [{ metric = "render", bins = [0.01, 1, "inf"] }, { metric = "", bins = [] }]
            calculated_timer_metrics = ["count", "upper_percent"]
            delete_idle_stats = true
            delete_gauges = false
            gauges_max_ttl = -3
            shutdown_timeout = "2s"
            [naming]
            global_suffix = ""
            [log]
            level = "statsyard=debug,warn"
            format = "json"
        "#);
        assert_eq!(
            c.listen.udp,
            vec![
                "127.0.0.1:9125".parse::<SocketAddr>().unwrap(),
                "[::1]:9125".parse().unwrap()
            ]
        );
        assert!(c.listen.tcp.is_empty());
        assert_eq!(
            c.listen.unix,
            vec![
                UnixListen {
                    path: "/run/s.sock".into(),
                    mode: Some(0o660),
                    kind: UnixKind::Stream(Framing::Auto),
                },
                UnixListen {
                    path: "rel.sock".into(),
                    mode: None,
                    kind: UnixKind::Stream(Framing::Auto),
                },
                UnixListen {
                    path: "g.sock".into(),
                    mode: None,
                    kind: UnixKind::Datagram,
                },
                UnixListen {
                    path: "l.sock".into(),
                    mode: None,
                    kind: UnixKind::Stream(Framing::Length),
                },
            ]
        );
        assert_eq!(c.listen.udp_recv_buffer, None);
        assert_eq!(c.listen.idle_timeout, None);
        assert_eq!(
            c.parse,
            ParseOptions {
                sanitize: false,
                tag_dialects: TagDialects::ALL,
                max_tags: 64,
                gauge_deltas: true,
            }
        );
        assert!(c.naming.sanitize_names);
        assert_eq!(c.naming.global_suffix.as_deref(), Some(""));
        assert_eq!(c.compute.interval, Duration::from_millis(250));
        assert_eq!(
            c.compute.percentiles,
            vec![
                Percentile { value: 95.0 },
                Percentile { value: 99.5 },
                Percentile { value: -10.0 }
            ]
        );
        assert_eq!(
            c.compute.histograms,
            vec![
                HistogramRule {
                    metric: "render".into(),
                    bins: vec![Bin::Limit(0.01), Bin::Limit(1.0), Bin::Inf]
                },
                HistogramRule {
                    metric: String::new(),
                    bins: vec![]
                },
            ]
        );
        assert_eq!(
            c.compute.calculated_timer_metrics,
            Some(vec!["count".to_string(), "upper_percent".to_string()])
        );
        assert_eq!(
            c.aggregate,
            AggregateOptions {
                timer_exact_samples: 5,
                delete_counters: true,
                delete_timers: true,
                delete_sets: true,
                delete_gauges: false,
                gauges_max_ttl: 1,
                limits: SeriesLimits {
                    max_series: 1_000_000,
                    prefixes: vec![],
                },
                link: Default::default(),
            }
        );
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(
            c.log,
            LogConfig {
                level: "statsyard=debug,warn".into(),
                json: true,
                dump_messages: true
            }
        );
    }

    #[test]
    fn delete_flags_default_to_delete_idle_stats() {
        let cases: &[(&str, [bool; 4])] = &[
            ("", [false; 4]),
            ("delete_idle_stats = true", [true; 4]),
            ("delete_timers = true", [false, true, false, false]),
            (
                "delete_idle_stats = true\ndelete_sets = false",
                [true, true, false, true],
            ),
        ];
        for (body, want) in cases {
            let a = ok(&format!("[flush]\n{body}\n")).aggregate;
            assert_eq!(
                [
                    a.delete_counters,
                    a.delete_timers,
                    a.delete_sets,
                    a.delete_gauges
                ],
                *want,
                "{body}"
            );
        }
    }

    #[test]
    fn gauges_max_ttl_below_one_is_one() {
        for (v, want) in [(-5i64, 1u32), (0, 1), (1, 1), (7, 7), (1 << 40, u32::MAX)] {
            let c = ok(&format!("[flush]\ngauges_max_ttl = {v}\n"));
            assert_eq!(c.aggregate.gauges_max_ttl, want, "{v}");
        }
    }

    #[test]
    fn admin_token_and_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        let file = file.to_str().unwrap();
        std::fs::write(dir.path().join("tok"), "  from-a-file \nsecond line\n").unwrap();
        let load = |text: &str| from_str(text, file);
        let c = load("[admin]\ntoken = \"long-enough\"").unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("long-enough"));
        let c = load("[admin]\ntoken_file = \"tok\"").unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("from-a-file"));
        assert_eq!(load("").unwrap().admin_token, None);
        for (text, key, why) in [
            ("[admin]\ntoken = \"short\"", "admin.token", "at least 8"),
            (
                "[admin]\ntoken_file = \"missing\"",
                "admin.token_file",
                "cannot read",
            ),
            (
                "[admin]\ntoken = \"long-enough\"\ntoken_file = \"tok\"",
                "admin.token_file",
                "not both",
            ),
            (
                "[flush]\npersist_counters = true",
                "flush.persist_counters",
                "state_file",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(why), "{text}: {e}");
        }
        let c = load("[flush]\nstate_file = \"st\"\npersist_counters = true").unwrap();
        let st = c.state.unwrap();
        assert_eq!(st.path, dir.path().join("st"));
        assert!(st.counters);
    }

    #[test]
    fn http_admin_and_prometheus() {
        let c = ok("");
        assert!(c.health_up);
        assert_eq!(c.http, Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(c.admin, Some("127.0.0.1:8126".parse().unwrap()));
        assert_eq!(c.parse.tag_dialects, TagDialects::ALL);
        let p = &c.prometheus.options;
        assert_eq!(
            p.quantiles,
            crate::sink::prometheus::options::default_quantiles()
        );
        assert_eq!(
            p.buckets,
            crate::sink::prometheus::options::default_buckets()
        );
        assert_eq!(p.observer, ObserverType::Summary);
        assert_eq!(p.ttl, Duration::from_secs(600));
        assert_eq!(p.max_series, 1_000_000);
        assert_eq!(p.idle_timeout, Duration::from_secs(900));
        assert!(p.mapping.is_none() && c.prometheus.mapping_file.is_none());

        let c = ok(r#"
            [http]
            enabled = false
            [admin]
            address = "[::1]:1234"
            health = "down"
            [statsd]
            tag_dialects = ["signalfx"]
            [prometheus]
            quantiles = [{ quantile = 0.75, error = 0.01 }]
            buckets = [1, 2]
            observer = "histogram"
            ttl = "0s"
            max_series = 5
            idle_timeout = "90s"
        "#);
        assert_eq!(c.http, None);
        assert_eq!(c.admin, Some("[::1]:1234".parse().unwrap()));
        assert!(!c.health_up);
        assert_eq!(
            c.parse.tag_dialects,
            TagDialects {
                signalfx: true,
                ..TagDialects::NONE
            }
        );
        let p = &c.prometheus.options;
        assert_eq!(p.quantiles.len(), 1);
        assert_eq!(p.buckets, [1.0, 2.0]);
        assert_eq!(p.observer, ObserverType::Histogram);
        assert_eq!(p.ttl, Duration::ZERO);
        assert_eq!(p.max_series, 5);
        assert_eq!(p.idle_timeout, Duration::from_secs(90));

        crate::config::assert_invalid(
            from_str,
            "s.toml",
            &[
                ("[http]\naddress = \"nope\"", "http.address", ""),
                ("[admin]\naddress = \"1.2.3.4\"", "admin.address", ""),
                ("[admin]\nhealth = \"meh\"", "admin.health", "not"),
                (
                    "[relay]\n[[relay.cluster]]\nname = \"c\"\nmethod = \"forward\"\n\
                     destinations = [\"a:1\", { address = \"b:2\", protocol = \"udp\" }]",
                    "relay.cluster[0].destinations[1].protocol",
                    "not `plain` or `pickle`",
                ),
                (
                    "[statsd]\ntag_dialects = [\"dogstatsd\"]",
                    "statsd.tag_dialects[0]",
                    "unknown tag dialect",
                ),
                (
                    "[prometheus]\nquantiles = [{quantile = 2.0, error = 0.1}]",
                    "prometheus.quantiles[0].quantile",
                    "from 0 to 1",
                ),
                (
                    "[prometheus]\nbuckets = [2, 1]",
                    "prometheus.buckets[1]",
                    "increasing",
                ),
                (
                    "[prometheus]\nobserver = \"gauge\"",
                    "prometheus.observer",
                    "unknown observer type",
                ),
                (
                    "[prometheus]\nmax_series = 0",
                    "prometheus.max_series",
                    "at least 1",
                ),
                (
                    "[prometheus]\nmapping_file = \"/nonexistent/m.yml\"",
                    "prometheus.mapping_file",
                    "cannot read",
                ),
            ],
        );
    }

    #[test]
    fn spool_dirs_are_per_sink_and_relative_to_the_config_file() {
        let text = r#"
            [[sink]]
            type = "graphite"
            address = "a:1"
            spool_dir = "spool"
            [[sink]]
            type = "graphite"
            name = "other"
            address = "a:1"
            spool_dir = "/var/spool/statsyard"
            spool_bytes = 1048576
        "#;
        let c = from_str(text, "/etc/statsyard/statsyard.toml").unwrap();
        let spools: Vec<Option<SpoolConfig>> = c
            .sinks
            .iter()
            .map(|s| match s.config_of::<GraphiteConfig>() {
                Some(g) => g.spool.clone(),
                None => panic!("{s:?}"),
            })
            .collect();
        assert_eq!(
            spools,
            [
                Some(SpoolConfig {
                    dir: "/etc/statsyard/spool/graphite".into(),
                    max_bytes: 1 << 30,
                    segment_bytes: 8 << 20,
                }),
                Some(SpoolConfig {
                    dir: "/var/spool/statsyard/other".into(),
                    max_bytes: 1 << 20,
                    segment_bytes: 1 << 17,
                }),
            ]
        );
    }

    #[test]
    fn sinks_and_their_defaults() {
        let c = ok(r#"
            [[sink]]
            type = "graphite"
            address = "carbon:2003"
            [[sink]]
            type = "graphite"
            address = "[::1]:2004"
            protocol = "pickle"
            [[sink]]
            type = "repeater"
            destinations = ["10.0.0.1:8125", "statsd.example.com:8125"]
            protocol = "tcp"
            [[sink]]
            type = "console"
            name = "debug_out"
            queue = 3
            format = "json"
        "#);
        let graphite = |address: &str, protocol| GraphiteConfig {
            address: address.into(),
            protocol,
            buffer_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            spool: None,
            tls: None,
            per_flush: false,
        };
        assert_eq!(
            c.sinks,
            vec![
                spec(
                    "graphite",
                    64,
                    "graphite",
                    graphite("carbon:2003", GraphiteProtocol::Text)
                ),
                spec(
                    "graphite-2",
                    64,
                    "graphite",
                    graphite("[::1]:2004", GraphiteProtocol::Pickle)
                ),
                spec(
                    "repeater",
                    65_536,
                    "repeater",
                    RepeaterConfig {
                        destinations: vec![
                            "10.0.0.1:8125".into(),
                            "statsd.example.com:8125".into()
                        ],
                        protocol: RepeaterProtocol::Tcp,
                        backoff_max: Duration::from_secs(30),
                    }
                ),
                spec(
                    "debug_out",
                    3,
                    "console",
                    ConsoleConfig {
                        format: ConsoleFormat::Json,
                        self_metrics: false,
                    }
                ),
            ]
        );
    }

    /// (file text, key the error names, part of the reason)
    const INVALID: &[(&str, &str, &str)] = &[
        ("[statsd]\nudp = [\"localhost:8125\"]", "statsd.udp[0]", "not an IP:port"),
        ("[statsd]\nudp = [\"0.0.0.0\"]", "statsd.udp[0]", "not an IP:port"),
        ("[statsd]\ntcp = [\"0.0.0.0:1\", \"0.0.0.0:1\"]", "statsd.tcp[1]", "listed twice"),
        ("[statsd]\nunix = [{ path = \"\" }]", "statsd.unix[0].path", "empty"),
        ("[statsd]\nunix = [{ path = \"a\" }, { path = \"a\" }]", "statsd.unix[1].path", "twice"),
        ("[statsd]\nunix = [{ path = \"a\", mode = \"0890\" }]", "statsd.unix[0].mode", "octal"),
        ("[statsd]\nunix = [{ path = \"a\", mode = \"17777\" }]", "statsd.unix[0].mode", "octal"),
        ("[statsd]\nunix = [{ path = \"a\", mode = \"\" }]", "statsd.unix[0].mode", "octal"),
        ("[statsd]\nunix = [{ path = \"a\", type = \"seqpacket\" }]", "statsd.unix[0].type", "\"stream\" or \"datagram\""),
        ("[statsd]\nunix = [{ path = \"a\", framing = \"crlf\" }]", "statsd.unix[0].framing", "\"auto\", \"newline\" or \"length\""),
        ("[statsd]\nunix = [{ path = \"a\", type = \"datagram\", framing = \"length\" }]", "statsd.unix[0].framing", "no framing"),
        ("[statsd]\nmax_line_length = 0", "statsd.max_line_length", "at least 1"),
        ("[statsd]\nmax_connections = 0", "statsd.max_connections", "at least 1"),
        (
            "[statsd]\nseries_limits = [{ prefix = \"\", max = 1 }]",
            "statsd.series_limits[0].prefix",
            "empty",
        ),
        (
            "[statsd]\nseries_limits = [{ prefix = \"a\", max = 1 }, { prefix = \"a\", max = 2 }]",
            "statsd.series_limits[1].prefix",
            "twice",
        ),
        (
            "[statsd]\nseries_limits = [{ prefix = \"a\", max = 0 }]",
            "statsd.series_limits[0].max",
            "at least 1",
        ),
        ("[flush]\ninterval = \"0s\"", "flush.interval", "at least 1ms"),
        ("[flush]\ninterval = \"500us\"", "flush.interval", "at least 1ms"),
        ("[flush]\npercentiles = [0]", "flush.percentiles[0]", "not a percentile"),
        ("[flush]\npercentiles = [90, 100.5]", "flush.percentiles[1]", "not a percentile"),
        ("[flush]\npercentiles = [-100]", "flush.percentiles[0]", "not a percentile"),
        ("[flush]\npercentiles = [nan]", "flush.percentiles[0]", "not a percentile"),
        ("[flush]\npercentiles = [inf]", "flush.percentiles[0]", "not a percentile"),
        ("[flush]\nhistogram = [{ metric = \"a\", bins = [1, 1] }]", "flush.histogram[0].bins", "ascending"),
        ("[flush]\nhistogram = [{ metric = \"a\", bins = [2, 1] }]", "flush.histogram[0].bins", "ascending"),
        ("[flush]\nhistogram = [{ metric = \"a\", bins = [\"inf\", 1] }]", "flush.histogram[0].bins", "last"),
        ("[flush]\nhistogram = [{ metric = \"a\", bins = [1, inf] }]", "flush.histogram[0].bins", "not finite"),
        ("[flush]\ncalculated_timer_metrics = [\"count\", \"p99\"]", "flush.calculated_timer_metrics[1]", "unknown timer metric"),
        ("[flush]\nshutdown_timeout = \"0s\"", "flush.shutdown_timeout", "longer than 0s"),
        ("[log]\nlevel = \"statsyard=loud\"", "log.level", "filter directive"),
        ("[[sink]]\ntype = \"console\"\nport = 1", "sink[0].port", "not a key of a console sink (its keys: type, name, queue, format, self_metrics)"),
        ("[[sink]]\ntype = \"x\"", "sink[0].type", "unknown sink type \"x\" (known: \"console\", \"graphite\""),
        ("[[sink]]\ntype = \"graphite\"", "sink[0].address", "needs `address"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nbuffer_bytes = \"big\"", "sink[0].buffer_bytes", "invalid type"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"carbon\"", "sink[0].address", "no port"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"carbon:0\"", "sink[0].address", "not a port"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"carbon:x\"", "sink[0].address", "not a port"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \":2003\"", "sink[0].address", "no host"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"::1:2003\"", "sink[0].address", "brackets"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"[zz]:2003\"", "sink[0].address", "IPv6"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a b:2003\"", "sink[0].address", "not a host name"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nprotocol = \"udp\"", "sink[0].protocol", "\"text\" or \"pickle\""),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nconnect_timeout = \"0s\"", "sink[0].connect_timeout", "longer than 0s"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nbackoff_min = \"0s\"", "sink[0].backoff_min", "longer than 0s"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nbackoff_min = \"2s\"\nbackoff_max = \"1s\"", "sink[0].backoff_max", "shorter than backoff_min"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nformat = \"json\"", "sink[0].format", "not a key of a graphite sink"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nspool_bytes = 1048576", "sink[0].spool_bytes", "needs `spool_dir` too"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nspool_dir = \"s\"\nspool_bytes = 1000", "sink[0].spool_bytes", "at least 65536"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\nspool_dir = \"\"", "sink[0].spool_dir", "must not be empty"),
        ("[[sink]]\ntype = \"console\"\nspool_dir = \"s\"", "sink[0].spool_dir", "not a key of a console sink"),
        ("[[sink]]\ntype = \"graphite\"\naddress = \"a:1\"\ndestinations = []", "sink[0].destinations", "not a key of a graphite sink"),
        ("[[sink]]\ntype = \"console\"\naddress = \"a:1\"", "sink[0].address", "not a key of a console sink"),
        ("[[sink]]\ntype = \"console\"\nformat = \"xml\"", "sink[0].format", "\"text\" or \"json\""),
        ("[[sink]]\ntype = \"console\"\nqueue = 0", "sink[0].queue", "at least 1"),
        ("[[sink]]\ntype = \"console\"\nname = \"a.b\"", "sink[0].name", "letters, digits"),
        ("[[sink]]\ntype = \"console\"\nname = \"\"", "sink[0].name", "letters, digits"),
        ("[[sink]]\ntype = \"console\"\n[[sink]]\ntype = \"console\"\nname = \"console\"", "sink[1].name", "already used by sink[0]"),
        ("[[sink]]\ntype = \"repeater\"", "sink[0].destinations", "at least one"),
        ("[[sink]]\ntype = \"repeater\"\ndestinations = []", "sink[0].destinations", "at least one"),
        ("[[sink]]\ntype = \"repeater\"\ndestinations = [\"a:1\", \"b\"]", "sink[0].destinations[1]", "no port"),
        ("[[sink]]\ntype = \"repeater\"\ndestinations = [\"a:1\"]\nprotocol = \"udp4\"", "sink[0].protocol", "\"udp\" or \"tcp\""),
        ("[[sink]]\ntype = \"repeater\"\ndestinations = [\"a:1\"]\nbackoff_min = \"1s\"", "sink[0].backoff_min", "not a key of a repeater sink"),
        ("[[sink]]\ntype = \"repeater\"\ndestinations = [\"a:1\"]\nbackoff_max = \"0s\"", "sink[0].backoff_max", "longer than 0s"),
    ];

    #[test]
    fn invalid_values_name_file_and_key() {
        crate::config::assert_invalid(from_str, "test.toml", INVALID);
    }

    /// (file text, what the message must contain)
    const SYNTAX: &[(&str, &[&str])] = &[
        (
            "[flush]\ninterval = 5",
            &["key `flush.interval`", "line 2", "expected a duration"],
        ),
        (
            "[flush]\ninterval = \"10 parsecs\"",
            &["key `flush.interval`", "line 2"],
        ),
        (
            "[statsd]\nudpp = []",
            &["key `statsd.udpp`", "unknown field `udpp`"],
        ),
        (
            "[stats]\nudp = []",
            &["key `stats`", "unknown field `stats`"],
        ),
        (
            "[[sink]]\ntype = \"console\"\n[[sink]]\nname = \"a\"",
            &["key `sink[1]`", "line 3", "missing field `type`"],
        ),
        (
            "[flush]\nhistogram = [\n  { metric = \"a\", bins = [1, \"x\"] },\n]",
            &[
                "key `flush.histogram[0].bins[1]`",
                "line 3",
                "a number or \"inf\"",
            ],
        ),
        (
            "[flush]\nhistogram = [{ metric = \"a\" }]",
            &["key `flush.histogram[0]`", "missing field `bins`"],
        ),
        (
            "[statsd]\nunix = [{ path = \"a\", mode = 0o660 }]",
            &["key `statsd.unix[0].mode`", "expected a string"],
        ),
        (
            "[statsd]\nmax_connections = -1",
            &["key `statsd.max_connections`"],
        ),
        (
            "[log]\nformat = \"xml\"",
            &["key `log.format`", "unknown variant `xml`"],
        ),
        (
            "[naming]\nglobal_suffix = 1",
            &["key `naming.global_suffix`", "expected a string"],
        ),
        ("a = = 1", &["line 1"]),
    ];

    #[test]
    fn syntax_errors_name_file_key_and_line() {
        for (text, parts) in SYNTAX {
            let e = from_str(text, "test.toml").expect_err(text);
            assert!(matches!(e, ConfigError::Syntax { .. }), "{text}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with("test.toml: "), "{msg}");
            for p in *parts {
                assert!(msg.contains(p), "{text}: {p:?} not in {msg}");
            }
        }
    }

    #[test]
    fn host_port_check() {
        for good in [
            "a:1",
            "carbon.example.com:2003",
            "10.0.0.1:2003",
            "[::1]:2003",
            "host_1.:65535",
        ] {
            assert_eq!(crate::check::check_address(good), Ok(()), "{good}");
        }
        for bad in [
            "a",
            "a:",
            "a:65536",
            ":1",
            "[::1:1",
            "a..b:1",
            "a/b:1",
            "[1.2.3.4]:1",
        ] {
            assert!(crate::check::check_address(bad).is_err(), "{bad}");
        }
    }

    /// Every key of every raw struct, as `table` → keys (`unix[].path` for
    /// keys inside an array of tables), from a config with every field set.
    fn all_keys() -> Vec<(String, String)> {
        let full = RawConfig {
            statsd: RawStatsd {
                unix: vec![RawUnix {
                    path: "p".into(),
                    mode: Some("0660".into()),
                    kind: Some("stream".into()),
                    framing: Some("auto".into()),
                }],
                ..RawStatsd::default()
            },
            flush: RawFlush {
                histogram: vec![RawHistogram {
                    metric: "m".into(),
                    bins: vec![RawBin::Inf],
                }],
                calculated_timer_metrics: vec!["count".into()],
                delete_counters: Some(true),
                delete_timers: Some(true),
                delete_sets: Some(true),
                delete_gauges: Some(true),
                ..RawFlush::default()
            },
            naming: RawNaming {
                global_suffix: Some("s".into()),
                ..RawNaming::default()
            },
            log: RawLog::default(),
            sink: Vec::new(),
            http: RawHttp::default(),
            admin: RawAdmin::default(),
            prometheus: crate::sink::prometheus::RawPrometheus {
                mapping_file: "m.yml".into(),
                ..Default::default()
            },
            relay: Some(RawRelay {
                cluster: vec![RawCluster {
                    name: "c".into(),
                    method: "carbon_ch".into(),
                    destinations: vec!["a:1".into()],
                    replication: 1,
                    diverse_replicas: true,
                    protocol: "plain".into(),
                    spool_dir: Some("spool".into()),
                    spool_bytes: Some(1 << 30),
                    tls: Some(Default::default()),
                }],
                rule: vec![RawRule {
                    pattern: "x".into(),
                    send_to: Some(vec!["c".into()]),
                    rewrite: Some("y".into()),
                    continue_: true,
                    stop: true,
                }],
                ..RawRelay::default()
            }),
            host: crate::host::RawHost {
                interval: Some(std::time::Duration::from_secs(10)),
                process: vec![crate::host::config::RawProcess {
                    name: "n".into(),
                    pattern: Some("p".into()),
                }],
                ..Default::default()
            },
            liveness: crate::liveness::RawLiveness {
                dark_after: Some(std::time::Duration::from_secs(30)),
                series: vec![crate::liveness::config::RawSeriesTtl {
                    pattern: "p".into(),
                    ttl: std::time::Duration::from_secs(60),
                }],
                ..Default::default()
            },
            events: Default::default(),
            forward: Some(crate::forward::RawForward {
                spool_dir: Some("spool".into()),
                spool_bytes: Some(1 << 30),
                tls: Some(Default::default()),
                ..Default::default()
            }),
            aggregator: Some(crate::forward::RawAggregator {
                grace: Some(std::time::Duration::from_secs(2)),
                ..Default::default()
            }),
        };
        fn walk(prefix: &str, t: &::toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let key = format!("{prefix}{k}");
                out.push(key.clone());
                if let Some(inner) = v
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|e| e.as_table())
                {
                    walk(&format!("{key}[]."), inner, out);
                }
            }
        }
        let value = ::toml::Table::try_from(&full).expect("serialisable");
        let mut out = Vec::new();
        for (table, v) in &value {
            let (section, inner) = match v {
                ::toml::Value::Table(t) => (format!("[{table}]"), t),
                // `[[sink]]`: each kind's keys are added below.
                ::toml::Value::Array(a) if a.is_empty() => continue,
                ::toml::Value::Array(a) => (
                    format!("[[{table}]]"),
                    a[0].as_table().expect("sink is an array of tables"),
                ),
                other => panic!("top-level {table} is {other:?}"),
            };
            let mut keys = Vec::new();
            walk("", inner, &mut keys);
            out.extend(keys.into_iter().map(|k| (section.clone(), k)));
        }
        // Each output kind's table: the common keys, then its own.
        for kind in crate::sink::builtin().iter() {
            let section = format!("[[sink]] type = \"{}\"", kind.name());
            for k in ["type", "name", "queue"]
                .map(String::from)
                .into_iter()
                .chain(kind.keys())
            {
                out.push((section.clone(), k));
            }
        }
        out
    }

    #[test]
    fn limits_are_read() {
        let c = from_str(
            "[statsd]\nmax_series = 7\nmax_tags = 3\n\
             series_limits = [{ prefix = \"app.\", max = 2 }, { prefix = \"b\", max = 9 }]\n\
             [relay]\nmax_connections = 5\nidle_timeout = \"2s\"\n\
             [[relay.cluster]]\nname = \"c\"\nmethod = \"forward\"\ndestinations = [\"a:1\"]",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.parse.max_tags, 3);
        assert_eq!(
            c.aggregate.limits,
            SeriesLimits {
                max_series: 7,
                prefixes: vec![
                    PrefixLimit {
                        prefix: "app.".into(),
                        max: 2
                    },
                    PrefixLimit {
                        prefix: "b".into(),
                        max: 9
                    },
                ],
            }
        );
        let r = c.relay.unwrap();
        assert_eq!(r.line.max_connections, 5);
        assert_eq!(r.line.idle_timeout, Some(Duration::from_secs(2)));
        let d = Config::embedded();
        assert_eq!(d.parse.max_tags, 64);
        assert_eq!(d.aggregate.limits.max_series, 1_000_000);
        crate::config::assert_invalid(
            from_str,
            "t.toml",
            &[(
                "[relay]\nmax_connections = 0\n[[relay.cluster]]\nname = \"c\"\n\
                 method = \"forward\"\ndestinations = [\"a:1\"]",
                "relay.max_connections",
                "at least 1",
            )],
        );
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/configuration.md");
        let keys = all_keys();
        assert!(keys.len() > 40, "{keys:?}");
        for (section, key) in keys {
            // The section starts at a heading naming `[table]` and runs to the next heading.
            let heading = docs
                .lines()
                .position(|l| l.starts_with('#') && l.contains(&format!("`{section}`")))
                .unwrap_or_else(|| panic!("no heading for {section} in docs/configuration.md"));
            // ... and runs to the next heading of its level or above.
            let level = |l: &str| l.chars().take_while(|&c| c == '#').count();
            let own = level(docs.lines().nth(heading).unwrap_or(""));
            let body: Vec<&str> = docs
                .lines()
                .skip(heading + 1)
                .take_while(|l| !(l.starts_with('#') && level(l) <= own))
                .collect();
            let row = format!("| `{key}` |");
            assert!(
                body.iter().any(|l| l.starts_with(&row)),
                "{section} {key}: no row starting {row:?} in docs/configuration.md"
            );
        }
    }
}

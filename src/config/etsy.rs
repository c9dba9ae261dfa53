//! The reference statsd's `config.js` → [`Config`].
//!
//! The reference `eval`s the file as a JavaScript expression. statsyard reads
//! it as data instead: a JSON5 object literal (unquoted keys, either quote,
//! comments, trailing commas), optionally wrapped in `( ... )` and followed by
//! `;`. The keys are translated into a [`RawConfig`] with the reference's
//! defaults and falsy-value rules (`config.port || 8125` ...) and validated by
//! the same code as statsyard.toml; everything a `config.js` cannot say takes
//! statsyard's defaults. The few JavaScript forms real configs compute values
//! with (`require('os').hostname()`, `process.env.X`, `||`, `+` on strings)
//! are evaluated first ([`expr`]).
//!
//! Imports, besides `config` itself: `check`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Map, Value};

mod expr;

use super::raw::{RawBin, RawConfig, RawHistogram, RawSink, RawUnix};
use super::{Config, ConfigError};

type Obj = Map<String, Value>;

/// Top-level keys this module maps.
const MAPPED: &[&str] = &[
    "healthStatus",
    "mgmt_address",
    "mgmt_port",
    "address",
    "address_ipv6",
    "backends",
    "calculatedTimerMetrics",
    "debug",
    "deleteCounters",
    "deleteGauges",
    "deleteIdleStats",
    "deleteSets",
    "deleteTimers",
    "dumpMessages",
    "flushInterval",
    "flush_counts",
    "gaugesMaxTTL",
    "graphite",
    "graphiteHost",
    "graphitePicklePort",
    "graphitePort",
    "graphiteProtocol",
    "histogram",
    "keyNameSanitize",
    "percentThreshold",
    "port",
    "prefixStats",
    "repeater",
    "repeaterProtocol",
    "server",
    "servers",
    "socket",
    "socket_mod",
];

/// The keys of a server: an entry of `servers`, or the top level without it.
const SERVER_KEYS: &[&str] = &[
    "server",
    "address",
    "address_ipv6",
    "port",
    "socket",
    "socket_mod",
];

const GRAPHITE_KEYS: &[&str] = &[
    "legacyNamespace",
    "globalPrefix",
    "prefixCounter",
    "prefixTimer",
    "prefixGauge",
    "prefixSet",
    "globalSuffix",
];

/// The deepest nesting of arrays, objects and parentheses a `config.js` may
/// have. The reference's own config needs 3.
const MAX_NESTING: usize = 128;

/// Parse and translate a `config.js` text; `file` names it in errors.
pub fn from_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: file.to_string(),
        message,
    };
    // json5's parser and serde_json's drop both recurse once per level, so
    // a deep enough nesting would overflow the stack instead of failing.
    let depth = nesting_depth(text);
    if depth > MAX_NESTING {
        return Err(syntax(format!(
            "brackets nested {depth} deep; at most {MAX_NESTING} levels are supported"
        )));
    }
    let evaluated = expr::evaluate(text, &expr::Process);
    let mut value: Value = json5::from_str(&unwrap_expression(&evaluated.text)).map_err(|e| {
        let hint = if e.code() == Some(json5::ErrorCode::LeadingZero) {
            "; write an octal socket_mod as a string, e.g. '0660'"
        } else {
            ""
        };
        syntax(format!(
            "{e}{hint} (statsyard reads config.js as data: only literal values \
             - numbers, strings, true/false/null, arrays and objects - are supported, \
             and the expressions require('os').hostname(), process.env.NAME, parseInt(...), \
             Number(...), `+` on strings and `||`; not other JavaScript such as variables, \
             other functions or arithmetic)"
        ))
    })?;
    if evaluated.undefined {
        expr::prune_undefined(&mut value);
    }
    let Value::Object(obj) = value else {
        return Err(syntax(
            "config.js must be one object literal: { key: value, ... }".to_string(),
        ));
    };
    let t = translate(&obj).map_err(|b| ConfigError::Invalid {
        file: file.to_string(),
        key: b.key,
        reason: b.reason,
    })?;
    super::toml::validate(t.raw, file, t.warnings).map_err(|e| match e {
        // Name the config.js key, not the statsyard.toml key it became.
        ConfigError::Invalid { file, key, reason } => ConfigError::Invalid {
            file,
            key: js_key(&key, &t.sink_origin),
            reason,
        },
        other => other,
    })
}

/// Blank out what makes a JavaScript expression of an object literal but is
/// not JSON5: a wrapping `( ... )` and trailing `;`. Blanking (rather than
/// slicing) keeps the line and column of every later json5 error right.
fn unwrap_expression(text: &str) -> String {
    let b = text.as_bytes();
    let sig = significant(text);
    let mut out = text.to_string();
    // Every blanked byte is an ASCII punctuation character, so replacing it
    // with a space keeps the string valid UTF-8 and every offset in place.
    let mut blank = |at: usize| out.replace_range(at..at + 1, " ");
    let mut end = sig.len();
    while end > 0 && b[sig[end - 1]] == b';' {
        end -= 1;
        blank(sig[end]);
    }
    if end >= 2 && b[sig[0]] == b'(' && b[sig[end - 1]] == b')' {
        blank(sig[0]);
        blank(sig[end - 1]);
    }
    out
}

/// The deepest nesting of `[`, `{` and `(` outside strings and comments.
fn nesting_depth(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    for at in significant(text) {
        match b[at] {
            b'[' | b'{' | b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Byte offsets of every character outside comments and whitespace (for
/// strings, the quotes), found with a minimal lexer so that a `;` or `)`
/// inside a comment or a string is left alone.
fn significant(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut sig: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                // JSON5 also ends a line at U+2028 and U+2029.
                while i < b.len()
                    && b[i] != b'\n'
                    && b[i] != b'\r'
                    && !b[i..].starts_with("\u{2028}".as_bytes())
                    && !b[i..].starts_with("\u{2029}".as_bytes())
                {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = match text[i + 2..].find("*/") {
                    Some(end) => i + 2 + end + 2,
                    None => b.len(),
                };
            }
            q @ (b'"' | b'\'') => {
                sig.push(i);
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == q {
                        sig.push(i);
                        i += 1;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                sig.push(i);
                i += 1;
            }
        }
    }
    sig
}

/// A translation failure, before it is given the file name.
#[derive(Debug)]
struct Bad {
    key: String,
    reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A translated `config.js`.
struct Translated {
    raw: RawConfig,
    warnings: Vec<String>,
    /// The config.js key each sink came from, to name it in validation errors.
    sink_origin: Vec<&'static str>,
}

/// Map a statsyard.toml key path from [`super::toml::validate`] back to the
/// config.js key it came from.
fn js_key(key: &str, sink_origin: &[&str]) -> String {
    const PREFIXES: &[(&str, &str)] = &[
        ("flush.interval", "flushInterval"),
        ("flush.percentiles", "percentThreshold"),
        ("flush.histogram", "histogram"),
        ("flush.calculated_timer_metrics", "calculatedTimerMetrics"),
        ("log.level", "debug"),
        ("admin.address", "mgmt_address"),
        ("admin.health", "healthStatus"),
    ];
    for (toml, js) in PREFIXES {
        if let Some(rest) = key.strip_prefix(toml) {
            return format!("{js}{rest}");
        }
    }
    if key.starts_with("statsd.") {
        return "servers".to_string();
    }
    if let Some(rest) = key.strip_prefix("sink[") {
        let origin = rest
            .split_once(']')
            .and_then(|(n, _)| n.parse::<usize>().ok())
            .and_then(|n| sink_origin.get(n));
        if let Some(origin) = origin {
            return match rest.split_once(".destinations") {
                Some((_, idx)) => format!("{origin}{idx}"),
                None => (*origin).to_string(),
            };
        }
    }
    key.to_string()
}

fn translate(obj: &Obj) -> Result<Translated, Bad> {
    let mut raw = RawConfig::default();
    let mut warnings = Vec::new();
    // Keys (and backends) statsyard does not implement: one warning at the end.
    let mut ignored: Vec<String> = Vec::new();

    for (k, v) in obj {
        if MAPPED.contains(&k.as_str()) {
            continue;
        }
        // statsyard never reloads its config: the same as `false` here.
        if k == "automaticConfigReload" && *v == Value::Bool(false) {
            continue;
        }
        match v {
            Value::Object(sub) if !sub.is_empty() => {
                ignored.extend(sub.keys().map(|s| format!("{k}.{s}")));
            }
            _ => ignored.push(k.clone()),
        }
    }

    listeners(obj, &mut raw, &mut warnings, &mut ignored)?;
    flush(obj, &mut raw)?;
    naming(obj, &mut raw, &mut ignored)?;

    admin(obj, &mut raw)?;
    // The reference reads no tag syntax but DogStatsD's and Graphite's: a
    // name with `,` `#` or `[` is kept whole, as it would be there.
    raw.statsd.tag_dialects.clear();
    // Nor does it limit the tags of a line: keep every line it would keep.
    raw.statsd.max_tags = 0;

    raw.statsd.key_name_sanitize = match obj.get("keyNameSanitize") {
        None => true,
        Some(v) => truthy("keyNameSanitize", v)?,
    };
    raw.statsd.dump_messages = opt_truthy(obj, "dumpMessages")?.unwrap_or(false);
    if opt_truthy(obj, "debug")?.unwrap_or(false) {
        raw.log.level = "debug".to_string();
    }

    let sink_origin = sinks(obj, &mut raw, &mut warnings, &mut ignored)?;

    if !ignored.is_empty() {
        warnings.insert(
            0,
            format!(
                "config.js settings statsyard does not implement are ignored: {}",
                ignored.join(", ")
            ),
        );
    }
    Ok(Translated {
        raw,
        warnings,
        sink_origin,
    })
}

/// `mgmt_address` and `mgmt_port` → `[admin] address`. Without
/// `mgmt_address` the console listens on 127.0.0.1, not on the reference's
/// 0.0.0.0: it can delete metrics and has no authentication (see
/// docs/compatibility.md#admin-console-address).
fn admin(obj: &Obj, raw: &mut RawConfig) -> Result<(), Bad> {
    let port = opt_port(obj, "mgmt_port")?.unwrap_or(8126);
    let host = match obj.get("mgmt_address") {
        Some(v) if !falsy(v) => string("mgmt_address", v)?,
        _ => "127.0.0.1".to_string(),
    };
    let addr = listen_addr("mgmt_address", Some(&host), port, Family::Tcp)?;
    raw.admin.address = addr.to_string();
    // The reference: `config.healthStatus || 'up'`.
    if let Some(v) = obj.get("healthStatus").filter(|v| !falsy(v)) {
        raw.admin.health = string("healthStatus", v)?;
    }
    Ok(())
}

/// `servers`, or the top-level server keys when it is absent.
fn listeners(
    obj: &Obj,
    raw: &mut RawConfig,
    warnings: &mut Vec<String>,
    ignored: &mut Vec<String>,
) -> Result<(), Bad> {
    raw.statsd.udp.clear();
    raw.statsd.tcp.clear();
    raw.statsd.unix.clear();
    // The reference: `config.servers || [config]`.
    let servers: Vec<(String, &Obj)> = match obj.get("servers") {
        Some(v) if !falsy(v) => {
            let Value::Array(list) = v else {
                return Err(bad("servers", "must be a list of server objects"));
            };
            let mut out = Vec::with_capacity(list.len());
            for (i, s) in list.iter().enumerate() {
                let Value::Object(o) = s else {
                    return Err(bad(
                        format!("servers[{i}]"),
                        "must be an object like { server: './servers/udp', port: 8125 }",
                    ));
                };
                for k in o.keys().filter(|k| !SERVER_KEYS.contains(&k.as_str())) {
                    ignored.push(format!("servers[{i}].{k}"));
                }
                out.push((format!("servers[{i}]."), o));
            }
            let shadowed: Vec<&str> = SERVER_KEYS
                .iter()
                .copied()
                .filter(|k| obj.contains_key(*k))
                .collect();
            if !shadowed.is_empty() {
                warnings.push(format!(
                    "top-level {} ignored because `servers` is set, as in the reference",
                    shadowed.join(", ")
                ));
            }
            out
        }
        _ => vec![(String::new(), obj)],
    };
    for (prefix, o) in servers {
        let key = |k: &str| format!("{prefix}{k}");
        let kind = match o.get("server") {
            Some(v) if !falsy(v) => {
                let s = string(&key("server"), v)?;
                match module_name(&s, "servers") {
                    "udp" => "udp",
                    "tcp" => "tcp",
                    _ => {
                        return Err(bad(
                            key("server"),
                            format!("{s:?}: statsyard has the './servers/udp' and './servers/tcp' servers only"),
                        ))
                    }
                }
            }
            _ => "udp",
        };
        let port = match o.get("port") {
            None => None,
            Some(v) => port(&key("port"), v)?,
        }
        .unwrap_or(8125);
        let v6 = opt_truthy(o, "address_ipv6")
            .map_err(|b| bad(key("address_ipv6"), b.reason))?
            .unwrap_or(false);
        let address = match o.get("address") {
            Some(v) if !falsy(v) => Some(string(&key("address"), v)?),
            _ => None,
        };
        let socket = match o.get("socket") {
            Some(v) if !falsy(v) => Some(string(&key("socket"), v)?),
            _ => None,
        };
        if kind == "udp" {
            if socket.is_some() {
                warnings.push(format!(
                    "{} is ignored: only the tcp server listens on a unix socket, as in the reference",
                    key("socket")
                ));
            }
            let addr = listen_addr(
                &key("address"),
                address.as_deref(),
                port,
                Family::Udp { v6 },
            )?;
            raw.statsd.udp.push(addr.to_string());
        } else if let Some(path) = socket {
            let mode = match o.get("socket_mod") {
                Some(v) if !falsy(v) => Some(socket_mode(&key("socket_mod"), v)?),
                _ => None,
            };
            // The reference's tcp server reads newline-delimited lines.
            raw.statsd.unix.push(RawUnix {
                path,
                mode,
                kind: None,
                framing: Some("newline".into()),
            });
        } else {
            let addr = listen_addr(&key("address"), address.as_deref(), port, Family::Tcp)?;
            raw.statsd.tcp.push(addr.to_string().into());
        }
    }
    Ok(())
}

/// Which socket a listener address is for: it decides the default address
/// and which resolved address is used.
#[derive(Clone, Copy)]
enum Family {
    /// The reference's udp server: `udp6` when `address_ipv6`, else `udp4`.
    Udp {
        v6: bool,
    },
    Tcp,
}

/// A listener's `address` and `port` → a socket address. Without an address
/// the reference binds all interfaces. A host name is resolved now, as the
/// reference's bind does at start.
fn listen_addr(
    key: &str,
    address: Option<&str>,
    port: u16,
    family: Family,
) -> Result<SocketAddr, Bad> {
    let Some(address) = address else {
        let ip = match family {
            Family::Udp { v6: true } => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        return Ok(SocketAddr::new(ip, port));
    };
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolved: Vec<SocketAddr> = (address, port)
        .to_socket_addrs()
        .map_err(|e| bad(key, format!("cannot resolve {address:?}: {e}")))?
        .collect();
    let pick = match family {
        Family::Udp { v6 } => resolved.iter().find(|a| a.is_ipv6() == v6),
        Family::Tcp => resolved.iter().find(|a| a.is_ipv4()).or(resolved.first()),
    };
    pick.copied().ok_or_else(|| {
        bad(
            key,
            format!("{address:?} has no address of the listener's IP family"),
        )
    })
}

/// `socket_mod`: a number is the mode itself, a string is octal (as Node's `fs.chmod` reads them).
fn socket_mode(key: &str, v: &Value) -> Result<String, Bad> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(m) if m <= 0o7777 => Ok(format!("{m:o}")),
            _ => Err(bad(key, format!("{n} is not a file mode (0 to 0o7777)"))),
        },
        Value::String(s) => {
            crate::check::parse_mode(s).map_err(|r| bad(key, r))?;
            Ok(s.clone())
        }
        _ => Err(bad(
            key,
            "must be a file mode: a number, or an octal string like '0660'",
        )),
    }
}

fn flush(obj: &Obj, raw: &mut RawConfig) -> Result<(), Bad> {
    let f = &mut raw.flush;
    // A reference config gets the reference's output, line for line: no
    // statsyard-only series.
    f.self_metrics = false;
    // ...and its schedule: an interval after the start, stamped when it runs.
    f.align = false;
    // `Number(config.flushInterval || 10000)`, in milliseconds.
    if let Some(v) = obj.get("flushInterval").filter(|v| !falsy(v)) {
        let ms = number_like("flushInterval", v)?;
        f.interval = (ms > 0.0)
            .then(|| Duration::try_from_secs_f64(ms / 1000.0).ok())
            .flatten()
            .ok_or_else(|| {
                bad(
                    "flushInterval",
                    format!("{ms} is not a positive number of milliseconds"),
                )
            })?;
    }
    // `config.percentThreshold || 90`, a single value or a list.
    if let Some(v) = obj.get("percentThreshold").filter(|v| !falsy(v)) {
        f.percentiles = match v {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, p)| number(&format!("percentThreshold[{i}]"), p))
                .collect::<Result<_, _>>()?,
            other => vec![number("percentThreshold", other)?],
        };
    }
    if let Some(v) = obj.get("histogram").filter(|v| !falsy(v)) {
        let Value::Array(list) = v else {
            return Err(bad(
                "histogram",
                "must be a list of { metric: '...', bins: [...] }",
            ));
        };
        for (i, h) in list.iter().enumerate() {
            let key = format!("histogram[{i}]");
            let Value::Object(h) = h else {
                return Err(bad(key, "must be an object { metric: '...', bins: [...] }"));
            };
            let metric = string(
                &format!("{key}.metric"),
                h.get("metric").unwrap_or(&Value::Null),
            )?;
            let Some(Value::Array(bins)) = h.get("bins") else {
                return Err(bad(
                    format!("{key}.bins"),
                    "must be a list of numbers or 'inf'",
                ));
            };
            let bins = bins
                .iter()
                .enumerate()
                .map(|(j, b)| match b {
                    Value::Number(n) => n
                        .as_f64()
                        .map(RawBin::Limit)
                        .ok_or_else(|| bad(format!("{key}.bins[{j}]"), "not a number")),
                    Value::String(s) if s == "inf" => Ok(RawBin::Inf),
                    _ => Err(bad(format!("{key}.bins[{j}]"), "must be a number or 'inf'")),
                })
                .collect::<Result<_, _>>()?;
            f.histogram.push(RawHistogram { metric, bins });
        }
    }
    if let Some(v) = obj.get("calculatedTimerMetrics").filter(|v| !falsy(v)) {
        let Value::Array(list) = v else {
            return Err(bad(
                "calculatedTimerMetrics",
                "must be a list of timer metric names, e.g. ['count', 'upper_percent']",
            ));
        };
        f.calculated_timer_metrics = list
            .iter()
            .enumerate()
            .map(|(i, m)| string(&format!("calculatedTimerMetrics[{i}]"), m))
            .collect::<Result<_, _>>()?;
    }
    f.delete_idle_stats = opt_truthy(obj, "deleteIdleStats")?.unwrap_or(false);
    f.delete_counters = opt_truthy(obj, "deleteCounters")?;
    f.delete_timers = opt_truthy(obj, "deleteTimers")?;
    f.delete_sets = opt_truthy(obj, "deleteSets")?;
    f.delete_gauges = opt_truthy(obj, "deleteGauges")?;
    // The reference forces gaugesMaxTTL to 1 unless it is an integer > 1.
    f.gauges_max_ttl = match obj.get("gaugesMaxTTL") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x > 1.0 => x.min(i64::MAX as f64) as i64,
            _ => 1,
        },
        Some(_) => return Err(bad("gaugesMaxTTL", "must be a number of flushes")),
    };
    Ok(())
}

fn naming(obj: &Obj, raw: &mut RawConfig, ignored: &mut Vec<String>) -> Result<(), Bad> {
    let n = &mut raw.naming;
    if let Some(v) = obj.get("prefixStats") {
        n.prefix_stats = string("prefixStats", v)?;
    }
    // `typeof(config.flush_counts) === "undefined" ? true : config.flush_counts`
    n.flush_counts = opt_truthy(obj, "flush_counts")?.unwrap_or(true);
    let g = match obj.get("graphite") {
        Some(Value::Object(g)) => g,
        Some(v) if falsy(v) => return Ok(()),
        Some(_) => {
            return Err(bad(
                "graphite",
                "must be an object { legacyNamespace: ..., ... }",
            ))
        }
        None => return Ok(()),
    };
    for k in g.keys().filter(|k| !GRAPHITE_KEYS.contains(&k.as_str())) {
        ignored.push(format!("graphite.{k}"));
    }
    if let Some(v) = g.get("legacyNamespace") {
        // The reference tests `=== false` in one place and `=== true` in
        // another, so only a real boolean means one thing.
        let Value::Bool(b) = v else {
            return Err(bad("graphite.legacyNamespace", "must be true or false"));
        };
        n.legacy_namespace = *b;
    }
    let fields: [(&str, &mut String); 5] = [
        ("globalPrefix", &mut n.global_prefix),
        ("prefixCounter", &mut n.prefix_counter),
        ("prefixTimer", &mut n.prefix_timer),
        ("prefixGauge", &mut n.prefix_gauge),
        ("prefixSet", &mut n.prefix_set),
    ];
    for (k, field) in fields {
        if let Some(v) = g.get(k) {
            *field = string(&format!("graphite.{k}"), v)?;
        }
    }
    if let Some(v) = g.get("globalSuffix") {
        n.global_suffix = Some(string("graphite.globalSuffix", v)?);
    }
    Ok(())
}

/// `backends` → sinks. Returns the config.js key each sink came from.
fn sinks(
    obj: &Obj,
    raw: &mut RawConfig,
    warnings: &mut Vec<String>,
    ignored: &mut Vec<String>,
) -> Result<Vec<&'static str>, Bad> {
    // `if (config.backends) ... else loadBackend('./backends/graphite')`
    let names: Vec<String> = match obj.get("backends") {
        Some(v) if !falsy(v) => {
            let Value::Array(list) = v else {
                return Err(bad(
                    "backends",
                    "must be a list, e.g. ['./backends/graphite']",
                ));
            };
            list.iter()
                .enumerate()
                .map(|(i, b)| string(&format!("backends[{i}]"), b))
                .collect::<Result<_, _>>()?
        }
        _ => vec!["./backends/graphite".to_string()],
    };
    let mut origin = Vec::new();
    let mut loaded: Vec<&str> = Vec::new();
    for name in &names {
        let module = module_name(name, "backends");
        if loaded.contains(&module) {
            warnings.push(format!(
                "backend {name:?} is listed more than once; statsyard loads it once"
            ));
            continue;
        }
        match module {
            "graphite" => {
                if let Some(sink) = graphite_sink(obj, warnings)? {
                    raw.sink.push(sink);
                    origin.push("graphiteHost");
                }
            }
            "console" => {
                raw.sink.push(RawSink::new("console").set("format", "text"));
                origin.push("backends");
            }
            "repeater" => {
                if let Some(sink) = repeater_sink(obj, warnings)? {
                    raw.sink.push(sink);
                    origin.push("repeater");
                }
            }
            _ => {
                ignored.push(format!("backend {name:?}"));
                continue;
            }
        }
        loaded.push(module);
    }
    Ok(origin)
}

fn graphite_sink(obj: &Obj, warnings: &mut Vec<String>) -> Result<Option<RawSink>, Bad> {
    let host = match obj.get("graphiteHost") {
        Some(v) if !falsy(v) => string("graphiteHost", v)?,
        _ => {
            warnings.push(
                "the graphite backend is loaded but graphiteHost is not set: the reference \
                 computes flushes and discards them, so statsyard adds no graphite sink"
                    .to_string(),
            );
            return Ok(None);
        }
    };
    let pickle = match obj.get("graphiteProtocol") {
        Some(v) if !falsy(v) => {
            let p = string("graphiteProtocol", v)?;
            if p != "pickle" && p != "text" {
                warnings.push(format!(
                    "graphiteProtocol {p:?} is neither 'text' nor 'pickle': text is used, as in the reference"
                ));
            }
            p == "pickle"
        }
        _ => false,
    };
    // `graphitePort || 2003`, `graphitePicklePort || 2004`
    let port = if pickle {
        opt_port(obj, "graphitePicklePort")?.unwrap_or(2004)
    } else {
        opt_port(obj, "graphitePort")?.unwrap_or(2003)
    };
    Ok(Some(
        RawSink::new("graphite")
            .set("address", host_port(&host, port))
            .set("protocol", if pickle { "pickle" } else { "text" })
            // A connection per flush, as the reference's backend opens one.
            .set("connection", "per_flush"),
    ))
}

fn repeater_sink(obj: &Obj, warnings: &mut Vec<String>) -> Result<Option<RawSink>, Bad> {
    // `config.repeaterProtocol == 'tcp'` picks TCP, anything else UDP (udp6 when it says so).
    let proto = match obj.get("repeaterProtocol") {
        Some(v) if !falsy(v) => string("repeaterProtocol", v)?,
        _ => "udp4".to_string(),
    };
    if !matches!(proto.as_str(), "udp4" | "udp6" | "tcp") {
        warnings.push(format!(
            "repeaterProtocol {proto:?} is not 'udp4', 'udp6' or 'tcp': udp4 is used, as in the reference"
        ));
    }
    let targets = match obj.get("repeater") {
        Some(v) if !falsy(v) => {
            let Value::Array(list) = v else {
                return Err(bad(
                    "repeater",
                    "must be a list of { host: '...', port: 8125 }",
                ));
            };
            list.as_slice()
        }
        _ => &[],
    };
    let mut destinations = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let key = format!("repeater[{i}]");
        let Value::Object(t) = t else {
            return Err(bad(key, "must be an object { host: '...', port: 8125 }"));
        };
        let port = match t.get("port") {
            Some(v) => port(&format!("{key}.port"), v)?,
            None => None,
        }
        .ok_or_else(|| bad(format!("{key}.port"), "a repeater target needs a port"))?;
        // Without a host Node sends to the loopback address.
        let host = match t.get("host") {
            Some(v) if !falsy(v) => string(&format!("{key}.host"), v)?,
            _ => match proto.as_str() {
                "udp6" => "::1".to_string(),
                "tcp" => "localhost".to_string(),
                _ => "127.0.0.1".to_string(),
            },
        };
        destinations.push(host_port(&host, port));
    }
    if destinations.is_empty() {
        warnings.push(
            "the repeater backend is loaded but `repeater` lists no targets: no repeater sink"
                .to_string(),
        );
        return Ok(None);
    }
    Ok(Some(
        RawSink::new("repeater")
            .set("protocol", if proto == "tcp" { "tcp" } else { "udp" })
            .set("destinations", destinations),
    ))
}

/// `host:port`, with an IPv6 literal in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `./backends/graphite`, `backends/graphite`, `graphite` (and `.js`) → `graphite`.
fn module_name<'a>(name: &'a str, dir: &str) -> &'a str {
    let name = name.strip_suffix(".js").unwrap_or(name);
    let name = name.strip_prefix("./").unwrap_or(name);
    name.strip_prefix(dir)
        .and_then(|n| n.strip_prefix('/'))
        .unwrap_or(name)
}

/// JavaScript's falsy values that JSON5 can write (`NaN` reads as `null`).
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A flag the reference tests for truthiness: booleans, `null` and numbers
/// are read as JavaScript does. Strings are refused: `'false'` is truthy.
fn truthy(key: &str, v: &Value) -> Result<bool, Bad> {
    match v {
        Value::Bool(_) | Value::Null | Value::Number(_) => Ok(!falsy(v)),
        _ => Err(bad(key, "must be true or false")),
    }
}

fn opt_truthy(obj: &Obj, key: &str) -> Result<Option<bool>, Bad> {
    obj.get(key).map(|v| truthy(key, v)).transpose()
}

fn string(key: &str, v: &Value) -> Result<String, Bad> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(bad(key, "must be a string")),
    }
}

fn number(key: &str, v: &Value) -> Result<f64, Bad> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad(key, "not a number")),
        _ => Err(bad(key, "must be a number")),
    }
}

/// A number, or a string the reference's `Number(...)` reads as one.
fn number_like(key: &str, v: &Value) -> Result<f64, Bad> {
    match v {
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| bad(key, format!("{s:?} is not a number"))),
        other => number(key, other),
    }
}

/// A port as Node accepts it (a number or a numeric string); falsy → `None`
/// (the reference's `port || default`).
fn port(key: &str, v: &Value) -> Result<Option<u16>, Bad> {
    if falsy(v) {
        return Ok(None);
    }
    let p = number_like(key, v)?;
    if p.fract() == 0.0 && (1.0..=65535.0).contains(&p) {
        Ok(Some(p as u16))
    } else {
        Err(bad(key, format!("{p} is not a port number 1-65535")))
    }
}

fn opt_port(obj: &Obj, key: &str) -> Result<Option<u16>, Bad> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => port(key, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::compute::{Bin, HistogramRule, Percentile};
    use crate::sink::graphite::{GraphiteConfig, GraphiteProtocol};
    use crate::sink::repeater::{RepeaterConfig, RepeaterProtocol};
    use crate::sink::SinkSpec;

    fn ok(text: &str) -> Config {
        match from_str(text, "config.js") {
            Ok(c) => c,
            Err(e) => panic!("{text:?} failed: {e}"),
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn graphite(c: &Config) -> Vec<(String, GraphiteProtocol)> {
        c.sinks
            .iter()
            .filter_map(|s| s.config_of::<GraphiteConfig>())
            .map(|g| (g.address.clone(), g.protocol))
            .collect()
    }

    /// The reference's exampleConfig.js, verbatim.
    const EXAMPLE_CONFIG: &str = r#"/*
Graphite Required Variable:

(Leave this unset to avoid sending stats to Graphite.
 Set debug flag and leave this unset to run in 'dry' debug mode -
 useful for testing statsd clients without a Graphite server.)

  graphiteHost:     hostname or IP of Graphite server

Optional Variables:

  graphitePort:     port for the graphite text collector [default: 2003]
  graphitePicklePort: port for the graphite pickle collector [default: 2004]
  graphiteProtocol: either 'text' or 'pickle' [default: 'text']
  backends:         an array of backends to load. Each backend must exist
                    by name in the directory backends/. If not specified,
                    the default graphite backend will be loaded.
                    * example for console and graphite:
                    [ "./backends/console", "./backends/graphite" ]

  servers:          an array of server configurations.
                    If not specified, the server, address,
                    address_ipv6, and port top-level configuration
                    options are used to configure a single server for
                    backwards-compatibility
                    Each server configuration supports the following keys:
    server:         the server to load. The server must exist by name in the directory
                    servers/. If not specified, the default udp server will be loaded.
                    * example for tcp server:
                    "./servers/tcp"
    address:        address to listen on [default: 0.0.0.0]
    address_ipv6:   defines if the address is an IPv4 or IPv6 address [true or false, default: false]
    port:           port to listen for messages on [default: 8125]
    socket:         (only for tcp servers) path to unix domain socket which will be used to receive
                    metrics [default: undefinded]
    socket_mod:     (only for tcp servers) file mode which should be applied to unix domain socket, relevant
                    only if socket option is used [default: undefined]

  debug:            debug flag [default: false]
  mgmt_address:     address to run the management TCP interface on
                    [default: 0.0.0.0]
  mgmt_port:        port to run the management TCP interface on [default: 8126]
  title:            Allows for overriding the process title. [default: statsd]
                    if set to false, will not override the process title and let the OS set it.
                    The length of the title has to be less than or equal to the binary name + cli arguments
                    NOTE: This does not work on Mac's with node versions prior to v0.10

  healthStatus:     default health status to be returned and statsd process starts ['up' or 'down', default: 'up']
  dumpMessages:     log all incoming messages
  flushInterval:    interval (in ms) to flush metrics to each backend
  percentThreshold: for time information, calculate the Nth percentile(s)
                    (can be a single value or list of floating-point values)
                    negative values mean to use "top" Nth percentile(s) values
                    [%, default: 90]
  flush_counts:     send stats_counts metrics [default: true]

  keyFlush:         log the most frequently sent keys [object, default: undefined]
    interval:       how often to log frequent keys [ms, default: 0]
    percent:        percentage of frequent keys to log [%, default: 100]
    log:            location of log file for frequent keys [default: STDOUT]
  deleteIdleStats:  don't send values to graphite for inactive counters, sets, gauges, or timers
                    as opposed to sending 0.  For gauges, this unsets the gauge (instead of sending
                    the previous value). Can be individually overridden. [default: false]
  deleteGauges:     don't send values to graphite for inactive gauges, as opposed to sending the previous value [default: false]
  gaugesMaxTTL:     number of flush cycles to wait before the gauge is marked as inactive, to use in combination with deleteGauges [default: 1]
  deleteTimers:     don't send values to graphite for inactive timers, as opposed to sending 0 [default: false]
  deleteSets:       don't send values to graphite for inactive sets, as opposed to sending 0 [default: false]
  deleteCounters:   don't send values to graphite for inactive counters, as opposed to sending 0 [default: false]
  prefixStats:      prefix to use for the statsd statistics data for this running instance of statsd [default: statsd]
                    applies to both legacy and new namespacing
  keyNameSanitize:  sanitize all stat names on ingress [default: true]
                    If disabled, it is up to the backends to sanitize keynames
                    as appropriate per their storage requirements.

  calculatedTimerMetrics: List of timer metrics that will be sent. Default will send all metrics.
                          To filter on percents and top percents: append '_percent' to the metric name.
                          Example: calculatedTimerMetrics: ['count', 'median', 'upper_percent', 'histogram']

  console:
    prettyprint:    whether to prettyprint the console backend
                    output [true or false, default: true]

  log:              log settings [object, default: undefined]
    backend:        where to log: stdout or syslog [string, default: stdout]
    application:    name of the application for syslog [string, default: statsd]
    level:          log level for [node-]syslog [string, default: LOG_INFO]

  graphite:
    legacyNamespace:  use the legacy namespace [default: true]
    globalPrefix:     global prefix to use for sending stats to graphite [default: "stats"]
    prefixCounter:    graphite prefix for counter metrics [default: "counters"]
    prefixTimer:      graphite prefix for timer metrics [default: "timers"]
    prefixGauge:      graphite prefix for gauge metrics [default: "gauges"]
    prefixSet:        graphite prefix for set metrics [default: "sets"]
    globalSuffix:     global suffix to use for sending stats to graphite [default: ""]
                      This is particularly useful for sending per host stats by
                      settings this value to: require('os').hostname().split('.')[0]

  repeater:         an array of hashes of the for host: and port:
                    that details other statsd servers to which the received
                    packets should be "repeated" (duplicated to).
                    e.g. [ { host: '10.10.10.10', port: 8125 },
                           { host: 'observer', port: 88125 } ]

  repeaterProtocol: whether to use udp4, udp6, or tcp for repeaters.
                    ["udp4," "udp6", or "tcp" default: "udp4"]

  histogram:        for timers, an array of mappings of strings (to match metrics) and
                    corresponding ordered non-inclusive upper limits of bins.
                    For all matching metrics, histograms are maintained over
                    time by writing the frequencies for all bins.
                    'inf' means infinity. A lower limit of 0 is assumed.
                    default: [], meaning no histogram for any timer.
                    First match wins.  examples:
                    * histogram to only track render durations, with unequal
                      class intervals and catchall for outliers:
                      [ { metric: 'render', bins: [ 0.01, 0.1, 1, 10, 'inf'] } ]
                    * histogram for all timers except 'foo' related,
                      equal class interval and catchall for outliers:
                     [ { metric: 'foo', bins: [] },
                       { metric: '', bins: [ 50, 100, 150, 200, 'inf'] } ]

  automaticConfigReload: whether to watch the config file and reload it when it
                         changes. The default is true. Set this to false to disable.
*/
{
  graphitePort: 2003
, graphiteHost: "graphite.example.com"
, port: 8125
, backends: [ "./backends/graphite" ]
}
"#;

    #[test]
    fn mgmt_keys_set_the_admin_console() {
        let c = ok("{}");
        assert_eq!(c.admin, Some("127.0.0.1:8126".parse().unwrap()));
        assert_eq!(c.http, Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(c.parse.tag_dialects, crate::parse::tags::TagDialects::NONE);
        assert_eq!(c.parse.max_tags, 0, "the reference keeps every tag");
        assert!(c.parse.gauge_deltas);
        let c = ok("{ mgmt_address: '0.0.0.0', mgmt_port: 9999 }");
        assert_eq!(c.admin, Some("0.0.0.0:9999".parse().unwrap()));
        let c = ok("{ mgmt_address: '::1' }");
        assert_eq!(c.admin, Some("[::1]:8126".parse().unwrap()));
        assert!(c.health_up);
        assert!(!ok("{ healthStatus: 'down' }").health_up);
        let e = from_str("{ healthStatus: 'sideways' }", "c.js").unwrap_err();
        assert!(e.to_string().contains("key `healthStatus`"), "{e}");
        let e = from_str("{ mgmt_port: 70000 }", "c.js").unwrap_err();
        assert!(e.to_string().contains("mgmt_port"), "{e}");
    }

    #[test]
    fn reference_example_config() {
        let c = ok(EXAMPLE_CONFIG);
        assert_eq!(c.listen.udp, addrs(&["0.0.0.0:8125"]));
        assert!(c.listen.tcp.is_empty() && c.listen.unix.is_empty());
        assert_eq!(
            graphite(&c),
            vec![(
                "graphite.example.com:2003".to_string(),
                GraphiteProtocol::Text
            )]
        );
        assert_eq!(c.sinks[0].name, "graphite");
        assert_eq!(c.compute.interval, Duration::from_secs(10));
        assert_eq!(c.compute.percentiles, vec![Percentile { value: 90.0 }]);
        assert_eq!(c.naming, crate::flush::naming::Naming::default());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Not in a config.js: statsyard's defaults.
        assert_eq!(c.listen.max_line_length, 65_536);
        assert_eq!(c.source, "config.js");
    }

    #[test]
    fn deploy_example_config() {
        let c = ok(include_str!("../../deploy/examples/statsd-config.js"));
        assert_eq!(c.listen.udp, addrs(&["0.0.0.0:8125"]));
        assert_eq!(c.listen.tcp, addrs(&["0.0.0.0:8125"]));
        let names: Vec<&str> = c.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["graphite", "console"]);
        assert_eq!(
            c.compute.percentiles,
            vec![Percentile { value: 90.0 }, Percentile { value: 99.0 }]
        );
        assert_eq!(c.compute.histograms[0].bins.len(), 5);
        assert_eq!(c.warnings, Vec::<String>::new());
    }

    #[test]
    fn empty_object_is_the_reference_default() {
        let c = ok("{}");
        assert_eq!(c.listen.udp, addrs(&["0.0.0.0:8125"]));
        assert!(c.listen.tcp.is_empty());
        // The default backend is graphite, which needs graphiteHost.
        assert!(c.sinks.is_empty());
        assert!(
            c.warnings[0].contains("graphiteHost is not set"),
            "{:?}",
            c.warnings
        );
        assert_eq!(c.compute, crate::flush::compute::ComputeOptions::default());
        assert_eq!(c.aggregate, crate::aggregate::AggregateOptions::default());
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn javascript_object_syntax() {
        let cases = [
            // leading-comma style, double quotes, a comment between entries
            "{\n  graphiteHost: \"g\"\n// port\n, graphitePort: 2103\n, backends: [ \"./backends/graphite\" ]\n}",
            // single quotes, trailing commas, a line comment after the object
            "{ graphiteHost: 'g', graphitePort: 2103, backends: ['graphite',], } // done",
            // quoted keys (JSON), wrapped in parentheses, a trailing semicolon
            "({ \"graphiteHost\": \"g\", \"graphitePort\": 2103 });\n",
            // a block comment after the semicolon, another before the object
            "/* a; b) */ ( { graphiteHost: 'g', graphitePort: 0x837 } ) ; /* (c; */ \n",
        ];
        for text in cases {
            let c = ok(text);
            assert_eq!(
                graphite(&c),
                vec![("g:2103".to_string(), GraphiteProtocol::Text)],
                "{text}"
            );
            assert!(c.warnings.is_empty(), "{text}: {:?}", c.warnings);
        }
    }

    #[test]
    fn unwrap_expression_keeps_strings_comments_and_offsets() {
        let cases = [
            ("({a: 1});", " {a: 1}  "),
            ("{a: ';'};", "{a: ';'} "),
            ("{a: 'x)'}", "{a: 'x)'}"),
            ("({a: 1}) // x;", " {a: 1}  // x;"),
            ("({a: \"\\\")\"});;", " {a: \"\\\")\"}   "),
            ("(1)", " 1 "),
            ("(", "("),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(unwrap_expression(input), want, "{input}");
        }
    }

    #[test]
    fn servers() {
        let c = ok(r#"{
          servers: [
            { server: './servers/udp', address: '127.0.0.1', port: 9125 },
            { server: 'servers/udp', address_ipv6: true },
            { server: './servers/tcp', port: 9126 },
            { server: 'tcp', address: '::1', port: '9127' },
            { server: './servers/tcp', socket: '/run/statsd.sock', socket_mod: '0660' },
            { server: './servers/tcp', socket: 'other.sock', socket_mod: 432 },
            { server: './servers/tcp', socket: 'plain.sock', socket_mod: 0 },
          ],
          backends: [],
        }"#);
        assert_eq!(c.listen.udp, addrs(&["127.0.0.1:9125", "[::]:8125"]));
        assert_eq!(c.listen.tcp, addrs(&["0.0.0.0:9126", "[::1]:9127"]));
        let unix: Vec<(String, Option<u32>)> = c
            .listen
            .unix
            .iter()
            .map(|u| (u.path.display().to_string(), u.mode))
            .collect();
        assert_eq!(
            unix,
            vec![
                ("/run/statsd.sock".to_string(), Some(0o660)),
                ("other.sock".to_string(), Some(0o660)),
                ("plain.sock".to_string(), None),
            ]
        );
        assert!(c.sinks.is_empty());
    }

    #[test]
    fn top_level_server_without_servers() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("{ backends: [] }", &["0.0.0.0:8125"], &[]),
            ("{ port: 0, backends: [] }", &["0.0.0.0:8125"], &[]),
            (
                "{ port: 9000, address: '10.1.2.3', backends: [] }",
                &["10.1.2.3:9000"],
                &[],
            ),
            ("{ address_ipv6: true, backends: [] }", &["[::]:8125"], &[]),
            (
                "{ server: './servers/tcp', port: 9000, backends: [] }",
                &[],
                &["0.0.0.0:9000"],
            ),
            ("{ servers: [], port: 9000, backends: [] }", &[], &[]),
            (
                "{ servers: null, port: 9000, backends: [] }",
                &["0.0.0.0:9000"],
                &[],
            ),
            (
                "{ address: 'localhost', backends: [] }",
                &["127.0.0.1:8125"],
                &[],
            ),
        ];
        for (text, udp, tcp) in cases {
            let c = ok(text);
            assert_eq!(c.listen.udp, addrs(udp), "{text}");
            assert_eq!(c.listen.tcp, addrs(tcp), "{text}");
        }
    }

    #[test]
    fn server_warnings() {
        let c = ok("{ servers: [{ port: 1, socket: 's', reuse: true }], port: 2, backends: [] }");
        assert_eq!(
            c.warnings,
            vec![
                "config.js settings statsyard does not implement are ignored: servers[0].reuse",
                "top-level port ignored because `servers` is set, as in the reference",
                "servers[0].socket is ignored: only the tcp server listens on a unix socket, as in the reference",
            ]
        );
    }

    #[test]
    fn graphite_protocols() {
        let cases: &[(&str, &str, GraphiteProtocol)] = &[
            ("graphiteHost: 'g'", "g:2003", GraphiteProtocol::Text),
            ("graphiteHost: 'g', graphitePort: 0", "g:2003", GraphiteProtocol::Text),
            ("graphiteHost: 'g', graphiteProtocol: 'pickle'", "g:2004", GraphiteProtocol::Pickle),
            (
                "graphiteHost: 'g', graphiteProtocol: 'pickle', graphitePort: 1, graphitePicklePort: 2104",
                "g:2104",
                GraphiteProtocol::Pickle,
            ),
            ("graphiteHost: 'g', graphiteProtocol: 'text', graphitePicklePort: 1", "g:2003", GraphiteProtocol::Text),
            ("graphiteHost: '2001:db8::1', graphitePort: '2003'", "[2001:db8::1]:2003", GraphiteProtocol::Text),
        ];
        for (body, address, protocol) in cases {
            let c = ok(&format!("{{ {body} }}"));
            assert_eq!(
                graphite(&c),
                vec![(address.to_string(), *protocol)],
                "{body}"
            );
        }
        // Not 'pickle' is text, as `graphiteProtocol == 'pickle'` decides in the reference.
        let c = ok("{ graphiteHost: 'g', graphiteProtocol: 'Pickle' }");
        assert_eq!(
            graphite(&c),
            vec![("g:2003".to_string(), GraphiteProtocol::Text)]
        );
        assert!(
            c.warnings[0].contains("neither 'text' nor 'pickle'"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn repeater() {
        let c = ok(r#"{
          backends: ['./backends/repeater', './backends/console'],
          repeater: [ { host: '10.10.10.10', port: 8125 }, { host: 'observer', port: '8126' }, { port: 9 } ],
          repeaterProtocol: 'tcp',
        }"#);
        assert_eq!(
            c.sinks[0],
            SinkSpec {
                name: "repeater".into(),
                queue: 65_536,
                kind: "repeater",
                config: std::sync::Arc::new(RepeaterConfig {
                    destinations: vec![
                        "10.10.10.10:8125".into(),
                        "observer:8126".into(),
                        "localhost:9".into()
                    ],
                    protocol: RepeaterProtocol::Tcp,
                    backoff_max: Duration::from_secs(30),
                }),
            }
        );
        assert_eq!(c.sinks[1].name, "console");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        for (proto, host) in [
            ("", "127.0.0.1:9"),
            ("repeaterProtocol: 'udp4',", "127.0.0.1:9"),
            ("repeaterProtocol: 'udp6',", "[::1]:9"),
        ] {
            let c = ok(&format!(
                "{{ backends: ['repeater'], {proto} repeater: [{{ port: 9 }}] }}"
            ));
            let Some(r) = c.sinks[0].config_of::<RepeaterConfig>() else {
                panic!("{:?}", c.sinks)
            };
            assert_eq!(
                (r.destinations[0].as_str(), r.protocol),
                (host, RepeaterProtocol::Udp)
            );
        }

        let c = ok("{ backends: ['repeater'] }");
        assert!(c.sinks.is_empty());
        assert!(
            c.warnings[0].contains("lists no targets"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn unknown_and_unimplemented_keys_are_one_warning() {
        let c = ok(r#"{
          graphiteHost: 'g',
          mgmt_address: '0.0.0.0', mgmt_port: 8126, healthStatus: 'up', title: 'statsd',
          keyFlush: { interval: 1000, percent: 10 },
          console: { prettyprint: false },
          log: { backend: 'syslog' },
          automaticConfigReload: true,
          graphite: { legacyNamespace: true, someOption: 1 },
          influxdb: { host: 'x' },
          backends: ['./backends/graphite', 'statsd-influxdb-backend'],
        }"#);
        assert_eq!(
            c.warnings,
            vec![
                "config.js settings statsyard does not implement are ignored: \
                 automaticConfigReload, console.prettyprint, influxdb.host, \
                 keyFlush.interval, keyFlush.percent, log.backend, title, graphite.someOption, backend \"statsd-influxdb-backend\""
            ]
        );
        assert_eq!(graphite(&c).len(), 1);
        // statsyard never reloads: `false` is what it does anyway.
        assert!(ok("{ automaticConfigReload: false, graphiteHost: 'g' }")
            .warnings
            .is_empty());
    }

    #[test]
    fn falsy_values_take_the_reference_defaults() {
        let c = ok("{ flushInterval: 0, percentThreshold: 0, port: 0, histogram: null, \
                    calculatedTimerMetrics: '', backends: null, graphiteHost: 'g', prefixStats: 'p' }");
        assert_eq!(c.compute.interval, Duration::from_secs(10));
        assert_eq!(c.compute.percentiles, vec![Percentile { value: 90.0 }]);
        assert_eq!(c.listen.udp, addrs(&["0.0.0.0:8125"]));
        assert!(c.compute.histograms.is_empty());
        assert_eq!(c.compute.calculated_timer_metrics, None);
        assert_eq!(graphite(&c).len(), 1);
        assert_eq!(c.naming.prefix_stats, "p");
        // JSON5 reads these, but they arrive as null: the falsy default.
        let c = ok("{ percentThreshold: Infinity, flushInterval: NaN, backends: [] }");
        assert_eq!(c.compute.percentiles, vec![Percentile { value: 90.0 }]);
        assert_eq!(c.compute.interval, Duration::from_secs(10));
    }

    #[test]
    fn flush_settings() {
        let c = ok(r#"{
          flushInterval: '2500', percentThreshold: [95, 99.9, -10],
          histogram: [ { metric: 'foo', bins: [] }, { metric: '', bins: [ 50, 100, 'inf' ] } ],
          calculatedTimerMetrics: ['count', 'median', 'upper_percent', 'histogram'],
          backends: [],
        }"#);
        assert_eq!(c.compute.interval, Duration::from_millis(2500));
        assert_eq!(
            c.compute.percentiles,
            vec![
                Percentile { value: 95.0 },
                Percentile { value: 99.9 },
                Percentile { value: -10.0 }
            ]
        );
        assert_eq!(
            c.compute.histograms,
            vec![
                HistogramRule {
                    metric: "foo".into(),
                    bins: vec![]
                },
                HistogramRule {
                    metric: String::new(),
                    bins: vec![Bin::Limit(50.0), Bin::Limit(100.0), Bin::Inf]
                },
            ]
        );
        assert_eq!(
            c.compute.calculated_timer_metrics.as_ref().map(Vec::len),
            Some(4)
        );
        assert_eq!(
            ok("{ percentThreshold: 99 }").compute.percentiles,
            vec![Percentile { value: 99.0 }]
        );
        assert!(ok("{ percentThreshold: [] }")
            .compute
            .percentiles
            .is_empty());
    }

    #[test]
    fn delete_flags_and_gauge_ttl() {
        let cases: &[(&str, [bool; 4], u32)] = &[
            ("", [false; 4], 1),
            ("deleteIdleStats: true", [true; 4], 1),
            (
                "deleteIdleStats: true, deleteGauges: false",
                [true, true, true, false],
                1,
            ),
            (
                "deleteIdleStats: true, deleteTimers: null",
                [true, false, true, true],
                1,
            ),
            (
                "deleteCounters: 1, deleteSets: true",
                [true, false, true, false],
                1,
            ),
            ("gaugesMaxTTL: 5", [false; 4], 5),
            ("gaugesMaxTTL: 2.5", [false; 4], 1),
            ("gaugesMaxTTL: -3", [false; 4], 1),
            ("gaugesMaxTTL: null", [false; 4], 1),
        ];
        for (body, deletes, ttl) in cases {
            let a = ok(&format!("{{ backends: [], {body} }}")).aggregate;
            assert_eq!(
                (
                    [
                        a.delete_counters,
                        a.delete_timers,
                        a.delete_sets,
                        a.delete_gauges
                    ],
                    a.gauges_max_ttl
                ),
                (*deletes, *ttl),
                "{body}"
            );
        }
    }

    #[test]
    fn naming_and_flags() {
        let c = ok(r#"{
          backends: ['console'],
          keyNameSanitize: false, flush_counts: false, debug: true, dumpMessages: 1,
          prefixStats: 'sy',
          graphite: { legacyNamespace: false, globalPrefix: 'g', prefixCounter: 'c',
                      prefixTimer: 't', prefixGauge: 'ga', prefixSet: 's', globalSuffix: 'host1' },
        }"#);
        assert_eq!(
            c.naming,
            crate::flush::naming::Naming {
                legacy_namespace: false,
                global_prefix: "g".into(),
                prefix_counter: "c".into(),
                prefix_timer: "t".into(),
                prefix_gauge: "ga".into(),
                prefix_set: "s".into(),
                global_suffix: Some("host1".into()),
                prefix_stats: "sy".into(),
                flush_counts: false,
                sanitize_names: true,
            }
        );
        assert!(!c.parse.sanitize);
        assert_eq!(c.log.level, "debug");
        assert!(c.log.dump_messages);
        assert_eq!(c.sinks[0].name, "console");
        // `flush_counts: null` is falsy in the reference's `if (flush_counts)`.
        assert!(
            !ok("{ backends: [], flush_counts: null }")
                .naming
                .flush_counts
        );
        assert!(
            ok("{ backends: [], graphite: null }")
                .naming
                .legacy_namespace
        );
    }

    #[test]
    fn backend_names() {
        let c = ok("{ backends: ['./backends/console', 'backends/console.js', 'console'] }");
        assert_eq!(c.sinks.len(), 1);
        assert!(c.warnings[0].contains("more than once"), "{:?}", c.warnings);
    }

    /// (config.js text, key the error names, part of the reason)
    const INVALID: &[(&str, &str, &str)] = &[
        ("{ flushInterval: 'soon' }", "flushInterval", "not a number"),
        ("{ flushInterval: -5 }", "flushInterval", "positive number of milliseconds"),
        ("{ flushInterval: 1e300 }", "flushInterval", "positive number of milliseconds"),
        ("{ flushInterval: 0.5 }", "flushInterval", "at least 1ms"),
        ("{ flushInterval: true }", "flushInterval", "must be a number"),
        ("{ percentThreshold: '90' }", "percentThreshold", "must be a number"),
        ("{ percentThreshold: [90, '99'] }", "percentThreshold[1]", "must be a number"),
        ("{ percentThreshold: 150 }", "percentThreshold[0]", "not a percentile"),
        ("{ percentThreshold: [90, -100] }", "percentThreshold[1]", "not a percentile"),
        ("{ histogram: { metric: 'a' } }", "histogram", "must be a list"),
        ("{ histogram: ['a'] }", "histogram[0]", "must be an object"),
        ("{ histogram: [{ bins: [] }] }", "histogram[0].metric", "must be a string"),
        ("{ histogram: [{ metric: 'a' }] }", "histogram[0].bins", "must be a list"),
        ("{ histogram: [{ metric: 'a', bins: [1, 'Infinity'] }] }", "histogram[0].bins[1]", "number or 'inf'"),
        ("{ histogram: [{ metric: 'a', bins: [2, 1] }] }", "histogram[0].bins", "ascending"),
        ("{ calculatedTimerMetrics: 'count' }", "calculatedTimerMetrics", "must be a list"),
        ("{ calculatedTimerMetrics: ['count', 1] }", "calculatedTimerMetrics[1]", "must be a string"),
        ("{ calculatedTimerMetrics: ['count', 'p99'] }", "calculatedTimerMetrics[1]", "unknown timer metric"),
        ("{ deleteIdleStats: 'true' }", "deleteIdleStats", "true or false"),
        ("{ deleteGauges: [] }", "deleteGauges", "true or false"),
        ("{ gaugesMaxTTL: '5' }", "gaugesMaxTTL", "number of flushes"),
        ("{ keyNameSanitize: 'no' }", "keyNameSanitize", "true or false"),
        ("{ flush_counts: 'false' }", "flush_counts", "true or false"),
        ("{ debug: 'yes' }", "debug", "true or false"),
        ("{ dumpMessages: {} }", "dumpMessages", "true or false"),
        ("{ prefixStats: null }", "prefixStats", "must be a string"),
        ("{ graphite: 'x' }", "graphite", "must be an object"),
        ("{ graphite: { legacyNamespace: 1 } }", "graphite.legacyNamespace", "true or false"),
        ("{ graphite: { legacyNamespace: null } }", "graphite.legacyNamespace", "true or false"),
        ("{ graphite: { globalPrefix: 1 } }", "graphite.globalPrefix", "must be a string"),
        ("{ graphite: { globalSuffix: null } }", "graphite.globalSuffix", "must be a string"),
        ("{ servers: { port: 1 } }", "servers", "list of server objects"),
        ("{ servers: [8125] }", "servers[0]", "must be an object"),
        ("{ servers: [{ server: './servers/http' }] }", "servers[0].server", "udp' and './servers/tcp' servers only"),
        ("{ servers: [{ port: 70000 }] }", "servers[0].port", "not a port number"),
        ("{ servers: [{ port: 'x' }] }", "servers[0].port", "not a number"),
        ("{ servers: [{ address: 1 }] }", "servers[0].address", "must be a string"),
        ("{ servers: [{ address_ipv6: 'yes' }] }", "servers[0].address_ipv6", "true or false"),
        ("{ servers: [{ address: 'no-such-host.invalid' }] }", "servers[0].address", "cannot resolve"),
        ("{ servers: [{ port: 1 }, { port: 1 }] }", "servers", "listed twice"),
        ("{ server: './servers/tcp', socket: 's', socket_mod: '999' }", "socket_mod", "octal"),
        ("{ server: './servers/tcp', socket: 's', socket_mod: 70000 }", "socket_mod", "not a file mode"),
        ("{ server: './servers/tcp', socket: 's', socket_mod: true }", "socket_mod", "file mode"),
        ("{ server: './servers/tcp', socket: 1 }", "socket", "must be a string"),
        ("{ port: 1.5 }", "port", "not a port number"),
        ("{ backends: './backends/graphite' }", "backends", "must be a list"),
        ("{ backends: [1] }", "backends[0]", "must be a string"),
        ("{ graphiteHost: 7 }", "graphiteHost", "must be a string"),
        ("{ graphiteHost: 'a b' }", "graphiteHost", "not a host name"),
        ("{ graphiteHost: 'g', graphitePort: 99999 }", "graphitePort", "not a port number"),
        ("{ graphiteHost: 'g', graphiteProtocol: 2 }", "graphiteProtocol", "must be a string"),
        ("{ backends: ['repeater'], repeater: { host: 'a', port: 1 } }", "repeater", "must be a list"),
        ("{ backends: ['repeater'], repeater: ['a:1'] }", "repeater[0]", "must be an object"),
        ("{ backends: ['repeater'], repeater: [{ host: 'a' }] }", "repeater[0].port", "needs a port"),
        ("{ backends: ['repeater'], repeater: [{ host: 'a', port: 0 }] }", "repeater[0].port", "needs a port"),
        ("{ backends: ['repeater'], repeater: [{ host: 'a', port: 1 }, { host: 'a b', port: 1 }] }", "repeater[1]", "not a host name"),
        ("{ backends: ['repeater'], repeater: [{ host: 'a', port: 1 }], repeaterProtocol: 6 }", "repeaterProtocol", "must be a string"),
    ];

    #[test]
    fn invalid_values_name_the_config_js_key() {
        crate::config::assert_invalid(from_str, "config.js", INVALID);
    }

    /// (config.js text, what the syntax error must contain)
    const SYNTAX: &[(&str, &[&str])] = &[
        (
            "{\n  graphiteHost: 'g',\n  graphite: { globalSuffix: require('os').hostname().split('.')[0] }\n}",
            &["line 3", "only literal values", "require('os').hostname()"],
        ),
        (
            "{\n  graphiteHost: os.hostname()\n}",
            &["line 2", "only literal values"],
        ),
        ("{ port: 8125 + 1 }", &["line 1", "only literal values"]),
        (
            "{ socket_mod: 0660 }",
            &["leading zero", "as a string, e.g. '0660'"],
        ),
        ("{ port: 8125", &["EOF"]),
        ("", &["EOF"]),
        ("[1, 2]", &["must be one object literal"]),
        ("'graphite'", &["must be one object literal"]),
    ];

    #[test]
    fn javascript_is_a_syntax_error() {
        for (text, parts) in SYNTAX {
            let e = from_str(text, "config.js").expect_err(text);
            assert!(matches!(e, ConfigError::Syntax { .. }), "{text}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with("config.js: "), "{msg}");
            for p in *parts {
                assert!(msg.contains(p), "{text}: {p:?} not in {msg}");
            }
        }
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        // The fuzzer's crash: json5 and serde_json recurse once per level.
        for open in ["[", "{a:", "(["] {
            let deep = format!("{{x: {}", open.repeat(100_000));
            let e = from_str(&deep, "config.js").expect_err("too deep");
            assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
            assert!(e.to_string().contains("nested"), "{e}");
        }
        // At the limit it still parses (on a test thread's small stack).
        let limit = format!(
            "{{x: {}1{}}}",
            "[".repeat(MAX_NESTING - 1),
            "]".repeat(MAX_NESTING - 1)
        );
        from_str(&limit, "config.js").expect("128 levels");
        // Brackets in strings and comments do not count, except after a
        // line break JSON5 knows (U+2028 ends a // comment).
        let quoted = format!("{{x: '{}'}} // {}", "[".repeat(500), "{".repeat(500));
        from_str(&quoted, "config.js").expect("brackets in a string");
        let hidden = format!("{{x: 1}} // {}{}", "\u{2028}", "[".repeat(100_000));
        let e = from_str(&hidden, "config.js").expect_err("U+2028 ends the comment");
        assert!(e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn js_keys_for_toml_keys() {
        let origin = ["graphiteHost", "repeater"];
        for (toml, js) in [
            ("flush.interval", "flushInterval"),
            ("flush.percentiles[2]", "percentThreshold[2]"),
            ("flush.histogram[1].bins", "histogram[1].bins"),
            (
                "flush.calculated_timer_metrics[0]",
                "calculatedTimerMetrics[0]",
            ),
            ("statsd.udp[3]", "servers"),
            ("sink[0].address", "graphiteHost"),
            ("sink[1].destinations[4]", "repeater[4]"),
            ("sink[7].name", "sink[7].name"),
            ("log.level", "debug"),
        ] {
            assert_eq!(js_key(toml, &origin), js, "{toml}");
        }
    }
}

//! The reference statsd's TCP management console (its `mgmt_server.js` and
//! `mgmt_console.js`): `stats`, `counters`, `timers`, `gauges`, `sets`, their
//! `del*` counterparts with `prefix.*` wildcards, `health [up|down]`,
//! `config`, `help` and `quit`, with the reference's output; plus `reload`
//! (statsyard's), and `auth TOKEN` when `[admin] token` is set.
//!
//! With a token configured, the commands that change something (`del*`,
//! `health up`/`health down`, `reload`) answer `ERROR: ...` until the
//! connection has sent `auth TOKEN`; reading commands stay open, as the
//! console's scripts expect.
//!
//! `counters`, `timers`, `gauges` and `sets` print the live state the way the
//! reference prints it with node's `util.inspect`; [`inspect`] reproduces that
//! formatting for the shapes these commands produce. Differences from the
//! reference are listed in docs/compatibility.md#admin-console.
//!
//! Imports: [`crate::front`] (what the front ends share), the registry's
//! types and the counters' renderers; never the runtime or HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::aggregate::{Registry, TimerSamples};
use crate::front::Front;
use crate::metric::MetricType;
use crate::stats::{get, unix_now};

type Shared = Arc<Front>;

/// Longest command line read; a longer one gets `ERROR` and is skipped.
pub const MAX_LINE: usize = 4096;
/// Open console connections at most; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A command that arrives without a newline is run after this pause, as the
/// reference runs every chunk it reads (`printf stats | nc` works).
const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(200);

/// The reference's `help` text, plus `sets`, `delsets`, `reload` and `auth`.
pub const HELP: &str = "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, \
                        delgauges, delsets, health, config, reload, auth, quit\n\n";

/// Accept console connections from clients `gate` admits until `token` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    console: Shared,
    gate: Arc<crate::gate::Gate>,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!(error = %e, "admin console: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !gate.admits(peer.ip()) {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin console: too many connections, closing");
            continue;
        };
        let console = console.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = token.cancelled() => {}
                r = connection(stream, &console) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "admin console connection ended");
                    }
                }
            }
        });
    }
}

/// One console connection: commands in, answers out, until `quit` or EOF.
async fn connection(mut stream: TcpStream, console: &Shared) -> std::io::Result<()> {
    let mut session = Session {
        console,
        authed: false,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    // Skipping the rest of an overlong line.
    let mut skipping = false;
    loop {
        let wait = if buf.is_empty() {
            IDLE_TIMEOUT
        } else {
            PARTIAL_LINE_WAIT
        };
        let n = match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) if buf.is_empty() => return Ok(()),
            Err(_) => {
                // A command without a newline: run it as the reference would
                // (unless it is the tail of an overlong line).
                let line = std::mem::take(&mut buf);
                if !skipping && run_line(&line, &mut stream, &mut session).await? {
                    return Ok(());
                }
                continue;
            }
        };
        if n == 0 {
            if !buf.is_empty() && !skipping {
                run_line(&buf, &mut stream, &mut session).await?;
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if skipping {
                skipping = false;
                continue;
            }
            if run_line(&line, &mut stream, &mut session).await? {
                return Ok(());
            }
        }
        if buf.len() > MAX_LINE {
            buf.clear();
            if !skipping {
                crate::stats::incr(&console.stats.admin_errors, 1);
                stream.write_all(b"ERROR\n").await?;
            }
            skipping = true;
        }
    }
}

/// Run one command line and write its answer; `true` means close.
async fn run_line(
    line: &[u8],
    stream: &mut TcpStream,
    session: &mut Session<'_>,
) -> std::io::Result<bool> {
    let text = String::from_utf8_lossy(line);
    match session.answer(&text).await {
        Answer::Text(out) => {
            if out.starts_with("ERROR") {
                crate::stats::incr(&session.console.stats.admin_errors, 1);
            }
            stream.write_all(out.as_bytes()).await?;
            Ok(false)
        }
        Answer::Quit => {
            stream.shutdown().await?;
            Ok(true)
        }
    }
}

/// What a command does.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Write this.
    Text(String),
    /// Close the connection.
    Quit,
}

/// The reference's parse: `data.trim().split(" ")`, the first word is the command.
fn split(line: &str) -> (&str, Vec<&str>) {
    let mut words = line
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .split(' ');
    let cmd = words.next().unwrap_or("");
    (cmd, words.collect())
}

/// One connection's state: whether it has sent the token.
struct Session<'a> {
    console: &'a Shared,
    authed: bool,
}

/// What a mutating command answers without the token.
const NEEDS_TOKEN: &str = "ERROR: this command needs the admin token: send `auth TOKEN` first\n";

impl Session<'_> {
    async fn answer(&mut self, line: &str) -> Answer {
        let (cmd, params) = split(line);
        let shared = self.console;
        let mutating = match cmd {
            "delcounters" | "deltimers" | "delgauges" | "delsets" | "reload" => true,
            "health" => !params.is_empty(),
            _ => false,
        };
        if cmd == "auth" {
            let given = params.first().map(|p| p.as_bytes());
            return Answer::Text(if !shared.admin_token.required() {
                "OK (no token is configured)\n".to_string()
            } else if shared.admin_token.accepts(given) {
                self.authed = true;
                "OK\n".to_string()
            } else {
                self.authed = false;
                crate::stats::incr(&shared.stats.admin_auth_failures, 1);
                tracing::warn!("admin console: wrong token");
                "ERROR: wrong token\n".to_string()
            });
        }
        if mutating && !self.authed && shared.admin_token.required() {
            crate::stats::incr(&shared.stats.admin_auth_failures, 1);
            return Answer::Text(NEEDS_TOKEN.to_string());
        }
        if cmd == "reload" {
            return Answer::Text(match shared.reloader() {
                None => "ERROR: this server cannot reload\n".to_string(),
                Some(r) => match r.reload().await {
                    Ok(report) => format!(
                        "reloaded {}\napplied: {}\nrestart required: {}\n",
                        report.source,
                        list(&report.applied),
                        list(&report.restart_required),
                    ),
                    Err(e) => format!("ERROR: reload refused: {e}\n"),
                },
            });
        }
        answer(line, shared).await
    }
}

/// `a, b` or `none`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// The answer to one command line (the reference's commands; no token check).
pub async fn answer(line: &str, shared: &Shared) -> Answer {
    let (cmd, params) = split(line);
    let params: Vec<String> = params.into_iter().map(str::to_string).collect();
    let text = match cmd {
        "help" => HELP.to_string(),
        "config" => {
            let mut out = String::from("\n");
            for l in shared.settings().config_lines.iter() {
                out.push_str(l);
                out.push('\n');
            }
            out
        }
        "health" => {
            if let Some(p) = params.first() {
                match p.to_lowercase().as_str() {
                    "up" => shared.health.set(true),
                    "down" => shared.health.set(false),
                    _ => {}
                }
            }
            format!("health: {}\n", shared.health.as_str())
        }
        "stats" => stats(shared),
        "counters" | "timers" | "gauges" | "sets" => {
            let ty = type_of(cmd);
            let r = shared.flusher.run(move |reg| dump(reg, ty)).await;
            match r {
                Ok(mut s) => {
                    s.push_str("\nEND\n\n");
                    s
                }
                Err(e) => format!("ERROR {e}\n"),
            }
        }
        "delcounters" | "deltimers" | "delgauges" | "delsets" => {
            let ty = type_of(&cmd[3..]);
            match shared
                .flusher
                .run(move |reg| delete(reg, ty, &params))
                .await
            {
                Ok(s) => s,
                Err(e) => format!("ERROR {e}\n"),
            }
        }
        "quit" => return Answer::Quit,
        _ => "ERROR\n".to_string(),
    };
    Answer::Text(text)
}

fn type_of(plural: &str) -> MetricType {
    match plural {
        "counters" => MetricType::Counter,
        "gauges" => MetricType::Gauge,
        "timers" => MetricType::Timer,
        _ => MetricType::Set,
    }
}

/// `stats`: uptime, the reference's `messages.*`, and per sink what it
/// counts (the sink table's admin rows).
fn stats(shared: &Shared) -> String {
    let s = &shared.stats;
    let now = unix_now();
    let mut out = format!("uptime: {}\n", now.saturating_sub(get(&s.started_unix)));
    out.push_str(&format!(
        "messages.last_msg_seen: {}\n",
        now.saturating_sub(get(&s.last_msg_seen))
    ));
    out.push_str(&format!(
        "messages.bad_lines_seen: {}\n",
        get(&s.bad_lines_seen)
    ));
    crate::stats::render::admin(s, &mut out);
    out.push_str("END\n\n");
    out
}

/// The keys of one type, sorted bytewise.
fn keys(reg: &Registry, ty: MetricType) -> Vec<crate::metric::MetricKey> {
    let mut keys: Vec<_> = match ty {
        MetricType::Counter => reg.counters().map(|(k, _)| k.clone()).collect(),
        MetricType::Gauge => reg.gauges().map(|(k, _)| k.clone()).collect(),
        MetricType::Set => reg.sets().map(|(k, _)| k.clone()).collect(),
        _ => reg.timers().map(|(k, _)| k.clone()).collect(),
    };
    keys.sort_unstable();
    keys
}

/// `counters`, `timers`, `gauges`, `sets`: the state as `util.inspect` prints it.
fn dump(reg: &mut Registry, ty: MetricType) -> String {
    let mut entries = Vec::new();
    for key in keys(reg, ty) {
        let k = key.to_string_lossy().into_owned();
        let v = match ty {
            MetricType::Counter => inspect::Value::Num(reg.counter(key.as_bytes()).unwrap_or(0.0)),
            MetricType::Gauge => inspect::Value::Num(reg.gauge(key.as_bytes()).unwrap_or(0.0)),
            MetricType::Set => {
                let members: Vec<String> = reg
                    .set_members(key.as_bytes())
                    .into_iter()
                    .flatten()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
                let total = members.len();
                inspect::Value::Set(
                    members
                        .into_iter()
                        .take(inspect::MAX_ARRAY_LENGTH)
                        .map(inspect::Value::Str)
                        .collect(),
                    total,
                )
            }
            _ => {
                let (items, total) = match reg.timer(key.as_bytes()).map(|t| t.samples()) {
                    Some(TimerSamples::Exact(v)) => (
                        v.iter().take(inspect::MAX_ARRAY_LENGTH).copied().collect(),
                        v.len(),
                    ),
                    Some(TimerSamples::Hist(h)) => {
                        // Past the exact bound only the histogram's values
                        // remain, in ascending order.
                        let mut runs = Vec::new();
                        h.runs(&mut runs);
                        let items: Vec<f64> = runs
                            .iter()
                            .flat_map(|&(v, n)| {
                                std::iter::repeat_n(
                                    v,
                                    n.min(inspect::MAX_ARRAY_LENGTH as u64) as usize,
                                )
                            })
                            .take(inspect::MAX_ARRAY_LENGTH)
                            .collect();
                        (items, h.len() as usize)
                    }
                    None => (Vec::new(), 0),
                };
                inspect::Value::Array(items.into_iter().map(inspect::Value::Num).collect(), total)
            }
        };
        entries.push((k, v));
    }
    inspect::inspect(&inspect::Value::Object(entries))
}

/// `del<type> name name.* ...`, with the reference's output.
fn delete(reg: &mut Registry, ty: MetricType, params: &[String]) -> String {
    let mut out = String::new();
    for bucket in params {
        // The reference: the exact name, then (for `x.*`) every name that
        // starts with `x.`; a name can match both, and is reported twice.
        let mut matches: Vec<String> = Vec::new();
        let all = keys(reg, ty);
        if all.iter().any(|k| k.as_bytes() == bucket.as_bytes()) {
            matches.push(bucket.clone());
        }
        if let Some(folder) = bucket.strip_suffix('*').filter(|_| bucket.ends_with(".*")) {
            for k in &all {
                if k.as_bytes().starts_with(folder.as_bytes()) {
                    matches.push(k.to_string_lossy().into_owned());
                }
            }
        }
        if matches.is_empty() {
            out.push_str(&format!("metric {bucket} not found\n"));
        }
        for m in matches {
            reg.remove(ty, m.as_bytes());
            out.push_str(&format!("deleted: {m}\n"));
        }
    }
    out.push_str("END\n\n");
    out
}

/// The admin `config` lines of a config: `key: value`, `table > key: value`.
pub fn config_lines(c: &crate::config::Config) -> Vec<String> {
    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let opt = |a: Option<SocketAddr>| a.map_or("disabled".to_string(), |a| a.to_string());
    let mut lines = vec![
        format!("source: {}", c.source),
        format!("statsd > udp: {}", list(&c.listen.udp)),
        format!("statsd > tcp: {}", list(&c.listen.tcp)),
        format!("statsd > key_name_sanitize: {}", c.parse.sanitize),
        format!("flush > interval: {}", c.compute.interval.as_millis()),
        format!(
            "flush > percentiles: {}",
            c.compute
                .percentiles
                .iter()
                .map(|p| crate::flush::number::js_number(p.value))
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("flush > delete_counters: {}", c.aggregate.delete_counters),
        format!("flush > delete_timers: {}", c.aggregate.delete_timers),
        format!("flush > delete_gauges: {}", c.aggregate.delete_gauges),
        format!("flush > delete_sets: {}", c.aggregate.delete_sets),
        format!("naming > prefix_stats: {}", c.naming.prefix_stats),
        format!(
            "sinks: {}",
            c.sinks
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
    lines.push(match &c.host {
        Some(h) => format!("host: {} every {}", h.prefix, secs(h.interval)),
        None => "host: disabled".into(),
    });
    lines.push(match &c.liveness {
        Some(l) => format!(
            "liveness: source {}, dark after {}, {} series patterns",
            match &l.source {
                crate::liveness::config::SourceBy::Address => "address".to_string(),
                crate::liveness::config::SourceBy::Tag(t) => format!("tag:{t}"),
            },
            secs(l.dark_after),
            l.series.len()
        ),
        None => "liveness: disabled".into(),
    });
    lines.push(match &c.forward {
        Some(f) => format!(
            "forward > destinations: {}",
            f.destinations
                .iter()
                .map(|d| match d {
                    crate::forward::config::Destination::Fixed(a) => a.clone(),
                    crate::forward::config::Destination::Dns { name, port } => {
                        format!("dns:{name}:{port}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => "forward: disabled".into(),
    });
    lines.push(match &c.aggregator {
        Some(a) => format!(
            "aggregator > listen: {}{}, grace {}",
            a.listen,
            if a.tls.is_some() { " (tls)" } else { "" },
            secs(a.grace)
        ),
        None => "aggregator: disabled".into(),
    });
    // The addresses last: clients read up to `admin > address`.
    lines.push(format!("http > address: {}", opt(c.http)));
    lines.push(format!("admin > address: {}", opt(c.admin)));
    lines
}

/// node's `util.inspect` with its default options (`breakLength` 80,
/// `compact` 3, `maxArrayLength` 100, `maxStringLength` 10000), for plain
/// objects, arrays, Sets, numbers and strings: what the console prints.
pub mod inspect {
    /// `maxArrayLength`: items of an array or Set shown.
    pub const MAX_ARRAY_LENGTH: usize = 100;
    /// `maxStringLength`: characters of a string value shown.
    pub const MAX_STRING_LENGTH: usize = 10_000;
    const BREAK_LENGTH: usize = 80;
    const COMPACT: usize = 3;

    /// A JavaScript value of the shapes the console prints.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        /// A number.
        Num(f64),
        /// A string.
        Str(String),
        /// The first items (at most [`MAX_ARRAY_LENGTH`]) and the length.
        Array(Vec<Value>, usize),
        /// The first members (at most [`MAX_ARRAY_LENGTH`]) and the size.
        Set(Vec<Value>, usize),
        /// A plain object's properties, in order.
        Object(Vec<(String, Value)>),
    }

    /// `util.inspect(value)`.
    pub fn inspect(v: &Value) -> String {
        format(v, 0)
    }

    /// JavaScript's `.length` of a string: UTF-16 code units.
    fn js_len(s: &str) -> usize {
        s.encode_utf16().count()
    }

    fn format(v: &Value, indent: usize) -> String {
        match v {
            Value::Num(n) => number(*n),
            Value::Str(s) => string(s),
            Value::Array(items, total) => {
                if *total == 0 {
                    return "[]".to_string();
                }
                let mut out: Vec<String> = items.iter().map(|i| format(i, indent + 2)).collect();
                let more = total.saturating_sub(items.len());
                if more > 0 {
                    out.push(remaining(more));
                }
                let numbers = items.iter().all(|i| matches!(i, Value::Num(_)));
                reduce(out, ("[", "]"), true, numbers, more > 0, indent)
            }
            Value::Set(items, total) => {
                let open = format!("Set({total}) {{");
                if *total == 0 {
                    return format!("Set({total}) {{}}");
                }
                let mut out: Vec<String> = items.iter().map(|i| format(i, indent + 2)).collect();
                let more = total.saturating_sub(items.len());
                if more > 0 {
                    out.push(remaining(more));
                }
                reduce(out, (&open, "}"), false, false, false, indent)
            }
            Value::Object(props) => {
                if props.is_empty() {
                    return "{}".to_string();
                }
                let out = props
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key(k), format(v, indent + 2)))
                    .collect();
                reduce(out, ("{", "}"), false, false, false, indent)
            }
        }
    }

    fn remaining(n: usize) -> String {
        format!("... {n} more item{}", if n > 1 { "s" } else { "" })
    }

    /// `formatNumber`: `-0` keeps its sign, the rest is `String(n)`.
    fn number(n: f64) -> String {
        if n == 0.0 && n.is_sign_negative() {
            "-0".to_string()
        } else {
            crate::flush::number::js_number(n)
        }
    }

    /// A property name: bare when it is an identifier, else a quoted string.
    fn key(k: &str) -> String {
        let mut chars = k.chars();
        let ident = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident {
            k.to_string()
        } else {
            quote(k)
        }
    }

    /// A string value: quoted, cut at [`MAX_STRING_LENGTH`] characters.
    fn string(s: &str) -> String {
        let len = js_len(s);
        if len <= MAX_STRING_LENGTH {
            return quote(s);
        }
        let units: Vec<u16> = s.encode_utf16().take(MAX_STRING_LENGTH).collect();
        let cut = String::from_utf16_lossy(&units);
        let more = len - MAX_STRING_LENGTH;
        format!(
            "{}... {more} more character{}",
            quote(&cut),
            if more > 1 { "s" } else { "" }
        )
    }

    /// `strEscape`: single quotes unless the string holds one (then double
    /// quotes, or backticks), control characters escaped.
    fn quote(s: &str) -> String {
        let q = if !s.contains('\'') {
            '\''
        } else if !s.contains('"') {
            '"'
        } else if !s.contains('`') && !s.contains("${") {
            '`'
        } else {
            '\''
        };
        let mut out = String::with_capacity(s.len() + 2);
        out.push(q);
        for c in s.chars() {
            match c {
                '\'' if q == '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                    out.push_str(&format!("\\x{:02X}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push(q);
        out
    }

    /// `reduceToSingleString` with `compact: 3`: one line when it fits in
    /// `breakLength`, else one entry per line (arrays of more than six
    /// entries grouped in columns first).
    fn reduce(
        mut out: Vec<String>,
        braces: (&str, &str),
        array: bool,
        numbers: bool,
        has_more: bool,
        indent: usize,
    ) -> String {
        let entries = out.len();
        if array && entries > 6 {
            out = group(out, numbers, has_more, indent);
        }
        // Every shape here nests less than COMPACT (3) deep, so the depth
        // test of node's compact mode always passes.
        if entries == out.len() {
            let start = out.len() + indent + js_len(braces.0) + 10;
            if below_break_length(&out, start) {
                let joined = out.join(", ");
                if !joined.contains('\n') {
                    return format!("{} {joined} {}", braces.0, braces.1);
                }
            }
        }
        let ind = format!("\n{}", " ".repeat(indent));
        format!(
            "{}{ind}  {}{ind}{}",
            braces.0,
            out.join(&format!(",{ind}  ")),
            braces.1
        )
    }

    fn below_break_length(out: &[String], start: usize) -> bool {
        let mut total = out.len() + start;
        if total + out.len() > BREAK_LENGTH {
            return false;
        }
        for o in out {
            total += js_len(o);
            if total > BREAK_LENGTH {
                return false;
            }
        }
        true
    }

    /// `groupArrayElements`: lay array items out in aligned columns.
    fn group(out: Vec<String>, numbers: bool, has_more: bool, indent: usize) -> Vec<String> {
        let mut total_length = 0usize;
        let mut max_length = 0usize;
        let output_length = if has_more { out.len() - 1 } else { out.len() };
        let separator_space = 2;
        let data_len: Vec<usize> = out[..output_length].iter().map(|o| js_len(o)).collect();
        for &len in &data_len {
            total_length += len + separator_space;
            max_length = max_length.max(len);
        }
        let actual_max = max_length + separator_space;
        if actual_max * 3 + indent < BREAK_LENGTH
            && (total_length as f64 / actual_max as f64 > 5.0 || max_length <= 6)
        {
            let approx_char_heights = 2.5;
            let average_bias = (actual_max as f64 - total_length as f64 / out.len() as f64).sqrt();
            let biased_max = (actual_max as f64 - 3.0 - average_bias).max(1.0);
            let columns = [
                // Math.round: halves round up.
                ((approx_char_heights * biased_max * output_length as f64).sqrt() / biased_max
                    + 0.5)
                    .floor() as usize,
                (BREAK_LENGTH - indent) / actual_max,
                COMPACT * 4,
                15,
            ]
            .into_iter()
            .min()
            .unwrap_or(1);
            if columns <= 1 {
                return out;
            }
            let mut max_line_length = Vec::with_capacity(columns);
            for i in 0..columns {
                let mut line_length = 0;
                let mut j = i;
                while j < output_length {
                    line_length = line_length.max(data_len[j]);
                    j += columns;
                }
                max_line_length.push(line_length + separator_space);
            }
            let mut tmp = Vec::new();
            let mut i = 0;
            while i < output_length {
                let max = (i + columns).min(output_length);
                let mut line = String::new();
                let mut j = i;
                while j < max - 1 {
                    let cell = format!("{}, ", out[j]);
                    pad(&mut line, &cell, max_line_length[j - i], numbers);
                    j += 1;
                }
                if numbers {
                    let width = max_line_length[j - i] - separator_space;
                    pad(&mut line, &out[j], width, true);
                } else {
                    line.push_str(&out[j]);
                }
                tmp.push(line);
                i += columns;
            }
            if has_more {
                tmp.push(out[output_length].clone());
            }
            return tmp;
        }
        out
    }

    /// `padStart` (numbers) or `padEnd` to `width` UTF-16 units.
    fn pad(line: &mut String, cell: &str, width: usize, start: bool) {
        let fill = " ".repeat(width.saturating_sub(js_len(cell)));
        if start {
            line.push_str(&fill);
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.push_str(&fill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::inspect::{inspect, Value};

    fn nums(v: &[f64]) -> Value {
        Value::Array(v.iter().map(|&n| Value::Num(n)).collect(), v.len())
    }

    /// Cases whose node output is known (node v20 `util.inspect`).
    #[test]
    fn like_node() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Object(vec![]), "{}"),
            (
                Value::Object(vec![
                    ("a".into(), Value::Num(1.0)),
                    ("b.c".into(), Value::Num(0.5)),
                    ("it's".into(), Value::Num(-0.0)),
                ]),
                "{ a: 1, 'b.c': 0.5, \"it's\": -0 }",
            ),
            (Value::Object(vec![("t".into(), nums(&[]))]), "{ t: [] }"),
            (
                Value::Object(vec![(
                    "s".into(),
                    Value::Set(vec![Value::Str("x".into())], 1),
                )]),
                "{ s: Set(1) { 'x' } }",
            ),
            (nums(&[1.0, 2.0, 3.0]), "[ 1, 2, 3 ]"),
        ];
        for (v, want) in cases {
            assert_eq!(inspect(&v), want, "{v:?}");
        }
    }

    /// Compare with node itself on many shapes, when node is installed (it
    /// is in CI, where its absence is a failure).
    #[test]
    fn against_node() {
        let have_node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_node {
            assert!(std::env::var_os("CI").is_none(), "node is missing in CI");
            return;
        }
        // (JavaScript expression, our value)
        let mut cases: Vec<(String, Value)> = Vec::new();
        for n in [0usize, 1, 3, 6, 7, 12, 26, 99, 100, 101, 250] {
            let v: Vec<f64> = (0..n).map(|i| ((i * 37) % 1000) as f64 / 7.0).collect();
            let js = format!(
                "[{}]",
                v.iter()
                    .map(|x| crate::flush::number::js_number(*x))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let shown: Vec<Value> = v.iter().take(100).map(|&x| Value::Num(x)).collect();
            cases.push((js.clone(), Value::Array(shown.clone(), n)));
            cases.push((
                format!("{{'timer.a': {js}, b: [1,2,3], 'c;x=y': []}}"),
                Value::Object(vec![
                    ("timer.a".into(), Value::Array(shown, n)),
                    ("b".into(), nums(&[1.0, 2.0, 3.0])),
                    ("c;x=y".into(), nums(&[])),
                ]),
            ));
            let ints: Vec<f64> = (0..n).map(|i| (i * i) as f64).collect();
            let js = format!(
                "[{}]",
                ints.iter()
                    .map(|x| crate::flush::number::js_number(*x))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            cases.push((
                format!("{{k: {js}}}"),
                Value::Object(vec![(
                    "k".into(),
                    Value::Array(ints.iter().take(100).map(|&x| Value::Num(x)).collect(), n),
                )]),
            ));
        }
        for n in [1usize, 4, 5, 9, 30] {
            let keys: Vec<String> = (0..n).map(|i| format!("some.counter.{i}")).collect();
            let js = format!(
                "{{{}}}",
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| format!("'{k}': {}", i * 1000))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            cases.push((
                js,
                Value::Object(
                    keys.iter()
                        .enumerate()
                        .map(|(i, k)| (k.clone(), Value::Num((i * 1000) as f64)))
                        .collect(),
                ),
            ));
            let members: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
            cases.push((
                format!(
                    "{{'a.set': new Set([{}])}}",
                    members
                        .iter()
                        .map(|m| format!("'{m}'"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Value::Object(vec![(
                    "a.set".into(),
                    Value::Set(members.iter().map(|m| Value::Str(m.clone())).collect(), n),
                )]),
            ));
        }
        cases.push((
            "{'q\\'s': 'a\\nb\\\\c\\x01\"', x: 'it\\'s \"both\"'}".into(),
            Value::Object(vec![
                ("q's".into(), Value::Str("a\nb\\c\u{1}\"".into())),
                ("x".into(), Value::Str("it's \"both\"".into())),
            ]),
        ));
        let script: String = cases
            .iter()
            .map(|(js, _)| format!("console.log(JSON.stringify(require('util').inspect({js})));\n"))
            .collect();
        let out = std::process::Command::new("node")
            .arg("-e")
            .arg(&script)
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<String>(l).expect("JSON string"))
            .collect();
        assert_eq!(lines.len(), cases.len());
        for ((js, v), want) in cases.iter().zip(lines) {
            assert_eq!(inspect(v), want, "{js}");
        }
    }
}

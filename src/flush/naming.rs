//! Graphite names for a [`FlushBatch`], exactly as the
//! reference's graphite backend builds them (its `flush_stats` and `format`).
//!
//! Legacy namespace (the default): `stats.<key>` (rate) and
//! `stats_counts.<key>` for counters, `stats.timers.<key>.<stat>`,
//! `stats.gauges.<key>`, `stats.sets.<key>.count`, whatever the prefixes say.
//! New namespace: `<globalPrefix>.<prefixCounter>.<key>.rate|count` and so
//! on, leaving out empty prefixes. Every name ends with `.<globalSuffix>` when
//! one is set, then the key's tags (`;k=v`).
//!
//! Imports, besides `flush` itself: `metric`, `parse`.

use std::borrow::Cow;
use std::time::Instant;

use super::FlushBatch;
use crate::metric::MetricKey;

/// The reference's `graphite.*` naming options plus `prefixStats` and `flush_counts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Naming {
    /// The reference's `graphite.legacyNamespace`.
    pub legacy_namespace: bool,
    /// `graphite.globalPrefix` (new namespace only).
    pub global_prefix: String,
    /// `graphite.prefixCounter` (new namespace only).
    pub prefix_counter: String,
    /// `graphite.prefixTimer` (new namespace only).
    pub prefix_timer: String,
    /// `graphite.prefixGauge` (new namespace only).
    pub prefix_gauge: String,
    /// `graphite.prefixSet` (new namespace only).
    pub prefix_set: String,
    /// Appended after every name as `.suffix` when set.
    pub global_suffix: Option<String>,
    /// The reference's `prefixStats`: where statsd's own stats go.
    pub prefix_stats: String,
    /// Emit `stats_counts.*` (legacy) or `.count` (new namespace) for counters.
    pub flush_counts: bool,
    /// When key sanitising on ingress is off, the graphite backend sanitises names itself.
    pub sanitize_names: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: None,
            prefix_stats: "statsd".into(),
            flush_counts: true,
            sanitize_names: false,
        }
    }
}

/// One Graphite line, before formatting.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteLine {
    /// The full metric path, tags included.
    pub name: String,
    /// The value, formatted by the sink.
    pub value: f64,
}

/// The namespaces `graphite.js` builds at init.
struct Namespaces<'a> {
    /// Each a dotted prefix with its trailing `.`, or empty.
    global: String,
    counter: String,
    timer: String,
    gauge: String,
    set: String,
    suffix: Cow<'a, str>,
}

impl<'a> Namespaces<'a> {
    fn new(naming: &'a Naming) -> Namespaces<'a> {
        let suffix = match &naming.global_suffix {
            Some(s) => Cow::Owned(format!(".{s}")),
            None => Cow::Borrowed(""),
        };
        if naming.legacy_namespace {
            return Namespaces {
                global: "stats.".into(),
                counter: "stats.".into(),
                timer: "stats.timers.".into(),
                gauge: "stats.gauges.".into(),
                set: "stats.sets.".into(),
                suffix,
            };
        }
        // `namespace.join('.')` over the non-empty prefixes, plus the `.`
        // that joins it to the key.
        let join = |parts: &[&str]| {
            let mut out = String::new();
            for p in parts.iter().filter(|p| !p.is_empty()) {
                out.push_str(p);
                out.push('.');
            }
            out
        };
        let g = naming.global_prefix.as_str();
        Namespaces {
            global: join(&[g]),
            counter: join(&[g, &naming.prefix_counter]),
            timer: join(&[g, &naming.prefix_timer]),
            gauge: join(&[g, &naming.prefix_gauge]),
            set: join(&[g, &naming.prefix_set]),
            suffix,
        }
    }
}

/// A key split as `format()` splits it: the (maybe sanitised) name before the
/// first `;`, and the tags from that `;` on, which go after the suffix.
struct KeyParts<'k> {
    name: Cow<'k, str>,
    tags: Cow<'k, str>,
}

impl<'k> KeyParts<'k> {
    fn new(key: &'k MetricKey, sanitize: bool) -> KeyParts<'k> {
        KeyParts::from_bytes(key.name(), key.tag_suffix(), sanitize)
    }

    fn from_bytes(name: &'k [u8], tags: &'k [u8], sanitize: bool) -> KeyParts<'k> {
        let name = String::from_utf8_lossy(name);
        KeyParts {
            name: if sanitize {
                Cow::Owned(sanitize_name(&name))
            } else {
                name
            },
            tags: String::from_utf8_lossy(tags),
        }
    }

    /// `namespace.concat(keyName, extra).join('.') + globalSuffix + tags`,
    /// written over `out`.
    fn format_into(&self, out: &mut String, namespace: &str, extra: &[&str], suffix: &str) {
        out.clear();
        out.push_str(namespace);
        out.push_str(&self.name);
        for e in extra {
            out.push('.');
            out.push_str(e);
        }
        out.push_str(suffix);
        out.push_str(&self.tags);
    }
}

/// The graphite backend's `sk()`, used when keys were not sanitised on the
/// way in: runs of whitespace become `_`, `/` becomes `-`, and anything
/// outside `[A-Za-z0-9_.;=-]` is dropped (in that order, as its three
/// `replace` calls do).
pub fn sanitize_name(name: &str) -> String {
    // The same three replacements the parser applies on ingress; one
    // implementation, so the two can never disagree.
    let mut out = Vec::with_capacity(name.len());
    crate::parse::sanitize::sanitize_into(name.as_bytes(), &mut out);
    // Only ASCII `[A-Za-z0-9_.;=-]` survives sanitising.
    String::from_utf8(out).unwrap_or_default()
}

/// Append the batch's Graphite lines, named as the reference's graphite
/// backend names them. See [`for_each_graphite_line`], which this collects.
pub fn graphite_lines(batch: &FlushBatch, naming: &Naming, out: &mut Vec<GraphiteLine>) {
    for_each_graphite_line(batch, naming, &mut |name, value| {
        out.push(GraphiteLine {
            name: name.to_string(),
            value,
        })
    });
}

/// Hand each of the batch's Graphite lines to `f`, named as the reference's
/// graphite backend names them, including its own `numStats`,
/// `calculationtime` (the whole milliseconds this function took) and
/// `processing_time`. Names are built in one reused buffer, so encoding a
/// flush allocates nothing per line.
pub fn for_each_graphite_line(batch: &FlushBatch, naming: &Naming, f: &mut dyn FnMut(&str, f64)) {
    let started = Instant::now();
    for_each_series_line(batch, naming, &mut |_, name, value| f(name, value));
    for_each_internal_line(batch, naming, started, f);
}

/// Which series of a batch a line belongs to: its type's list and its
/// index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeriesRef {
    /// `batch.counters[i]`.
    Counter(usize),
    /// `batch.timers[i]`.
    Timer(usize),
    /// `batch.gauges[i]`.
    Gauge(usize),
    /// `batch.sets[i]`.
    Set(usize),
}

impl SeriesRef {
    /// The series' key in `batch`.
    pub fn key<'b>(&self, batch: &'b FlushBatch) -> &'b MetricKey {
        match *self {
            SeriesRef::Counter(i) => &batch.counters[i].key,
            SeriesRef::Timer(i) => &batch.timers[i].key,
            SeriesRef::Gauge(i) => &batch.gauges[i].key,
            SeriesRef::Set(i) => &batch.sets[i].key,
        }
    }
}

/// Hand each Graphite line of the batch's series to `f` with the series it
/// belongs to: [`for_each_graphite_line`] without the graphite backend's
/// own three lines, in the same order.
pub fn for_each_series_line(
    batch: &FlushBatch,
    naming: &Naming,
    f: &mut dyn FnMut(SeriesRef, &str, f64),
) {
    let ns = Namespaces::new(naming);
    let sfx = ns.suffix.as_ref();
    let sanitize = naming.sanitize_names;
    let mut buf = String::with_capacity(256);
    let mut line =
        |of: SeriesRef, key: &KeyParts<'_>, namespace: &str, extra: &[&str], value: f64| {
            key.format_into(&mut buf, namespace, extra, sfx);
            f(of, &buf, value);
        };

    for (i, c) in batch.counters.iter().enumerate() {
        let of = SeriesRef::Counter(i);
        let key = KeyParts::new(&c.key, sanitize);
        if naming.legacy_namespace {
            line(of, &key, &ns.counter, &[], c.rate);
            if naming.flush_counts {
                line(of, &key, "stats_counts.", &[], c.value);
            }
        } else {
            line(of, &key, &ns.counter, &["rate"], c.rate);
            if naming.flush_counts {
                line(of, &key, &ns.counter, &["count"], c.value);
            }
        }
    }
    for (i, t) in batch.timers.iter().enumerate() {
        let of = SeriesRef::Timer(i);
        let key = KeyParts::new(&t.key, sanitize);
        for (stat, value) in &t.stats {
            line(of, &key, &ns.timer, &[stat], *value);
        }
        for (bin, value) in &t.histogram {
            line(of, &key, &ns.timer, &["histogram", bin], *value);
        }
    }
    for (i, g) in batch.gauges.iter().enumerate() {
        let key = KeyParts::new(&g.key, sanitize);
        line(SeriesRef::Gauge(i), &key, &ns.gauge, &[], g.value);
    }
    for (i, s) in batch.sets.iter().enumerate() {
        let key = KeyParts::new(&s.key, sanitize);
        line(SeriesRef::Set(i), &key, &ns.set, &["count"], s.count as f64);
    }
}

/// The graphite backend's own lines: `numStats`, `processing_time` and
/// `calculationtime` (the milliseconds since `started`).
pub fn for_each_internal_line(
    batch: &FlushBatch,
    naming: &Naming,
    started: Instant,
    f: &mut dyn FnMut(&str, f64),
) {
    let ns = Namespaces::new(naming);
    let sfx = ns.suffix.as_ref();
    let sanitize = naming.sanitize_names;
    let mut buf = String::with_capacity(256);
    let mut line = |key: &KeyParts<'_>, namespace: &str, extra: &[&str], value: f64| {
        key.format_into(&mut buf, namespace, extra, sfx);
        f(&buf, value);
    };
    let num_stats = batch.num_stats() as f64;
    let prefix = naming.prefix_stats.as_str();
    if naming.legacy_namespace {
        // Not through format(): no `stats.` in front of numStats, no
        // sanitising, no tag handling.
        f(&format!("{prefix}.numStats{sfx}"), num_stats);
        f(
            &format!("stats.{prefix}.processing_time{sfx}"),
            batch.processing_time_ms,
        );
        f(
            &format!("stats.{prefix}.graphiteStats.calculationtime{sfx}"),
            started.elapsed().as_millis() as f64,
        );
    } else {
        // format(globalNamespace, prefixStats, ...): prefixStats is the key.
        let (name, tags) = match prefix.split_once(';') {
            Some((n, _)) => (n, &prefix[n.len()..]),
            None => (prefix, ""),
        };
        let key = KeyParts::from_bytes(name.as_bytes(), tags.as_bytes(), sanitize);
        line(&key, &ns.global, &["numStats"], num_stats);
        line(
            &key,
            &ns.global,
            &["processing_time"],
            batch.processing_time_ms,
        );
        let took = started.elapsed().as_millis() as f64;
        line(
            &key,
            &ns.global,
            &["graphiteStats", "calculationtime"],
            took,
        );
    }
}

/// `<globalNamespace>.<prefixStats>.graphiteStats.<stat><globalSuffix>`: the names of the
/// sink-level stats the graphite sink adds to every flush (`last_exception`,
/// `last_flush`, `flush_time`, `flush_length`).
pub fn graphite_stats_name(naming: &Naming, stat: &str) -> String {
    let ns = Namespaces::new(naming);
    format!(
        "{}{}.graphiteStats.{stat}{}",
        ns.global, naming.prefix_stats, ns.suffix
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::flush::{CounterOut, GaugeOut, SetOut, TimerOut};
    use crate::metric::MetricType;

    struct NamingCase {
        name: &'static str,
        naming: Naming,
        /// Two counters, a timer, a gauge, a set.
        keys: [&'static str; 5],
        lines: &'static [(&'static str, f64)],
    }

    fn batch(keys: &[&str; 5]) -> FlushBatch {
        let key = |i: usize| MetricKey::new(keys[i].as_bytes());
        FlushBatch {
            timestamp: 100,
            counters: vec![
                CounterOut {
                    key: key(0),
                    value: 3.0,
                    rate: 0.3,
                },
                CounterOut {
                    key: key(1),
                    value: 1.5,
                    rate: 0.15,
                },
            ],
            timers: vec![TimerOut {
                key: key(2),
                kind: MetricType::Timer,
                stats: vec![(Arc::from("count_90"), 1.0), (Arc::from("upper_99_9"), 2.5)],
                histogram: vec![(Arc::from("bin_1"), 2.0), (Arc::from("bin_inf"), 0.0)],
            }],
            gauges: vec![GaugeOut {
                key: key(3),
                value: -2.0,
            }],
            sets: vec![SetOut {
                key: key(4),
                count: 2,
            }],
            processing_time_ms: 3.0,
            ..FlushBatch::default()
        }
    }

    /// Keys that need no sanitising: a plain name, tags, a timer, a gauge, a set.
    const PLAIN_KEYS: [&str; 5] = ["a.b", "c;env=prod;host=x", "t;k=v", "g", "s;z"];
    /// The same five roles with names that need the graphite backend's `sk()`.
    const DIRTY_KEYS: [&str; 5] = [
        "a b//c\u{e9} \u{a0}x",
        "c\tz;env=pr od",
        "t\u{2028}\u{feff}\u{85}x;k=v",
        "g/h",
        "s*;z",
    ];

    /// The lines the reference's backends/graphite.js sends for the same
    /// metrics and config (its flush_stats, then post_stats with a fake
    /// connection), as (name, value).
    fn cases() -> Vec<NamingCase> {
        vec![
            NamingCase {
                name: "legacy_default",
                naming: Naming::default(),
                keys: PLAIN_KEYS,
                lines: &[
                    ("stats.a.b", 0.3),
                    ("stats_counts.a.b", 3.0),
                    ("stats.c;env=prod;host=x", 0.15),
                    ("stats_counts.c;env=prod;host=x", 1.5),
                    ("stats.timers.t.count_90;k=v", 1.0),
                    ("stats.timers.t.upper_99_9;k=v", 2.5),
                    ("stats.timers.t.histogram.bin_1;k=v", 2.0),
                    ("stats.timers.t.histogram.bin_inf;k=v", 0.0),
                    ("stats.gauges.g", -2.0),
                    ("stats.sets.s.count;z", 2.0),
                    ("statsd.numStats", 5.0),
                    ("stats.statsd.graphiteStats.calculationtime", 1.0),
                    ("stats.statsd.processing_time", 3.0),
                    ("stats.statsd.graphiteStats.last_exception", 0.0),
                    ("stats.statsd.graphiteStats.last_flush", 0.0),
                    ("stats.statsd.graphiteStats.flush_time", 0.0),
                    ("stats.statsd.graphiteStats.flush_length", 0.0),
                ],
            },
            NamingCase {
                name: "legacy_suffix",
                naming: Naming {
                    global_prefix: "ignored".into(),
                    prefix_counter: "ignored".into(),
                    global_suffix: Some("sfx".into()),
                    prefix_stats: "mystats".into(),
                    flush_counts: false,
                    ..Naming::default()
                },
                keys: PLAIN_KEYS,
                lines: &[
                    ("stats.a.b.sfx", 0.3),
                    ("stats.c.sfx;env=prod;host=x", 0.15),
                    ("stats.timers.t.count_90.sfx;k=v", 1.0),
                    ("stats.timers.t.upper_99_9.sfx;k=v", 2.5),
                    ("stats.timers.t.histogram.bin_1.sfx;k=v", 2.0),
                    ("stats.timers.t.histogram.bin_inf.sfx;k=v", 0.0),
                    ("stats.gauges.g.sfx", -2.0),
                    ("stats.sets.s.count.sfx;z", 2.0),
                    ("mystats.numStats.sfx", 5.0),
                    ("stats.mystats.graphiteStats.calculationtime.sfx", 0.0),
                    ("stats.mystats.processing_time.sfx", 3.0),
                    ("stats.mystats.graphiteStats.last_exception.sfx", 0.0),
                    ("stats.mystats.graphiteStats.last_flush.sfx", 0.0),
                    ("stats.mystats.graphiteStats.flush_time.sfx", 0.0),
                    ("stats.mystats.graphiteStats.flush_length.sfx", 0.0),
                ],
            },
            NamingCase {
                name: "new_prefixes",
                naming: Naming {
                    legacy_namespace: false,
                    global_prefix: "gp".into(),
                    prefix_counter: "cnt".into(),
                    prefix_timer: "tmr".into(),
                    prefix_gauge: "gg".into(),
                    prefix_set: "st".into(),
                    global_suffix: Some("sfx".into()),
                    ..Naming::default()
                },
                keys: PLAIN_KEYS,
                lines: &[
                    ("gp.cnt.a.b.rate.sfx", 0.3),
                    ("gp.cnt.a.b.count.sfx", 3.0),
                    ("gp.cnt.c.rate.sfx;env=prod;host=x", 0.15),
                    ("gp.cnt.c.count.sfx;env=prod;host=x", 1.5),
                    ("gp.tmr.t.count_90.sfx;k=v", 1.0),
                    ("gp.tmr.t.upper_99_9.sfx;k=v", 2.5),
                    ("gp.tmr.t.histogram.bin_1.sfx;k=v", 2.0),
                    ("gp.tmr.t.histogram.bin_inf.sfx;k=v", 0.0),
                    ("gp.gg.g.sfx", -2.0),
                    ("gp.st.s.count.sfx;z", 2.0),
                    ("gp.statsd.numStats.sfx", 5.0),
                    ("gp.statsd.graphiteStats.calculationtime.sfx", 0.0),
                    ("gp.statsd.processing_time.sfx", 3.0),
                    ("gp.statsd.graphiteStats.last_exception.sfx", 0.0),
                    ("gp.statsd.graphiteStats.last_flush.sfx", 0.0),
                    ("gp.statsd.graphiteStats.flush_time.sfx", 0.0),
                    ("gp.statsd.graphiteStats.flush_length.sfx", 0.0),
                ],
            },
            NamingCase {
                name: "new_empty",
                naming: Naming {
                    legacy_namespace: false,
                    global_prefix: "".into(),
                    prefix_counter: "".into(),
                    prefix_timer: "".into(),
                    prefix_gauge: "".into(),
                    prefix_set: "".into(),
                    global_suffix: Some("".into()),
                    prefix_stats: "".into(),
                    ..Naming::default()
                },
                keys: PLAIN_KEYS,
                lines: &[
                    ("a.b.rate.", 0.3),
                    ("a.b.count.", 3.0),
                    ("c.rate.;env=prod;host=x", 0.15),
                    ("c.count.;env=prod;host=x", 1.5),
                    ("t.count_90.;k=v", 1.0),
                    ("t.upper_99_9.;k=v", 2.5),
                    ("t.histogram.bin_1.;k=v", 2.0),
                    ("t.histogram.bin_inf.;k=v", 0.0),
                    ("g.", -2.0),
                    ("s.count.;z", 2.0),
                    (".numStats.", 5.0),
                    (".graphiteStats.calculationtime.", 0.0),
                    (".processing_time.", 3.0),
                    (".graphiteStats.last_exception.", 0.0),
                    (".graphiteStats.last_flush.", 0.0),
                    (".graphiteStats.flush_time.", 0.0),
                    (".graphiteStats.flush_length.", 0.0),
                ],
            },
            NamingCase {
                name: "new_default",
                naming: Naming {
                    legacy_namespace: false,
                    ..Naming::default()
                },
                keys: PLAIN_KEYS,
                lines: &[
                    ("stats.counters.a.b.rate", 0.3),
                    ("stats.counters.a.b.count", 3.0),
                    ("stats.counters.c.rate;env=prod;host=x", 0.15),
                    ("stats.counters.c.count;env=prod;host=x", 1.5),
                    ("stats.timers.t.count_90;k=v", 1.0),
                    ("stats.timers.t.upper_99_9;k=v", 2.5),
                    ("stats.timers.t.histogram.bin_1;k=v", 2.0),
                    ("stats.timers.t.histogram.bin_inf;k=v", 0.0),
                    ("stats.gauges.g", -2.0),
                    ("stats.sets.s.count;z", 2.0),
                    ("stats.statsd.numStats", 5.0),
                    ("stats.statsd.graphiteStats.calculationtime", 0.0),
                    ("stats.statsd.processing_time", 3.0),
                    ("stats.statsd.graphiteStats.last_exception", 0.0),
                    ("stats.statsd.graphiteStats.last_flush", 0.0),
                    ("stats.statsd.graphiteStats.flush_time", 0.0),
                    ("stats.statsd.graphiteStats.flush_length", 0.0),
                ],
            },
            NamingCase {
                name: "new_sanitize",
                naming: Naming {
                    legacy_namespace: false,
                    prefix_stats: "my stats;t=1".into(),
                    sanitize_names: true,
                    ..Naming::default()
                },
                keys: DIRTY_KEYS,
                lines: &[
                    ("stats.counters.a_b--c_x.rate", 0.3),
                    ("stats.counters.a_b--c_x.count", 3.0),
                    ("stats.counters.c_z.rate;env=pr od", 0.15),
                    ("stats.counters.c_z.count;env=pr od", 1.5),
                    ("stats.timers.t_x.count_90;k=v", 1.0),
                    ("stats.timers.t_x.upper_99_9;k=v", 2.5),
                    ("stats.timers.t_x.histogram.bin_1;k=v", 2.0),
                    ("stats.timers.t_x.histogram.bin_inf;k=v", 0.0),
                    ("stats.gauges.g-h", -2.0),
                    ("stats.sets.s.count;z", 2.0),
                    ("stats.my_stats.numStats;t=1", 5.0),
                    ("stats.my_stats.graphiteStats.calculationtime;t=1", 0.0),
                    ("stats.my_stats.processing_time;t=1", 3.0),
                    ("stats.my stats;t=1.graphiteStats.last_exception", 0.0),
                    ("stats.my stats;t=1.graphiteStats.last_flush", 0.0),
                    ("stats.my stats;t=1.graphiteStats.flush_time", 0.0),
                    ("stats.my stats;t=1.graphiteStats.flush_length", 0.0),
                ],
            },
            NamingCase {
                name: "legacy_sanitize",
                naming: Naming {
                    sanitize_names: true,
                    ..Naming::default()
                },
                keys: DIRTY_KEYS,
                lines: &[
                    ("stats.a_b--c_x", 0.3),
                    ("stats_counts.a_b--c_x", 3.0),
                    ("stats.c_z;env=pr od", 0.15),
                    ("stats_counts.c_z;env=pr od", 1.5),
                    ("stats.timers.t_x.count_90;k=v", 1.0),
                    ("stats.timers.t_x.upper_99_9;k=v", 2.5),
                    ("stats.timers.t_x.histogram.bin_1;k=v", 2.0),
                    ("stats.timers.t_x.histogram.bin_inf;k=v", 0.0),
                    ("stats.gauges.g-h", -2.0),
                    ("stats.sets.s.count;z", 2.0),
                    ("statsd.numStats", 5.0),
                    ("stats.statsd.graphiteStats.calculationtime", 0.0),
                    ("stats.statsd.processing_time", 3.0),
                    ("stats.statsd.graphiteStats.last_exception", 0.0),
                    ("stats.statsd.graphiteStats.last_flush", 0.0),
                    ("stats.statsd.graphiteStats.flush_time", 0.0),
                    ("stats.statsd.graphiteStats.flush_length", 0.0),
                ],
            },
            NamingCase {
                name: "legacy_no_sanitize",
                naming: Naming::default(),
                keys: DIRTY_KEYS,
                lines: &[
                    ("stats.a b//c\u{e9} \u{a0}x", 0.3),
                    ("stats_counts.a b//c\u{e9} \u{a0}x", 3.0),
                    ("stats.c\tz;env=pr od", 0.15),
                    ("stats_counts.c\tz;env=pr od", 1.5),
                    ("stats.timers.t\u{2028}\u{feff}\u{85}x.count_90;k=v", 1.0),
                    ("stats.timers.t\u{2028}\u{feff}\u{85}x.upper_99_9;k=v", 2.5),
                    (
                        "stats.timers.t\u{2028}\u{feff}\u{85}x.histogram.bin_1;k=v",
                        2.0,
                    ),
                    (
                        "stats.timers.t\u{2028}\u{feff}\u{85}x.histogram.bin_inf;k=v",
                        0.0,
                    ),
                    ("stats.gauges.g/h", -2.0),
                    ("stats.sets.s*.count;z", 2.0),
                    ("statsd.numStats", 5.0),
                    ("stats.statsd.graphiteStats.calculationtime", 0.0),
                    ("stats.statsd.processing_time", 3.0),
                    ("stats.statsd.graphiteStats.last_exception", 0.0),
                    ("stats.statsd.graphiteStats.last_flush", 0.0),
                    ("stats.statsd.graphiteStats.flush_time", 0.0),
                    ("stats.statsd.graphiteStats.flush_length", 0.0),
                ],
            },
        ]
    }

    const SINK_STATS: [&str; 4] = ["last_exception", "last_flush", "flush_time", "flush_length"];

    #[test]
    fn names_like_the_reference() {
        for case in cases() {
            let mut out = Vec::new();
            graphite_lines(&batch(&case.keys), &case.naming, &mut out);
            // calculationtime is a duration: compare its name only.
            let mut got: Vec<(String, Option<f64>)> = out
                .into_iter()
                .map(|l| {
                    let timing = l.name.contains("calculationtime");
                    (l.name, (!timing).then_some(l.value))
                })
                .collect();
            // post_stats' four lines come from graphite_stats_name.
            got.extend(
                SINK_STATS
                    .iter()
                    .map(|s| (graphite_stats_name(&case.naming, s), Some(0.0))),
            );
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let mut want: Vec<(String, Option<f64>)> = case
                .lines
                .iter()
                .map(|&(n, v)| (n.to_owned(), (!n.contains("calculationtime")).then_some(v)))
                .collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn sanitize_like_sk() {
        // node: key.replace(/\s+/g, '_').replace(/\//g, '-').replace(/[^a-zA-Z_\-0-9\.;=]/g, '')
        for (raw, want) in [
            ("plain.name", "plain.name"),
            ("a  b\t\nc", "a_b_c"),
            ("a/b", "a-b"),
            ("caf\u{e9} \u{e9} x", "caf__x"),
            ("\u{feff}x\u{85}y", "_xy"),
            ("k=v;x", "k=v;x"),
            ("*&^%", ""),
        ] {
            assert_eq!(sanitize_name(raw), want, "{raw:?}");
        }
    }
}

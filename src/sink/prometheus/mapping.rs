//! statsd_exporter's mapping file: rules that rename statsd metrics, turn
//! parts of their names into labels, drop them, or give them their own
//! observer type, buckets, quantiles and TTL. The supported keys and how
//! matching works are in docs/prometheus.md.
//!
//! As in statsd_exporter, glob rules are tried before regex rules; among
//! globs the first in file order wins (or the most specific one with
//! `glob_disable_ordering`), among regexes the first in file order.
//!
//! Imports nothing of the crate outside `sink`.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde_yaml_ng::{Mapping as YamlMap, Value};

use super::options::{ObserverType, Quantile};

/// Why a mapping file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read mapping file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or a key has a value of the wrong shape.
    #[error("mapping file is not valid: {0}")]
    Yaml(String),
    /// A mapping's `match` (glob or regex) is not valid.
    #[error("mapping {index}: bad match {pattern:?}: {why}")]
    BadMatch {
        /// The mapping's position in `mappings`, from 0.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// A value (observer type, match type, action, duration...) is not one
    /// statsd_exporter accepts.
    #[error("{place}: {why}")]
    BadValue {
        /// Where: `defaults`, or `mapping N` (from 0).
        place: String,
        /// What is wrong.
        why: String,
    },
}

/// The statsd type class a rule's `match_metric_type` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricClass {
    /// `c`.
    Counter,
    /// `g`, and sets (`s`), which are exported as gauges.
    Gauge,
    /// `ms`, `h`, `d`.
    Observer,
}

/// `match_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Glob,
    Regex,
}

#[derive(Debug, Clone)]
struct Rule {
    /// Position in the file, for messages.
    index: usize,
    match_type: MatchType,
    /// The compiled matcher: a glob becomes an anchored regex with one
    /// group per `*`, so both kinds expand `$n` the same way.
    re: Regex,
    /// For `glob_disable_ordering`: per dot component, whether it is literal.
    specificity: Vec<bool>,
    name: String,
    labels: Vec<(String, String)>,
    class: Option<MetricClass>,
    drop: bool,
    ttl: Option<Duration>,
    observer: Option<ObserverType>,
    buckets: Option<Vec<f64>>,
    quantiles: Option<Vec<Quantile>>,
    help: Option<String>,
    honor_labels: bool,
    scale: Option<f64>,
}

/// What the mapping file says about one statsd metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// `action: drop`: the metric is not exported.
    pub drop: bool,
    /// The Prometheus name, with `$n` expanded (not yet escaped).
    pub name: String,
    /// Labels from the rule, with `$n` expanded, in file order.
    pub labels: Vec<(String, String)>,
    /// The rule's `ttl`, or the defaults' one.
    pub ttl: Option<Duration>,
    /// The rule's observer type, or the defaults' one.
    pub observer: Option<ObserverType>,
    /// The rule's histogram buckets, or the defaults' ones.
    pub buckets: Option<Vec<f64>>,
    /// The rule's summary quantiles, or the defaults' ones.
    pub quantiles: Option<Vec<Quantile>>,
    /// The rule's `help`.
    pub help: Option<String>,
    /// `honor_labels`: tag labels win over the rule's labels of the same name.
    pub honor_labels: bool,
    /// `scale`: every value is multiplied by it.
    pub scale: Option<f64>,
}

/// What applies to every metric, mapped or not (the file's `defaults`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    /// `observer_type` (or the older `timer_type`).
    pub observer: Option<ObserverType>,
    /// `buckets` or `histogram_options.buckets`.
    pub buckets: Option<Vec<f64>>,
    /// `quantiles` or `summary_options.quantiles`.
    pub quantiles: Option<Vec<Quantile>>,
    /// `ttl`.
    pub ttl: Option<Duration>,
}

/// A parsed mapping file.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    defaults: Defaults,
    glob_disable_ordering: bool,
    globs: Vec<Rule>,
    regexes: Vec<Rule>,
}

impl Mapping {
    /// Parse a statsd_exporter mapping file; the Vec names unsupported keys (warned at start).
    pub fn from_yaml(text: &str) -> Result<(Mapping, Vec<String>), MappingError> {
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| MappingError::Yaml(e.to_string()))?;
        let mut unsupported = Vec::new();
        let mut mapping = Mapping::default();
        let top = match &doc {
            Value::Mapping(m) => m.clone(),
            Value::Null => YamlMap::new(),
            _ => return Err(MappingError::Yaml("the top level is not a map".into())),
        };
        let mut default_match = MatchType::Glob;
        for (k, v) in &top {
            match key_str(k)? {
                "defaults" => {
                    let place = "defaults".to_string();
                    let m = as_map(v, &place)?;
                    for (k, v) in m {
                        let key = key_str(k)?;
                        let d = &mut mapping.defaults;
                        match key {
                            "observer_type" => d.observer = observer(v, &place)?,
                            "timer_type" => {
                                // `observer_type` wins when both are set.
                                let t = observer(v, &place)?;
                                if !m.contains_key("observer_type") {
                                    d.observer = t;
                                }
                            }
                            "buckets" => d.buckets = non_empty(floats(v, &place)?),
                            "quantiles" => d.quantiles = non_empty(quantiles(v, &place)?),
                            "ttl" => d.ttl = Some(duration(v, &place)?),
                            "match_type" => default_match = match_type(v, &place)?,
                            "glob_disable_ordering" => {
                                mapping.glob_disable_ordering = boolean(v, &place)?
                            }
                            "summary_options" => {
                                d.quantiles =
                                    sub_options(v, &place, "quantiles", &mut unsupported, |v| {
                                        quantiles(v, &place)
                                    })?
                                    .and_then(non_empty)
                                    .or(d.quantiles.take())
                            }
                            "histogram_options" => {
                                d.buckets =
                                    sub_options(v, &place, "buckets", &mut unsupported, |v| {
                                        floats(v, &place)
                                    })?
                                    .and_then(non_empty)
                                    .or(d.buckets.take())
                            }
                            other => unsupported.push(format!("defaults.{other}")),
                        }
                    }
                }
                "mappings" => {}
                other => unsupported.push(other.to_string()),
            }
        }
        if let Some(rules) = top.get("mappings") {
            let Value::Sequence(rules) = rules else {
                return Err(MappingError::Yaml("`mappings` is not a list".into()));
            };
            for (index, r) in rules.iter().enumerate() {
                let rule = parse_rule(
                    index,
                    r,
                    default_match,
                    mapping.defaults.observer,
                    &mut unsupported,
                )?;
                match rule.match_type {
                    MatchType::Glob => mapping.globs.push(rule),
                    MatchType::Regex => mapping.regexes.push(rule),
                }
            }
        }
        if mapping.glob_disable_ordering {
            // Most specific first: literal components beat `*`, left to
            // right; ties keep file order (the sort is stable).
            mapping
                .globs
                .sort_by(|a, b| b.specificity.cmp(&a.specificity));
        }
        Ok((mapping, unsupported))
    }

    /// [`from_yaml`](Self::from_yaml) on the contents of a file.
    pub fn from_file(path: &Path) -> Result<(Mapping, Vec<String>), MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Mapping::from_yaml(&text)
    }

    /// The file's `defaults`.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The first rule that matches the statsd name `name` of type class
    /// `class`, if any, expanded for that name.
    pub fn map(&self, name: &str, class: MetricClass) -> Option<Mapped> {
        let usable = |r: &&Rule| r.class.is_none_or(|c| c == class);
        for rule in self.globs.iter().chain(self.regexes.iter()).filter(usable) {
            // Globs must match the whole name; regexes anywhere, as Go's
            // FindStringSubmatchIndex does (users anchor them with ^ and $).
            let Some(caps) = rule.re.captures(name) else {
                continue;
            };
            let expand = |template: &str| {
                let mut s = String::new();
                caps.expand(template, &mut s);
                s
            };
            let d = &self.defaults;
            return Some(Mapped {
                drop: rule.drop,
                name: expand(&rule.name),
                labels: rule
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v)))
                    .collect(),
                ttl: rule.ttl.or(d.ttl),
                observer: rule.observer.or(d.observer),
                buckets: rule.buckets.clone().or_else(|| d.buckets.clone()),
                quantiles: rule.quantiles.clone().or_else(|| d.quantiles.clone()),
                help: rule.help.clone(),
                honor_labels: rule.honor_labels,
                scale: rule.scale,
            });
        }
        None
    }

    /// How many rules the file has.
    pub fn len(&self) -> usize {
        self.globs.len() + self.regexes.len()
    }

    /// The file has no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_rule(
    index: usize,
    v: &Value,
    default_match: MatchType,
    default_observer: Option<ObserverType>,
    unsupported: &mut Vec<String>,
) -> Result<Rule, MappingError> {
    let place = format!("mapping {index}");
    let m = as_map(v, &place)?;
    let mut pattern = None;
    let mut rule = Rule {
        index,
        match_type: default_match,
        re: Regex::new("^$").map_err(|e| bad(&place, e))?,
        specificity: Vec::new(),
        name: String::new(),
        labels: Vec::new(),
        class: None,
        drop: false,
        ttl: None,
        observer: None,
        buckets: None,
        quantiles: None,
        help: None,
        honor_labels: false,
        scale: None,
    };
    // What statsd_exporter refuses to see together.
    let (mut top_quantiles, mut top_buckets) = (false, false);
    let (mut summary_options, mut histogram_options) = (None, None);
    let mut timer_type = None;
    for (k, v) in m {
        match key_str(k)? {
            "match" => pattern = Some(string(v, &place)?),
            "name" => rule.name = string(v, &place)?,
            "match_type" => rule.match_type = match_type(v, &place)?,
            // `labels:` with nothing under it is no labels.
            "labels" if v.is_null() => {}
            "labels" => {
                for (lk, lv) in as_map(v, &place)? {
                    let lk = key_str(lk)?.to_string();
                    if !valid_label_name(&lk) {
                        return Err(bad(&place, format!("invalid label name {lk:?}")));
                    }
                    rule.labels.push((lk, string(lv, &place)?));
                }
            }
            "match_metric_type" => {
                rule.class = match string(v, &place)?.as_str() {
                    "" => None,
                    "counter" => Some(MetricClass::Counter),
                    "gauge" => Some(MetricClass::Gauge),
                    // `timer` is statsd_exporter's older name for observer.
                    "observer" | "timer" => Some(MetricClass::Observer),
                    other => {
                        return Err(bad(&place, format!("unknown match_metric_type {other:?}")))
                    }
                }
            }
            "action" => {
                rule.drop = match string(v, &place)?.as_str() {
                    "" | "map" => false,
                    "drop" => true,
                    other => return Err(bad(&place, format!("unknown action {other:?}"))),
                }
            }
            "ttl" => rule.ttl = Some(duration(v, &place)?),
            "observer_type" => rule.observer = observer(v, &place)?,
            // The older name: `observer_type` wins when both are set.
            "timer_type" => timer_type = observer(v, &place)?,
            "buckets" => {
                top_buckets = true;
                rule.buckets = non_empty(floats(v, &place)?).or(rule.buckets.take());
            }
            "quantiles" => {
                top_quantiles = true;
                rule.quantiles = non_empty(quantiles(v, &place)?).or(rule.quantiles.take());
            }
            "summary_options" => {
                let q = sub_options(v, &place, "quantiles", unsupported, |v| {
                    quantiles(v, &place)
                })?;
                summary_options = Some(q.is_some());
                rule.quantiles = q.and_then(non_empty).or(rule.quantiles.take());
            }
            "histogram_options" => {
                let b = sub_options(v, &place, "buckets", unsupported, |v| floats(v, &place))?;
                histogram_options = Some(b.is_some());
                rule.buckets = b.and_then(non_empty).or(rule.buckets.take());
            }
            "help" => rule.help = Some(string(v, &place)?),
            "honor_labels" => rule.honor_labels = boolean(v, &place)?,
            "scale" => rule.scale = Some(float(v, &place)?),
            other => unsupported.push(format!("mappings[{index}].{other}")),
        }
    }
    rule.observer = rule.observer.or(timer_type);
    let Some(pattern) = pattern else {
        return Err(bad(&place, "no `match`"));
    };
    if rule.name.is_empty() && !rule.drop {
        return Err(bad(&place, "no `name`"));
    }
    if !rule.name.is_empty() && !valid_metric_name(&rule.name) {
        return Err(bad(
            &place,
            format!(
                "invalid name {:?}: a letter or `_` first, then letters, digits, `_` \
                 (and `$1`, `${{1}}` expansions)",
                rule.name
            ),
        ));
    }
    if top_quantiles && summary_options == Some(true) {
        return Err(bad(
            &place,
            "`quantiles` and `summary_options.quantiles` cannot both be set",
        ));
    }
    if top_buckets && histogram_options == Some(true) {
        return Err(bad(
            &place,
            "`buckets` and `histogram_options.buckets` cannot both be set",
        ));
    }
    match rule.observer.or(default_observer) {
        Some(ObserverType::Histogram) if summary_options.is_some() => {
            return Err(bad(&place, "`summary_options` on a histogram observer"))
        }
        Some(ObserverType::Summary) if histogram_options.is_some() => {
            return Err(bad(&place, "`histogram_options` on a summary observer"))
        }
        _ => {}
    }
    let bad_match = |why: String| MappingError::BadMatch {
        index: rule.index,
        pattern: pattern.clone(),
        why,
    };
    match rule.match_type {
        MatchType::Glob => {
            valid_glob(&pattern).map_err(bad_match)?;
            rule.specificity = pattern.split('.').map(|c| !c.contains('*')).collect();
            rule.re = Regex::new(&glob_to_regex(&pattern)).map_err(|e| bad_match(e.to_string()))?;
        }
        MatchType::Regex => {
            rule.re = Regex::new(&pattern).map_err(|e| bad_match(e.to_string()))?;
        }
    }
    Ok(rule)
}

/// `a.*.b` → `^a\.([^.]*)\.b$`: each `*` is one capture within one dot component.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    for (i, part) in glob.split('*').enumerate() {
        if i > 0 {
            re.push_str("([^.]*)");
        }
        re.push_str(&regex::escape(part));
    }
    re.push('$');
    re
}

/// A glob as statsd_exporter accepts it: dot components of letters, digits,
/// `_`, `*`, and `-` between two of those; the first does not start with a
/// digit. (statsd_exporter takes `*` only as a whole component; statsyard
/// also within one, `a.b_*`.)
fn valid_glob(pattern: &str) -> Result<(), String> {
    for (i, comp) in pattern.split('.').enumerate() {
        let b = comp.as_bytes();
        let Some((&first, _)) = b.split_first() else {
            return Err("empty dot component".into());
        };
        if let Some(c) = comp
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*')))
        {
            return Err(format!(
                "{c:?} in {comp:?}: a glob has letters, digits, `_`, `-` and `*`"
            ));
        }
        if first == b'-' || b.last() == Some(&b'-') || comp.contains("--") {
            return Err(format!("{comp:?}: a `-` goes between two other characters"));
        }
        if i == 0 && first.is_ascii_digit() {
            return Err(format!(
                "{comp:?}: the first component cannot start with a digit"
            ));
        }
    }
    Ok(())
}

/// A mapping's `name` as statsd_exporter accepts it: a letter, `_` or an
/// expansion first, then letters, digits, `_` or expansions (`$1`, `${1}`;
/// statsyard also expands a regex's named groups, `${name}`).
fn valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            let len = b[start..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            if len == 0 || (braced && b.get(start + len) != Some(&b'}')) {
                return false;
            }
            i = start + len + usize::from(braced);
            continue;
        }
        let ok = b[i].is_ascii_alphabetic() || b[i] == b'_' || (i > 0 && b[i].is_ascii_digit());
        if !ok {
            return false;
        }
        i += 1;
    }
    !b.is_empty()
}

/// An empty list means "the defaults", as in statsd_exporter.
fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// statsd_exporter's label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn bad(place: &str, why: impl ToString) -> MappingError {
    MappingError::BadValue {
        place: place.to_string(),
        why: why.to_string(),
    }
}

fn key_str(k: &Value) -> Result<&str, MappingError> {
    k.as_str()
        .ok_or_else(|| MappingError::Yaml(format!("a key is not a string: {k:?}")))
}

fn as_map<'v>(v: &'v Value, place: &str) -> Result<&'v YamlMap, MappingError> {
    match v {
        Value::Mapping(m) => Ok(m),
        _ => Err(bad(place, "expected a map")),
    }
}

fn string(v: &Value, place: &str) -> Result<String, MappingError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(bad(place, "expected a string")),
    }
}

fn boolean(v: &Value, place: &str) -> Result<bool, MappingError> {
    v.as_bool()
        .ok_or_else(|| bad(place, "expected true or false"))
}

fn float(v: &Value, place: &str) -> Result<f64, MappingError> {
    v.as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| bad(place, format!("expected a number, got {v:?}")))
}

fn floats(v: &Value, place: &str) -> Result<Vec<f64>, MappingError> {
    let Value::Sequence(s) = v else {
        return Err(bad(place, "expected a list of numbers"));
    };
    let mut out: Vec<f64> = s
        .iter()
        .map(|x| float(x, place))
        .collect::<Result<_, _>>()?;
    out.sort_by(f64::total_cmp);
    out.dedup();
    Ok(out)
}

fn quantiles(v: &Value, place: &str) -> Result<Vec<Quantile>, MappingError> {
    let Value::Sequence(s) = v else {
        return Err(bad(place, "quantiles: expected a list"));
    };
    let mut out = Vec::new();
    for q in s {
        let m = as_map(q, place)?;
        let quantile = m.get("quantile").map(|v| float(v, place)).transpose()?;
        let error = m.get("error").map(|v| float(v, place)).transpose()?;
        let quantile = quantile.ok_or_else(|| bad(place, "a quantile has no `quantile`"))?;
        if !(0.0..=1.0).contains(&quantile) {
            return Err(bad(place, format!("quantile {quantile} is not in [0, 1]")));
        }
        out.push(Quantile {
            quantile,
            error: error.unwrap_or(0.0),
        });
    }
    Ok(out)
}

fn observer(v: &Value, place: &str) -> Result<Option<ObserverType>, MappingError> {
    let s = string(v, place)?;
    if s.is_empty() || s == "default" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| bad(place, e))
}

fn match_type(v: &Value, place: &str) -> Result<MatchType, MappingError> {
    match string(v, place)?.as_str() {
        "" | "glob" => Ok(MatchType::Glob),
        "regex" => Ok(MatchType::Regex),
        other => Err(bad(place, format!("unknown match_type {other:?}"))),
    }
}

/// `summary_options` / `histogram_options`: the one key we support from
/// them, and the others named as unsupported.
fn sub_options<T>(
    v: &Value,
    place: &str,
    wanted: &str,
    unsupported: &mut Vec<String>,
    parse: impl Fn(&Value) -> Result<T, MappingError>,
) -> Result<Option<T>, MappingError> {
    let mut found = None;
    for (k, v) in as_map(v, place)? {
        let k = key_str(k)?;
        if k == wanted {
            found = Some(parse(v)?);
        } else {
            unsupported.push(format!("{place}: {k}"));
        }
    }
    Ok(found)
}

/// A Go duration (`90s`, `1m30s`, `1.5h`, `0`) or a bare number of seconds.
fn duration(v: &Value, place: &str) -> Result<Duration, MappingError> {
    if let Some(n) = v.as_f64() {
        return Duration::try_from_secs_f64(n).map_err(|e| bad(place, e));
    }
    let s = string(v, place)?;
    parse_go_duration(&s).ok_or_else(|| bad(place, format!("bad duration {s:?}")))
}

fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * secs;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests;

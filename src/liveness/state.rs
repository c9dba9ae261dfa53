//! [`Liveness`]: when each source and each series with a `ttl` was last
//! seen, and whether it is dark. Listeners report sources through their
//! [`super::Feed`]; at every flush, on the flusher thread, the
//! [`LiveObserver`] notices series, decides who went dark or came back,
//! reports each transition once (an event, a log line) and writes the
//! `statsyard_source_up` / `statsyard_series_up` gauges into statsyard's own
//! shard, which the flusher merges at the next flush like a listener's.
//!
//! Imports, besides `liveness` itself: `aggregate`, `events`, `metric`,
//! `parse`, `sink`, `stats`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::config::{LivenessConfig, SourceBy};
use crate::aggregate::{Inserted, Registry, Shard};
use crate::events::{Event, Hub, Origin};
use crate::metric::{MetricKey, MetricRef, MetricType, Value as MetricValue};
use crate::parse::event::{AlertType, Priority};
use crate::sink::{FlushView, Observer};
use crate::stats::collector::LivenessStats;
use crate::stats::{incr, unix_now, Stats};

/// What a source is, as the listeners read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Off = 0,
    Address = 1,
    Tag = 2,
}

/// The tag that names a source, in the forms it takes on the wire.
#[derive(Debug)]
pub struct Tag {
    /// `;name=`, as it appears in a canonical key.
    in_key: Vec<u8>,
    /// `name:`, as it appears in DogStatsD tags.
    in_tags: Vec<u8>,
    /// An event's or a check's `h:` counts as the `host` tag.
    is_host: bool,
}

impl Tag {
    fn new(name: &str) -> Tag {
        Tag {
            in_key: format!(";{name}=").into_bytes(),
            in_tags: format!("{name}:").into_bytes(),
            is_host: name == "host",
        }
    }

    /// The tag's value in a canonical key (`name;a=1;host=web1`).
    pub fn in_key<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let n = self.in_key.len();
        let at = key.windows(n).position(|w| w == self.in_key)?;
        let rest = &key[at + n..];
        Some(&rest[..rest.iter().position(|&b| b == b';').unwrap_or(rest.len())])
    }

    /// The tag's value among DogStatsD tags, or the `h:` host for `host`.
    pub fn in_tags<'t>(&self, host: Option<&'t [u8]>, tags: &[&'t [u8]]) -> Option<&'t [u8]> {
        tags.iter()
            .find_map(|t| t.strip_prefix(&self.in_tags[..]))
            .or(host.filter(|_| self.is_host))
    }
}

/// One tracked source or series.
#[derive(Debug, Clone)]
struct Entry {
    last_seen: Instant,
    /// The same, in Unix seconds, for the API.
    last_seen_unix: u64,
    /// When it went dark, while it is.
    dark_since: Option<Instant>,
    /// A series' own `ttl`; sources use `dark_after`.
    ttl: Option<Duration>,
}

impl Entry {
    fn new(now: Instant, ttl: Option<Duration>) -> Entry {
        Entry {
            last_seen: now,
            last_seen_unix: unix_now(),
            dark_since: None,
            ttl,
        }
    }
}

/// A transition to report.
struct Change {
    what: &'static str,
    name: String,
    dark: bool,
    /// Silent for (going dark), or dark for (coming back).
    since: Duration,
    limit: Duration,
}

#[derive(Default)]
struct Table {
    map: HashMap<String, Entry>,
}

/// Every source and series tracked; one per server.
pub struct Liveness {
    mode: AtomicU8,
    /// Bumped on every change of settings; feeds re-read them.
    version: AtomicU64,
    tag: RwLock<Option<Arc<Tag>>>,
    settings: Mutex<Option<LivenessConfig>>,
    sources: Mutex<Table>,
    series: Mutex<Table>,
    stats: Arc<LivenessStats>,
}

impl Liveness {
    /// Off until [`Liveness::configure`] turns it on.
    pub fn new(stats: Arc<LivenessStats>) -> Liveness {
        Liveness {
            mode: AtomicU8::new(Mode::Off as u8),
            version: AtomicU64::new(0),
            tag: RwLock::new(None),
            settings: Mutex::new(None),
            sources: Mutex::new(Table::default()),
            series: Mutex::new(Table::default()),
            stats,
        }
    }

    /// New settings (start, reload; `None`: off). What is tracked is kept
    /// unless what a source is changed, or liveness was turned off.
    pub fn configure(&self, c: Option<&LivenessConfig>) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if s.as_ref() == c {
            return;
        }
        let before = s.as_ref().map(|x| x.source.clone());
        if before != c.map(|x| x.source.clone()) {
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map
                .clear();
        }
        if s.as_ref().map(|x| &x.series) != c.map(|x| &x.series) {
            self.series
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map
                .clear();
        }
        let (mode, tag) = match c.map(|x| &x.source) {
            None => (Mode::Off, None),
            Some(SourceBy::Address) => (Mode::Address, None),
            Some(SourceBy::Tag(t)) => (Mode::Tag, Some(Arc::new(Tag::new(t)))),
        };
        *self.tag.write().unwrap_or_else(|e| e.into_inner()) = tag;
        self.mode.store(mode as u8, Ordering::Relaxed);
        *s = c.cloned();
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The settings' version, read by every feed once per packet.
    #[inline]
    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// What a source is, and `dark_after`.
    pub(super) fn mode(&self) -> (Mode, Option<Arc<Tag>>, Duration) {
        let mode = match self.mode.load(Ordering::Relaxed) {
            1 => Mode::Address,
            2 => Mode::Tag,
            _ => Mode::Off,
        };
        let dark_after = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(Duration::MAX, |s| s.dark_after);
        (
            mode,
            self.tag.read().unwrap_or_else(|e| e.into_inner()).clone(),
            dark_after,
        )
    }

    /// `name` sent something at `now`.
    pub fn seen(&self, name: &str, now: Instant) {
        let max = match &*self.settings.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(s) => s.max_sources,
            None => return,
        };
        let mut t = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = t.map.get_mut(name) {
            e.last_seen = now;
            e.last_seen_unix = unix_now();
            return;
        }
        if t.map.len() >= max {
            incr(&self.stats.sources_over_limit, 1);
            return;
        }
        t.map.insert(name.to_string(), Entry::new(now, None));
    }

    /// The series with a `ttl` that got values this interval.
    fn notice_series(
        &self,
        c: &LivenessConfig,
        cache: &mut SeriesCache,
        reg: &Registry,
        now: Instant,
    ) {
        if c.series.is_empty() {
            cache.map.clear();
            return;
        }
        cache.generation = cache.generation.wrapping_add(1);
        let generation = cache.generation;
        let mut t = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut look = |ty: MetricType, key: &MetricKey| {
            let slot = cache.map.entry((ty, key.clone())).or_insert_with(|| {
                let text = key.to_string_lossy();
                (c.series.iter().position(|r| r.pattern.is_match(&text)), 0)
            });
            slot.1 = generation;
            let Some(rule) = slot.0 else { return };
            let ttl = c.series[rule].ttl;
            let hit = reg.hits(ty, key.as_bytes()) > 0;
            let name = key.to_string_lossy();
            let full = t.map.len() >= c.max_sources;
            match t.map.get_mut(name.as_ref()) {
                Some(e) if hit => {
                    e.last_seen = now;
                    e.last_seen_unix = unix_now();
                }
                Some(_) => {}
                None if !full => {
                    t.map.insert(name.into_owned(), Entry::new(now, Some(ttl)));
                }
                None => incr(&self.stats.sources_over_limit, 1),
            }
        };
        reg.counters()
            .for_each(|(k, _)| look(MetricType::Counter, k));
        reg.gauges().for_each(|(k, _)| look(MetricType::Gauge, k));
        reg.timers().for_each(|(k, tm)| look(tm.kind(), k));
        reg.sets().for_each(|(k, _)| look(MetricType::Set, k));
        cache.map.retain(|_, (_, g)| *g == generation);
    }

    /// Decide who went dark or came back since the last call; forget
    /// whoever was silent for `forget_after`. Returns the transitions and
    /// each tracked name with whether it is up.
    fn judge(
        &self,
        table: &Mutex<Table>,
        what: &'static str,
        c: &LivenessConfig,
        now: Instant,
    ) -> (Vec<Change>, Vec<(String, bool)>) {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let mut changes = Vec::new();
        let mut forgotten = 0;
        t.map.retain(|name, e| {
            let silent = now.saturating_duration_since(e.last_seen);
            if silent >= c.forget_after {
                forgotten += 1;
                return false;
            }
            let limit = e.ttl.unwrap_or(c.dark_after);
            let dark = silent >= limit;
            if dark != e.dark_since.is_some() {
                let since = match e.dark_since {
                    Some(t) => now.saturating_duration_since(t),
                    None => silent,
                };
                e.dark_since = dark.then_some(now);
                changes.push(Change {
                    what,
                    name: name.clone(),
                    dark,
                    since,
                    limit,
                });
            }
            true
        });
        incr(&self.stats.forgotten, forgotten);
        let mut up: Vec<(String, bool)> = t
            .map
            .iter()
            .map(|(n, e)| (n.clone(), e.dark_since.is_none()))
            .collect();
        up.sort();
        (changes, up)
    }

    /// `GET /api/dark`.
    pub fn report(&self) -> Value {
        let now = Instant::now();
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let list = |table: &Mutex<Table>, field: &str| -> Vec<Value> {
            let t = table.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<(&String, &Entry)> = t.map.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v.into_iter()
                .map(|(name, e)| {
                    let mut o = json!({
                        field: name,
                        "state": if e.dark_since.is_some() { "dark" } else { "up" },
                        "last_seen": e.last_seen_unix,
                        "silent_seconds": now.saturating_duration_since(e.last_seen).as_secs(),
                    });
                    if let Some(ttl) = e.ttl {
                        o["ttl_seconds"] = json!(ttl.as_secs_f64());
                    }
                    o
                })
                .collect()
        };
        json!({
            "enabled": settings.is_some(),
            "dark_after_seconds": settings.as_ref().map(|s| s.dark_after.as_secs_f64()),
            "sources": list(&self.sources, "source"),
            "series": list(&self.series, "series"),
        })
    }
}

/// Which `ttl` rule each registry series matches, computed once per series.
#[derive(Default)]
struct SeriesCache {
    map: HashMap<(MetricType, MetricKey), (Option<usize>, u64)>,
    generation: u64,
}

/// Liveness at every flush, on the flusher thread (an [`Observer`] among
/// the outputs, named `/liveness`).
pub struct LiveObserver {
    live: Arc<Liveness>,
    hub: Arc<Hub>,
    shard: Arc<Mutex<Shard>>,
    stats: Arc<Stats>,
    cache: SeriesCache,
}

/// The name of the liveness observer among the flusher's outputs (no
/// `[[sink]]` name can start with `/`).
pub const OBSERVER: &str = "/liveness";

impl LiveObserver {
    pub fn new(
        live: Arc<Liveness>,
        hub: Arc<Hub>,
        shard: Arc<Mutex<Shard>>,
        stats: Arc<Stats>,
    ) -> Self {
        LiveObserver {
            live,
            hub,
            shard,
            stats,
            cache: SeriesCache::default(),
        }
    }

    fn report(&self, ch: &Change) {
        let secs = ch.since.as_secs();
        let limit = humantime_serde::re::humantime::format_duration(ch.limit);
        let (title, text, alert) = if ch.dark {
            tracing::warn!(what = ch.what, name = %ch.name, silent_seconds = secs, %limit, "went dark");
            (
                format!("{} {} went dark", ch.what, ch.name),
                format!("nothing for {secs}s (dark after {limit})"),
                AlertType::Error,
            )
        } else {
            tracing::info!(what = ch.what, name = %ch.name, "came back");
            (
                format!("{} {} came back", ch.what, ch.name),
                format!("sending again after {secs}s dark"),
                AlertType::Success,
            )
        };
        incr(
            if ch.dark {
                &self.live.stats.went_dark
            } else {
                &self.live.stats.came_back
            },
            1,
        );
        let now = unix_now();
        self.hub.publish(Event {
            id: 0,
            received: now,
            timestamp: now as i64,
            title,
            text,
            host: None,
            aggregation_key: Some(format!("statsyard.liveness.{}", ch.name)),
            priority: Priority::Normal,
            source_type: Some("statsyard".into()),
            alert_type: alert,
            tags: vec![
                format!("{}:{}", ch.what, ch.name),
                format!("state:{}", if ch.dark { "dark" } else { "up" }),
            ],
            origin: Origin::Liveness,
        });
    }

    /// The `_up` gauges, through statsyard's own shard.
    fn gauges(&self, family: &str, label: &str, up: &[(String, bool)]) {
        let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused = 0;
        for (name, is_up) in up {
            // `;` separates tags in a key: a series key's own tags become `,`.
            let key = format!("{family};{label}={}", name.replace(';', ","));
            let m = MetricRef {
                key: key.as_bytes(),
                kind: MetricType::Gauge,
                value: MetricValue::Number(if *is_up { 1.0 } else { 0.0 }),
                sample_rate: 1.0,
                timestamp: None,
            };
            if let Inserted::Refused(_) = shard.insert(&m) {
                refused += 1;
            }
        }
        drop(shard);
        if refused > 0 {
            incr(&self.stats.series_dropped, refused);
        }
    }
}

impl Observer for LiveObserver {
    fn observe(&mut self, flush: &FlushView<'_>) {
        let Some(c) = self
            .live
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let now = flush.now;
        self.live
            .notice_series(&c, &mut self.cache, flush.registry, now);
        let (changes, sources) = self.live.judge(&self.live.sources, "source", &c, now);
        let (series_changes, series) = self.live.judge(&self.live.series, "series", &c, now);
        for ch in changes.iter().chain(&series_changes) {
            self.report(ch);
        }
        let st = &self.live.stats;
        let dark = |v: &[(String, bool)]| v.iter().filter(|(_, up)| !up).count() as u64;
        st.sources.store(sources.len() as u64, Ordering::Relaxed);
        st.sources_dark.store(dark(&sources), Ordering::Relaxed);
        st.series.store(series.len() as u64, Ordering::Relaxed);
        st.series_dark.store(dark(&series), Ordering::Relaxed);
        self.gauges("statsyard_source_up", "source", &sources);
        self.gauges("statsyard_series_up", "series", &series);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values() {
        let t = Tag::new("host");
        assert_eq!(t.in_key(b"a;env=x;host=web1"), Some(&b"web1"[..]));
        assert_eq!(t.in_key(b"a;host=web1;z=1"), Some(&b"web1"[..]));
        assert_eq!(t.in_key(b"a;xhost=web1"), None);
        assert_eq!(t.in_key(b"a"), None);
        assert_eq!(t.in_tags(Some(b"h1"), &[b"env:x"]), Some(&b"h1"[..]));
        assert_eq!(t.in_tags(Some(b"h1"), &[b"host:h2"]), Some(&b"h2"[..]));
        let t = Tag::new("job");
        assert_eq!(t.in_tags(Some(b"h1"), &[b"env:x"]), None);
    }
}

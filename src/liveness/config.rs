//! `[liveness]`: its table ([`RawLiveness`], whose `///` docs are the user
//! docs) and its validated settings ([`LivenessConfig`]).
//!
//! Imports, besides `liveness` itself: `check`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::{bad, Bad, Pattern};

/// `[liveness]`: who stopped sending.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLiveness {
    /// Track sources (and `series` rules) at all.
    pub enabled: bool,
    /// What a source is: `address` (the sender's IP address; a unix socket
    /// client is `unix:<path>`) or `tag:<name>` (the value of that tag on
    /// each line, e.g. `tag:host`).
    pub source: String,
    /// A source silent this long goes dark; unset: three flush intervals.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub dark_after: Option<Duration>,
    /// Sources tracked at most (and, apart, series with a `ttl`); more are
    /// counted, not tracked.
    pub max_sources: usize,
    /// A source (or series) silent this long is forgotten: no longer
    /// listed, no longer reported.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// Series with a time to live: a series matching `pattern` that gets no
    /// value for `ttl` goes dark like a source.
    pub series: Vec<RawSeriesTtl>,
}

impl Default for RawLiveness {
    fn default() -> Self {
        RawLiveness {
            enabled: false,
            source: "address".into(),
            dark_after: None,
            max_sources: DEFAULT_MAX_SOURCES,
            forget_after: Duration::from_secs(7 * 24 * 3600),
            series: Vec::new(),
        }
    }
}

/// A `[[liveness.series]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeriesTtl {
    /// A regular expression searched for in the series key (`name;tag=v`).
    pub pattern: String,
    /// How long a matching series may go without a value before it is dark.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

/// `[liveness] max_sources` by default.
pub const DEFAULT_MAX_SOURCES: usize = 10_000;

/// What a source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceBy {
    /// The sender's IP address.
    Address,
    /// The value of this tag.
    Tag(String),
}

/// A series rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTtl {
    pub pattern: Pattern,
    pub ttl: Duration,
}

/// `[liveness]`, validated; `None` in the config when it is off.
#[derive(Debug, Clone, PartialEq)]
pub struct LivenessConfig {
    pub source: SourceBy,
    pub dark_after: Duration,
    pub max_sources: usize,
    pub forget_after: Duration,
    pub series: Vec<SeriesTtl>,
}

impl LivenessConfig {
    /// Check `raw`; `interval` is the flush interval (`dark_after`'s default
    /// is three of them).
    pub fn validate(raw: &RawLiveness, interval: Duration) -> Result<Option<LivenessConfig>, Bad> {
        if !raw.enabled {
            return Ok(None);
        }
        let source = match raw.source.as_str() {
            "address" => SourceBy::Address,
            s => match s.strip_prefix("tag:") {
                Some(t) if !t.is_empty() && !t.contains([';', ',', '=', ':']) => {
                    SourceBy::Tag(t.to_string())
                }
                _ => {
                    return Err(bad(
                        "liveness.source",
                        format!(
                            "{s:?}: expected \"address\" or \"tag:<name>\" (e.g. \"tag:host\")"
                        ),
                    ))
                }
            },
        };
        let dark_after = raw.dark_after.unwrap_or(interval * 3);
        if dark_after.is_zero() {
            return Err(bad("liveness.dark_after", "must be above 0"));
        }
        if raw.max_sources == 0 {
            return Err(bad("liveness.max_sources", "must be at least 1"));
        }
        if raw.forget_after <= dark_after {
            return Err(bad(
                "liveness.forget_after",
                "must be longer than dark_after (a source is dark before it is forgotten)",
            ));
        }
        let mut series = Vec::with_capacity(raw.series.len());
        for (i, r) in raw.series.iter().enumerate() {
            let pattern = Pattern::new(&r.pattern)
                .map_err(|e| bad(format!("liveness.series[{i}].pattern"), e))?;
            if r.ttl.is_zero() {
                return Err(bad(format!("liveness.series[{i}].ttl"), "must be above 0"));
            }
            series.push(SeriesTtl {
                pattern,
                ttl: r.ttl,
            });
        }
        Ok(Some(LivenessConfig {
            source,
            dark_after,
            max_sources: raw.max_sources,
            forget_after: raw.forget_after,
            series,
        }))
    }
}

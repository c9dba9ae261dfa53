//! The Prometheus exporter as an output: it observes every flush on the
//! flusher thread ([`crate::sink::Observer`]), keeps Prometheus semantics
//! over the registry ([`exporter`]: cumulative counters, gauges, summaries or
//! histograms, tags as labels, TTL and a series bound, the statsd_exporter
//! [`mapping`]), and publishes one rendering per flush that `/metrics` serves
//! ([`live`]). [`crate::exposition`] is the one writer of the exposition
//! format.
//!
//! Imports, besides `sink` itself: `check`.

pub mod exporter;
pub mod live;
pub mod mapping;
pub mod options;
pub mod sent;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BuildCx, Built, FlushView, Observer, SinkConfig, SinkError};
use crate::check::{bad, relative_to, Bad};
use exporter::PromOptions;
use live::Live;
use mapping::Mapping;
use options::{BadObserverType, ObserverType, Quantile};

/// One summary quantile, as statsd_exporter writes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuantile {
    /// In [0, 1].
    pub quantile: f64,
    /// Allowed rank error, in [0, 1].
    pub error: f64,
}

/// `[prometheus]`: the `/metrics` exposition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPrometheus {
    /// Summary quantiles of timers, histograms and distributions.
    pub quantiles: Vec<RawQuantile>,
    /// Histogram bucket upper bounds, in seconds, ascending.
    pub buckets: Vec<f64>,
    /// `summary` or `histogram`.
    pub observer: String,
    /// Remove a series not updated for this long; `"0s"` never does.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most series exported; new ones past it are dropped and counted.
    pub max_series: usize,
    /// A statsd_exporter mapping file (YAML); empty for none.
    pub mapping_file: String,
    /// Free the exporter when `/metrics` was not requested for this long;
    /// `"0s"` never does.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RawPrometheus {
    fn default() -> Self {
        RawPrometheus {
            quantiles: vec![
                RawQuantile {
                    quantile: 0.5,
                    error: 0.05,
                },
                RawQuantile {
                    quantile: 0.9,
                    error: 0.01,
                },
                RawQuantile {
                    quantile: 0.99,
                    error: 0.001,
                },
            ],
            buckets: vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            observer: "summary".into(),
            ttl: Duration::from_secs(600),
            max_series: 1_000_000,
            mapping_file: String::new(),
            idle_timeout: exporter::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `[prometheus]`, validated; the mapping file is loaded.
#[derive(Debug, Clone, Default)]
pub struct PrometheusConfig {
    /// The exporter's options, mapping included.
    pub options: PromOptions,
    /// Where the mapping came from, if any.
    pub mapping_file: Option<PathBuf>,
    /// The mapping file's bytes as loaded: a reload that finds the file
    /// edited rebuilds the exporter even though the config names the same file.
    pub mapping_source: Option<Arc<[u8]>>,
}

impl PartialEq for PrometheusConfig {
    /// A loaded [`Mapping`] has no equality (it holds compiled regexes); the
    /// file it came from, and its bytes, stand for it.
    fn eq(&self, other: &Self) -> bool {
        self.same_options(other) && self.mapping_source == other.mapping_source
    }
}

impl PrometheusConfig {
    /// Equal but for the mapping file's contents.
    pub fn same_options(&self, other: &Self) -> bool {
        let (a, b) = (&self.options, &other.options);
        a.quantiles == b.quantiles
            && a.buckets == b.buckets
            && a.observer == b.observer
            && a.ttl == b.ttl
            && a.max_series == b.max_series
            && a.idle_timeout == b.idle_timeout
            && a.mapping.is_some() == b.mapping.is_some()
            && self.mapping_file == other.mapping_file
    }

    /// `[prometheus]` → the exporter's options; loads the mapping file (a
    /// relative path is taken from the config file's directory). Unknown
    /// keys of the mapping file are added to `warnings`.
    pub fn validate(
        p: &RawPrometheus,
        file: &str,
        warnings: &mut Vec<String>,
    ) -> Result<PrometheusConfig, Bad> {
        let mut quantiles = Vec::with_capacity(p.quantiles.len());
        for (i, q) in p.quantiles.iter().enumerate() {
            if !(0.0..=1.0).contains(&q.quantile) {
                return Err(bad(
                    format!("prometheus.quantiles[{i}].quantile"),
                    "must be from 0 to 1",
                ));
            }
            if !(0.0..=1.0).contains(&q.error) {
                return Err(bad(
                    format!("prometheus.quantiles[{i}].error"),
                    "must be from 0 to 1",
                ));
            }
            quantiles.push(Quantile {
                quantile: q.quantile,
                error: q.error,
            });
        }
        for (i, b) in p.buckets.iter().enumerate() {
            if !b.is_finite() {
                return Err(bad(
                    format!("prometheus.buckets[{i}]"),
                    "must be a finite number (+Inf is always added)",
                ));
            }
            if i > 0 && *b <= p.buckets[i - 1] {
                return Err(bad(
                    format!("prometheus.buckets[{i}]"),
                    "buckets must be in increasing order",
                ));
            }
        }
        let observer: ObserverType = p
            .observer
            .parse()
            .map_err(|e: BadObserverType| bad("prometheus.observer", e.to_string()))?;
        if p.max_series == 0 {
            return Err(bad("prometheus.max_series", "must be at least 1"));
        }
        let (mapping, mapping_file, mapping_source) = if p.mapping_file.is_empty() {
            (None, None, None)
        } else {
            let path = relative_to(file, &p.mapping_file);
            let why = |e: &dyn std::fmt::Display| {
                bad(
                    "prometheus.mapping_file",
                    format!("{}: {e}", path.display()),
                )
            };
            let bytes = std::fs::read(&path).map_err(|e| {
                bad(
                    "prometheus.mapping_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let text = std::str::from_utf8(&bytes).map_err(|e| why(&e))?;
            let (mapping, unsupported) = Mapping::from_yaml(text).map_err(|e| why(&e))?;
            if !unsupported.is_empty() {
                warnings.push(format!(
                    "mapping file {}: keys statsyard does not support are ignored: {}",
                    path.display(),
                    unsupported.join(", ")
                ));
            }
            (Some(mapping), Some(path), Some(Arc::from(bytes)))
        };
        Ok(PrometheusConfig {
            options: PromOptions {
                quantiles,
                buckets: p.buckets.clone(),
                observer,
                ttl: p.ttl,
                max_series: p.max_series,
                mapping,
                idle_timeout: p.idle_timeout,
                sent: None,
                internal_prefix: None,
            },
            mapping_file,
            mapping_source,
        })
    }
}

impl SinkConfig for PrometheusConfig {
    /// Its figures are its own (`statsyard_prometheus_*`).
    fn counted(&self) -> bool {
        false
    }

    /// Prometheus names come from the mapping, not from `[naming]`.
    fn uses_naming(&self) -> bool {
        false
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let mut options = self.options.clone();
        // Label values as sent, and the flusher's own series left out.
        options.sent = cx.sent_keys.clone();
        options.internal_prefix = Some(cx.naming.prefix_stats.clone());
        let live = Arc::new(Live::new(options));
        Ok(Built {
            sink: None,
            observer: Some(Box::new(Exporting(live.clone()))),
            scrape: Some(live),
        })
    }
}

/// Feeds the exporter every flush and publishes its rendering.
struct Exporting(Arc<Live>);

impl Observer for Exporting {
    fn observe(&mut self, flush: &FlushView<'_>) {
        // Nothing to do while nobody scrapes; only the flusher thread takes
        // the exporter's lock, so neither receive threads nor scrapes wait
        // on it. Rendered here, once per flush, rather than per scrape:
        // scrapes then only clone the text and never hold the exporter
        // while a client reads slowly.
        if let Some(observe_micros) = self.0.observe(flush.registry, flush.now) {
            let r = self.0.publish(observe_micros);
            tracing::debug!(
                observe_micros,
                render_micros = r.stats.render_micros,
                series = r.stats.series,
                "prometheus exporter fed"
            );
        }
    }
}

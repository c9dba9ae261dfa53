//! Outputs ("sinks" in the config file): where flushes, and for the
//! repeater raw packets, go. This module is the surface every output kind
//! implements; each kind lives in its own module and owns its config table,
//! its keys, their validation, how it is built and how it reloads.
//!
//! - [`SinkKind`]: a kind, as `[[sink]] type = "..."` names it. It turns its
//!   table into a [`SinkConfig`] ([`SinkKind::validate`]).
//! - [`SinkConfig`]: one configured output's settings. The runtime builds it
//!   ([`SinkConfig::build`]) at start, at a reload that adds or changes it
//!   (a reload diffs configs with [`SinkSpec`]'s equality), and again after
//!   its task panicked.
//! - Events: an output whose [`SinkConfig::takes_events`] is true also
//!   gets [`SinkMsg::Event`] on its queue, from [`crate::events::Hub`].
//! - [`Built`]: what a build gives the runtime: a [`Sink`] task fed by its
//!   own bounded queue, and/or an [`Observer`] that sees every flush with
//!   the registry on the flusher thread (the Prometheus exporter, which has
//!   no task), and what `GET /metrics` serves.
//!
//! Registering a kind is one line in [`builtin`]. docs/architecture.md
//! ("Adding an output") walks through it; `tests/it/output_surface.rs`
//! builds an output outside the crate through this surface alone.
//!
//! Every sink task runs with its own bounded queue, so a slow or dead
//! destination never holds up the flusher, ingest, or another sink. The
//! queue closing is the shutdown signal: a sink then delivers what it still
//! holds, within its shutdown deadline, and returns.
//!
//! Imports: the flush's data ([`crate::flush`]), the registry for observers,
//! the relay's router (for the `relay` kind), the delivery engines, the
//! counters ([`crate::stats`]), the config checks
//! ([`crate::config::check`]) and the events outputs take
//! ([`crate::events::Event`]); never listeners, the runtime or HTTP.

pub mod console;
pub mod graphite;
pub mod http_output;
pub mod influxdb;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod prometheus;
pub mod prometheus_remote_write;
pub mod relay;
pub mod repeater;
pub mod supervise;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::aggregate::Registry;
use crate::check::Bad;
use crate::flush::naming::Naming;
use crate::flush::FlushBatch;
use crate::relay::router::Router;
use crate::stats::SinkStats;

/// Every output kind `[[sink]] type = "..."` may name. Registering a kind is
/// one line here.
pub fn builtin() -> Kinds {
    Kinds::new(vec![
        Arc::new(console::Kind),
        Arc::new(graphite::Kind),
        Arc::new(repeater::Kind),
        Arc::new(relay::Kind),
        Arc::new(influxdb::Kind),
        Arc::new(prometheus_remote_write::Kind),
        #[cfg(feature = "kafka")]
        Arc::new(kafka::Kind),
    ])
}

/// The output kinds a config may use: [`builtin`], or those plus an
/// embedding program's own ([`Kinds::with`]).
#[derive(Clone)]
pub struct Kinds(Vec<Arc<dyn SinkKind>>);

impl Kinds {
    pub fn new(kinds: Vec<Arc<dyn SinkKind>>) -> Kinds {
        Kinds(kinds)
    }

    /// These kinds and `kind`.
    pub fn with(mut self, kind: Arc<dyn SinkKind>) -> Kinds {
        self.0.push(kind);
        self
    }

    /// The kind `type = name` names.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn SinkKind>> {
        self.0.iter().find(|k| k.name() == name)
    }

    /// Every kind, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn SinkKind>> {
        self.0.iter()
    }

    /// `"a"`, `"b"` or `"c"`, for errors.
    pub fn names(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|k| format!("{:?}", k.name())).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

impl Default for Kinds {
    fn default() -> Kinds {
        builtin()
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| k.name()))
            .finish()
    }
}

/// A kind of output: what `[[sink]] type = "..."` names.
pub trait SinkKind: Send + Sync + 'static {
    /// The `type` value.
    fn name(&self) -> &'static str;
    /// The keys of its table besides `type`, `name` and `queue` (for the
    /// error that names a key of another kind, and the docs test). For a
    /// table read with [`ValidateCx::table`], [`keys_of`] lists its fields.
    fn keys(&self) -> Vec<String>;
    /// Queue capacity, in messages, when `queue` is not set.
    fn default_queue(&self) -> usize {
        DEFAULT_QUEUE
    }
    /// Check the table (`type`, `name` and `queue` taken out) and turn it
    /// into the output's settings. Errors name the key
    /// ([`ValidateCx::bad`]).
    fn validate(&self, table: toml::Table, cx: &ValidateCx<'_>)
        -> Result<Arc<dyn SinkConfig>, Bad>;
}

/// Queue capacity of a flush-fed output, in flushes.
pub const DEFAULT_QUEUE: usize = 64;

/// What an output is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Every flush ([`SinkMsg::Flush`]).
    Flush,
    /// Every received statsd packet as it arrived ([`SinkMsg::Raw`]).
    Raw,
}

/// One configured output's settings, as its kind validated them.
pub trait SinkConfig: fmt::Debug + Send + Sync + DynEq {
    /// What it is fed.
    fn input(&self) -> Input {
        Input::Flush
    }
    /// Whether what it writes depends on `[naming]`: a naming change then
    /// rebuilds it.
    fn uses_naming(&self) -> bool {
        true
    }
    /// Whether it also takes events ([`SinkMsg::Event`]) on its queue,
    /// besides its input. An output with a natural form for events (a
    /// line on the console, an `events` measurement in InfluxDB, a JSON
    /// message on Kafka) says yes.
    fn takes_events(&self) -> bool {
        false
    }
    /// Whether its counters are listed among the sinks' (`/api/stats`
    /// `sinks`, `statsyard_sink_*`); the Prometheus exporter has its own.
    fn counted(&self) -> bool {
        true
    }
    /// Build it. Runs at start, at a reload that adds or changes it, and
    /// again after its task panicked (the same counters each time).
    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError>;
}

/// Equality between settings of any kind: a reload rebuilds an output whose
/// settings changed. Implemented for every `PartialEq` type.
pub trait DynEq: Any {
    fn as_any(&self) -> &dyn Any;
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

/// What a build needs from the running server.
#[derive(Clone)]
pub struct BuildCx {
    /// The output's name.
    pub name: String,
    /// Graphite names, as the reference builds them.
    pub naming: Naming,
    /// Its counters (kept across rebuilds and reloads).
    pub stats: Arc<SinkStats>,
    /// How long it may take to deliver what it holds once its queue closes.
    pub shutdown_timeout: Duration,
    /// The relay's router, when `[relay]` runs.
    pub relay: Option<Arc<Router>>,
    /// How the keys ingest rewrote were sent (for Prometheus label values),
    /// when `/metrics` runs.
    pub sent_keys: Option<Arc<prometheus::sent::SentKeys>>,
}

/// What a build gives the runtime.
#[derive(Default)]
pub struct Built {
    /// The task, fed by its own queue; `None` for an output that only observes.
    pub sink: Option<Box<dyn Sink>>,
    /// Runs on the flusher thread at every flush.
    pub observer: Option<Box<dyn Observer>>,
    /// What `GET /metrics` serves (the Prometheus exporter).
    pub scrape: Option<Arc<prometheus::live::Live>>,
}

impl Built {
    /// An output that is a task only.
    pub fn sink(s: impl Sink + 'static) -> Built {
        Built {
            sink: Some(Box::new(s)),
            ..Built::default()
        }
    }
}

/// What an [`Observer`] sees of one flush, on the flusher thread, after the
/// sinks were handed the batch and before the registry ends the interval.
pub struct FlushView<'a> {
    pub batch: &'a Arc<FlushBatch>,
    /// The aggregation state the batch was computed from.
    pub registry: &'a Registry,
    pub now: Instant,
}

/// Sees every flush on the flusher thread. It must be quick (the next flush
/// and every admin/API job wait for it) and must never block on I/O: an
/// observer that ships data hands it to its own task.
pub trait Observer: Send {
    fn observe(&mut self, flush: &FlushView<'_>);
}

/// What a sink's queue carries.
#[derive(Debug, Clone)]
pub enum SinkMsg {
    /// One flush's results.
    Flush(Arc<FlushBatch>),
    /// One received statsd packet, exactly as it arrived (repeater only).
    Raw(Bytes),
    /// One event (outputs whose [`SinkConfig::takes_events`] says so): a
    /// DogStatsD event a client sent, or statsyard's own (a source went
    /// dark or came back). It arrives when it happens, between flushes.
    Event(Arc<crate::events::Event>),
}

impl SinkMsg {
    /// What a raw-packet output sends: a received packet as it arrived,
    /// or an event statsyard made itself as its DogStatsD line. An event a
    /// client sent is `None`: its packet already came as `Raw`.
    pub fn into_packet(self) -> Option<Bytes> {
        match self {
            SinkMsg::Raw(p) => Some(p),
            SinkMsg::Event(e) if e.is_own() => Some(Bytes::from(e.to_dogstatsd())),
            _ => None,
        }
    }
}

/// A boxed future, for trait objects.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One running output: consumes its queue until it closes.
pub trait Sink: Send {
    /// The configured name, used in logs and self-metrics.
    fn name(&self) -> &str;
    /// Consume messages until the queue closes, then deliver what is held
    /// (bounded by the shutdown deadline) and return.
    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture;
}

/// A configured output.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// Unique among sinks; defaults to the type (`graphite`, `graphite-2`, ...).
    pub name: String,
    /// Capacity of the sink's queue, in messages. A full queue drops the newest
    /// message and counts it.
    pub queue: usize,
    /// The `type`.
    pub kind: &'static str,
    pub config: Arc<dyn SinkConfig>,
}

impl PartialEq for SinkSpec {
    fn eq(&self, o: &SinkSpec) -> bool {
        self.name == o.name
            && self.queue == o.queue
            && self.kind == o.kind
            && self.config.dyn_eq(o.config.as_any())
    }
}

impl SinkSpec {
    /// Its settings, if they are of type `T`.
    pub fn config_of<T: 'static>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref::<T>()
    }
}

/// Errors building a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A `relay` sink without a relay to route through (the config check
    /// refuses it first; an embedding program may not).
    #[error("sink {sink}: a relay sink needs a [relay] section")]
    NoRelay { sink: String },
    /// An I/O error setting the sink up.
    #[error("sink {sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
    /// An embedding program's output could not be built.
    #[error("sink {sink}: {reason}")]
    Other { sink: String, reason: String },
}

/// What a kind's validation knows of the file and the table it reads.
pub struct ValidateCx<'a> {
    /// The config file, for relative paths (`<...>` for none).
    pub file: &'a str,
    /// The table's index among `[[sink]]`s.
    pub index: usize,
    /// The sink's name (defaulted already).
    pub name: &'a str,
    /// Its `type`.
    pub kind: &'a str,
    /// Every key the kind takes (with `type`, `name` and `queue`), for errors.
    pub keys: Vec<String>,
    /// Whether the config has a `[relay]`.
    pub has_relay: bool,
    /// The config's `[prometheus]` (what `/metrics` exports, mapping file
    /// included), for outputs that send the same series.
    pub prometheus: &'a prometheus::PrometheusConfig,
}

impl ValidateCx<'_> {
    /// The key path of `key` (`sink[1].address`).
    pub fn key(&self, key: &str) -> String {
        format!("sink[{}].{key}", self.index)
    }

    /// A validation error at `key`.
    pub fn bad(&self, key: &str, reason: impl Into<String>) -> Bad {
        Bad {
            key: self.key(key),
            reason: reason.into(),
        }
    }

    /// Read the table into `T` (whose fields are the kind's keys): a key of
    /// another kind is refused naming it, a value of the wrong type naming
    /// its key.
    pub fn table<T: DeserializeOwned>(&self, table: toml::Table) -> Result<T, Bad> {
        if let Some(k) = table.keys().find(|k| !self.keys.contains(k)) {
            return Err(self.bad(
                k,
                format!(
                    "not a key of a {} sink (its keys: {})",
                    self.kind,
                    self.keys.join(", ")
                ),
            ));
        }
        let keys: Vec<String> = table.keys().cloned().collect();
        T::deserialize(toml::Value::Table(table)).map_err(|e| {
            // The toml crate's message names the key; fall back to the table.
            let msg = e.to_string();
            let key = keys
                .iter()
                .find(|k| msg.contains(&format!("`{k}`")))
                .cloned();
            match key {
                Some(k) => self.bad(&k, msg.trim().to_string()),
                None => Bad {
                    key: format!("sink[{}]", self.index),
                    reason: msg.trim().to_string(),
                },
            }
        })
    }

    /// `path` as written in the config file: relative to its directory.
    pub fn path(&self, path: &str) -> PathBuf {
        crate::check::relative_to(self.file, path)
    }

    /// The sink's disk spool from `spool_dir` and `spool_bytes`: its own
    /// subdirectory `spool_dir/<name>`.
    pub fn spool(
        &self,
        dir: Option<&str>,
        max_bytes: Option<u64>,
    ) -> Result<Option<crate::spool::SpoolConfig>, Bad> {
        crate::check::spool_config(
            self.file,
            dir,
            max_bytes,
            &[self.name],
            &self.key("spool_dir"),
            &self.key("spool_bytes"),
        )
    }
}

/// The field names of a table type: `T::default()` serialised to JSON,
/// where every field appears (an unset `Option` as `null`).
pub fn keys_of<T: Default + Serialize>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}
